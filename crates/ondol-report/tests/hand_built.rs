//! A small history written through the store's own write paths (batches and
//! the alert lifecycle), then reported; every figure below is worked out by
//! hand in the comments.
//!
//! Range 2026-03-23 (Mon) ..= 2026-04-05 (Sun), weekly: W1 = 03-23..03-29,
//! W2 = 03-30..04-05. Region gangjin (Asia/Seoul, UTC+9, no DST): s1..s6.
//! Region alentejo (Europe/Lisbon): l1 alone, so its cells are suppressed;
//! Lisbon moves to summer time on 2026-03-29 at 01:00 UTC (a 23-hour day).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;

use ondol_model::alert::{Cause, Outcome, Rule, Severity, Subject};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_model::roster::Roster;
use ondol_model::{DeviceId, Reading, ResidentId};
use ondol_report::metrics::{Cell, Figures};
use ondol_report::{Granularity, PseudonymKey, Report, compute, html, output};
use ondol_store::alerts::{NewAlert, Raised};
use ondol_store::{Batch, NewReading, Store};

const ROSTER: &str = r#"
[[residents]]
id = "s1-kim"
name = "Kim Minsoo"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"

[[residents]]
id = "s2-lee"
name = "Lee Youngja"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
away = [{ from = "2026-03-25", until = "2026-03-27", reason = "hospital" }]

[[residents]]
id = "s3-park"
name = "Park Soonja"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-03-31"

[[residents]]
id = "s4-choi"
name = "Choi Malsun"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
enrolled_until = "2026-03-24"

[[residents]]
id = "s5-jung"
name = "Jung Bokrye"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
checkin = { window = "none" }

[[residents]]
id = "s6-kang"
name = "Kang Okja"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"

[[residents]]
id = "l1-silva"
name = "Maria da Silva"
timezone = "Europe/Lisbon"
region = "alentejo"
enrolled_from = "2026-01-01"

[[devices]]
id = "gw-s1"
resident = "s1-kim"
kind = "gateway"
[[devices]]
id = "gw-s2"
resident = "s2-lee"
kind = "gateway"
[[devices]]
id = "gw-s3"
resident = "s3-park"
kind = "gateway"
[[devices]]
id = "gw-s5"
resident = "s5-jung"
kind = "gateway"
[[devices]]
id = "gw-s6"
resident = "s6-kang"
kind = "gateway"
[[devices]]
id = "gw-l1"
resident = "l1-silva"
kind = "gateway"

[[staff]]
id = "cw-01"
name = "Test Caseworker"
role = "caseworker"
"#;

const FROM: Date = date(2026, 3, 23);
const TO: Date = date(2026, 4, 5);

