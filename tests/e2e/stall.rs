//! A stall of our own pages nobody, end to end: the real `ondol run` is
//! frozen with `SIGSTOP` for longer than every inactivity tier while the
//! residents' devices keep publishing into the kernel's socket buffers and
//! resend what was not receipted; `SIGCONT` thaws it. Over many freezes, no
//! event about a resident who was sending reaches a caseworker's app or the
//! webhook; each freeze is one `system_outage` (`stalled`) to supervisors,
//! whose end they hear too; the one resident whose device really stopped
//! before the first freeze is alerted after the grace, with cause `no_data`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::alerting::StaffApp;
use crate::support::{TestDevice, TestServer, eventually, webhook_receiver};

/// Residents whose devices keep sending (r-1 … r-5); r-6's device stops.
const SENDING: usize = 5;
/// Longer than the danger tier, and than the stall bound plus the longest a
/// turn sleeps while devices send (their silence deadline).
const FREEZE: Duration = Duration::from_secs(13);
/// The grace after a thaw, plus time for the held deadlines to be decided.
const AFTER_THAW: Duration = Duration::from_secs(8);
const CW_TOKEN: &str = "e2e-stall-caseworker-token-0123456789";
const SECRET: &str = "e2e-stall-webhook-secret";

/// How many freezes; the issue asks for 20 (`ONDOL_E2E_STALL_REPS` lowers
/// it for a quick local run).
fn repetitions() -> usize {
    std::env::var("ONDOL_E2E_STALL_REPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

fn roster() -> String {
    let mut toml = String::new();
    for i in 1..=SENDING + 1 {
        toml.push_str(&format!(
            "[[residents]]\nid = \"r-{i}\"\nname = \"Test Resident {i}\"\ntimezone = \"Asia/Seoul\"\n\
             region = \"gangjin\"\nenrolled_from = \"2026-01-01\"\ncaseworker = \"cw-s\"\n\
             checkin = {{ window = \"none\" }}\n\n\
             [[devices]]\nid = \"gw-{i}\"\nresident = \"r-{i}\"\nkind = \"gateway\"\n\n"
        ));
    }
    toml.push_str(
        "[[staff]]\nid = \"cw-s\"\nname = \"Test Caseworker\"\nrole = \"caseworker\"\n\
         token_env = \"ONDOL_E2E_TOKEN_CW_S\"\n\n\
         [[staff]]\nid = \"sup-s\"\nname = \"Test Supervisor\"\nrole = \"supervisor\"\n\
         region = \"gangjin\"\n",
    );
    toml
}

/// What the webhook received: (Idempotency-Key header, event).
type Hooked = Arc<Mutex<Vec<(String, Value)>>>;

async fn hook(State(seen): State<Hooked>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(event) = serde_json::from_slice(&body) {
        seen.lock().unwrap().push((key, event));
    }
    StatusCode::OK
}

/// A device that publishes a motion every 250 ms and, like the devices of
/// DEVICES.md, resends every message that got no receipt within 2 s.
fn keep_sending(mut device: TestDevice, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut unreceipted: HashMap<String, (Instant, Value)> = HashMap::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let message = json!({
                "msg_id": format!("m-{n}"),
                "readings": [{"type": "motion", "value": 1, "ts": Timestamp::now().as_millisecond()}]
            });
            device.publish(message.to_string()).await;
            unreceipted.insert(format!("m-{n}"), (Instant::now(), message));
            for id in device.drain_receipts().keys() {
                unreceipted.remove(id);
            }
            for (sent, message) in unreceipted.values_mut() {
                if sent.elapsed() > Duration::from_secs(2) {
                    device.publish(message.to_string()).await;
                    *sent = Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Resident ids of the events in `events` (system alerts have none).
fn residents(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["alert"]["resident_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_process_pages_nobody_about_residents_who_were_sending() {
    let hooked: Hooked = Arc::default();
    let url = webhook_receiver(hook, hooked.clone()).await;

    // More devices than there are must go silent together for a mass
    // silence: that rule must not be what saves the residents here.
    let config = format!(
        "[alerting]\ninactivity_caution = \"5s\"\ninactivity_alarm = \"8s\"\ninactivity_danger = \"11s\"\n\
         device_silent_after = \"4s\"\nmass_silence_window = \"2s\"\nmass_silence_min_devices = 10\ngrace = \"5s\"\nstall_after = \"3s\"\n\
         webhook_url = \"{url}\"\nwebhook_secret_env = \"ONDOL_E2E_WEBHOOK_SECRET\"\n"
    );
    let mut server = TestServer::start_custom_env(
        &roster(),
        &config,
        &["run"],
        &[
            ("ONDOL_E2E_WEBHOOK_SECRET", SECRET),
            ("ONDOL_E2E_TOKEN_CW_S", CW_TOKEN),
        ],
    )
    .await;
    let mut caseworker = StaffApp::connect(server.mqtt_port, "cw-s", CW_TOKEN).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for i in 1..=SENDING {
        let device = server.device(&format!("gw-{i}")).await;
        senders.push(keep_sending(device, stop.clone()));
    }
    // r-6's device sends through the start-up grace, then stops for good
    // a second before the first freeze.
    let quiet = server.device("gw-6").await;
    let stop_quiet = Arc::new(AtomicBool::new(false));
    let quiet_task = keep_sending(quiet, stop_quiet.clone());
    tokio::time::sleep(Duration::from_secs(7)).await;
    stop_quiet.store(true, Ordering::Relaxed);
    quiet_task.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pid = server.pid();
    let mut first_thaw = None;
    for round in 1..=repetitions() {
        signal(pid, "STOP");
        tokio::time::sleep(FREEZE).await;
        signal(pid, "CONT");
        first_thaw.get_or_insert_with(Timestamp::now);
        tokio::time::sleep(AFTER_THAW).await;
        let paged = residents(&caseworker.received());
        let hooked_residents: Vec<Value> = hooked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        let hooked_residents = residents(&hooked_residents);
        for sending in 1..=SENDING {
            let id = format!("r-{sending}");
            assert!(
                !paged.contains(&id) && !hooked_residents.contains(&id),
                "round {round}: {id} was paged although its device kept sending\n{}",
                server.log()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }

    // Nothing about r-1 … r-5 in the store either.
    let db = server.db();
    let resident_alerts: Vec<(String, String, String, i64)> = db
        .prepare("SELECT subject, rule, cause, opened_ms FROM alerts WHERE rule <> 'system_outage' ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        resident_alerts
            .iter()
            .all(|(subject, ..)| subject.ends_with("-6")),
        "{resident_alerts:?}"
    );
    // r-6, whose device really stopped, is alerted after the first grace.
    let (_, _, cause, opened_ms) = resident_alerts
        .iter()
        .find(|(subject, rule, ..)| subject == "resident:r-6" && rule == "inactivity")
        .unwrap_or_else(|| panic!("r-6 was not alerted: {resident_alerts:?}"));
    assert_eq!(cause, "no_data");
    let thawed = first_thaw.unwrap().as_millisecond();
    assert!(
        *opened_ms >= thawed + 4_000,
        "alerted {} ms after the first thaw, inside the grace",
        opened_ms - thawed
    );

    // Each freeze was our outage: system alerts with cause `stalled`, each
    // opened and (its grace over) resolved on the webhook.
    let system: Vec<(String, String)> = db
        .prepare("SELECT cause, status FROM alerts WHERE rule = 'system_outage' ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(system.len() >= repetitions(), "{system:?}");
    assert!(
        system.iter().all(|(cause, _)| cause == "stalled"),
        "{system:?}"
    );
    eventually("every stall's end on the webhook", || {
        let hooked = hooked.lock().unwrap();
        let count = |event: &str| {
            hooked
                .iter()
                .filter(|(_, e)| e["alert"]["rule"] == "system_outage" && e["event"] == event)
                .count()
        };
        (count("opened") == system.len() && count("resolved") == system.len()).then_some(())
    })
    .await;
    let hooked = hooked.lock().unwrap().clone();
    for (key, event) in hooked.iter() {
        assert_eq!(
            key,
            event["idempotency_key"].as_str().unwrap(),
            "the header is the event's key"
        );
    }
    let detail = hooked
        .iter()
        .find(|(_, e)| e["alert"]["rule"] == "system_outage")
        .map(|(_, e)| e["alert"]["detail"].as_str().unwrap_or_default().to_owned())
        .unwrap();
    assert!(detail.contains("did not run for"), "{detail}");
    server.terminate().await;
}
