//! `ondol run --demo` as a newcomer meets it: the README's two commands
//! (run it, sign in with the token it prints) and its device example,
//! read from README.md and run verbatim.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::services::find_server;
use crate::support::{PATIENCE, TestServer};

/// What the issue promises a newcomer: a live demo within a minute.
const ALIVE_WITHIN: Duration = Duration::from_secs(60);

/// The demo on free ports with the built-in demo roster.
async fn demo() -> TestServer {
    TestServer::start_custom(ondol::roster::DEMO_REGISTRY, "", &["run", "--demo"]).await
}

/// The token the start printed for `staff` (its banner line ends with it),
/// or the one its variable holds in this environment.
fn printed_token(server: &TestServer, staff: &str, variable: &str) -> String {
    let log = server.log();
    log.lines()
        .rev()
        .filter_map(|line| line.trim_start().strip_prefix(&format!("{staff} ")))
        .find_map(|rest| rest.split_whitespace().last().map(str::to_owned))
        .filter(|token| token.starts_with("demo-"))
        .or_else(|| std::env::var(variable).ok())
        .unwrap_or_else(|| panic!("no token for {staff} in the start-up output:\n{log}"))
}

async fn get(base: &str, path: &str, token: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("HTTP request");
    assert!(response.status().is_success(), "GET {path}: {response:?}");
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items")
}

fn opened_since(alert: &Value, start: Timestamp) -> bool {
    alert["opened_at"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t >= start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_alive_within_a_minute_of_its_start() {
    let started = Instant::now();
    let start = Timestamp::now();
    let server = demo().await;
    let ready = started.elapsed();
    let base = server.http_base();
    let caseworker = printed_token(&server, "cw-01", "ONDOL_TOKEN_CW_01");
    let admin = printed_token(&server, "ad-01", "ONDOL_TOKEN_AD_01");
    let log = server.log();
    assert!(log.contains("demo mode: a bearer token generated"), "{log}");
    assert!(log.contains("Dashboard and API: http://"), "{log}");

    // The board: every resident of the caseworker's has activity and a
    // check-in, at once (the week of history).
    let board = get(&base, "/api/v1/residents", &caseworker).await;
    let residents = items(&board);
    assert_eq!(residents.len(), 6, "cw-01 looks after r-0001..r-0006");
    for r in residents {
        assert!(r["last_activity_at"].is_string(), "no activity: {r}");
        assert!(r["last_checkin_at"].is_string(), "no check-in: {r}");
    }
    // A week of charts: heart rate from six days ago and more.
    let week_ago = start - SignedDuration::from_hours(7 * 24);
    let readings = get(
        &base,
        &format!("/api/v1/residents/r-0001/readings?type=heart_rate&from={week_ago}&limit=1000"),
        &caseworker,
    )
    .await;
    let earliest = items(&readings)
        .iter()
        .filter_map(|r| r["at"].as_str()?.parse::<Timestamp>().ok())
        .min()
        .expect("heart rate readings");
    assert!(
        earliest <= start - SignedDuration::from_hours(6 * 24),
        "the history starts only at {earliest}"
    );

    // Live alerts: a help press and a missed check-in, both raised after the
    // start, within the minute (the admin sees every resident's).
    let (help, missed) = loop {
        let alerts = get(&base, "/api/v1/alerts?status=open", &admin).await;
        let live: Vec<&Value> = items(&alerts)
            .iter()
            .filter(|a| opened_since(a, start))
            .collect();
        let find = |rule: &str| {
            live.iter()
                .find(|a| a["rule"] == rule)
                .map(|a| (*a).clone())
        };
        if let (Some(help), Some(missed)) = (find("help_request"), find("missed_checkin")) {
            break (help, missed);
        }
        assert!(
            started.elapsed() < ALIVE_WITHIN,
            "no live help request and missed check-in within {ALIVE_WITHIN:?}: {alerts}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(missed["cause"], "no_checkin", "{missed}");
    eprintln!(
        "demo ready after {ready:?}; live alerts within {:?}: help_request for {}, missed_checkin for {}",
        started.elapsed(),
        help["resident_id"],
        missed["resident_id"]
    );
    // The caseworker sees the open alerts of their residents too.
    let mine = get(&base, "/api/v1/alerts?status=open", &caseworker).await;
    assert!(
        items(&mine).iter().any(|a| opened_since(a, start)),
        "{mine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_demo_start_on_the_same_data_doubles_no_history() {
    let mut server = demo().await;
    let first_start = Timestamp::now();
    let before = first_start - SignedDuration::from_hours(1);
    let history = |server: &TestServer| {
        server.count(&format!(
            "SELECT COUNT(*) FROM readings WHERE ts_ms < {}",
            before.as_millisecond()
        ))
    };
    let readings = history(&server);
    assert!(readings > 1000, "a week of history: {readings} readings");
    let alerts = server.count("SELECT COUNT(*) FROM alerts");
    assert!(server.terminate().await.success(), "{}", server.log());

    server.spawn(&["run", "--demo"]).await;
    assert_eq!(history(&server), readings, "the history was written again");
    let again = server.count("SELECT COUNT(*) FROM alerts");
    // At most the new start's own live alerts.
    assert!(again <= alerts + 3, "{alerts} alerts before, {again} after");
    assert!(server.terminate().await.success(), "{}", server.log());
}

/// The fenced `sh` block under README.md's "Send a reading as a device",
/// and the receipt it promises (its `# → ` line).
fn readme_device_example() -> (String, String) {
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("README.md");
    let section = readme
        .split("## Send a reading as a device")
        .nth(1)
        .expect("the README's device section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block in the device section");
    let expected = block
        .lines()
        .find_map(|line| line.strip_prefix("# → "))
        .expect("the block's expected receipt, `# → ...`")
        .to_owned();
    (block.to_owned(), expected)
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_device_example_works_pasted_into_a_shell() {
    if find_server("mosquitto_rr", "mosquitto-clients").is_none() {
        return;
    }
    let (script, expected) = readme_device_example();
    assert!(!script.contains("\"ts\""), "no fixed timestamp: {script}");
    let server = demo().await;
    // The README says localhost:1883; this demo listens on a free port,
    // which mosquitto_rr takes from its options file, so the commands run
    // exactly as written.
    let options = server.dir.path().join("xdg");
    std::fs::create_dir_all(&options).expect("options dir");
    std::fs::write(
        options.join("mosquitto_rr"),
        format!("-p {}\n", server.mqtt_port),
    )
    .expect("options file");
    // Three times, as a newcomer retries: every run gets its receipt.
    for run in 1..=3 {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("XDG_CONFIG_HOME", &options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash");
        let deadline = Instant::now() + PATIENCE;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the README's device example got no receipt (run {run})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let output = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "run {run}: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.trim(), expected, "run {run}");
    }
    assert_eq!(
        server.count("SELECT COUNT(*) FROM readings WHERE device_id = 'try-0001'"),
        3
    );
}
