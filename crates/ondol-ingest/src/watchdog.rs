//! The silence watchdog: when no message at all reaches ingest for
//! `ingest.watchdog_silence` while the roster has active devices, the
//! system cannot see the residents, and that is a `system_outage`
//! (DESIGN §4) rather than a house full of inactive people.
//!
//! The condition is raised on [`IngestStats::outage`], logged at ERROR and
//! set on the `ondol_system_outage{cause="no_messages"}` gauge; it clears
//! with the next message. Alerting, when it exists, reads the flag.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ondol_model::Clock;
use ondol_model::condition::{OutageCause, Transition};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::roster_index::RosterIndex;
use crate::telemetry::IngestStats;

pub const SYSTEM_OUTAGE: &str = "ondol_system_outage";

/// The pure decision: has it been silent for too long?
#[derive(Debug, Clone)]
pub struct Watchdog {
    silence: Duration,
    last_count: u64,
    last_change: Timestamp,
}

impl Watchdog {
    pub fn new(silence: Duration, now: Timestamp, messages: u64) -> Self {
        Self {
            silence,
            last_count: messages,
            last_change: now,
        }
    }

    /// Whether the outage holds at `now`, given the message count so far.
    pub fn silent(&mut self, now: Timestamp, messages: u64, devices_expected: bool) -> bool {
        if messages != self.last_count {
            self.last_count = messages;
            self.last_change = now;
            return false;
        }
        let quiet = now.duration_since(self.last_change);
        devices_expected
            && jiff::SignedDuration::try_from(self.silence).is_ok_and(|silence| quiet >= silence)
    }
}

/// Checks every quarter of the silence (at most every 30 s) until shutdown.
pub(crate) async fn run(
    silence: Duration,
    stats: Arc<IngestStats>,
    roster: watch::Receiver<Arc<RosterIndex>>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    if silence.is_zero() {
        return;
    }
    let every = (silence / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
    let mut watchdog = Watchdog::new(silence, clock.now(), stats.snapshot().messages);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let expected = roster.borrow().has_active_devices();
        let now = clock.now();
        if watchdog.silent(now, stats.snapshot().messages, expected) {
            let detail = format!("no device message for {silence:?} while devices are expected");
            if stats.outage.raise(OutageCause::NoMessages, now, &detail) == Transition::Raised {
                metrics::gauge!(SYSTEM_OUTAGE, "cause" => OutageCause::NoMessages.as_str())
                    .set(1.0);
                tracing::error!(
                    condition = "system_outage",
                    cause = OutageCause::NoMessages.as_str(),
                    silent_for = ?silence,
                    "no device message has arrived while devices are expected to be sending; check the broker and the network"
                );
            }
        } else if stats.outage.clear() == Transition::Cleared {
            metrics::gauge!(SYSTEM_OUTAGE, "cause" => OutageCause::NoMessages.as_str()).set(0.0);
            tracing::info!(
                condition = "system_outage",
                cause = OutageCause::NoMessages.as_str(),
                "device messages arrive again"
            );
        }
    }
}

/// How long the oldest message ingest holds has waited, if longer than
/// `stall_after` (the pure decision of [`watch_backlog`]).
pub fn backlog_stalled(
    oldest: Option<Timestamp>,
    now: Timestamp,
    stall_after: Duration,
) -> Option<jiff::SignedDuration> {
    let waited = now.duration_since(oldest?);
    let bound = jiff::SignedDuration::try_from(stall_after).unwrap_or(jiff::SignedDuration::MAX);
    (waited > bound).then_some(waited)
}

/// How often the backlog is looked at: alerting should hear of a stall
/// well before the first deadline decided on stale data.
const BACKLOG_CHECK: Duration = Duration::from_secs(1);

