//! Ingest workers on an external broker (Mosquitto 2 with persistence):
//! manual acks after commit, so a worker killed mid-stream loses nothing;
//! two workers in one share group store every reading exactly once; and
//! the split roles (`--role broker` + `--role ingest`) work together.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::services::{Mosquitto, OndolProcess, base_config};
use crate::support::{TEST_ROSTER, TestDevice, eventually, free_port, ms_ago, open_db};

const READY: &str = "ingest receiving from the external broker";

fn worker_config(dir: &Path, broker: &str, client_id: &str, extra: &str) -> String {
    let roster = dir.join("registry.toml");
    if !roster.exists() {
        std::fs::write(&roster, TEST_ROSTER).expect("roster");
    }
    // These tests are about delivery, not the per-device rate limit: one
    // test device sends thousands of messages back to back.
    format!(
        "{}[ingest]\nbroker = \"{broker}\"\nclient_id = \"{client_id}\"\nstats_interval = \"1h\"\ndevice_max_messages_per_minute = 1000000\ndevice_max_burst_messages = 1000000\n{extra}\n",
        base_config(free_port(), &dir.join("data"), &roster)
    )
}

fn stored_readings(dir: &Path) -> i64 {
    let path = dir.join("data").join("ondol.db");
    if !path.exists() {
        return 0;
    }
    open_db(&path)
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .unwrap_or(0)
}

/// A log without its terminal colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One reading message with its own timestamp.
fn message(i: i64) -> serde_json::Value {
    json!({
        "msg_id": format!("m-{i}"),
        "readings": [{"type": "steps", "value": i, "ts": ms_ago(60) + i}]
    })
}

