//! Knowing when we were not running (DESIGN §4: our own outages never page
//! caseworkers about residents).
//!
//! A process that is frozen (`SIGSTOP`, a paused VM), starved of CPU,
//! stuck on a disk, or whose wall clock jumps, wakes up to find every
//! deadline of the gap due at once, while the data devices sent meanwhile
//! still sits in socket buffers and ingest's queues. Deciding those
//! deadlines then would page caseworkers about residents who were fine.
//!
//! The runner marks each moment it is surely running (waking, before it
//! decides deadlines, after a turn) and promises, before it sleeps, when it
//! will wake (never later than a minute). A gap between two marks longer
//! than what was promised for it (or, within a turn, than nothing) by more
//! than `alerting.stall_after`, or a wall clock that moved differently from
//! the monotonic clock by more than that, is a stall. Marking within the
//! turn matters: a freeze that strikes while a turn applies data or decides
//! deadlines is found before the next deadline is decided.
//! Either is a [`Stall`]: alerting treats it as an outage of ours (one
//! `system_outage` with cause `stalled`, missing-data deadlines held for
//! the grace period), before it decides any deadline.
//!
//! Pure: the caller passes both clocks, so tests drive it with a manual one.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// A gap in our own running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// We turned `late` after the moment we had promised (a frozen
    /// process, a starved host, a step blocked on the store).
    Late { since: Timestamp, late: Duration },
    /// The wall clock moved `by` more than the monotonic clock did (forward
    /// when positive): deadlines computed on wall time came due (or moved
    /// away) at once.
    ClockJump {
        since: Timestamp,
        by: SignedDuration,
    },
}

impl Stall {
    /// When the gap began (the wall time of the last good turn).
    pub fn since(&self) -> Timestamp {
        match self {
            Stall::Late { since, .. } | Stall::ClockJump { since, .. } => *since,
        }
    }

    /// An operator-facing sentence: what happened and for how long.
    pub fn describe(&self) -> String {
        match self {
            Stall::Late { late, .. } => format!(
                "alerting did not run for {:#} (a frozen process, a starved host or a stuck disk)",
                whole_seconds(SignedDuration::try_from(*late).unwrap_or(SignedDuration::MAX))
            ),
            Stall::ClockJump { by, .. } => format!(
                "the wall clock jumped {} by {:#} relative to the monotonic clock",
                if by.is_negative() {
                    "backward"
                } else {
                    "forward"
                },
                whole_seconds(by.abs())
            ),
        }
    }
}

fn whole_seconds(d: SignedDuration) -> SignedDuration {
    SignedDuration::from_secs(d.as_secs())
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    wall: Timestamp,
    mono: Duration,
}

/// Watches the gaps between the runner's marks.
#[derive(Debug, Clone)]
pub struct Pacemaker {
    tolerance: Duration,
    last: Option<Beat>,
    promised: Option<Duration>,
    /// A stall found by a mark, reported by the next [`beat`](Self::beat).
    pending: Option<Stall>,
}

impl Pacemaker {
    /// `tolerance`: how late a turn may be, or how far the clocks may
    /// drift apart between two turns, before it is a stall.
    pub fn new(tolerance: Duration) -> Self {
        Self {
            tolerance,
            last: None,
            promised: None,
            pending: None,
        }
    }

    /// The runner will turn again by monotonic time `by` (it sleeps until then
    /// at the latest).
    pub fn promise(&mut self, by: Duration) {
        self.promised = Some(by);
    }

