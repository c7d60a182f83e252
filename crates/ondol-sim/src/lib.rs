//! A device fleet simulator and load generator that speaks the wire contract
//! (DESIGN §2) over real MQTT, exactly as devices do: one MQTT session per
//! device with a Will, a retained online status, readings at QoS 1 with a
//! `msg_id`, receipts kept track of and resends of whatever was not receipted.
//! It drives `ondol simulate`, the in-process demo of `ondol run --demo`, and
//! load tests. It reads no configuration: the binary maps CLI and config to
//! [`SimConfig`].
//!
//! Map of the crate:
//!
//! - [`run`] (here): validates the config, starts one task per device with a
//!   connect ramp, logs a periodic summary, and on shutdown returns the
//!   [`SimReport`].
//! - `device`: one device: its MQTT link (backoff, re-subscribe, Will, clean
//!   goodbye) and its logic (day plan in simulated time, batching, buffering
//!   while offline, unreceipted messages and resends, garbage).
//! - `schedule`: what a home does on a local day, a pure function of seed,
//!   resident and date (check-ins in the local window, DST included).
//! - `clock`: simulated time, compressed by `speed` but never ahead of the
//!   wall clock.
//! - `backoff`: exponential backoff with full jitter.
//! - `garbage`: malformed messages aimed at each refusal of ingest.
//! - `homes`: homes from a roster, or a synthetic roster and its homes.
//! - `report`: fleet-wide counters and the final report.
//! - [`Cue`] (here): scripted moments on top of the homes' days (the live
//!   demo's help press and forgotten check-in).

mod clock;
mod device;
mod garbage;
mod homes;
mod report;
mod schedule;
mod seed;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use ondol_model::roster::DeviceKind;
use ondol_model::{DeviceId, Reading, ReadingType, ReadingValue, ResidentId};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use homes::{homes_from_roster, homes_from_roster_at, synthetic_homes, synthetic_roster_toml};
pub use report::{Latency, SimReport};

use crate::clock::SimClock;
use crate::device::{DeviceSpec, Fleet, Home};
use crate::report::Counters;
use crate::schedule::{Behaviour, HomeProfile};
use crate::seed::Salt;

/// Everything a simulation run needs. Build it with [`SimConfig::new`] or
/// [`Default`] and override fields:
/// `SimConfig { speed: 60.0, ..SimConfig::new(host, port, homes) }`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub broker_host: String,
    pub broker_port: u16,
    pub homes: Vec<SimHome>,
    /// Time compression: simulated time = start + elapsed_real × speed, but never ahead of the
    /// real clock (readings stamped in the future would be rejected); once it catches up it runs at 1×.
    pub speed: f64,
    /// Where simulated time begins (e.g. now − 12 h for a demo). Keep it within ingest's
    /// `max_age` (30 days by default) or the first readings are refused as too old.
    pub start: Timestamp,
    /// Deterministic behaviour (days, outages, garbage) for a given seed.
    pub seed: u64,
    /// Share of residents who skip the morning check-in on a given day.
    pub missed_checkin_share: f64,
    /// Share of residents who go silent (no activity) for long stretches.
    pub silent_share: f64,
    /// Share of devices that drop offline now and then.
    pub offline_share: f64,
    /// Probability that a message is garbage (bad JSON, out-of-range, unknown type…); below 1.
    pub malformed_rate: f64,
    /// Batching of buffered readings, ≥ 1.
    pub readings_per_message: usize,
    /// First connects are spread uniformly over this window, so thousands of
    /// devices do not hit the broker's serial accept loop at once (DEPENDENCIES.md:
    /// 2,000 simultaneous connects stall rumqttd; 500/s is fine). `None`: as
    /// long as connecting 400 devices per second takes.
    pub connect_ramp: Option<Duration>,
    /// A partial batch is sent after waiting this long for more readings.
    pub batch_linger: Duration,
    /// A message without a receipt after this long is sent again.
    pub resend_after: Duration,
    /// Unreceipted messages a device keeps; when full it stops making new
    /// messages and buffers readings instead.
    pub max_unreceipted: usize,
    /// Readings a device buffers (offline, or waiting for receipts); beyond
    /// this the oldest are dropped and counted.
    pub max_buffered_readings: usize,
    /// Largest message payload; larger batches are split. Must stay under
    /// ingest's `max_payload_bytes` (64 KiB by default).
    pub max_payload_bytes: usize,
    /// MQTT keep-alive; at least one second (rumqttc refuses less).
    pub keep_alive: Duration,
    /// Reconnect backoff: full jitter below `min(cap, base × 2^attempt)`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How often the progress line is logged.
    pub summary_interval: Duration,
    /// Broker passwords of devices that need one (username is the device id).
    pub device_passwords: HashMap<DeviceId, DevicePassword>,
    /// Scripted moments on top of the homes' days (the live demo's help
    /// press, a missed check-in).
    pub cues: Vec<Cue>,
}

