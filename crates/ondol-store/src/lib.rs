//! The operational store of Ondol (DESIGN §1, §3, §6): one SQLite file in WAL
//! mode holding the roster, the embedded time-series sink, rejections,
//! device state, activity times and the per-resident-day rollups.
//!
//! The API is synchronous: callers run it on a dedicated thread (ingest's
//! writer) or in `spawn_blocking`. A [`Store`] owns one connection; it is
//! `Send`, not `Sync`.
//!
//! - [`Store`] (this file): opening, migrating, importing the roster,
//!   committing ingest batches.
//! - [`admin`]: registry changes through the admin API (they win over
//!   later roster file imports) and the roster version.
//! - [`alerts`]: alerts, transitions, the notification outbox and
//!   alerting's timer state.
//! - [`alert_events`]: the event JSON staff apps and webhooks receive, and
//!   who heard of an alert (so whoever was paged hears its end).
//! - [`api_rows`]: the caller's staff row and pages of alerts for the HTTP API.
//! - `checkpoint`: the ingest writer's page cache and background WAL
//!   checkpoints ([`Checkpointer`]).
//! - [`audit`]: the append-only, hash-chained audit log of resident data
//!   reads and changes.
//! - [`batch`]: the batch types ingest fills and how a batch is committed.
//! - [`feed`]: the alerting feed each batch commit writes, which alerting
//!   consumes as a queue (whichever process committed the batch).
//! - [`processes`]: the processes sharing the store: ingest workers'
//!   heartbeats and conditions, and the one alerting process's lease.
//! - [`sink`]: the time-series sink seam ([`TimeseriesSink`]) and the
//!   embedded SQLite sink.
//! - [`influx`]: the InfluxDB sink (`/api/v2/write`) with its on-disk spool.
//! - [`query`]: read helpers and their row types.
//! - [`bulk`]: bulk loading (synthetic history) and the record of backfills.
//! - [`retention`]: deleting raw readings and rejections past their
//!   retention period; rollups are never touched.
//! - [`roster_file`]: parsing and checking the roster TOML file.
//! - `roster_db`: the roster tables (import rules are documented there).
//! - `credentials`: device credential hashes, revocation, provisioning.
//! - `schema`: the migrations; [`SCHEMA_VERSION`] is the newest this code knows.
//!
//! Durability: `synchronous = FULL`, so a batch whose commit returned `Ok`
//! survives a power loss, not only a crash of the process. Ingest publishes a
//! receipt only after that.

pub mod admin;
pub mod alert_events;
pub mod alerts;
pub mod api_rows;
pub mod audit;
pub mod batch;
pub mod bulk;
mod checkpoint;
mod credentials;
mod error;
pub mod feed;
pub mod influx;
pub mod processes;
pub mod query;
pub mod report_rows;
pub mod retention;
mod roster_db;
pub mod roster_file;
mod schema;
pub mod sink;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use ondol_model::reading::ReadingType;
use ondol_model::roster::Roster;

pub use batch::{Batch, BatchOutcome, NewReading, NewRejection, StatusUpdate};
pub use checkpoint::Checkpointer;
pub use credentials::{AddDevice, DeviceCredentialRow};
pub use error::StoreError;
pub use influx::{InfluxConfig, InfluxSink};
pub use query::{
    DeviceStateRow, ReadingCursor, ReadingsPage, ReadingsQuery, ResidentActivityRow,
    ResidentDayRow, StoredReading, StoredRejection,
};
pub use roster_db::ImportSummary;
pub use roster_file::{RosterProblem, parse_roster};
pub use schema::SCHEMA_VERSION;
pub use sink::{EmbeddedSink, TimeseriesSink};

