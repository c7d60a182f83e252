//! Runs a small fleet against a real rumqttd started in-process, with a fake
//! ingest that decodes every message with the real decoder and answers with
//! receipts, and checks what arrives and what the simulator counted.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ondol_model::wire::{self, DecodeLimits, Receipt, ReceiptRejection};
use ondol_sim::{SimConfig, synthetic_homes};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Starts rumqttd's router and a plain TCP v4 listener on our runtime, and
/// waits until it accepts connections.
async fn start_broker(port: u16) {
    let router = RouterConfig {
        // The three traps of DEPENDENCIES.md: all must be set.
        max_connections: 1000,
        max_outgoing_packet_count: 200,
        max_segment_size: 1 << 20,
        max_segment_count: 10,
        ..RouterConfig::default()
    };
    let router_tx = Router::new(0, router).spawn();
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let settings = ServerSettings {
        name: "test".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: 128 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
        },
    };
    let mut server = Server::new(settings, router_tx, rumqttd::protocol::v4::V4);
    tokio::spawn(async move { server.start(LinkType::Remote).await });
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("broker did not start listening");
}

#[derive(Debug, Default)]
struct Seen {
    /// Distinct (device, msg_id) pairs.
    messages: HashSet<(String, String)>,
    readings: u64,
    /// Readings the real decoder refused: the simulator must send none.
    refused: Vec<String>,
    receipts_published: u64,
    offline_statuses: u64,
    online_statuses: HashSet<String>,
    /// The newest reading time seen: how far simulated time has got.
    latest_reading: Option<Timestamp>,
}