fn roster() -> Roster {
    ondol_store::parse_roster(ROSTER, "hand.toml").expect("valid roster")
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A reading stamped with its local date and hour in `zone`, as ingest does.
fn reading(
    resident: &str,
    zone: &str,
    at: Timestamp,
    value: ReadingValue,
    kind: ReadingType,
    in_window: bool,
) -> NewReading {
    let local = at.to_zoned(TimeZone::get(zone).unwrap());
    let device = format!("gw-{}", &resident[..2]);
    let reading = Reading {
        reading_type: kind,
        value,
        sensor: None,
        ts: at,
    };
    NewReading {
        device_id: DeviceId::new(device).unwrap(),
        resident_id: ResidentId::new(resident).unwrap(),
        counts_as_activity: reading.shows_activity(),
        checkin_in_window: in_window,
        reading,
        received_at: at,
        local_date: local.date(),
        local_hour: u8::try_from(local.hour()).unwrap(),
    }
}

const SEOUL: &str = "Asia/Seoul";
const LISBON: &str = "Europe/Lisbon";

fn hr(resident: &str, zone: &str, at: &str) -> NewReading {
    reading(
        resident,
        zone,
        ts(at),
        ReadingValue::Number(70.0),
        ReadingType::HeartRate,
        false,
    )
}

fn ok(resident: &str, zone: &str, at: &str, in_window: bool) -> NewReading {
    reading(
        resident,
        zone,
        ts(at),
        ReadingValue::Checkin(CheckinValue::Ok),
        ReadingType::Checkin,
        in_window,
    )
}

fn score(resident: &str, at: &str, score: u8) -> NewReading {
    reading(
        resident,
        SEOUL,
        ts(at),
        ReadingValue::Score(score),
        ReadingType::Satisfaction,
        false,
    )
}

/// Raises an alert on `local` opened at `opened`, then acknowledges and
/// resolves it after the given seconds.
fn alert(
    store: &mut Store,
    resident: &str,
    rule: Rule,
    local: Date,
    opened: &str,
    ack_after: Option<i64>,
    resolve: Option<(i64, Outcome)>,
) {
    let opened = ts(opened);
    let new = NewAlert {
        rule,
        subject: Subject::Resident(ResidentId::new(resident).unwrap()),
        resident_id: Some(ResidentId::new(resident).unwrap()),
        device_id: None,
        episode: format!("{local}"),
        severity: Severity::Alarm,
        cause: Cause::NoCheckin,
        detail: None,
        local_date: Some(local),
        opened_at: opened,
        next_escalation_at: None,
    };
    let Raised::New(row) = store.raise_alert(&new, |_| Vec::new()).unwrap() else {
        panic!("alert not raised");
    };
    if let Some(s) = ack_after {
        let at = opened
            .checked_add(jiff::SignedDuration::from_secs(s))
            .unwrap();
        store
            .acknowledge_alert(row.id, "cw-01", at, None)
            .unwrap()
            .unwrap();
    }
    if let Some((s, outcome)) = resolve {
        let at = opened
            .checked_add(jiff::SignedDuration::from_secs(s))
            .unwrap();
        store
            .resolve_alert(row.id, "cw-01", outcome, at, None)
            .unwrap()
            .unwrap();
    }
}

fn history() -> (tempfile::TempDir, Store, Roster) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("ondol.db")).unwrap();
    let roster = roster();
    store.import_roster(&roster).unwrap();
    let mut readings = vec![
        // s1: 03-23 00:30 local (still 03-22 in UTC): 03-23, hour 0.
        hr("s1-kim", SEOUL, "2026-03-22T15:30:00Z"),
        // s1: check-in 07:00 and a reading 08:30 on 03-24: hours {7, 8}, done.
        ok("s1-kim", SEOUL, "2026-03-23T22:00:00Z", true),
        hr("s1-kim", SEOUL, "2026-03-23T23:30:00Z"),
        // s1: 04-06 00:30 local (04-05 in UTC): outside the range.
        hr("s1-kim", SEOUL, "2026-04-05T15:30:00Z"),
        // s2: on an away day: not counted.
        hr("s2-lee", SEOUL, "2026-03-26T03:00:00Z"),
        // s2: a late check-in at 10:00 on 03-30 (window ends 10:00): active,
        // hour 10, not done.
        ok("s2-lee", SEOUL, "2026-03-30T01:00:00Z", false),
        // s3: before enrolment (03-30): not counted.
        hr("s3-park", SEOUL, "2026-03-30T03:00:00Z"),
        // s3: 03-31 check-in 07:30 and reading 12:00: hours {7, 12}, done.
        ok("s3-park", SEOUL, "2026-03-30T22:30:00Z", true),
        hr("s3-park", SEOUL, "2026-03-31T03:00:00Z"),
        // s5 (no check-in plan): satisfaction 4 on 03-25 and 5 on 04-01.
        score("s5-jung", "2026-03-25T01:00:00Z", 4),
        score("s5-jung", "2026-04-01T01:00:00Z", 5),
        // s6: a check-in at 07:15 on 03-28, in the window.
        ok("s6-kang", SEOUL, "2026-03-27T22:15:00Z", true),
        // l1: 03-22 23:30 Lisbon (UTC+0): outside the range.
        hr("l1-silva", LISBON, "2026-03-22T23:30:00Z"),
        // l1: check-in 08:00 summer time on 03-29, in the window.
        ok("l1-silva", LISBON, "2026-03-29T07:00:00Z", true),
        // l1: 03-30 00:30 summer time (03-29 in UTC): 03-30, hour 0.
        hr("l1-silva", LISBON, "2026-03-29T23:30:00Z"),
    ];
    // s6: one reading every hour of Seoul's 03-28: 24 hours with data.
    for h in 0..24 {
        let at = ts("2026-03-27T15:00:00Z")
            .checked_add(jiff::SignedDuration::from_hours(h))
            .unwrap();
        readings.push(reading(
            "s6-kang",
            SEOUL,
            at,
            ReadingValue::Number(70.0),
            ReadingType::HeartRate,
            false,
        ));
    }
    // l1: one reading every UTC hour of Lisbon's 03-29, which has 23 hours
    // (01:00 local does not exist): 23 hours with data.
    for h in 0..23 {
        let at = ts("2026-03-29T00:00:00Z")
            .checked_add(jiff::SignedDuration::from_hours(h))
            .unwrap();
        readings.push(reading(
            "l1-silva",
            LISBON,
            at,
            ReadingValue::Number(70.0),
            ReadingType::HeartRate,
            false,
        ));
    }
    store
        .commit_batch(&Batch {
            readings,
            ..Batch::default()
        })
        .unwrap();

    let d = |m, day| date(2026, m, day);
    // A1: s1 help 03-24, acked after 60 s, resolved after 600 s: needed help.
    alert(
        &mut store,
        "s1-kim",
        Rule::HelpRequest,
        d(3, 24),
        "2026-03-24T00:00:00Z",
        Some(60),
        Some((600, Outcome::NeededHelp)),
    );
    // A2: s2 inactivity 03-30: 120 s, 1800 s, false alarm (behaviour).
    alert(
        &mut store,
        "s2-lee",
        Rule::Inactivity,
        d(3, 30),
        "2026-03-30T05:00:00Z",
        Some(120),
        Some((1800, Outcome::FalseAlarmBehaviour)),
    );
    // A3: s6 missed check-in 03-25: 300 s, 900 s, resident ok.
    alert(
        &mut store,
        "s6-kang",
        Rule::MissedCheckin,
        d(3, 25),
        "2026-03-25T01:00:00Z",
        Some(300),
        Some((900, Outcome::ResidentOk)),
    );
    // A4: s5 help 04-01: 30 s, 3600 s, false alarm (device).
    alert(
        &mut store,
        "s5-jung",
        Rule::HelpRequest,
        d(4, 1),
        "2026-04-01T02:00:00Z",
        Some(30),
        Some((3600, Outcome::FalseAlarmDevice)),
    );
    // A5: s3 missed check-in 03-30, before enrolment: not counted.
    alert(
        &mut store,
        "s3-park",
        Rule::MissedCheckin,
        d(3, 30),
        "2026-03-30T01:00:00Z",
        Some(10),
        Some((20, Outcome::ResidentOk)),
    );
    // A6: l1 help 03-29: acked after 45 s, still open.
    alert(
        &mut store,
        "l1-silva",
        Rule::HelpRequest,
        d(3, 29),
        "2026-03-29T10:00:00Z",
        Some(45),
        None,
    );
    // A7: s6 inactivity 04-02: open, never acked.
    alert(
        &mut store,
        "s6-kang",
        Rule::Inactivity,
        d(4, 2),
        "2026-04-02T05:00:00Z",
        None,
        None,
    );
    (dir, store, roster)
}

