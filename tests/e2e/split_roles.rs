//! Ondol split into processes that meet only through the store: two
//! `--role ingest` workers in one share group on Mosquitto and one
//! `--role alerting,api` process. Alerting learns what either worker
//! committed from the store's alerting feed: an active resident stays
//! quiet, a missed check-in pages once, a help press reaches the
//! caseworker within seconds, and a kill -9 of alerting mid-stream loses
//! nothing and raises nothing twice. A second alerting process is refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;

use crate::alerting::{StaffApp, window_ending_soon};
use crate::services::{Mosquitto, OndolProcess, base_config};
use crate::support::{TestDevice, binary, free_port, http_base_in, open_db};

const CW_TOKEN: &str = "e2e-split-caseworker-token-0123456789";
const WORKER_READY: &str = "ingest receiving from the external broker";
/// Devices send this often; a device is silent after 20 s without data.
const EVERY: Duration = Duration::from_secs(2);

fn roster(zone: &str, window: &str) -> String {
    let resident = |id: &str, extra: &str| {
        format!(
            "[[residents]]\nid = \"{id}\"\nname = \"Split Test {id}\"\ntimezone = \"{zone}\"\nregion = \"gangjin\"\nenrolled_from = \"2026-01-01\"\ncaseworker = \"cw-a\"\n{extra}\n"
        )
    };
    let device = |id: &str, resident: &str, kind: &str| {
        format!("[[devices]]\nid = \"{id}\"\nresident = \"{resident}\"\nkind = \"{kind}\"\n\n")
    };
    [
        // Active, with two devices whose messages both workers take.
        resident("r-1", ""),
        device("gw-1", "r-1", "gateway"),
        device("wr-1", "r-1", "wearable"),
        // Moves about but never checks in.
        resident("r-2", &format!("checkin = {{ window = \"{window}\" }}")),
        device("gw-2", "r-2", "gateway"),
        // Presses help while alerting runs.
        resident("r-3", ""),
        device("gw-3", "r-3", "gateway"),
        // Presses help while alerting is down.
        resident("r-4", ""),
        device("gw-4", "r-4", "gateway"),
        "[[staff]]\nid = \"cw-a\"\nname = \"Split Caseworker\"\nrole = \"caseworker\"\ntoken_env = \"ONDOL_E2E_SPLIT_CW\"\n".to_owned(),
    ]
    .concat()
}

/// One config file for every process, as a deployment shares one; each
/// process gets its own client id.
fn config(dir: &std::path::Path, broker: &str, client_id: &str) -> String {
    format!(
        "{}[ingest]\nbroker = \"{broker}\"\nclient_id = \"{client_id}\"\nshare_group = \"ondol\"\nstats_interval = \"1h\"\n\
         [alerting]\ngrace = \"0s\"\ndevice_silent_after = \"20s\"\n",
        base_config(free_port(), &dir.join("data"), &dir.join("registry.toml"))
    )
}

