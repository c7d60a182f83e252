//! A run's figures, as a table for people and JSON for tools.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::{Latency, LoadSpec, Outcome, RssSample};
use crate::server::{BrokerMode, Usage};

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub mode: BrokerMode,
    pub devices: usize,
    /// Target readings/s; 0 = flat out.
    pub target_rate: u64,
    pub readings_per_message: usize,
    pub measured_seconds: f64,
    /// Accepted readings per second over the measured window.
    pub accepted_per_second: f64,
    pub latency: Latency,
    /// Server CPU over the window as a share of one core (1.0 = one core busy).
    pub server_cpu_cores: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub readings_sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub unreceipted_messages: u64,
    /// Failed connection attempts or subscriptions (reconnects during the run).
    pub connect_failures: u64,
    /// Connection failures by error text.
    pub failure_reasons: std::collections::BTreeMap<String, u64>,
    /// Readings the receipts called accepted that are not in the store.
    pub lost: u64,
    /// Readings the store holds more than once (more rows than receipted
    /// plus unreceipted readings), or that receipts reported as duplicates
    /// although nothing was resent.
    pub stored_twice: u64,
    /// Rows in the store after the run (None against a running server).
    pub stored: Option<u64>,
    /// Load averages (1, 5, 15 min) at the end of the measured window: the
    /// machine is shared, so read every figure with its load.
    pub load_average: Option<[f64; 3]>,
    /// The server's memory over a soak (`--soak`), oldest first.
    pub rss_samples: Vec<RssSample>,
    /// From a batch's commit to alerting applying it (the alerting
    /// process's own histogram), when the server answers.
    pub alerting_lag: Option<Lag>,
}

/// Quantiles of a Prometheus histogram, interpolated within its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lag {
    /// Observations (feed rows applied).
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Lag {
    /// Reads histogram `metric` (seconds) from a `/metrics` page.
    pub fn from_prometheus(text: &str, metric: &str) -> Option<Lag> {
        let bucket_prefix = format!("{metric}_bucket{{le=\"");
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&bucket_prefix) else {
                continue;
            };
            let (bound, count) = rest.split_once("\"}")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            buckets.push((bound, count.trim().parse().ok()?));
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = buckets.last()?.1;
        if count == 0 {
            return None;
        }
        let quantile = |q: f64| {
            let want = q * count as f64;
            let mut lower = (0.0, 0_u64);
            for &(bound, cumulative) in &buckets {
                if cumulative as f64 >= want {
                    if bound.is_infinite() {
                        return lower.0 * 1000.0;
                    }
                    let inside = (cumulative - lower.1) as f64;
                    let share = if inside > 0.0 {
                        (want - lower.1 as f64) / inside
                    } else {
                        1.0
                    };
                    return (lower.0 + (bound - lower.0) * share) * 1000.0;
                }
                lower = (bound, cumulative);
            }
            lower.0 * 1000.0
        };
        Some(Lag {
            count,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        })
    }
}

impl RunResult {
    pub fn new(
        mode: BrokerMode,
        spec: &LoadSpec,
        outcome: &Outcome,
        usage: Option<Usage>,
        stored: Option<u64>,
    ) -> Self {
        let seconds = outcome.measured.as_secs_f64().max(1e-9);
        RunResult {
            mode,
            devices: spec.devices,
            target_rate: spec.rate,
            readings_per_message: spec.readings_per_message,
            measured_seconds: seconds,
            accepted_per_second: outcome.accepted_in_window as f64 / seconds,
            latency: outcome.latency,
            server_cpu_cores: usage.map(|u| u.cpu_seconds / seconds),
            server_peak_rss_mib: usage.map(|u| u.peak_rss_mib),
            readings_sent: outcome.readings_sent,
            accepted: outcome.accepted,
            rejected: outcome.rejected,
            unreceipted_messages: outcome.unreceipted,
            connect_failures: outcome.connect_failures,
            failure_reasons: outcome.failure_reasons.clone(),
            lost: stored.map_or(0, |s| outcome.accepted.saturating_sub(s)),
            // A message whose receipt never came (a device reconnected, or
            // the drain ended) may still have been stored: its readings
            // are not duplicates.
            stored_twice: outcome.duplicates
                + stored.map_or(0, |s| {
                    s.saturating_sub(
                        outcome.accepted + outcome.unreceipted * spec.readings_per_message as u64,
                    )
                }),
            stored,
            load_average: outcome.load_average,
            rss_samples: outcome.rss_samples.clone(),
            alerting_lag: None,
        }
    }
}

pub fn table(results: &[RunResult]) -> String {
    let mut out = String::from(
        "mode       devices  rate      r/msg  accepted/s  p50 ms  p95 ms  p99 ms  max ms  cpu cores  peak MiB  lost  twice  unreceipted  load 1m\n",
    );
    for r in results {
        let rate = if r.target_rate == 0 {
            "max".to_owned()
        } else {
            r.target_rate.to_string()
        };
        let opt = |v: Option<f64>, precision: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.precision$}"))
        };
        let _ = writeln!(
            out,
            "{:<10} {:>7}  {:<8}  {:>5}  {:>10.0}  {:>6.1}  {:>6.1}  {:>6.1}  {:>6.1}  {:>9}  {:>8}  {:>4}  {:>5}  {:>11}  {:>7}",
            r.mode.name(),
            r.devices,
            rate,
            r.readings_per_message,
            r.accepted_per_second,
            r.latency.p50_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.latency.max_ms,
            opt(r.server_cpu_cores, 2),
            opt(r.server_peak_rss_mib, 0),
            r.lost,
            r.stored_twice,
            r.unreceipted_messages,
            opt(r.load_average.map(|l| l[0]), 2),
        );
    }
    for r in results {
        if let Some(lag) = r.alerting_lag {
            let _ = writeln!(
                out,
                "{:<10} commit-to-alerting lag: p50 {:.1} ms, p99 {:.1} ms over {} feed rows",
                r.mode.name(),
                lag.p50_ms,
                lag.p99_ms,
                lag.count
            );
        }
    }
    for r in results.iter().filter(|r| !r.rss_samples.is_empty()) {
        let _ = writeln!(
            out,
            "\nsoak, {} ({} devices): server RSS over the measured window",
            r.mode.name(),
            r.devices
        );
        out.push_str("   t s   RSS MiB   accepted\n");
        for s in &r.rss_samples {
            let _ = writeln!(
                out,
                "{:>6.0}  {:>8.1}  {:>9}",
                s.at_s, s.rss_mib, s.accepted
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_interpolated_within_buckets() {
        let text = "x_bucket{le=\"0.001\"} 0\nx_bucket{le=\"0.01\"} 50\nx_bucket{le=\"0.1\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_sum 1\nx_count 100\n";
        let lag = Lag::from_prometheus(text, "x").expect("a histogram");
        assert_eq!(lag.count, 100);
        assert!((lag.p50_ms - 10.0).abs() < 1e-9, "{lag:?}");
        assert!((lag.p99_ms - 98.2).abs() < 1e-9, "{lag:?}");
        assert_eq!(Lag::from_prometheus("nothing", "x"), None);
    }
}