/// Devices per second the default connect ramp admits.
const RAMP_DEVICES_PER_SEC: f64 = 400.0;

impl Default for SimConfig {
    /// `127.0.0.1:1883`, no homes, real-time speed starting now, seed 1, 10 %
    /// missed check-ins, 5 % silent residents, 5 % flaky devices, no garbage,
    /// 5 readings per message, a connect ramp of 400 devices/s.
    fn default() -> Self {
        Self {
            broker_host: "127.0.0.1".to_owned(),
            broker_port: 1883,
            homes: Vec::new(),
            connect_ramp: None,
            speed: 1.0,
            start: Timestamp::now(),
            seed: 1,
            missed_checkin_share: 0.1,
            silent_share: 0.05,
            offline_share: 0.05,
            malformed_rate: 0.0,
            readings_per_message: 5,
            batch_linger: Duration::from_secs(2),
            resend_after: Duration::from_secs(10),
            max_unreceipted: 256,
            max_buffered_readings: 10_000,
            max_payload_bytes: 60 * 1024,
            keep_alive: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            // DEVICES.md's advice: with 5,000 devices coming back after a
            // power cut, a 30 s cap keeps every device within a minute.
            backoff_cap: Duration::from_secs(30),
            summary_interval: Duration::from_secs(10),
            device_passwords: HashMap::new(),
            cues: Vec::new(),
        }
    }
}

impl SimConfig {
    /// The defaults with a broker and homes.
    pub fn new(broker_host: impl Into<String>, broker_port: u16, homes: Vec<SimHome>) -> Self {
        Self {
            broker_host: broker_host.into(),
            broker_port,
            homes,
            ..Self::default()
        }
    }

    /// The ramp actually used: [`SimConfig::connect_ramp`] or its default.
    pub fn effective_connect_ramp(&self) -> Duration {
        self.connect_ramp.unwrap_or_else(|| {
            let devices: usize = self.homes.iter().map(|h| h.devices.len()).sum();
            Duration::from_secs_f64(devices as f64 / RAMP_DEVICES_PER_SEC)
        })
    }