fn key() -> PseudonymKey {
    PseudonymKey::new(b"a test key of thirty-two bytes!!".to_vec()).unwrap()
}

fn report(store: &Store, roster: &Roster) -> Report {
    let days = store.day_facts(FROM, TO).unwrap();
    let alerts = store.alert_facts(FROM, TO).unwrap();
    compute(
        &roster.residents,
        &days,
        &alerts,
        FROM,
        TO,
        Granularity::Week,
        &key(),
    )
    .unwrap()
}

fn cell<'r>(report: &'r Report, period: &str, region: &str) -> &'r Cell {
    report
        .cells
        .iter()
        .find(|c| c.period == period && c.region == region)
        .unwrap_or_else(|| panic!("no cell {period} {region}"))
}

struct Expect {
    residents: u64,
    days: u64,
    active: u64,
    hours: u64,
    expected: u64,
    done: u64,
    /// (help_request, inactivity, missed_checkin)
    alerts: (u64, u64, u64),
    ack: (Option<f64>, Option<u64>),
    resolve: Option<f64>,
    /// (needed_help, resident_ok, false_alarm_behaviour, false_alarm_device)
    outcomes: (u64, u64, u64, u64),
    satisfaction: (u64, Option<f64>),
}

fn check(f: &Figures, e: &Expect) {
    let r = |n: u64, d: u64| Some(n as f64 / d as f64);
    assert_eq!(f.residents_enrolled, e.residents);
    assert_eq!(f.resident_days_enrolled, e.days);
    assert_eq!(f.active_days, e.active);
    assert_eq!(f.active_day_ratio, r(e.active, e.days));
    assert_eq!(f.hours_with_data, e.hours);
    assert_eq!(f.data_completeness, r(e.hours, 24 * e.days));
    assert_eq!(f.checkins_expected, e.expected);
    assert_eq!(f.checkins_done, e.done);
    assert_eq!(f.checkin_adherence, r(e.done, e.expected));
    let (help, inactivity, missed) = e.alerts;
    let mut alerts: BTreeMap<String, u64> = Rule::ALL.iter().map(|r| (r.to_string(), 0)).collect();
    alerts.insert("help_request".into(), help);
    alerts.insert("inactivity".into(), inactivity);
    alerts.insert("missed_checkin".into(), missed);
    assert_eq!(f.alerts, alerts);
    for (rule, n) in &alerts {
        assert_eq!(
            f.alerts_per_100_resident_days[rule],
            r(n * 100, e.days),
            "{rule}"
        );
    }
    assert_eq!((f.median_seconds_to_ack, f.p90_seconds_to_ack), e.ack);
    assert_eq!(f.median_seconds_to_resolve, e.resolve);
    let (needed, ok, behaviour, device) = e.outcomes;
    let resolved = needed + ok + behaviour + device;
    assert_eq!(f.resolved, resolved);
    assert_eq!(f.outcomes["needed_help"], needed);
    assert_eq!(f.outcomes["resident_ok"], ok);
    assert_eq!(f.outcomes["false_alarm_behaviour"], behaviour);
    assert_eq!(f.outcomes["false_alarm_device"], device);
    assert_eq!(f.outcomes.values().sum::<u64>(), resolved);
    assert_eq!(f.false_alarm_ratio, r(behaviour + device, resolved));
    assert_eq!(
        (f.satisfaction_responses, f.satisfaction_mean),
        e.satisfaction
    );
}

