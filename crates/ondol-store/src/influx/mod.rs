//! The InfluxDB sink: raw readings to any server that speaks InfluxDB's
//! `/api/v2/write` (InfluxDB 2, InfluxDB 3, VictoriaMetrics), the dedupe
//! keys in SQLite (table `reading_keys`), and a durable spool in between.
//!
//! Inside the batch transaction, [`InfluxSink::write`]:
//!
//! 1. inserts each reading's dedupe key (device, type, sensor, time); a key
//!    already there marks a duplicate, which is not written again;
//! 2. writes the new readings as line protocol ([`line`]) in one request;
//! 3. if that fails for a reason worth retrying (network, timeout, 429, 5xx,
//!    and also 401/403, which hold readings rather than drop them), appends
//!    the lines to the spool ([`spool`]) instead, synced to disk;
//! 4. returns, and the store commits the keys with the rollups.
//!
//! So a reading is in the sink or the spool before its key commits, and the
//! key commits before ingest publishes its receipt. A crash between 2–3 and
//! 4 leaves points without keys: the devices resend, the keys are new, the
//! same points (same series, same nanosecond timestamp) are written again
//! and the server keeps one.
//!
//! While the spool holds anything, new batches go to its end, and a
//! replayer thread delivers it oldest first with jittered exponential
//! backoff: order is kept. A full spool refuses the batch with a retryable
//! error: ingest holds its receipts and retries, devices keep their
//! messages, nothing acknowledged is lost.
//!
//! Lines the server refuses (400, 413, 422) are sent again one by one; each
//! line refused on its own is dead-lettered, with the server's reason, to
//! `dead-letters.jsonl` in the spool directory, and counted. Such a reading
//! is kept (acknowledged) but needs an operator; with our own encoder it
//! should never happen.
//!
//! `influxdb2` exposes the status and body of an error response but not its
//! headers, so a 429's `Retry-After` is not read: the backoff (up to
//! `retry_max`) spaces the attempts instead.

mod http;
pub mod line;
pub mod spool;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ondol_model::backoff::Backoff;
use ondol_model::condition::{ConditionFlag, OutageCause, SystemOutage, Transition};
use rusqlite::{OptionalExtension, Transaction};
use serde::Deserialize;

use crate::batch::NewReading;
use crate::error::StoreError;
use crate::sink::TimeseriesSink;

pub use http::WriteFailure;
pub use spool::{Spool, SpoolDepth, SpoolError};

pub const POINTS_WRITTEN: &str = "ondol_sink_points_written_total";
pub const POINTS_SPOOLED: &str = "ondol_sink_points_spooled_total";
pub const DEAD_LETTERS: &str = "ondol_sink_dead_letters_total";
pub const WRITE_FAILURES: &str = "ondol_sink_write_failures_total";
pub const SPOOL_BATCHES: &str = "ondol_sink_spool_batches";
pub const SPOOL_BYTES: &str = "ondol_sink_spool_bytes";
pub const SPOOL_OLDEST_AGE_SECONDS: &str = "ondol_sink_spool_oldest_age_seconds";
pub const SYSTEM_OUTAGE: &str = "ondol_system_outage";

/// `[timeseries.influxdb]`. Defaults match `config/ondol.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://influxdb:8086`; no path (the client replaces it).
    pub url: String,
    pub org: String,
    pub bucket: String,
    /// The environment variable holding the API token (never the token).
    pub token_env: String,
    /// Longest wait for one write request.
    #[serde(with = "ondol_model::serde_duration")]
    pub request_timeout: Duration,
    /// First and longest pause between replays of the spool.
    #[serde(with = "ondol_model::serde_duration")]
    pub retry_initial: Duration,
    #[serde(with = "ondol_model::serde_duration")]
    pub retry_max: Duration,
    /// Bound of the on-disk spool; beyond it, intake is held.
    pub spool_max_bytes: u64,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8086".into(),
            org: "ondol".into(),
            bucket: "ondol".into(),
            token_env: "ONDOL_INFLUXDB_TOKEN".into(),
            request_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            spool_max_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl InfluxConfig {
    /// Every problem, as `(key, message)` pairs (keys relative to the section).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match reqwest011::Url::parse(&self.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                problems.push(("url", format!("{:?} must start with http:// or https://", self.url)));
            }
            Ok(url) if !matches!(url.path(), "" | "/") => problems.push((
                "url",
                format!(
                    "{:?} has a path; the client always writes to /api/v2/write at the root, so give only scheme, host and port",
                    self.url
                ),
            )),
            Ok(_) => {}
            Err(error) => problems.push(("url", format!("{:?} is not a URL: {error}", self.url))),
        }
        if self.org.is_empty() {
            problems.push(("org", "must not be empty".into()));
        }
        if self.bucket.is_empty() {
            problems.push(("bucket", "must not be empty".into()));
        }
        if self.request_timeout.is_zero() {
            problems.push(("request_timeout", "must be more than 0s".into()));
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            problems.push((
                "retry_max",
                "retry_initial must be more than 0s and retry_max at least retry_initial".into(),
            ));
        }
        if self.spool_max_bytes < 1024 * 1024 {
            problems.push(("spool_max_bytes", "must be at least 1 MiB".into()));
        }
        problems
    }
}

