//! A real `ondol` process on free ports with a temporary data directory,
//! and devices that speak MQTT to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

/// How long any single wait in these tests may take before the test fails.
/// Generous: CI machines are slow and shared; nothing here measures speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The roster every test server starts with: two residents in two time
/// zones, their devices, and one device that has been revoked.
pub const TEST_ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "Test Resident One"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"

[[residents]]
id = "r-2"
name = "Test Resident Two"
timezone = "Europe/Lisbon"
region = "alentejo"
enrolled_from = "2026-01-01"
caseworker = "cw-1"
checkin = { window = "07:00-11:00", passive = true }

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"

[[devices]]
id = "wr-1"
resident = "r-1"
kind = "wearable"

[[devices]]
id = "bt-2"
resident = "r-2"
kind = "button"

[[devices]]
id = "old-1"
resident = "r-2"
kind = "sensor"
active = false

[[staff]]
id = "cw-1"
name = "Test Caseworker"
role = "caseworker"
"#;

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ondol-under-test"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `ondol run`, with everything it needs in a temp dir.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub mqtt_port: u16,
    pub config_path: PathBuf,
    child: Option<Child>,
}

impl TestServer {
    /// Starts a server with the test roster and waits until devices can connect.
    pub async fn start() -> TestServer {
        Self::start_with("", &["run"]).await
    }

    /// Like [`start`](Self::start), with extra TOML appended to the config
    /// and other arguments than `run`.
    pub async fn start_with(extra_config: &str, args: &[&str]) -> TestServer {
        Self::start_custom(TEST_ROSTER, extra_config, args).await
    }

    /// A server with its own roster file, extra config and arguments
    /// (devices may connect without secrets).
    pub async fn start_custom(roster_toml: &str, extra_config: &str, args: &[&str]) -> TestServer {
        Self::start_custom_env(roster_toml, extra_config, args, &[]).await
    }

    /// Like [`start_custom`](Self::start_custom), with extra environment
    /// variables for the process (secrets are read from the environment).
    pub async fn start_custom_env(
        roster_toml: &str,
        extra_config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut server = Self::prepare(roster_toml, "allow_anonymous = true", extra_config);
        server.spawn_env(args, env).await;
        server
    }

    /// A new temp dir with the roster and a config on free ports;
    /// `mqtt_extra` goes into `[mqtt]`, `extra_config` is appended.
    fn prepare(roster_toml: &str, mqtt_extra: &str, extra_config: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let roster = dir.path().join("registry.toml");
        std::fs::write(&roster, roster_toml).expect("write roster");
        let mqtt_port = free_port();
        let config_path = dir.path().join("ondol.toml");
        let config = format!(
            "[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n{mqtt_extra}\n[storage]\ndata_dir = {data:?}\n[registry]\nfile = {roster:?}\n[log]\nfilter = \"info,ondol_ingest=debug\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra_config}\n",
            data = dir.path().join("data"),
        );
        std::fs::write(&config_path, config).expect("write config");
        TestServer {
            dir,
            mqtt_port,
            config_path,
            child: None,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ondol.log")
    }

    /// Everything the server logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the process (again) and waits until it logs "ondol ready".
    pub async fn spawn(&mut self, args: &[&str]) {
        self.spawn_env(args, &[]).await;
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub async fn spawn_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "already running");
        // The log accumulates over restarts: wait for one more "ready".
        let ready_before = self.log().matches("ondol ready").count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn ondol");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while self.log().matches("ondol ready").count() <= ready_before {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "ondol exited during start-up with {status}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ondol never became ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks for a graceful stop (SIGTERM) and waits for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        wait_exit(&mut child).await
    }