/// Polls `done` until it holds, or fails after `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stand-in for ingest: decodes readings with the real decoder, answers
/// each message with a receipt (duplicates for a msg_id seen before) and
/// watches status messages.
async fn fake_ingest(port: u16, seen: Arc<Mutex<Seen>>) -> AsyncClient {
    let mut options = MqttOptions::new("fake-ingest", "127.0.0.1", port);
    options.set_max_packet_size(256 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client
        .subscribe(wire::READINGS_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe(wire::STATUS_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    let (receipts_tx, mut receipts_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let (subscribed_tx, mut subscribed_rx) = mpsc::channel::<()>(2);
    let poll_seen = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let device = p.topic.split('/').nth(3).unwrap_or_default().to_owned();
                    let mut seen = poll_seen.lock().unwrap();
                    if p.topic.ends_with("/status") {
                        let status = wire::decode_status(&p.payload).expect("a valid status");
                        if status.online {
                            assert_eq!(status.firmware.as_deref(), Some("sim-1.0"));
                            seen.online_statuses.insert(device);
                        } else {
                            seen.offline_statuses += 1;
                        }
                        continue;
                    }
                    let decoded = wire::decode_readings(
                        &p.payload,
                        Timestamp::now(),
                        &DecodeLimits::default(),
                    )
                    .expect("the simulator sends no garbage here");
                    let msg_id = decoded
                        .msg_id
                        .clone()
                        .expect("every message asks for a receipt");
                    let n = decoded.items.len();
                    let rejected: Vec<ReceiptRejection> = decoded
                        .items
                        .iter()
                        .enumerate()
                        .filter_map(|(index, item)| item.as_ref().err().map(|r| (index, r)))
                        .map(|(index, r)| ReceiptRejection {
                            index,
                            reason: r.reason,
                            detail: r.detail.clone(),
                        })
                        .collect();
                    seen.refused
                        .extend(rejected.iter().map(|r| r.detail.clone()));
                    let newest = decoded
                        .items
                        .iter()
                        .filter_map(|i| i.as_ref().ok())
                        .map(|r| r.ts)
                        .max();
                    seen.latest_reading = seen.latest_reading.max(newest);
                    let first = seen.messages.insert((device.clone(), msg_id.clone()));
                    if first {
                        seen.readings += n as u64;
                    }
                    let good = n - rejected.len();
                    let receipt = Receipt {
                        msg_id,
                        accepted: if first { good } else { 0 },
                        duplicates: if first { 0 } else { good },
                        rejected,
                        error: None,
                    };
                    seen.receipts_published += 1;
                    let _ = receipts_tx.send((
                        wire::receipts_topic(&device.parse().unwrap()),
                        receipt.to_json(),
                    ));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    // Publishing from another task: never await the client on the polling task.
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((topic, payload)) = receipts_rx.recv().await {
            if publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    // Ingest subscribes before devices connect: rumqttd drops publishes nobody subscribes to.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), subscribed_rx.recv())
            .await
            .expect("subscriptions acknowledged");
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_publishes_readings_and_counts_receipts() {
    let port = free_port();
    start_broker(port).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _ingest = fake_ingest(port, Arc::clone(&seen)).await;

    let homes = synthetic_homes(4, 3);
    let device_count: usize = homes.iter().map(|h| h.devices.len()).sum();
    let config = SimConfig {
        // Twelve simulated hours in about three real seconds, then real time.
        start: Timestamp::now() - SignedDuration::from_hours(12),
        speed: 14_400.0,
        seed: 3,
        offline_share: 0.5,
        readings_per_message: 4,
        batch_linger: Duration::from_millis(200),
        resend_after: Duration::from_secs(2),
        connect_ramp: Some(Duration::from_millis(200)),
        summary_interval: Duration::from_secs(1),
        ..SimConfig::new("127.0.0.1", port, homes)
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(ondol_sim::run(config, shutdown.clone()));
    // Until simulated time has caught up with the wall clock (a gateway's
    // smart plug reports every 15 minutes) and a receipt or two is in flight.
    wait_until(Duration::from_secs(30), "the simulation catches up", || {
        let seen = seen.lock().unwrap();
        let caught_up = Timestamp::now() - SignedDuration::from_mins(16);
        seen.latest_reading.is_some_and(|t| t >= caught_up) && seen.receipts_published > 50
    })
    .await;
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(10), sim)
        .await
        .expect("the simulator stops promptly")
        .expect("the task did not panic")
        .expect("the simulation ran");
    // Every device that was connected said goodbye with a retained offline status.
    wait_until(Duration::from_secs(5), "the goodbyes arrive", || {
        seen.lock().unwrap().offline_statuses >= device_count as u64
    })
    .await;

    let seen = seen.lock().unwrap();
    eprintln!("{report}");
    eprintln!(
        "seen: {} messages, {} readings, {} receipts, {} offline statuses",
        seen.messages.len(),
        seen.readings,
        seen.receipts_published,
        seen.offline_statuses
    );
    assert!(
        seen.refused.is_empty(),
        "refused readings: {:?}",
        seen.refused
    );
    // Twelve hours of a handful of homes is hundreds of readings.
    assert!(report.readings_sent > 300, "{report}");
    assert!(seen.readings > 300);
    assert!(seen.messages.len() as u64 <= report.messages_sent);
    assert!(seen.readings <= report.readings_sent);
    // Receipts came back and were counted; each reading accepted at most once.
    assert!(report.receipts > 0, "{report}");
    assert!(report.receipts <= seen.receipts_published);
    assert!(report.accepted > 300, "{report}");
    assert!(report.accepted <= report.readings_sent);
    assert_eq!(report.rejected, 0);
    assert_eq!(report.malformed_sent, 0);
    // Every device announced itself; flaky devices dropped (their Will fired)
    // and came back; at shutdown every connected device said goodbye.
    assert_eq!(seen.online_statuses.len(), device_count);
    assert!(report.reconnects > 0, "{report}");
    assert!(
        seen.offline_statuses >= device_count as u64,
        "{}",
        seen.offline_statuses
    );
    assert_eq!(report.connect_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_receipts_with_rejections() {
    let port = free_port();
    start_broker(port).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _ingest = fake_ingest_tolerant(port, Arc::clone(&seen)).await;
    let config = SimConfig {
        start: Timestamp::now() - SignedDuration::from_hours(6),
        speed: 14_400.0,
        offline_share: 0.0,
        malformed_rate: 0.3,
        readings_per_message: 2,
        batch_linger: Duration::from_millis(100),
        connect_ramp: Some(Duration::from_millis(100)),
        ..SimConfig::new("127.0.0.1", port, synthetic_homes(2, 9))
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(ondol_sim::run(config, shutdown.clone()));
    wait_until(
        Duration::from_secs(30),
        "enough messages are answered",
        || seen.lock().unwrap().receipts_published > 60,
    )
    .await;
    shutdown.cancel();
    let report = sim.await.expect("no panic").expect("ran");
    eprintln!("{report}");
    assert!(report.malformed_sent > 0, "{report}");
    assert!(report.rejected > 0, "{report}");
    assert!(report.refused_messages > 0, "{report}");
    assert!(report.accepted > 0, "{report}");
    let share = report.malformed_sent as f64 / report.messages_sent as f64;
    assert!((0.15..0.45).contains(&share), "garbage share {share}");
}

/// Like [`fake_ingest`] but answers garbage too: a whole-message refusal gets
/// a receipt when its msg_id could be salvaged.
async fn fake_ingest_tolerant(port: u16, seen: Arc<Mutex<Seen>>) -> AsyncClient {
    let mut options = MqttOptions::new("fake-ingest-tolerant", "127.0.0.1", port);
    options.set_max_packet_size(256 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client
        .subscribe(wire::READINGS_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    let (receipts_tx, mut receipts_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let (subscribed_tx, mut subscribed_rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut answered: HashMap<String, u64> = HashMap::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let device = p.topic.split('/').nth(3).unwrap_or_default().to_owned();
                    let receipt = match wire::decode_readings(
                        &p.payload,
                        Timestamp::now(),
                        &DecodeLimits::default(),
                    ) {
                        Ok(decoded) => {
                            let Some(msg_id) = decoded.msg_id else {
                                continue;
                            };
                            let rejected: Vec<ReceiptRejection> = decoded
                                .items
                                .iter()
                                .enumerate()
                                .filter_map(|(index, item)| {
                                    item.as_ref().err().map(|r| ReceiptRejection {
                                        index,
                                        reason: r.reason,
                                        detail: r.detail.clone(),
                                    })
                                })
                                .collect();
                            Receipt {
                                msg_id,
                                accepted: decoded.items.len() - rejected.len(),
                                duplicates: 0,
                                rejected,
                                error: None,
                            }
                        }
                        Err(whole) => {
                            let Some(msg_id) = whole.msg_id else { continue };
                            Receipt {
                                msg_id,
                                accepted: 0,
                                duplicates: 0,
                                rejected: Vec::new(),
                                error: Some(whole.rejection.into()),
                            }
                        }
                    };
                    *answered.entry(device.clone()).or_default() += 1;
                    seen.lock().unwrap().receipts_published += 1;
                    let _ = receipts_tx.send((
                        wire::receipts_topic(&device.parse().unwrap()),
                        receipt.to_json(),
                    ));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((topic, payload)) = receipts_rx.recv().await {
            if publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed_rx.recv())
        .await
        .expect("subscription acknowledged");
    client
}

/// The broker is down when the fleet starts: devices back off and retry and
/// connect once it is up. At first nobody answers (a watcher only counts), so
/// once ingest appears the devices' resends are what get receipted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_back_off_until_a_late_broker_comes_up_and_resend() {
    let port = free_port();
    let homes = synthetic_homes(2, 5);
    let device_count: usize = homes.iter().map(|h| h.devices.len()).sum();
    let config = SimConfig {
        start: Timestamp::now() - SignedDuration::from_hours(3),
        speed: 3600.0,
        offline_share: 0.0,
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(400),
        resend_after: Duration::from_millis(500),
        batch_linger: Duration::from_millis(100),
        connect_ramp: Some(Duration::ZERO),
        ..SimConfig::new("127.0.0.1", port, homes)
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(ondol_sim::run(config, shutdown.clone()));
    // Nothing listens yet: the time during which devices keep failing is the point.
    tokio::time::sleep(Duration::from_millis(800)).await;
    start_broker(port).await;

    let watched = Arc::new(Mutex::new(0u64));
    let mut options = MqttOptions::new("watcher", "127.0.0.1", port);
    options.set_max_packet_size(256 * 1024, 64 * 1024);
    let (watcher, mut eventloop) = AsyncClient::new(options, 10);
    watcher
        .subscribe(wire::READINGS_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    let count = Arc::clone(&watched);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => *count.lock().unwrap() += 1,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    wait_until(
        Duration::from_secs(20),
        "unanswered messages are published",
        || *watched.lock().unwrap() > 10,
    )
    .await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let _ingest = fake_ingest(port, Arc::clone(&seen)).await;
    wait_until(Duration::from_secs(30), "answers come back", || {
        seen.lock().unwrap().receipts_published > 20
    })
    .await;
    shutdown.cancel();
    let report = sim.await.expect("no panic").expect("ran");
    eprintln!("{report}");
    assert!(report.connect_failures >= device_count as u64, "{report}");
    assert!(report.resent > 0, "{report}");
    assert!(report.receipts > 0 && report.accepted > 0, "{report}");
    assert!(report.accepted <= report.readings_sent, "{report}");
    assert!(seen.lock().unwrap().refused.is_empty());
}