fn count(dir: &std::path::Path, sql: &str) -> i64 {
    open_db(&dir.join("data").join("ondol.db"))
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_workers_and_one_alerting_process_meet_through_the_store() {
    let Some(broker) = Mosquitto::start().await else {
        return;
    };
    let (zone, window) = ["Asia/Seoul", "Europe/Lisbon"]
        .into_iter()
        .find_map(|zone| window_ending_soon(zone).map(|w| (zone, w)))
        .expect("one of two zones nine hours apart is not near midnight");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("registry.toml"), roster(zone, &window)).expect("roster");
    let env = [("ONDOL_E2E_SPLIT_CW", CW_TOKEN)];
    let mut workers: Vec<OndolProcess> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|id| OndolProcess::new(dir.path(), id, &config(dir.path(), &broker.url(), id), &env))
        .collect();
    for worker in &mut workers {
        worker
            .start(&["run", "--role", "ingest"], WORKER_READY)
            .await;
    }
    let alerting_config = config(dir.path(), &broker.url(), "alerting-1");
    let mut alerting = OndolProcess::new(dir.path(), "alerting", &alerting_config, &env);
    alerting
        .start(&["run", "--role", "alerting,api"], "ondol ready")
        .await;
    let mut caseworker = StaffApp::connect(broker.port, "cw-a", CW_TOKEN).await;

    let mut devices = Vec::new();
    for id in ["gw-1", "wr-1", "gw-2", "gw-3", "gw-4"] {
        devices.push(TestDevice::connect(broker.port, id).await);
    }
    let mut sent = 0_i64;
    let mut round = 0_u32;
    // A few rounds of everyone active, then r-3 presses help.
    for _ in 0..3 {
        sent += send_round(&devices, round).await;
        round += 1;
        tokio::time::sleep(EVERY).await;
    }
    let pressed = Instant::now();
    devices[3].publish(help("help-3")).await;
    sent += 1;
    let opened = caseworker
        .next("r-3's help request", |e| {
            e["event"] == "opened" && e["alert"]["resident_id"] == "r-3"
        })
        .await;
    let took = pressed.elapsed();
    eprintln!("help press to the caseworker's app through a worker and the store: {took:?}");
    assert_eq!(opened["alert"]["rule"], "help_request");
    assert!(
        took < Duration::from_secs(10),
        "a help press took {took:?} to reach the caseworker"
    );

    // Alerting dies mid-stream; data keeps arriving, and r-4 presses help.
    sent += send_round(&devices, round).await;
    round += 1;
    alerting.kill();
    for i in 0..4 {
        sent += send_round(&devices, round).await;
        round += 1;
        if i == 1 {
            devices[4].publish(help("help-4")).await;
            sent += 1;
        }
        tokio::time::sleep(EVERY).await;
    }
    // With alerting down, the workers show the feed waiting: the gauge an
    // operator alerts on, since no alerting process can page about itself.
    let (_, metrics) = get(&format!("{}/metrics", http_base_in(&workers[0].log()))).await;
    let waited: f64 = metrics
        .lines()
        .find(|l| l.starts_with("ondol_alerting_feed_oldest_age_seconds"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no feed age gauge in:\n{metrics}"));
    assert!(waited >= 2.0, "the oldest feed row waited {waited} s");
    // The restart takes the lease at once: its holder's pid is gone.
    alerting
        .start(&["run", "--role", "alerting,api"], "ondol ready")
        .await;
    let opened = caseworker
        .next("r-4's help request, pressed while alerting was down", |e| {
            e["event"] == "opened" && e["alert"]["resident_id"] == "r-4"
        })
        .await;
    assert_eq!(opened["alert"]["rule"], "help_request");

    // A second alerting process against the same store is refused, naming
    // the holder.
    let second = OndolProcess::new(
        dir.path(),
        "alerting-2",
        &config(dir.path(), &broker.url(), "alerting-2"),
        &env,
    );
    let mut child = std::process::Command::new(binary())
        .args(["run", "--role", "alerting", "--config"])
        .arg(&second.config_path)
        .env("ONDOL_E2E_SPLIT_CW", CW_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second alerting process");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("a second alerting process kept running");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "the second alerting process must fail");
    assert!(
        stderr.contains("another alerting process runs against this store: alerting (pid"),
        "{stderr}"
    );

    // Everyone keeps moving until r-2's check-in window has closed and its
    // alert is out.
    let waiting = tokio::spawn(async move {
        let missed = caseworker
            .next("r-2's missed check-in", |e| {
                e["event"] == "opened" && e["alert"]["resident_id"] == "r-2"
            })
            .await;
        (caseworker, missed)
    });
    while !waiting.is_finished() {
        sent += send_round(&devices, round).await;
        round += 1;
        tokio::time::sleep(EVERY).await;
    }
    let (mut caseworker, missed) = waiting.await.expect("the missed check-in");
    assert_eq!(missed["alert"]["rule"], "missed_checkin");
    // A few more rounds, so a late duplicate would show.
    for _ in 0..3 {
        sent += send_round(&devices, round).await;
        round += 1;
        tokio::time::sleep(EVERY).await;
    }
    let late: Vec<_> = caseworker
        .received()
        .into_iter()
        .filter(|e| e["event"] == "opened")
        .collect();
    assert!(late.is_empty(), "nothing else was raised: {late:?}");

    // Every reading stored once, whichever worker took it, and the feed
    // drained by alerting.
    let dir_path = dir.path().to_path_buf();
    crate::support::eventually("every reading stored and the feed applied", || {
        (count(&dir_path, "SELECT COUNT(*) FROM readings") == sent
            && count(&dir_path, "SELECT COUNT(*) FROM alerting_feed") == 0)
            .then_some(())
    })
    .await;
    let alerts = |sql_where: &str| {
        count(
            dir.path(),
            &format!("SELECT COUNT(*) FROM alerts WHERE {sql_where}"),
        )
    };
    assert_eq!(
        alerts("subject = 'resident:r-1' OR subject LIKE 'device:%'"),
        0,
        "the active resident and every device stayed quiet"
    );
    assert_eq!(alerts("rule = 'missed_checkin'"), 1);
    assert_eq!(
        alerts("rule = 'help_request' AND subject = 'resident:r-3'"),
        1
    );
    assert_eq!(
        alerts("rule = 'help_request' AND subject = 'resident:r-4'"),
        1
    );
    assert_eq!(alerts("rule = 'system_outage'"), 0, "no outage of ours");

    // Every role answers health checks and exports its metrics.
    for (process, metric) in [
        (&workers[0], "ondol_ingest_readings_accepted_total"),
        (&workers[1], "ondol_ingest_readings_accepted_total"),
        (&alerting, "ondol_alerting_feed_lag_seconds"),
    ] {
        let base = http_base_in(&process.log());
        assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
        assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
        let (status, metrics) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        let accepted: f64 = metrics
            .lines()
            .find(|l| l.starts_with(metric) && !l.contains("_bucket"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {metric} in:\n{metrics}"));
        assert!(accepted > 0.0, "{metric} = {accepted}");
    }
    // The API runs beside alerting; the workers serve no API.
    let base = http_base_in(&workers[0].log());
    assert_eq!(get(&format!("{base}/api/v1/alerts")).await.0, 404);
    alerting.terminate();
    for worker in &mut workers {
        worker.terminate();
    }
}

/// Every device sends one motion reading; returns how many were sent.
async fn send_round(devices: &[TestDevice], round: u32) -> i64 {
    for device in devices {
        let msg = json!({
            "msg_id": format!("{}-{round}", device.id),
            "readings": [{"type": "motion", "value": 1, "ts": Timestamp::now().as_millisecond()}]
        });
        device.publish(msg.to_string()).await;
    }
    devices.len() as i64
}

/// A help press.
fn help(msg_id: &str) -> String {
    json!({
        "msg_id": msg_id,
        "readings": [{"type": "checkin", "value": "help", "ts": Timestamp::now().as_millisecond()}]
    })
    .to_string()
}