    /// Every problem with the config at once, naming the field.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut problems = Vec::new();
        if self.broker_host.trim().is_empty() {
            problems.push("broker_host is empty".to_owned());
        }
        if self.broker_port == 0 {
            problems.push("broker_port is 0".to_owned());
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1e7) {
            problems.push(format!("speed must be in (0, 1e7], got {}", self.speed));
        }
        for (name, value) in [
            ("missed_checkin_share", self.missed_checkin_share),
            ("silent_share", self.silent_share),
            ("offline_share", self.offline_share),
        ] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!("{name} must be in [0, 1], got {value}"));
            }
        }
        if !(0.0..1.0).contains(&self.malformed_rate) {
            problems.push(format!(
                "malformed_rate must be in [0, 1), got {}",
                self.malformed_rate
            ));
        }
        if self.readings_per_message == 0 {
            problems.push("readings_per_message must be at least 1".to_owned());
        }
        if self.max_unreceipted == 0 {
            problems.push("max_unreceipted must be at least 1".to_owned());
        }
        if self.max_buffered_readings == 0 {
            problems.push("max_buffered_readings must be at least 1".to_owned());
        }
        if self.max_payload_bytes < 1024 {
            problems.push(format!(
                "max_payload_bytes must be at least 1024, got {}",
                self.max_payload_bytes
            ));
        }
        if self.keep_alive < Duration::from_secs(1) {
            problems.push("keep_alive must be at least 1 s".to_owned());
        }
        for (name, value) in [
            ("resend_after", self.resend_after),
            ("backoff_base", self.backoff_base),
            ("summary_interval", self.summary_interval),
        ] {
            if value.is_zero() {
                problems.push(format!("{name} must be positive"));
            }
        }
        if self.backoff_cap < self.backoff_base {
            problems.push("backoff_cap must be at least backoff_base".to_owned());
        }
        let mut seen = HashSet::new();
        let mut devices = 0;
        for home in &self.homes {
            for device in &home.devices {
                devices += 1;
                if !seen.insert(&device.id) {
                    // Two sessions with one client id would keep kicking each other off.
                    problems.push(format!("device {} appears more than once", device.id));
                }
            }
        }
        if devices == 0 {
            problems.push("homes contain no devices".to_owned());
        }
        let residents: HashSet<&ResidentId> = self.homes.iter().map(|h| &h.resident_id).collect();
        for cue in &self.cues {
            match cue {
                Cue::Send { device, .. } if !seen.contains(device) => {
                    problems.push(format!("a cue names device {device}, which no home has"));
                }
                Cue::SkipCheckin { resident, .. } if !residents.contains(resident) => {
                    problems.push(format!("a cue names resident {resident}, who has no home"));
                }
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::InvalidConfig { problems })
        }
    }
}

/// One resident's home and the devices in it.
#[derive(Debug, Clone)]
pub struct SimHome {
    pub resident_id: ResidentId,
    /// The resident's zone: days, nights and the check-in window are local to it.
    pub timezone: TimeZone,
    pub devices: Vec<SimDevice>,
}

/// A scripted moment of a run, on top of the homes' ordinary days.
#[derive(Debug, Clone, PartialEq)]
pub enum Cue {
    /// `device` sends one reading `after` the run's start, stamped then.
    Send {
        device: DeviceId,
        after: Duration,
        reading_type: ReadingType,
        value: ReadingValue,
    },
    /// The resident does not check in on this local date.
    SkipCheckin { resident: ResidentId, date: Date },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    pub id: DeviceId,
    pub kind: DeviceKind,
}

/// A device's broker password; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePassword(String);

impl DevicePassword {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DevicePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevicePassword(<redacted>)")
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator config: {}", problems.join("; "))]
    InvalidConfig { problems: Vec<String> },
}

impl SimError {
    /// Whether trying again unchanged could succeed: never, for a bad config.
    /// (Broker outages are not errors: devices retry with backoff.)
    pub fn is_retryable(&self) -> bool {
        match self {
            SimError::InvalidConfig { .. } => false,
        }
    }
}

/// How long devices get to say goodbye after shutdown before their tasks are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the fleet until `shutdown` is cancelled, then disconnects every
/// device cleanly and returns what happened. Broker trouble is not an error:
/// devices buffer and reconnect with backoff, as real ones do.
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> Result<SimReport, SimError> {
    run_observed(config, shutdown, FleetProgress::default()).await
}

/// A live view of a running fleet (for load tests that wait on it).
#[derive(Debug, Clone, Default)]
pub struct FleetProgress(Arc<Counters>);

