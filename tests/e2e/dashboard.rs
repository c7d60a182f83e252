//! The caseworker dashboard in a real browser: the real `ondol run` with the
//! HTTP API, a resident who moves but misses a check-in over real MQTT, and
//! Debian's headless Chromium driven by playwright-core
//! (`tests/browser/dashboard.mjs`). The caseworker signs in, sees the alert
//! arrive without a reload, acknowledges and resolves it through the page;
//! the API then shows it resolved with that outcome, note and actor. Then
//! the region's supervisor signs in to the overview, whose figures must
//! match what was seeded: a resident whose only device went offline (unseen,
//! and its alert escalated with nobody acknowledging), a wearable at 15 %
//! battery, the caseworker's resolved alert with its outcome, and nothing
//! of another region's resident.
//!
//! Needs `node` (with `npm ci` run in `tests/browser/`) and `chromium`. When
//! one is missing the test says what to install and passes without running,
//! unless `ONDOL_REQUIRE_SERVICES=1` (set by `.ci/run`), which makes it fail.
//! Screenshots are kept in `<target dir>/e2e-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::services::{REQUIRE_SERVICES, find_server};
use crate::support::{PATIENCE, TestServer, artifacts_dir};

const CW_TOKEN: &str = "e2e-dashboard-caseworker-token-0123456789";
const SUP_TOKEN: &str = "e2e-dashboard-supervisor-token-0123456789";
const OUTCOME: &str = "needed_help";
const NOTE: &str = "Visited: the phone was off the hook; helped her set it back.";

/// The whole browser run: waiting for the check-in deadline (up to about two
/// minutes) plus the clicks. Bounds the run; measures nothing.
const BROWSER_PATIENCE: Duration = Duration::from_secs(420);

/// The directory holding the browser script and its `node_modules`.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// node, Chromium and playwright-core, or `None` after saying what is missing.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let node = find_server("node", "nodejs");
    let chromium = find_server("chromium", "chromium");
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        let required = std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1");
        let advice = format!("run `npm ci` in {}", browser_dir().display());
        assert!(
            !required,
            "playwright-core is not installed but {REQUIRE_SERVICES}=1: {advice}"
        );
        eprintln!(
            "NOT RUN: the dashboard browser test needs playwright-core; {advice} \
             (set {REQUIRE_SERVICES}=1 to make its absence a failure)"
        );
        return None;
    }
    Some((node?, chromium?))
}

