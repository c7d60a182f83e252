//! The Ondol under test: started on free loopback ports with a temporary
//! data directory, optionally behind a Mosquitto broker or writing its raw
//! readings to VictoriaMetrics through the InfluxDB sink, measured through
//! /proc (Linux).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;

/// Which broker the devices talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerMode {
    /// The broker embedded in ondol.
    Embedded,
    /// Mosquitto (Debian package `mosquitto`), with ondol's ingest as a client.
    Mosquitto,
    /// The embedded broker, raw readings through the InfluxDB sink to
    /// VictoriaMetrics (Debian package `victoria-metrics`), dedupe keys and
    /// rollups in SQLite.
    Influxdb,
    /// Mosquitto, two `--role ingest` workers in one share group and one
    /// `--role alerting` process, meeting through the store.
    Split,
}

impl BrokerMode {
    pub fn name(self) -> &'static str {
        match self {
            BrokerMode::Embedded => "embedded",
            BrokerMode::Mosquitto => "mosquitto",
            BrokerMode::Influxdb => "influxdb",
            BrokerMode::Split => "split",
        }
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

pub struct ServerUnderTest {
    dir: tempfile::TempDir,
    /// The ondol processes: (name, process); their logs are `<name>.log`.
    ondol: Vec<(String, Child)>,
    mosquitto: Option<Child>,
    /// VictoriaMetrics and its HTTP port (influxdb mode).
    victoria: Option<(Child, u16)>,
    device_port: u16,
}

impl ServerUnderTest {
    pub async fn start(binary: &Path, mode: BrokerMode, roster: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            binary.exists(),
            "{} not found; build it first: cargo build --release -p ondol -p ondol-bench",
            binary.display()
        );
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("registry.toml"), roster)?;
        let ondol_port = free_port()?;
        let mut server = ServerUnderTest {
            dir,
            ondol: Vec::new(),
            mosquitto: None,
            victoria: None,
            device_port: ondol_port,
        };
        let mut sink_section = String::new();
        let broker_line = match mode {
            BrokerMode::Embedded => "broker = \"embedded\"".to_owned(),
            BrokerMode::Influxdb => {
                let port = free_port()?;
                server.victoria = Some((start_victoria(server.dir.path(), port)?, port));
                wait_for_victoria(port).await?;
                sink_section = format!(
                    "[timeseries]\nbackend = \"influxdb\"\n[timeseries.influxdb]\nurl = \"http://127.0.0.1:{port}\"\n"
                );
                "broker = \"embedded\"".to_owned()
            }
            BrokerMode::Mosquitto | BrokerMode::Split => {
                let port = free_port()?;
                server.mosquitto = Some(start_mosquitto(server.dir.path(), port)?);
                wait_for_port(port)
                    .await
                    .context("mosquitto did not start")?;
                server.device_port = port;
                format!("broker = \"mqtt://127.0.0.1:{port}\"")
            }
        };
        // One process with every role, or the split: two workers and
        // alerting, each with its own client id.
        let processes: Vec<(&str, &str, &str)> = if mode == BrokerMode::Split {
            vec![
                (
                    "worker-1",
                    "ingest",
                    "client_id = \"bench-1\"\nshare_group = \"bench\"",
                ),
                (
                    "worker-2",
                    "ingest",
                    "client_id = \"bench-2\"\nshare_group = \"bench\"",
                ),
                ("alerting", "alerting", "client_id = \"bench-alerting\""),
            ]
        } else {
            vec![("ondol", "all", "")]
        };
        for (name, role, ingest_extra) in processes {
            let mqtt_port = if name == "ondol" {
                ondol_port
            } else {
                free_port()?
            };
            let config = format!(
                "[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n# Bench devices have no secrets.\nallow_anonymous = true\n[storage]\ndata_dir = {data:?}\n[registry]\nfile = {roster:?}\n[ingest]\n{broker_line}\n{ingest_extra}\n# The per-device rate limit is a policy, not a capacity: off for the bench.\ndevice_max_messages_per_minute = 1e12\ndevice_max_burst_messages = 1e12\n[log]\nfilter = \"warn,ondol::server=info\"\n[http]\nlisten = \"127.0.0.1:0\"\n{sink_section}",
                data = server.dir.path().join("data"),
                roster = server.dir.path().join("registry.toml"),
            );
            let config_path = server.dir.path().join(format!("{name}.toml"));
            std::fs::write(&config_path, config)?;
            let log = std::fs::File::create(server.dir.path().join(format!("{name}.log")))?;
            let child = Command::new(binary)
                .args(["run", "--role", role, "--config"])
                .arg(&config_path)
                // VictoriaMetrics ignores the token; the sink wants one.
                .env("ONDOL_INFLUXDB_TOKEN", "bench")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", binary.display()))?;
            server.ondol.push((name.to_owned(), child));
            // "ondol ready" is logged once its parts run (and, with the
            // embedded broker, once devices can connect).
            let deadline = Instant::now() + Duration::from_secs(60);
            while !server.log(name).contains("ondol ready") {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "ondol ({name}) did not start:\n{}",
                    server.log(name)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if matches!(mode, BrokerMode::Mosquitto | BrokerMode::Split) {
            // Ingest subscribes to Mosquitto on its first CONNACK, just
            // after "ready"; no reading may be published before that.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(server)
    }

    pub fn device_port(&self) -> u16 {
        self.device_port
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The commit-to-alerting lag the process running alerting measured
    /// (its `/metrics` histogram), if it answers.
    pub async fn alerting_lag(&self) -> Option<crate::report::Lag> {
        let name = self
            .ondol
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| *name == "ondol" || *name == "alerting")?;
        let log = self.log(name);
        let line = log.lines().rfind(|l| l.contains("ondol ready"))?;
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("http="))?;
        let text = http_client()
            .ok()?
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        crate::report::Lag::from_prometheus(&text, "ondol_alerting_feed_lag_seconds")
    }

    /// The measured processes: ondol and the broker or sink server it uses.
    fn pids(&self) -> Vec<u32> {
        self.ondol
            .iter()
            .map(|(_, child)| child)
            .chain(self.mosquitto.as_ref())
            .chain(self.victoria.as_ref().map(|(child, _)| child))
            .map(Child::id)
            .collect()
    }

    /// CPU and peak memory of ondol (and Mosquitto or VictoriaMetrics, when
    /// used) so far.
    pub fn usage(&self) -> Option<Usage> {
        let mut total = Usage::default();
        for pid in self.pids() {
            let usage = proc_usage(pid)?;
            total.cpu_seconds += usage.cpu_seconds;
            total.peak_rss_mib += usage.peak_rss_mib;
        }
        Some(total)
    }

    /// Resident memory of the measured processes right now, MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        let mut total = 0.0;
        for pid in self.pids() {
            total += proc_status_kib(pid, "VmRSS:")? / 1024.0;
        }
        Some(total)
    }