#[test]
fn every_metric_matches_the_hand_computation() {
    let (_dir, store, roster) = history();
    let report = report(&store, &roster);

    // Enrolled days: s1 7+7, s2 4+7 (away 03-25..27), s3 0+6 (from 03-31),
    // s4 2+0 (until 03-24), s5 7+7, s6 7+7, l1 7+7.
    // gangjin W1: s1 s2 s4 s5 s6 = 5 residents, 7+4+2+7+7 = 27 days.
    // Active: s1 03-23, s1 03-24, s5 03-25, s6 03-28 = 4; hours 1+2+1+24.
    // Expected check-ins 27 - 7 (s5) = 20; done s1 03-24, s6 03-28.
    // Alerts A1 (help), A3 (missed); ack [60, 300]; resolve [600, 900].
    check(
        cell(&report, "2026-03-23", "gangjin")
            .figures
            .as_ref()
            .unwrap(),
        &Expect {
            residents: 5,
            days: 27,
            active: 4,
            hours: 28,
            expected: 20,
            done: 2,
            alerts: (1, 0, 1),
            ack: (Some(180.0), Some(300)),
            resolve: Some(750.0),
            outcomes: (1, 1, 0, 0),
            satisfaction: (1, Some(4.0)),
        },
    );
    // gangjin W2: s1 s2 s3 s5 s6 = 5 residents, 7+7+6+7+7 = 34 days.
    // Active: s2 03-30 (late check-in), s3 03-31, s5 04-01; hours 1+2+1.
    // Expected 34 - 7 = 27; done s3 03-31. Alerts A2, A4, A7 (A5 is before
    // s3's enrolment); ack [120, 30]; resolve [1800, 3600], both false alarms.
    check(
        cell(&report, "2026-03-30", "gangjin")
            .figures
            .as_ref()
            .unwrap(),
        &Expect {
            residents: 5,
            days: 34,
            active: 3,
            hours: 4,
            expected: 27,
            done: 1,
            alerts: (1, 2, 0),
            ack: (Some(75.0), Some(120)),
            resolve: Some(2700.0),
            outcomes: (0, 0, 1, 1),
            satisfaction: (1, Some(5.0)),
        },
    );
    // gangjin whole range: 6 residents, 61 days; ack [30, 60, 120, 300]:
    // median 90, p90 = 4th of 4; resolve [600, 900, 1800, 3600]: 1350.
    check(
        cell(&report, "all", "gangjin").figures.as_ref().unwrap(),
        &Expect {
            residents: 6,
            days: 61,
            active: 7,
            hours: 32,
            expected: 47,
            done: 3,
            alerts: (2, 2, 1),
            ack: (Some(90.0), Some(300)),
            resolve: Some(1350.0),
            outcomes: (1, 1, 1, 1),
            satisfaction: (2, Some(4.5)),
        },
    );
    // All regions W1 adds l1: 03-29 (23 hours, DST day, check-in done)
    // and A6 (acked 45 s, open): ack [45, 60, 300].
    check(
        cell(&report, "2026-03-23", "all").figures.as_ref().unwrap(),
        &Expect {
            residents: 6,
            days: 34,
            active: 5,
            hours: 51,
            expected: 27,
            done: 3,
            alerts: (2, 0, 1),
            ack: (Some(60.0), Some(300)),
            resolve: Some(750.0),
            outcomes: (1, 1, 0, 0),
            satisfaction: (1, Some(4.0)),
        },
    );
    // All regions W2 adds l1 03-30 (00:30 summer time, hour 0).
    check(
        cell(&report, "2026-03-30", "all").figures.as_ref().unwrap(),
        &Expect {
            residents: 6,
            days: 41,
            active: 4,
            hours: 5,
            expected: 34,
            done: 1,
            alerts: (1, 2, 0),
            ack: (Some(75.0), Some(120)),
            resolve: Some(2700.0),
            outcomes: (0, 0, 1, 1),
            satisfaction: (1, Some(5.0)),
        },
    );
    // Everything: 7 residents, 75 days; ack [30, 45, 60, 120, 300].
    check(
        cell(&report, "all", "all").figures.as_ref().unwrap(),
        &Expect {
            residents: 7,
            days: 75,
            active: 9,
            hours: 56,
            expected: 61,
            done: 4,
            alerts: (3, 2, 1),
            ack: (Some(60.0), Some(300)),
            resolve: Some(1350.0),
            outcomes: (1, 1, 1, 1),
            satisfaction: (2, Some(4.5)),
        },
    );
    // alentejo has one resident: every cell is withheld, none is zero.
    for period in ["2026-03-23", "2026-03-30", "all"] {
        let c = cell(&report, period, "alentejo");
        assert!(c.suppressed && c.figures.is_none(), "{period}");
    }
    // Periods are clipped to the range and labelled by their first day.
    let w2 = cell(&report, "2026-03-30", "gangjin");
    assert_eq!((w2.from, w2.to), (date(2026, 3, 30), TO));
    assert_eq!(report.cells.len(), 9);

    // The per-resident table: one row per resident enrolled in the range.
    assert_eq!(report.residents.len(), 7);
    let s1 = report
        .residents
        .iter()
        .find(|r| r.pseudonym == key().pseudonym(&ResidentId::new("s1-kim").unwrap()))
        .unwrap();
    assert_eq!(s1.resident_days_enrolled, 14);
    assert_eq!(s1.active_day_ratio, Some(2.0 / 14.0));
    assert_eq!(s1.data_completeness, Some(3.0 / (24.0 * 14.0)));
    assert_eq!(s1.checkin_adherence, Some(1.0 / 14.0));
    assert_eq!(s1.alerts, 1);
}

