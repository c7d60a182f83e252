//! The device fleet: one MQTT connection per device, QoS 1 publishes, a
//! subscription to its own receipts, latency from publish to receipt.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ondol_model::wire::Receipt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use crate::server::{ServerUnderTest, Usage};

/// Connections opened per second: rumqttd's accept loop is serial
/// (DEPENDENCIES.md), and a connect storm is not what this measures.
const CONNECTS_PER_SECOND: u64 = 500;
/// How long to wait for the last receipts after the load stops.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub devices: usize,
    /// Readings per second over the fleet; 0 = flat out.
    pub rate: u64,
    pub readings_per_message: usize,
    /// Messages in flight per device in flat-out mode.
    pub window: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Sample the server's memory this often during the measured window
    /// (a soak); None = only its peak at the end.
    pub sample_every: Option<Duration>,
}

impl LoadSpec {
    pub fn describe_rate(&self) -> String {
        if self.rate == 0 {
            format!(
                "flat out ({} in flight per device), {} readings per message",
                self.window, self.readings_per_message
            )
        } else {
            format!(
                "{} readings/s, {} per message",
                self.rate, self.readings_per_message
            )
        }
    }

    /// The pause between two messages of one device at the target rate.
    fn interval(&self) -> Option<Duration> {
        (self.rate > 0).then(|| {
            let messages_per_second = self.rate as f64 / self.readings_per_message as f64;
            Duration::from_secs_f64(self.devices as f64 / messages_per_second.max(0.001))
        })
    }
}

/// The ids of the bench devices and their residents.
fn device_id(i: usize) -> String {
    format!("bench-d{i:06}")
}

/// A roster with one resident and one gateway per bench device.
pub fn roster_toml(devices: usize) -> String {
    let mut out = String::from("# Bench roster: one resident and one gateway per device.\n");
    out.push_str(
        "[[staff]]\nid = \"bench-cw\"\nname = \"Bench Caseworker\"\nrole = \"caseworker\"\n",
    );
    for i in 0..devices {
        let _ = write!(
            out,
            "\n[[residents]]\nid = \"bench-r{i:06}\"\nname = \"Bench {i}\"\ntimezone = \"Asia/Seoul\"\nregion = \"bench\"\nenrolled_from = \"2026-01-01\"\ncaseworker = \"bench-cw\"\n\n[[devices]]\nid = \"{}\"\nresident = \"bench-r{i:06}\"\nkind = \"gateway\"\n",
            device_id(i)
        );
    }
    out
}

/// Publish-to-receipt latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The server's memory at one moment of a soak.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssSample {
    /// Seconds since the measured window began.
    pub at_s: f64,
    /// Resident set size of the server process(es), MiB.
    pub rss_mib: f64,
    /// Readings accepted so far in the window.
    pub accepted: u64,
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub measured: Duration,
    /// Readings accepted by receipts that arrived inside the measured window.
    pub accepted_in_window: u64,
    pub latency: Latency,
    /// Over the whole run, warm-up and drain included.
    pub readings_sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Messages that never got a receipt.
    pub unreceipted: u64,
    pub connect_failures: u64,
    /// Connection failures by error text.
    pub failure_reasons: std::collections::BTreeMap<String, u64>,
    /// Server CPU over the measured window and its peak memory.
    pub server_usage: Option<Usage>,
    /// The server's memory every `sample_every` (empty without it).
    pub rss_samples: Vec<RssSample>,
    /// Load averages (1, 5, 15 min) at the end of the measured window.
    pub load_average: Option<[f64; 3]>,
}

#[derive(Debug, Default)]
struct Shared {
    measuring: AtomicBool,
    stop_sending: AtomicBool,
    sent_readings: AtomicU64,
    accepted: AtomicU64,
    accepted_in_window: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    in_flight: AtomicU64,
    connect_failures: AtomicU64,
    /// Why connections failed, by error text (the first words say which
    /// side closed it).
    failure_reasons: Mutex<std::collections::BTreeMap<String, u64>>,
    latency_us: Mutex<Option<Histogram<u64>>>,
}

