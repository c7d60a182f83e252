//! Our own outage end to end: `ondol run` on an external Mosquitto that is
//! stopped. Supervisors get exactly one `system_outage` (at a real webhook
//! receiver, while the broker is down); the resident's inactivity deadline
//! that passes during the outage is held, and the motion the device kept
//! and sends once the broker is back prevents the alert. The system alert's
//! MQTT notification is not counted delivered while the broker is down; it
//! is retried and reaches a supervisor's app once when the broker is back.
//!
//! Also: alert notifications over `mqtts://` with ingest's TLS settings,
//! counted delivered on the broker's PUBACK; and roster changes followed
//! without an embedded broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::services::{Mosquitto, OndolProcess, base_config};
use crate::support::{PATIENCE, TestDevice, eventually, free_port, webhook_receiver};

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
/// the broker is down, and longer than ingest may take to reconnect (its
/// backoff reaches 30 s) plus the grace period, so the late motion keeps
/// the resident inside it when the hold ends.
const CAUTION: Duration = Duration::from_secs(40);

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
    let Some(mut broker) = Mosquitto::start_restartable().await else {
        return;
    };
    let seen: Seen = Arc::default();
    let url = webhook_receiver(hook, seen.clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("registry.toml");
    std::fs::write(&roster, ROSTER).unwrap();
    let config = format!(
        "{}[ingest]\nbroker = \"{}\"\nclient_id = \"ondol-outage\"\n\
         [alerting]\ngrace = \"4s\"\ninactivity_caution = \"{}s\"\ninactivity_alarm = \"1h\"\ninactivity_danger = \"2h\"\n\
         device_silent_after = \"1h\"\nretry_max_delay = \"2s\"\nwebhook_url = \"{url}\"\nwebhook_secret_env = \"ONDOL_E2E_OUTAGE_SECRET\"\n",
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
    // A supervisor's app with a persistent session on the broker.
    let mut supervisor = App::connect(broker.port, "sup-o-app", "ondol/v1/system/alerts").await;

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
    let key = format!("{}:mqtt", opened["idempotency_key"].as_str().unwrap());
    let db = dir.path().join("data").join("ondol.db");
    let outbox = |db: &std::path::Path| -> (i64, Option<i64>) {
        crate::support::open_db(db)
            .query_row(
                "SELECT attempts, delivered_ms FROM notification_outbox WHERE idempotency_key = ?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    // Tried, but not delivered: no broker acknowledged it.
    eventually("an attempt to publish the system alert", || {
        (outbox(&db).0 >= 1).then_some(())
    })
    .await;
    assert_eq!(outbox(&db).1, None, "counted delivered without a PUBACK");

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
    // just before.
    let kept = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    broker.restart().await;
    // A publish nobody subscribes to is dropped: wait for ingest to be back.
    eventually("ingest to reconnect", || {
        (ondol.log().matches(READY).count() >= 2).then_some(())
    })
    .await;
    let mut device = TestDevice::connect(broker.port, "gw-o").await;
    let receipt = device
        .send(json!({"msg_id": "m-2", "readings": [{"type": "motion", "value": 1, "ts": kept.as_millisecond()}]}))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    // Retried once the broker is back: delivered, and the app gets it.
    eventually("the system alert to be delivered over MQTT", || {
        outbox(&db).1.map(|_| ())
    })
    .await;
    let got = supervisor.next().await;
    assert_eq!(got["idempotency_key"], opened["idempotency_key"]);

    // The grace period ends: the system alert closes, the held deadline
    // is evaluated with the late motion and raises nothing.
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
    // Whoever was paged hears the end: the supervisor's app gets the
    // system alert's closing event.
    let ended = supervisor.next().await;
    assert_eq!(ended["event"], "resolved", "{ended}");
    assert_eq!(ended["alert"]["id"], got["alert"]["id"]);
    assert_eq!(ended["alert"]["outcome"], "cleared_by_resident");
    ondol.terminate();
    // Delivered once each: nothing else reached the app.
    assert!(supervisor.events.try_recv().is_err(), "a second delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_notifications_reach_an_mqtts_broker_with_ingest_tls_settings() {
    let Some((broker, tls_port)) = Mosquitto::start_with_tls().await else {
        return;
    };
    let certs = crate::services::tls_fixtures();
    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("registry.toml");
    std::fs::write(&roster, ROSTER).unwrap();
    let config = format!(
        "{}[ingest]\nbroker = \"mqtts://127.0.0.1:{tls_port}\"\nclient_id = \"ondol-tls\"\n\
         tls_ca_file = {:?}\ntls_client_cert_file = {:?}\ntls_client_key_file = {:?}\n\
         [alerting]\ngrace = \"0s\"\ndevice_silent_after = \"1h\"\n",
        base_config(free_port(), &dir.path().join("data"), &roster),
        certs.join("ca.pem"),
        certs.join("client.pem"),
        certs.join("client.key"),
    );
    let mut ondol = OndolProcess::new(dir.path(), "ondol", &config, &[]);
    ondol.start(&["run"], READY).await;
    // The caseworker's app and the device use the plain listener; Ondol
    // only TLS.
    let mut caseworker =
        App::connect(broker.port, "cw-o-app", "ondol/v1/caseworkers/cw-o/alerts").await;
    let mut device = TestDevice::connect(broker.port, "gw-o").await;
    let receipt = device
        .send(json!({"msg_id": "h-1", "readings": [{"type": "checkin", "value": "help"}]}))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    let event = caseworker.next().await;
    assert_eq!(event["event"], "opened");
    assert_eq!(event["alert"]["rule"], "help_request");
    let db = dir.path().join("data").join("ondol.db");
    eventually("the notification to count as delivered", || {
        let delivered: i64 = crate::support::open_db(&db)
            .query_row(
                "SELECT COUNT(*) FROM notification_outbox WHERE delivered_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (delivered == 1).then_some(())
    })
    .await;

    // Without an embedded broker, roster changes are still followed.
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer.busy_timeout(Duration::from_secs(10)).unwrap();
    writer
        .execute(
            "INSERT INTO residents (id, name, timezone, region, enrolled_from, caseworker) \
             VALUES ('r-new', 'Test Resident New', 'Asia/Seoul', 'gangjin', '2026-01-01', 'cw-o')",
            [],
        )
        .unwrap();
    eventually("alerting to follow the roster change", || {
        ondol
            .log()
            .lines()
            .any(|l| {
                l.contains("alerting follows a roster change") && l.contains("residents_added=1")
            })
            .then_some(())
    })
    .await;
    ondol.terminate();
}

/// A staff app on the broker: a persistent session subscribed to `topic`.
struct App {
    events: mpsc::UnboundedReceiver<Value>,
    _client: AsyncClient,
    _task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn connect(port: u16, client_id: &str, topic: &str) -> App {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let (subacked_tx, mut subacked) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let value: Value = serde_json::from_slice(&publish.payload).unwrap();
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subacked_tx.send(());
                    }
                    Ok(_) => {}
                    // The broker is down: try again (a readiness poll).
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(PATIENCE, subacked.recv())
            .await
            .expect("subscription acknowledged in time");
        App {
            events,
            _client: client,
            _task: task,
        }
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("an alert event in time")
            .expect("app connection alive")
    }
}
