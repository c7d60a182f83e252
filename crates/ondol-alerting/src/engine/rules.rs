//! The rules of DESIGN §4 on data in and at deadlines: check-ins,
//! inactivity tiers, help and falls, silent devices, vital bands and
//! escalation.

use super::*;

impl Engine {
    pub(super) fn help_request(
        &mut self,
        r: u32,
        new: &NewReading,
        cause: Cause,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let episode = format!("{}:{}", new.device_id, new.reading.ts.as_millisecond());
        let raised = self.raise(
            r,
            Rule::HelpRequest,
            episode,
            Severity::Critical,
            cause,
            Some(&new.device_id),
            now,
        )?;
        if let Raised::AlreadyOpen(open) = raised {
            // Pressed again while the first is open: tell them again.
            self.update(
                &open,
                AlertEvent::Repeated,
                None,
                Some(cause.to_string()),
                now,
            )?;
        }
        Ok(())
    }

    /// `vital_out_of_band`: N readings in a row outside the resident's band.
    /// Data is present, so this is never held.
    pub(super) fn check_vital(
        &mut self,
        r: u32,
        new: &NewReading,
        value: f64,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let kind = new.reading.reading_type;
        let Some(band) = self
            .bands
            .get(&(Some(r), kind))
            .or_else(|| self.bands.get(&(None, kind)))
            .copied()
        else {
            return Ok(());
        };
        let low = band.min.is_some_and(|min| value < min);
        let high = band.max.is_some_and(|max| value > max);
        let run = self.vital_runs.entry((r, kind)).or_insert(0);
        if !(low || high) {
            *run = 0;
            // Back in band before anyone acknowledged: the condition ended.
            if let Some(state) = self.residents.get(r as usize)
                && let Some(open) = self
                    .store
                    .unresolved_alert(&resident_subject(&state.resident.id), Rule::VitalOutOfBand)?
                && open.status == AlertStatus::Open
                && open.cause.vital() == Some(kind)
            {
                self.clear(&open, now)?;
            }
            return Ok(());
        }
        *run += 1;
        if *run < band.consecutive {
            return Ok(());
        }
        let cause = if high {
            Cause::VitalHigh(kind)
        } else {
            Cause::VitalLow(kind)
        };
        let episode = format!("{}:{}", kind.as_str(), new.reading.ts.as_millisecond());
        self.raise(
            r,
            Rule::VitalOutOfBand,
            episode,
            Severity::Alarm,
            cause,
            Some(&new.device_id),
            now,
        )?;
        Ok(())
    }

    pub(super) fn activity_seen(&mut self, r: u32, now: Timestamp) -> Result<(), AlertingError> {
        let Some(state) = self.residents.get(r as usize) else {
            return Ok(());
        };
        let base = self.inactivity_base(state, now);
        let subject = resident_subject(&state.resident.id);
        let ended = now < after(base, self.config.inactivity_caution);
        if ended
            && let Some(open) = self.store.unresolved_alert(&subject, Rule::Inactivity)?
            && open.status == AlertStatus::Open
        {
            self.clear(&open, now)?;
        }
        self.schedule_inactivity(r, now, false);
        Ok(())
    }

    pub(super) fn late_checkin(
        &mut self,
        r: u32,
        date: Date,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let Some(state) = self.residents.get(r as usize) else {
            return Ok(());
        };
        let subject = resident_subject(&state.resident.id);
        if let Some(open) = self.store.unresolved_alert(&subject, Rule::MissedCheckin)?
            && open.status == AlertStatus::Open
            && open.local_date.is_none_or(|day| day <= date)
        {
            self.clear(&open, now)?;
        }
        Ok(())
    }

