//! `ondol simulate backfill`: years of synthetic history written straight
//! into the store, for demos, tests and benchmarks of the evaluator reports.
//!
//! Nothing here writes a table directly. Readings are encoded as device
//! messages (the wire contract), judged by ingest's own [`Judge`] (decoding,
//! validation, attribution to the resident, local day and hour, check-in
//! window) and committed with [`Store::commit_batch`], which maintains the
//! rollups; alerts go through [`Store::raise_alert`], `acknowledge_alert` and
//! `resolve_alert`, which keep the alert rollup. So a report over a
//! backfilled store exercises exactly the code a real pilot does.
//!
//! What a run generates, deterministically for its seed:
//! - residents in five regions (one with daylight saving time), with the
//!   default, a passive or no check-in plan; 30 % enrol part-way through the
//!   history and 5 % leave before its end; 40 % have away periods;
//! - per home a gateway and a button, a wearable (70 %) and a motion/door
//!   sensor (80 %): check-ins (on time, late or missed at each resident's own
//!   rate), motion through the waking day, the front door, heart rate and
//!   SpO2 three times a day, daily steps, blood pressure, weight and glucose
//!   for some, ambient temperature every 3 h, now and then a satisfaction
//!   score, rarely a help request or a fall;
//! - spells of 12–72 h when the home's devices are silent (power cuts,
//!   unplugged gateways);
//! - alerts as the rules would raise them (missed check-in at the window's
//!   end, help request at once, device offline after 30 min and inactivity
//!   with cause `no_data` after 8 h of silence), acknowledged by the
//!   resident's caseworker after a few minutes and resolved with an outcome,
//!   or cleared by the resident when the condition ended before anyone
//!   acknowledged. No notification is written: history pages nobody.
//!
//! Reruns: the store records each backfill's parameters. Running the same
//! backfill again stores nothing twice (readings are duplicates by their
//! dedupe keys, alerts are known by their episodes) and completes one that
//! was interrupted; any other backfill, or one into a store that already
//! holds residents or data, is refused.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use ondol_ingest::RosterIndex;
use ondol_ingest::judge::{Inbound, Judge};
use ondol_model::alert::{AlertStatus, Cause, Outcome, Rule, Severity, Subject};
use ondol_model::roster::{
    AwayPeriod, CheckinPlan, Device, DeviceBinding, DeviceKind, Resident, Roster, Staff, StaffRole,
};
use ondol_model::wire::{self, DecodeLimits};
use ondol_model::{
    CheckinValue, DeviceId, DoorState, Reading, ReadingType, ReadingValue, ResidentId, StaffId,
};
use ondol_store::alerts::{NewAlert, Raised, SYSTEM_ACTOR};
use ondol_store::{Batch, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;

/// Bumped whenever the generator changes what a seed produces, so a rerun
/// of an older backfill is refused instead of mixing two histories.
const GENERATOR_VERSION: u32 = 1;
/// Readings committed per transaction.
const BATCH_READINGS: usize = 20_000;

/// Regions of synthetic residents with their time zones and weights.
const REGIONS: [(&str, &str, u32); 5] = [
    ("Asia/Seoul", "gangjin", 35),
    ("Asia/Seoul", "haenam", 25),
    ("Asia/Seoul", "wando", 15),
    ("Asia/Seoul", "jindo", 15),
    ("Europe/Lisbon", "lisboa", 10),
];
const ROOMS: [&str; 4] = ["kitchen", "bedroom", "living", "bathroom"];
const RESIDENTS_PER_CASEWORKER: usize = 25;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Configuration file; names the store (storage.data_dir), which must
    /// be new or hold this same backfill.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Synthetic residents to enrol.
    #[arg(long)]
    pub residents: usize,
    /// Days of history, ending with --until.
    #[arg(long)]
    pub days: u32,
    /// The same seed and options give the same history.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Last local date of the history; at least two days before today (UTC),
    /// so that every alert of the history is resolved by now. Default: two
    /// days ago.
    #[arg(long, value_name = "DATE")]
    pub until: Option<Date>,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub residents: usize,
    pub days: u32,
    pub seed: u64,
    /// The last local date of the history.
    pub until: Date,
}

impl Plan {
    /// The first local date of the history.
    pub fn first_day(&self) -> Date {
        let back = i64::from(self.days.saturating_sub(1));
        self.until.checked_sub(back.days()).unwrap_or(self.until)
    }

    /// The canonical string recorded in the store.
    pub fn params(&self) -> String {
        format!(
            "generator={GENERATOR_VERSION} seed={} residents={} days={} until={}",
            self.seed, self.residents, self.days, self.until
        )
    }
}

/// What a backfill generated (the history the store now holds) and what it
/// newly wrote in this run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub residents: usize,
    /// Readings generated and accepted by ingest's judge.
    pub readings: u64,
    /// Of those, newly stored by this run, and already stored before.
    pub readings_new: u64,
    pub readings_duplicate: u64,
    /// Readings the judge refused: a generator bug if ever non-zero.
    pub rejected: u64,
    /// Alerts of the history, and how many this run raised anew.
    pub alerts: u64,
    pub alerts_new: u64,
    /// The report's figures over the whole history, every region
    /// (enrolled days only, as DESIGN §6 counts them).
    pub expected: Expected,
}

/// The figures a utilisation report over the whole history must show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    pub resident_days_enrolled: u64,
    pub active_days: u64,
    pub hours_with_data: u64,
    pub checkins_expected: u64,
    pub checkins_done: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
    pub outcomes: BTreeMap<String, u64>,
    pub acknowledged: u64,
    pub satisfaction_count: u64,
    pub satisfaction_sum: u64,
}

/// `ondol simulate backfill`.
pub fn main(args: BackfillArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("error: {errors}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(&config.log);
    match run_cli(&config, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(config: &Config, args: &BackfillArgs) -> anyhow::Result<()> {
    let today = Timestamp::now().to_zoned(TimeZone::UTC).date();
    let latest = today
        .checked_sub(2.days())
        .context("today is out of range")?;
    let until = args.until.unwrap_or(latest);
    anyhow::ensure!(
        until <= latest,
        "--until {until} is too recent: the history must end by {latest} (two days before today, UTC) so that its last alerts are resolved before now"
    );
    anyhow::ensure!(args.residents > 0, "--residents must be at least 1");
    anyhow::ensure!(args.days > 0, "--days must be at least 1");
    let plan = Plan {
        residents: args.residents,
        days: args.days,
        seed: args.seed,
        until,
    };
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (key storage.data_dir)",
            config.storage.data_dir.display()
        )
    })?;
    let database = config.storage.database_path();
    let mut store = Store::open(&database)
        .with_context(|| format!("cannot open the store at {}", database.display()))?;
    let total = plan.residents as u64 * u64::from(plan.days);
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} backfill {bar:30} {pos}/{len} resident-days, {msg} [{elapsed_precise}, eta {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let summary = backfill(
        &mut store,
        &plan,
        &config.ingest.decode_limits(),
        Timestamp::now(),
        |days, readings| {
            bar.inc(days);
            bar.set_message(format!("{readings} readings"));
        },
    );
    bar.finish_and_clear();
    let summary = summary?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        summary.readings as f64 / seconds
    } else {
        0.0
    };
    tracing::info!(
        residents = summary.residents,
        readings = summary.readings,
        readings_new = summary.readings_new,
        readings_duplicate = summary.readings_duplicate,
        alerts = summary.alerts,
        alerts_new = summary.alerts_new,
        seconds = format!("{seconds:.1}"),
        readings_per_second = format!("{rate:.0}"),
        "backfill done"
    );
    eprintln!(
        "backfill {} .. {}: {} residents, {} readings ({} new), {} alerts ({} new) in {seconds:.1} s ({rate:.0} readings/s)",
        plan.first_day(),
        plan.until,
        summary.residents,
        summary.readings,
        summary.readings_new,
        summary.alerts,
        summary.alerts_new,
    );
    Ok(())
}

