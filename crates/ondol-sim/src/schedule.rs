//! What a home does on a given local day: a pure function of the run's seed,
//! the resident and the date, so every device of a home can compute the same
//! day on its own and keep the readings that are its to send.
//!
//! Person-driven events (waking, check-in, moving between rooms, going out)
//! are placed on the local civil clock of the home's time zone, so a check-in
//! falls inside 06:00–10:00 local even on a DST day. Periodic device readings
//! (hourly ambient temperature, wearable samples) step in absolute time from
//! local midnight, as a real sensor's timer does: a 23-hour day has 23 hourly
//! readings, a 25-hour day 25.

use std::collections::HashSet;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use ondol_model::roster::DeviceKind;
use ondol_model::{CheckinValue, DoorState, Reading, ReadingType, ReadingValue, ResidentId};
use rand::Rng;
use rand::rngs::SmallRng;

use crate::seed::{self, Salt};

/// Rooms a home may have a motion sensor in; every home has the first two.
const ROOMS: [&str; 5] = ["kitchen", "bedroom", "living", "bathroom", "hall"];
/// Which share of homes have each optional room, in `ROOMS` order after the first two.
const OPTIONAL_ROOM_SHARE: [f64; 3] = [0.8, 0.6, 0.3];
/// The sensor name of the front door contact.
pub(crate) const DOOR_SENSOR: &str = "door-front";
/// The default check-in window of DESIGN §4, in seconds after local midnight.
pub(crate) const CHECKIN_WINDOW_SECS: (i64, i64) = (6 * 3600, 10 * 3600);

/// The population-level knobs that shape days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Behaviour {
    /// Chance that a resident skips the check-in on a given day.
    pub missed_checkin_share: f64,
    /// Share of residents prone to long silent stretches.
    pub silent_share: f64,
}

/// The stable traits of one home: its rooms, its resident's rhythm and body.
#[derive(Debug, Clone)]
pub(crate) struct HomeProfile {
    /// Seed for everything about this home.
    key: u64,
    /// Whether this resident goes silent for long stretches now and then.
    pub silent: bool,
    /// Usual wake and bed times, seconds after local midnight.
    wake_secs: i64,
    bed_secs: i64,
    rooms: Vec<&'static str>,
    resting_hr: f64,
    weight_kg: f64,
    systolic: f64,
    diastolic: f64,
    standby_w: f64,
    indoor_c: f64,
    /// Local dates the resident does not check in ([`crate::Cue::SkipCheckin`]).
    pub skips_checkin: Vec<Date>,
}

impl HomeProfile {
    pub(crate) fn new(run_seed: u64, resident: &ResidentId, behaviour: &Behaviour) -> Self {
        let key = seed::key(
            run_seed,
            Salt::Profile,
            &[seed::hash_str(resident.as_str())],
        );
        let mut rng = seed::rng(key, Salt::Profile, &[]);
        let silent = rng.random_bool(behaviour.silent_share);
        let mut rooms = vec![ROOMS[0], ROOMS[1]];
        for (room, share) in ROOMS[2..].iter().zip(OPTIONAL_ROOM_SHARE) {
            if rng.random_bool(share) {
                rooms.push(room);
            }
        }
        let systolic = round1(rng.random_range(112.0..146.0));
        Self {
            key,
            silent,
            wake_secs: rng.random_range(5 * 3600 + 1800..7 * 3600 + 1800),
            bed_secs: rng.random_range(21 * 3600..23 * 3600),
            rooms,
            resting_hr: rng.random_range(58.0..80.0),
            weight_kg: round1(rng.random_range(42.0..85.0)),
            systolic,
            diastolic: round1((systolic - rng.random_range(35.0..55.0)).max(60.0)),
            standby_w: round1(rng.random_range(1.5..6.0)),
            indoor_c: rng.random_range(19.0..24.0),
            skips_checkin: Vec::new(),
        }
    }

    /// How many motion sensors' rooms this home has.
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

/// Which device of a home sends a reading; [`assign`] maps it to an actual
/// device given what the home has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The check-in button.
    Button,
    /// The motion sensor of a room (index into the home's rooms).
    Motion(usize),
    /// The front door contact.
    Door,
    /// Heart rate, SpO2 and steps from the wrist.
    Wearable,
    /// Blood pressure cuff and scale, paired with the gateway.
    Health,
    /// Ambient temperature, smart-plug power and the satisfaction prompt.
    Home,
}