/// State shared by the sink and its replayer thread.
#[derive(Debug)]
struct Shared {
    spool: Spool,
    condition: ConditionFlag,
    dead_letters: PathBuf,
}

impl Shared {
    fn publish_depth(&self) {
        let depth = self.spool.depth();
        metrics::gauge!(SPOOL_BATCHES).set(depth.batches as f64);
        metrics::gauge!(SPOOL_BYTES).set(depth.bytes as f64);
        let age = depth.oldest_created_ms.map_or(0.0, |created| {
            (Timestamp::now().as_millisecond() - created).max(0) as f64 / 1000.0
        });
        metrics::gauge!(SPOOL_OLDEST_AGE_SECONDS).set(age);
    }

    fn failed(&self, failure: &WriteFailure) {
        let kind = match failure {
            WriteFailure::Refused { .. } => "refused",
            WriteFailure::Unauthorized { .. } => "unauthorized",
            WriteFailure::Transient { .. } => "transient",
        };
        metrics::counter!(WRITE_FAILURES, "kind" => kind).increment(1);
        let cause = match failure {
            WriteFailure::Unauthorized { .. } => OutageCause::SinkUnauthorized,
            _ => OutageCause::SinkUnreachable,
        };
        let detail = failure.to_string();
        if self.condition.raise(cause, Timestamp::now(), &detail) == Transition::Raised {
            metrics::gauge!(SYSTEM_OUTAGE, "cause" => cause.as_str()).set(1.0);
            match cause {
                OutageCause::SinkUnauthorized => tracing::error!(
                    condition = "system_outage",
                    cause = cause.as_str(),
                    error = %detail,
                    "the time-series sink refuses our token; readings are held in the spool until the token is fixed (key timeseries.influxdb.token_env)"
                ),
                _ => tracing::warn!(
                    condition = "system_outage",
                    cause = cause.as_str(),
                    error = %detail,
                    "the time-series sink is unreachable; readings go to the on-disk spool"
                ),
            }
        }
    }

    fn delivered(&self) {
        if let Some(outage) = self.condition.get()
            && self.condition.clear() == Transition::Cleared
        {
            metrics::gauge!(SYSTEM_OUTAGE, "cause" => outage.cause.as_str()).set(0.0);
            tracing::info!(
                cause = outage.cause.as_str(),
                "the time-series sink accepts writes again"
            );
        }
    }