/// Writes the history of `plan` into `store` (see the module doc for the
/// rules on reruns). `progress(resident_days, readings_so_far)` is called
/// after each home. `now` is recorded as the run's start and end.
pub fn backfill(
    store: &mut Store,
    plan: &Plan,
    limits: &DecodeLimits,
    now: Timestamp,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<Summary> {
    let params = plan.params();
    let records = store
        .backfills()
        .context("cannot read the backfill record")?;
    if records.iter().any(|r| r.params == params) {
        tracing::info!(params = %params, "this backfill ran here before: completing it, nothing is stored twice");
    } else if let Some(other) = records.first() {
        anyhow::bail!(
            "the store at {} holds another backfill ({}); a store holds one history: use another storage.data_dir",
            store.path().display(),
            other.params
        );
    } else {
        let roster = store.load_roster().context("cannot read the roster")?;
        anyhow::ensure!(
            roster.residents.is_empty() && !store.has_rollups()?,
            "the store at {} already holds residents or data; a backfill writes synthetic residents and their history and runs only on a new store (another storage.data_dir)",
            store.path().display()
        );
    }
    let homes = homes(plan)?;
    let roster = roster_of(&homes)?;
    store.set_bulk_load(true)?;
    store.backfill_started(&params, now)?;
    store
        .import_roster(&roster)
        .context("cannot import the synthetic roster")?;
    let index = RosterIndex::new(&roster);
    let mut writer = Writer::new(store, limits, &index, homes.len(), false);
    for home in &homes {
        writer.home(home, &Stretch::days(plan.first_day(), plan.until))?;
        progress(u64::from(plan.days), writer.summary.readings);
    }
    writer.flush()?;
    let summary = writer.summary;
    store.backfill_finished(&params, now)?;
    store.set_bulk_load(false)?;
    Ok(summary)
}

/// Recent history for the residents of a roster already in the store (the
/// demo's week): what [`fill`] writes.
#[derive(Debug, Clone)]
pub struct Fill {
    /// The residents and the devices bound to them at `until`; a resident
    /// without a device or a caseworker gets no history.
    pub roster: Roster,
    /// The same seed gives the same days.
    pub seed: u64,
    /// Each resident's history starts here (e.g. after their last stored
    /// reading, so a rerun adds only what is missing) ...
    pub from: HashMap<ResidentId, Timestamp>,
    /// ... or here, for residents not in `from`.
    pub default_from: Timestamp,
    /// The history ends before this instant; an alert of the history is
    /// written only if it was handled by then.
    pub until: Timestamp,
    /// A resident who does not check in on a local date.
    pub forgets_checkin: Option<(ResidentId, Date)>,
}

/// Writes the history of [`Fill`] into `store` through the same code paths
/// as [`backfill`], beside whatever is there: readings already stored are
/// duplicates, and an alert that alerting raised (or that is still open)
/// is left alone. No record of the run is kept: a rerun with the same
/// parameters writes nothing new.
pub fn fill(store: &mut Store, fill: &Fill, limits: &DecodeLimits) -> anyhow::Result<Summary> {
    let homes = roster_homes(fill);
    let index = RosterIndex::new(&fill.roster);
    store.set_bulk_load(true)?;
    let mut writer = Writer::new(store, limits, &index, homes.len(), true);
    for home in &homes {
        let from = fill
            .from
            .get(&home.resident.id)
            .copied()
            .unwrap_or(fill.default_from);
        if from >= fill.until {
            continue;
        }
        let tz = &home.resident.timezone;
        writer.home(
            home,
            &Stretch {
                first: local_date(tz, from),
                last: local_date(tz, fill.until),
                from: Some(from),
                until: Some(fill.until),
            },
        )?;
    }
    let flushed = writer.flush();
    let summary = writer.summary;
    store.set_bulk_load(false)?;
    flushed?;
    Ok(summary)
}

/// The homes of [`Fill::roster`]: each resident's first gateway (or first
/// device), button, wearable and sensor, and traits drawn from the seed.
fn roster_homes(fill: &Fill) -> Vec<Home> {
    let mut homes = Vec::new();
    for resident in &fill.roster.residents {
        let Some(caseworker) = resident.caseworker.clone() else {
            continue;
        };
        let devices: Vec<&Device> = fill
            .roster
            .devices
            .iter()
            .filter(|d| d.active && d.resident_at(fill.until) == Some(&resident.id))
            .collect();
        let first = |kind: DeviceKind| {
            devices
                .iter()
                .find(|d| d.kind == kind)
                .map(|d| d.id.clone())
        };
        let Some(gateway) =
            first(DeviceKind::Gateway).or_else(|| devices.first().map(|d| d.id.clone()))
        else {
            continue;
        };
        let key = mix(fill.seed ^ mix(seed_of(resident.id.as_str())));
        let devices = HomeDevices {
            gateway,
            button: first(DeviceKind::Button),
            wearable: first(DeviceKind::Wearable),
            sensor: first(DeviceKind::Sensor),
        };
        // Traits first, from their own stream: a resident is the same
        // person whatever stretch of history is written.
        let mut home = make_home(
            resident.clone(),
            devices,
            caseworker,
            Vec::new(),
            key,
            &mut rng(&[key, 1]),
        );
        home.spells = spells(
            &mut rng(&[key, 3]),
            resident,
            local_date(&resident.timezone, fill.default_from),
            local_date(&resident.timezone, fill.until),
        );
        home.forgets_checkin = fill
            .forgets_checkin
            .as_ref()
            .filter(|(who, _)| *who == resident.id)
            .map(|(_, date)| *date);
        homes.push(home);
    }
    homes
}

/// A stable 64-bit number for an id (FNV-1a), the same on every machine.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One synthetic home: the resident, the devices and the traits that shape
/// its days.
#[derive(Debug)]
struct Home {
    resident: Resident,
    gateway: DeviceId,
    /// The check-in button; without one the resident checks in (and asks
    /// for help) at the gateway.
    button: Option<DeviceId>,
    wearable: Option<DeviceId>,
    sensor: Option<DeviceId>,
    caseworker: StaffId,
    /// Chance of an on-time check-in on a day at home, and of a late one.
    on_time: f64,
    late: f64,
    wake_min: i64,
    bed_min: i64,
    blood_pressure: bool,
    glucose: bool,
    resting_hr: f64,
    systolic: f64,
    weight_kg: f64,
    indoor_c: f64,
    /// Silent spells `[start, end)`, in order, not overlapping.
    spells: Vec<(Timestamp, Timestamp)>,
    /// A local date the resident does not check in at all (the live demo's
    /// missed check-in), whatever the dice say.
    forgets_checkin: Option<Date>,
    /// This home's random stream for its days.
    key: u64,
}

impl Home {
    /// The device the resident presses: the button, or the gateway.
    fn button(&self) -> &DeviceId {
        self.button.as_ref().unwrap_or(&self.gateway)
    }
}

/// The devices of one home, by kind.
struct HomeDevices {
    gateway: DeviceId,
    button: Option<DeviceId>,
    wearable: Option<DeviceId>,
    sensor: Option<DeviceId>,
}

/// A home for `resident` with its traits drawn from `r` (in a fixed order:
/// a seed gives the same home every time).
fn make_home(
    resident: Resident,
    devices: HomeDevices,
    caseworker: StaffId,
    spells: Vec<(Timestamp, Timestamp)>,
    key: u64,
    r: &mut SmallRng,
) -> Home {
    Home {
        gateway: devices.gateway,
        button: devices.button,
        wearable: devices.wearable,
        sensor: devices.sensor,
        caseworker,
        on_time: r.random_range(0.75..0.98),
        late: r.random_range(0.0..0.05),
        wake_min: r.random_range(330..450),
        bed_min: r.random_range(1260..1380),
        blood_pressure: r.random_bool(0.5),
        glucose: r.random_bool(0.2),
        resting_hr: r.random_range(58.0..80.0),
        systolic: r.random_range(112.0..146.0),
        weight_kg: (r.random_range(42.0..85.0_f64) * 10.0).round() / 10.0,
        indoor_c: r.random_range(19.0..24.0),
        spells,
        forgets_checkin: None,
        key,
        resident,
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn rng(parts: &[u64]) -> SmallRng {
    SmallRng::seed_from_u64(parts.iter().fold(0, |acc, p| mix(acc ^ mix(*p))))
}

/// The instant of `minutes` after local midnight of `date` (a time in a DST
/// gap moves forward, as clocks do).
fn local(tz: &TimeZone, date: Date, minutes: i64) -> Option<Timestamp> {
    let dt = date
        .to_datetime(Time::midnight())
        .checked_add(SignedDuration::from_mins(minutes))
        .ok()?;
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

fn plus_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(t)
}

/// An exponential delay with the given mean, at least `min_secs`.
fn delay(rng: &mut SmallRng, mean_secs: f64, min_secs: i64) -> i64 {
    let u: f64 = rng.random();
    ((-mean_secs * (1.0 - u).ln()) as i64).max(min_secs)
}

fn pick<T: Copy>(rng: &mut SmallRng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|w| w.1).sum();
    let mut n = rng.random_range(0..total.max(1));
    for (value, weight) in weighted {
        if n < *weight {
            return *value;
        }
        n -= weight;
    }
    weighted[0].0
}

fn id<T>(
    make: impl FnOnce(String) -> Result<T, ondol_model::IdError>,
    s: String,
) -> anyhow::Result<T> {
    make(s.clone()).with_context(|| format!("generated id {s:?} is not a valid id"))
}

fn homes(plan: &Plan) -> anyhow::Result<Vec<Home>> {
    let first = plan.first_day();
    let width = plan.residents.to_string().len().max(4);
    (0..plan.residents)
        .map(|i| {
            let key = mix(plan.seed ^ mix(i as u64 + 1));
            let mut r = rng(&[key, 1]);
            let number = format!("{:0width$}", i + 1);
            let (zone, region) = pick(
                &mut r,
                &REGIONS.map(|(zone, region, weight)| ((zone, region), weight)),
            );
            let timezone = TimeZone::get(zone).unwrap_or(TimeZone::UTC);
            let span = i64::from(plan.days);
            let enrolled_from = if r.random_bool(0.3) && span > 10 {
                first
                    .checked_add(r.random_range(1..=span * 8 / 10).days())
                    .unwrap_or(first)
            } else {
                first
            };
            let enrolled_until = if r.random_bool(0.05) {
                let left = enrolled_from
                    .checked_add(r.random_range(30..=400).days())
                    .unwrap_or(plan.until);
                (left < plan.until).then_some(left)
            } else {
                None
            };
            let mut away = Vec::new();
            if r.random_bool(0.4) {
                let mut cursor = enrolled_from
                    .checked_add(r.random_range(10..=200).days())
                    .unwrap_or(plan.until);
                while cursor < plan.until {
                    let length = r.random_range(2..=21);
                    let until = cursor.checked_add((length - 1).days()).unwrap_or(cursor);
                    away.push(AwayPeriod {
                        from: cursor,
                        until,
                        reason: Some(
                            if r.random_bool(0.6) {
                                "hospital"
                            } else {
                                "family"
                            }
                            .into(),
                        ),
                    });
                    cursor = until
                        .checked_add(r.random_range(60..=400).days())
                        .unwrap_or(plan.until);
                }
            }
            let checkin = match r.random_range(0..100) {
                0..85 => CheckinPlan::default(),
                85..95 => CheckinPlan {
                    passive: true,
                    ..CheckinPlan::default()
                },
                _ => CheckinPlan {
                    window: None,
                    passive: false,
                },
            };
            let caseworker = id(
                StaffId::new,
                format!("cw-{:03}", i / RESIDENTS_PER_CASEWORKER + 1),
            )?;
            let resident = Resident {
                id: id(ResidentId::new, format!("r-{number}"))?,
                name: format!("Backfill Resident {number}"),
                timezone_name: zone.into(),
                timezone,
                region: region.into(),
                enrolled_from,
                enrolled_until,
                caseworker: Some(caseworker.clone()),
                checkin,
                away,
            };
            let spells = spells(&mut r, &resident, plan.first_day(), plan.until);
            let wearable = r.random_bool(0.7);
            let sensor = r.random_bool(0.8);
            let devices = HomeDevices {
                gateway: id(DeviceId::new, format!("gw-{number}"))?,
                button: Some(id(DeviceId::new, format!("bt-{number}"))?),
                wearable: wearable
                    .then(|| id(DeviceId::new, format!("wb-{number}")))
                    .transpose()?,
                sensor: sensor
                    .then(|| id(DeviceId::new, format!("ps-{number}")))
                    .transpose()?,
            };
            Ok(make_home(
                resident, devices, caseworker, spells, key, &mut r,
            ))
        })
        .collect()
}

/// Silent spells of 12–72 h, about three a year, inside the history (a
/// spell is cut at its end: the devices are back when it closes).
fn spells(
    r: &mut SmallRng,
    resident: &Resident,
    first_day: Date,
    last_day: Date,
) -> Vec<(Timestamp, Timestamp)> {
    let tz = &resident.timezone;
    let Some(end) = last_day
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp())
    else {
        return Vec::new();
    };
    let mut out: Vec<(Timestamp, Timestamp)> = Vec::new();
    for date in resident
        .enrolled_from
        .max(first_day)
        .series(1.day())
        .take_while(|d| *d <= last_day)
    {
        if !r.random_bool(3.0 / 365.0) {
            continue;
        }
        let Some(start) = local(tz, date, r.random_range(0..1440)) else {
            continue;
        };
        if out.last().is_some_and(|(_, e)| start <= *e) {
            continue;
        }
        let stop = plus_secs(start, r.random_range(12 * 3600..72 * 3600)).min(end);
        if start < stop {
            out.push((start, stop));
        }
    }
    out
}

/// The roster of the synthetic homes, with their caseworkers, a supervisor
/// per region and an evaluator.
fn roster_of(homes: &[Home]) -> anyhow::Result<Roster> {
    let mut roster = Roster::default();
    let mut caseworkers: Vec<StaffId> = Vec::new();
    let mut regions: Vec<String> = Vec::new();
    for home in homes {
        roster.residents.push(home.resident.clone());
        if !caseworkers.contains(&home.caseworker) {
            caseworkers.push(home.caseworker.clone());
        }
        if !regions.contains(&home.resident.region) {
            regions.push(home.resident.region.clone());
        }
        let devices = [
            (Some(&home.gateway), DeviceKind::Gateway),
            (home.button.as_ref(), DeviceKind::Button),
            (home.wearable.as_ref(), DeviceKind::Wearable),
            (home.sensor.as_ref(), DeviceKind::Sensor),
        ];
        for (device, kind) in devices {
            if let Some(device) = device {
                roster.devices.push(Device {
                    id: device.clone(),
                    kind,
                    bindings: vec![DeviceBinding {
                        resident: home.resident.id.clone(),
                        from: None,
                        until: None,
                    }],
                    active: true,
                    secret_env: None,
                });
            }
        }
    }
    for cw in caseworkers {
        roster.staff.push(Staff {
            name: format!("Backfill Caseworker {cw}"),
            id: cw,
            role: StaffRole::Caseworker,
            region: None,
            token_env: None,
        });
    }
    for region in regions {
        roster.staff.push(Staff {
            id: id(StaffId::new, format!("sv-{region}"))?,
            name: format!("Backfill Supervisor {region}"),
            role: StaffRole::Supervisor,
            region: Some(region),
            token_env: None,
        });
    }
    roster.staff.push(Staff {
        id: id(StaffId::new, "ev-001".into())?,
        name: "Backfill Evaluator".into(),
        role: StaffRole::Evaluator,
        region: None,
        token_env: None,
    });
    Ok(roster)
}

/// An alert as it will have happened.
#[derive(Debug)]
struct PlannedAlert {
    rule: Rule,
    subject: Subject,
    device: Option<DeviceId>,
    episode: String,
    severity: Severity,
    cause: Cause,
    opened_at: Timestamp,
    acked_at: Option<Timestamp>,
    /// When, how and by whom (a staff id or the system).
    resolved: (Timestamp, Outcome, String),
}

struct Writer<'a> {
    store: &'a mut Store,
    judge: Judge,
    index: &'a RosterIndex,
    batch: Batch,
    summary: Summary,
    /// Alerting has run on this store: an alert of the history that it
    /// knows already (or that is still open for staff) is left alone.
    beside_live: bool,
}

