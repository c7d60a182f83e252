//! Our own outage end to end: `ondol run` on an external Mosquitto that is
//! stopped. Supervisors get exactly one `system_outage` (at a real webhook
//! receiver, while the broker is down); the resident's inactivity deadline
//! that passes during the outage is held, and the motion the device kept
//! and sends once the broker is back prevents the alert.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::services::{Mosquitto, OndolProcess, base_config};
use crate::support::{TestDevice, eventually, free_port};

const READY: &str = "ingest receiving from the external broker";

const ROSTER: &str = r#"
[[residents]]
id = "r-o"
name = "Test Resident O"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-o"
checkin = { window = "none" }

[[devices]]
id = "gw-o"
resident = "r-o"
kind = "gateway"

[[staff]]
id = "cw-o"
name = "Test Caseworker"
role = "caseworker"

[[staff]]
id = "sup-o"
name = "Test Supervisor"
role = "supervisor"
region = "gangjin"
"#;

/// Inactivity tiers short enough that the caution deadline passes while
/// the broker is down.
const CAUTION: Duration = Duration::from_secs(20);

type Seen = Arc<Mutex<Vec<Value>>>;

async fn hook(State(seen): State<Seen>, body: Bytes) -> axum::http::StatusCode {
    if let Ok(event) = serde_json::from_slice(&body) {
        seen.lock().unwrap().push(event);
    }
    axum::http::StatusCode::NO_CONTENT
}

fn system_events(seen: &Seen) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|e| e["alert"]["rule"] == "system_outage")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_external_broker_is_one_system_alert_and_holds_resident_alerts() {
    let Some(mut broker) = Mosquitto::start().await else {
        return;
    };
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("registry.toml");
    std::fs::write(&roster, ROSTER).unwrap();
    let config = format!(
        "{}[ingest]\nbroker = \"{}\"\nclient_id = \"ondol-outage\"\n\
         [alerting]\ngrace = \"4s\"\ninactivity_caution = \"{}s\"\ninactivity_alarm = \"21s\"\ninactivity_danger = \"22s\"\n\
         device_silent_after = \"1h\"\nwebhook_url = \"{url}\"\nwebhook_secret_env = \"ONDOL_E2E_OUTAGE_SECRET\"\n",
        base_config(free_port(), &dir.path().join("data"), &roster),
        broker.url(),
        CAUTION.as_secs(),
    );
    let mut ondol = OndolProcess::new(
        dir.path(),
        "ondol",
        &config,
        &[("ONDOL_E2E_OUTAGE_SECRET", "outage-secret")],
    );
    ondol.start(&["run"], READY).await;

    // The resident moves; the caution deadline is CAUTION after this.
    let mut device = TestDevice::connect(broker.port, "gw-o").await;
    let moved = jiff::Timestamp::now();
    let receipt = device
        .send(json!({"msg_id": "m-1", "readings": [{"type": "motion", "value": 1, "ts": moved.as_millisecond()}]}))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    drop(device);

    broker.stop();
    let opened = eventually("the system alert at the webhook", || {
        system_events(&seen).into_iter().next()
    })
    .await;
    assert_eq!(opened["event"], "opened");
    assert_eq!(opened["alert"]["cause"], "broker_unreachable");
    assert_eq!(opened["to"], Value::Null);

    // The inactivity deadline passes while Ondol cannot see the resident.
    let deadline = moved + jiff::SignedDuration::try_from(CAUTION).unwrap();
    let wait = deadline
        .duration_since(jiff::Timestamp::now())
        .checked_add(jiff::SignedDuration::from_secs(1))
        .unwrap();
    if wait.is_positive() {
        tokio::time::sleep(Duration::try_from(wait).unwrap()).await;
    }

    // The broker comes back; the device sends the motion it kept, measured
    // just before the deadline.
    broker.restart().await;
    // A publish nobody subscribes to is dropped: wait for ingest to be back.
    eventually("ingest to reconnect", || {
        (ondol.log().matches(READY).count() >= 2).then_some(())
    })
    .await;
    let mut device = TestDevice::connect(broker.port, "gw-o").await;
    let kept = deadline - jiff::SignedDuration::from_secs(1);
    let receipt = device
        .send(json!({"msg_id": "m-2", "readings": [{"type": "motion", "value": 1, "ts": kept.as_millisecond()}]}))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    // The grace period ends: the system alert closes, the held deadline
    // is evaluated with the late motion and raises nothing.
    let db = dir.path().join("data").join("ondol.db");
    eventually("the system alert to be resolved", || {
        let db = crate::support::open_db(&db);
        let resolved: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM alerts WHERE rule = 'system_outage' AND status = 'resolved'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (resolved == 1).then_some(())
    })
    .await;
    let db = crate::support::open_db(&db);
    let alerts: Vec<(String, String)> = db
        .prepare("SELECT rule, cause FROM alerts ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        alerts,
        vec![("system_outage".to_owned(), "broker_unreachable".to_owned())],
        "{}",
        ondol.log()
    );
    let opened: Vec<_> = system_events(&seen)
        .into_iter()
        .filter(|e| e["event"] == "opened")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    ondol.terminate();
}