/// The `ingest stopped` totals a worker logged: (accepted, duplicates).
fn totals(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("ingest stopped"))
        .unwrap_or_else(|| panic!("no 'ingest stopped' line in:\n{log}"));
    let number_after = |key: &str| -> u64 {
        let start = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
        line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("a number after {key} in {line}"))
    };
    (number_after("accepted="), number_after("duplicates="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_stream_loses_nothing() {
    let Some(broker) = Mosquitto::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // Small batches: the worker commits while it still holds received
    // messages; with automatic acks, a kill would lose those.
    let config = worker_config(
        dir.path(),
        &broker.url(),
        "worker-k",
        "batch_max_readings = 10\nbatch_max_delay = \"300ms\"",
    );
    let mut worker = OndolProcess::new(dir.path(), "worker", &config, &[]);
    worker.start(&["run", "--role", "ingest"], READY).await;
    assert!(
        plain(&worker.log()).contains("protocol=\"5\""),
        "Mosquitto speaks MQTT 5"
    );

    const TOTAL: i64 = 2000;
    let device = TestDevice::connect(broker.port, "gw-1").await;
    for i in 0..TOTAL {
        device.publish(message(i).to_string()).await;
    }
    eventually("the first batch to commit", || {
        (stored_readings(dir.path()) > 0).then_some(())
    })
    .await;
    worker.kill();
    let at_kill = stored_readings(dir.path());
    eprintln!("stored at the kill: {at_kill} of {TOTAL}");
    assert!(
        at_kill < TOTAL,
        "the kill came mid-stream ({at_kill} stored)"
    );

    worker
        .start(
            &["run", "--role", "ingest"],
            "connected to the external broker",
        )
        .await;
    eventually("every reading after the restart", || {
        (stored_readings(dir.path()) == TOTAL).then_some(())
    })
    .await;
    worker.terminate();
    assert_eq!(stored_readings(dir.path()), TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_share_group_store_each_reading_once() {
    let Some(broker) = Mosquitto::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut workers: Vec<OndolProcess> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|id| {
            let config = worker_config(dir.path(), &broker.url(), id, "share_group = \"ondol\"");
            OndolProcess::new(dir.path(), id, &config, &[])
        })
        .collect();
    for worker in &mut workers {
        worker.start(&["run", "--role", "ingest"], READY).await;
    }

    const PER_DEVICE: i64 = 100;
    let mut devices = Vec::new();
    for id in ["gw-1", "wr-1", "bt-2"] {
        devices.push(TestDevice::connect(broker.port, id).await);
    }
    for device in &devices {
        for i in 0..PER_DEVICE {
            device.publish(message(i).to_string()).await;
        }
    }
    let mut receipts: Vec<HashMap<String, serde_json::Value>> = vec![HashMap::new(); devices.len()];
    for (device, got) in devices.iter_mut().zip(receipts.iter_mut()) {
        for i in 0..PER_DEVICE {
            let id = format!("m-{i}");
            let receipt = device.receipt(&id).await;
            got.insert(id, receipt);
        }
    }
    for worker in &mut workers {
        worker.terminate();
    }
    for (device, got) in devices.iter_mut().zip(&receipts) {
        for (id, receipt) in got {
            assert_eq!(
                (receipt["accepted"].clone(), receipt["duplicates"].clone()),
                (json!(1), json!(0)),
                "{} {id}: {receipt}",
                device.id
            );
        }
        let late = device.drain_receipts();
        assert!(
            late.is_empty(),
            "a second receipt means a second delivery: {late:?}"
        );
    }
    let total = 3 * PER_DEVICE;
    assert_eq!(stored_readings(dir.path()), total);
    let (a, b) = (totals(&workers[0].log()), totals(&workers[1].log()));
    assert_eq!((a.1, b.1), (0, 0), "no message reached both workers");
    assert_eq!(a.0 + b.0, total as u64);
    assert!(a.0 > 0 && b.0 > 0, "both workers took a share: {a:?} {b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_process_and_an_ingest_process_work_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mqtt_port = free_port();
    let roster = dir.path().join("registry.toml");
    std::fs::write(&roster, TEST_ROSTER).expect("roster");
    let broker_config = base_config(mqtt_port, &dir.path().join("data"), &roster);
    // Remote workers sign in with the broker's ingest credentials.
    let password = (
        "ONDOL_MQTT_INGEST_PASSWORD",
        "e2e-worker-password-0123456789",
    );
    let mut broker = OndolProcess::new(dir.path(), "broker", &broker_config, &[password]);
    broker
        .start(&["run", "--role", "broker"], "ondol ready")
        .await;
    let config = worker_config(
        dir.path(),
        &format!("mqtt://127.0.0.1:{mqtt_port}"),
        "worker-1",
        "username = \"ondol-ingest\"\npassword_env = \"E2E_WORKER_PASSWORD\"",
    );
    let mut worker = OndolProcess::new(
        dir.path(),
        "worker",
        &config,
        &[("E2E_WORKER_PASSWORD", password.1)],
    );
    worker.start(&["run", "--role", "ingest"], READY).await;

    let mut device = TestDevice::connect(mqtt_port, "gw-1").await;
    let receipt = device.send(message(1)).await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    assert_eq!(stored_readings(dir.path()), 1);
    assert!(
        !broker.log().contains("ingest"),
        "the broker role runs no ingest"
    );
    worker.terminate();
    broker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_role_needs_an_external_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let roster = dir.path().join("registry.toml");
    std::fs::write(&roster, TEST_ROSTER).expect("roster");
    let config_path = dir.path().join("ondol.toml");
    std::fs::write(
        &config_path,
        base_config(free_port(), &dir.path().join("data"), &roster),
    )
    .expect("config");
    let output = std::process::Command::new(crate::support::binary())
        .args(["run", "--role", "ingest", "--config"])
        .arg(&config_path)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ingest.broker"), "{stderr}");
}

/// A number in the simulator's report, e.g. `accepted` in "(12 accepted,".
fn report_count(report: &str, what: &str) -> u64 {
    let end = report
        .find(&format!(" {what}"))
        .unwrap_or_else(|| panic!("{what} in {report}"));
    let digits: String = report[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ondol_run_with_the_simulator_resending_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mqtt_port = free_port();
    // Fifty synthetic homes: enough traffic that messages are in flight
    // when the process dies.
    let roster = dir.path().join("registry.toml");
    let config = base_config(mqtt_port, &dir.path().join("data"), &roster);
    let config_path = dir.path().join("roster-writer.toml");
    std::fs::write(&config_path, &config).expect("config");
    let written = std::process::Command::new(crate::support::binary())
        .args(["simulate", "--synthetic", "--homes", "50", "--write-roster"])
        .arg(&roster)
        .arg("--config")
        .arg(&config_path)
        .output()
        .expect("write the synthetic roster");
    assert!(written.status.success(), "{written:?}");
    let mut ondol = OndolProcess::new(dir.path(), "ondol", &config, &[]);
    ondol.start(&["run"], "ondol ready").await;
    let mut fleet = OndolProcess::new(dir.path(), "fleet", &config, &[]);
    fleet
        .start(
            &[
                "simulate",
                "--synthetic",
                "--homes",
                "50",
                "--broker",
                &format!("127.0.0.1:{mqtt_port}"),
                "--speed",
                "3600",
                "--malformed-rate",
                "0",
                "--duration",
                "12s",
            ],
            "simulating",
        )
        .await;

    eventually("readings to flow", || {
        (stored_readings(dir.path()) > 200).then_some(())
    })
    .await;
    ondol.kill();
    ondol.start(&["run"], "ondol ready").await;
    fleet.wait_exit().await;
    ondol.terminate();

    let log = fleet.log();
    let report = log
        .lines()
        .find(|l| l.contains("simulation finished"))
        .unwrap_or_else(|| panic!("no report in:\n{log}"));
    let accepted = report_count(report, "accepted");
    assert!(
        report_count(report, "reconnects") >= 1,
        "the fleet saw the kill: {report}"
    );
    assert_eq!(report_count(report, "readings dropped"), 0, "{report}");
    let db = open_db(&dir.path().join("data").join("ondol.db"));
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let stored = count("SELECT COUNT(*) FROM readings");
    // Every reading the fleet got a receipt for is stored...
    assert!(
        stored as u64 >= accepted,
        "{stored} stored, {accepted} receipted: {report}"
    );
    // ...and beyond those, only readings whose first receipt died with
    // the process (receipted as duplicates on resend) or that the run ended
    // still waiting for (one reading per message here).
    let beyond = report_count(report, "duplicates") + report_count(report, "unreceipted");
    assert!(
        stored as u64 <= accepted + beyond,
        "{stored} stored: {report}"
    );
    // ...and each is counted once, resends included.
    assert_eq!(
        count("SELECT COALESCE(SUM(readings), 0) FROM resident_days"),
        stored,
        "the rollups count every stored reading exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_while_devices_are_expected_raises_a_system_outage() {
    let Some(broker) = Mosquitto::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = worker_config(
        dir.path(),
        &broker.url(),
        "worker-w",
        "watchdog_silence = \"300ms\"",
    );
    let mut worker = OndolProcess::new(dir.path(), "worker", &config, &[]);
    worker.start(&["run", "--role", "ingest"], READY).await;
    eventually("the watchdog to raise the condition", || {
        let log = worker.log();
        (log.contains("system_outage") && log.contains("no_messages")).then_some(())
    })
    .await;

    let mut device = TestDevice::connect(broker.port, "gw-1").await;
    assert_eq!(device.send(message(1)).await["accepted"], 1);
    eventually("the condition to clear", || {
        worker
            .log()
            .contains("device messages arrive again")
            .then_some(())
    })
    .await;
    worker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reaches_an_mqtts_broker_with_a_client_certificate() {
    let Some((broker, tls_port)) = Mosquitto::start_with_tls().await else {
        return;
    };
    let certs = crate::services::tls_fixtures();
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = format!(
        "tls_ca_file = {:?}\ntls_client_cert_file = {:?}\ntls_client_key_file = {:?}",
        certs.join("ca.pem"),
        certs.join("client.pem"),
        certs.join("client.key"),
    );
    let config = worker_config(
        dir.path(),
        &format!("mqtts://127.0.0.1:{tls_port}"),
        "worker-tls",
        &tls,
    );
    let mut worker = OndolProcess::new(dir.path(), "worker", &config, &[]);
    worker.start(&["run", "--role", "ingest"], READY).await;

    // The device uses the broker's plain listener; the worker only TLS.
    let mut device = TestDevice::connect(broker.port, "gw-1").await;
    let receipt = device.send(message(7)).await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    assert_eq!(stored_readings(dir.path()), 1);
    worker.terminate();
}
