//! `ondol report utilisation` against a real server's store: readings sent
//! over MQTT show up in the report, under pseudonyms only.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{TestServer, binary, ms_ago};

fn roster() -> String {
    let mut text = String::new();
    for i in 1..=6 {
        text.push_str(&format!(
            "[[residents]]\nid = \"rep-{i}\"\nname = \"Reporting Person {i}\"\ntimezone = \"Europe/Lisbon\"\nregion = \"alentejo\"\nenrolled_from = \"2026-01-01\"\n\n[[devices]]\nid = \"rep-gw-{i}\"\nresident = \"rep-{i}\"\nkind = \"gateway\"\n\n"
        ));
    }
    text
}

fn report(server: &TestServer, format: &str, out: &Path, key: Option<&str>) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let (from, to) = (
        today.yesterday().unwrap().to_string(),
        today.tomorrow().unwrap().to_string(),
    );
    let mut command = Command::new(binary());
    command
        .args(["report", "utilisation", "--from", &from, "--to", &to])
        .args(["--granularity", "day", "--by", "region", "--format", format])
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(&server.config_path)
        .env_remove("ONDOL_PSEUDONYM_KEY");
    if let Some(key) = key {
        command.env("ONDOL_PSEUDONYM_KEY", key);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_stored_readings_under_pseudonyms_only() {
    let server = TestServer::start_custom(&roster(), "", &["run"]).await;
    let mut device = server.device("rep-gw-1").await;
    let receipt = device
        .send(json!({
            "msg_id": "rep-m-1",
            "readings": [{"type": "heart_rate", "value": 72, "ts": ms_ago(1)}]
        }))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    let out = server.dir.path().join("report.json");
    let text = report(&server, "json", &out, None);
    let json: Value = serde_json::from_str(&text).unwrap();
    let whole = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["period"] == "all" && c["region"] == "all")
        .unwrap();
    assert_eq!(whole["suppressed"], false);
    // Six residents enrolled on each of the three days.
    assert_eq!(whole["figures"]["residents_enrolled"], 6);
    assert_eq!(whole["figures"]["resident_days_enrolled"], 18);
    assert_eq!(whole["figures"]["active_days"], 1);
    let pseudonyms: Vec<Value> = json["residents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pseudonym"].clone())
        .collect();
    assert_eq!(pseudonyms.len(), 6);

    // The key file was created owner-only in the data dir.
    let key_file = server.dir.path().join("data/pseudonym.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let csv_out = server.dir.path().join("report.csv");
    let csv = report(&server, "csv", &csv_out, None);
    let residents_csv =
        std::fs::read_to_string(server.dir.path().join("report.residents.csv")).unwrap();
    let page = report(
        &server,
        "html",
        &server.dir.path().join("report.html"),
        None,
    );
    assert!(page.contains("<svg "), "{page}");
    for text in [&text, &csv, &residents_csv, &page] {
        for i in 1..=6 {
            assert!(!text.contains(&format!("rep-{i}")), "id rep-{i} leaked");
            assert!(!text.contains(&format!("Reporting Person {i}")));
        }
    }
    // Same key, same pseudonyms; another key, other pseudonyms.
    for p in &pseudonyms {
        assert!(residents_csv.contains(p.as_str().unwrap()));
    }
    let other = report(
        &server,
        "json",
        &server.dir.path().join("other.json"),
        Some("another deployment's secret key"),
    );
    for p in &pseudonyms {
        assert!(!other.contains(p.as_str().unwrap()));
    }
}
