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
//!
//! This file holds the state, start-up (rebuilding from the store) and
//! data in; the rest is split by concern:
//! - `deadlines`: the deadline set and what each deadline does when due;
//! - `rules`: the rules of DESIGN §4 on data and at deadlines;
//! - `hold`: our outages, the grace period and its early release;
//! - `roster_view`: residents and devices by index, and roster changes;
//! - `effects`: alerts written to the store with their notifications.

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

mod deadlines;
mod effects;
mod hold;
mod roster_view;
mod rules;

use deadlines::Timer;

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

    /// The store, for reads (tests, the benchmark).
    pub fn store(&self) -> &Store {
        &self.store
    }

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
        // Ingest checked each reading against the roster it had: one that
        // names someone alerting does not know means the roster changed
        // and the news has not reached alerting yet. Reload it first, or a
        // new resident's first help press would be dropped.
        let strangers = take.rows.iter().any(|row| {
            row.facts.readings.iter().any(|r| {
                !self.device_index.contains_key(&r.device_id)
                    || !self.resident_index.contains_key(&r.resident_id)
            })
        });
        if strangers {
            let roster = self.store.load_roster()?;
            let changes = self.apply_roster(&roster)?;
            if !changes.is_empty() {
                tracing::info!(
                    residents_added = changes.residents_added,
                    devices_added = changes.devices_added,
                    devices_moved = changes.devices_moved,
                    "the roster changed before its news arrived; applied it for the data that needs it"
                );
            }
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

    /// The engine's "now" (its injected clock).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
