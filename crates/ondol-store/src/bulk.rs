//! Bulk loading: synthetic history written by `ondol simulate backfill`
//! through the ordinary write paths (ingest batches, alert lifecycle), and
//! the record of which backfill filled a store.
//!
//! A backfill writes hundreds of thousands of small transactions (every
//! alert change is one); with `synchronous = FULL` each would wait for an
//! fsync. [`Store::set_bulk_load`] relaxes that for the run: WAL with
//! `synchronous = OFF` still never corrupts the file, a crash of the process
//! loses nothing committed, and a power cut can lose only the last
//! transactions of a run that is repeatable anyway. Turning it off again
//! checkpoints the WAL into the database file with a full sync.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use crate::Store;
use crate::error::StoreError;

/// A backfill recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRecord {
    /// The run's parameters as one canonical string.
    pub params: String,
    pub started_at: Timestamp,
    /// `None` while it has not finished.
    pub finished_at: Option<Timestamp>,
}

impl Store {
    /// Relaxes (`true`) or restores (`false`) durability for a bulk load;
    /// see the module doc. Restoring also checkpoints the WAL with a sync.
    pub fn set_bulk_load(&mut self, on: bool) -> Result<(), StoreError> {
        let level = if on { "OFF" } else { "FULL" };
        self.conn
            .pragma_update(None, "synchronous", level)
            .map_err(StoreError::sqlite("setting the sync level"))?;
        if !on {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(StoreError::sqlite("checkpointing after a bulk load"))?;
        }
        Ok(())
    }

    /// Every backfill recorded in this store, oldest first.
    pub fn backfills(&self) -> Result<Vec<BackfillRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT params, started_ms, finished_ms FROM backfills ORDER BY started_ms, params",
            )
            .map_err(StoreError::sqlite("preparing the backfill query"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(StoreError::sqlite("reading backfills"))?;
        rows.map(|row| {
            let (params, started, finished) =
                row.map_err(StoreError::sqlite("reading backfills"))?;
            let key = || params.clone();
            Ok(BackfillRecord {
                started_at: crate::roster_db::timestamp(started, "backfills", key)?,
                finished_at: finished
                    .map(|ms| crate::roster_db::timestamp(ms, "backfills", key))
                    .transpose()?,
                params,
            })
        })
        .collect()
    }

    /// Records that the backfill `params` starts (or starts again) at `at`;
    /// an earlier record of the same run keeps its start time.
    pub fn backfill_started(&mut self, params: &str, at: Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO backfills (params, started_ms) VALUES (?1, ?2) \
                 ON CONFLICT (params) DO NOTHING",
                params![params, at.as_millisecond()],
            )
            .map_err(StoreError::sqlite("recording a backfill"))?;
        Ok(())
    }

    /// Records that the backfill `params` finished at `at`.
    pub fn backfill_finished(&mut self, params: &str, at: Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE backfills SET finished_ms = ?2 WHERE params = ?1",
                params![params, at.as_millisecond()],
            )
            .map_err(StoreError::sqlite("recording the end of a backfill"))?;
        Ok(())
    }

    /// Whether any resident-day rollup exists: a store that has seen data.
    pub fn has_rollups(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM resident_days LIMIT 1", [], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(StoreError::sqlite("looking for rollups"))
    }
}
