//! Properties of the computation over random histories: additive figures of
//! the periods add up to the whole range, suppression follows the resident
//! count, and pseudonyms depend on the key only.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::ToSpan;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;
use proptest::prelude::*;

use ondol_model::ResidentId;
use ondol_model::roster::{AwayPeriod, CheckinPlan, Resident};
use ondol_report::{Counts, Granularity, PseudonymKey, aggregate, compute};
use ondol_store::report_rows::{AlertFact, DayFact};

const BASE: Date = date(2026, 1, 20);
const SPAN: i64 = 60;

fn day(offset: i64) -> Date {
    BASE.checked_add(offset.days()).unwrap()
}

prop_compose! {
    fn resident(i: usize)(
        region in 0..2usize,
        start in 0..SPAN,
        length in proptest::option::of(0..SPAN),
        away in proptest::option::of((0..SPAN, 0..10i64)),
        window in any::<bool>(),
    ) -> Resident {
        let mut plan = CheckinPlan::default();
        if !window {
            plan.window = None;
        }
        Resident {
            id: ResidentId::new(format!("res-{i}")).unwrap(),
            name: format!("Name {i}"),
            timezone_name: "Europe/Lisbon".into(),
            timezone: TimeZone::get("Europe/Lisbon").unwrap(),
            region: ["north", "south"][region].into(),
            enrolled_from: day(start),
            enrolled_until: length.map(|l| day(start + l)),
            caseworker: None,
            checkin: plan,
            away: away
                .map(|(a, l)| vec![AwayPeriod { from: day(a), until: day(a + l), reason: None }])
                .unwrap_or_default(),
        }
    }
}

fn residents() -> impl Strategy<Value = Vec<Resident>> {
    (1..14usize).prop_flat_map(|n| (0..n).map(resident).collect::<Vec<_>>())
}

fn facts(n: usize) -> impl Strategy<Value = (Vec<DayFact>, Vec<AlertFact>)> {
    let day_fact = (
        0..n,
        -5..SPAN + 5,
        any::<bool>(),
        0..=24u32,
        any::<bool>(),
        0..3u64,
    )
        .prop_map(|(r, d, active, hours, done, sat)| DayFact {
            resident_id: ResidentId::new(format!("res-{r}")).unwrap(),
            local_date: day(d),
            active,
            hours_with_data: if active { hours } else { 0 },
            checkin_done: done,
            satisfaction_sum: sat * 4,
            satisfaction_count: sat,
        });
    let alert = (
        0..n,
        -5..SPAN + 5,
        0..3usize,
        proptest::option::of(0..5000u64),
        proptest::option::of((0..9000u64, 0..3usize)),
    )
        .prop_map(|(r, d, rule, ack, res)| AlertFact {
            resident_id: ResidentId::new(format!("res-{r}")).unwrap(),
            local_date: day(d),
            rule: ["missed_checkin", "inactivity", "help_request"][rule].into(),
            seconds_to_ack: ack,
            seconds_to_resolve: res.map(|(s, _)| s),
            outcome: res.map(|(_, o)| {
                ["resident_ok", "false_alarm_device", "false_alarm_behaviour"][o].into()
            }),
        });
    (
        proptest::collection::vec(day_fact, 0..200),
        proptest::collection::vec(alert, 0..40),
    )
        .prop_map(|(mut days, alerts)| {
            // One rollup row per resident-day, as in the store.
            let mut seen = std::collections::BTreeSet::new();
            days.retain(|d| seen.insert((d.resident_id.clone(), d.local_date)));
            (days, alerts)
        })
}

/// The additive part of `Counts`, summable over periods.
fn additive(c: &Counts) -> Vec<u64> {
    let mut v = vec![
        c.resident_days_enrolled,
        c.active_days,
        c.hours_with_data,
        c.checkins_expected,
        c.checkins_done,
        c.seconds_to_ack.len() as u64,
        c.seconds_to_resolve.len() as u64,
        c.satisfaction_sum,
        c.satisfaction_count,
    ];
    for rule in ["missed_checkin", "inactivity", "help_request"] {
        v.push(c.alerts_by_rule.get(rule).copied().unwrap_or(0));
    }
    for o in ["resident_ok", "false_alarm_device", "false_alarm_behaviour"] {
        v.push(c.outcomes.get(o).copied().unwrap_or(0));
    }
    v
}

fn history() -> impl Strategy<Value = (Vec<Resident>, Vec<DayFact>, Vec<AlertFact>)> {
    residents().prop_flat_map(|rs| {
        let n = rs.len();
        (Just(rs), facts(n)).prop_map(|(rs, (d, a))| (rs, d, a))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn additive_figures_of_the_periods_sum_to_the_whole_range(
        (roster, days, alerts) in history(),
        from in 0..SPAN / 2,
        len in 0..SPAN,
    ) {
        let (from, to) = (day(from), day(from + len));
        for g in [Granularity::Day, Granularity::Week, Granularity::Month] {
            let agg = aggregate(&roster, &days, &alerts, from, to, g);
            let mut sums: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
            for ((period, region), counts) in &agg.cells {
                if period.is_some() {
                    let s = sums.entry(region.clone()).or_insert_with(|| vec![0; additive(counts).len()]);
                    for (acc, x) in s.iter_mut().zip(additive(counts)) {
                        *acc += x;
                    }
                }
            }
            for ((period, region), counts) in &agg.cells {
                if period.is_none() {
                    prop_assert_eq!(sums.get(region), Some(&additive(counts)), "{:?} {:?}", g, region);
                }
            }
            // Regions add up to all regions, and residents to the total.
            let per_resident_days: u64 = agg.per_resident.values().map(|c| c.resident_days_enrolled).sum();
            let total = agg.cells.get(&(None, None)).map_or(0, |c| c.resident_days_enrolled);
            prop_assert_eq!(per_resident_days, total);
        }
    }

    #[test]
    fn cells_with_fewer_than_five_residents_are_suppressed(
        (roster, days, alerts) in history(),
    ) {
        let key = PseudonymKey::new(vec![7u8; 32]).unwrap();
        let (from, to) = (day(0), day(SPAN));
        let agg = aggregate(&roster, &days, &alerts, from, to, Granularity::Week);
        let report = compute(&roster, &days, &alerts, from, to, Granularity::Week, &key).unwrap();
        prop_assert_eq!(report.cells.len(), agg.cells.len());
        for (cell, counts) in report.cells.iter().zip(agg.cells.values()) {
            let few = counts.residents.len() < 5;
            prop_assert_eq!(cell.suppressed, few);
            prop_assert_eq!(cell.figures.is_none(), few);
            if let Some(f) = &cell.figures {
                prop_assert!(f.residents_enrolled >= 5);
            }
        }
    }

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_between_keys(
        id in "[a-z0-9-]{1,20}",
        a in proptest::collection::vec(any::<u8>(), 16..64),
        b in proptest::collection::vec(any::<u8>(), 16..64),
    ) {
        prop_assume!(a != b);
        let id = ResidentId::new(id).unwrap();
        let ka = PseudonymKey::new(a.clone()).unwrap();
        let kb = PseudonymKey::new(b).unwrap();
        prop_assert_eq!(ka.pseudonym(&id), PseudonymKey::new(a).unwrap().pseudonym(&id));
        prop_assert_ne!(ka.pseudonym(&id), kb.pseudonym(&id));
    }
}