impl FleetProgress {
    /// Devices with a live MQTT session right now.
    pub fn connected(&self) -> u64 {
        self.0.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counters so far, as the final report would show them.
    pub fn snapshot(&self) -> SimReport {
        self.0.snapshot()
    }
}

/// [`run`], updating `progress` as it goes.
pub async fn run_observed(
    config: SimConfig,
    shutdown: CancellationToken,
    progress: FleetProgress,
) -> Result<SimReport, SimError> {
    config.validate()?;
    let counters = progress.0;
    let origin = Instant::now();
    let clock = SimClock::new(origin, Timestamp::now(), config.start, config.speed);
    let behaviour = Behaviour {
        missed_checkin_share: config.missed_checkin_share,
        silent_share: config.silent_share,
    };
    let fleet = Arc::new(Fleet {
        broker_host: config.broker_host.clone(),
        broker_port: config.broker_port,
        clock,
        start: config.start,
        seed: config.seed,
        behaviour,
        malformed_rate: config.malformed_rate,
        readings_per_message: config.readings_per_message,
        batch_linger: config.batch_linger,
        resend_after: config.resend_after,
        max_unreceipted: config.max_unreceipted,
        max_buffered_readings: config.max_buffered_readings,
        max_payload_bytes: config.max_payload_bytes,
        keep_alive: config.keep_alive,
        backoff_base: config.backoff_base,
        backoff_cap: config.backoff_cap,
        // Random per run (not per seed): a rerun must not mistake the previous
        // run's late receipts for its own.
        run_prefix: format!("{:08x}", rand::rng().random::<u32>()),
        counters: Arc::clone(&counters),
    });

    let mut tasks = JoinSet::new();
    let mut ramp_rng = seed::rng(config.seed, Salt::Device, &[0]);
    let ramp = config.effective_connect_ramp();
    let mut device_count = 0usize;
    for home in &config.homes {
        let mut profile = HomeProfile::new(config.seed, &home.resident_id, &behaviour);
        profile.skips_checkin = config
            .cues
            .iter()
            .filter_map(|cue| match cue {
                Cue::SkipCheckin { resident, date } if *resident == home.resident_id => Some(*date),
                _ => None,
            })
            .collect();
        let shared = Arc::new(Home {
            profile,
            timezone: home.timezone.clone(),
            kinds: home.devices.iter().map(|d| d.kind).collect(),
        });
        for (index, device) in home.devices.iter().enumerate() {
            let mut flaky_rng = seed::rng(
                config.seed,
                Salt::Device,
                &[seed::hash_str(device.id.as_str())],
            );
            let spec = DeviceSpec {
                id: device.id.clone(),
                kind: device.kind,
                index,
                home: Arc::clone(&shared),
                password: config
                    .device_passwords
                    .get(&device.id)
                    .map(|p| p.expose().to_owned()),
                connect_at: origin + ramp.mul_f64(ramp_rng.random::<f64>()),
                flaky: flaky_rng.random_bool(config.offline_share),
                cued: cued_readings(&config, &device.id),
            };
            tasks.spawn(device::run(spec, Arc::clone(&fleet), shutdown.clone()));
            device_count += 1;
        }
    }
    info!(
        homes = config.homes.len(),
        devices = device_count,
        speed = config.speed,
        start = %config.start,
        broker = %format_args!("{}:{}", config.broker_host, config.broker_port),
        connect_ramp_ms = ramp.as_millis() as u64,
        "simulator starting"
    );

    let mut summary =
        tokio::time::interval_at(origin + config.summary_interval, config.summary_interval);
    summary.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = summary.tick() => log_progress(&counters, &fleet.clock),
            joined = tasks.join_next() => match joined {
                Some(Err(e)) => error!(error = %e, "a simulated device task failed"),
                Some(Ok(())) => {}
                None => break,
            },
        }
    }

    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                error!(error = %e, "a simulated device task failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        error!(
            remaining = tasks.len(),
            "devices did not stop in time; aborting them"
        );
        tasks.shutdown().await;
    }
    let report = counters.snapshot();
    info!(%report, "simulator stopped");
    Ok(report)
}

