//! Device identity and broker security over real MQTT: authentication at
//! CONNECT, topic authorization on every packet, the device CLI with live
//! rotation and revocation, the per-device rate limit, and where secrets
//! must never appear.

use rumqttc::{LastWill, QoS};
use serde_json::json;

use crate::support::{Client, PATIENCE, Seen, TestServer, ms_ago, ondol_cli, start_secure};

const GW_SECRET: &str = "gw-1-secret-7f1c9a2e5b8d4c3f";
const WR_SECRET: &str = "wr-1-secret-0a9b8c7d6e5f4a3b";
const CW_TOKEN: &str = "cw-1-token-5e4d3c2b1a09f8e7";
const SV_TOKEN: &str = "sv-1-token-1b2c3d4e5f6a7b8c";

const ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "Secure Resident"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"
secret_env = "TEST_SECRET_GW_1"

[[devices]]
id = "wr-1"
resident = "r-1"
kind = "wearable"
secret_env = "TEST_SECRET_WR_1"

[[staff]]
id = "cw-1"
name = "Caseworker"
role = "caseworker"
token_env = "TEST_TOKEN_CW_1"

[[staff]]
id = "sv-1"
name = "Supervisor"
role = "supervisor"
token_env = "TEST_TOKEN_SV_1"
"#;

const ENV: &[(&str, &str)] = &[
    ("TEST_SECRET_GW_1", GW_SECRET),
    ("TEST_SECRET_WR_1", WR_SECRET),
    ("TEST_TOKEN_CW_1", CW_TOKEN),
    ("TEST_TOKEN_SV_1", SV_TOKEN),
];

async fn server() -> TestServer {
    start_secure(ROSTER, "", "", ENV).await
}

fn device(server: &TestServer, id: &str, secret: &str) -> Client {
    Client::connect(server.mqtt_port, id, Some((id, secret)), None)
}

fn reading(msg_id: &str) -> Vec<u8> {
    // Now: a device added by the CLI is bound from the moment it was added.
    json!({"msg_id": msg_id, "readings": [{"type": "heart_rate", "value": 71, "ts": ms_ago(0)}]})
        .to_string()
        .into_bytes()
}

