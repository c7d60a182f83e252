//! The report computation over 1,000 residents × 730 days of rollups
//! (about 510,000 active resident-days and 48,000 alerts), monthly and by
//! region. Reading the rows from SQLite is not included.

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::ToSpan;
use jiff::civil::date;
use jiff::tz::TimeZone;
use ondol_model::ResidentId;
use ondol_model::roster::{AwayPeriod, CheckinPlan, Resident};
use ondol_report::{Granularity, PseudonymKey, compute};
use ondol_store::report_rows::{AlertFact, DayFact};

const RESIDENTS: usize = 1_000;
const DAYS: i64 = 730;

fn history() -> (Vec<Resident>, Vec<DayFact>, Vec<AlertFact>) {
    let start = date(2025, 1, 1);
    let day = |d: i64| start.checked_add(d.days()).unwrap_or(start);
    let zone = TimeZone::get("Europe/Lisbon").unwrap_or(TimeZone::UTC);
    let mut residents = Vec::new();
    let mut days = Vec::new();
    let mut alerts = Vec::new();
    for i in 0..RESIDENTS {
        let id = ResidentId::new(format!("r-{i:04}")).unwrap_or_else(|_| unreachable!());
        let from = (i as i64 * 7) % 200;
        residents.push(Resident {
            id: id.clone(),
            name: format!("Resident {i}"),
            timezone_name: "Europe/Lisbon".into(),
            timezone: zone.clone(),
            region: format!("region-{}", i % 5),
            enrolled_from: day(from),
            enrolled_until: None,
            caseworker: None,
            checkin: CheckinPlan::default(),
            away: vec![AwayPeriod {
                from: day(300 + (i as i64 % 50)),
                until: day(310 + (i as i64 % 50)),
                reason: None,
            }],
        });
        for d in from..DAYS {
            if (d + i as i64) % 10 < 7 {
                days.push(DayFact {
                    resident_id: id.clone(),
                    local_date: day(d),
                    active: true,
                    hours_with_data: ((d + i as i64) % 24) as u32 + 1,
                    checkin_done: (d + i as i64) % 3 != 0,
                    satisfaction_sum: if d % 30 == 0 { 4 } else { 0 },
                    satisfaction_count: u64::from(d % 30 == 0),
                });
            }
            if (d + i as i64) % 15 == 0 {
                alerts.push(AlertFact {
                    resident_id: id.clone(),
                    local_date: day(d),
                    rule: ["missed_checkin", "inactivity", "help_request"][(d % 3) as usize].into(),
                    seconds_to_ack: Some((d as u64 * 37) % 3600),
                    seconds_to_resolve: Some((d as u64 * 91) % 7200 + 60),
                    outcome: Some(
                        ["resident_ok", "false_alarm_device", "needed_help"][i % 3].into(),
                    ),
                });
            }
        }
    }
    (residents, days, alerts)
}

fn report(c: &mut Criterion) {
    let (residents, days, alerts) = history();
    let key = PseudonymKey::new(vec![9u8; 32]).unwrap_or_else(|_| unreachable!());
    let (from, to) = (date(2025, 1, 1), date(2026, 12, 31));
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    group.bench_function("1000_residents_730_days_monthly", |b| {
        b.iter(|| {
            compute(
                &residents,
                &days,
                &alerts,
                from,
                to,
                Granularity::Month,
                &key,
            )
            .map(|r| r.cells.len())
        })
    });
    group.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);
