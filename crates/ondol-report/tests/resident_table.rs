//! The per-resident table and the rule of five: rows under pseudonyms when
//! the report covers at least five residents, withheld (and marked) below.

#![allow(clippy::unwrap_used)]

use jiff::civil::date;
use jiff::tz::TimeZone;

use ondol_model::ResidentId;
use ondol_model::roster::{CheckinPlan, Resident};
use ondol_report::{Granularity, PseudonymKey, compute, html, output};
use ondol_store::report_rows::DayFact;

fn residents(n: usize) -> Vec<Resident> {
    (0..n)
        .map(|i| Resident {
            id: ResidentId::new(format!("tbl-{i}")).unwrap(),
            name: format!("Table Person {i}"),
            timezone_name: "Asia/Seoul".into(),
            timezone: TimeZone::get("Asia/Seoul").unwrap(),
            // One region each: every region cell is below five.
            region: format!("region-{i}"),
            enrolled_from: date(2026, 1, 1),
            enrolled_until: None,
            caseworker: None,
            checkin: CheckinPlan::default(),
            away: Vec::new(),
        })
        .collect()
}

fn days(residents: &[Resident]) -> Vec<DayFact> {
    residents
        .iter()
        .map(|r| DayFact {
            resident_id: r.id.clone(),
            local_date: date(2026, 1, 2),
            active: true,
            hours_with_data: 3,
            checkin_done: true,
            satisfaction_sum: 0,
            satisfaction_count: 0,
        })
        .collect()
}

fn report(n: usize) -> ondol_report::Report {
    let residents = residents(n);
    compute(
        &residents,
        &days(&residents),
        &[],
        date(2026, 1, 1),
        date(2026, 1, 31),
        Granularity::Month,
        &PseudonymKey::new(b"resident table test key 32 bytes".to_vec()).unwrap(),
    )
    .unwrap()
}

#[test]
fn five_residents_get_pseudonymised_rows_even_where_every_region_is_suppressed() {
    let report = report(5);
    assert!(!report.residents_suppressed);
    assert_eq!(report.residents.len(), 5);
    assert!(
        report
            .cells
            .iter()
            .filter(|c| c.region != "all")
            .all(|c| c.suppressed)
    );
    // Rows name no region, period or id, so they cannot rebuild those cells.
    let csv = output::residents_csv(&report);
    assert_eq!(
        csv.lines().next().unwrap(),
        "pseudonym,resident_days_enrolled,active_day_ratio,data_completeness,checkin_adherence,alerts,satisfaction_responses"
    );
    for i in 0..5 {
        assert!(!csv.contains(&format!("region-{i}")));
        assert!(!csv.contains(&format!("tbl-{i}")));
    }
}

#[test]
fn fewer_than_five_residents_withhold_the_table_and_say_so() {
    let report = report(4);
    assert!(report.residents_suppressed);
    assert!(report.residents.is_empty());
    let whole = report
        .cells
        .iter()
        .find(|c| c.period == "all" && c.region == "all")
        .unwrap();
    assert!(whole.suppressed);
    assert_eq!(output::residents_csv(&report).lines().count(), 1);
    let json = output::json(&report).unwrap();
    assert!(json.contains("\"residents_suppressed\": true"), "{json}");
    let page = html::render(&report);
    assert!(page.contains("the report covers fewer than 5 residents"));
}