/// Subscribes to its receipts, publishes one reading message and returns
/// the receipt.
async fn send_reading(client: &mut Client, id: &str, msg_id: &str) -> serde_json::Value {
    client
        .client
        .subscribe(format!("ondol/v1/devices/{id}/receipts"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    client.wait_for(|s| matches!(s, Seen::SubAck(_))).await;
    client
        .client
        .publish(
            format!("ondol/v1/devices/{id}/readings"),
            QoS::AtLeastOnce,
            false,
            reading(msg_id),
        )
        .await
        .expect("publish");
    loop {
        if let Seen::Publish { payload, .. } =
            client.wait_for(|s| matches!(s, Seen::Publish { .. })).await
        {
            let receipt: serde_json::Value =
                serde_json::from_slice(&payload).expect("receipt json");
            if receipt["msg_id"] == msg_id {
                return receipt;
            }
        }
    }
}

/// Keeps trying until a connection is admitted (credential changes take
/// effect within `mqtt.access_reload_interval`).
async fn eventually_admitted(server: &TestServer, id: &str, secret: &str) -> Client {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let mut client = device(server, id, secret);
        if client.admitted().await {
            return client;
        }
        assert!(std::time::Instant::now() < deadline, "{id} never admitted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn eventually_refused(server: &TestServer, id: &str, secret: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let mut client = device(server, id, secret);
        if !client.admitted().await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{id} still admitted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn only_the_right_secret_opens_the_broker() {
    let server = server().await;
    let port = server.mqtt_port;
    // No credentials, a wrong secret, another device's secret, a username
    // that is not the client id, an unknown device: all refused.
    for (client_id, login) in [
        ("gw-1", None),
        ("gw-1", Some(("gw-1", "not-the-secret-4a4a"))),
        ("gw-1", Some(("gw-1", WR_SECRET))),
        ("gw-1", Some(("wr-1", WR_SECRET))),
        ("wr-1", Some(("gw-1", GW_SECRET))),
        ("ghost-1", Some(("ghost-1", GW_SECRET))),
        ("cw-1", Some(("cw-1", "not-the-secret-4a4a"))),
    ] {
        let mut client = Client::connect(port, client_id, login, None);
        assert!(
            !client.admitted().await,
            "{client_id} with {:?} was admitted",
            login.map(|l| l.0)
        );
    }
    let mut gw = device(&server, "gw-1", GW_SECRET);
    assert!(gw.admitted().await);
    let receipt = send_reading(&mut gw, "gw-1", "ok-1").await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    let log = server.log();
    assert!(
        log.contains("MQTT connection refused"),
        "refusals are logged"
    );
    for secret in [GW_SECRET, WR_SECRET, CW_TOKEN, "not-the-secret-4a4a"] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    // The store keeps only Argon2id hashes.
    let hashes: Vec<String> = {
        let db = server.db();
        let mut stmt = db
            .prepare("SELECT credential_hash FROM devices ORDER BY id")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));
    let raw = std::fs::read_dir(server.dir.path().join("data"))
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .concat();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains(GW_SECRET) && !raw.contains(WR_SECRET));
    // config print shows neither secrets nor tokens.
    let (ok, printed, _) = ondol_cli(&server, &["config", "print"]);
    assert!(ok);
    assert!(!printed.contains(GW_SECRET) && !printed.contains(CW_TOKEN));
}

#[tokio::test]
async fn a_device_may_use_only_its_own_topics() {
    let server = server().await;
    let port = server.mqtt_port;

    // Publishing as another device: closed, and nothing of it is stored.
    let mut gw = device(&server, "gw-1", GW_SECRET);
    assert!(gw.admitted().await);
    gw.client
        .publish(
            "ondol/v1/devices/wr-1/readings",
            QoS::AtLeastOnce,
            false,
            reading("forged-1"),
        )
        .await
        .unwrap();
    assert_eq!(gw.wait_for(|s| *s == Seen::Closed).await, Seen::Closed);

    // Subscriptions beyond its own receipts: closed.
    for filter in [
        "#",
        "ondol/v1/devices/+/receipts",
        "ondol/v1/devices/wr-1/receipts",
        "ondol/v1/devices/gw-1/readings",
        "ondol/v1/caseworkers/cw-1/alerts",
        "ondol/v1/system/alerts",
    ] {
        let mut gw = device(&server, "gw-1", GW_SECRET);
        assert!(gw.admitted().await);
        gw.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            gw.wait_for(|s| matches!(s, Seen::Closed | Seen::SubAck(_)))
                .await,
            Seen::Closed,
            "subscribing to {filter} must close the connection"
        );
    }

    // A Will aimed at another device's status: refused at CONNECT.
    let forged_will = LastWill::new(
        "ondol/v1/devices/wr-1/status",
        r#"{"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    );
    let mut forger = Client::connect(port, "gw-1", Some(("gw-1", GW_SECRET)), Some(forged_will));
    assert!(!forger.admitted().await);
    // Its own status as Will is fine.
    let own_will = LastWill::new(
        "ondol/v1/devices/gw-1/status",
        r#"{"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    );
    let mut honest = Client::connect(port, "gw-1", Some(("gw-1", GW_SECRET)), Some(own_will));
    assert!(honest.admitted().await);
    drop(honest);

    // wr-1's own reading is stored; the forged one never was: once wr-1's
    // receipt is back, everything before it has been judged.
    let mut wr = device(&server, "wr-1", WR_SECRET);
    assert!(wr.admitted().await);
    let receipt = send_reading(&mut wr, "wr-1", "own-1").await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    assert_eq!(
        server.count("SELECT count(*) FROM readings WHERE device_id = 'wr-1'"),
        1
    );
    assert_eq!(server.count("SELECT count(*) FROM rejections"), 0);
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("MQTT client used a topic it may not") && l.contains("gw-1")),
        "the closed connection is logged with its client id:\n{log}"
    );
    assert!(!log.contains("forged-1"), "payloads are never logged");
}

#[tokio::test]
async fn staff_apps_read_only_their_own_alerts() {
    let server = server().await;
    let port = server.mqtt_port;
    let mut cw = Client::connect(port, "cw-1:phone", Some(("cw-1", CW_TOKEN)), None);
    assert!(cw.admitted().await);
    cw.client
        .subscribe("ondol/v1/caseworkers/cw-1/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(cw.next().await, Seen::SubAck(_)));
    cw.client
        .subscribe("ondol/v1/system/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(cw.next().await, Seen::Closed);

    let mut sv = Client::connect(port, "sv-1", Some(("sv-1", SV_TOKEN)), None);
    assert!(sv.admitted().await);
    sv.client
        .subscribe("ondol/v1/system/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(sv.next().await, Seen::SubAck(_)));
    sv.client
        .subscribe("ondol/v1/caseworkers/cw-1/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(sv.next().await, Seen::Closed);

    // Staff publish nothing.
    let mut cw = Client::connect(port, "cw-1", Some(("cw-1", CW_TOKEN)), None);
    assert!(cw.admitted().await);
    cw.client
        .publish(
            "ondol/v1/caseworkers/cw-1/alerts",
            QoS::AtLeastOnce,
            false,
            "x",
        )
        .await
        .unwrap();
    assert_eq!(cw.wait_for(|s| *s == Seen::Closed).await, Seen::Closed);
}

/// In demo mode (anonymous devices allowed) a caseworker identity is still
/// never given away: a staff app needs the staff token.
#[tokio::test]
async fn demo_mode_still_checks_staff_tokens() {
    let server = start_secure(ROSTER, "allow_anonymous = true", "", ENV).await;
    let port = server.mqtt_port;
    let mut impostor = Client::connect(port, "cw-1:x", Some(("cw-1", "guess")), None);
    assert!(!impostor.admitted().await, "a wrong token is refused");
    let mut anonymous = Client::connect(port, "cw-1", None, None);
    assert!(anonymous.admitted().await, "anonymous devices are allowed");
    anonymous
        .client
        .subscribe("ondol/v1/caseworkers/cw-1/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        anonymous.wait_for(|s| *s == Seen::Closed).await,
        Seen::Closed,
        "but an anonymous client is a device, not a caseworker"
    );
    let mut cw = Client::connect(port, "cw-1:phone", Some(("cw-1", CW_TOKEN)), None);
    assert!(cw.admitted().await);
    cw.client
        .subscribe("ondol/v1/caseworkers/cw-1/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(cw.next().await, Seen::SubAck(_)));
}

#[tokio::test]
async fn device_cli_adds_rotates_and_revokes_without_a_restart() {
    let server = server().await;

    // add: the secret is printed once, on stdout, alone.
    let (ok, stdout, stderr) = ondol_cli(
        &server,
        &[
            "device",
            "add",
            "--id",
            "bt-9",
            "--resident",
            "r-1",
            "--kind",
            "button",
        ],
    );
    assert!(ok, "{stderr}");
    let first = stdout.trim().to_owned();
    assert_eq!(first.len(), 64, "{stdout}");
    assert!(!stderr.contains(&first));
    let (ok, _, stderr) = ondol_cli(
        &server,
        &[
            "device",
            "add",
            "--id",
            "bt-9",
            "--resident",
            "r-1",
            "--kind",
            "button",
        ],
    );
    assert!(!ok && stderr.contains("already exists"), "{stderr}");

    // The running server admits it and ingest knows it, without a restart.
    let mut bt = eventually_admitted(&server, "bt-9", &first).await;
    let receipt = send_reading(&mut bt, "bt-9", "new-1").await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    // rotate: the old secret stops working and its connection is closed.
    let (ok, stdout, stderr) = ondol_cli(&server, &["device", "rotate-secret", "--id", "bt-9"]);
    assert!(ok, "{stderr}");
    let second = stdout.trim().to_owned();
    assert_eq!(second.len(), 64);
    assert_ne!(first, second);
    eventually_refused(&server, "bt-9", &first).await;
    assert_eq!(bt.wait_for(|s| *s == Seen::Closed).await, Seen::Closed);
    let mut bt = eventually_admitted(&server, "bt-9", &second).await;

    // revoke: the connected device is disconnected (at its next packet, a
    // PINGREQ at the latest) and refused from then on.
    let (ok, _, stderr) = ondol_cli(&server, &["device", "revoke", "--id", "bt-9"]);
    assert!(ok, "{stderr}");
    assert_eq!(bt.wait_for(|s| *s == Seen::Closed).await, Seen::Closed);
    eventually_refused(&server, "bt-9", &second).await;
    let (ok, _, stderr) = ondol_cli(&server, &["device", "revoke", "--id", "nope-1"]);
    assert!(!ok && stderr.contains("no device nope-1"), "{stderr}");

    let log = server.log();
    assert!(!log.contains(&first) && !log.contains(&second));
    assert_eq!(
        server.count("SELECT count(*) FROM devices WHERE id = 'bt-9' AND credential_hash IS NULL AND revoked_ms IS NOT NULL"),
        1
    );
}

#[tokio::test]
async fn a_device_over_its_rate_gets_rate_limited_receipts() {
    let server = start_secure(
        ROSTER,
        "",
        "[ingest]\ndevice_max_messages_per_minute = 1.0\ndevice_max_burst_messages = 2.0\n",
        ENV,
    )
    .await;
    let mut gw = device(&server, "gw-1", GW_SECRET);
    assert!(gw.admitted().await);
    assert_eq!(send_reading(&mut gw, "gw-1", "r-1").await["accepted"], 1);
    assert_eq!(send_reading(&mut gw, "gw-1", "r-2").await["accepted"], 1);
    let limited = send_reading(&mut gw, "gw-1", "r-3").await;
    assert_eq!(limited["accepted"], 0, "{limited}");
    assert_eq!(
        limited["rejected"][0]["reason"], "rate_limited",
        "{limited}"
    );
    assert_eq!(
        server.count("SELECT count(*) FROM readings WHERE device_id = 'gw-1'"),
        2
    );
}