#[test]
fn monthly_periods_split_at_the_month_boundary() {
    let (_dir, store, roster) = history();
    let days = store.day_facts(FROM, TO).unwrap();
    let alerts = store.alert_facts(FROM, TO).unwrap();
    let report = compute(
        &roster.residents,
        &days,
        &alerts,
        FROM,
        TO,
        Granularity::Month,
        &key(),
    )
    .unwrap();
    let march = cell(&report, "2026-03-01", "all");
    assert_eq!((march.from, march.to), (FROM, date(2026, 3, 31)));
    let april = cell(&report, "2026-04-01", "all");
    assert_eq!((april.from, april.to), (date(2026, 4, 1), TO));
    // March: 9 days each for s1 s5 s6 l1, s2 9-3 = 6, s3 1, s4 2 = 45.
    let f = march.figures.as_ref().unwrap();
    assert_eq!(f.resident_days_enrolled, 45);
    // s3's only March day is 03-31 (done), and s3 is counted in March.
    assert_eq!(f.residents_enrolled, 7);
    assert_eq!(f.checkins_done, 4);
}

#[test]
fn no_roster_name_or_id_appears_in_any_output() {
    let (_dir, store, roster) = history();
    let report = report(&store, &roster);
    let outputs = [
        output::json(&report).unwrap(),
        output::cells_csv(&report),
        output::residents_csv(&report),
        html::render(&report),
    ];
    for text in &outputs {
        for resident in &roster.residents {
            assert!(!text.contains(resident.id.as_str()), "{}", resident.id);
            assert!(!text.contains(&resident.name), "{}", resident.name);
        }
        for device in &roster.devices {
            assert!(!text.contains(device.id.as_str()));
        }
        for staff in &roster.staff {
            assert!(!text.contains(staff.id.as_str()));
            assert!(!text.contains(&staff.name));
        }
        // Pseudonyms do appear.
        assert!(text.contains("r-") || !text.contains("pseudonym"));
    }
    // The per-resident CSV has a pseudonym per resident and nothing else
    // that identifies them.
    let csv = output::residents_csv(&report);
    assert_eq!(csv.lines().count(), 1 + roster.residents.len());
}