/// The readings `device` is cued to send, stamped at their moments.
fn cued_readings(config: &SimConfig, device: &DeviceId) -> Vec<Reading> {
    config
        .cues
        .iter()
        .filter_map(|cue| match cue {
            Cue::Send {
                device: who,
                after,
                reading_type,
                value,
            } if who == device => {
                let after = jiff::SignedDuration::try_from(*after).ok()?;
                let ts = config.start.checked_add(after).ok()?;
                Some(Reading {
                    reading_type: *reading_type,
                    value: *value,
                    sensor: None,
                    ts: Timestamp::from_millisecond(ts.as_millisecond()).ok()?,
                })
            }
            _ => None,
        })
        .collect()
}

fn log_progress(counters: &Counters, clock: &SimClock) {
    let r = counters.snapshot();
    let connected = counters
        .connected
        .load(std::sync::atomic::Ordering::Relaxed);
    info!(
        sim_time = %clock.sim_at(Instant::now()),
        connected,
        messages_sent = r.messages_sent,
        readings_sent = r.readings_sent,
        receipts = r.receipts,
        accepted = r.accepted,
        duplicates = r.duplicates,
        rejected = r.rejected,
        resent = r.resent,
        reconnects = r.reconnects,
        connect_failures = r.connect_failures,
        "simulator progress"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_every_problem_is_reported_at_once() {
        let homes = synthetic_homes(3, 1);
        let config = SimConfig::new("127.0.0.1", 1883, homes.clone());
        assert!(config.validate().is_ok());
        let devices: usize = homes.iter().map(|h| h.devices.len()).sum();
        assert_eq!(
            config.effective_connect_ramp(),
            Duration::from_secs_f64(devices as f64 / 400.0)
        );
        let explicit = SimConfig {
            connect_ramp: Some(Duration::ZERO),
            ..config.clone()
        };
        assert_eq!(explicit.effective_connect_ramp(), Duration::ZERO);

        let mut dup = homes.clone();
        let first = dup[0].devices[0].clone();
        dup[1].devices.push(first);
        let bad = SimConfig {
            speed: 0.0,
            silent_share: 1.5,
            malformed_rate: 1.0,
            readings_per_message: 0,
            keep_alive: Duration::from_millis(500),
            ..SimConfig::new("", 1883, dup)
        };
        let Err(SimError::InvalidConfig { problems }) = bad.validate() else {
            panic!("expected an invalid config");
        };
        let text = problems.join("\n");
        for key in [
            "broker_host",
            "speed",
            "silent_share",
            "malformed_rate",
            "readings_per_message",
            "keep_alive",
            "more than once",
        ] {
            assert!(text.contains(key), "missing {key} in {text}");
        }
        assert!(!SimError::InvalidConfig { problems }.is_retryable());

        let stranger = SimConfig {
            cues: vec![
                Cue::Send {
                    device: DeviceId::new("nobody").expect("id"),
                    after: Duration::from_secs(1),
                    reading_type: ReadingType::Fall,
                    value: ReadingValue::Fall,
                },
                Cue::SkipCheckin {
                    resident: ResidentId::new("r-none").expect("id"),
                    date: Date::constant(2026, 12, 8),
                },
            ],
            ..config.clone()
        };
        let Err(SimError::InvalidConfig { problems }) = stranger.validate() else {
            panic!("cues for strangers are refused");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(SimConfig::new("h", 1, Vec::new()).validate().is_err());
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let mut config = SimConfig::new("h", 1, synthetic_homes(1, 1));
        let id = config.homes[0].devices[0].id.clone();
        config
            .device_passwords
            .insert(id, DevicePassword::new("hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
