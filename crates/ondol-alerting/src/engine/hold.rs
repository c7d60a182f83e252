//! Holding (DESIGN §4): our own outages, the grace period after a start
//! or a recovery, and the early release of residents whose devices all
//! send live data again. A missing-data deadline that comes while held is
//! parked and decided when the hold ends.

use super::*;

impl Engine {
    /// Whether missing-data alerts are being held now.
    pub fn holding(&self) -> bool {
        self.holding_at(self.clock.now())
    }

    pub(super) fn holding_at(&self, now: Timestamp) -> bool {
        self.blind() || self.grace.as_ref().is_some_and(|g| now < g.until)
    }

    /// Whether `timer` is held now: a missing-data deadline, while we are
    /// blind, or in the grace period unless its resident has left it early
    /// (every device of theirs is sending live data again).
    pub(super) fn holds(&self, timer: Timer, now: Timestamp) -> bool {
        if !timer.is_held() {
            return false;
        }
        if self.blind() {
            return true;
        }
        let Some(grace) = self.grace.as_ref().filter(|g| now < g.until) else {
            return false;
        };
        self.resident_of(timer)
            .is_none_or(|r| !grace.released.contains(&r))
    }

    /// The resident a resident or device deadline is about.
    pub(super) fn resident_of(&self, timer: Timer) -> Option<u32> {
        match timer {
            Timer::Checkin(r) | Timer::Inactivity(r) => Some(r),
            Timer::DeviceSilent(d) | Timer::DeviceConfirm(d) => self
                .devices
                .get(d as usize)
                .and_then(|device| device.resident),
            Timer::Escalate(_) | Timer::HoldEnd | Timer::BindingChange => None,
        }
    }

    /// Starts (or starts again) the grace period at `now`.
    pub(super) fn begin_grace(&mut self, now: Timestamp) {
        let until = after(now, self.config.grace);
        self.grace = Some(Grace {
            began: now,
            until,
            live: HashSet::new(),
            released: HashSet::new(),
        });
        self.schedule(Timer::HoldEnd, Some(until));
    }

    /// Device `d` sent a reading measured at `ts`: if that is live data
    /// (measured since the grace began, so what it kept is in), and every
    /// device of its resident is live, the resident leaves the grace early
    /// and their held deadlines are decided now on the data that arrived.
    pub(super) fn heard_live(&mut self, d: u32, ts: Timestamp, now: Timestamp) {
        if self.blind() {
            return;
        }
        let Some(grace) = self
            .grace
            .as_mut()
            .filter(|g| ts >= g.began && now < g.until)
        else {
            return;
        };
        grace.live.insert(d);
        let Some(r) = self
            .devices
            .get(d as usize)
            .and_then(|device| device.resident)
        else {
            return;
        };
        let Some(state) = self.residents.get(r as usize) else {
            return;
        };
        if grace.released.contains(&r) || !state.devices.iter().all(|d| grace.live.contains(d)) {
            return;
        }
        grace.released.insert(r);
        let mine: Vec<Timer> = self
            .parked
            .iter()
            .copied()
            .filter(|&timer| self.resident_of(timer) == Some(r))
            .collect();
        tracing::debug!(resident = %state.resident.id, held = mine.len(), "every device of the resident sends live data again; its held deadlines are decided now");
        for timer in mine {
            self.schedule(timer, Some(now));
        }
    }

    /// Whether an outage that hides residents is going on.
    pub(super) fn blind(&self) -> bool {
        self.outages.iter().any(|source| source.hides_residents())
    }

    pub(super) fn end_hold(&mut self, now: Timestamp) -> Result<(), AlertingError> {
        if self.holding_at(now) {
            return Ok(());
        }
        self.grace = None;
        // The system alert ends with the last outage (and its grace).
        if self.outages.is_empty()
            && let Some(id) = self.outage_alert.take()
        {
            self.resolve_if_open(id, now)?;
        }
        let parked = std::mem::take(&mut self.parked);
        tracing::info!(
            held = parked.len(),
            "hold ended; re-evaluating held deadlines"
        );
        // Re-queued at `now`, so a failure retries through `tick`; device
        // silences fire first (see `Timer`), so the mass-silence check sees
        // every device before any device alert is confirmed, and resident
        // rules know which residents Ondol cannot see.
        for timer in parked {
            self.schedule(timer, Some(now));
        }
        Ok(())
    }

