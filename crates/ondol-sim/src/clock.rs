//! Simulated time: `start + elapsed_real × speed`, but never ahead of the real
//! clock, because ingest rejects readings stamped in the future. Once it has
//! caught up it runs at 1×, in step with the wall clock.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// Maps between real instants (for sleeping) and simulated timestamps (for
/// stamping readings and placing events).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SimClock {
    /// The real instant the simulation began.
    origin: Instant,
    /// The wall-clock time at `origin`.
    origin_wall: Timestamp,
    /// Simulated time at `origin`.
    start: Timestamp,
    /// Simulated seconds per real second while catching up.
    speed: f64,
}

/// The longest wait the clock ever asks for, so absurd inputs cannot overflow
/// `Instant` arithmetic.
const MAX_WAIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl SimClock {
    pub(crate) fn new(
        origin: Instant,
        origin_wall: Timestamp,
        start: Timestamp,
        speed: f64,
    ) -> Self {
        Self {
            origin,
            origin_wall,
            start,
            speed,
        }
    }

    /// Simulated time after `elapsed` of real time.
    pub(crate) fn sim_after(&self, elapsed: Duration) -> Timestamp {
        let secs = elapsed.as_secs_f64();
        let compressed = SignedDuration::try_from_secs_f64(secs * self.speed)
            .ok()
            .and_then(|d| self.start.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX);
        let wall = SignedDuration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| self.origin_wall.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX);
        let t = compressed.min(wall);
        // Readings carry milliseconds; keep every simulated time on a whole one.
        Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
    }

    pub(crate) fn sim_at(&self, now: Instant) -> Timestamp {
        self.sim_after(now.saturating_duration_since(self.origin))
    }

    /// Real time after `origin` at which simulated time reaches `t`.
    pub(crate) fn elapsed_for(&self, t: Timestamp) -> Duration {
        let compressed = t.duration_since(self.start).as_secs_f64() / self.speed;
        let wall = t.duration_since(self.origin_wall).as_secs_f64();
        let secs = compressed.max(wall).max(0.0);
        // Round up to the next millisecond so that waking at this instant
        // finds `t` already due, never a hair early.
        let ms = (secs * 1000.0).ceil() + 1.0;
        Duration::try_from_secs_f64(ms / 1000.0)
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT)
    }

    /// The real instant at which simulated time reaches `t`.
    pub(crate) fn instant_for(&self, t: Timestamp) -> Instant {
        self.origin + self.elapsed_for(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    #[test]
    fn compresses_then_runs_in_step_with_the_wall_clock() {
        let wall = ts(1_800_000_000);
        let start = ts(1_800_000_000 - 12 * 3600);
        let clock = SimClock::new(Instant::now(), wall, start, 60.0);
        assert_eq!(clock.sim_after(Duration::ZERO), start);
        // 10 real minutes at 60× are 10 simulated hours.
        assert_eq!(
            clock.sim_after(Duration::from_secs(600)),
            ts(1_800_000_000 - 2 * 3600)
        );
        // It catches up after 12 h / 59 and never passes the wall clock.
        assert_eq!(
            clock.sim_after(Duration::from_secs(733)),
            ts(1_800_000_000 + 733)
        );
        assert_eq!(
            clock.sim_after(Duration::from_secs(3600)),
            ts(1_800_000_000 + 3600)
        );
    }

    #[test]
    fn a_start_in_the_future_is_held_at_the_wall_clock() {
        let wall = ts(1_800_000_000);
        let clock = SimClock::new(Instant::now(), wall, ts(1_900_000_000), 2.0);
        assert_eq!(clock.sim_after(Duration::from_secs(5)), ts(1_800_000_005));
    }

    proptest! {
        #[test]
        fn waking_at_instant_for_finds_the_time_due(
            behind in 0i64..(40 * 86_400),
            speed in 0.5f64..100_000.0,
            ahead in 0i64..(60 * 86_400),
        ) {
            let wall = ts(1_800_000_000);
            let clock = SimClock::new(Instant::now(), wall, ts(1_800_000_000 - behind), speed);
            let target = ts(1_800_000_000 - behind + ahead);
            let elapsed = clock.elapsed_for(target);
            prop_assert!(clock.sim_after(elapsed) >= target);
            // …and not much later than needed (a few ms of rounding).
            if let Some(earlier) = elapsed.checked_sub(Duration::from_millis(3)) {
                let before = clock.sim_after(earlier);
                prop_assert!(before.duration_since(target) < SignedDuration::from_secs_f64(speed * 0.004 + 0.001));
            }
        }
    }
}
