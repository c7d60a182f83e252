//! The HTTP API end to end: the real `ondol run` with staff tokens in its
//! environment; a device publishes over MQTT, the caseworker reads the
//! readings over HTTP, works the alert they caused (ack, resolve), and
//! every request on resident data is in the audit log.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestServer, ms_ago, ondol_cli};

const CW1_TOKEN: &str = "e2e-api-caseworker-one-0123456789";
const CW2_TOKEN: &str = "e2e-api-caseworker-two-0123456789";
const ADMIN_TOKEN: &str = "e2e-api-admin-0123456789abcdef";

const ENV: [(&str, &str); 3] = [
    ("ONDOL_E2E_API_TOKEN_CW1", CW1_TOKEN),
    ("ONDOL_E2E_API_TOKEN_CW2", CW2_TOKEN),
    ("ONDOL_E2E_API_TOKEN_ADM", ADMIN_TOKEN),
];

const ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "Test Resident One"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"
checkin = { window = "none" }

[[residents]]
id = "r-2"
name = "Test Resident Two"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-2"
checkin = { window = "none" }

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"

[[devices]]
id = "wr-1"
resident = "r-1"
kind = "wearable"

[[devices]]
id = "gw-2"
resident = "r-2"
kind = "gateway"

[[staff]]
id = "cw-1"
name = "Test Caseworker One"
role = "caseworker"
token_env = "ONDOL_E2E_API_TOKEN_CW1"

[[staff]]
id = "cw-2"
name = "Test Caseworker Two"
role = "caseworker"
token_env = "ONDOL_E2E_API_TOKEN_CW2"

