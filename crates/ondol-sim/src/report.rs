//! Fleet-wide counters, shared by every device task, and the report built
//! from them when the run ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Live counters; device tasks add, the summary logger and the final report read.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_sent: AtomicU64,
    pub readings_sent: AtomicU64,
    pub malformed_sent: AtomicU64,
    pub receipts: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub refused_messages: AtomicU64,
    pub resent: AtomicU64,
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub dropped_readings: AtomicU64,
    pub unreceipted: AtomicU64,
    /// Devices with a live MQTT session right now (a gauge).
    pub connected: AtomicU64,
    /// Publish-to-receipt times in microseconds, from the last send of a
    /// message to its first receipt.
    pub latency: Mutex<Option<Histogram<u64>>>,
}

impl Counters {
    /// Records one publish-to-receipt time.
    pub(crate) fn record_latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        if latency.is_none() {
            // Three significant digits, auto-resizing: small and exact enough.
            *latency = Histogram::new(3).ok().map(|mut h| {
                h.auto(true);
                h
            });
        }
        if let Some(histogram) = latency.as_mut() {
            let _ = histogram.record(micros);
        }
    }

    fn latency_summary(&self) -> Latency {
        let latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        match latency.as_ref() {
            Some(h) if !h.is_empty() => Latency {
                samples: h.len(),
                p50_us: h.value_at_quantile(0.50),
                p95_us: h.value_at_quantile(0.95),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            },
            _ => Latency::default(),
        }
    }
}

/// Publish-to-receipt latency over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Receipts measured.
    pub samples: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "publish-to-receipt p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} receipts",
            ms(self.p50_us),
            ms(self.p95_us),
            ms(self.p99_us),
            ms(self.max_us),
            self.samples
        )
    }
}

/// `counter += n` with relaxed ordering: these are statistics, not locks.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    // Saturating, so a bookkeeping slip can never wrap the gauge around.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SimReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimReport {
            messages_sent: get(&self.messages_sent),
            readings_sent: get(&self.readings_sent),
            receipts: get(&self.receipts),
            accepted: get(&self.accepted),
            duplicates: get(&self.duplicates),
            rejected: get(&self.rejected),
            refused_messages: get(&self.refused_messages),
            resent: get(&self.resent),
            reconnects: get(&self.reconnects),
            malformed_sent: get(&self.malformed_sent),
            connect_failures: get(&self.connect_failures),
            dropped_readings: get(&self.dropped_readings),
            unreceipted: get(&self.unreceipted),
            latency: self.latency_summary(),
        }
    }
}

/// What a run did, counted over the whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Distinct messages published (first sends only, garbage included).
    pub messages_sent: u64,
    /// Well-formed readings in those messages (first sends only).
    pub readings_sent: u64,
    /// Receipts received for this run's messages (a resent message may get two).
    pub receipts: u64,
    /// Sums over those receipts.
    pub accepted: u64,
    pub duplicates: u64,
    /// Readings refused one by one (by their index on the receipt).
    pub rejected: u64,
    /// Messages refused whole (undecodable, too large, unknown device): the
    /// receipt's `error`, with no reading index.
    pub refused_messages: u64,
    /// Re-publications of a message not receipted in time or across a reconnect.
    pub resent: u64,
    /// Sessions re-established after a drop (deliberate or not).
    pub reconnects: u64,
    /// Deliberately malformed messages among `messages_sent`.
    pub malformed_sent: u64,
    /// Connection attempts that failed (refused, timed out, unreachable).
    pub connect_failures: u64,
    /// Readings discarded because a device's buffer was full while it could
    /// not send: data a real device would have lost too.
    pub dropped_readings: u64,
    /// Messages still waiting for a receipt when the run ended.
    pub unreceipted: u64,
    pub latency: Latency,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} messages ({} readings, {} malformed), {} receipts ({} accepted, {} duplicates, \
             {} rejected, {} messages refused whole), {} resent, {} reconnects, {} connect failures, {} readings dropped, \
             {} unreceipted; {}",
            self.messages_sent,
            self.readings_sent,
            self.malformed_sent,
            self.receipts,
            self.accepted,
            self.duplicates,
            self.rejected,
            self.refused_messages,
            self.resent,
            self.reconnects,
            self.connect_failures,
            self.dropped_readings,
            self.unreceipted,
            self.latency,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_one_line_with_every_count() {
        let counters = Counters::default();
        add(&counters.messages_sent, 3);
        add(&counters.accepted, 7);
        sub(&counters.connected, 1);
        let line = counters.snapshot().to_string();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("sent 3 messages"));
        assert!(line.contains("7 accepted"));
        assert_eq!(counters.connected.load(Ordering::Relaxed), 0);
    }
}