    pub(super) fn device_heard(
        &mut self,
        d: u32,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let Some(device) = self.devices.get_mut(d as usize) else {
            return Ok(());
        };
        let heard = device.last_heard.map_or(at, |last| last.max(at));
        device.last_heard = Some(heard);
        let was_silent = device.silent_since.take().is_some();
        device.silent_cause = Cause::Silent;
        let subject = device_subject(&device.id);
        self.schedule(
            Timer::DeviceSilent(d),
            Some(after(heard, self.config.device_silent_after)),
        );
        self.schedule(Timer::DeviceConfirm(d), None);
        if was_silent {
            self.silent_devices = self.silent_devices.saturating_sub(1);
            if let Some(open) = self.store.unresolved_alert(&subject, Rule::DeviceOffline)?
                && open.status == AlertStatus::Open
            {
                self.clear(&open, now)?;
            }
            if self.outages.contains(&OutageSource::MassSilence)
                && (self.silent_devices as f64) < self.mass_threshold() as f64 / 2.0
            {
                self.end_outage(OutageSource::MassSilence, now)?;
            }
        }
        Ok(())
    }

    pub(super) fn evaluate_checkin(&mut self, r: u32, now: Timestamp) -> Result<(), AlertingError> {
        let Some(state) = self.residents.get(r as usize) else {
            return Ok(());
        };
        let Some(day) = state.checkin_day else {
            return Ok(());
        };
        let resident = &state.resident;
        let expected = schedule::enrolled_on(resident, day) && !schedule::away_on(resident, day);
        let id = resident.id.clone();
        if expected && !self.store.checkin_done(&id, day)? {
            let cause = if self.no_data(r) {
                Cause::NoData
            } else {
                Cause::NoCheckin
            };
            self.raise(
                r,
                Rule::MissedCheckin,
                day.to_string(),
                Severity::Alarm,
                cause,
                None,
                now,
            )?;
        }
        // Written in one transaction at the end of the tick: losing the mark
        // in a crash only means evaluating the day again, which raises
        // nothing new (an alert's episode is its day).
        self.evaluated.push((resident_subject(&id), day));
        if let Some(state) = self.residents.get_mut(r as usize) {
            state.checkin_evaluated = Some(day);
        }
        self.schedule_checkin(r);
        Ok(())
    }

    pub(super) fn evaluate_inactivity(
        &mut self,
        r: u32,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let Some(state) = self.residents.get(r as usize) else {
            return Ok(());
        };
        let resident = &state.resident;
        let today = schedule::local_date(now, &resident.timezone);
        if !schedule::enrolled_on(resident, today) {
            // Not enrolled yet: look again when enrolment starts.
            let start = schedule::enrolment_start(resident).filter(|s| *s > now);
            self.schedule(Timer::Inactivity(r), start);
            return Ok(());
        }
        if schedule::away_on(resident, today) {
            let end = schedule::away_ends(resident, today);
            self.schedule(Timer::Inactivity(r), end);
            return Ok(());
        }
        let base = self.inactivity_base(state, now);
        let silent_for = now.duration_since(base);
        let tiers = self.config.tiers();
        let reached = tiers.iter().rposition(|t| {
            silent_for >= SignedDuration::try_from(*t).unwrap_or(SignedDuration::MAX)
        });
        if let Some(tier) = reached {
            let severity = [Severity::Caution, Severity::Alarm, Severity::Danger]
                .get(tier)
                .copied()
                .unwrap_or(Severity::Danger);
            let cause = if self.no_data(r) {
                Cause::NoData
            } else {
                Cause::NoActivity
            };
            let episode = base.as_millisecond().to_string();
            match self.raise(r, Rule::Inactivity, episode, severity, cause, None, now)? {
                Raised::AlreadyOpen(open) | Raised::Known(open)
                    if open.severity < severity && open.status != AlertStatus::Resolved =>
                {
                    self.update(
                        &open,
                        AlertEvent::Raised,
                        Some(severity),
                        Some(cause.to_string()),
                        now,
                    )?;
                }
                _ => {}
            }
        }
        self.schedule_inactivity(r, now, false);
        Ok(())
    }

