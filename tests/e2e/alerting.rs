//! Alerting end to end: a resident who moves but does not check in, over
//! real MQTT; the alert on the caseworker's topic and at a real local
//! webhook with a valid signature; escalation to the supervisor, stopped by
//! an acknowledgement from the CLI.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::support::{TestServer, binary, webhook_receiver};

/// Waiting for a check-in deadline takes up to about two minutes (windows
/// are whole minutes); this bounds each wait, it measures nothing.
const DEADLINE_PATIENCE: Duration = Duration::from_secs(180);

const SECRET: &str = "e2e-webhook-secret";

const CW_TOKEN: &str = "e2e-caseworker-token-0123456789abcdef";
const SUP_TOKEN: &str = "e2e-supervisor-token-0123456789abcdef";

type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn hook(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-ondol-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap().push((signature, body));
    StatusCode::OK
}

/// A staff app: subscribed to its alert topic.
pub(crate) struct StaffApp {
    events: mpsc::UnboundedReceiver<Value>,
    _client: AsyncClient,
    _task: tokio::task::JoinHandle<()>,
}

impl StaffApp {
    /// Signs in as the staff member with their bearer token, as a
    /// caseworker's phone app would (client id `{staff}:app`).
    pub(crate) async fn connect(port: u16, staff: &str, token: &str) -> StaffApp {
        let mut options = MqttOptions::new(format!("{staff}:app"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_credentials(staff, token);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let (subacked_tx, mut subacked) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let value: Value =
                            serde_json::from_slice(&publish.payload).expect("alert event is JSON");
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subacked_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(
                format!("ondol/v1/caseworkers/{staff}/alerts"),
                QoS::AtLeastOnce,
            )
            .await
            .expect("subscribe");
        tokio::time::timeout(Duration::from_secs(60), subacked.recv())
            .await
            .expect("subscription acknowledged in time");
        StaffApp {
            events,
            _client: client,
            _task: task,
        }
    }

    /// Every event received so far, without waiting.
    pub(crate) fn received(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// The next event matching `want`, skipping others.
    pub(crate) async fn next(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE_PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} in time"))
                .expect("app connection alive");
            if want(&event) {
                return event;
            }
        }
    }
}

/// Local window of whole minutes in `zone` whose deadline is the next
/// minute boundary at least 20 s away; `None` near local midnight.
pub(crate) fn window_ending_soon(zone: &str) -> Option<String> {
    let now = Timestamp::now().to_zoned(TimeZone::get(zone).unwrap());
    let minute_start = now
        .time()
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap();
    let mut end = minute_start
        .checked_add(SignedDuration::from_mins(1))
        .ok()?;
    if end.duration_since(now.time()) < SignedDuration::from_secs(20) {
        end = end.checked_add(SignedDuration::from_mins(1)).ok()?;
    }
    if end <= minute_start || end.hour() == 0 && end.minute() < 5 {
        return None;
    }
    let start = end
        .checked_sub(SignedDuration::from_mins(30))
        .ok()
        .filter(|s| *s < end)
        .unwrap_or(jiff::civil::Time::midnight());
    Some(format!(
        "{:02}:{:02}-{:02}:{:02}",
        start.hour(),
        start.minute(),
        end.hour(),
        end.minute()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_checkin_reaches_the_caseworker_and_the_webhook_and_ack_stops_escalation() {
    let seen: Seen = Arc::default();
    let url = webhook_receiver(hook, seen.clone()).await;

    // Seoul, or Lisbon when Seoul is too close to midnight.
    let (zone, window) = ["Asia/Seoul", "Europe/Lisbon"]
        .into_iter()
        .find_map(|zone| window_ending_soon(zone).map(|w| (zone, w)))
        .expect("one of two zones nine hours apart is not near midnight");
    let roster = format!(
        r#"
[[residents]]
id = "r-a"
name = "Test Resident A"
timezone = "{zone}"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-a"
checkin = {{ window = "{window}" }}

[[devices]]
id = "gw-a"
resident = "r-a"
kind = "gateway"

[[staff]]
id = "cw-a"
name = "Test Caseworker"
role = "caseworker"
token_env = "ONDOL_E2E_TOKEN_CW_A"

[[staff]]
id = "sup-a"
name = "Test Supervisor"
role = "supervisor"
region = "gangjin"
token_env = "ONDOL_E2E_TOKEN_SUP_A"
"#
    );
    let config = format!(
        "[alerting]\ngrace = \"0s\"\nack_timeout = \"3s\"\nrepeat_every = \"3s\"\ndevice_silent_after = \"1h\"\n\
         webhook_url = \"{url}\"\nwebhook_secret_env = \"ONDOL_E2E_WEBHOOK_SECRET\"\n"
    );
    let server = TestServer::start_custom_env(
        &roster,
        &config,
        &["run"],
        &[
            ("ONDOL_E2E_WEBHOOK_SECRET", SECRET),
            ("ONDOL_E2E_TOKEN_CW_A", CW_TOKEN),
            ("ONDOL_E2E_TOKEN_SUP_A", SUP_TOKEN),
        ],
    )
    .await;
    let mut caseworker = StaffApp::connect(server.mqtt_port, "cw-a", CW_TOKEN).await;
    let mut supervisor = StaffApp::connect(server.mqtt_port, "sup-a", SUP_TOKEN).await;

    // The resident moves about but does not check in.
    let mut device = server.device("gw-a").await;
    let receipt = device
        .send(json!({
            "msg_id": "motion-1",
            "readings": [{"type": "motion", "value": 1, "ts": Timestamp::now().as_millisecond()}]
        }))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    // At the deadline the caseworker's app gets the alert over MQTT.
    let opened = caseworker
        .next("the missed check-in alert", |e| e["event"] == "opened")
        .await;
    assert_eq!(opened["alert"]["rule"], "missed_checkin");
    assert_eq!(opened["alert"]["cause"], "no_checkin");
    assert_eq!(opened["alert"]["resident_id"], "r-a");
    assert_eq!(opened["to"], "cw-a");
    let id = opened["alert"]["id"].as_i64().unwrap();

    // The webhook got the same event with a valid signature.
    let started = Instant::now();
    let (signature, body) = loop {
        let found = seen.lock().unwrap().iter().find_map(|(sig, body)| {
            let event: Value = serde_json::from_slice(body).ok()?;
            (event["idempotency_key"] == opened["idempotency_key"])
                .then(|| (sig.clone(), body.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            started.elapsed() < DEADLINE_PATIENCE,
            "the webhook never got the alert"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    assert_eq!(
        signature,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), opened);

    // Nobody acknowledges: it escalates to the supervisor.
    let escalated = supervisor
        .next("the escalation", |e| {
            e["event"] == "escalated" && e["alert"]["id"] == id
        })
        .await;
    assert_eq!(escalated["to"], "sup-a");

    // The caseworker acknowledges from the CLI.
    let output = Command::new(binary())
        .args(["alerts", "ack", &id.to_string(), "--by", "cw-a", "--config"])
        .arg(&server.config_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let escalations_at_ack =
        server.count(&format!("SELECT escalations FROM alerts WHERE id = {id}"));
    // The next escalation deadline comes, finds the alert acknowledged and stops.
    let started = Instant::now();
    while !server
        .log()
        .contains("alert acknowledged; escalation stops")
    {
        assert!(
            started.elapsed() < DEADLINE_PATIENCE,
            "no sign of the escalation stopping:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.count(&format!("SELECT escalations FROM alerts WHERE id = {id}")),
        escalations_at_ack
    );
    assert_eq!(
        server.count(&format!(
            "SELECT status = 'acknowledged' FROM alerts WHERE id = {id}"
        )),
        1
    );
    let listed = Command::new(binary())
        .args(["alerts", "list", "--json", "--config"])
        .arg(&server.config_path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("\"acked_by\":\"cw-a\""), "{listed}");
}