    /// Kills the process without warning (SIGKILL).
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        wait_exit(&mut child).await;
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("data").join("ondol.db")
    }

    /// A read-only connection to the server's store.
    pub fn db(&self) -> rusqlite::Connection {
        open_db(&self.database_path())
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db()
            .query_row(sql, [], |row| row.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn device(&self, id: &str) -> TestDevice {
        TestDevice::connect(self.mqtt_port, id).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn open_db(path: &Path) -> rusqlite::Connection {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store read-only");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    db
}

async fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "ondol did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A device: an MQTT client subscribed to its own receipts.
pub struct TestDevice {
    pub id: String,
    pub client: AsyncClient,
    receipts: mpsc::UnboundedReceiver<Value>,
    /// Receipts that arrived while waiting for another msg_id.
    early: HashMap<String, Value>,
    /// The connection task; stopped on drop so a later device with the same
    /// id is not kicked off by this one reconnecting.
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl TestDevice {
    pub async fn connect(port: u16, id: &str) -> TestDevice {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        let (tx, receipts) = mpsc::unbounded_channel();
        let (subacked_tx, mut subacked) = mpsc::unbounded_channel();
        let connection = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let value: Value = serde_json::from_slice(&publish.payload)
                            .unwrap_or_else(|e| panic!("receipt is not JSON ({e})"));
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subacked_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        client
            .subscribe(format!("ondol/v1/devices/{id}/receipts"), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        tokio::time::timeout(PATIENCE, subacked.recv())
            .await
            .expect("subscription acknowledged in time");
        TestDevice {
            id: id.to_owned(),
            client,
            receipts,
            early: HashMap::new(),
            connection,
        }
    }

    pub fn readings_topic(&self) -> String {
        format!("ondol/v1/devices/{}/readings", self.id)
    }

    /// Publishes a reading message (QoS 1).
    pub async fn publish(&self, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(
                self.readings_topic(),
                QoS::AtLeastOnce,
                false,
                payload.into(),
            )
            .await
            .expect("publish");
    }

    /// Publishes to this device's status topic.
    pub async fn publish_status(&self, payload: &str, retain: bool) {
        self.client
            .publish(
                format!("ondol/v1/devices/{}/status", self.id),
                QoS::AtLeastOnce,
                retain,
                payload.as_bytes().to_vec(),
            )
            .await
            .expect("publish status");
    }

    /// Waits for the receipt answering `msg_id`.
    pub async fn receipt(&mut self, msg_id: &str) -> Value {
        if let Some(receipt) = self.early.remove(msg_id) {
            return receipt;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let receipt = tokio::time::timeout_at(deadline, self.receipts.recv())
                .await
                .unwrap_or_else(|_| panic!("no receipt for {msg_id} on {}", self.id))
                .expect("device connection task alive");
            let id = receipt["msg_id"].as_str().unwrap_or_default().to_owned();
            if id == msg_id {
                return receipt;
            }
            self.early.insert(id, receipt);
        }
    }

    /// Receipts received so far without waiting, keyed by msg_id.
    pub fn drain_receipts(&mut self) -> HashMap<String, Value> {
        while let Ok(receipt) = self.receipts.try_recv() {
            let id = receipt["msg_id"].as_str().unwrap_or_default().to_owned();
            self.early.insert(id, receipt);
        }
        std::mem::take(&mut self.early)
    }

    /// Publish and wait for the receipt.
    pub async fn send(&mut self, payload: Value) -> Value {
        let msg_id = payload["msg_id"].as_str().expect("msg_id").to_owned();
        self.publish(payload.to_string()).await;
        self.receipt(&msg_id).await
    }
}

/// Epoch milliseconds `minutes_ago` before now: inside the accepted window.
pub fn ms_ago(minutes_ago: i64) -> i64 {
    jiff::Timestamp::now().as_millisecond() - minutes_ago * 60_000
}

/// A server with device authentication on (no anonymous clients): its own
/// roster, keys added to `[mqtt]`, other sections appended, and extra
/// environment variables (device secrets, staff tokens). Ready when it has
/// logged "ondol ready" (an anonymous MQTT probe would be refused).
pub async fn start_secure(
    roster_toml: &str,
    mqtt_extra: &str,
    extra_config: &str,
    env: &[(&str, &str)],
) -> TestServer {
    let mqtt_extra = format!("access_reload_interval = \"100ms\"\n{mqtt_extra}");
    let mut server = TestServer::prepare(roster_toml, &mqtt_extra, extra_config);
    server.spawn_env(&["run"], env).await;
    server
}

/// What an MQTT client saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    ConnAck,
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
    PubAck,
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    /// The connection ended (the broker closed it, or refused it before
    /// any CONNACK); the client does not reconnect.
    Closed,
}

/// An MQTT client that never reconnects, so a refusal or a forced
/// disconnect shows as [`Seen::Closed`].
pub struct Client {
    pub client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Connects `client_id` with optional credentials (and Will).
    pub fn connect(
        port: u16,
        client_id: &str,
        login: Option<(&str, &str)>,
        will: Option<rumqttc::LastWill>,
    ) -> Client {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(true);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        if let Some(will) = will {
            options.set_last_will(will);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Seen::ConnAck,
                    Ok(Event::Incoming(Packet::SubAck(ack))) => Seen::SubAck(ack.return_codes),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Seen::PubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    },
                    Ok(_) => continue,
                    Err(_) => {
                        let _ = tx.send(Seen::Closed);
                        return;
                    }
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Client { client, seen, task }
    }

    /// The next thing seen, failing the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(PATIENCE, self.seen.recv())
            .await
            .expect("the MQTT client saw something in time")
            .unwrap_or(Seen::Closed)
    }

    /// Waits until `want` is seen (skipping other events); panics if the
    /// connection closes first (unless `want` is `Closed`).
    pub async fn wait_for(&mut self, want: fn(&Seen) -> bool) -> Seen {
        loop {
            let seen = self.next().await;
            if want(&seen) {
                return seen;
            }
            assert!(seen != Seen::Closed, "the connection closed first");
        }
    }

    /// Whether the broker admitted the client (CONNACK) or closed it.
    pub async fn admitted(&mut self) -> bool {
        match self.next().await {
            Seen::ConnAck => true,
            Seen::Closed => false,
            other => panic!("expected CONNACK or close, saw {other:?}"),
        }
    }
}

/// Runs `ondol` with `args` and the server's config; returns (status, stdout, stderr).
pub fn ondol_cli(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(&server.config_path)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ondol");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl TestServer {
    /// The running process's id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl TestServer {
    /// `http://127.0.0.1:PORT` of the HTTP API, from the last "ondol
    /// ready" line (test servers listen on port 0: the system picks one).
    pub fn http_base(&self) -> String {
        http_base_in(&self.log())
    }
}

/// A webhook receiver on a free loopback port: `POST /hook` goes to
/// `handler` with `state`. Returns the URL to configure as
/// `alerting.webhook_url`.
pub async fn webhook_receiver<H, T, S>(handler: H, state: S) -> String
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handler))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on loopback");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// `http://127.0.0.1:PORT` from the last "ondol ready" line of a process's
/// log (test processes listen on port 0: the system picks one).
pub fn http_base_in(log: &str) -> String {
    let line = log
        .lines()
        .rfind(|l| l.contains("ondol ready"))
        .expect("the process logged \"ondol ready\"");
    // Strip ANSI colour codes, then read the `http=` field.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let addr = plain
        .split_whitespace()
        .find_map(|field| field.strip_prefix("http="))
        .unwrap_or_else(|| panic!("no http= in {plain:?}"));
    format!("http://{addr}")
}

/// Where tests keep what a person may want to look at afterwards
/// (screenshots, printed reports): `e2e-artifacts` in the target directory
/// this test binary was built into (`<target>/debug/deps/e2e-*`).
pub fn artifacts_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
        .join("e2e-artifacts")
}

/// Runs `ondol <args> --config <config>` to the end (no server, no
/// pseudonym key from the environment): whether it succeeded, and its stderr.
pub fn ondol_with_config(config: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("ONDOL_PSEUDONYM_KEY")
        .output()
        .expect("run ondol");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