/// A local check-in window of whole minutes in `zone` whose deadline is the
/// next minute boundary at least `margin` away (so the browser has signed
/// in before the alert opens); `None` near local midnight.
fn window_ending_after(zone: &str, margin: SignedDuration) -> Option<String> {
    let now = Timestamp::now().to_zoned(TimeZone::get(zone).ok()?);
    let minute_start = now
        .time()
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .ok()?;
    let mut end = minute_start
        .checked_add(SignedDuration::from_mins(1))
        .ok()?;
    while end.duration_since(now.time()) < margin {
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

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_sees_a_missed_checkin_arrive_and_resolves_it_in_the_browser() {
    let Some((node, chromium)) = browser_tools() else {
        return;
    };

    // Seoul, or Lisbon when Seoul is too close to midnight.
    let margin = SignedDuration::from_secs(45);
    let (zone, window) = ["Asia/Seoul", "Europe/Lisbon"]
        .into_iter()
        .find_map(|zone| window_ending_after(zone, margin).map(|w| (zone, w)))
        .expect("one of two zones nine hours apart is not near midnight");
    let roster = format!(
        r#"
[[residents]]
id = "r-d"
name = "Test Resident Dashboard"
timezone = "{zone}"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-d"
checkin = {{ window = "{window}" }}

[[devices]]
id = "gw-d"
resident = "r-d"
kind = "gateway"

[[devices]]
id = "wr-d"
resident = "r-d"
kind = "wearable"

[[residents]]
id = "r-b"
name = "Test Resident Battery"
timezone = "{zone}"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-e"

[[devices]]
id = "gw-b"
resident = "r-b"
kind = "gateway"

[[devices]]
id = "wr-b"
resident = "r-b"
kind = "wearable"

[[residents]]
id = "r-s"
name = "Test Resident Silent"
timezone = "{zone}"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-e"

[[devices]]
id = "gw-s"
resident = "r-s"
kind = "gateway"

[[residents]]
id = "r-x"
name = "Test Resident Elsewhere"
timezone = "{zone}"
region = "alentejo"
enrolled_from = "2026-01-01"
caseworker = "cw-e"

[[devices]]
id = "wr-x"
resident = "r-x"
kind = "wearable"

[[staff]]
id = "cw-e"
name = "Test Caseworker Two"
role = "caseworker"

[[staff]]
id = "cw-d"
name = "Test Caseworker"
role = "caseworker"
token_env = "ONDOL_E2E_TOKEN_CW_D"

[[staff]]
id = "sup-d"
name = "Test Supervisor"
role = "supervisor"
region = "gangjin"
token_env = "ONDOL_E2E_TOKEN_SUP_D"
"#
    );
    // A Will saying offline makes a device_offline alert within 5 s, and an
    // alert nobody acknowledges escalates after 10 s.
    let config = "[alerting]\ngrace = \"0s\"\ndevice_silent_after = \"1h\"\n\
                  mass_silence_window = \"5s\"\nack_timeout = \"10s\"\n";
    let server = TestServer::start_custom_env(
        &roster,
        config,
        &["run"],
        &[
            ("ONDOL_E2E_TOKEN_CW_D", CW_TOKEN),
            ("ONDOL_E2E_TOKEN_SUP_D", SUP_TOKEN),
        ],
    )
    .await;
    let base = server.http_base();
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("HTTP client");
    let started = Instant::now();
    loop {
        let (status, _) = get(&http, &format!("{base}/api/v1/me"), CW_TOKEN).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the API never answered /me with 200 (last {status}):\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The resident moves about (so the alert's cause is a missing check-in,
    // not missing data) and wore the wearable over the past days, so the
    // resident's page has charts to draw.
    let now = Timestamp::now().as_millisecond();
    let mut gateway = server.device("gw-d").await;
    let receipt = gateway
        .send(json!({
            "msg_id": "motion-1",
            "readings": [
                {"type": "motion", "value": 1, "ts": now - 60_000},
                {"type": "door", "value": "open", "ts": now - 2 * 3_600_000},
            ]
        }))
        .await;
    assert_eq!(receipt["accepted"], 2, "{receipt}");
    let mut wearable = server.device("wr-d").await;
    let readings: Vec<Value> = (1..=24)
        .flat_map(|i| {
            let ts = now - i * 6 * 3_600_000;
            [
                json!({"type": "heart_rate", "value": 60 + i % 15, "unit": "/min", "ts": ts}),
                json!({"type": "spo2", "value": 95 + i % 4, "unit": "%", "ts": ts}),
                json!({"type": "steps", "value": 100 * i, "ts": ts}),
            ]
        })
        .collect();
    let receipt = wearable
        .send(json!({"msg_id": "vitals-1", "readings": readings}))
        .await;
    assert_eq!(receipt["accepted"], 72, "{receipt}");

    // For the supervisor's overview: batteries (one low in each region; the
    // other region's must not show) and a gateway whose Will says offline.
    let mut status_devices = Vec::new();
    for (device, status) in [
        ("gw-b", r#"{"state":"online","battery_pct":80}"#),
        ("wr-b", r#"{"state":"online","battery_pct":15}"#),
        ("wr-x", r#"{"state":"online","battery_pct":5}"#),
        ("gw-s", r#"{"state":"offline"}"#),
    ] {
        let device = server.device(device).await;
        device.publish_status(status, true).await;
        // Kept connected: dropping one stops its connection, maybe before
        // the status went out.
        status_devices.push(device);
    }
    let started = Instant::now();
    loop {
        let (_, board) = get(&http, &format!("{base}/api/v1/residents"), SUP_TOKEN).await;
        let device = |id: &str| {
            board["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["devices"].as_array().into_iter().flatten())
                .find(|d| d["id"] == id)
                .map(|d| (d["battery_pct"].clone(), d["online"].clone()))
        };
        if device("wr-b") == Some((json!(15), json!(true)))
            && device("gw-s").is_some_and(|(_, online)| online == json!(false))
        {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the device statuses never reached the board: {board}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The browser signs in before the deadline and waits for the alert.
    let artifacts = artifacts_dir();
    let stdout_path = server.dir.path().join("browser.out");
    let stderr_path = server.dir.path().join("browser.err");
    let mut child = Command::new(&node)
        .arg("dashboard.mjs")
        .current_dir(browser_dir())
        .env("ONDOL_URL", &base)
        .env("ONDOL_TOKEN", CW_TOKEN)
        .env("ONDOL_SUPERVISOR_TOKEN", SUP_TOKEN)
        .env(
            "ONDOL_OVERVIEW",
            json!({
                "unseen": ["r-s"],
                "low_battery": ["wr-b"],
                "escalations": ["r-s"],
                "tiers": {"low": {"total": 1, "under_15_min": 1}},
                "history": {
                    "r-d": {"alerts": 1, "outcomes": "Needed help (given): 1"},
                    "r-s": {"alerts": 1, "outcomes": "not yet resolved: 1"},
                    "r-b": {"alerts": 0, "outcomes": "—"},
                },
                "absent": ["r-x", "wr-x"],
            })
            .to_string(),
        )
        .env("ONDOL_RESIDENT_ID", "r-d")
        .env("ONDOL_RULE", "missed_checkin")
        .env("ONDOL_OUTCOME", OUTCOME)
        .env("ONDOL_NOTE", NOTE)
        .env("ONDOL_ARTIFACTS", &artifacts)
        .env("ONDOL_ALERT_WAIT_MS", "240000")
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("browser stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("browser stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", node.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the browser script") {
            break status;
        }
        if started.elapsed() > BROWSER_PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser script did not finish:\n{}\nserver log:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "the browser script failed ({status}); screenshots in {}\n{stderr}\nserver log:\n{}",
        artifacts.display(),
        server.log()
    );
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no result line from the browser script: {stdout}"));
    let id = result["alert_id"].as_i64().expect("alert id");
    let screenshot = artifacts.join("dashboard.png");
    assert!(
        screenshot.is_file(),
        "{} was not written",
        screenshot.display()
    );
    eprintln!("dashboard screenshots: {}", artifacts.display());

    // The API shows what the caseworker did in the page, to the caseworker
    // and to the region's supervisor alike.
    for token in [CW_TOKEN, SUP_TOKEN] {
        let (status, alert) = get(&http, &format!("{base}/api/v1/alerts/{id}"), token).await;
        assert_eq!(status, 200, "{alert}");
        assert_eq!(alert["rule"], "missed_checkin", "{alert}");
        assert_eq!(alert["cause"], "no_checkin", "{alert}");
        assert_eq!(alert["resident_id"], "r-d", "{alert}");
        assert_eq!(alert["status"], "resolved", "{alert}");
        assert_eq!(alert["outcome"], OUTCOME, "{alert}");
        assert_eq!(alert["acknowledged_by"], "cw-d", "{alert}");
        assert_eq!(alert["resolved_by"], "cw-d", "{alert}");
        let transitions = alert["transitions"].as_array().expect("transitions");
        assert!(
            transitions
                .iter()
                .any(|t| t["actor"] == "cw-d" && t["outcome"] == OUTCOME && t["note"] == NOTE),
            "the resolution with its note is in the history: {alert}"
        );
    }
    let (status, active) = get(&http, &format!("{base}/api/v1/alerts"), CW_TOKEN).await;
    assert_eq!(status, 200, "{active}");
    assert!(
        active["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|a| a["id"] != id),
        "the resolved alert is no longer active: {active}"
    );
    // The supervisor's overview, as the page showed it, from the API; the
    // caseworker has none.
    let (status, overview) = get(&http, &format!("{base}/api/v1/overview"), SUP_TOKEN).await;
    assert_eq!(status, 200, "{overview}");
    let ids = |list: &Value, key: &str| -> Vec<String> {
        list.as_array()
            .expect("a list")
            .iter()
            .map(|item| item[key].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(overview["region"], "gangjin", "{overview}");
    assert_eq!(overview["residents"], 3, "{overview}");
    assert_eq!(
        ids(&overview["unseen_residents"], "id"),
        ["r-s"],
        "{overview}"
    );
    assert_eq!(
        overview["unseen_residents"][0]["reasons"],
        json!(["all_devices_offline"])
    );
    assert_eq!(ids(&overview["low_battery"], "id"), ["wr-b"], "{overview}");
    assert_eq!(
        ids(&overview["escalations_waiting"], "resident_id"),
        ["r-s"],
        "{overview}"
    );
    let history = overview["history"].as_array().expect("history");
    let r_d = history
        .iter()
        .find(|h| h["id"] == "r-d")
        .expect("r-d in the history");
    assert_eq!(r_d["outcomes"], json!({OUTCOME: 1}), "{overview}");
    assert!(
        !overview.to_string().contains("r-x"),
        "another region's resident: {overview}"
    );
    let (status, _) = get(&http, &format!("{base}/api/v1/overview"), CW_TOKEN).await;
    assert_eq!(status, 403, "caseworkers have no overview");

    // The tokens went to the server only as a header: never into its log.
    assert!(!server.log().contains(CW_TOKEN), "the token was logged");
    assert!(!server.log().contains(SUP_TOKEN), "the token was logged");
}
