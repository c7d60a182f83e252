//! The durable on-disk spool: batches of line protocol the sink could not
//! deliver, kept in the data directory until the replayer delivers them.
//!
//! One file per batch, named `<seq>-<created_ms>.lp` with a zero-padded
//! sequence number, so a directory listing is the replay order. A batch is
//! written to a `.tmp` file, synced, renamed and the directory synced: once
//! [`Spool::push`] returns `Ok` the batch survives a crash or power loss, and
//! a crash mid-write leaves only a `.tmp` file that the next start deletes
//! (its readings were not acknowledged, so devices resend them).

use std::collections::VecDeque;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Why a batch could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the spool {dir} is full ({bytes} of {max_bytes} bytes); holding intake until the sink drains it"
    )]
    Full {
        dir: PathBuf,
        bytes: u64,
        max_bytes: u64,
    },
    #[error("spool I/O failed at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One spooled batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBatch {
    pub seq: u64,
    pub created_ms: i64,
    pub bytes: u64,
    pub path: PathBuf,
}

/// How much is waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDepth {
    pub batches: usize,
    pub bytes: u64,
    /// When the oldest waiting batch was spooled.
    pub oldest_created_ms: Option<i64>,
}

#[derive(Debug)]
struct State {
    batches: VecDeque<SpooledBatch>,
    bytes: u64,
    next_seq: u64,
    stopping: bool,
}

/// The spool directory and what is in it; shared by the sink (which pushes)
/// and the replayer (which pops).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    changed: Condvar,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`, picking up batches left by an
    /// earlier run and deleting half-written ones.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut batches = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let Some(stem) = name.strip_suffix(".lp") else {
                continue;
            };
            let Some((seq, created)) = stem.split_once('-') else {
                continue;
            };
            let (Ok(seq), Ok(created_ms)) = (seq.parse::<u64>(), created.parse::<i64>()) else {
                continue;
            };
            let bytes = entry.metadata().map_err(io(&path))?.len();
            batches.push(SpooledBatch {
                seq,
                created_ms,
                bytes,
                path,
            });
        }
        batches.sort_by_key(|b| b.seq);
        let next_seq = batches.last().map_or(0, |b| b.seq + 1);
        let bytes = batches.iter().map(|b| b.bytes).sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                batches: batches.into(),
                bytes,
                next_seq,
                stopping: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn depth(&self) -> SpoolDepth {
        let state = self.lock();
        SpoolDepth {
            batches: state.batches.len(),
            bytes: state.bytes,
            oldest_created_ms: state.batches.front().map(|b| b.created_ms),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().batches.is_empty()
    }

    /// Durably appends one batch. Refuses when it would take the spool past
    /// its bound (a single batch larger than the bound is accepted into an
    /// empty spool, so a bound smaller than a batch cannot wedge intake).
    pub fn push(&self, body: &[u8], created_ms: i64) -> Result<SpooledBatch, SpoolError> {
        let mut state = self.lock();
        let bytes = body.len() as u64;
        if !state.batches.is_empty() && state.bytes + bytes > self.max_bytes {
            return Err(SpoolError::Full {
                dir: self.dir.clone(),
                bytes: state.bytes,
                max_bytes: self.max_bytes,
            });
        }
        let seq = state.next_seq;
        let path = self.dir.join(format!("{seq:020}-{created_ms}.lp"));
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(body)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolError::Io { path, source });
        }
        state.next_seq += 1;
        state.bytes += bytes;
        let batch = SpooledBatch {
            seq,
            created_ms,
            bytes,
            path,
        };
        state.batches.push_back(batch.clone());
        drop(state);
        self.changed.notify_all();
        Ok(batch)
    }

    /// The oldest batch, waiting up to `timeout` for one; `None` on timeout
    /// or once [`Spool::stop`] was called.
    pub fn oldest(&self, timeout: Duration) -> Option<SpooledBatch> {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.batches.is_empty() && !s.stopping)
            .unwrap_or_else(|p| p.into_inner());
        if state.stopping {
            return None;
        }
        state.batches.front().cloned()
    }

    /// Reads a batch's lines.
    pub fn read(&self, batch: &SpooledBatch) -> Result<Vec<u8>, SpoolError> {
        fs::read(&batch.path).map_err(io(&batch.path))
    }

    /// Deletes a delivered batch (the oldest).
    pub fn remove(&self, batch: &SpooledBatch) -> Result<(), SpoolError> {
        fs::remove_file(&batch.path).map_err(io(&batch.path))?;
        let mut state = self.lock();
        if let Some(position) = state.batches.iter().position(|b| b.seq == batch.seq)
            && let Some(removed) = state.batches.remove(position)
        {
            state.bytes -= removed.bytes;
        }
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    /// Sleeps up to `timeout`, waking early when [`Spool::stop`] is called.
    /// Returns `false` once stopping.
    pub fn pause(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.stopping)
            .unwrap_or_else(|p| p.into_inner());
        !state.stopping
    }

    /// Wakes and ends the replayer; what is spooled stays on disk.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_a_reopen_in_order_and_half_written_ones_are_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("open");
        for i in 0..12 {
            spool
                .push(format!("line {i}\n").as_bytes(), 1000 + i)
                .expect("push");
        }
        let first = spool.oldest(Duration::ZERO).expect("a batch");
        spool.remove(&first).expect("remove");
        drop(spool);
        fs::write(dir.path().join("00000000000000000099-5.tmp"), b"partial").expect("write");

        let spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(spool.depth().batches, 11);
        assert_eq!(spool.depth().oldest_created_ms, Some(1001));
        let mut seen = Vec::new();
        while let Some(batch) = spool.oldest(Duration::ZERO) {
            seen.push(String::from_utf8(spool.read(&batch).expect("read")).expect("utf8"));
            spool.remove(&batch).expect("remove");
        }
        let expected: Vec<String> = (1..12).map(|i| format!("line {i}\n")).collect();
        assert_eq!(seen, expected);
        let pushed = spool.push(b"after\n", 9).expect("push");
        assert_eq!(pushed.seq, 12, "numbering continues after a restart");
        assert!(!dir.path().join("00000000000000000099-5.tmp").exists());
    }

    #[test]
    fn the_bound_refuses_new_batches_until_old_ones_drain() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = Spool::open(dir.path(), 10).expect("open");
        spool
            .push(b"0123456789abcdef", 1)
            .expect("one oversized batch fits an empty spool");
        assert!(matches!(spool.push(b"x", 2), Err(SpoolError::Full { .. })));
        let oldest = spool.oldest(Duration::ZERO).expect("batch");
        spool.remove(&oldest).expect("remove");
        spool.push(b"x", 3).expect("room again");
        assert_eq!(spool.depth().bytes, 1);
    }

    #[test]
    fn stop_wakes_a_waiting_replayer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = std::sync::Arc::new(Spool::open(dir.path(), 10).expect("open"));
        let waiter = std::thread::spawn({
            let spool = spool.clone();
            move || spool.oldest(Duration::from_secs(600))
        });
        spool.stop();
        assert_eq!(waiter.join().expect("joined"), None);
        assert!(!spool.pause(Duration::from_secs(600)));
    }
}