impl Shared {
    fn record(&self, receipt: &Receipt, latency: Duration) {
        self.accepted
            .fetch_add(receipt.accepted as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(receipt.duplicates as u64, Ordering::Relaxed);
        self.rejected
            .fetch_add(receipt.rejected.len() as u64, Ordering::Relaxed);
        if self.measuring.load(Ordering::Relaxed) {
            self.accepted_in_window
                .fetch_add(receipt.accepted as u64, Ordering::Relaxed);
            let mut histogram = self
                .latency_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if histogram.is_none() {
                *histogram = Histogram::new(3).ok().map(|mut h| {
                    h.auto(true);
                    h
                });
            }
            if let Some(h) = histogram.as_mut() {
                let _ = h.record(
                    u64::try_from(latency.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
            }
        }
    }

    fn latency(&self) -> Latency {
        let histogram = self
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ms = |us: u64| us as f64 / 1000.0;
        match histogram.as_ref() {
            Some(h) if !h.is_empty() => Latency {
                p50_ms: ms(h.value_at_quantile(0.50)),
                p95_ms: ms(h.value_at_quantile(0.95)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
            },
            _ => Latency::default(),
        }
    }
}

/// Connects the fleet, loads the server for warm-up + duration, drains.
pub async fn run(
    host: &str,
    port: u16,
    spec: &LoadSpec,
    server: Option<&ServerUnderTest>,
) -> anyhow::Result<Outcome> {
    let shared = Arc::new(Shared::default());
    // Timestamps one hour back, one millisecond apart per device, so every
    // reading is unique (no dedupe) and inside the accepted window.
    let base_ms = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(spec.devices);
    let mut tasks = Vec::with_capacity(spec.devices);
    for i in 0..spec.devices {
        let device = Device {
            id: device_id(i),
            host: host.to_owned(),
            port,
            spec: spec.clone(),
            shared: shared.clone(),
            next_ts_ms: base_ms,
        };
        tasks.push(tokio::spawn(device.run(ready_tx.clone())));
        if (i as u64 + 1).is_multiple_of(CONNECTS_PER_SECOND) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < spec.devices {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            _ => anyhow::bail!("only {ready} of {} devices connected", spec.devices),
        }
    }
    eprintln!("   {} devices connected; warming up", spec.devices);

    tokio::time::sleep(spec.warmup).await;
    let cpu_before = server.and_then(ServerUnderTest::usage);
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut rss_samples = Vec::new();
    match (spec.sample_every, server) {
        (Some(every), Some(server)) => {
            let end = started + spec.duration;
            let mut next = started;
            while next <= end {
                tokio::time::sleep_until(next.into()).await;
                if let Some(rss_mib) = server.rss_mib() {
                    let sample = RssSample {
                        at_s: started.elapsed().as_secs_f64(),
                        rss_mib,
                        accepted: shared.accepted_in_window.load(Ordering::Relaxed),
                    };
                    eprintln!(
                        "   t={:>6.0}s  rss {:>7.1} MiB  accepted {}",
                        sample.at_s, sample.rss_mib, sample.accepted
                    );
                    rss_samples.push(sample);
                }
                next += every;
            }
            tokio::time::sleep_until(end.into()).await;
        }
        _ => tokio::time::sleep(spec.duration).await,
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let measured = started.elapsed();
    let load_average = crate::server::load_average();
    let cpu_after = server.and_then(ServerUnderTest::usage);
    shared.stop_sending.store(true, Ordering::Relaxed);

    let deadline = Instant::now() + DRAIN;
    while shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in tasks {
        task.abort();
    }
    let server_usage = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some(Usage {
            cpu_seconds: after.cpu_seconds - before.cpu_seconds,
            peak_rss_mib: after.peak_rss_mib,
        }),
        _ => None,
    };
    Ok(Outcome {
        measured,
        accepted_in_window: shared.accepted_in_window.load(Ordering::Relaxed),
        latency: shared.latency(),
        readings_sent: shared.sent_readings.load(Ordering::Relaxed),
        accepted: shared.accepted.load(Ordering::Relaxed),
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        rejected: shared.rejected.load(Ordering::Relaxed),
        unreceipted: shared.in_flight.load(Ordering::Relaxed),
        connect_failures: shared.connect_failures.load(Ordering::Relaxed),
        failure_reasons: std::mem::take(
            &mut *shared
                .failure_reasons
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ),
        server_usage,
        rss_samples,
        load_average,
    })
}

struct Device {
    id: String,
    host: String,
    port: u16,
    spec: LoadSpec,
    shared: Arc<Shared>,
    next_ts_ms: i64,
}

impl Device {
    async fn run(mut self, ready: tokio::sync::mpsc::Sender<()>) {
        let mut options = MqttOptions::new(self.id.clone(), self.host.clone(), self.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options.set_inflight(u16::try_from(self.spec.window.max(10)).unwrap_or(u16::MAX));
        let (client, mut eventloop) = AsyncClient::new(options, self.spec.window * 2 + 16);
        // Small packets both ways: without this, Nagle's algorithm holds a
        // publish back until the broker's delayed ACK (tens of ms).
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let readings_topic = format!("ondol/v1/devices/{}/readings", self.id);
        let receipts_topic = format!("ondol/v1/devices/{}/receipts", self.id);
        let mut in_flight: HashMap<String, Instant> = HashMap::new();
        let mut counter: u64 = 0;
        let mut subscribed = false;
        let mut ticker = self.spec.interval().map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if client.try_subscribe(&receipts_topic, QoS::AtLeastOnce).is_err() {
                            self.shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if !subscribed {
                            subscribed = true;
                            let _ = ready.send(()).await;
                            if ticker.is_none() {
                                for _ in 0..self.spec.window {
                                    self.publish(&client, &readings_topic, &mut counter, &mut in_flight);
                                }
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let Ok(receipt) = Receipt::from_json(&publish.payload) else { continue };
                        if let Some(sent) = in_flight.remove(&receipt.msg_id) {
                            self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                            self.shared.record(&receipt, sent.elapsed());
                            if ticker.is_none() {
                                self.publish(&client, &readings_topic, &mut counter, &mut in_flight);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                        *self
                            .shared
                            .failure_reasons
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(error.to_string())
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                _ = tick, if subscribed => {
                    self.publish(&client, &readings_topic, &mut counter, &mut in_flight);
                }
            }
        }
    }

    fn publish(
        &mut self,
        client: &AsyncClient,
        topic: &str,
        counter: &mut u64,
        in_flight: &mut HashMap<String, Instant>,
    ) {
        if self.shared.stop_sending.load(Ordering::Relaxed) {
            return;
        }
        *counter += 1;
        let msg_id = format!("b{counter}");
        let mut readings = String::new();
        for k in 0..self.spec.readings_per_message {
            self.next_ts_ms += 1;
            if k > 0 {
                readings.push(',');
            }
            let _ = write!(
                readings,
                r#"{{"type":"heart_rate","value":{},"unit":"/min","ts":{}}}"#,
                60 + (self.next_ts_ms % 40),
                self.next_ts_ms
            );
        }
        let payload = format!(r#"{{"msg_id":"{msg_id}","readings":[{readings}]}}"#);
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
            .is_ok()
        {
            in_flight.insert(msg_id, Instant::now());
            self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
            self.shared
                .sent_readings
                .fetch_add(self.spec.readings_per_message as u64, Ordering::Relaxed);
        }
    }
}