#[test]
fn suppressed_cells_are_marked_not_zero_in_csv_and_json() {
    let (_dir, store, roster) = history();
    let report = report(&store, &roster);
    let csv = output::cells_csv(&report);
    let line = csv
        .lines()
        .find(|l| l.starts_with("all,") && l.contains(",alentejo,"))
        .unwrap();
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields[4], "true");
    assert!(fields[5..].iter().all(|f| f.is_empty()), "{line}");
    let json: serde_json::Value = serde_json::from_str(&output::json(&report).unwrap()).unwrap();
    let cell = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["period"] == "all" && c["region"] == "alentejo")
        .unwrap();
    assert_eq!(cell["suppressed"], true);
    assert!(cell["figures"].is_null());
}

#[test]
fn the_html_report_is_self_contained_with_charts_tables_and_definitions() {
    let (_dir, store, roster) = history();
    let report = report(&store, &roster);
    let page = html::render(&report);
    assert!(page.starts_with("<!DOCTYPE html>"));
    // Self-contained: no scripts, no external resources.
    assert!(!page.contains("<script"));
    assert!(!page.contains("src="));
    assert!(!page.contains("href="));
    // Six charts: three ratios over time, alerts by rule, outcomes,
    // time to acknowledge; and a sparkline per summary figure.
    assert_eq!(page.matches("<figure><figcaption>").count(), 6);
    assert_eq!(page.matches("<svg ").count(), 6 + 11);
    assert!(page.contains("false-alarm share 50.0%"));
    // Every definition is printed.
    for (term, _) in ondol_report::definitions::DEFINITIONS {
        assert!(page.contains(&html::escape(term)), "{term}");
    }
    // alentejo's three cells are marked, not zero, in each of the four
    // tables of figures.
    assert_eq!(
        page.matches(r#"<td class="suppressed" colspan="#).count(),
        3 * 4
    );
    assert!(page.contains("suppressed: fewer than 5 residents"));
    // Figures are for people: no raw float anywhere, full precision stays
    // in CSV and JSON.
    assert!(!page.contains(&(9.0_f64 / 75.0).to_string()));
    assert!(output::cells_csv(&report).contains(&(9.0_f64 / 75.0).to_string()));
    assert!(!page.contains("NaN"));
}

/// The text of the summary row named `label`, tags dropped.
fn summary_row(page: &str, label: &str) -> String {
    let start = page
        .find(&format!(r#"<tr><th scope="row">{label}<"#))
        .unwrap_or_else(|| panic!("no summary row {label}"));
    let row = &page[start..];
    let row = &row[..row.find("</tr>").unwrap()];
    // Tags out, sparklines' titles too.
    let mut text = String::new();
    let mut depth = 0;
    let mut in_title = false;
    for part in row.split_inclusive(['<', '>']) {
        if part.ends_with('<') {
            if depth == 0 && !in_title {
                text.push_str(part.trim_end_matches('<'));
                text.push(' ');
            }
            depth += 1;
        } else {
            depth -= 1;
            in_title = part.starts_with("title") || (in_title && !part.starts_with("/title"));
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_html_summary_shows_the_whole_range_its_trend_and_the_region_spread() {
    let (_dir, store, roster) = history();
    let report = report(&store, &roster);
    let page = html::render(&report);
    let summary = page.find("Summary of the whole range").unwrap();
    assert!(summary < page.find("<h2>Charts").unwrap());
    assert!(page.contains("<strong>7</strong> residents in 2 regions were enrolled for <strong>75</strong> resident-days"));
    // Whole range (all regions), W1 → W2, gangjin alone (alentejo withheld);
    // every figure worked out in every_metric_matches_the_hand_computation.
    for (label, expected) in [
        ("Residents enrolled", "7 6 → 6 6 gangjin only"),
        ("Resident-days enrolled", "75 34 → 41 61 gangjin only"),
        // 9/75; 5/34 → 4/41; gangjin 7/61.
        ("Active-day ratio", "12.0% 14.7% → 9.8% 11.5% gangjin only"),
        // 56/1800; 51/816 → 5/984; 32/1464.
        ("Data completeness", "3.1% 6.3% → 0.5% 2.2% gangjin only"),
        // 4/61; 3/27 → 1/34; 3/47.
        ("Check-in adherence", "6.6% 11.1% → 2.9% 6.4% gangjin only"),
        // 6 alerts; 3/34 → 3/41; 5/61, per 100.
        (
            "Alerts per 100 resident-days",
            "8.00 8.82 → 7.32 8.20 gangjin only",
        ),
        (
            "Median time to acknowledge",
            "1.0 min 1.0 min → 1.3 min 1.5 min gangjin only",
        ),
        (
            "90th-percentile time to acknowledge",
            "5.0 min 5.0 min → 2.0 min 5.0 min gangjin only",
        ),
        (
            "False-alarm share",
            "50.0% 0.0% → 100.0% 50.0% gangjin only",
        ),
        ("Satisfaction responses", "2 1 → 1 2 gangjin only"),
        (
            "Satisfaction mean",
            "4.50 of 5 4.00 of 5 → 5.00 of 5 4.50 of 5 gangjin only",
        ),
    ] {
        let row = summary_row(&page, label);
        assert!(row.ends_with(expected), "{label}: {row:?}");
    }
    // Which periods the trend compares and which region the spread leaves out.
    assert!(page.contains("the first period (week of 2026-03-23) → the last (week of 2026-03-30)"));
    assert!(page.contains("leaving out alentejo (suppressed: fewer than 5 residents)"));
}

#[test]
fn docs_reports_md_lists_every_definition_as_printed() {
    let doc = include_str!("../../../docs/REPORTS.md");
    for (term, text) in ondol_report::definitions::DEFINITIONS {
        assert!(
            doc.contains(&format!("- **{term}**: {text}")),
            "docs/REPORTS.md is missing or differs on {term}"
        );
    }
}
