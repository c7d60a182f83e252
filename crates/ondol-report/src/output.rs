//! CSV and JSON renderings of a [`Report`]. Suppressed cells keep their
//! row, with `suppressed` = `true` and every figure empty (CSV) or `null`
//! (JSON), so a withheld figure never reads as zero.

use std::fmt::Write as _;

use ondol_model::alert::{Outcome, Rule};

use crate::ReportError;
use crate::metrics::{Cell, Report};

pub fn json(report: &Report) -> Result<String, ReportError> {
    Ok(serde_json::to_string_pretty(report)?)
}

fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// The per period × region table, one header line then one line per cell.
pub fn cells_csv(report: &Report) -> String {
    let mut header = vec![
        "period",
        "from",
        "to",
        "region",
        "suppressed",
        "residents_enrolled",
        "resident_days_enrolled",
        "active_days",
        "active_day_ratio",
        "hours_with_data",
        "data_completeness",
        "checkins_expected",
        "checkins_done",
        "checkin_adherence",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for rule in Rule::ALL {
        header.push(format!("alerts_{rule}"));
        header.push(format!("alerts_per_100_resident_days_{rule}"));
    }
    header.extend(
        [
            "median_seconds_to_ack",
            "p90_seconds_to_ack",
            "median_seconds_to_resolve",
            "resolved",
        ]
        .map(String::from),
    );
    for outcome in Outcome::ALL {
        header.push(format!("outcome_{outcome}"));
    }
    header.extend(
        [
            "false_alarm_ratio",
            "satisfaction_responses",
            "satisfaction_mean",
        ]
        .map(String::from),
    );
    let mut out = header.join(",");
    out.push('\n');
    for cell in &report.cells {
        out.push_str(&cell_line(cell, header.len()));
        out.push('\n');
    }
    out
}

fn cell_line(cell: &Cell, columns: usize) -> String {
    let mut v = vec![
        field(&cell.period),
        cell.from.to_string(),
        cell.to.to_string(),
        field(&cell.region),
        cell.suppressed.to_string(),
    ];
    match &cell.figures {
        None => v.resize(columns, String::new()),
        Some(f) => {
            v.extend([
                f.residents_enrolled.to_string(),
                f.resident_days_enrolled.to_string(),
                f.active_days.to_string(),
                opt(f.active_day_ratio),
                f.hours_with_data.to_string(),
                opt(f.data_completeness),
                f.checkins_expected.to_string(),
                f.checkins_done.to_string(),
                opt(f.checkin_adherence),
            ]);
            for rule in Rule::ALL {
                v.push(opt(f.alerts.get(rule.as_str())));
                v.push(opt(f
                    .alerts_per_100_resident_days
                    .get(rule.as_str())
                    .copied()
                    .flatten()));
            }
            v.extend([
                opt(f.median_seconds_to_ack),
                opt(f.p90_seconds_to_ack),
                opt(f.median_seconds_to_resolve),
                f.resolved.to_string(),
            ]);
            for outcome in Outcome::ALL {
                v.push(opt(f.outcomes.get(outcome.as_str())));
            }
            v.extend([
                opt(f.false_alarm_ratio),
                f.satisfaction_responses.to_string(),
                opt(f.satisfaction_mean),
            ]);
        }
    }
    v.join(",")
}

/// The per-resident table under pseudonyms.
pub fn residents_csv(report: &Report) -> String {
    let mut out = String::from(
        "pseudonym,resident_days_enrolled,active_day_ratio,data_completeness,checkin_adherence,alerts,satisfaction_responses\n",
    );
    for r in &report.residents {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            field(&r.pseudonym),
            r.resident_days_enrolled,
            opt(r.active_day_ratio),
            opt(r.data_completeness),
            opt(r.checkin_adherence),
            r.alerts,
            r.satisfaction_responses
        );
    }
    out
}