/// The part of a history to write: whole local days `first..=last`, cut
/// to the instants `[from, until)` when given (an alert only when it was
/// opened and handled inside them).
#[derive(Debug, Clone, Copy)]
struct Stretch {
    first: Date,
    last: Date,
    from: Option<Timestamp>,
    until: Option<Timestamp>,
}

impl Stretch {
    fn days(first: Date, last: Date) -> Stretch {
        Stretch {
            first,
            last,
            from: None,
            until: None,
        }
    }

    fn holds(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|from| from <= t) && self.until.is_none_or(|until| t < until)
    }

    fn holds_alert(&self, alert: &PlannedAlert) -> bool {
        self.holds(alert.opened_at) && self.holds(alert.resolved.0)
    }
}

impl<'a> Writer<'a> {
    fn new(
        store: &'a mut Store,
        limits: &DecodeLimits,
        index: &'a RosterIndex,
        residents: usize,
        beside_live: bool,
    ) -> Writer<'a> {
        Writer {
            store,
            judge: Judge::new(limits.clone()),
            index,
            batch: Batch::default(),
            summary: Summary {
                residents,
                ..Summary::default()
            },
            beside_live,
        }
    }

    fn home(&mut self, home: &Home, stretch: &Stretch) -> anyhow::Result<()> {
        let resident = &home.resident;
        let tz = &resident.timezone;
        let mut busy: HashMap<(Rule, Subject), Timestamp> = HashMap::new();
        let start = resident.enrolled_from.max(stretch.first);
        let end = resident
            .enrolled_until
            .map_or(stretch.last, |u| u.min(stretch.last));
        for date in start.series(1.day()).take_while(|d| *d <= end) {
            let mut r = rng(&[home.key, 2, date_key(date)]);
            let away = resident
                .away
                .iter()
                .any(|a| a.from <= date && date <= a.until);
            let mut day = day_readings(home, date, away, &mut r);
            day.readings
                .retain(|(_, reading)| stretch.holds(reading.ts));
            day.emergencies.retain(|(_, at, _)| stretch.holds(*at));
            let enrolled = !away;
            let stored = self.judge_and_batch(home, day.readings)?;
            if enrolled {
                let e = &mut self.summary.expected;
                e.resident_days_enrolled += 1;
                let mut hours = 0u32;
                for new in &stored {
                    hours |= 1 << new.local_hour.min(23);
                    if let ReadingValue::Score(score) = new.reading.value {
                        e.satisfaction_count += 1;
                        e.satisfaction_sum += u64::from(score);
                    }
                }
                e.active_days += u64::from(!stored.is_empty());
                e.hours_with_data += u64::from(hours.count_ones());
                let done = stored.iter().any(|n| n.checkin_in_window);
                if resident.checkin.window.is_some() {
                    e.checkins_expected += 1;
                    e.checkins_done += u64::from(done);
                }
                let mut alerts = Vec::new();
                if let (Some(window), false) = (resident.checkin.window, done) {
                    let minutes =
                        i64::from(window.end.hour()) * 60 + i64::from(window.end.minute());
                    if let Some(deadline) = local(tz, date, minutes) {
                        alerts.push(missed_checkin(
                            home,
                            date,
                            deadline,
                            day.late_checkin,
                            &mut r,
                        ));
                    }
                }
                for (device, ts, cause) in &day.emergencies {
                    alerts.push(help_request(home, device, *ts, *cause, &mut r));
                }
                for (spell_start, spell_end) in home.spells.iter().copied() {
                    if local_date(tz, spell_start) == date {
                        alerts.extend(silence_alerts(home, spell_start, spell_end, &mut r));
                    }
                }
                for alert in alerts {
                    // The rules are suspended on days the resident is not
                    // enrolled; one occurrence at a time per rule.
                    let opened = local_date(tz, alert.opened_at);
                    if !ondol_report::metrics::enrolled_on(resident, opened)
                        || opened > stretch.last
                        || !stretch.holds_alert(&alert)
                    {
                        continue;
                    }
                    let key = (alert.rule, alert.subject.clone());
                    if busy
                        .get(&key)
                        .is_some_and(|until| alert.opened_at <= *until)
                    {
                        continue;
                    }
                    busy.insert(key, alert.resolved.0);
                    self.alert(home, &alert)?;
                }
            }
        }
        Ok(())
    }

    /// Encodes each device's readings of the day as one message, judges it
    /// as ingest would and adds the result to the batch. Returns the day's
    /// judged readings.
    fn judge_and_batch(
        &mut self,
        home: &Home,
        mut readings: Vec<(DeviceId, Reading)>,
    ) -> anyhow::Result<Vec<ondol_store::NewReading>> {
        readings.sort_by(|a, b| (a.0.as_str(), a.1.ts).cmp(&(b.0.as_str(), b.1.ts)));
        let mut out = Vec::new();
        let mut rest = readings.as_slice();
        while let Some((device, _)) = rest.first() {
            let n = rest.iter().take_while(|(d, _)| d == device).count();
            let (mine, tail) = rest.split_at(n);
            rest = tail;
            let message: Vec<Reading> = mine.iter().map(|(_, r)| r.clone()).collect();
            let Some(last) = message.iter().map(|r| r.ts).max() else {
                continue;
            };
            let inbound = Inbound {
                topic: wire::readings_topic(device),
                payload: wire::encode_message(None, &message).into(),
                // Sent at the end of the day's batch, like a gateway that
                // uploads what it buffered.
                received_at: plus_secs(last, 30),
                ack: None,
            };
            let verdict = self.judge.judge(&inbound, self.index);
            if let Some(rejection) = verdict.rejections.first() {
                tracing::warn!(
                    resident = %home.resident.id,
                    reason = %rejection.reason,
                    rejected = verdict.rejections.len(),
                    "the judge refused generated readings (a generator bug)"
                );
            }
            self.summary.rejected += verdict.rejections.len() as u64;
            out.extend(verdict.readings.iter().cloned());
            self.batch.readings.extend(verdict.readings);
        }
        self.summary.readings += out.len() as u64;
        if self.batch.readings.len() >= BATCH_READINGS {
            self.flush()?;
        }
        Ok(out)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.readings.is_empty() {
            return Ok(());
        }
        let outcome = self
            .store
            .commit_batch(&self.batch)
            .context("cannot commit a batch of readings")?;
        self.summary.readings_new += outcome.accepted() as u64;
        self.summary.readings_duplicate += outcome.duplicates() as u64;
        self.batch = Batch::default();
        Ok(())
    }

    fn alert(&mut self, home: &Home, alert: &PlannedAlert) -> anyhow::Result<()> {
        let resident = &home.resident;
        let new = NewAlert {
            rule: alert.rule,
            subject: alert.subject.clone(),
            resident_id: Some(resident.id.clone()),
            device_id: alert.device.clone(),
            episode: alert.episode.clone(),
            severity: alert.severity,
            cause: alert.cause,
            detail: None,
            local_date: Some(local_date(&resident.timezone, alert.opened_at)),
            opened_at: alert.opened_at,
            next_escalation_at: None,
        };
        // History pages nobody: no notifications.
        let row = match self.store.raise_alert(&new, |_| Vec::new())? {
            Raised::New(row) => {
                self.summary.alerts_new += 1;
                row
            }
            Raised::Known(_) | Raised::AlreadyOpen(_) if self.beside_live => return Ok(()),
            Raised::Known(row) => row,
            Raised::AlreadyOpen(open) => anyhow::bail!(
                "alert {} ({}) is still open where the history raises another",
                open.id,
                open.rule
            ),
        };
        self.summary.alerts += 1;
        let e = &mut self.summary.expected;
        *e.alerts_by_rule
            .entry(alert.rule.as_str().to_owned())
            .or_default() += 1;
        let (resolved_at, outcome, actor) = &alert.resolved;
        *e.outcomes.entry(outcome.as_str().to_owned()).or_default() += 1;
        if alert.acked_at.is_some() || actor != SYSTEM_ACTOR {
            e.acknowledged += 1;
        }
        if let (Some(acked_at), AlertStatus::Open) = (alert.acked_at, row.status) {
            // Refused only if it moved on already (a rerun): nothing to do.
            let _ =
                self.store
                    .acknowledge_alert(row.id, home.caseworker.as_str(), acked_at, None)?;
        }
        if row.status != AlertStatus::Resolved {
            let _ = self
                .store
                .resolve_alert(row.id, actor, *outcome, *resolved_at, None)?;
        }
        Ok(())
    }
}

