//! The ingest worker: device messages in, validated readings on disk,
//! receipts back to the devices.
//!
//! ```text
//! source ──Inbound──▶ processor ──PendingBatch──▶ writer ──▶ receipts
//! (broker link)      (judge, batch)             (one SQLite transaction)
//! ```
//!
//! Each stage is a task joined to the next by a bounded channel, so a slow
//! disk slows reading from the broker instead of growing memory. A receipt is
//! published only after the transaction holding its readings has committed:
//! that is the acknowledgement of the delivery guarantee (DESIGN §2).
//!
//! - [`config`]: the `[ingest]` section.
//! - [`judge`]: topic, device, decoding and roster checks of one message.
//! - [`source`]: reading from the embedded broker's link or an external broker.
//! - [`writer`]: batching, committing and publishing receipts.
//! - [`roster_index`]: the roster lookups ingest needs.
//! - [`telemetry`]: the counters behind metrics and the progress log.
//! - [`watchdog`]: `system_outage` when nothing arrives while devices are
//!   expected, or when messages wait too long in the pipeline.

pub mod config;
pub mod judge;
pub mod rate_limit;
pub mod roster_index;
pub mod source;
pub mod telemetry;
pub mod watchdog;
pub mod writer;

use std::sync::Arc;

use ondol_store::Store;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::{BrokerTarget, IngestConfig};
pub use judge::Inbound;
pub use roster_index::RosterIndex;
pub use source::{Credentials, SourceLink};
pub use telemetry::{IngestStats, StatsSnapshot};

/// Why the ingest worker stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the ingest {task} task failed: {reason}")]
    Task { task: &'static str, reason: String },
}

/// Runs the worker until `shutdown` is cancelled, then drains: stops reading
/// from the broker, judges what is queued, commits the last batch and
/// publishes its receipts before returning. Each commit also writes the
/// store's alerting feed; `feed_wake`, if given, is notified after it (an
/// alerting engine in the same process then looks at once).
pub async fn run(
    config: IngestConfig,
    link: SourceLink,
    store: Store,
    roster: watch::Receiver<Arc<RosterIndex>>,
    feed_wake: Option<Arc<Notify>>,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let (inbound_tx, inbound_rx) = mpsc::channel(config.queue_capacity);
    // Batches wait here while one commits; the writer merges those that
    // queued up (see `writer::write`).
    let (batch_tx, batch_rx) = mpsc::channel(8);

    let watchdog = tokio::spawn(watchdog::run(
        config.watchdog_silence,
        stats.clone(),
        roster.clone(),
        Arc::new(ondol_model::SystemClock),
        shutdown.clone(),
    ));
    let backlog_monitor = tokio::spawn(watchdog::watch_backlog(
        config.stall_after,
        stats.clone(),
        Arc::new(ondol_model::SystemClock),
        shutdown.clone(),
    ));
    let (source, receipts) =
        source::start(&config, link, inbound_tx, stats.clone(), shutdown.clone());
    let processor = tokio::spawn(writer::process(
        config.clone(),
        inbound_rx,
        batch_tx,
        roster,
        stats.clone(),
    ));
    // One committed batch announcing while the next commits.
    let (stored_tx, stored_rx) = mpsc::channel(1);
    let writer = tokio::task::spawn_blocking({
        let stats = stats.clone();
        let max_readings = config.batch_max_readings;
        move || writer::write(store, batch_rx, max_readings, stored_tx, feed_wake, stats)
    });
    let announcer = tokio::task::spawn_blocking({
        let stats = stats.clone();
        move || writer::announce(stored_rx, receipts, stats)
    });
    let reporter = tokio::spawn(report_periodically(
        stats.clone(),
        config.stats_interval,
        shutdown.clone(),
    ));

    let source_result = source.await;
    let processor_result = processor.await;
    let writer_result = writer.await;
    let announcer_result = announcer.await;
    reporter.abort();
    watchdog.abort();
    backlog_monitor.abort();
    tracing::info!(totals = %stats.snapshot(), "ingest stopped");

    for (task, result) in [
        ("source", source_result),
        ("processor", processor_result),
        ("writer", writer_result),
        ("announcer", announcer_result),
    ] {
        if let Err(error) = result {
            return Err(IngestError::Task {
                task,
                reason: error.to_string(),
            });
        }
    }
    Ok(())
}

async fn report_periodically(
    stats: Arc<IngestStats>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut last = stats.snapshot();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = stats.snapshot();
        if now != last {
            tracing::info!(
                accepted = now.accepted - last.accepted,
                duplicates = now.duplicates - last.duplicates,
                rejected = now.rejected - last.rejected,
                reasons = %now.rejections_since(&last),
                statuses = now.statuses - last.statuses,
                totals = %now,
                "ingest progress"
            );
        }
        last = now;
    }
}
