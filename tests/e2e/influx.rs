//! The InfluxDB sink against a real `/api/v2/write` server (VictoriaMetrics):
//! points land with the right tags, fields and timestamps; a sink that goes
//! away and comes back loses nothing and stores resends once.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use ondol_model::reading::{CheckinValue, ReadingValue};
use ondol_model::{DeviceId, Reading, ReadingType, ResidentId};
use ondol_store::{Batch, InfluxConfig, InfluxSink, NewReading, Store};
use serde_json::json;

use crate::services::{OndolProcess, Series, VictoriaMetrics, base_config};
use crate::support::{TEST_ROSTER, TestDevice, eventually, free_port};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Polls the export until it holds `expected` samples in total.
async fn exported(vm: &VictoriaMetrics, expected: usize) -> Vec<Series> {
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let series = vm.export("reading_").await;
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        if samples >= expected {
            return series;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {samples} of {expected} samples arrived: {series:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_land_in_influxdb_with_their_tags_fields_and_timestamps() {
    let Some(vm) = VictoriaMetrics::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let roster = dir.path().join("registry.toml");
    std::fs::write(&roster, TEST_ROSTER).expect("roster");
    let mqtt_port = free_port();
    let config = format!(
        "{}[timeseries]\nbackend = \"influxdb\"\n[timeseries.influxdb]\nurl = \"{}\"\ntoken_env = \"ONDOL_TEST_INFLUX_TOKEN\"\n",
        base_config(mqtt_port, &dir.path().join("data"), &roster),
        vm.url()
    );
    let mut ondol = OndolProcess::new(
        dir.path(),
        "ondol",
        &config,
        &[("ONDOL_TEST_INFLUX_TOKEN", "test-token")],
    );
    ondol.start(&["run"], "ondol ready").await;

    // Whole seconds minus a few ms, to see the millisecond part survive.
    let base = Timestamp::now().as_millisecond() / 1000 * 1000 - 600_000;
    let (t1, t2, t3, t4) = (base + 7, base + 60_011, base + 120_013, base + 180_017);
    let message = json!({
        "msg_id": "influx-1",
        "readings": [
            {"type": "heart_rate", "value": 72, "unit": "/min", "ts": t1},
            {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]", "ts": t2},
            {"type": "motion", "value": 1, "sensor": "pir-kitchen", "ts": t3},
            {"type": "checkin", "value": "ok", "ts": t4}
        ]
    });
    let mut device = TestDevice::connect(mqtt_port, "gw-1").await;
    let receipt = device.send(message.clone()).await;
    assert_eq!(receipt["accepted"], 4, "{receipt}");

    let series = exported(&vm, 5).await;
    let tags = |kind: &str| {
        labels(&[
            ("device", "gw-1"),
            ("region", "gangjin"),
            ("resident", "r-1"),
            ("type", kind),
        ])
    };
    let with = |mut l: BTreeMap<String, String>, k: &str, v: &str| {
        l.insert(k.to_owned(), v.to_owned());
        l
    };
    let expected = vec![
        Series {
            labels: with(tags("blood_pressure"), "__name__", "reading_diastolic"),
            samples: vec![(t2, 82.0)],
        },
        Series {
            labels: with(tags("checkin"), "__name__", "reading_state"),
            // VictoriaMetrics keeps string fields as 0.
            samples: vec![(t4, 0.0)],
        },
        Series {
            labels: with(tags("blood_pressure"), "__name__", "reading_systolic"),
            samples: vec![(t2, 128.0)],
        },
        Series {
            labels: with(tags("heart_rate"), "__name__", "reading_value"),
            samples: vec![(t1, 72.0)],
        },
        Series {
            labels: with(
                with(tags("motion"), "__name__", "reading_value"),
                "sensor",
                "pir-kitchen",
            ),
            samples: vec![(t3, 1.0)],
        },
    ];
    let mut expected = expected;
    expected.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(series, expected);

    // Each worker spools in its own directory, named by its client id.
    assert!(dir.path().join("data/influx-spool/ondol-ingest").is_dir());
    // The raw readings are not in SQLite; their dedupe keys are.
    let db = crate::support::open_db(&dir.path().join("data").join("ondol.db"));
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT COUNT(*) FROM readings"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM reading_keys"), 4);

    // A resend is a duplicate and is not written again.
    let again = device.send(message).await;
    assert_eq!(
        (again["accepted"].clone(), again["duplicates"].clone()),
        (json!(0), json!(4))
    );
    ondol.terminate();
    assert_eq!(exported(&vm, 5).await, expected);
}

fn reading(device: &str, resident: &str, ts_ms: i64, value: ReadingValue) -> NewReading {
    let ts = Timestamp::from_millisecond(ts_ms).expect("valid time");
    let reading_type = match value {
        ReadingValue::Checkin(_) => ReadingType::Checkin,
        _ => ReadingType::HeartRate,
    };
    NewReading {
        device_id: DeviceId::new(device).expect("id"),
        resident_id: ResidentId::new(resident).expect("id"),
        reading: Reading {
            reading_type,
            value,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_loses_nothing_and_resends_are_stored_once() {
    let Some(mut vm) = VictoriaMetrics::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = InfluxConfig {
        url: vm.url(),
        request_timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        ..InfluxConfig::default()
    };
    let spool_dir = dir.path().join("influx-spool");
    let sink = InfluxSink::open(&config, "token", &spool_dir).expect("sink");
    let monitor = sink.monitor();
    let mut store =
        Store::open_with_sink(&dir.path().join("ondol.db"), Box::new(sink)).expect("store");
    let roster = ondol_store::parse_roster(TEST_ROSTER, "test roster").expect("roster");
    store.import_roster(&roster).expect("import");

    let base = Timestamp::now().as_millisecond() - 3_600_000;
    let heart = |i: i64| {
        reading(
            "wr-1",
            "r-1",
            base + i * 1000,
            ReadingValue::Number(60.0 + i as f64),
        )
    };
    // The sink is up: written directly.
    let first: Vec<_> = (0..10).map(heart).collect();
    let outcome =
        tokio::task::block_in_place(|| store.commit_batch(&batch(first.clone()))).expect("commit");
    assert_eq!(outcome.accepted(), 10);
    assert_eq!(monitor.spool_depth().batches, 0);

    // The sink goes away: batches are spooled and still acknowledged.
    vm.stop();
    let second: Vec<_> = (10..20).map(heart).collect();
    let third = vec![
        reading(
            "bt-2",
            "r-2",
            base + 5,
            ReadingValue::Checkin(CheckinValue::Help),
        ),
        heart(20),
    ];
    for b in [second.clone(), third] {
        let outcome = tokio::task::block_in_place(|| store.commit_batch(&batch(b)))
            .expect("commit while down");
        assert!(outcome.accepted() > 0);
    }
    assert!(
        monitor.spool_depth().batches >= 2,
        "{:?}",
        monitor.spool_depth()
    );
    assert!(
        monitor.outage().is_some(),
        "the outage is a raised condition"
    );
    // Resends while down: duplicates, neither written nor spooled again.
    let spooled = monitor.spool_depth();
    let mut resend = first.clone();
    resend.extend(second.clone());
    let outcome =
        tokio::task::block_in_place(|| store.commit_batch(&batch(resend))).expect("resend");
    assert_eq!((outcome.accepted(), outcome.duplicates()), (0, 20));
    assert_eq!(monitor.spool_depth(), spooled);

    // Back up: the spool drains in order, everything is there once.
    vm.resume().await;
    eventually("the spool to drain", || {
        (monitor.spool_depth().batches == 0).then_some(())
    })
    .await;
    eventually("the outage to clear", || {
        monitor.outage().is_none().then_some(())
    })
    .await;
    let series = exported(&vm, 22).await;
    let heart_series = series
        .iter()
        .find(|s| s.labels.get("type").map(String::as_str) == Some("heart_rate"))
        .expect("heart rate series");
    let expected: Vec<(i64, f64)> = (0..21)
        .map(|i| (base + i * 1000, 60.0 + i as f64))
        .collect();
    assert_eq!(
        heart_series.samples, expected,
        "every reading once, none lost"
    );
    let checkins: Vec<_> = series
        .iter()
        .filter(|s| s.labels.get("type").map(String::as_str) == Some("checkin"))
        .collect();
    assert_eq!(checkins.len(), 1);
    assert_eq!(checkins[0].samples, vec![(base + 5, 0.0)]);
    assert_eq!(
        checkins[0].labels.get("region").map(String::as_str),
        Some("alentejo")
    );
    assert!(!spool_dir.join("dead-letters.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_by_a_crash_is_replayed_on_the_next_start() {
    let Some(vm) = VictoriaMetrics::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let spool_dir = dir.path().join("influx-spool");
    // What a run that crashed while the sink was down leaves behind.
    let ts_ns = (Timestamp::now().as_millisecond() - 60_000) * 1_000_000;
    std::fs::create_dir_all(&spool_dir).expect("spool dir");
    std::fs::write(
        spool_dir.join("00000000000000000003-1.lp"),
        format!("reading,device=gw-1,resident=r-1,type=steps value=42 {ts_ns}\n"),
    )
    .expect("spooled batch");
    std::fs::write(spool_dir.join("00000000000000000004-2.tmp"), "half writ").expect("tmp");
    let config = InfluxConfig {
        url: vm.url(),
        ..InfluxConfig::default()
    };
    let sink = InfluxSink::open(&config, "token", &spool_dir).expect("sink");
    eventually("the old spool to drain", || {
        (sink.spool_depth().batches == 0).then_some(())
    })
    .await;
    let series = exported(&vm, 1).await;
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].samples, vec![(ts_ns / 1_000_000, 42.0)]);
    assert!(!spool_dir.join("00000000000000000004-2.tmp").exists());
}