/// How long a statement waits for another connection's lock before failing
/// with a (retryable) busy error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The operational store: one SQLite connection and the time-series sink.
pub struct Store {
    conn: Connection,
    sink: Box<dyn TimeseriesSink>,
    /// For messages; `:memory:` for an in-memory store.
    path: PathBuf,
    /// Whether batch commits write the alerting feed ([`feed`]), and the
    /// vitals whose readings go into it. Off unless ingest turns it on: a
    /// backfill of history must page nobody.
    feed: Option<BTreeSet<ReadingType>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating the file and its parent directory if needed) the store
    /// at `path` with the embedded sink, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_sink(path, Box::new(EmbeddedSink))
    }

    /// Like [`Store::open`], with another time-series sink.
    pub fn open_with_sink(path: &Path, sink: Box<dyn TimeseriesSink>) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_failed = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_failed)?;
        configure(&conn).map_err(open_failed)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_failed)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable (synchronous = FULL), but readers block the writer.
            tracing::warn!(path = %path.display(), journal_mode = %mode, "SQLite refused WAL mode");
        }
        Self::finish_open(conn, sink, path.to_path_buf())
    }

    /// A store that lives in memory only, for tests of other crates.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        configure(&conn).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Self::finish_open(conn, Box::new(EmbeddedSink), path)
    }

    fn finish_open(
        mut conn: Connection,
        sink: Box<dyn TimeseriesSink>,
        path: PathBuf,
    ) -> Result<Store, StoreError> {
        schema::migrate(&mut conn, &path)?;
        Ok(Store {
            conn,
            sink,
            path,
            feed: None,
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(StoreError::sqlite("reading the schema version"))
    }

    /// Imports `roster` in one transaction: residents, devices with their
    /// bindings, staff and away periods are added or updated; entries absent
    /// from `roster` are kept (see `roster_db` for the exact rules).
    pub fn import_roster(&mut self, roster: &Roster) -> Result<ImportSummary, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the roster import"))?;
        let summary = roster_db::import(&tx, roster, roster_db::AdminChanges::Keep)?;
        tx.commit()
            .map_err(StoreError::sqlite("committing the roster import"))?;
        Ok(summary)
    }

    /// The roster's revision: it changes whenever anything in the roster
    /// tables does (residents, away periods, devices, bindings, staff,
    /// credentials). One cheap read to tell whether to reload the roster.
    pub fn roster_revision(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT revision FROM roster_revision WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("reading the roster revision"))
    }

    /// The whole stored roster as domain types, each list sorted by id.
    pub fn load_roster(&self) -> Result<Roster, StoreError> {
        roster_db::load(&self.conn)
    }

    /// Commits one ingest batch in one transaction: readings through the
    /// sink (a reading already stored, or earlier in the same batch, is a
    /// duplicate), then the rollups and activity times for the new readings
    /// only, the rejections, the device statuses and the alerting feed's
    /// rows for the batch ([`feed`]). Either all of it is
    /// durable when this returns `Ok`, or none of it is.
    pub fn commit_batch(&mut self, batch: &Batch) -> Result<BatchOutcome, StoreError> {
        if batch.readings.is_empty() && batch.rejections.is_empty() && batch.statuses.is_empty() {
            return Ok(BatchOutcome {
                inserted: Vec::new(),
            });
        }
        let Store {
            conn, sink, feed, ..
        } = self;
        // IMMEDIATE takes the write lock up front, so a busy database makes
        // BEGIN wait (busy_timeout) instead of failing midway.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting a batch"))?;
        let inserted = sink.write(&tx, &batch.readings)?;
        if inserted.len() != batch.readings.len() {
            return Err(StoreError::Sink {
                detail: format!(
                    "the sink answered for {} readings out of {}",
                    inserted.len(),
                    batch.readings.len()
                ),
                retryable: false,
            });
        }
        batch::write_rest(&tx, batch, &inserted)?;
        if let Some(vitals) = feed {
            feed::write(&tx, batch, &inserted, vitals)?;
        }
        tx.commit()
            .map_err(StoreError::sqlite("committing a batch"))?;
        Ok(BatchOutcome { inserted })
    }
}

/// Connection settings that apply to every connection (not stored in the file).
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: the WAL is synced at every commit, so a receipted reading
    // survives power loss (NORMAL only survives a crash of the process).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}
