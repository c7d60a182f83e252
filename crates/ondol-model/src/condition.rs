//! System conditions: what ingest and the time-series sink know about our
//! own health, as plain values the binary can log, count and hand to
//! alerting (the `system_outage` rule of DESIGN §4).
//!
//! The parts that detect a condition own a [`ConditionFlag`]; raising and
//! clearing it are idempotent, so a condition that persists is reported
//! once, not on every check.

use std::fmt;
use std::sync::Mutex;

use jiff::Timestamp;

/// Why the system cannot see (or keep) what residents' devices send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutageCause {
    /// No message has arrived for longer than the watchdog allows while
    /// devices are expected to be sending.
    NoMessages,
    /// The time-series sink refuses our credentials (HTTP 401 or 403);
    /// readings are held in the spool until an operator fixes the token.
    SinkUnauthorized,
    /// The time-series sink does not answer; readings are spooled on disk.
    SinkUnreachable,
    /// Ingest cannot (re)connect to the external MQTT broker.
    BrokerUnreachable,
    /// The operational store refuses ingest's commits (disk full, file
    /// locked or damaged); devices get no receipts and resend later.
    StoreUnwritable,
    /// Ingest's pipeline holds messages it received longer ago than it
    /// should (a commit stuck on a stalled disk or a locked store, or a
    /// starved host): alerting would otherwise decide on stale data.
    IngestStalled,
}

impl OutageCause {
    pub const ALL: [OutageCause; 6] = [
        OutageCause::NoMessages,
        OutageCause::SinkUnauthorized,
        OutageCause::SinkUnreachable,
        OutageCause::BrokerUnreachable,
        OutageCause::StoreUnwritable,
        OutageCause::IngestStalled,
    ];

    /// The cause [`as_str`](Self::as_str) spells `s`.
    pub fn parse(s: &str) -> Option<OutageCause> {
        OutageCause::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// A stable spelling for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            OutageCause::NoMessages => "no_messages",
            OutageCause::SinkUnauthorized => "sink_unauthorized",
            OutageCause::SinkUnreachable => "sink_unreachable",
            OutageCause::BrokerUnreachable => "broker_unreachable",
            OutageCause::StoreUnwritable => "store_unwritable",
            OutageCause::IngestStalled => "ingest_stalled",
        }
    }
}

impl fmt::Display for OutageCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `system_outage` condition: its cause and since when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemOutage {
    pub cause: OutageCause,
    pub since: Timestamp,
    /// A short, operator-facing explanation (no personal data).
    pub detail: String,
}

/// A raised-or-not condition shared between the part that detects it and
/// whoever reports it.
#[derive(Debug, Default)]
pub struct ConditionFlag {
    current: Mutex<Option<SystemOutage>>,
}

/// What a call to [`ConditionFlag::raise`] or [`ConditionFlag::clear`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raised,
    Cleared,
    Unchanged,
}

impl ConditionFlag {
    /// Raises the condition unless it is already raised (the first `since`
    /// and `detail` are kept).
    pub fn raise(&self, cause: OutageCause, now: Timestamp, detail: &str) -> Transition {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some() {
            return Transition::Unchanged;
        }
        *current = Some(SystemOutage {
            cause,
            since: now,
            detail: detail.to_owned(),
        });
        Transition::Raised
    }

    /// Clears the condition if it is raised.
    pub fn clear(&self) -> Transition {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.take() {
            Some(_) => Transition::Cleared,
            None => Transition::Unchanged,
        }
    }

    /// The condition, if raised.
    pub fn get(&self) -> Option<SystemOutage> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_and_clearing_report_only_changes() {
        let flag = ConditionFlag::default();
        let t0 = Timestamp::from_second(1_800_000_000).expect("valid");
        let t1 = Timestamp::from_second(1_800_000_060).expect("valid");
        assert_eq!(flag.get(), None);
        assert_eq!(
            flag.raise(OutageCause::NoMessages, t0, "first"),
            Transition::Raised
        );
        assert_eq!(
            flag.raise(OutageCause::NoMessages, t1, "again"),
            Transition::Unchanged
        );
        let outage = flag.get().expect("raised");
        assert_eq!((outage.since, outage.detail.as_str()), (t0, "first"));
        assert_eq!(flag.clear(), Transition::Cleared);
        assert_eq!(flag.clear(), Transition::Unchanged);
    }
}
