//! The outbox delivered for real: the embedded broker (rumqttd) to a
//! subscribed link, and a local HTTP receiver that checks the signature.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ondol_alerting::delivery::signature;
use ondol_alerting::{Delivery, MqttOut, Webhook};
use ondol_broker::{BrokerConfig, Router};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_store::Store;
use rumqttd::Notification;
use support::{Harness, config, mins};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "Kim"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"

[[devices]]
id = "bt-1"
resident = "r-1"
kind = "button"

[[staff]]
id = "cw-1"
name = "Park"
role = "caseworker"
"#;

const SECRET: &[u8] = b"webhook-test-secret";

#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    /// (signature header, idempotency header, body) of every request.
    seen: Mutex<Vec<(String, String, Bytes)>>,
}

async fn hook(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    rx.seen
        .lock()
        .unwrap()
        .push((header("x-ondol-signature"), header("idempotency-key"), body));
    if rx
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_caseworker_topic_and_a_signed_webhook_with_retries() {
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(1, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let broker = BrokerConfig {
        listen: free_addr(),
        max_connections: 10,
        max_buffered_bytes: 8 * 1024 * 1024,
        ..BrokerConfig::default()
    };
    let (mut watcher, link) = tokio::task::spawn_blocking(move || {
        let router = Router::start(&broker);
        let watcher = router
            .subscribed_link("watcher", &["ondol/v1/caseworkers/+/alerts"])
            .unwrap();
        (watcher, router.link("ondol-alerts").unwrap())
    })
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let mqtt = MqttOut::embedded(link.tx, link.rx, stop.clone());

    let mut h = Harness::with_webhook(ROSTER, "2026-11-27T00:00:00Z", config());
    h.reading(
        "bt-1",
        h.now(),
        ReadingValue::Checkin(CheckinValue::Help),
        ReadingType::Checkin,
    );
    let delivery = Delivery::new(
        Store::open(&h.path()).unwrap(),
        Some(mqtt),
        Some(Webhook::new(&url, SECRET, Duration::from_secs(10)).unwrap()),
        &h.config,
        Arc::new(h.clock.clone()),
        Arc::new(Notify::new()),
    );
    assert_eq!(delivery.deliver_due().await.unwrap(), 2);

    // MQTT: the caseworker's topic carries the alert event.
    let forward = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match watcher.rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(forward))) => return forward,
                Ok(Some(Notification::Unschedule)) => {
                    let _ = watcher.rx.ready();
                }
                Ok(_) => {}
                Err(error) => panic!("no alert on the caseworker topic: {error}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        &forward.publish.topic[..],
        b"ondol/v1/caseworkers/cw-1/alerts"
    );
    let event: serde_json::Value = serde_json::from_slice(&forward.publish.payload).unwrap();
    assert_eq!(event["event"], "opened");
    assert_eq!(event["alert"]["rule"], "help_request");
    assert_eq!(event["to"], "cw-1");

    // The webhook failed once: not due again until its backoff passes.
    assert_eq!(receiver.seen.lock().unwrap().len(), 1);
    assert_eq!(delivery.deliver_due().await.unwrap(), 0);
    h.clock.advance(mins(10));
    assert_eq!(delivery.deliver_due().await.unwrap(), 1);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (sig, key, body) in &seen {
        assert_eq!(
            sig,
            &signature(SECRET, body),
            "valid HMAC-SHA256 of the body"
        );
        assert_eq!(key, event["idempotency_key"].as_str().unwrap());
    }
    assert_eq!(seen[0].2, seen[1].2, "the retry sends the same body");
    let body: serde_json::Value = serde_json::from_slice(&seen[1].2).unwrap();
    assert_eq!(body, event, "the webhook gets the same event as MQTT");

    // Delivered notifications are not sent again after a restart.
    h.clock.advance(mins(60));
    let again = Delivery::new(
        Store::open(&h.path()).unwrap(),
        None,
        None,
        &h.config,
        Arc::new(h.clock.clone()),
        Arc::new(Notify::new()),
    );
    assert_eq!(again.deliver_due().await.unwrap(), 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_notifications_survive_a_restart_and_are_given_up_when_too_old() {
    let mut h = Harness::with_webhook(ROSTER, "2026-11-27T00:00:00Z", config());
    h.reading("bt-1", h.now(), ReadingValue::Fall, ReadingType::Fall);
    // Nothing listens at this address.
    let url = format!("http://{}/hook", free_addr());
    let delivery = |h: &Harness| {
        Delivery::new(
            Store::open(&h.path()).unwrap(),
            None,
            Some(Webhook::new(&url, SECRET, Duration::from_secs(2)).unwrap()),
            &h.config,
            Arc::new(h.clock.clone()),
            Arc::new(Notify::new()),
        )
    };
    // Both (MQTT has no publisher here, the webhook refuses) fail and stay queued.
    assert_eq!(delivery(&h).deliver_due().await.unwrap(), 2);
    h.clock.advance(mins(10));
    // A new delivery worker (a restart) finds them again.
    assert_eq!(delivery(&h).deliver_due().await.unwrap(), 2);
    // After give_up_after they are given up, not retried forever.
    h.clock.advance(support::hours(25));
    assert_eq!(delivery(&h).deliver_due().await.unwrap(), 2);
    h.clock.advance(support::hours(1));
    assert_eq!(delivery(&h).deliver_due().await.unwrap(), 0);
    assert_eq!(h.db.next_notification_at().unwrap(), None);
}