    /// Appends refused lines with the server's reason; synced before return.
    fn dead_letter(&self, lines: &[(&str, String)]) -> Result<(), std::io::Error> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_letters)?;
        let mut text = String::new();
        for (line, reason) in lines {
            let record = serde_json::json!({
                "at": Timestamp::now().to_string(),
                "reason": reason,
                "line": line,
            });
            text.push_str(&record.to_string());
            text.push('\n');
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        metrics::counter!(DEAD_LETTERS).increment(lines.len() as u64);
        tracing::error!(
            lines = lines.len(),
            file = %self.dead_letters.display(),
            "the time-series sink refused readings for good; they are kept in the dead-letter file"
        );
        Ok(())
    }

    /// Writes `body`; when the server refuses it, line by line, dead-lettering
    /// what is refused alone. `Err` = nothing is known to be safe: retry all.
    fn deliver(&self, writer: &http::HttpWriter, body: &[u8]) -> Result<(), WriteFailure> {
        let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
        match writer.send(body.to_vec()) {
            Ok(()) => {
                metrics::counter!(POINTS_WRITTEN).increment(lines);
                return Ok(());
            }
            Err(WriteFailure::Refused { status, message }) => {
                tracing::warn!(status, error = %message, lines, "the sink refused a batch; retrying its lines one by one");
            }
            Err(failure) => return Err(failure),
        }
        let text = String::from_utf8_lossy(body);
        let mut refused = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            match writer.send(format!("{line}\n").into_bytes()) {
                Ok(()) => metrics::counter!(POINTS_WRITTEN).increment(1),
                Err(WriteFailure::Refused { status, message }) => {
                    refused.push((line, format!("HTTP {status}: {message}")));
                }
                Err(failure) => return Err(failure),
            }
        }
        self.dead_letter(&refused)
            .map_err(|error| WriteFailure::Transient {
                reason: format!("cannot write the dead-letter file: {error}"),
            })
    }
}

/// Raw readings to InfluxDB, dedupe keys in SQLite, a spool in between.
#[derive(Debug)]
pub struct InfluxSink {
    shared: Arc<Shared>,
    writer: http::HttpWriter,
}

impl InfluxSink {
    /// Connects lazily (nothing is sent until the first batch), opens the
    /// spool in `spool_dir` and starts the replayer thread, which delivers
    /// what an earlier run left there.
    pub fn open(
        config: &InfluxConfig,
        token: &str,
        spool_dir: &Path,
    ) -> Result<InfluxSink, StoreError> {
        let sink_error = |detail: String| StoreError::Sink {
            detail,
            retryable: false,
        };
        let runtime = http::OwnedRuntime::new()
            .map_err(|e| sink_error(format!("cannot start the HTTP client runtime: {e}")))?;
        let writer = http::HttpWriter::new(
            &config.url,
            &config.org,
            &config.bucket,
            token,
            config.request_timeout,
            runtime,
        )
        .map_err(sink_error)?;
        let spool = Spool::open(spool_dir, config.spool_max_bytes)
            .map_err(|e| sink_error(e.to_string()))?;
        let depth = spool.depth();
        if depth.batches > 0 {
            tracing::info!(
                batches = depth.batches,
                bytes = depth.bytes,
                "replaying the time-series spool left by an earlier run"
            );
        }
        let shared = Arc::new(Shared {
            dead_letters: spool_dir.join("dead-letters.jsonl"),
            spool,
            condition: ConditionFlag::default(),
        });
        shared.publish_depth();
        std::thread::Builder::new()
            .name("ondol-spool".into())
            .spawn({
                let shared = shared.clone();
                let writer = writer.clone();
                let backoff = Backoff::new(config.retry_initial, config.retry_max);
                move || replay(&shared, &writer, backoff)
            })
            .map_err(|e| sink_error(format!("cannot start the spool replayer: {e}")))?;
        Ok(InfluxSink { shared, writer })
    }

    /// What waits in the spool.
    pub fn spool_depth(&self) -> SpoolDepth {
        self.shared.spool.depth()
    }

    /// The sink's `system_outage` condition, if raised.
    pub fn outage(&self) -> Option<SystemOutage> {
        self.shared.condition.get()
    }