/// One reading of the day and who sends it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    pub source: Source,
    pub reading: Reading,
}

/// Which device (index into `kinds`) sends readings of `source`, falling back
/// to the gateway (a hub that bridges local sensors) when the home lacks the
/// natural device, and to nothing when no device could have measured it.
pub(crate) fn assign(source: Source, kinds: &[DeviceKind]) -> Option<usize> {
    let first = |k: DeviceKind| kinds.iter().position(|x| *x == k);
    let sensors: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == DeviceKind::Sensor)
        .map(|(i, _)| i)
        .collect();
    let any = (!kinds.is_empty()).then_some(0);
    match source {
        Source::Button => first(DeviceKind::Button)
            .or(first(DeviceKind::Gateway))
            .or(any),
        Source::Motion(room) => match sensors.len() {
            0 => first(DeviceKind::Gateway),
            n => Some(sensors[room % n]),
        },
        Source::Door => sensors.last().copied().or(first(DeviceKind::Gateway)),
        Source::Wearable => first(DeviceKind::Wearable),
        Source::Health => first(DeviceKind::Gateway).or(first(DeviceKind::Wearable)),
        Source::Home => first(DeviceKind::Gateway)
            .or(sensors.first().copied())
            .or(any),
    }
}

/// Whether device `me` of a home sends anything at all, so a device with no
/// role does not search the calendar for events that never come.
pub(crate) fn has_role(me: usize, kinds: &[DeviceKind], room_count: usize) -> bool {
    let fixed = [
        Source::Button,
        Source::Door,
        Source::Wearable,
        Source::Health,
        Source::Home,
    ];
    fixed
        .into_iter()
        .chain((0..room_count).map(Source::Motion))
        .any(|s| assign(s, kinds) == Some(me))
}

