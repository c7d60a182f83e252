//! The rule engine: per-resident and per-device state in memory, one
//! ordered set of deadlines, and the store as the record of every alert.
//!
//! Nothing here scans the roster on a tick: each resident and device has at
//! most a few entries in `timers` (a `BTreeSet` ordered by time, as
//! mini-redis orders expiries), and [`Engine::tick`] pops only those that
//! are due. Data arriving moves the affected entries.
//!
//! Alert state lives in the store, not here: whether an alert is open,
//! acknowledged or resolved is read back when it matters (an escalation
//! checks the alert before it escalates), so a caseworker acknowledging from
//! another process (the CLI) is honoured. What is in memory is rebuilt from
//! the store at start-up ([`Engine::start`]).
//!
//! Holding (DESIGN §4): a deadline of a missing-data rule that comes while
//! Ondol is in an outage, or inside the grace period after a start or a
//! recovery, is parked; when the hold ends every parked deadline is
//! evaluated again against the data that arrived in the meantime. A
//! resident whose devices all send live data again leaves the grace early
//! (see `Grace`): only what our gap can explain is held.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;

pub use ondol_model::alert::OutageSource;
use ondol_model::alert::{AlertEvent, AlertStatus, Cause, Outcome, Rule, Severity, Subject};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_model::roster::{Device, Resident, Roster, StaffRole};
use ondol_model::{Clock, DeviceId, ResidentId, StaffId};
use ondol_store::alerts::{AlertRow, AlertUpdate, NewAlert, Raised, SYSTEM_ACTOR};
use ondol_store::{NewReading, StatusUpdate, Store};

use crate::config::AlertingConfig;
use crate::error::AlertingError;
use crate::notification::{self, Audience};
use crate::pacemaker::Stall;
use crate::schedule;

/// A deadline. Indices point into `Engine::residents` / `Engine::devices`.
///
/// Deadlines due at the same time fire in the order of the variants: a
/// device's silence first, so that a resident rule decided at that moment
/// (after a hold, many are) knows whether Ondol can see the resident at all
/// (`no_data`), whatever order they were scheduled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
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
    fn is_held(self) -> bool {
        matches!(
            self,
            Timer::Checkin(_)
                | Timer::Inactivity(_)
                | Timer::DeviceSilent(_)
                | Timer::DeviceConfirm(_)
        )
    }
}

#[derive(Debug)]
struct ResidentState {
    resident: Resident,
    /// Devices bound to the resident now.
    devices: Vec<u32>,
    /// Watched since: the first deadlines count from here.
    since: Timestamp,
    last_activity: Option<Timestamp>,
    checkin_evaluated: Option<Date>,
    /// The day whose check-in deadline is scheduled.
    checkin_day: Option<Date>,
    /// Taken off the roster while running: no timers; kept so that its
    /// open alerts still reach the right staff until they are resolved.
    removed: bool,
}

#[derive(Debug)]
struct DeviceState {
    id: DeviceId,
    resident: Option<u32>,
    since: Timestamp,
    last_heard: Option<Timestamp>,
    /// Since when the device counts as silent (`None`: heard recently).
    silent_since: Option<Timestamp>,
    /// Why: `silent` (past its cadence) or `will_offline`.
    silent_cause: Cause,
}

/// Counts for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub residents: usize,
    pub devices: usize,
    pub timers: usize,
    pub parked: usize,
}

/// The alerting rules over the whole roster.
pub struct Engine {
    store: Store,
    config: AlertingConfig,
    clock: Arc<dyn Clock>,
    webhook: bool,
    residents: Vec<ResidentState>,
    resident_index: HashMap<ResidentId, u32>,
    /// Residents taken off the roster while running (for their open alerts).
    removed_index: HashMap<ResidentId, u32>,
    devices: Vec<DeviceState>,
    device_index: HashMap<DeviceId, u32>,
    /// Supervisors with the region they oversee (`None`: every region).
    supervisors: Vec<(Option<String>, StaffId)>,
    timers: BTreeSet<(Timestamp, Timer)>,
    /// When each timer in `timers` is due (to move or drop it).
    due: HashMap<Timer, Timestamp>,
    /// Deadlines held back until the hold ends.
    parked: BTreeSet<Timer>,
    /// The grace period after a start or an outage, if one runs.
    grace: Option<Grace>,
    outages: BTreeSet<OutageSource>,
    /// The open system alert, if any.
    outage_alert: Option<i64>,
    /// When devices went silent lately (the mass-silence window).
    recent_silences: VecDeque<Timestamp>,
    silent_devices: usize,
    watched_devices: usize,
    /// Woken whenever notifications were queued.
    outbox: Arc<Notify>,
    /// Check-in days evaluated in this tick, not yet recorded.
    evaluated: Vec<(Subject, Date)>,
    /// Vital bands: per resident (`Some(index)`) or for everyone (`None`).
    bands: HashMap<(Option<u32>, ReadingType), Band>,
    /// Readings outside their band in a row, per resident and type.
    vital_runs: HashMap<(u32, ReadingType), u32>,
}

