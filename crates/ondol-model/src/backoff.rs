//! Reconnect backoff, shared by the simulated devices and ingest's external
//! broker client. rumqttc's `EventLoop::poll` reconnects on the very next
//! call, so without this a fleet whose broker restarts would hammer it in a
//! tight loop, all devices in lockstep. Exponential growth spaces attempts
//! out; full jitter (a uniform draw below the ceiling) spreads the fleet.
//!
//! The caller supplies the random draw, which keeps this crate free of a
//! random number generator and the schedule reproducible in tests.

use std::time::Duration;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// Failed attempts since the last success.
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay: `base × 2^attempt`, at most `cap`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt, `ceiling × jitter` where `jitter`
    /// is a uniform draw from `[0, 1)`, and one more failure on the count.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        ceiling.mul_f64(jitter)
    }

    /// A connection succeeded: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn grows_doubling_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_secs());
            b.next_delay(rng.random::<f64>());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn never_overflows_after_many_failures() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = SmallRng::seed_from_u64(2);
        for _ in 0..1000 {
            assert!(b.next_delay(rng.random::<f64>()) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut rng = SmallRng::seed_from_u64(3);
        let delays: Vec<Duration> = (0..2000)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
                for _ in 0..8 {
                    b.next_delay(rng.random::<f64>());
                }
                b.next_delay(rng.random::<f64>())
            })
            .collect();
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(15))
            .count();
        let high = delays
            .iter()
            .filter(|d| **d > Duration::from_secs(45))
            .count();
        // Uniform over [0, 60 s]: about a quarter in each end.
        assert!((350..650).contains(&low), "{low}");
        assert!((350..650).contains(&high), "{high}");
    }

    proptest! {
        #[test]
        fn every_delay_is_within_its_ceiling(
            base_ms in 1u64..5_000,
            cap_ms in 1u64..120_000,
            failures in 0usize..80,
            seed in any::<u64>(),
        ) {
            let mut b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
            let mut rng = SmallRng::seed_from_u64(seed);
            for _ in 0..failures {
                let ceiling = b.ceiling();
                prop_assert!(ceiling <= Duration::from_millis(cap_ms.max(base_ms)));
                let d = b.next_delay(rng.random::<f64>());
                prop_assert!(d <= ceiling);
                prop_assert!(b.ceiling() >= ceiling, "never shrinks without a reset");
            }
        }
    }
}