    /// Stops ondol gracefully and counts the readings it stored.
    pub async fn stop_and_count_readings(&mut self) -> anyhow::Result<u64> {
        for (name, mut child) in std::mem::take(&mut self.ondol) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                anyhow::ensure!(Instant::now() < deadline, "ondol ({name}) did not stop");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some((_, port)) = &self.victoria {
            return count_victoria_points(*port).await;
        }
        let db = rusqlite::Connection::open_with_flags(
            self.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let count: i64 = db.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("data").join("ondol.db")
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        for child in self
            .ondol
            .iter_mut()
            .map(|(_, child)| child)
            .chain(self.mosquitto.as_mut())
            .chain(self.victoria.as_mut().map(|(child, _)| child))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_mosquitto(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 100\nlog_dest none\n"
        ),
    )?;
    Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start mosquitto (apt-get install mosquitto)")
}

fn start_victoria(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("victoria-metrics.log"))?;
    Command::new("victoria-metrics")
        .arg("-storageDataPath")
        .arg(dir.join("victoria-metrics"))
        .arg("-httpListenAddr")
        .arg(format!("127.0.0.1:{port}"))
        // Samples older than the default month would be dropped with a 204.
        .arg("-retentionPeriod")
        .arg("100y")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start victoria-metrics (apt-get install victoria-metrics)")
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?)
}

async fn wait_for_victoria(port: u16) -> anyhow::Result<()> {
    let http = http_client()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "victoria-metrics did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples of the `reading_value` series (measurement `reading`, field
/// `value`) that VictoriaMetrics holds, after flushing what it buffers.
async fn count_victoria_points(port: u16) -> anyhow::Result<u64> {
    let http = http_client()?;
    let base = format!("http://127.0.0.1:{port}");
    http.get(format!("{base}/internal/force_flush"))
        .send()
        .await?
        .error_for_status()?;
    let export = http
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", "{__name__=\"reading_value\"}")])
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut count = 0u64;
    for line in export.lines().filter(|l| !l.trim().is_empty()) {
        let series: serde_json::Value = serde_json::from_str(line)?;
        count += series["values"].as_array().map_or(0, |v| v.len() as u64);
    }
    Ok(count)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Reads /proc/PID/stat (utime, stime) and /proc/PID/status (VmHWM).
fn proc_usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let hwm_kib = proc_status_kib(pid, "VmHWM:")?;
    // USER_HZ is 100 on every Linux we run on.
    Some(Usage {
        cpu_seconds: ticks / 100.0,
        peak_rss_mib: hwm_kib / 1024.0,
    })
}

/// One `kB` line of /proc/PID/status (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The machine's 1, 5 and 15 minute load averages: the machine is shared,
/// so every figure carries the load it was measured under.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}
