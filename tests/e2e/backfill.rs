//! `ondol simulate backfill` then `ondol report utilisation`: the CLI writes
//! history into a new store, the report counts it, a rerun doubles nothing
//! and another history on top is refused.

use std::path::Path;

use serde_json::Value;

use crate::support::{ondol_with_config, open_db};

fn whole_range(report: &Path) -> Value {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["period"] == "all" && c["region"] == "all")
        .unwrap()["figures"]
        .clone()
}

#[test]
fn backfilled_history_shows_in_the_report_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ondol.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("[storage]\ndata_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let backfill = [
        "simulate",
        "backfill",
        "--residents",
        "8",
        "--days",
        "90",
        "--until",
        "2026-03-31",
        "--seed",
        "11",
    ];
    let (ok, stderr) = ondol_with_config(&config, &backfill);
    assert!(ok, "{stderr}");
    let db = open_db(&data.join("ondol.db"));
    let count = |sql: &str| db.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
    let readings = count("SELECT count(*) FROM readings");
    let alerts = count("SELECT count(*) FROM alerts");
    assert!(readings > 8 * 90 * 10, "{readings} readings");
    assert!(alerts > 0);
    assert_eq!(
        count("SELECT sum(readings) FROM resident_days"),
        readings,
        "the rollups count every stored reading"
    );
    // History pages nobody.
    assert_eq!(count("SELECT count(*) FROM notification_outbox"), 0);
    assert_eq!(
        count("SELECT count(*) FROM alerts WHERE status <> 'resolved'"),
        0
    );

    let out = dir.path().join("report.json");
    let report = [
        "report",
        "utilisation",
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-31",
        "--format",
        "json",
        "--out",
    ];
    let mut args: Vec<&str> = report.to_vec();
    let out_text = out.display().to_string();
    args.push(&out_text);
    let (ok, stderr) = ondol_with_config(&config, &args);
    assert!(ok, "{stderr}");
    let figures = whole_range(&out);
    assert_eq!(figures["residents_enrolled"], 8);
    let alert_total: i64 = figures["alerts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert_eq!(alert_total, alerts);
    assert_eq!(figures["resolved"], alerts);
    assert!(figures["active_days"].as_i64().unwrap() > 0);

    // The same backfill again: nothing new, the same report.
    let (ok, stderr) = ondol_with_config(&config, &backfill);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("{readings} readings (0 new)")),
        "{stderr}"
    );
    assert_eq!(count("SELECT count(*) FROM readings"), readings);
    assert_eq!(count("SELECT count(*) FROM alerts"), alerts);
    let (ok, stderr) = ondol_with_config(&config, &args);
    assert!(ok, "{stderr}");
    assert_eq!(whole_range(&out), figures);

    // Another history on top of this one is refused.
    let mut other = backfill.to_vec();
    let last = other.len() - 1;
    other[last] = "12";
    let (ok, stderr) = ondol_with_config(&config, &other);
    assert!(!ok);
    assert!(stderr.contains("holds another backfill"), "{stderr}");
    assert_eq!(count("SELECT count(*) FROM readings"), readings);
}