fn local_date(tz: &TimeZone, at: Timestamp) -> Date {
    at.to_zoned(tz.clone()).date()
}

fn date_key(date: Date) -> u64 {
    let n = i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day());
    n as u64
}

/// One day of a home.
struct Day {
    readings: Vec<(DeviceId, Reading)>,
    /// A check-in after the window, if it happened.
    late_checkin: Option<Timestamp>,
    /// Help requests and falls: (device, time, cause).
    emergencies: Vec<(DeviceId, Timestamp, Cause)>,
}

fn reading(
    reading_type: ReadingType,
    value: ReadingValue,
    sensor: Option<&str>,
    ts: Timestamp,
) -> Reading {
    Reading {
        reading_type,
        value,
        sensor: sensor.map(str::to_owned),
        ts,
    }
}

fn day_readings(home: &Home, date: Date, away: bool, r: &mut SmallRng) -> Day {
    let tz = &home.resident.timezone;
    let mut day = Day {
        readings: Vec::new(),
        late_checkin: None,
        emergencies: Vec::new(),
    };
    let (Some(start), Some(end)) = (
        local(tz, date, 0),
        date.tomorrow()
            .ok()
            .and_then(|d| d.to_zoned(tz.clone()).ok())
            .map(|z| z.timestamp()),
    ) else {
        return day;
    };
    let silent = |t: Timestamp| home.spells.iter().any(|(a, b)| *a <= t && t < *b);
    let mut push = |device: &DeviceId, reading: Reading| {
        if start <= reading.ts && reading.ts < end && !silent(reading.ts) {
            day.readings.push((device.clone(), reading));
            true
        } else {
            false
        }
    };
    let at = |minutes: i64, secs: i64| local(tz, date, minutes).map(|t| plus_secs(t, secs));
    // The gateway's thermometer runs whether anyone is home or not.
    for h in 0..8 {
        if let Some(t) = at(h * 180, r.random_range(0..60)) {
            let c = home.indoor_c + r.random_range(-2.0..2.0);
            push(
                &home.gateway,
                reading(
                    ReadingType::AmbientTemperature,
                    ReadingValue::Number((c * 10.0).round() / 10.0),
                    None,
                    t,
                ),
            );
        }
    }
    if away {
        return day;
    }
    let motion_device = home.sensor.as_ref().unwrap_or(&home.gateway);
    let wake = home.wake_min + r.random_range(-30..=30);
    let bed = home.bed_min + r.random_range(-30..=30);

    // The check-in: on time, late or not at all.
    if let Some(window) = home.resident.checkin.window {
        let from = i64::from(window.start.hour()) * 60 + i64::from(window.start.minute());
        let to = i64::from(window.end.hour()) * 60 + i64::from(window.end.minute());
        let roll: f64 = r.random();
        let minute = if roll < home.on_time {
            Some((r.random_range(from + 5..(to - 10).max(from + 6)), true))
        } else if roll < home.on_time + home.late {
            Some((r.random_range(to + 1..to + 90), false))
        } else {
            None
        };
        if let Some((minute, on_time)) = minute
            && let Some(t) = at(minute, r.random_range(0..60))
        {
            let ok = ReadingValue::Checkin(CheckinValue::Ok);
            let forgot = home.forgets_checkin == Some(date);
            if !forgot
                && push(home.button(), reading(ReadingType::Checkin, ok, None, t))
                && !on_time
            {
                day.late_checkin = Some(t);
            }
        }
    }
    // Moving about the home while up.
    let mut minute = wake + r.random_range(5..30);
    while minute < bed {
        let room = ROOMS[r.random_range(0..ROOMS.len())];
        if let Some(t) = at(minute, r.random_range(0..60)) {
            push(
                motion_device,
                reading(
                    ReadingType::Motion,
                    ReadingValue::Motion(true),
                    Some(&format!("pir-{room}")),
                    t,
                ),
            );
        }
        minute += r.random_range(40..100);
    }
    // Going out and coming back (outings at least 5 minutes apart, so no
    // two door readings share a timestamp).
    let mut outings: Vec<i64> = (0..r.random_range(0..=2))
        .map(|_| r.random_range(wake + 60..(bed - 120).max(wake + 61)))
        .collect();
    outings.sort_unstable();
    outings.dedup_by(|later, earlier| *later - *earlier < 5);
    for out in outings {
        for (offset, state) in [(0, DoorState::Open), (2, DoorState::Closed)] {
            if let Some(t) = at(out + offset, r.random_range(0..60)) {
                push(
                    motion_device,
                    reading(
                        ReadingType::Door,
                        ReadingValue::Door(state),
                        Some("door-front"),
                        t,
                    ),
                );
            }
        }
    }
    // The wearable: heart rate and SpO2 morning, noon and evening; steps at night.
    if let Some(wearable) = &home.wearable {
        for base in [8 * 60, 13 * 60, 19 * 60] {
            if let Some(t) = at(base + r.random_range(0..60), r.random_range(0..60)) {
                let hr = (home.resting_hr + r.random_range(-4.0..14.0)).round();
                push(
                    wearable,
                    reading(ReadingType::HeartRate, ReadingValue::Number(hr), None, t),
                );
                let spo2 = f64::from(r.random_range(93..=99));
                push(
                    wearable,
                    reading(ReadingType::Spo2, ReadingValue::Number(spo2), None, t),
                );
            }
        }
        if let Some(t) = at(bed.min(1430), r.random_range(0..30)) {
            let steps = f64::from(r.random_range(300..6000));
            push(
                wearable,
                reading(ReadingType::Steps, ReadingValue::Number(steps), None, t),
            );
        }
    }
    // Measurements at the gateway after waking.
    let morning = wake + r.random_range(20..90);
    if home.blood_pressure
        && let Some(t) = at(morning, r.random_range(0..60))
    {
        let systolic = (home.systolic + r.random_range(-10.0..10.0)).round();
        let diastolic = (systolic - r.random_range(35.0..55.0)).round().max(55.0);
        push(
            &home.gateway,
            reading(
                ReadingType::BloodPressure,
                ReadingValue::BloodPressure {
                    systolic,
                    diastolic,
                },
                None,
                t,
            ),
        );
    }
    if home.glucose
        && let Some(t) = at(morning + 5, r.random_range(0..60))
    {
        let mg = r.random_range(80.0..180.0_f64).round();
        push(
            &home.gateway,
            reading(ReadingType::BloodGlucose, ReadingValue::Number(mg), None, t),
        );
    }
    if date.weekday() == jiff::civil::Weekday::Monday
        && let Some(t) = at(morning + 10, r.random_range(0..60))
    {
        let kg = ((home.weight_kg + r.random_range(-1.0..1.0)) * 10.0).round() / 10.0;
        push(
            &home.gateway,
            reading(ReadingType::BodyWeight, ReadingValue::Number(kg), None, t),
        );
    }
    // The survey prompt, about once a month.
    if r.random_bool(1.0 / 30.0)
        && let Some(t) = at(18 * 60 + r.random_range(0..120), 0)
    {
        let score = pick(r, &[(1u8, 3), (2, 7), (3, 20), (4, 40), (5, 30)]);
        push(
            &home.gateway,
            reading(
                ReadingType::Satisfaction,
                ReadingValue::Score(score),
                None,
                t,
            ),
        );
    }
    // Rarely, a help request or a fall.
    if r.random_bool(0.002)
        && let Some(t) = at(
            r.random_range(wake..bed.max(wake + 1)),
            r.random_range(0..60),
        )
    {
        let help = ReadingValue::Checkin(CheckinValue::Help);
        if push(home.button(), reading(ReadingType::Checkin, help, None, t)) {
            day.emergencies
                .push((home.button().clone(), t, Cause::Help));
        }
    }
    if r.random_bool(0.0008)
        && let Some(t) = at(r.random_range(0..1440), r.random_range(0..60))
    {
        let device = home.wearable.as_ref().unwrap_or(&home.gateway);
        if push(
            device,
            reading(ReadingType::Fall, ReadingValue::Fall, None, t),
        ) {
            day.emergencies.push((device.clone(), t, Cause::Fall));
        }
    }
    day
}