[[staff]]
id = "adm-1"
name = "Test Admin"
role = "admin"
token_env = "ONDOL_E2E_API_TOKEN_ADM"
"#;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api {
            base: server.http_base(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    async fn text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("HTTP request");
        (response.status(), response.text().await.expect("body"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_reads_readings_and_works_an_alert_over_http() {
    let mut server =
        TestServer::start_custom_env(ROSTER, "[alerting]\ngrace = \"0s\"\n", &["run"], &ENV).await;
    let api = Api::new(&server);

    let (status, _) = api.text("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.text("/readyz").await;
    assert_eq!(status, StatusCode::OK, "ready once ingest runs");
    let (status, me) = api.get("/api/v1/me", CW1_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], "cw-1");
    let (status, error) = api.call("GET", "/api/v1/residents", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"]["code"], "unauthorized");

    // A wearable sends vitals, the gateway a call for help.
    let mut wearable = server.device("wr-1").await;
    let (t1, t2) = (ms_ago(10), ms_ago(9));
    let receipt = wearable
        .send(json!({
            "msg_id": "api-1",
            "readings": [
                {"type": "heart_rate", "value": 72, "unit": "bpm", "ts": t1},
                {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mmHg", "ts": t2},
            ]
        }))
        .await;
    assert_eq!(receipt["accepted"], 2, "{receipt}");
    let mut gateway = server.device("gw-1").await;
    let receipt = gateway
        .send(json!({"msg_id": "api-2", "readings": [{"type": "checkin", "value": "help"}]}))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    let (status, page) = api
        .get(
            "/api/v1/residents/r-1/readings?type=heart_rate,blood_pressure",
            CW1_TOKEN,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["type"], "heart_rate");
    assert_eq!(items[0]["value"], 72.0);
    assert_eq!(items[0]["unit"], "/min");
    assert_eq!(items[0]["device_id"], "wr-1");
    assert_eq!(items[1]["systolic"], 128.0);
    assert_eq!(items[1]["diastolic"], 82.0);

    // The other caseworker: as if r-1 did not exist.
    let (status, refused) = api.get("/api/v1/residents/r-1/readings", CW2_TOKEN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, missing) = api.get("/api/v1/residents/r-9/readings", CW2_TOKEN).await;
    assert_eq!(refused, missing);

    // The help request becomes an alert the caseworker sees.
    let deadline = Instant::now() + PATIENCE;
    let alert = loop {
        let (status, list) = api.get("/api/v1/alerts", CW1_TOKEN).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        if let Some(alert) = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "help_request")
        {
            break alert.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no help_request alert:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["resident_id"], "r-1");
    assert_eq!(alert["resident_name"], "Test Resident One");
    let id = alert["id"].as_i64().unwrap();
    let (_, other) = api.get("/api/v1/alerts", CW2_TOKEN).await;
    assert!(other["items"].as_array().unwrap().is_empty(), "{other}");

    let (status, acked) = api
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/ack"),
            Some(CW1_TOKEN),
            Some(json!({"note": "calling"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "cw-1");
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/ack"),
            Some(CW1_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, resolved) = api
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/resolve"),
            Some(CW1_TOKEN),
            Some(json!({"outcome": "needed_help", "note": "helped her up"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["outcome"], "needed_help");

    // The store (what the CLI and the alerting engine read) agrees.
    let (ok, out, err) = ondol_cli(&server, &["alerts", "list", "--all", "--json"]);
    assert!(ok, "{err}");
    let row: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|a| a["id"] == id)
        .expect("the alert in the CLI's list");
    assert_eq!(row["status"], "resolved");
    assert_eq!(row["acked_by"], "cw-1");
    assert_eq!(row["resolved_by"], "cw-1");

    let (status, metrics) = api.text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ondol_http_requests_total")
                && l.contains("route=\"/api/v1/alerts/:id/ack\"")
                && l.contains("status=\"409\"")),
        "{metrics}"
    );

    // Every request on resident data left an audit entry, refusals too,
    // and the chain verifies.
    let db = server.db();
    let mut stmt = db
        .prepare(
            "SELECT actor, role, action, residents, source, status FROM audit_log ORDER BY seq",
        )
        .unwrap();
    let entries: Vec<(String, String, String, String, String, i64)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let has = |actor: &str, action: &str, residents: &str, status: i64| {
        entries.iter().any(|e| {
            e.0 == actor && e.2 == action && e.3 == residents && e.5 == status && e.4 == "127.0.0.1"
        })
    };
    assert!(
        has("anonymous", "GET /api/v1/residents", "[]", 401),
        "{entries:#?}"
    );
    assert!(
        has(
            "cw-1",
            "GET /api/v1/residents/{id}/readings",
            "[\"r-1\"]",
            200
        ),
        "{entries:#?}"
    );
    assert!(
        has(
            "cw-2",
            "GET /api/v1/residents/{id}/readings",
            "[\"r-1\"]",
            404
        ),
        "{entries:#?}"
    );
    assert!(
        has("cw-1", "POST /api/v1/alerts/{id}/ack", "[\"r-1\"]", 200),
        "{entries:#?}"
    );
    assert!(
        has("cw-1", "POST /api/v1/alerts/{id}/resolve", "[\"r-1\"]", 200),
        "{entries:#?}"
    );
    assert!(
        !entries.iter().any(|e| e.2.contains("/me")),
        "/me shows no resident data"
    );
    let (ok, out, err) = ondol_cli(&server, &["audit", "verify"]);
    assert!(ok, "audit verify: {out}{err}");

    assert!(server.terminate().await.success(), "{}", server.log());
    let log = server.log();
    assert!(log.contains("HTTP stopped"), "HTTP stops last, cleanly");
    for secret in [CW1_TOKEN, CW2_TOKEN] {
        assert!(!log.contains(secret), "a token in the log");
    }
    assert!(
        !log.contains("Test Resident"),
        "a resident's name in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_reach_ingest_live_and_survive_the_roster_file_at_restart() {
    let mut server = TestServer::start_custom_env(ROSTER, "", &["run"], &ENV).await;
    let api = Api::new(&server);

    // r-2 is given to cw-1, and gw-2 now watches r-1.
    let (status, body) = api
        .call(
            "PUT",
            "/api/v1/admin/residents/r-2/caseworker",
            Some(ADMIN_TOKEN),
            Some(json!({"caseworker": "cw-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            "PUT",
            "/api/v1/admin/devices/gw-2",
            Some(ADMIN_TOKEN),
            Some(json!({"kind": "gateway", "resident": "r-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.get("/api/v1/residents/r-2", CW1_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "the API follows at once");

    // Ingest learns of the new binding from the store (within
    // mqtt.access_reload_interval): a reading from gw-2 is now r-1's.
    let deadline = Instant::now() + PATIENCE;
    while !server.log().contains("the roster changed; republished") {
        assert!(Instant::now() < deadline, "no reload:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut gw2 = server.device("gw-2").await;
    let receipt = gw2
        // No time of its own: the receive time, after the move.
        .send(json!({"msg_id": "moved-1", "readings": [{"type": "steps", "value": 120}]}))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    let (_, page) = api
        .get("/api/v1/residents/r-1/readings?type=steps", CW1_TOKEN)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["device_id"], "gw-2");

    // A restart imports the roster file again: the admin's changes stand.
    assert!(server.terminate().await.success(), "{}", server.log());
    server.spawn_env(&["run"], &ENV).await;
    let api = Api::new(&server);
    let (status, resident) = api.get("/api/v1/residents/r-2", CW1_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{resident}");
    assert_eq!(resident["caseworker"], "cw-1");
    let (_, devices) = api.get("/api/v1/admin/devices", ADMIN_TOKEN).await;
    let gw2 = devices["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "gw-2")
        .unwrap()
        .clone();
    assert_eq!(gw2["resident"], "r-1", "{gw2}");
    assert!(
        server.log().contains("resident r-2"),
        "the import names what it left alone"
    );
}

/// An admin issues a device its secret over HTTP (no shell on the server):
/// with authentication on, the device is refused before and admitted with
/// the secret after, within the access reload; a second issue locks the
/// first secret out.
#[tokio::test]
async fn an_admin_issues_a_device_secret_and_the_broker_admits_it() {
    use crate::support::{Client, start_secure};

    let server = start_secure(ROSTER, "", "", &ENV).await;
    let api = Api::new(&server);
    let port = server.mqtt_port;

    let mut before = Client::connect(port, "wr-1", Some(("wr-1", "not-issued-yet")), None);
    assert!(!before.admitted().await, "no secret issued yet");

    let (status, body) = api
        .call(
            "POST",
            "/api/v1/admin/devices/wr-1/secret",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = body["secret"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/admin/devices/wr-1/secret",
            Some(CW1_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "caseworkers issue no secrets"
    );

    // The broker learns of it from the store (access_reload_interval).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut device = Client::connect(port, "wr-1", Some(("wr-1", &first)), None);
        if device.admitted().await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the issued secret never opened the broker"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (_, body) = api
        .call(
            "POST",
            "/api/v1/admin/devices/wr-1/secret",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    let second = body["secret"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stale = Client::connect(port, "wr-1", Some(("wr-1", &first)), None);
        if !stale.admitted().await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replaced secret still opens the broker"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut device = Client::connect(port, "wr-1", Some(("wr-1", &second)), None);
    assert!(device.admitted().await);
    assert!(!server.log().contains(&second), "a secret is never logged");
}
