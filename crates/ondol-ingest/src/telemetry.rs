//! Ingest's counters: one place bumps the `metrics` counter and the totals
//! behind the periodic summary line, so the two never disagree.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

use ondol_model::ReasonCode;

pub const READINGS_ACCEPTED: &str = "ondol_ingest_readings_accepted_total";
pub const READINGS_DUPLICATE: &str = "ondol_ingest_readings_duplicate_total";
pub const REJECTIONS: &str = "ondol_ingest_rejections_total";
pub const MESSAGES: &str = "ondol_ingest_messages_total";
pub const STATUS_UPDATES: &str = "ondol_ingest_status_updates_total";
pub const RECEIPTS: &str = "ondol_ingest_receipts_total";
pub const BATCH_COMMIT_SECONDS: &str = "ondol_ingest_batch_commit_seconds";
pub const STORE_ERRORS: &str = "ondol_ingest_store_errors_total";

/// Running totals since start, shared between the pipeline's tasks.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub messages: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub statuses: AtomicU64,
    pub receipts: AtomicU64,
    pub batches: AtomicU64,
    /// Rejections by reason, indexed like [`ReasonCode::ALL`].
    pub rejected_by_reason: [AtomicU64; ReasonCode::ALL.len()],
    /// The watchdog's `system_outage` condition (no messages arriving).
    pub outage: ondol_model::condition::ConditionFlag,
    /// The external broker cannot be reached (`broker_unreachable`).
    pub broker: ondol_model::condition::ConditionFlag,
    /// The store refuses commits (`store_unwritable`).
    pub store: ondol_model::condition::ConditionFlag,
    /// A message waits too long to be committed and handed on (`ingest_stalled`).
    pub stalled: ondol_model::condition::ConditionFlag,
    /// What the writer and announcer hold (see [`Backlog`]).
    pub backlog: Backlog,
}

/// The batches between the start of their commit and the end of their
/// announcement (committed, handed to alerting, receipted), oldest first,
/// each as the time its first message was received. The pipeline is first
/// in, first out, so the front is the oldest message ingest holds past
/// batching: its age is how far alerting's view lags behind the devices.
#[derive(Debug, Default)]
pub struct Backlog {
    batches: Mutex<VecDeque<Timestamp>>,
}

impl Backlog {
    fn batches(&self) -> std::sync::MutexGuard<'_, VecDeque<Timestamp>> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer starts committing a batch whose first message came at `received`.
    pub(crate) fn commit_started(&self, received: Timestamp) {
        self.batches().push_back(received);
    }

    /// The writer gave up on the batch it started last (not committed:
    /// devices resend it).
    pub(crate) fn commit_failed(&self) {
        self.batches().pop_back();
    }

    /// The announcer finished the oldest batch.
    pub(crate) fn announced(&self) {
        self.batches().pop_front();
    }

    /// When the oldest message still held was received.
    pub fn oldest(&self) -> Option<Timestamp> {
        self.batches().front().copied()
    }
}

/// A copy of the totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub messages: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub statuses: u64,
    pub receipts: u64,
    pub batches: u64,
    pub rejected_by_reason: [u64; ReasonCode::ALL.len()],
}

impl IngestStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            messages: self.messages.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            statuses: self.statuses.load(Ordering::Relaxed),
            receipts: self.receipts.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            rejected_by_reason: std::array::from_fn(|i| {
                self.rejected_by_reason[i].load(Ordering::Relaxed)
            }),
        }
    }

    pub(crate) fn message_received(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(MESSAGES).increment(1);
    }

    /// `count` readings (or one whole message) refused for `reason`.
    pub(crate) fn rejected(&self, reason: ReasonCode, count: u64) {
        self.rejected.fetch_add(count, Ordering::Relaxed);
        if let Some(i) = ReasonCode::ALL.iter().position(|r| *r == reason) {
            self.rejected_by_reason[i].fetch_add(count, Ordering::Relaxed);
        }
        metrics::counter!(REJECTIONS, "reason" => reason.as_str()).increment(count);
    }

    pub(crate) fn committed(&self, accepted: u64, duplicates: u64, statuses: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(accepted, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.statuses.fetch_add(statuses, Ordering::Relaxed);
        metrics::counter!(READINGS_ACCEPTED).increment(accepted);
        metrics::counter!(READINGS_DUPLICATE).increment(duplicates);
        metrics::counter!(STATUS_UPDATES).increment(statuses);
    }

    pub(crate) fn receipt_published(&self) {
        self.receipts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(RECEIPTS).increment(1);
    }
}

impl StatsSnapshot {
    /// Rejections since `earlier`, as `reason=count` pairs, e.g.
    /// `out_of_range=3 unknown_device=1`; empty when there were none.
    pub fn rejections_since(&self, earlier: &StatsSnapshot) -> String {
        ReasonCode::ALL
            .iter()
            .zip(
                self.rejected_by_reason
                    .iter()
                    .zip(earlier.rejected_by_reason.iter()),
            )
            .filter(|(_, (now, before))| now > before)
            .map(|(reason, (now, before))| format!("{reason}={}", now - before))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "messages={} accepted={} duplicates={} rejected={} statuses={} receipts={}",
            self.messages,
            self.accepted,
            self.duplicates,
            self.rejected,
            self.statuses,
            self.receipts
        )
    }
}

/// Raises a `system_outage` condition: logged at ERROR and set on the
/// `ondol_system_outage{cause}` gauge once per outage, not on every check.
pub(crate) fn raise_condition(
    flag: &ondol_model::condition::ConditionFlag,
    cause: ondol_model::condition::OutageCause,
    detail: &str,
) {
    use ondol_model::condition::Transition;
    if flag.raise(cause, jiff::Timestamp::now(), detail) == Transition::Raised {
        metrics::gauge!(crate::watchdog::SYSTEM_OUTAGE, "cause" => cause.as_str()).set(1.0);
        tracing::error!(
            condition = "system_outage",
            cause = cause.as_str(),
            detail,
            "ingest cannot do its job; alerting holds alerts caused by missing data"
        );
    }
}

/// Clears a condition raised with [`raise_condition`], if it is raised.
pub(crate) fn clear_condition(
    flag: &ondol_model::condition::ConditionFlag,
    cause: ondol_model::condition::OutageCause,
) {
    use ondol_model::condition::Transition;
    if flag.clear() == Transition::Cleared {
        metrics::gauge!(crate::watchdog::SYSTEM_OUTAGE, "cause" => cause.as_str()).set(0.0);
        tracing::info!(
            condition = "system_outage",
            cause = cause.as_str(),
            "condition over"
        );
    }
}
