//! Tuning the one connection that writes ingest batches: a larger page
//! cache, and WAL checkpoints on a thread of their own.
//!
//! With SQLite's default, the commit that pushes the WAL past 1,000 pages
//! copies the WAL back into the database file itself, so every few batches
//! one batch (and every receipt waiting on it) pays for a checkpoint; under
//! load that was an eighth of the writer's time. Here a background
//! connection checkpoints passively (never waiting for the writer or
//! readers) every [`CHECKPOINT_EVERY`], and the writer's own automatic
//! checkpoint stays as a backstop at [`BACKSTOP_PAGES`], so the WAL stays
//! bounded even if the background thread cannot keep up or is gone.
//! Durability is unchanged: commits are made durable by the WAL's fsync
//! (`synchronous = FULL`); a checkpoint only moves committed pages.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Store, StoreError, configure};

/// How often the background connection checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// WAL size (pages of 4 KiB) at which the writer checkpoints by itself
/// after all: about 64 MiB, 16 times SQLite's default.
pub const BACKSTOP_PAGES: i64 = 16_000;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB). Ingest's
/// inserts touch the right edge of every device's key range and every
/// active resident-day; with thousands of devices that working set is
/// larger than the default, and misses cost a read per page.
pub const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// Checkpoints the store's WAL in the background while it lives; stops (after
/// one last checkpoint) when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Store {
    /// Makes this connection the ingest writer's: a larger page cache and
    /// checkpoints moved to a background thread (see the module docs). An
    /// in-memory store has no WAL: nothing is started.
    pub fn tune_for_ingest(&mut self) -> Result<Checkpointer, StoreError> {
        let tuned = |source| StoreError::Open {
            path: self.path.clone(),
            source,
        };
        self.conn
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(tuned)?;
        if self.path == Path::new(":memory:") {
            return Ok(Checkpointer {
                stop: None,
                thread: None,
            });
        }
        let background = Connection::open(&self.path).map_err(tuned)?;
        configure(&background).map_err(tuned)?;
        let (stop, stopped) = mpsc::channel();
        let path = self.path.clone();
        let spawned = thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_until_stopped(&background, &path, &stopped));
        let thread = match spawned {
            Ok(thread) => thread,
            Err(error) => {
                // The writer keeps checkpointing by itself, as by default.
                tracing::warn!(error = %error, "cannot start the background WAL checkpoint thread");
                return Ok(Checkpointer {
                    stop: None,
                    thread: None,
                });
            }
        };
        self.conn
            .pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
            .map_err(tuned)?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn checkpoint_until_stopped(conn: &Connection, path: &Path, stopped: &mpsc::Receiver<()>) {
    loop {
        let last = !matches!(
            stopped.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        // (busy, WAL frames, frames copied); busy only means a reader or the
        // writer held part of it back: the next round continues.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match result {
            Ok((frames, copied)) => {
                tracing::trace!(frames, copied, "WAL checkpoint");
            }
            Err(error) => {
                // The writer's own backstop checkpoint keeps the WAL bounded.
                tracing::warn!(path = %path.display(), error = %error, "background WAL checkpoint failed");
            }
        }
        if last {
            return;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn wal_pages(path: &Path) -> u64 {
        let wal = path.with_extension("db-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len() / 4096)
    }

    /// The writer no longer checkpoints after 1,000 pages, and the background
    /// thread does.
    #[test]
    fn the_background_thread_checkpoints_what_the_writer_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ondol.db");
        let mut store = Store::open(&path).unwrap();
        let checkpointer = store.tune_for_ingest().unwrap();
        let cache: i64 = store
            .conn
            .pragma_query_value(None, "cache_size", |row| row.get(0))
            .unwrap();
        assert_eq!(cache, -WRITER_CACHE_KIB);
        let autocheckpoint: i64 = store
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, BACKSTOP_PAGES);

        // More than SQLite's default 1,000 pages of WAL in one go.
        store
            .conn
            .execute_batch(
                "CREATE TABLE filler (x BLOB); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
                 INSERT INTO filler SELECT randomblob(3000) FROM n;",
            )
            .unwrap();
        assert!(wal_pages(&path) > 1_000, "the WAL holds the new pages");

        let db_pages = || std::fs::metadata(&path).unwrap().len() / 4096;
        // The writer's backstop (16,000 pages) was not reached, so what is
        // in the database file now was put there by the background thread,
        // at the latest in its last round when stopped. (Closing the last
        // connection would checkpoint too, so the store stays open here.)
        drop(checkpointer);
        assert!(db_pages() > 1_000, "the background thread checkpointed");
        let rows: i64 = store
            .conn
            .query_row("SELECT count(*) FROM filler", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 2000);
    }
}