/// Raises `ingest_stalled` while the oldest message past batching waits
/// longer than `stall_after` to be committed and handed on (a commit stuck
/// on a stalled disk or a locked store, a starved host); clears it when the
/// pipeline has caught up. Until `shutdown`.
pub(crate) async fn watch_backlog(
    stall_after: Duration,
    stats: Arc<IngestStats>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BACKLOG_CHECK) => {}
        }
        match backlog_stalled(stats.backlog.oldest(), clock.now(), stall_after) {
            Some(waited) => {
                let detail = format!(
                    "ingest has held a device message for {:#} without committing it (a stuck disk, a locked store or a starved host)",
                    jiff::SignedDuration::from_secs(waited.as_secs())
                );
                crate::telemetry::raise_condition(
                    &stats.stalled,
                    OutageCause::IngestStalled,
                    &detail,
                );
            }
            None => crate::telemetry::clear_condition(&stats.stalled, OutageCause::IngestStalled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_message_and_only_when_devices_are_expected() {
        let t0 = Timestamp::from_second(1_800_000_000).expect("valid");
        let at = |minutes: i64| t0 + jiff::SignedDuration::from_mins(minutes);
        let mut watchdog = Watchdog::new(Duration::from_secs(15 * 60), t0, 0);
        assert!(!watchdog.silent(at(14), 0, true));
        assert!(watchdog.silent(at(15), 0, true));
        assert!(
            !watchdog.silent(at(15), 0, false),
            "no devices, nothing expected"
        );
        assert!(
            !watchdog.silent(at(16), 3, true),
            "a message ends the silence"
        );
        assert!(!watchdog.silent(at(30), 3, true));
        assert!(watchdog.silent(at(31), 3, true));
    }

    #[test]
    fn a_backlog_is_a_stall_only_once_its_oldest_message_waited_too_long() {
        let t0 = Timestamp::from_second(1_800_000_000).expect("valid");
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let bound = Duration::from_secs(30);
        assert_eq!(backlog_stalled(None, at(100), bound), None, "nothing held");
        assert_eq!(backlog_stalled(Some(t0), at(30), bound), None);
        assert_eq!(
            backlog_stalled(Some(t0), at(31), bound),
            Some(jiff::SignedDuration::from_secs(31))
        );

        let backlog = crate::telemetry::Backlog::default();
        backlog.commit_started(at(0));
        backlog.commit_started(at(5));
        backlog.commit_started(at(9));
        backlog.commit_failed();
        assert_eq!(backlog.oldest(), Some(at(0)), "first in, first out");
        backlog.announced();
        assert_eq!(backlog.oldest(), Some(at(5)));
        backlog.announced();
        assert_eq!(backlog.oldest(), None, "the failed batch was taken back");
    }

    /// Polls `check` every 50 ms for up to 10 s.
    async fn within_seconds(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what} did not happen within 10 s");
    }

    #[tokio::test]
    async fn a_message_held_too_long_raises_ingest_stalled_until_it_is_announced() {
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        let clock = Arc::new(ondol_model::ManualClock::new(now));
        let stats = Arc::new(IngestStats::default());
        stats
            .backlog
            .commit_started(now - jiff::SignedDuration::from_secs(20));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch_backlog(
            Duration::from_secs(30),
            stats.clone(),
            clock.clone(),
            shutdown.clone(),
        ));
        // 20 s old: within the bound.
        tokio::time::sleep(BACKLOG_CHECK * 2).await;
        assert_eq!(stats.stalled.get(), None);
        // The commit is still stuck 15 s later.
        clock.advance(jiff::SignedDuration::from_secs(15));
        within_seconds("ingest_stalled raised", || stats.stalled.get().is_some()).await;
        let outage = stats.stalled.get().expect("raised");
        assert_eq!(outage.cause, OutageCause::IngestStalled);
        assert!(outage.detail.contains("35s"), "{}", outage.detail);
        // It commits and is announced: the condition clears.
        stats.backlog.announced();
        within_seconds("ingest_stalled cleared", || stats.stalled.get().is_none()).await;
        shutdown.cancel();
        task.await.expect("the monitor stops");
    }
}
