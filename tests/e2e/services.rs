//! Real servers for the production-mode tests, from Debian packages:
//! VictoriaMetrics (standing in for InfluxDB's write API) and Mosquitto (the
//! external broker). Each test starts its own on a free loopback port with a
//! temporary directory.
//!
//! A missing server binary fails the test when `ONDOL_REQUIRE_SERVICES=1`
//! (`.ci/run` sets it after installing them); otherwise the test prints what
//! to install and passes without running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{PATIENCE, free_port};

pub const REQUIRE_SERVICES: &str = "ONDOL_REQUIRE_SERVICES";

/// The server binary, or `None` (after saying what to install) when it is
/// missing and the environment does not require it.
pub fn find_server(binary: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let required = std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{binary} is not installed but {REQUIRE_SERVICES}=1: install it with `apt-get install -y {package}`"
        );
        eprintln!(
            "NOT RUN: this test needs {binary}; install it with `apt-get install -y {package}` \
             (set {REQUIRE_SERVICES}=1 to make its absence a failure)"
        );
    }
    found
}

fn spawn_logged(binary: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log");
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A VictoriaMetrics server.
pub struct VictoriaMetrics {
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

/// One exported series: its labels and its samples `(timestamp_ms, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(i64, f64)>,
}

impl VictoriaMetrics {
    pub async fn start() -> Option<VictoriaMetrics> {
        let binary = find_server("victoria-metrics", "victoria-metrics")?;
        let mut vm = VictoriaMetrics {
            binary,
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        vm.resume().await;
        Some(vm)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and data).
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let data = self.dir.path().join("data");
        let listen = format!("127.0.0.1:{}", self.port);
        let child = spawn_logged(
            &self.binary,
            &[
                "-storageDataPath",
                data.to_str().expect("utf-8 path"),
                "-httpListenAddr",
                &listen,
                "-retentionPeriod",
                "100y",
            ],
            &self.dir.path().join("vm.log"),
        );
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ok = self
                .http
                .get(format!("{}/health", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "VictoriaMetrics did not become ready:\n{}",
                std::fs::read_to_string(self.dir.path().join("vm.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server gracefully (it flushes what it holds).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Every sample of every series whose name starts with `prefix`.
    pub async fn export(&self, prefix: &str) -> Vec<Series> {
        self.http
            .post(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .expect("force_flush");
        let text = self
            .http
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", format!("{{__name__=~\"{prefix}.*\"}}"))])
            .send()
            .await
            .expect("export")
            .text()
            .await
            .expect("export body");
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let value: Value = serde_json::from_str(line).expect("export line is JSON");
            let labels = value["metric"]
                .as_object()
                .expect("metric")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let timestamps = value["timestamps"].as_array().expect("timestamps");
            let values = value["values"].as_array().expect("values");
            let samples = timestamps
                .iter()
                .zip(values)
                .map(|(t, v)| (t.as_i64().expect("ms"), v.as_f64().unwrap_or(f64::NAN)))
                .collect();
            out.push(Series { labels, samples });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Mosquitto broker with persistence, anonymous access, on loopback.
pub struct Mosquitto {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    pub async fn start() -> Option<Mosquitto> {
        Self::start_with("").await
    }

    /// With a second listener on the returned port that requires TLS and a
    /// client certificate (the test certificates in `tests/fixtures/tls`).
    pub async fn start_with_tls() -> Option<(Mosquitto, u16)> {
        let tls_port = free_port();
        let certs = tls_fixtures();
        let listener = format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            certs.join("ca.pem").display(),
            certs.join("server.pem").display(),
            certs.join("server.key").display(),
        );
        Some((Self::start_with(&listener).await?, tls_port))
    }

    async fn start_with(extra_listeners: &str) -> Option<Mosquitto> {
        let binary = find_server("mosquitto", "mosquitto")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "allow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 100000\nmax_inflight_messages 20\nlog_dest stderr\nlistener {port} 127.0.0.1\n{extra_listeners}",
                dir.path().display()
            ),
        )
        .expect("mosquitto config");
        let child = spawn_logged(
            &binary,
            &["-c", config.to_str().expect("utf-8 path")],
            &dir.path().join("mosquitto.log"),
        );
        let mut broker = Mosquitto {
            dir,
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = broker
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "mosquitto exited:\n{}",
                std::fs::read_to_string(broker.dir.path().join("mosquitto.log"))
                    .unwrap_or_default()
            );
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start:\n{}",
                std::fs::read_to_string(broker.dir.path().join("mosquitto.log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(broker)
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test-only CA, server and client certificates.
pub fn tls_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("tls")
}

/// An `ondol` process with its own config file and log, for tests that run
/// several (workers sharing one store) or need environment variables.
pub struct OndolProcess {
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl OndolProcess {
    /// Writes `config_toml` to `<dir>/<name>.toml`; logs go to `<dir>/<name>.log`.
    pub fn new(dir: &Path, name: &str, config_toml: &str, env: &[(&str, &str)]) -> OndolProcess {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config_toml).expect("write config");
        OndolProcess {
            config_path,
            log_path: dir.join(format!("{name}.log")),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Starts `ondol <args> --config FILE` and waits until this run logs a
    /// line containing `ready`.
    pub async fn start(&mut self, args: &[&str], ready: &str) {
        assert!(self.child.is_none(), "already running");
        let before = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(crate::support::binary())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn ondol");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if log.get(before..).is_some_and(|new| new.contains(ready)) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("ondol exited during start-up with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "ondol never logged {ready:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the process exits on its own (within the test patience).
    pub async fn wait_exit(&mut self) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PATIENCE * 2;
        while child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "ondol did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, no warning.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    /// SIGTERM; waits for a clean exit.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        terminate(&mut child);
    }
}

impl Drop for OndolProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The base config of a test process: loopback MQTT, the given data dir and
/// roster, debug logs of ingest.
pub fn base_config(mqtt_port: u16, data_dir: &Path, roster: &Path) -> String {
    format!(
        "[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n# Test devices connect without secrets.\nallow_anonymous = true\n[storage]\ndata_dir = {data_dir:?}\n[registry]\nfile = {roster:?}\n[log]\nfilter = \"info,ondol_ingest=debug\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
    )
}
