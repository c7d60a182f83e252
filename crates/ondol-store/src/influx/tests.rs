//! The sink's answers to what a server can say, against a tiny scripted
//! HTTP server on loopback (VictoriaMetrics, used by the end-to-end tests,
//! answers 204 to everything).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ondol_model::condition::OutageCause;
use ondol_model::{DeviceId, Reading, ReadingType, ReadingValue, ResidentId};

use super::*;
use crate::{Batch, Store};

type Script = Arc<dyn Fn(&str) -> u16 + Send + Sync>;

/// Answers each POST with the status `script` picks for its body, and
/// keeps the bodies it answered 204.
struct FakeInflux {
    url: String,
    script: Arc<Mutex<Script>>,
    written: Arc<Mutex<Vec<String>>>,
}

impl FakeInflux {
    fn start(script: impl Fn(&str) -> u16 + Send + Sync + 'static) -> FakeInflux {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Arc::new(script)));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (s, w) = (script.clone(), written.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let body = String::from_utf8(body).unwrap();
                let script = s.lock().unwrap().clone();
                let status = script(&body);
                if status == 204 {
                    w.lock().unwrap().push(body);
                }
                let text = if status == 204 {
                    ""
                } else {
                    "scripted refusal"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        FakeInflux {
            url,
            script,
            written,
        }
    }

    fn answer(&self, script: impl Fn(&str) -> u16 + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    fn written_lines(&self) -> Vec<String> {
        self.written
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }
}

fn config(url: &str) -> InfluxConfig {
    InfluxConfig {
        url: url.to_owned(),
        request_timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        ..InfluxConfig::default()
    }
}

fn reading(device: &str, ts_ms: i64) -> NewReading {
    let ts = Timestamp::from_millisecond(ts_ms).unwrap();
    NewReading {
        device_id: DeviceId::new(device).unwrap(),
        resident_id: ResidentId::new("r-1").unwrap(),
        reading: Reading {
            reading_type: ReadingType::Steps,
            value: ReadingValue::Number(5.0),
            sensor: None,
            ts,
        },
        received_at: ts,
        local_date: jiff::civil::date(2026, 11, 27),
        local_hour: 9,
        checkin_in_window: false,
        counts_as_activity: false,
    }
}

fn batch(readings: Vec<NewReading>) -> Batch {
    Batch {
        readings,
        ..Batch::default()
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_refused_token_holds_readings_in_the_spool_until_it_is_fixed() {
    let server = FakeInflux::start(|_| 401);
    let dir = tempfile::tempdir().unwrap();
    let sink = InfluxSink::open(&config(&server.url), "wrong", &dir.path().join("spool")).unwrap();
    let monitor = sink.monitor();
    let mut store = Store::open_with_sink(&dir.path().join("ondol.db"), Box::new(sink)).unwrap();

    let outcome = store
        .commit_batch(&batch(vec![reading("gw-1", 1_795_737_600_000)]))
        .unwrap();
    assert_eq!(outcome.accepted(), 1, "held in the spool, so acknowledged");
    assert_eq!(monitor.spool_depth().batches, 1);
    let outage = monitor.outage().expect("a system_outage condition");
    assert_eq!(outage.cause, OutageCause::SinkUnauthorized);
    assert!(server.written_lines().is_empty());

    server.answer(|_| 204);
    wait_for("the spool to drain", || monitor.spool_depth().batches == 0);
    wait_for("the condition to clear", || monitor.outage().is_none());
    assert_eq!(server.written_lines().len(), 1);
}

#[test]
fn a_line_refused_on_its_own_is_dead_lettered_and_its_neighbours_written() {
    let server = FakeInflux::start(|body| if body.contains("gw-bad") { 400 } else { 204 });
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sink = InfluxSink::open(&config(&server.url), "token", &spool).unwrap();
    let mut store = Store::open_with_sink(&dir.path().join("ondol.db"), Box::new(sink)).unwrap();

    let outcome = store
        .commit_batch(&batch(vec![
            reading("gw-1", 1_795_737_600_000),
            reading("gw-bad", 1_795_737_600_000),
            reading("gw-2", 1_795_737_600_000),
        ]))
        .unwrap();
    assert_eq!(outcome.accepted(), 3);
    let written = server.written_lines();
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(written.iter().all(|l| !l.contains("gw-bad")));
    let dead = std::fs::read_to_string(spool.join("dead-letters.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    let record: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert!(record["line"].as_str().unwrap().contains("device=gw-bad"));
    assert!(record["reason"].as_str().unwrap().contains("HTTP 400"));
}

#[test]
fn a_full_spool_refuses_the_batch_as_retryable_and_stores_none_of_its_keys() {
    // Nobody listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = InfluxConfig {
        spool_max_bytes: 10,
        ..config(&format!("http://127.0.0.1:{port}"))
    };
    let sink = InfluxSink::open(&config, "token", &dir.path().join("spool")).unwrap();
    let monitor = sink.monitor();
    let mut store = Store::open_with_sink(&dir.path().join("ondol.db"), Box::new(sink)).unwrap();

    store
        .commit_batch(&batch(vec![reading("gw-1", 1_795_737_600_000)]))
        .unwrap();
    assert_eq!(
        monitor.outage().map(|o| o.cause),
        Some(OutageCause::SinkUnreachable)
    );
    let error = store
        .commit_batch(&batch(vec![reading("gw-1", 1_795_737_601_000)]))
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(monitor.spool_depth().batches, 1);
    // Rolled back: the refused reading is not a duplicate when it comes again.
    let keys: i64 = rusqlite::Connection::open(dir.path().join("ondol.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM reading_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 1);
}
