//! The roster as alerting sees it: residents and their devices by index,
//! and applying a changed roster while running (who joins, moves or leaves).

use super::*;

impl Engine {
    /// Follows a change of the roster made while running (the admin API,
    /// the CLI, an import), with these semantics:
    ///
    /// - A resident who joins is watched from now: inactivity and each
    ///   device's silence count from now, and the first check-in deadline is
    ///   that of the first whole window from now on (a window already open
    ///   when the enrolment arrives is not expected, so nobody is paged a
    ///   minute after being enrolled).
    /// - A resident who leaves the roster, or whose enrolment is over, has
    ///   no more timers; their open alerts stay (and still escalate) until
    ///   staff resolve them.
    /// - A changed resident (away periods, window, enrolment, caseworker,
    ///   region) is rescheduled; rules read the current record when they
    ///   fire, so a new away period suspends them at once and later
    ///   notifications go to the new caseworker. Deadlines held during an
    ///   outage stay held.
    /// - Devices follow their active binding now: new ones are watched from
    ///   now, removed, revoked or unbound ones stop being watched.
    pub fn apply_roster(&mut self, roster: &Roster) -> Result<RosterChanges, AlertingError> {
        let now = self.clock.now();
        let mut changes = RosterChanges::default();
        let mut rewatch: Vec<Subject> = Vec::new();
        self.supervisors = supervisors_of_roster(roster);

        let present: std::collections::HashSet<&ResidentId> =
            roster.residents.iter().map(|r| &r.id).collect();
        let gone: Vec<(ResidentId, u32)> = self
            .resident_index
            .iter()
            .filter(|(id, _)| !present.contains(id))
            .map(|(id, &r)| (id.clone(), r))
            .collect();
        for (id, r) in gone {
            self.resident_index.remove(&id);
            self.removed_index.insert(id, r);
            if let Some(state) = self.residents.get_mut(r as usize) {
                state.removed = true;
            }
            self.schedule_checkin(r);
            self.schedule(Timer::Inactivity(r), None);
            changes.residents_removed += 1;
        }
        for resident in &roster.residents {
            match self.resident_index.get(&resident.id).copied() {
                Some(r) => {
                    let Some(state) = self.residents.get_mut(r as usize) else {
                        continue;
                    };
                    if same_for_rules(&state.resident, resident) {
                        continue;
                    }
                    state.resident = resident.clone();
                    changes.residents_changed += 1;
                    // A parked deadline is evaluated when the hold ends,
                    // against the record as it is then.
                    if !self.parked.contains(&Timer::Checkin(r)) {
                        self.schedule_checkin(r);
                    }
                    if !self.parked.contains(&Timer::Inactivity(r)) {
                        self.schedule_inactivity(r, now, true);
                    }
                }
                None => {
                    self.add_resident(resident.clone(), now);
                    rewatch.push(resident_subject(&resident.id));
                    changes.residents_added += 1;
                }
            }
        }

        // Devices: where each active device is bound now.
        let mut wanted: HashMap<&DeviceId, u32> = HashMap::new();
        for device in roster.devices.iter().filter(|d| d.active) {
            if let Some(&r) = device
                .resident_at(now)
                .and_then(|id| self.resident_index.get(id))
            {
                wanted.insert(&device.id, r);
            }
        }
        let gone: Vec<(DeviceId, u32)> = self
            .device_index
            .iter()
            .filter(|(id, _)| !wanted.contains_key(id))
            .map(|(id, &d)| (id.clone(), d))
            .collect();
        for (id, d) in gone {
            self.device_index.remove(&id);
            self.detach_device(d);
            changes.devices_removed += 1;
        }
        for (id, r) in wanted {
            match self.device_index.get(id).copied() {
                Some(d) => {
                    let bound = self.devices.get(d as usize).and_then(|dev| dev.resident);
                    if bound != Some(r) {
                        self.detach_device(d);
                        self.attach_device(d, r);
                        self.schedule_device(d);
                        changes.devices_moved += 1;
                    }
                }
                None => {
                    let d = u32::try_from(self.devices.len()).unwrap_or(u32::MAX);
                    self.devices.push(DeviceState {
                        id: id.clone(),
                        resident: None,
                        since: now,
                        last_heard: None,
                        silent_since: None,
                        silent_cause: Cause::Silent,
                    });
                    self.device_index.insert(id.clone(), d);
                    self.attach_device(d, r);
                    self.schedule_device(d);
                    rewatch.push(device_subject(id));
                    changes.devices_added += 1;
                }
            }
        }
        self.watched_devices = self.device_index.len();
        self.bands = build_bands(&self.config, &self.resident_index);
        self.schedule(
            Timer::BindingChange,
            next_binding_change(&roster.devices, now),
        );

        let subjects: Vec<(Subject, Timestamp)> = rewatch.into_iter().map(|s| (s, now)).collect();
        self.store.restart_watching(&subjects)?;
        self.record_evaluations()?;
        if !changes.is_empty() {
            tracing::info!(
                residents_added = changes.residents_added,
                residents_changed = changes.residents_changed,
                residents_removed = changes.residents_removed,
                devices_added = changes.devices_added,
                devices_moved = changes.devices_moved,
                devices_removed = changes.devices_removed,
                residents = self.residents.len(),
                devices = self.devices.len(),
                "alerting follows a roster change"
            );
        }
        Ok(changes)
    }

    /// Watches a resident who joined the roster while running (see
    /// [`apply_roster`](Self::apply_roster)).
    pub(super) fn add_resident(&mut self, resident: Resident, now: Timestamp) {
        let r = u32::try_from(self.residents.len()).unwrap_or(u32::MAX);
        let today = schedule::local_date(now, &resident.timezone);
        // A window already open is not expected: evaluated as done.
        let skip_today = schedule::enrolled_on(&resident, today)
            && schedule::checkin_window(&resident, today)
                .is_some_and(|(start, end)| start < now && now < end);
        let subject = resident_subject(&resident.id);
        if skip_today {
            self.evaluated.push((subject, today));
        }
        self.removed_index.remove(&resident.id);
        self.resident_index.insert(resident.id.clone(), r);
        self.residents.push(ResidentState {
            resident,
            devices: Vec::new(),
            since: now,
            last_activity: None,
            checkin_evaluated: skip_today.then_some(today),
            checkin_day: None,
            removed: false,
        });
        self.schedule_checkin(r);
        self.schedule_inactivity(r, now, false);
    }

    pub(super) fn attach_device(&mut self, d: u32, r: u32) {
        if let Some(device) = self.devices.get_mut(d as usize) {
            device.resident = Some(r);
        }
        if let Some(state) = self.residents.get_mut(r as usize)
            && !state.devices.contains(&d)
        {
            state.devices.push(d);
        }
    }

    /// Stops watching a device (removed, revoked, unbound or moving).
    pub(super) fn detach_device(&mut self, d: u32) {
        let Some(device) = self.devices.get_mut(d as usize) else {
            return;
        };
        let was_silent = device.silent_since.take().is_some();
        if let Some(r) = device.resident.take()
            && let Some(state) = self.residents.get_mut(r as usize)
        {
            state.devices.retain(|&x| x != d);
        }
        if was_silent {
            self.silent_devices = self.silent_devices.saturating_sub(1);
        }
        self.schedule(Timer::DeviceSilent(d), None);
        self.schedule(Timer::DeviceConfirm(d), None);
    }
}