/// A stable per-date number for seeding.
fn date_key(date: Date) -> u64 {
    let n = i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day());
    n as u64
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The instant a civil time of `date` happens in `tz` (`secs` after local
/// midnight; a time in a DST gap moves forward, as clocks do).
fn local(tz: &TimeZone, date: Date, secs: i64) -> Option<Timestamp> {
    let dt = date
        .to_datetime(Time::midnight())
        .checked_add(SignedDuration::from_secs(secs))
        .ok()?;
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

/// `[start, end)` of a local day as instants.
pub(crate) fn day_bounds(tz: &TimeZone, date: Date) -> Option<(Timestamp, Timestamp)> {
    let start = date.to_zoned(tz.clone()).ok()?.timestamp();
    let end = date.tomorrow().ok()?.to_zoned(tz.clone()).ok()?.timestamp();
    Some((start, end))
}

/// A silent resident's stretch of no activity that starts on `date` (it may
/// run into the next day).
fn silent_stretch(
    profile: &HomeProfile,
    tz: &TimeZone,
    date: Date,
) -> Option<(Timestamp, Timestamp)> {
    if !profile.silent {
        return None;
    }
    let mut rng = seed::rng(profile.key, Salt::Silence, &[date_key(date)]);
    if !rng.random_bool(0.6) {
        return None;
    }
    let start = local(tz, date, rng.random_range(0..86_400))?;
    let length = SignedDuration::from_mins(rng.random_range(6 * 60..20 * 60));
    Some((start, start.checked_add(length).ok()?))
}

/// The facts of one day that decide whether the resident can act at a time.
struct Day {
    start: Timestamp,
    end: Timestamp,
    wake: Timestamp,
    bed: Timestamp,
    silences: Vec<(Timestamp, Timestamp)>,
    outing: Option<(Timestamp, Timestamp)>,
}

impl Day {
    fn within(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
    fn silent(&self, t: Timestamp) -> bool {
        self.silences.iter().any(|(a, b)| *a <= t && t < *b)
    }
    fn awake(&self, t: Timestamp) -> bool {
        self.wake <= t && t < self.bed
    }
    fn out(&self, t: Timestamp) -> bool {
        self.outing.is_some_and(|(a, b)| a <= t && t < b)
    }
    /// Up, at home and not in a silent stretch: able to move, press, measure.
    fn at_home_and_active(&self, t: Timestamp) -> bool {
        self.awake(t) && !self.silent(t) && !self.out(t)
    }
}

fn reading(
    reading_type: ReadingType,
    value: ReadingValue,
    sensor: Option<String>,
    ts: Timestamp,
) -> Reading {
    Reading {
        reading_type,
        value,
        sensor,
        ts,
    }
}

fn number(reading_type: ReadingType, value: f64, ts: Timestamp) -> Reading {
    reading(reading_type, ReadingValue::Number(value), None, ts)
}

fn plus(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(t)
}

/// Everything the home produces on local `date`, sorted by time, every
/// reading inside the local day `[00:00, next 00:00)`, and no two readings of
/// the same type and sensor at the same instant (which ingest would store
/// once, as a duplicate).
pub(crate) fn day_plan(
    profile: &HomeProfile,
    tz: &TimeZone,
    date: Date,
    behaviour: &Behaviour,
) -> Vec<Planned> {
    let Some((start, end)) = day_bounds(tz, date) else {
        return Vec::new();
    };
    let mut rng = seed::rng(profile.key, Salt::Day, &[date_key(date)]);
    let wake_secs = profile.wake_secs + rng.random_range(-1800..=1800);
    let bed_secs = profile.bed_secs + rng.random_range(-1800..=1800);
    let (Some(wake), Some(bed)) = (local(tz, date, wake_secs), local(tz, date, bed_secs)) else {
        return Vec::new();
    };
    let silences = [date.yesterday().ok(), Some(date)]
        .into_iter()
        .flatten()
        .filter_map(|d| silent_stretch(profile, tz, d))
        .collect();
    let outing = if rng.random_bool(0.5) {
        local(tz, date, rng.random_range(10 * 3600..15 * 3600))
            .map(|a| (a, plus(a, rng.random_range(30 * 60..180 * 60))))
    } else {
        None
    };
    let day = Day {
        start,
        end,
        wake,
        bed,
        silences,
        outing,
    };
    let mut out = Vec::new();
    let mut push = |source: Source, r: Reading| {
        if day.within(r.ts) {
            out.push(Planned { source, reading: r });
        }
    };

    // The morning check-in, unless skipped today or the resident is silent then.
    let missed =
        rng.random_bool(behaviour.missed_checkin_share) || profile.skips_checkin.contains(&date);
    let (from, to) = CHECKIN_WINDOW_SECS;
    if let Some(t) = local(tz, date, rng.random_range(from + 300..to - 600))
        && !missed
        && !day.silent(t)
    {
        push(
            Source::Button,
            reading(
                ReadingType::Checkin,
                ReadingValue::Checkin(CheckinValue::Ok),
                None,
                t,
            ),
        );
    }

    // Moving between rooms while up and at home: a PIR reports 1, then 0 once still.
    let room_count = profile.rooms.len();
    let motion = |room: usize, moved: bool, t: Timestamp| {
        reading(
            ReadingType::Motion,
            ReadingValue::Motion(moved),
            Some(format!("pir-{}", profile.rooms[room])),
            t,
        )
    };
    let mut t = plus(wake, rng.random_range(60..600));
    while t < bed {
        if day.at_home_and_active(t) {
            let room = rng.random_range(0..room_count);
            push(Source::Motion(room), motion(room, true, t));
            let still = plus(t, rng.random_range(60..240));
            push(Source::Motion(room), motion(room, false, still));
        }
        t = plus(t, rng.random_range(5 * 60..45 * 60));
    }
    // A quiet night with a trip or two to the bathroom.
    let bedroom = profile
        .rooms
        .iter()
        .position(|r| *r == "bedroom")
        .unwrap_or(0);
    let bathroom = profile
        .rooms
        .iter()
        .position(|r| *r == "bathroom")
        .unwrap_or(bedroom);
    let day_secs = end.duration_since(start).as_secs().max(1);
    for _ in 0..rng.random_range(0..=2) {
        let t = plus(start, rng.random_range(0..day_secs));
        if !day.awake(t) && !day.silent(t) {
            push(Source::Motion(bedroom), motion(bedroom, true, t));
            push(
                Source::Motion(bathroom),
                motion(bathroom, true, plus(t, 60)),
            );
            push(
                Source::Motion(bedroom),
                motion(bedroom, false, plus(t, 300)),
            );
            push(
                Source::Motion(bathroom),
                motion(bathroom, false, plus(t, 360)),
            );
        }
    }

    // The front door: going out and coming back, and a few quick openings.
    let door = |state: DoorState, t: Timestamp| {
        reading(
            ReadingType::Door,
            ReadingValue::Door(state),
            Some(DOOR_SENSOR.to_owned()),
            t,
        )
    };
    if let Some((leave, back)) = day.outing {
        for t in [leave, back] {
            if !day.silent(t) {
                push(Source::Door, door(DoorState::Open, t));
                push(Source::Door, door(DoorState::Closed, plus(t, 60)));
            }
        }
    }
    for _ in 0..rng.random_range(0..=2) {
        let t = plus(
            wake,
            rng.random_range(0..bed.duration_since(wake).as_secs().max(1)),
        );
        if day.at_home_and_active(t) {
            push(Source::Door, door(DoorState::Open, t));
            push(
                Source::Door,
                door(DoorState::Closed, plus(t, rng.random_range(20..120))),
            );
        }
    }

    // The wearable samples every 15–30 min by day and hourly by night; not worn
    // during a silent stretch.
    let mut t = plus(start, rng.random_range(0..600));
    while t < end {
        let awake = day.awake(t);
        if !day.silent(t) {
            let (hr, steps) = if day.out(t) {
                (
                    profile.resting_hr + rng.random_range(8.0..25.0),
                    Some(rng.random_range(300..1500)),
                )
            } else if awake {
                (
                    profile.resting_hr + rng.random_range(0.0..14.0),
                    Some(rng.random_range(0..600)),
                )
            } else {
                (
                    (profile.resting_hr - rng.random_range(4.0..10.0)).max(42.0),
                    None,
                )
            };
            push(
                Source::Wearable,
                number(ReadingType::HeartRate, hr.round(), t),
            );
            push(
                Source::Wearable,
                number(ReadingType::Spo2, f64::from(rng.random_range(94..=99)), t),
            );
            if let Some(steps) = steps {
                push(
                    Source::Wearable,
                    number(ReadingType::Steps, f64::from(steps), t),
                );
            }
        }
        t = plus(
            t,
            if awake {
                rng.random_range(15 * 60..=30 * 60)
            } else {
                3600
            },
        );
    }

    // Blood pressure morning and evening, weight in the morning, at home.
    let blood_pressure = |rng: &mut SmallRng, t: Timestamp| {
        let systolic = (profile.systolic + rng.random_range(-10.0..10.0)).round();
        let diastolic = (profile.diastolic + rng.random_range(-6.0..6.0))
            .round()
            .min(systolic - 15.0);
        reading(
            ReadingType::BloodPressure,
            ReadingValue::BloodPressure {
                systolic,
                diastolic,
            },
            None,
            t,
        )
    };
    let t = plus(wake, rng.random_range(20 * 60..60 * 60));
    if rng.random_bool(0.85) && day.at_home_and_active(t) {
        push(Source::Health, blood_pressure(&mut rng, t));
    }
    let t = plus(bed, -rng.random_range(30 * 60..90 * 60));
    if rng.random_bool(0.5) && day.at_home_and_active(t) {
        push(Source::Health, blood_pressure(&mut rng, t));
    }
    let t = plus(wake, rng.random_range(5 * 60..20 * 60));
    if rng.random_bool(0.6) && day.at_home_and_active(t) {
        let kg = round1(profile.weight_kg + rng.random_range(-0.6..0.6));
        push(Source::Health, number(ReadingType::BodyWeight, kg, t));
    }

    // Hourly ambient temperature, warmest mid-afternoon.
    let mut t = start;
    while t < end {
        let hour = f64::from(tz.to_datetime(t).hour());
        let swing = 2.0 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
        let c = round1(profile.indoor_c + swing + rng.random_range(-0.3..0.3));
        push(Source::Home, number(ReadingType::AmbientTemperature, c, t));
        t = plus(t, 3600);
    }
    // A smart plug every 15 min: varying while someone is up at home, the
    // same standby draw otherwise (power_use counts as activity only when it
    // changes).
    let mut t = start;
    while t < end {
        let w = if day.at_home_and_active(t) {
            round1(rng.random_range(15.0..350.0))
        } else {
            profile.standby_w
        };
        push(Source::Home, number(ReadingType::PowerUse, w, t));
        t = plus(t, 15 * 60);
    }
    // Now and then the gateway's survey prompt gets an answer.
    let t = local(tz, date, rng.random_range(14 * 3600..18 * 3600));
    if rng.random_bool(0.05)
        && let Some(t) = t
        && day.at_home_and_active(t)
    {
        let score = match rng.random_range(0..100) {
            0..3 => 1,
            3..10 => 2,
            10..30 => 3,
            30..70 => 4,
            _ => 5,
        };
        push(
            Source::Home,
            reading(
                ReadingType::Satisfaction,
                ReadingValue::Score(score),
                None,
                t,
            ),
        );
    }

    out.sort_by_key(|p| p.reading.ts);
    let mut seen = HashSet::new();
    out.retain(|p| {
        seen.insert((
            p.reading.reading_type,
            p.reading.sensor.clone(),
            p.reading.ts,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).expect("bundled time zone")
    }

    fn resident(i: usize) -> ResidentId {
        ResidentId::new(format!("r-{i:04}")).expect("valid id")
    }

    const EVERYONE_CHECKS_IN: Behaviour = Behaviour {
        missed_checkin_share: 0.0,
        silent_share: 0.0,
    };

    fn checkins(plan: &[Planned]) -> Vec<Timestamp> {
        plan.iter()
            .filter(|p| p.reading.reading_type == ReadingType::Checkin)
            .map(|p| p.reading.ts)
            .collect()
    }

    fn assert_day_invariants(plan: &[Planned], tz: &TimeZone, date: Date) {
        let (start, end) = day_bounds(tz, date).expect("bounds");
        let mut keys = HashSet::new();
        for w in plan.windows(2) {
            assert!(w[0].reading.ts <= w[1].reading.ts, "sorted");
        }
        for p in plan {
            assert!(
                start <= p.reading.ts && p.reading.ts < end,
                "inside the local day"
            );
            assert_eq!(tz.to_datetime(p.reading.ts).date(), date);
            assert!(keys.insert((
                p.reading.reading_type,
                p.reading.sensor.clone(),
                p.reading.ts
            )));
        }
        for t in checkins(plan) {
            let local = tz.to_datetime(t).time();
            assert!(
                Time::constant(6, 0, 0, 0) <= local && local < Time::constant(10, 0, 0, 0),
                "check-in at {local} is outside 06:00-10:00"
            );
        }
    }

    #[test]
    fn lisbon_dst_days_keep_checkins_in_the_local_window() {
        let lisbon = tz("Europe/Lisbon");
        let spring = Date::constant(2026, 3, 29);
        let autumn = Date::constant(2026, 10, 25);
        let (s0, s1) = day_bounds(&lisbon, spring).expect("bounds");
        assert_eq!(s1.duration_since(s0), SignedDuration::from_hours(23));
        let (a0, a1) = day_bounds(&lisbon, autumn).expect("bounds");
        assert_eq!(a1.duration_since(a0), SignedDuration::from_hours(25));
        for date in [spring, autumn] {
            for i in 0..50 {
                let profile = HomeProfile::new(42, &resident(i), &EVERYONE_CHECKS_IN);
                let plan = day_plan(&profile, &lisbon, date, &EVERYONE_CHECKS_IN);
                assert_day_invariants(&plan, &lisbon, date);
                assert_eq!(checkins(&plan).len(), 1, "everyone checks in");
            }
        }
        // Hourly sensors follow the clock on the wall: 23 and 25 readings.
        let profile = HomeProfile::new(42, &resident(0), &EVERYONE_CHECKS_IN);
        let ambient = |date| {
            day_plan(&profile, &lisbon, date, &EVERYONE_CHECKS_IN)
                .iter()
                .filter(|p| p.reading.reading_type == ReadingType::AmbientTemperature)
                .count()
        };
        assert_eq!(ambient(spring), 23);
        assert_eq!(ambient(autumn), 25);
    }

    #[test]
    fn days_are_deterministic_for_a_seed_and_differ_across_seeds() {
        let seoul = tz("Asia/Seoul");
        let date = Date::constant(2026, 11, 27);
        let p1 = HomeProfile::new(1, &resident(1), &EVERYONE_CHECKS_IN);
        let p1b = HomeProfile::new(1, &resident(1), &EVERYONE_CHECKS_IN);
        let p2 = HomeProfile::new(2, &resident(1), &EVERYONE_CHECKS_IN);
        let a = day_plan(&p1, &seoul, date, &EVERYONE_CHECKS_IN);
        let b = day_plan(&p1b, &seoul, date, &EVERYONE_CHECKS_IN);
        let c = day_plan(&p2, &seoul, date, &EVERYONE_CHECKS_IN);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_day_looks_like_a_day() {
        let seoul = tz("Asia/Seoul");
        let date = Date::constant(2026, 11, 27);
        let profile = HomeProfile::new(9, &resident(3), &EVERYONE_CHECKS_IN);
        let plan = day_plan(&profile, &seoul, date, &EVERYONE_CHECKS_IN);
        let count = |t: ReadingType| plan.iter().filter(|p| p.reading.reading_type == t).count();
        assert_eq!(count(ReadingType::AmbientTemperature), 24);
        assert_eq!(count(ReadingType::PowerUse), 96);
        assert!(
            count(ReadingType::HeartRate) >= 30,
            "wearable samples through the day"
        );
        assert!(count(ReadingType::Motion) >= 10, "moves about while awake");
        // Quiet nights: between 01:00 and 04:00 almost no motion (a trip or two).
        let night_moves = plan
            .iter()
            .filter(|p| p.reading.reading_type == ReadingType::Motion)
            .filter(|p| (1..4).contains(&seoul.to_datetime(p.reading.ts).hour()))
            .count();
        assert!(night_moves <= 8, "{night_moves} motion events at night");
        // Every value is inside the contract's valid range.
        for p in &plan {
            match (p.reading.reading_type, p.reading.value) {
                (ReadingType::HeartRate, ReadingValue::Number(v)) => {
                    assert!((20.0..=250.0).contains(&v))
                }
                (ReadingType::Spo2, ReadingValue::Number(v)) => {
                    assert!((50.0..=100.0).contains(&v))
                }
                (ReadingType::BodyWeight, ReadingValue::Number(v)) => {
                    assert!((20.0..=300.0).contains(&v))
                }
                (ReadingType::Steps, ReadingValue::Number(v)) => {
                    assert!((0.0..=100_000.0).contains(&v))
                }
                (ReadingType::PowerUse, ReadingValue::Number(v)) => {
                    assert!((0.0..=10_000.0).contains(&v))
                }
                (ReadingType::AmbientTemperature, ReadingValue::Number(v)) => {
                    assert!((-30.0..=60.0).contains(&v))
                }
                (
                    ReadingType::BloodPressure,
                    ReadingValue::BloodPressure {
                        systolic,
                        diastolic,
                    },
                ) => {
                    assert!((50.0..=260.0).contains(&systolic));
                    assert!((30.0..=160.0).contains(&diastolic));
                    assert!(systolic > diastolic);
                }
                (ReadingType::Satisfaction, ReadingValue::Score(s)) => {
                    assert!((1..=5).contains(&s))
                }
                (ReadingType::Motion, ReadingValue::Motion(_))
                | (ReadingType::Door, ReadingValue::Door(_))
                | (ReadingType::Checkin, ReadingValue::Checkin(CheckinValue::Ok)) => {}
                other => panic!("unexpected reading {other:?}"),
            }
        }
    }

    #[test]
    fn missed_checkins_follow_the_share() {
        let seoul = tz("Asia/Seoul");
        let behaviour = Behaviour {
            missed_checkin_share: 0.3,
            silent_share: 0.0,
        };
        let mut days = 0;
        let mut done = 0;
        for i in 0..40 {
            let profile = HomeProfile::new(5, &resident(i), &behaviour);
            let mut date = Date::constant(2026, 1, 1);
            for _ in 0..25 {
                days += 1;
                done += checkins(&day_plan(&profile, &seoul, date, &behaviour)).len();
                date = date.tomorrow().expect("date");
            }
        }
        let share_missed = 1.0 - done as f64 / days as f64;
        assert!(
            (0.22..0.38).contains(&share_missed),
            "missed {share_missed}"
        );
    }

    #[test]
    fn a_resident_cued_to_skip_a_checkin_skips_that_day_only() {
        let seoul = tz("Asia/Seoul");
        let date = Date::constant(2026, 12, 8);
        let mut profile = HomeProfile::new(4, &resident(6), &EVERYONE_CHECKS_IN);
        profile.skips_checkin = vec![date];
        let plan = |date| day_plan(&profile, &seoul, date, &EVERYONE_CHECKS_IN);
        assert!(checkins(&plan(date)).is_empty());
        assert_eq!(checkins(&plan(date.tomorrow().expect("date"))).len(), 1);
        // Skipping changes nothing else of the day.
        let mut usual = profile.clone();
        usual.skips_checkin.clear();
        let without: Vec<Planned> = day_plan(&usual, &seoul, date, &EVERYONE_CHECKS_IN)
            .into_iter()
            .filter(|p| p.reading.reading_type != ReadingType::Checkin)
            .collect();
        assert_eq!(plan(date), without);
    }

    #[test]
    fn silent_residents_have_long_stretches_without_activity() {
        let seoul = tz("Asia/Seoul");
        let behaviour = Behaviour {
            missed_checkin_share: 0.0,
            silent_share: 1.0,
        };
        let profile = HomeProfile::new(3, &resident(7), &behaviour);
        assert!(profile.silent);
        let mut date = Date::constant(2026, 5, 1);
        let mut longest = SignedDuration::ZERO;
        for _ in 0..10 {
            let plan = day_plan(&profile, &seoul, date, &behaviour);
            let active: Vec<Timestamp> = plan
                .iter()
                .filter(|p| p.reading.shows_activity())
                .map(|p| p.reading.ts)
                .collect();
            for w in active.windows(2) {
                longest = longest.max(w[1].duration_since(w[0]));
            }
            date = date.tomorrow().expect("date");
        }
        assert!(
            longest >= SignedDuration::from_hours(8),
            "longest gap {longest:?}"
        );
    }

    #[test]
    fn sources_map_to_the_devices_a_home_has() {
        use DeviceKind::*;
        let full = [Gateway, Wearable, Button, Sensor, Sensor];
        assert_eq!(assign(Source::Button, &full), Some(2));
        assert_eq!(assign(Source::Wearable, &full), Some(1));
        assert_eq!(assign(Source::Motion(0), &full), Some(3));
        assert_eq!(assign(Source::Motion(1), &full), Some(4));
        assert_eq!(assign(Source::Door, &full), Some(4));
        assert_eq!(assign(Source::Health, &full), Some(0));
        assert_eq!(assign(Source::Home, &full), Some(0));
        let gateway_only = [Gateway];
        assert_eq!(assign(Source::Button, &gateway_only), Some(0));
        assert_eq!(assign(Source::Motion(3), &gateway_only), Some(0));
        assert_eq!(assign(Source::Wearable, &gateway_only), None);
        let two_buttons = [Button, Button];
        assert!(has_role(0, &two_buttons, 2));
        assert!(!has_role(1, &two_buttons, 2));
    }

    #[test]
    fn every_planned_reading_passes_ingest_validation_unchanged() {
        use ondol_model::wire::{DecodeLimits, decode_readings, encode_message};
        let behaviour = Behaviour {
            missed_checkin_share: 0.1,
            silent_share: 0.3,
        };
        for (i, zone) in ["Asia/Seoul", "Europe/Lisbon", "America/New_York"]
            .into_iter()
            .enumerate()
        {
            let tz = tz(zone);
            let date = Date::constant(2026, 3, 29);
            let profile = HomeProfile::new(11, &resident(i), &behaviour);
            let readings: Vec<Reading> = day_plan(&profile, &tz, date, &behaviour)
                .into_iter()
                .map(|p| p.reading)
                .collect();
            assert!(!readings.is_empty());
            let (_, end) = day_bounds(&tz, date).expect("bounds");
            let payload = encode_message(Some("m-1"), &readings);
            let decoded =
                decode_readings(&payload, end, &DecodeLimits::default()).expect("decodes");
            assert_eq!(decoded.msg_id.as_deref(), Some("m-1"));
            for (sent, got) in readings.iter().zip(&decoded.items) {
                assert_eq!(got.as_ref().ok(), Some(sent), "{zone}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_day_in_any_zone_keeps_the_invariants(
            seed in any::<u64>(),
            days in 0i32..800,
            zone in prop::sample::select(vec![
                "Asia/Seoul", "Europe/Lisbon", "America/New_York",
                "Australia/Lord_Howe", "Asia/Kathmandu", "UTC",
            ]),
            missed in 0.0f64..=1.0,
            silent in 0.0f64..=1.0,
        ) {
            let tz = tz(zone);
            let behaviour = Behaviour { missed_checkin_share: missed, silent_share: silent };
            let date = Date::constant(2025, 1, 1)
                .checked_add(jiff::Span::new().days(days))
                .expect("date");
            let profile = HomeProfile::new(seed, &resident(1), &behaviour);
            let plan = day_plan(&profile, &tz, date, &behaviour);
            assert_day_invariants(&plan, &tz, date);
            prop_assert!(checkins(&plan).len() <= 1);
        }
    }
}