    /// An outage of ours starts or ends (the broker probe, the store).
    pub fn set_outage(&mut self, source: OutageSource, down: bool) -> Result<(), AlertingError> {
        self.set_outage_because(source, down, None)
    }

    /// Like [`set_outage`](Self::set_outage), with what the part that
    /// detected it says (kept as the system alert's `detail` if it opens one).
    pub fn set_outage_because(
        &mut self,
        source: OutageSource,
        down: bool,
        detail: Option<&str>,
    ) -> Result<(), AlertingError> {
        let now = self.clock.now();
        if down {
            self.start_outage(source, now, detail)
        } else {
            self.end_outage(source, now)
        }
    }

    /// Alerting was not running (see [`crate::pacemaker`]): an outage of
    /// ours that is already over. One `system_outage` (cause `stalled`)
    /// unless one is open; every missing-data deadline that came due in
    /// the gap is held for the grace period and then decided on the data
    /// that arrived late.
    pub fn stalled(&mut self, stall: &Stall) -> Result<(), AlertingError> {
        let now = self.clock.now();
        let detail = stall.describe();
        tracing::error!(since = %stall.since(), detail, "alerting was not running; holding alerts caused by missing data");
        // Ended even when the system alert could not be recorded: a stall
        // left open would hold every resident's alerts for good.
        let started = self.start_outage(OutageSource::Stalled, now, Some(&detail));
        let ended = self.end_outage(OutageSource::Stalled, now);
        started.and(ended)
    }

    pub(super) fn mass_threshold(&self) -> usize {
        let share = (self.watched_devices as f64 * self.config.mass_silence_share).ceil();
        (share as usize)
            .max(self.config.mass_silence_min_devices)
            .max(1)
    }

    pub(super) fn start_outage(
        &mut self,
        source: OutageSource,
        now: Timestamp,
        detail: Option<&str>,
    ) -> Result<(), AlertingError> {
        let first = self.outages.is_empty();
        if !self.outages.insert(source) {
            return Ok(());
        }
        if source.hides_residents() {
            tracing::error!(
                source = source.as_str(),
                "system outage: alerts caused by missing data are held"
            );
        } else {
            tracing::error!(
                source = source.as_str(),
                "system outage: alerting still sees device data; nothing is held"
            );
        }
        if first && self.outage_alert.is_none() {
            let new = NewAlert {
                rule: Rule::SystemOutage,
                subject: Subject::System,
                resident_id: None,
                device_id: None,
                episode: now.as_millisecond().to_string(),
                severity: Severity::Critical,
                cause: Cause::Outage(source),
                detail: detail.map(str::to_owned),
                local_date: None,
                opened_at: now,
                next_escalation_at: None,
            };
            let webhook = self.webhook;
            match self.store.raise_alert(&new, |row| {
                notification::for_alert(row, AlertEvent::Opened, &Audience::System, webhook)
            })? {
                Raised::New(row) | Raised::AlreadyOpen(row) | Raised::Known(row) => {
                    self.outage_alert = Some(row.id);
                }
            }
            self.outbox.notify_one();
        }
        Ok(())
    }

    pub(super) fn end_outage(
        &mut self,
        source: OutageSource,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        if !self.outages.remove(&source) {
            return Ok(());
        }
        if source == OutageSource::MassSilence {
            self.recent_silences.clear();
        }
        if source.hides_residents() && !self.blind() {
            // Late data is still arriving (devices resend): the grace
            // period starts now, whatever else is still down.
            tracing::info!(source = source.as_str(), grace = ?self.config.grace, "system outage over; holding alerts for the grace period");
            self.begin_grace(now);
        } else if self.outages.is_empty() {
            tracing::info!(source = source.as_str(), "system outage over");
            let at = self
                .grace
                .as_ref()
                .map(|g| g.until)
                .filter(|until| *until > now)
                .unwrap_or(now);
            self.schedule(Timer::HoldEnd, Some(at));
        }
        Ok(())
    }
}