fn resident_subject(home: &Home) -> Subject {
    Subject::Resident(home.resident.id.clone())
}

fn missed_checkin(
    home: &Home,
    date: Date,
    deadline: Timestamp,
    late: Option<Timestamp>,
    r: &mut SmallRng,
) -> PlannedAlert {
    let no_data = home
        .spells
        .iter()
        .any(|(a, b)| *a <= deadline && deadline < *b);
    let acked = plus_secs(deadline, delay(r, 20.0 * 60.0, 120));
    let (acked_at, resolved) = match late {
        // The resident checked in late, before anyone called.
        Some(t) if t < acked => (
            None,
            (t, Outcome::ClearedByResident, SYSTEM_ACTOR.to_owned()),
        ),
        _ => {
            let outcome = if no_data {
                pick(
                    r,
                    &[
                        (Outcome::FalseAlarmDevice, 60),
                        (Outcome::ResidentOk, 30),
                        (Outcome::NoContact, 10),
                    ],
                )
            } else {
                pick(
                    r,
                    &[
                        (Outcome::ResidentOk, 70),
                        (Outcome::FalseAlarmBehaviour, 12),
                        (Outcome::NeededHelp, 8),
                        (Outcome::NoContact, 5),
                        (Outcome::FalseAlarmDevice, 3),
                        (Outcome::Hospitalised, 2),
                    ],
                )
            };
            let at = plus_secs(acked, r.random_range(5 * 60..120 * 60));
            (Some(acked), (at, outcome, home.caseworker.to_string()))
        }
    };
    PlannedAlert {
        rule: Rule::MissedCheckin,
        subject: resident_subject(home),
        device: None,
        episode: date.to_string(),
        severity: Severity::Alarm,
        cause: if no_data {
            Cause::NoData
        } else {
            Cause::NoCheckin
        },
        opened_at: deadline,
        acked_at,
        resolved,
    }
}