    /// A handle to watch the spool and the condition from another thread.
    pub fn monitor(&self) -> SinkMonitor {
        SinkMonitor {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for InfluxSink {
    fn drop(&mut self) {
        // What is spooled stays on disk for the next run.
        self.shared.spool.stop();
    }
}

/// Read-only view of a running [`InfluxSink`].
#[derive(Debug, Clone)]
pub struct SinkMonitor {
    shared: Arc<Shared>,
}

impl SinkMonitor {
    pub fn spool_depth(&self) -> SpoolDepth {
        self.shared.spool.depth()
    }

    pub fn outage(&self) -> Option<SystemOutage> {
        self.shared.condition.get()
    }
}

impl TimeseriesSink for InfluxSink {
    fn write(
        &mut self,
        tx: &Transaction<'_>,
        readings: &[NewReading],
    ) -> Result<Vec<bool>, StoreError> {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO reading_keys (device_id, reading_type, sensor, ts_ms, received_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (device_id, reading_type, sensor, ts_ms) DO NOTHING",
            )
            .map_err(StoreError::sqlite("preparing the reading key insert"))?;
        let mut region_of = tx
            .prepare_cached("SELECT region FROM residents WHERE id = ?1")
            .map_err(StoreError::sqlite("preparing the region lookup"))?;
        let mut regions: HashMap<&str, String> = HashMap::new();
        let mut body = String::new();
        let mut unencodable = Vec::new();
        let mut inserted = Vec::with_capacity(readings.len());
        for new in readings {
            let reading = &new.reading;
            let changed = insert
                .execute(rusqlite::params![
                    new.device_id.as_str(),
                    reading.reading_type.as_str(),
                    reading.sensor.as_deref().unwrap_or(""),
                    reading.ts.as_millisecond(),
                    new.received_at.as_millisecond(),
                ])
                .map_err(StoreError::sqlite("inserting a reading key"))?;
            let is_new = changed == 1;
            inserted.push(is_new);
            if !is_new {
                continue;
            }
            let resident = new.resident_id.as_str();
            if !regions.contains_key(resident) {
                let region: Option<String> = region_of
                    .query_row([resident], |row| row.get(0))
                    .optional()
                    .map_err(StoreError::sqlite("looking up a resident's region"))?;
                regions.insert(resident, region.unwrap_or_default());
            }
            let region = regions.get(resident).map_or("", String::as_str);
            if let Err(line::Unencodable(reason)) = line::encode(new, region, &mut body) {
                unencodable.push((
                    format!(
                        "device={} type={}",
                        new.device_id,
                        reading.reading_type.as_str()
                    ),
                    reason,
                ));
            }
        }
        if !unencodable.is_empty() {
            let refs: Vec<(&str, String)> = unencodable
                .iter()
                .map(|(l, r)| (l.as_str(), r.clone()))
                .collect();
            self.shared
                .dead_letter(&refs)
                .map_err(|e| StoreError::Sink {
                    detail: format!("cannot write the dead-letter file: {e}"),
                    retryable: true,
                })?;
        }
        if body.is_empty() {
            return Ok(inserted);
        }
        let body = body.into_bytes();
        if self.shared.spool.is_empty() {
            match self.shared.deliver(&self.writer, &body) {
                Ok(()) => {
                    self.shared.delivered();
                    return Ok(inserted);
                }
                Err(failure) => self.shared.failed(&failure),
            }
        }
        let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
        let spooled = self
            .shared
            .spool
            .push(&body, Timestamp::now().as_millisecond());
        self.shared.publish_depth();
        match spooled {
            Ok(_) => {
                metrics::counter!(POINTS_SPOOLED).increment(lines);
                Ok(inserted)
            }
            Err(error) => Err(StoreError::Sink {
                detail: error.to_string(),
                retryable: true,
            }),
        }
    }
}

/// The replayer: delivers the spool oldest first until the sink is dropped.
fn replay(shared: &Shared, writer: &http::HttpWriter, mut backoff: Backoff) {
    const IDLE: Duration = Duration::from_secs(5);
    loop {
        let Some(batch) = shared.spool.oldest(IDLE) else {
            if !shared.spool.pause(Duration::ZERO) {
                return;
            }
            shared.publish_depth();
            continue;
        };
        let result = shared
            .spool
            .read(&batch)
            .map_err(|e| WriteFailure::Transient {
                reason: e.to_string(),
            })
            .and_then(|body| shared.deliver(writer, &body));
        match result {
            Ok(()) => {
                if let Err(error) = shared.spool.remove(&batch) {
                    // Delivered again later, harmlessly (same points).
                    tracing::warn!(error = %error, "cannot delete a delivered spool batch");
                }
                backoff.reset();
                shared.delivered();
                shared.publish_depth();
                if shared.spool.is_empty() {
                    tracing::info!("the time-series spool is drained");
                }
            }
            Err(failure) => {
                shared.failed(&failure);
                shared.publish_depth();
                let wait = backoff.next_delay(jitter());
                tracing::debug!(error = %failure, retry_in = ?wait, "spool replay failed");
                if !shared.spool.pause(wait) {
                    return;
                }
            }
        }
    }
}

/// A uniform-enough draw from [0, 1) without a random number generator:
/// only spreads retries, needs no quality.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}