    /// The runner is running at wall time `wall` and monotonic time `mono`
    /// (any fixed origin). A gap since the last mark longer than promised
    /// for it (without a promise: longer than nothing) by more than the
    /// tolerance, or clocks that drifted apart by more than it, is a stall,
    /// kept for the next [`beat`](Self::beat).
    pub fn mark(&mut self, wall: Timestamp, mono: Duration) {
        let promised = self.promised.take();
        let Some(last) = self.last.replace(Beat { wall, mono }) else {
            return;
        };
        let gap = mono.saturating_sub(last.mono);
        let allowed =
            promised.map_or(Duration::ZERO, |by| by.saturating_sub(last.mono)) + self.tolerance;
        let stall = if gap > allowed {
            Some(Stall::Late {
                since: last.wall,
                late: gap,
            })
        } else {
            let wall_moved = wall.duration_since(last.wall);
            let mono_moved = SignedDuration::try_from(gap).unwrap_or(SignedDuration::MAX);
            let by = wall_moved.saturating_sub(mono_moved);
            let tolerance = SignedDuration::try_from(self.tolerance).unwrap_or(SignedDuration::MAX);
            (by.abs() > tolerance).then_some(Stall::ClockJump {
                since: last.wall,
                by,
            })
        };
        if self.pending.is_none() {
            self.pending = stall;
        }
    }

    /// A mark right before deadlines are decided: the stall since the last
    /// beat (found by this mark or an earlier one), if there was one.
    pub fn beat(&mut self, wall: Timestamp, mono: Duration) -> Option<Stall> {
        self.mark(wall, mono);
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn turns_on_time_are_no_stall() {
        let mut p = Pacemaker::new(secs(10));
        assert_eq!(
            p.beat(t(0), secs(0)),
            None,
            "the first turn has nothing to compare"
        );
        p.promise(secs(60));
        // Woken early by input, then on time, then a little late.
        assert_eq!(p.beat(t(5), secs(5)), None);
        p.promise(secs(65));
        assert_eq!(p.beat(t(65), secs(65)), None);
        p.promise(secs(70));
        assert_eq!(
            p.beat(t(79), secs(79)),
            None,
            "9 s late is within tolerance"
        );
    }

    #[test]
    fn a_frozen_process_is_a_stall_as_long_as_the_gap() {
        let mut p = Pacemaker::new(secs(10));
        p.beat(t(0), secs(0));
        p.promise(secs(30));
        // SIGSTOP for four minutes: both clocks moved on.
        let stall = p.beat(t(240), secs(240)).expect("a stall");
        assert_eq!(
            stall,
            Stall::Late {
                since: t(0),
                late: secs(240)
            }
        );
        assert!(stall.describe().contains("4m"), "{}", stall.describe());
        // The next turn on time is fine again.
        p.promise(secs(260));
        assert_eq!(p.beat(t(250), secs(250)), None);
    }

    #[test]
    fn a_freeze_inside_a_turn_is_found_by_the_next_beat() {
        let mut p = Pacemaker::new(secs(10));
        p.beat(t(0), secs(0));
        p.promise(secs(30));
        // Woken on time; frozen for 13 s while applying data; then the beat.
        p.mark(t(30), secs(30));
        let stall = p.beat(t(43), secs(43)).expect("found before deadlines");
        assert_eq!(
            stall,
            Stall::Late {
                since: t(30),
                late: secs(13)
            }
        );
        // Frozen after the beat, while deciding: found at the end of the
        // turn, reported by the next beat even though that one is on time.
        p.mark(t(60), secs(60));
        p.promise(secs(65));
        assert!(p.beat(t(64), secs(64)).is_some());
        p.promise(secs(70));
        assert_eq!(p.beat(t(69), secs(69)), None);
    }

    #[test]
    fn a_wall_clock_jump_is_a_stall_either_way() {
        let mut p = Pacemaker::new(secs(10));
        p.beat(t(0), secs(0));
        p.promise(secs(60));
        let forward = p.beat(t(2 * 3600 + 1), secs(1)).expect("forward jump");
        assert_eq!(
            forward,
            Stall::ClockJump {
                since: t(0),
                by: SignedDuration::from_secs(2 * 3600)
            }
        );
        assert!(
            forward.describe().contains("forward by 2h"),
            "{}",
            forward.describe()
        );
        p.promise(secs(61));
        let backward = p.beat(t(2), secs(2)).expect("backward jump");
        assert!(matches!(backward, Stall::ClockJump { by, .. } if by.is_negative()));
    }
}
