//! The deadline set: at most a few entries per resident and device in one
//! ordered set, popped when due (as mini-redis orders expiries).

use super::*;

/// A deadline. Indices point into `Engine::residents` / `Engine::devices`.
///
/// Deadlines due at the same time fire in the order of the variants: a
/// device's silence first, so that a resident rule decided at that moment
/// (after a hold, many are) knows whether Ondol can see the resident at all
/// (`no_data`), whatever order they were scheduled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Timer {
    /// The device has been silent past its cadence.
    DeviceSilent(u32),
    /// The check-in deadline of the resident's next watched day.
    Checkin(u32),
    /// The next inactivity tier of the resident.
    Inactivity(u32),
    /// The device is still silent after the mass-silence window: its own problem.
    DeviceConfirm(u32),
    /// An unacknowledged alert escalates (by alert id).
    Escalate(i64),
    /// The grace period ends.
    HoldEnd,
    /// A device binding starts or ends (a device moves to another resident
    /// on a date set in advance): the roster is applied again.
    BindingChange,
}

impl Timer {
    /// Deadlines that fire because data is missing are held.
    pub(super) fn is_held(self) -> bool {
        matches!(
            self,
            Timer::Checkin(_)
                | Timer::Inactivity(_)
                | Timer::DeviceSilent(_)
                | Timer::DeviceConfirm(_)
        )
    }
}

impl Engine {
    /// The earliest deadline, if any: when [`tick`](Self::tick) has work.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.first().map(|(at, _)| *at)
    }

    pub(super) fn schedule(&mut self, timer: Timer, at: Option<Timestamp>) {
        if let Some(old) = self.due.remove(&timer) {
            self.timers.remove(&(old, timer));
        }
        self.parked.remove(&timer);
        if let Some(at) = at {
            self.timers.insert((at, timer));
            self.due.insert(timer, at);
        }
    }

    /// Fires every deadline that is due. On a store error the deadline that
    /// failed is tried again a little later.
    pub fn tick(&mut self) -> Result<usize, AlertingError> {
        self.tick_at(self.clock.now())
    }

    /// [`tick`](Self::tick) as of `now`: what was due then (the runner
    /// passes the time its stall check saw, so a freeze after that check
    /// cannot make it decide later deadlines on earlier data).
    pub fn tick_at(&mut self, now: Timestamp) -> Result<usize, AlertingError> {
        let mut fired = 0;
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, timer));
            self.due.remove(&timer);
            if let Err(error) = self.fire(timer, now) {
                self.schedule(timer, Some(after(now, Duration::from_secs(5))));
                self.record_evaluations()?;
                return Err(error);
            }
            fired += 1;
        }
        self.record_evaluations()?;
        Ok(fired)
    }

    pub(super) fn record_evaluations(&mut self) -> Result<(), AlertingError> {
        if self.evaluated.is_empty() {
            return Ok(());
        }
        self.store.checkins_evaluated(&self.evaluated)?;
        self.evaluated.clear();
        Ok(())
    }

    pub(super) fn fire(&mut self, timer: Timer, now: Timestamp) -> Result<(), AlertingError> {
        if self.holds(timer, now) {
            self.parked.insert(timer);
            return Ok(());
        }
        match timer {
            Timer::Checkin(r) => self.evaluate_checkin(r, now),
            Timer::Inactivity(r) => self.evaluate_inactivity(r, now),
            Timer::DeviceSilent(d) => {
                self.device_went_silent(d, now);
                Ok(())
            }
            Timer::DeviceConfirm(d) => self.confirm_device_offline(d, now),
            Timer::Escalate(id) => self.escalate(id, now),
            Timer::HoldEnd => self.end_hold(now),
            Timer::BindingChange => {
                let roster = self.store.load_roster()?;
                self.apply_roster(&roster).map(|_| ())
            }
        }
    }

    pub(super) fn schedule_checkin(&mut self, r: u32) {
        let Some(state) = self.residents.get_mut(r as usize) else {
            return;
        };
        let next = if state.removed {
            None
        } else {
            schedule::next_checkin(&state.resident, state.since, state.checkin_evaluated)
        };
        state.checkin_day = next.map(|(day, _)| day);
        self.schedule(Timer::Checkin(r), next.map(|(_, at)| at));
    }

    /// Schedules the next inactivity tier after `now`. With `catch_up`
    /// (at start-up) a tier already passed is evaluated at once, in case
    /// Ondol was down when it came (raising it again is a no-op).
    pub(super) fn schedule_inactivity(&mut self, r: u32, now: Timestamp, catch_up: bool) {
        let Some(state) = self.residents.get(r as usize) else {
            return;
        };
        if state.removed || enrolment_over(&state.resident, now) {
            self.schedule(Timer::Inactivity(r), None);
            return;
        }
        let base = self.inactivity_base(state, now);
        let next = self
            .config
            .tiers()
            .into_iter()
            .map(|t| after(base, t))
            .find(|at| *at > now);
        let passed = after(base, self.config.inactivity_caution) <= now;
        let at = if catch_up && passed { Some(now) } else { next };
        self.schedule(Timer::Inactivity(r), at);
    }

    pub(super) fn schedule_device(&mut self, d: u32) {
        let Some(device) = self.devices.get(d as usize) else {
            return;
        };
        if device.resident.is_none() {
            self.schedule(Timer::DeviceSilent(d), None);
            return;
        }
        let from = device
            .last_heard
            .map_or(device.since, |heard| heard.max(device.since));
        let at = after(from, self.config.device_silent_after);
        self.schedule(Timer::DeviceSilent(d), Some(at));
    }
}