fn help_request(
    home: &Home,
    device: &DeviceId,
    at: Timestamp,
    cause: Cause,
    r: &mut SmallRng,
) -> PlannedAlert {
    let acked = plus_secs(at, delay(r, 3.0 * 60.0, 20));
    let outcome = pick(
        r,
        &[
            (Outcome::NeededHelp, 45),
            (Outcome::EmergencyServices, 15),
            (Outcome::Hospitalised, 10),
            (Outcome::FalseAlarmDevice, 20),
            (Outcome::ResidentOk, 10),
        ],
    );
    PlannedAlert {
        rule: Rule::HelpRequest,
        subject: resident_subject(home),
        device: Some(device.clone()),
        episode: format!("{device}:{}", at.as_millisecond()),
        severity: Severity::Critical,
        cause,
        opened_at: at,
        acked_at: Some(acked),
        resolved: (
            plus_secs(acked, r.random_range(20 * 60..240 * 60)),
            outcome,
            home.caseworker.to_string(),
        ),
    }
}

/// The gateway offline after 30 min of silence, and inactivity with cause
/// `no_data` after 8 h; each resolved when the devices are back, or before
/// by the caseworker.
fn silence_alerts(
    home: &Home,
    start: Timestamp,
    end: Timestamp,
    r: &mut SmallRng,
) -> Vec<PlannedAlert> {
    let mut out = Vec::new();
    let rules = [
        (
            Rule::DeviceOffline,
            30 * 60,
            Severity::Low,
            Cause::Silent,
            45.0,
        ),
        (
            Rule::Inactivity,
            8 * 3600,
            Severity::Caution,
            Cause::NoData,
            20.0,
        ),
    ];
    for (rule, after, severity, cause, ack_mean_min) in rules {
        let opened = plus_secs(start, after);
        if opened >= end {
            continue;
        }
        let acked = plus_secs(opened, delay(r, ack_mean_min * 60.0, 60));
        let (acked_at, resolved) = if acked < end {
            let outcome = pick(
                r,
                &[
                    (Outcome::FalseAlarmDevice, 60),
                    (Outcome::ResidentOk, 30),
                    (Outcome::NoContact, 10),
                ],
            );
            let at = plus_secs(acked, r.random_range(10 * 60..90 * 60)).min(end);
            (
                Some(acked),
                (at.max(acked), outcome, home.caseworker.to_string()),
            )
        } else {
            (
                None,
                (end, Outcome::ClearedByResident, SYSTEM_ACTOR.to_owned()),
            )
        };
        let (subject, device) = match rule {
            Rule::DeviceOffline => (
                Subject::Device(home.gateway.clone()),
                Some(home.gateway.clone()),
            ),
            _ => (resident_subject(home), None),
        };
        out.push(PlannedAlert {
            rule,
            subject,
            device,
            episode: start.as_millisecond().to_string(),
            severity,
            cause,
            opened_at: opened,
            acked_at,
            resolved,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ondol_report::{ALL_REGIONS, Granularity, PseudonymKey, Report, WHOLE_RANGE};

    use super::*;

    fn plan() -> Plan {
        Plan {
            residents: 14,
            days: 150,
            seed: 7,
            until: jiff::civil::date(2026, 6, 30),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_790_000_000).unwrap()
    }

    fn run(store: &mut Store, plan: &Plan) -> anyhow::Result<Summary> {
        backfill(store, plan, &DecodeLimits::default(), now(), |_, _| {})
    }

    fn report(store: &Store, plan: &Plan) -> Report {
        let (from, to) = (plan.first_day(), plan.until);
        let roster = store.load_roster().unwrap();
        ondol_report::compute(
            &roster.residents,
            &store.day_facts(from, to).unwrap(),
            &store.alert_facts(from, to).unwrap(),
            from,
            to,
            Granularity::Month,
            &PseudonymKey::new(b"backfill test key, 32 bytes long".to_vec()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_backfilled_store_reports_what_was_generated_and_a_rerun_doubles_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("ondol.db")).unwrap();
        let plan = plan();
        let first = run(&mut store, &plan).unwrap();
        assert_eq!(first.rejected, 0, "the judge refused generated readings");
        assert_eq!(first.residents, 14);
        assert_eq!(first.readings_new, first.readings);
        assert_eq!(store.count_readings().unwrap(), first.readings);
        assert_eq!(first.alerts_new, first.alerts);

        // The history has every ingredient the issue asks for.
        let e = &first.expected;
        let roster = store.load_roster().unwrap();
        assert!(
            roster
                .residents
                .iter()
                .any(|r| r.enrolled_from > plan.first_day())
        );
        assert!(roster.residents.iter().any(|r| !r.away.is_empty()));
        for rule in [
            "missed_checkin",
            "help_request",
            "device_offline",
            "inactivity",
        ] {
            assert!(
                e.alerts_by_rule.get(rule).is_some_and(|n| *n > 0),
                "no {rule}: {e:?}"
            );
        }
        for outcome in ["resident_ok", "cleared_by_resident", "false_alarm_device"] {
            assert!(
                e.outcomes.get(outcome).is_some_and(|n| *n > 0),
                "no {outcome}"
            );
        }
        assert!(e.satisfaction_count > 0);
        assert!(e.checkins_done < e.checkins_expected);

        // The report over the whole history shows exactly that.
        let first_report = report(&store, &plan);
        let whole = first_report
            .cells
            .iter()
            .find(|c| c.period == WHOLE_RANGE && c.region == ALL_REGIONS)
            .unwrap();
        let f = whole.figures.as_ref().unwrap();
        assert_eq!(f.residents_enrolled, 14);
        assert_eq!(f.resident_days_enrolled, e.resident_days_enrolled);
        assert_eq!(f.active_days, e.active_days);
        assert_eq!(f.hours_with_data, e.hours_with_data);
        assert_eq!(f.checkins_expected, e.checkins_expected);
        assert_eq!(f.checkins_done, e.checkins_done);
        let alerts: BTreeMap<String, u64> = f
            .alerts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(rule, n)| (rule.clone(), *n))
            .collect();
        assert_eq!(alerts, e.alerts_by_rule);
        let outcomes: BTreeMap<String, u64> = f
            .outcomes
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| (o.clone(), *n))
            .collect();
        assert_eq!(outcomes, e.outcomes);
        assert_eq!(f.resolved, first.alerts);
        assert_eq!(f.satisfaction_responses, e.satisfaction_count);
        assert_eq!(
            f.satisfaction_mean,
            Some(e.satisfaction_sum as f64 / e.satisfaction_count as f64)
        );
        // Adherence lies within the rates the homes were given (75–98 % on
        // time), lowered a little by silent spells and raised a little by
        // passive check-ins.
        let adherence = f.checkin_adherence.unwrap();
        assert!((0.70..=0.99).contains(&adherence), "{adherence}");

        // Again with the same parameters: nothing new, the same report.
        let second = run(&mut store, &plan).unwrap();
        assert_eq!(second.readings_new, 0);
        assert_eq!(second.readings_duplicate, first.readings);
        assert_eq!(second.alerts_new, 0);
        assert_eq!(second.expected, first.expected);
        assert_eq!(store.count_readings().unwrap(), first.readings);
        assert_eq!(
            store.recent_alerts(usize::MAX).unwrap().len() as u64,
            first.alerts
        );
        assert_eq!(report(&store, &plan), first_report);

        // Another history on top is refused.
        let other = Plan { seed: 8, ..plan };
        let error = run(&mut store, &other).unwrap_err().to_string();
        assert!(error.contains("holds another backfill"), "{error}");
        assert_eq!(store.count_readings().unwrap(), first.readings);
    }

    #[test]
    fn a_store_with_residents_of_its_own_is_refused() {
        let mut store = Store::open_in_memory().unwrap();
        let roster = crate::roster::parse(crate::roster::DEMO_REGISTRY, "demo").unwrap();
        store.import_roster(&roster).unwrap();
        let error = run(&mut store, &plan()).unwrap_err().to_string();
        assert!(error.contains("already holds residents"), "{error}");
        assert_eq!(store.count_readings().unwrap(), 0);
        assert!(store.backfills().unwrap().is_empty());
    }

    #[test]
    fn a_filled_roster_gets_its_stretch_and_a_rerun_from_the_last_reading_adds_nothing() {
        let mut store = Store::open_in_memory().unwrap();
        let roster = crate::roster::parse(crate::roster::DEMO_REGISTRY, "demo").unwrap();
        store.import_roster(&roster).unwrap();
        let until = now();
        let default_from = until - SignedDuration::from_hours(7 * 24);
        let forgetful = ResidentId::new("r-0006").unwrap();
        let today = local_date(&TimeZone::get("Asia/Seoul").unwrap(), until);
        let fill_at = |from: HashMap<ResidentId, Timestamp>| Fill {
            roster: roster.clone(),
            seed: 1,
            from,
            default_from,
            until,
            forgets_checkin: Some((forgetful.clone(), today)),
        };
        let first = fill(
            &mut store,
            &fill_at(HashMap::new()),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(first.rejected, 0);
        assert_eq!(
            first.residents, 20,
            "every resident has a caseworker and a device"
        );
        assert!(first.readings > 1000, "{first:?}");
        assert_eq!(first.readings_new, first.readings);
        // Inside the stretch, and every alert of it handled by its end.
        let activity = store.all_resident_activity().unwrap();
        assert_eq!(activity.len(), 20);
        for row in &activity {
            let last = row.last_reading_at.unwrap();
            assert!(default_from <= last && last < until, "{row:?}");
        }
        assert!(first.alerts > 0);
        assert!(
            store
                .recent_alerts(usize::MAX)
                .unwrap()
                .iter()
                .all(|a| a.status == AlertStatus::Resolved)
        );
        // A resident without a button checks in at the gateway, but not on
        // the day she forgets.
        let checkins: Vec<Timestamp> = store
            .readings_for_device(&DeviceId::new("gw-0006").unwrap(), usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|r| r.reading.reading_type == ReadingType::Checkin)
            .map(|r| r.reading.ts)
            .collect();
        assert!(checkins.len() >= 4, "{checkins:?}");
        let seoul = TimeZone::get("Asia/Seoul").unwrap();
        assert!(checkins.iter().all(|t| local_date(&seoul, *t) != today));

        // Again from each resident's last reading: nothing new.
        let from = activity
            .into_iter()
            .map(|row| {
                let after = row.last_reading_at.unwrap() + SignedDuration::from_millis(1);
                (row.resident_id, after)
            })
            .collect();
        let again = fill(&mut store, &fill_at(from), &DecodeLimits::default()).unwrap();
        assert_eq!(again.readings, 0, "{again:?}");
        assert_eq!(again.alerts_new, 0);
        assert_eq!(store.count_readings().unwrap(), first.readings);
        // And the whole week again: only duplicates.
        let whole = fill(
            &mut store,
            &fill_at(HashMap::new()),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(whole.readings_new, 0);
        assert_eq!(whole.readings_duplicate, first.readings);
        assert_eq!(store.count_readings().unwrap(), first.readings);
    }

    #[test]
    fn the_same_seed_gives_the_same_history() {
        let small = Plan {
            residents: 3,
            days: 20,
            ..plan()
        };
        let histories: Vec<_> = (0..2)
            .map(|_| {
                let mut store = Store::open_in_memory().unwrap();
                let summary = run(&mut store, &small).unwrap();
                let gateway = DeviceId::new("gw-0002").unwrap();
                (
                    summary,
                    store.readings_for_device(&gateway, usize::MAX).unwrap(),
                )
            })
            .collect();
        assert_eq!(histories[0], histories[1]);
        assert!(!histories[0].1.is_empty());
    }
}