/// The grace period after a start or the end of an outage (DESIGN §4),
/// left early by each resident whose devices all send live data again.
#[derive(Debug)]
struct Grace {
    began: Timestamp,
    until: Timestamp,
    /// Devices that sent a reading measured since `began`: what they kept
    /// while we could not hear them has been sent before it.
    live: HashSet<u32>,
    /// Residents all of whose devices are live: decided as usual.
    released: HashSet<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Band {
    min: Option<f64>,
    max: Option<f64>,
    consecutive: u32,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stats", &self.stats())
            .field("outages", &self.outages)
            .field("grace_until", &self.grace.as_ref().map(|g| g.until))
            .finish_non_exhaustive()
    }
}

fn after(at: Timestamp, by: Duration) -> Timestamp {
    let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
    at.saturating_add(by).unwrap_or(Timestamp::MAX)
}

fn resident_subject(id: &ResidentId) -> Subject {
    Subject::Resident(id.clone())
}

fn device_subject(id: &DeviceId) -> Subject {
    Subject::Device(id.clone())
}

/// Supervisors with the region they oversee (`None`: every region).
fn supervisors_of_roster(roster: &Roster) -> Vec<(Option<String>, StaffId)> {
    roster
        .staff
        .iter()
        .filter(|s| s.role == StaffRole::Supervisor)
        .map(|s| (s.region.clone(), s.id.clone()))
        .collect()
}

/// The vital bands of `config`, keyed by resident index (`None`: everyone).
fn build_bands(
    config: &AlertingConfig,
    resident_index: &HashMap<ResidentId, u32>,
) -> HashMap<(Option<u32>, ReadingType), Band> {
    let mut bands = HashMap::new();
    for band in &config.vital_bands {
        let Some(kind) = crate::config::vital_type(&band.reading_type) else {
            continue;
        };
        let who = match &band.resident {
            None => None,
            Some(id) => match id
                .parse::<ResidentId>()
                .ok()
                .and_then(|id| resident_index.get(&id))
            {
                Some(&r) => Some(r),
                None => {
                    tracing::warn!(resident = %id, "a vital band names a resident who is not on the roster; ignored");
                    continue;
                }
            },
        };
        bands.insert(
            (who, kind),
            Band {
                min: band.min,
                max: band.max,
                consecutive: band.consecutive.max(1),
            },
        );
    }
    bands
}

/// Whether a change from `old` to `new` matters to the rules (the name
/// does not).
fn same_for_rules(old: &Resident, new: &Resident) -> bool {
    old.timezone_name == new.timezone_name
        && old.region == new.region
        && old.enrolled_from == new.enrolled_from
        && old.enrolled_until == new.enrolled_until
        && old.caseworker == new.caseworker
        && old.checkin == new.checkin
        && old.away == new.away
}

/// Whether the resident's enrolment is over at `now` (for good: the
/// rules have nothing left to watch).
fn enrolment_over(resident: &Resident, now: Timestamp) -> bool {
    resident
        .enrolled_until
        .is_some_and(|until| schedule::local_date(now, &resident.timezone) > until)
}

/// The next moment after `now` at which an active device's binding starts
/// or ends: where each device belongs changes then without a roster edit.
fn next_binding_change(devices: &[Device], now: Timestamp) -> Option<Timestamp> {
    devices
        .iter()
        .filter(|d| d.active)
        .flat_map(|d| d.bindings.iter())
        .flat_map(|b| [b.from, b.until])
        .flatten()
        .filter(|at| *at > now)
        .min()
}