    pub(super) fn device_went_silent(&mut self, d: u32, now: Timestamp) {
        let Some(device) = self.devices.get_mut(d as usize) else {
            return;
        };
        if device.silent_since.is_none() {
            device.silent_since = Some(now);
            self.silent_devices += 1;
            self.recent_silences.push_back(now);
        }
        let window = self.config.mass_silence_window;
        let horizon = now
            .checked_sub(SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        while self.recent_silences.front().is_some_and(|t| *t < horizon) {
            self.recent_silences.pop_front();
        }
        if self.recent_silences.len() >= self.mass_threshold()
            && !self.outages.contains(&OutageSource::MassSilence)
            && let Err(error) = self.start_outage(
                OutageSource::MassSilence,
                now,
                Some("a large share of devices went silent together"),
            )
        {
            tracing::error!(error = %error, "cannot record a mass-silence outage");
        }
        self.schedule(Timer::DeviceConfirm(d), Some(after(now, window)));
    }

    pub(super) fn confirm_device_offline(
        &mut self,
        d: u32,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let Some(device) = self.devices.get(d as usize) else {
            return Ok(());
        };
        if device.silent_since.is_none() {
            return Ok(());
        }
        let Some(r) = device.resident else {
            return Ok(());
        };
        let Some(state) = self.residents.get(r as usize) else {
            return Ok(());
        };
        let today = schedule::local_date(now, &state.resident.timezone);
        if !schedule::enrolled_on(&state.resident, today) {
            return Ok(());
        }
        if schedule::away_on(&state.resident, today) {
            let end = schedule::away_ends(&state.resident, today);
            self.schedule(Timer::DeviceConfirm(d), end);
            return Ok(());
        }
        let episode = device
            .silent_since
            .map(|t| t.as_millisecond().to_string())
            .unwrap_or_default();
        let id = device.id.clone();
        let cause = device.silent_cause;
        self.raise(
            r,
            Rule::DeviceOffline,
            episode,
            Severity::Low,
            cause,
            Some(&id),
            now,
        )?;
        Ok(())
    }

    pub(super) fn escalate(&mut self, id: i64, now: Timestamp) -> Result<(), AlertingError> {
        let Some(alert) = self.store.alert(id)? else {
            return Ok(());
        };
        match alert.status {
            AlertStatus::Open => {}
            AlertStatus::Acknowledged => {
                tracing::info!(alert = id, "alert acknowledged; escalation stops");
                return Ok(());
            }
            AlertStatus::Resolved => return Ok(()),
        }
        let next = after(now, self.config.repeat_every);
        let audience = self.escalation_audience(&alert);
        let webhook = self.webhook;
        let update = AlertUpdate {
            event: AlertEvent::Escalated,
            severity: None,
            escalated: true,
            next_escalation_at: Some(Some(next)),
            note: None,
        };
        let updated = self.store.update_alert(id, &update, now, |row| {
            notification::for_alert(row, AlertEvent::Escalated, &audience, webhook)
        })?;
        if updated.is_some() {
            tracing::warn!(alert = id, rule = %alert.rule, escalations = alert.escalations + 1, "alert not acknowledged; escalated to the supervisor");
            self.schedule(Timer::Escalate(id), Some(next));
            self.outbox.notify_one();
        }
        Ok(())
    }

    /// Whether Ondol cannot see the resident at all: no device, or every
    /// device silent.
    pub(super) fn no_data(&self, r: u32) -> bool {
        self.residents.get(r as usize).is_none_or(|state| {
            state.devices.iter().all(|&d| {
                self.devices
                    .get(d as usize)
                    .is_none_or(|device| device.silent_since.is_some())
            })
        })
    }

    /// Inactivity counts from the latest of: the last activity, the start
    /// of watching, the start of enrolment and the end of the last away period.
    pub(super) fn inactivity_base(&self, state: &ResidentState, now: Timestamp) -> Timestamp {
        let resident = &state.resident;
        [
            state.last_activity,
            Some(state.since),
            schedule::enrolment_start(resident),
            schedule::last_away_end(resident, now),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(state.since)
    }
}
