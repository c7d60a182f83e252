//! Devices publishing readings: storage, receipts, rejections, dedupe,
//! restarts and shutdown.

use serde_json::json;

use crate::support::{TestServer, eventually, ms_ago};

fn readings_of(server: &TestServer, device: &str) -> i64 {
    server.count(&format!(
        "SELECT COUNT(*) FROM readings WHERE device_id = '{device}'"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_readings_are_stored_and_receipted() {
    let server = TestServer::start().await;
    let mut device = server.device("gw-1").await;
    let receipt = device
        .send(json!({
            "msg_id": "m-1",
            "ts": jiff::Timestamp::now().to_string(),
            "readings": [
                {"type": "heart_rate", "value": 72, "unit": "/min"},
                {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]"},
                {"type": "motion", "value": 1, "sensor": "pir-kitchen", "ts": ms_ago(1)},
                {"type": "checkin", "value": "ok", "ts": ms_ago(2)},
                {"type": "body_temperature", "value": 98.6, "unit": "[degF]", "ts": ms_ago(3)}
            ]
        }))
        .await;
    assert_eq!(
        receipt,
        json!({"msg_id": "m-1", "accepted": 5, "duplicates": 0, "rejected": []})
    );
    assert_eq!(readings_of(&server, "gw-1"), 5);
    let celsius: f64 = server
        .db()
        .query_row(
            "SELECT value FROM readings WHERE device_id = 'gw-1' AND reading_type = 'body_temperature'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!((celsius - 37.0).abs() < 1e-6, "stored in Cel: {celsius}");
    // The resident's activity and today's rollup were updated with the batch.
    assert_eq!(
        server.count("SELECT COUNT(*) FROM resident_activity WHERE resident_id = 'r-1' AND last_activity_ms IS NOT NULL"),
        1
    );
    assert!(
        server.count(
            "SELECT COALESCE(SUM(readings), 0) FROM resident_days WHERE resident_id = 'r-1'"
        ) >= 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reason_code_comes_back_on_the_receipt_and_is_stored() {
    let server = TestServer::start().await;
    let mut device = server.device("wr-1").await;
    let now = jiff::Timestamp::now().as_millisecond();
    let receipt = device
        .send(json!({
            "msg_id": "bad-1",
            "readings": [
                {"type": "heart_rate", "value": 70, "ts": ms_ago(1)},
                {"type": "heart_rate", "value": 400},
                {"type": "levitation", "value": 1},
                {"type": "spo2"},
                {"type": "body_weight", "value": 70, "unit": "stone"},
                {"type": "blood_pressure", "systolic": 80, "diastolic": 90, "unit": "mmHg"},
                {"type": "steps", "value": 10, "ts": now + 3_600_000},
                {"type": "steps", "value": 10, "ts": now - 40 * 24 * 3_600_000},
                "not an object",
                {"type": "heart_rate", "value": 71, "ts": ms_ago(2)}
            ]
        }))
        .await;
    assert_eq!(receipt["accepted"], 2, "{receipt}");
    assert_eq!(receipt["duplicates"], 0);
    let reasons: Vec<(u64, String)> = receipt["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        (1, "out_of_range"),
        (2, "unknown_type"),
        (3, "missing_field"),
        (4, "invalid_unit"),
        (5, "inconsistent"),
        (6, "timestamp_in_future"),
        (7, "timestamp_too_old"),
        (8, "malformed_payload"),
    ];
    assert_eq!(
        reasons,
        expected
            .iter()
            .map(|(i, r)| (*i, (*r).to_owned()))
            .collect::<Vec<_>>()
    );
    assert!(
        receipt["rejected"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("400")
    );

    // Whole-message refusals that still carry a readable msg_id.
    let malformed = device.send(json!({"msg_id": "bad-2", "readings": 5})).await;
    assert_eq!(
        malformed["error"]["reason"], "malformed_payload",
        "{malformed}"
    );
    let big = json!({
        "msg_id": "bad-3",
        "readings": [{"type": "heart_rate", "value": 70, "padding": "x".repeat(70_000)}]
    });
    let too_large = device.send(big).await;
    assert_eq!(
        too_large["error"]["reason"], "payload_too_large",
        "{too_large}"
    );

    let mut stranger = server.device("nobody-9").await;
    let unknown = stranger
        .send(json!({"msg_id": "u-1", "readings": [{"type": "heart_rate", "value": 70}]}))
        .await;
    assert_eq!(
        unknown["rejected"][0]["reason"], "unknown_device",
        "{unknown}"
    );
    let mut revoked = server.device("old-1").await;
    let inactive = revoked
        .send(json!({"msg_id": "o-1", "readings": [{"type": "motion", "value": 1}]}))
        .await;
    assert_eq!(
        inactive["rejected"][0]["reason"], "device_inactive",
        "{inactive}"
    );

    // Every refusal is in the rejection store, with its reason.
    let stored: Vec<String> = {
        let db = server.db();
        let mut statement = db
            .prepare("SELECT DISTINCT reason FROM rejections ORDER BY reason")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut all: Vec<&str> = expected.iter().map(|(_, r)| *r).collect();
    all.extend(["payload_too_large", "unknown_device", "device_inactive"]);
    all.sort_unstable();
    all.dedup();
    assert_eq!(stored, all);
    // The good neighbours were stored.
    assert_eq!(readings_of(&server, "wr-1"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_packs_are_accepted() {
    let server = TestServer::start().await;
    let device = server.device("gw-1").await;
    let base = jiff::Timestamp::now().as_second() - 60;
    let pack = json!([
        {"bn": "urn:dev:gw-1:", "bt": base, "n": "heart_rate", "u": "/min", "v": 64},
        {"n": "spo2", "u": "%", "v": 97, "t": 1},
        {"n": "door", "vs": "open", "t": 2},
        {"n": "motion", "vb": true, "t": 3}
    ]);
    device.publish(pack.to_string()).await;
    eventually("SenML readings stored", || {
        (readings_of(&server, "gw-1") == 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_stored_once_and_counted() {
    let server = TestServer::start().await;
    let mut device = server.device("gw-1").await;
    let readings = json!([
        {"type": "heart_rate", "value": 70, "ts": ms_ago(5)},
        {"type": "motion", "value": 1, "sensor": "pir-hall", "ts": ms_ago(5)}
    ]);
    let first = device
        .send(json!({"msg_id": "d-1", "readings": readings}))
        .await;
    assert_eq!(first["accepted"], 2);
    // A resend (same msg_id), and a retry under a new msg_id.
    let resend = device
        .send(json!({"msg_id": "d-1", "readings": readings}))
        .await;
    assert_eq!(
        (resend["accepted"].clone(), resend["duplicates"].clone()),
        (json!(0), json!(2))
    );
    let retry = device
        .send(json!({"msg_id": "d-2", "readings": readings}))
        .await;
    assert_eq!(retry["duplicates"], 2);
    // Twice in one message: the second is the duplicate.
    let doubled = device
        .send(json!({"msg_id": "d-3", "readings": [
            {"type": "steps", "value": 5, "ts": ms_ago(4)},
            {"type": "steps", "value": 5, "ts": ms_ago(4)}
        ]}))
        .await;
    assert_eq!(
        (doubled["accepted"].clone(), doubled["duplicates"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(readings_of(&server, "gw-1"), 3);
    // The rollup counts each reading once.
    assert_eq!(
        server.count(
            "SELECT COALESCE(SUM(readings), 0) FROM resident_days WHERE resident_id = 'r-1'"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_messages_and_wills_update_device_state() {
    let server = TestServer::start().await;
    let device = server.device("bt-2").await;
    device
        .publish_status(
            r#"{"state":"online","battery_pct":87,"rssi_dbm":-70,"firmware":"1.2.3"}"#,
            true,
        )
        .await;
    eventually("battery stored", || {
        let db = server.db();
        db.query_row(
            "SELECT battery_pct, online FROM device_state WHERE device_id = 'bt-2'",
            [],
            |row| {
                Ok((
                    row.get::<_, Option<i64>>(0)?,
                    row.get::<_, Option<bool>>(1)?,
                ))
            },
        )
        .ok()
        .filter(|state| *state == (Some(87), Some(true)))
    })
    .await;
    device.publish_status(r#"{"state":"offline"}"#, true).await;
    eventually("offline stored", || {
        server
            .db()
            .query_row(
                "SELECT online FROM device_state WHERE device_id = 'bt-2'",
                [],
                |row| row.get::<_, Option<bool>>(0),
            )
            .ok()
            .flatten()
            .filter(|online| !online)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_a_restart_and_a_kill() {
    let mut server = TestServer::start().await;
    let mut device = server.device("gw-1").await;
    let readings = json!([{"type": "heart_rate", "value": 66, "ts": ms_ago(3)}]);
    assert_eq!(
        device
            .send(json!({"msg_id": "s-1", "readings": readings}))
            .await["accepted"],
        1
    );
    drop(device);
    assert!(server.terminate().await.success(), "{}", server.log());

    server.spawn(&["run"]).await;
    assert_eq!(readings_of(&server, "gw-1"), 1);
    let mut device = server.device("gw-1").await;
    let resent = device
        .send(json!({"msg_id": "s-1", "readings": readings}))
        .await;
    assert_eq!(resent["duplicates"], 1, "dedupe keys survive the restart");

    let more = json!([{"type": "heart_rate", "value": 67, "ts": ms_ago(2)}]);
    assert_eq!(
        device
            .send(json!({"msg_id": "s-2", "readings": more}))
            .await["accepted"],
        1
    );
    drop(device);
    server.kill().await;
    server.spawn(&["run"]).await;
    assert_eq!(
        readings_of(&server, "gw-1"),
        2,
        "a receipted reading survives kill -9"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_no_receipted_reading() {
    let mut server = TestServer::start().await;
    let mut device = server.device("wr-1").await;
    let start = ms_ago(60);
    // A backlog flush: under the per-device burst limit, and within what
    // the broker keeps of one device's receipts even if one batch answers
    // all of them (its newest 6 KiB, some 60 of these: ondol-broker's
    // receipt ring).
    let total = 50;
    let publisher = {
        let client = device.client.clone();
        let topic = device.readings_topic();
        tokio::spawn(async move {
            for i in 0..total {
                let message = json!({
                    "msg_id": format!("b-{i}"),
                    "readings": [{"type": "steps", "value": 1, "ts": start + i}]
                });
                if client
                    .publish(
                        topic.clone(),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        message.to_string().into_bytes(),
                    )
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    // Stop the server while the burst is still arriving.
    let _ = device.receipt("b-20").await;
    assert!(
        server.terminate().await.success(),
        "clean exit:\n{}",
        server.log()
    );
    publisher.abort();

    let receipts = device.drain_receipts();
    let receipted: Vec<i64> = receipts
        .iter()
        .filter(|(_, r)| r["accepted"] == 1)
        .map(|(id, _)| id.trim_start_matches("b-").parse::<i64>().unwrap())
        .collect();
    assert!(!receipted.is_empty());
    let db = crate::support::open_db(&server.database_path());
    let mut missing = Vec::new();
    for i in &receipted {
        let found: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM readings WHERE device_id = 'wr-1' AND ts_ms = ?1",
                [start + i],
                |row| row.get(0),
            )
            .unwrap();
        if found != 1 {
            missing.push(*i);
        }
    }
    assert!(missing.is_empty(), "receipted but not stored: {missing:?}");
    let log = server.log();
    assert!(log.contains("ondol stopped cleanly"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fleet_publishes_into_a_running_instance() {
    let start = jiff::Timestamp::now().as_millisecond();
    let mut server = TestServer::start_with("[simulator]\nhomes = 2\n", &["run", "--demo"]).await;
    // Live readings, not the history the demo writes at start.
    eventually("simulated readings stored", || {
        (server.count(&format!(
            "SELECT COUNT(*) FROM readings WHERE ts_ms >= {start}"
        )) > 0)
            .then_some(())
    })
    .await;
    assert!(server.terminate().await.success(), "{}", server.log());
    let log = server.log();
    assert!(log.contains("demo mode"), "{log}");
}