/// What a roster change did, for the log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RosterChanges {
    pub residents_added: usize,
    pub residents_changed: usize,
    pub residents_removed: usize,
    pub devices_added: usize,
    pub devices_moved: usize,
    pub devices_removed: usize,
}

/// What one [`Engine::follow_feed`] applied.
#[derive(Debug, Default)]
pub struct FeedProgress {
    /// Feed rows applied (and removed).
    pub rows: usize,
    /// The limit was reached: more rows may be waiting.
    pub more: bool,
    /// From each row's commit to its application.
    pub lags: Vec<Duration>,
}

impl RosterChanges {
    pub fn is_empty(&self) -> bool {
        *self == RosterChanges::default()
    }
}

impl Engine {
    /// Loads the roster, activity, device state and unresolved alerts from
    /// `store` and schedules every deadline. Everything missing-data related
    /// is held for the grace period after this start.
    pub fn start(
        mut store: Store,
        config: AlertingConfig,
        clock: Arc<dyn Clock>,
        webhook: bool,
        outbox: Arc<Notify>,
    ) -> Result<Engine, AlertingError> {
        let now = clock.now();
        let roster = store.load_roster()?;
        let supervisors = supervisors_of_roster(&roster);
        let binding_change = next_binding_change(&roster.devices, now);
        let watch: HashMap<Subject, (Timestamp, Option<Date>)> = store
            .watch_states()?
            .into_iter()
            .map(|(subject, since, evaluated)| (subject, (since, evaluated)))
            .collect();
        let mut new_subjects = Vec::new();

        let mut residents = Vec::with_capacity(roster.residents.len());
        let mut resident_index = HashMap::with_capacity(roster.residents.len());
        for resident in roster.residents {
            let subject = resident_subject(&resident.id);
            let (since, evaluated) = match watch.get(&subject) {
                Some(state) => *state,
                None => {
                    new_subjects.push(subject);
                    (now, None)
                }
            };
            let index = u32::try_from(residents.len()).unwrap_or(u32::MAX);
            resident_index.insert(resident.id.clone(), index);
            residents.push(ResidentState {
                resident,
                devices: Vec::new(),
                since,
                last_activity: None,
                checkin_evaluated: evaluated,
                checkin_day: None,
                removed: false,
            });
        }
        for row in store.all_resident_activity()? {
            if let Some(&i) = resident_index.get(&row.resident_id)
                && let Some(state) = residents.get_mut(i as usize)
            {
                state.last_activity = row.last_activity_at;
            }
        }

        let mut devices = Vec::new();
        let mut device_index = HashMap::new();
        for device in roster.devices.iter().filter(|d| d.active) {
            let Some(resident) = device
                .resident_at(now)
                .and_then(|r| resident_index.get(r).copied())
            else {
                continue;
            };
            let subject = device_subject(&device.id);
            let since = match watch.get(&subject) {
                Some((since, _)) => *since,
                None => {
                    new_subjects.push(subject);
                    now
                }
            };
            let index = u32::try_from(devices.len()).unwrap_or(u32::MAX);
            device_index.insert(device.id.clone(), index);
            if let Some(state) = residents.get_mut(resident as usize) {
                state.devices.push(index);
            }
            devices.push(DeviceState {
                id: device.id.clone(),
                resident: Some(resident),
                since,
                last_heard: None,
                silent_since: None,
                silent_cause: Cause::Silent,
            });
        }
        let mut will_offline = Vec::new();
        for row in store.all_device_states()? {
            if let Some(&i) = device_index.get(&row.device_id)
                && let Some(state) = devices.get_mut(i as usize)
            {
                state.last_heard = row.last_seen_at.max(row.last_status_at);
                if row.online == Some(false) {
                    will_offline.push(i);
                }
            }
        }
        let subjects: Vec<(Subject, Timestamp)> =
            new_subjects.into_iter().map(|s| (s, now)).collect();
        store.start_watching(&subjects)?;

        let bands = build_bands(&config, &resident_index);

        let watched_devices = devices.len();
        let mut engine = Engine {
            store,
            config,
            clock,
            webhook,
            residents,
            resident_index,
            removed_index: HashMap::new(),
            devices,
            device_index,
            supervisors,
            timers: BTreeSet::new(),
            due: HashMap::new(),
            parked: BTreeSet::new(),
            grace: None,
            outages: BTreeSet::new(),
            outage_alert: None,
            recent_silences: VecDeque::new(),
            silent_devices: 0,
            watched_devices,
            outbox,
            evaluated: Vec::new(),
            bands,
            vital_runs: HashMap::new(),
        };
        if !engine.config.grace.is_zero() {
            engine.begin_grace(now);
        }
        for i in 0..engine.residents.len() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            engine.schedule_checkin(i);
            engine.schedule_inactivity(i, now, true);
        }
        engine.schedule(Timer::BindingChange, binding_change);
        for i in 0..engine.devices.len() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            engine.schedule_device(i);
        }
        for i in will_offline {
            // The Will said offline: silent as of now (held like any other).
            engine.schedule(Timer::DeviceSilent(i), Some(now));
            if let Some(d) = engine.devices.get_mut(i as usize) {
                d.silent_cause = Cause::WillOffline;
            }
        }
        for alert in engine.store.unresolved_alerts()? {
            if alert.rule == Rule::SystemOutage {
                engine.outage_alert = Some(alert.id);
            }
            if alert.status == AlertStatus::Open
                && let Some(next) = alert.next_escalation_at
            {
                engine.schedule(Timer::Escalate(alert.id), Some(next));
            }
        }
        Ok(engine)
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            residents: self.residents.len(),
            devices: self.devices.len(),
            timers: self.timers.len(),
            parked: self.parked.len(),
        }
    }

    /// The earliest deadline, if any: when [`tick`](Self::tick) has work.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Whether missing-data alerts are being held now.
    pub fn holding(&self) -> bool {
        self.holding_at(self.clock.now())
    }

    fn holding_at(&self, now: Timestamp) -> bool {
        self.blind() || self.grace.as_ref().is_some_and(|g| now < g.until)
    }

    /// Whether `timer` is held now: a missing-data deadline, while we are
    /// blind, or in the grace period unless its resident has left it early
    /// (every device of theirs is sending live data again).
    fn holds(&self, timer: Timer, now: Timestamp) -> bool {
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
    fn resident_of(&self, timer: Timer) -> Option<u32> {
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
    fn begin_grace(&mut self, now: Timestamp) {
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
    fn heard_live(&mut self, d: u32, ts: Timestamp, now: Timestamp) {
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
    fn blind(&self) -> bool {
        self.outages.iter().any(|source| source.hides_residents())
    }

    /// The store, for reads (tests, the benchmark).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn schedule(&mut self, timer: Timer, at: Option<Timestamp>) {
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

    fn record_evaluations(&mut self) -> Result<(), AlertingError> {
        if self.evaluated.is_empty() {
            return Ok(());
        }
        self.store.checkins_evaluated(&self.evaluated)?;
        self.evaluated.clear();
        Ok(())
    }

    fn fire(&mut self, timer: Timer, now: Timestamp) -> Result<(), AlertingError> {
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

    fn end_hold(&mut self, now: Timestamp) -> Result<(), AlertingError> {
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

    // ---- data in ----

    /// Applies up to `limit` rows of the store's alerting feed (what any
    /// process committed), each row's statuses then readings, in feed
    /// order, then removes them from the feed. A row applied twice (a
    /// crash before the removal) changes nothing: raising is idempotent
    /// per episode, and activity only moves forward.
    pub fn follow_feed(&mut self, limit: usize) -> Result<FeedProgress, AlertingError> {
        let take = self.store.take_feed(limit)?;
        if take.is_empty() {
            return Ok(FeedProgress::default());
        }
        for (id, problem) in &take.unreadable {
            tracing::error!(row = id, problem = %problem, "an alerting feed row cannot be read; skipped");
        }
        let now = self.clock.now();
        let mut lags = Vec::with_capacity(take.rows.len());
        for row in &take.rows {
            self.on_statuses(&row.facts.statuses)?;
            self.on_readings(&row.facts.readings)?;
            lags.push(Duration::try_from(now.duration_since(row.committed_at)).unwrap_or_default());
        }
        self.store.finish_feed(&take.ids())?;
        Ok(FeedProgress {
            rows: take.len(),
            more: take.len() >= limit,
            lags,
        })
    }

    /// Readings newly stored by ingest.
    pub fn on_readings(&mut self, readings: &[NewReading]) -> Result<(), AlertingError> {
        let now = self.clock.now();
        for new in readings {
            if let Some(&d) = self.device_index.get(&new.device_id) {
                self.device_heard(d, new.received_at, now)?;
                self.heard_live(d, new.reading.ts, now);
            }
            let Some(&r) = self.resident_index.get(&new.resident_id) else {
                continue;
            };
            match new.reading.value {
                ReadingValue::Checkin(CheckinValue::Help) => {
                    self.help_request(r, new, Cause::Help, now)?;
                }
                ReadingValue::Fall => self.help_request(r, new, Cause::Fall, now)?,
                ReadingValue::Number(value)
                | ReadingValue::BloodPressure {
                    systolic: value, ..
                } => {
                    self.check_vital(r, new, value, now)?;
                }
                _ => {}
            }
            let Some(state) = self.residents.get_mut(r as usize) else {
                continue;
            };
            let ts = new.reading.ts;
            if new.counts_as_activity && state.last_activity.is_none_or(|last| ts > last) {
                state.last_activity = Some(ts);
                self.activity_seen(r, now)?;
            }
            let passive = self
                .residents
                .get(r as usize)
                .is_some_and(|s| s.resident.checkin.passive);
            let checked_in = new.reading.value == ReadingValue::Checkin(CheckinValue::Ok)
                || (passive && new.counts_as_activity);
            if checked_in {
                self.late_checkin(r, new.local_date, now)?;
            }
        }
        self.outbox.notify_one();
        Ok(())
    }

    /// Status messages and Wills.
    pub fn on_statuses(&mut self, statuses: &[StatusUpdate]) -> Result<(), AlertingError> {
        let now = self.clock.now();
        for update in statuses {
            let Some(&d) = self.device_index.get(&update.device_id) else {
                continue;
            };
            if update.status.online {
                self.device_heard(d, update.received_at, now)?;
            } else {
                if let Some(device) = self.devices.get_mut(d as usize) {
                    device.last_heard = device.last_heard.max(Some(update.received_at));
                    device.silent_cause = Cause::WillOffline;
                }
                self.schedule(Timer::DeviceSilent(d), Some(now));
            }
        }
        self.outbox.notify_one();
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

    /// The engine's "now" (its injected clock).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

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
    fn add_resident(&mut self, resident: Resident, now: Timestamp) {
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

    fn attach_device(&mut self, d: u32, r: u32) {
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
    fn detach_device(&mut self, d: u32) {
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

    fn help_request(
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
    fn check_vital(
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

    fn activity_seen(&mut self, r: u32, now: Timestamp) -> Result<(), AlertingError> {
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

    fn late_checkin(&mut self, r: u32, date: Date, now: Timestamp) -> Result<(), AlertingError> {
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

    fn device_heard(&mut self, d: u32, at: Timestamp, now: Timestamp) -> Result<(), AlertingError> {
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

    // ---- rules ----

    fn evaluate_checkin(&mut self, r: u32, now: Timestamp) -> Result<(), AlertingError> {
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

    fn evaluate_inactivity(&mut self, r: u32, now: Timestamp) -> Result<(), AlertingError> {
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

    fn device_went_silent(&mut self, d: u32, now: Timestamp) {
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

    fn confirm_device_offline(&mut self, d: u32, now: Timestamp) -> Result<(), AlertingError> {
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

    fn escalate(&mut self, id: i64, now: Timestamp) -> Result<(), AlertingError> {
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

    // ---- outages ----

    fn mass_threshold(&self) -> usize {
        let share = (self.watched_devices as f64 * self.config.mass_silence_share).ceil();
        (share as usize)
            .max(self.config.mass_silence_min_devices)
            .max(1)
    }

    fn start_outage(
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

    fn end_outage(&mut self, source: OutageSource, now: Timestamp) -> Result<(), AlertingError> {
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

    // ---- alerts ----

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        r: u32,
        rule: Rule,
        episode: String,
        severity: Severity,
        cause: Cause,
        device: Option<&DeviceId>,
        now: Timestamp,
    ) -> Result<Raised, AlertingError> {
        let Some(state) = self.residents.get(r as usize) else {
            return Err(AlertingError::Internal("resident index out of range"));
        };
        let resident = &state.resident;
        let subject = match (rule, device) {
            (Rule::DeviceOffline, Some(device)) => device_subject(device),
            _ => resident_subject(&resident.id),
        };
        let new = NewAlert {
            rule,
            subject,
            resident_id: Some(resident.id.clone()),
            device_id: device.cloned(),
            episode,
            severity,
            cause,
            detail: None,
            local_date: Some(schedule::local_date(now, &resident.timezone)),
            opened_at: now,
            next_escalation_at: Some(after(now, self.config.ack_timeout)),
        };
        let audience = self.first_audience(resident);
        let webhook = self.webhook;
        let raised = self.store.raise_alert(&new, |row| {
            notification::for_alert(row, AlertEvent::Opened, &audience, webhook)
        })?;
        if let Raised::New(row) = &raised {
            tracing::warn!(alert = row.id, rule = %rule, severity = %severity, cause = %cause, resident = %resident.id, "alert opened");
            self.schedule(Timer::Escalate(row.id), row.next_escalation_at);
            self.outbox.notify_one();
        }
        Ok(raised)
    }

    fn update(
        &mut self,
        alert: &AlertRow,
        event: AlertEvent,
        severity: Option<Severity>,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let audience = match alert.resident_id.as_ref().and_then(|id| self.state_of(id)) {
            Some(state) => self.first_audience(&state.resident),
            None => Audience::System,
        };
        let webhook = self.webhook;
        let update = AlertUpdate {
            event,
            severity,
            escalated: false,
            next_escalation_at: None,
            note,
        };
        if self
            .store
            .update_alert(alert.id, &update, now, |row| {
                notification::for_alert(row, event, &audience, webhook)
            })?
            .is_some()
        {
            tracing::warn!(alert = alert.id, rule = %alert.rule, event = %event, "alert updated");
            self.outbox.notify_one();
        }
        Ok(())
    }

    /// The condition ended before anyone acknowledged.
    fn clear(&mut self, alert: &AlertRow, now: Timestamp) -> Result<(), AlertingError> {
        if let Ok(row) = self.store.resolve_alert(
            alert.id,
            SYSTEM_ACTOR,
            Outcome::ClearedByResident,
            now,
            None,
        )? {
            tracing::info!(alert = row.id, rule = %row.rule, "alert cleared: the condition ended before anyone acknowledged");
            self.schedule(Timer::Escalate(row.id), None);
        }
        Ok(())
    }

    fn resolve_if_open(&mut self, id: i64, now: Timestamp) -> Result<(), AlertingError> {
        if let Some(alert) = self.store.alert(id)?
            && alert.status == AlertStatus::Open
        {
            self.clear(&alert, now)?;
        }
        Ok(())
    }

    /// Who hears of a resident's alert first: the caseworker, or the
    /// supervisors when the resident has none.
    fn first_audience(&self, resident: &Resident) -> Audience {
        match &resident.caseworker {
            Some(cw) => Audience::Staff(vec![cw.clone()]),
            None => Audience::Staff(self.supervisors_of(&resident.region)),
        }
    }

    /// A resident's state, also after they left the roster (their open
    /// alerts still go to the staff who were responsible).
    fn state_of(&self, id: &ResidentId) -> Option<&ResidentState> {
        self.resident_index
            .get(id)
            .or_else(|| self.removed_index.get(id))
            .and_then(|&r| self.residents.get(r as usize))
    }

    fn escalation_audience(&self, alert: &AlertRow) -> Audience {
        let Some(state) = alert.resident_id.as_ref().and_then(|id| self.state_of(id)) else {
            return Audience::System;
        };
        let mut to = self.supervisors_of(&state.resident.region);
        if let Some(cw) = &state.resident.caseworker
            && !to.contains(cw)
        {
            to.push(cw.clone());
        }
        Audience::Staff(to)
    }

    fn supervisors_of(&self, region: &str) -> Vec<StaffId> {
        self.supervisors
            .iter()
            .filter(|(r, _)| r.as_deref().is_none_or(|r| r == region))
            .map(|(_, id)| id.clone())
            .collect()
    }

    // ---- helpers ----

    /// Whether Ondol cannot see the resident at all: no device, or every
    /// device silent.
    fn no_data(&self, r: u32) -> bool {
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
    fn inactivity_base(&self, state: &ResidentState, now: Timestamp) -> Timestamp {
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

    fn schedule_checkin(&mut self, r: u32) {
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
    fn schedule_inactivity(&mut self, r: u32, now: Timestamp, catch_up: bool) {
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

    fn schedule_device(&mut self, d: u32) {
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
