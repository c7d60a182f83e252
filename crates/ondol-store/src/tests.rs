//! Tests of the store as a whole: opening and migrating, committing batches,
//! rollups, rejections, device state, and the roster round trip.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use ondol_model::reading::{CheckinValue, DoorState, ReadingType, ReadingValue};
use ondol_model::roster::{CheckinPlan, Roster};
use ondol_model::wire::DeviceStatus;
use ondol_model::{DeviceId, Reading, ReasonCode, ResidentId};

use crate::*;

const ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "Test Resident One"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-01"
away = [{ from = "2026-05-01", until = "2026-05-03", reason = "hospital" }]

[[residents]]
id = "r-2"
name = "Test Resident Two"
timezone = "Europe/Lisbon"
region = "alentejo"
enrolled_from = "2026-02-01"
enrolled_until = "2027-12-31"
checkin = { window = "none" }

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"

[[devices]]
id = "bt-1"
resident = "r-1"
kind = "button"

[[devices]]
id = "gw-2"
resident = "r-2"
kind = "gateway"
secret_env = "ONDOL_DEVICE_GW_2"

[[staff]]
id = "cw-01"
name = "Test Caseworker"
role = "caseworker"
token_env = "ONDOL_TOKEN_CW_01"
"#;

fn roster(text: &str) -> Roster {
    match roster_file::parse_roster(text, "test.toml") {
        Ok(roster) => roster,
        Err(problems) => panic!("test roster has problems: {problems:#?}"),
    }
}

pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("data/ondol.db")).expect("open store");
    (dir, store)
}

fn did(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn rid(s: &str) -> ResidentId {
    ResidentId::new(s).unwrap()
}

/// 2026-11-27 00:00:00 UTC = 09:00 in Seoul.
const BASE_S: i64 = 1_795_737_600;

pub(crate) fn at(seconds_after_base: i64) -> Timestamp {
    Timestamp::from_second(BASE_S + seconds_after_base).unwrap()
}

/// A reading of `device` (bound to `resident` in Seoul time) at `ts`.
pub(crate) fn new_reading(
    device: &str,
    resident: &str,
    value: ReadingValue,
    kind: ReadingType,
    ts: Timestamp,
) -> NewReading {
    let local = ts.to_zoned(TimeZone::get("Asia/Seoul").unwrap());
    let reading = Reading {
        reading_type: kind,
        value,
        sensor: None,
        ts,
    };
    NewReading {
        device_id: did(device),
        resident_id: rid(resident),
        counts_as_activity: reading.shows_activity(),
        checkin_in_window: false,
        reading,
        received_at: ts,
        local_date: local.date(),
        local_hour: u8::try_from(local.hour()).unwrap(),
    }
}

fn heart_rate(device: &str, resident: &str, bpm: f64, ts: Timestamp) -> NewReading {
    new_reading(
        device,
        resident,
        ReadingValue::Number(bpm),
        ReadingType::HeartRate,
        ts,
    )
}

fn batch(readings: Vec<NewReading>) -> Batch {
    Batch {
        readings,
        ..Batch::default()
    }
}

fn day(y: i16, m: i8, d: i8) -> Date {
    jiff::civil::date(y, m, d)
}

#[test]
fn open_creates_the_directory_and_sets_the_pragmas() {
    let (dir, store) = temp_store();
    assert!(dir.path().join("data/ondol.db").exists());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let mode: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
    let fk: bool = store
        .conn
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert!(fk);
}

#[test]
fn reopening_runs_no_migration_twice_and_keeps_the_data() {
    let (dir, mut store) = temp_store();
    store.import_roster(&roster(ROSTER)).unwrap();
    store
        .commit_batch(&batch(vec![heart_rate("gw-1", "r-1", 70.0, at(0))]))
        .unwrap();
    drop(store);
    let path = dir.path().join("data/ondol.db");
    for _ in 0..2 {
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.count_readings().unwrap(), 1);
        assert_eq!(store.load_roster().unwrap().residents.len(), 2);
        let rollup = store
            .resident_day(&rid("r-1"), day(2026, 11, 27))
            .unwrap()
            .expect("rollup");
        assert_eq!(rollup.readings, 1);
    }
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ondol.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let error = Store::open(&path).expect_err("must refuse");
    assert!(matches!(error, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("newer Ondol"), "{error}");
}

#[test]
fn duplicates_are_flagged_across_batches_and_within_one() {
    let (_dir, mut store) = temp_store();
    let first = store
        .commit_batch(&batch(vec![
            heart_rate("gw-1", "r-1", 70.0, at(0)),
            heart_rate("gw-1", "r-1", 71.0, at(60)),
            // Same key as the first: a resend inside the same batch.
            heart_rate("gw-1", "r-1", 70.0, at(0)),
        ]))
        .unwrap();
    assert_eq!(first.inserted, vec![true, true, false]);
    assert_eq!((first.accepted(), first.duplicates()), (2, 1));

    let mut with_sensor = heart_rate("gw-1", "r-1", 72.0, at(0));
    with_sensor.reading.sensor = Some("chest".into());
    let second = store
        .commit_batch(&batch(vec![
            heart_rate("gw-1", "r-1", 70.0, at(60)), // resend of an earlier batch
            with_sensor,                             // another sensor: a new key
            heart_rate("bt-1", "r-1", 70.0, at(0)),  // another device: a new key
            new_reading(
                "gw-1",
                "r-1",
                ReadingValue::Number(20.0),
                ReadingType::AmbientTemperature,
                at(0),
            ),
        ]))
        .unwrap();
    assert_eq!(second.inserted, vec![false, true, true, true]);
    assert_eq!(store.count_readings().unwrap(), 5);

    // The first stored value wins: a resend does not overwrite.
    let stored = store.readings_for_device(&did("gw-1"), 10).unwrap();
    let at_60 = stored
        .iter()
        .find(|r| r.reading.ts == at(60) && r.reading.reading_type == ReadingType::HeartRate)
        .unwrap();
    assert_eq!(at_60.reading.value, ReadingValue::Number(71.0));
}

#[test]
fn rollups_count_only_new_readings() {
    let (_dir, mut store) = temp_store();
    let readings = vec![
        heart_rate("gw-1", "r-1", 70.0, at(0)),
        heart_rate("gw-1", "r-1", 70.0, at(0)),
        new_reading(
            "gw-1",
            "r-1",
            ReadingValue::Motion(true),
            ReadingType::Motion,
            at(30),
        ),
    ];
    store.commit_batch(&batch(readings.clone())).unwrap();
    store.commit_batch(&batch(readings)).unwrap();
    let row = store
        .resident_day(&rid("r-1"), day(2026, 11, 27))
        .unwrap()
        .unwrap();
    assert_eq!(row.readings, 2);
    assert_eq!(
        row.by_type,
        BTreeMap::from([(ReadingType::HeartRate, 1), (ReadingType::Motion, 1)])
    );
    assert!(row.active);
    assert_eq!(
        store.resident_day(&rid("r-1"), day(2026, 11, 26)).unwrap(),
        None
    );
}

#[test]
fn hours_checkin_and_satisfaction_roll_up_per_local_day() {
    let (_dir, mut store) = temp_store();
    let hour = 3600;
    let mut checkin = new_reading(
        "bt-1",
        "r-1",
        ReadingValue::Checkin(CheckinValue::Ok),
        ReadingType::Checkin,
        at(0),
    );
    checkin.checkin_in_window = true;
    let readings = vec![
        heart_rate("gw-1", "r-1", 70.0, at(0)),         // 09:00 Seoul
        heart_rate("gw-1", "r-1", 71.0, at(1800)),      // 09:30: same hour
        heart_rate("gw-1", "r-1", 72.0, at(5 * hour)),  // 14:00
        heart_rate("gw-1", "r-1", 73.0, at(15 * hour)), // 00:00 the next day
        checkin,
        new_reading(
            "bt-1",
            "r-1",
            ReadingValue::Score(4),
            ReadingType::Satisfaction,
            at(60),
        ),
        new_reading(
            "bt-1",
            "r-1",
            ReadingValue::Score(5),
            ReadingType::Satisfaction,
            at(120),
        ),
    ];
    store.commit_batch(&batch(readings)).unwrap();

    let today = store
        .resident_day(&rid("r-1"), day(2026, 11, 27))
        .unwrap()
        .unwrap();
    assert_eq!(today.readings, 6);
    assert_eq!(today.hours_mask, (1 << 9) | (1 << 14));
    assert_eq!(today.hours_with_data, 2);
    assert!(today.checkin_done);
    assert_eq!((today.satisfaction_sum, today.satisfaction_count), (9, 2));

    let tomorrow = store
        .resident_day(&rid("r-1"), day(2026, 11, 28))
        .unwrap()
        .unwrap();
    assert_eq!(tomorrow.readings, 1);
    assert_eq!(tomorrow.hours_mask, 1);
    assert!(!tomorrow.checkin_done);

    // A later check-in outside the window does not undo the day's check-in.
    let late = new_reading(
        "bt-1",
        "r-1",
        ReadingValue::Checkin(CheckinValue::Ok),
        ReadingType::Checkin,
        at(3 * hour),
    );
    store.commit_batch(&batch(vec![late])).unwrap();
    let today = store
        .resident_day(&rid("r-1"), day(2026, 11, 27))
        .unwrap()
        .unwrap();
    assert!(today.checkin_done);
    assert_eq!(today.by_type[&ReadingType::Checkin], 2);
}

#[test]
fn activity_times_move_forward_only_and_only_for_new_readings() {
    let (_dir, mut store) = temp_store();
    let door = |ts| {
        new_reading(
            "gw-1",
            "r-1",
            ReadingValue::Door(DoorState::Open),
            ReadingType::Door,
            ts,
        )
    };
    store
        .commit_batch(&batch(vec![
            door(at(100)),
            heart_rate("gw-1", "r-1", 70.0, at(200)),
        ]))
        .unwrap();
    // A late, older reading arrives afterwards.
    let mut late = door(at(50));
    late.received_at = at(300);
    store.commit_batch(&batch(vec![late])).unwrap();

    let device = store.device_state(&did("gw-1")).unwrap().unwrap();
    assert_eq!(device.last_activity_at, Some(at(100)));
    assert_eq!(device.last_seen_at, Some(at(300)));
    assert_eq!(device.online, None, "no status message yet");

    let resident = store.resident_activity(&rid("r-1")).unwrap().unwrap();
    assert_eq!(resident.last_reading_at, Some(at(200)));
    assert_eq!(resident.last_activity_at, Some(at(100)));
    assert_eq!(resident.last_checkin_at, None);

    // A resend moves last_seen (the device is alive) but nothing else.
    let mut resend = heart_rate("gw-1", "r-1", 70.0, at(200));
    resend.received_at = at(400);
    store.commit_batch(&batch(vec![resend])).unwrap();
    let device = store.device_state(&did("gw-1")).unwrap().unwrap();
    assert_eq!(device.last_seen_at, Some(at(400)));
    assert_eq!(device.last_activity_at, Some(at(100)));

    let ok = new_reading(
        "bt-1",
        "r-1",
        ReadingValue::Checkin(CheckinValue::Ok),
        ReadingType::Checkin,
        at(500),
    );
    store.commit_batch(&batch(vec![ok])).unwrap();
    let resident = store.resident_activity(&rid("r-1")).unwrap().unwrap();
    assert_eq!(resident.last_checkin_at, Some(at(500)));
    assert_eq!(resident.last_activity_at, Some(at(500)));
}

#[test]
fn rejections_are_stored_with_a_capped_excerpt() {
    let (_dir, mut store) = temp_store();
    let rejection = |reason, index, received| NewRejection {
        device_id: Some("gw/bad".into()),
        topic: "ondol/v1/devices/gw-1/readings".into(),
        reason,
        detail: "heart_rate 400 /min is outside 20..250".into(),
        index,
        msg_id: Some("m-1".into()),
        received_at: received,
        payload_excerpt: vec![b'x'; 1000],
    };
    let outcome = store
        .commit_batch(&Batch {
            rejections: vec![
                rejection(ReasonCode::OutOfRange, Some(1), at(0)),
                rejection(ReasonCode::OutOfRange, Some(2), at(1)),
                rejection(ReasonCode::MalformedPayload, None, at(2)),
            ],
            ..Batch::default()
        })
        .unwrap();
    assert!(outcome.inserted.is_empty());

    let recent = store.recent_rejections(10).unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].reason, ReasonCode::MalformedPayload);
    assert_eq!(recent[0].index, None);
    assert_eq!(recent[1].index, Some(2));
    assert_eq!(recent[1].device_id.as_deref(), Some("gw/bad"));
    assert_eq!(recent[1].msg_id.as_deref(), Some("m-1"));
    assert_eq!(recent[1].received_at, at(1));
    assert!(
        recent
            .iter()
            .all(|r| r.payload_excerpt.len() == batch::MAX_EXCERPT_BYTES)
    );
    assert_eq!(store.recent_rejections(1).unwrap().len(), 1);

    assert_eq!(
        store.rejection_counts().unwrap(),
        vec![
            (ReasonCode::OutOfRange, 2),
            (ReasonCode::MalformedPayload, 1)
        ]
    );
}

#[test]
fn status_messages_update_device_state_in_order() {
    let (_dir, mut store) = temp_store();
    let status = |online, battery, ts| StatusUpdate {
        device_id: did("gw-1"),
        resident_id: None,
        status: DeviceStatus {
            online,
            battery_pct: battery,
            rssi_dbm: battery.map(|_| -70),
            firmware: battery.map(|_| "1.2.3".to_owned()),
        },
        received_at: ts,
    };
    store
        .commit_batch(&Batch {
            statuses: vec![status(true, Some(87), at(0))],
            ..Batch::default()
        })
        .unwrap();
    // The Will: only the state. Battery and firmware keep their last values.
    store
        .commit_batch(&Batch {
            statuses: vec![status(false, None, at(100))],
            ..Batch::default()
        })
        .unwrap();
    let state = store.device_state(&did("gw-1")).unwrap().unwrap();
    assert_eq!(state.online, Some(false));
    assert_eq!(state.battery_pct, Some(87));
    assert_eq!(state.rssi_dbm, Some(-70));
    assert_eq!(state.firmware.as_deref(), Some("1.2.3"));
    assert_eq!(state.last_status_at, Some(at(100)));
    assert_eq!(state.last_seen_at, None);

    // An older status arriving late does not win.
    store
        .commit_batch(&Batch {
            statuses: vec![status(true, Some(50), at(50))],
            ..Batch::default()
        })
        .unwrap();
    let state = store.device_state(&did("gw-1")).unwrap().unwrap();
    assert_eq!(state.online, Some(false));
    assert_eq!(state.battery_pct, Some(87));
    assert_eq!(store.device_state(&did("gw-2")).unwrap(), None);
}

#[test]
fn every_kind_of_value_is_read_back_as_written() {
    let (_dir, mut store) = temp_store();
    let values = [
        (
            ReadingType::BloodPressure,
            ReadingValue::BloodPressure {
                systolic: 128.0,
                diastolic: 82.0,
            },
        ),
        (ReadingType::Door, ReadingValue::Door(DoorState::Closed)),
        (
            ReadingType::Checkin,
            ReadingValue::Checkin(CheckinValue::Help),
        ),
        (ReadingType::Fall, ReadingValue::Fall),
        (ReadingType::Motion, ReadingValue::Motion(false)),
        (ReadingType::Satisfaction, ReadingValue::Score(3)),
        (ReadingType::BodyTemperature, ReadingValue::Number(36.6)),
    ];
    let readings: Vec<NewReading> = values
        .iter()
        .enumerate()
        .map(|(i, (kind, value))| new_reading("gw-1", "r-1", *value, *kind, at(i as i64)))
        .collect();
    store.commit_batch(&batch(readings.clone())).unwrap();
    let stored = store.readings_for_device(&did("gw-1"), 100).unwrap();
    // Newest first.
    let expected: Vec<&Reading> = readings.iter().rev().map(|r| &r.reading).collect();
    let got: Vec<&Reading> = stored.iter().map(|r| &r.reading).collect();
    assert_eq!(got, expected);
    assert!(
        stored
            .iter()
            .all(|r| r.resident_id == rid("r-1") && r.device_id == did("gw-1"))
    );
    assert_eq!(store.readings_for_device(&did("gw-1"), 2).unwrap().len(), 2);
}

/// A sink that stores the readings and then fails, as an external sink
/// whose server went away would.
#[derive(Debug)]
struct FailingSink;

impl TimeseriesSink for FailingSink {
    fn write(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        readings: &[NewReading],
    ) -> Result<Vec<bool>, StoreError> {
        EmbeddedSink.write(tx, readings)?;
        Err(StoreError::Sink {
            detail: "connection refused".into(),
            retryable: true,
        })
    }
}

#[test]
fn a_failed_batch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ondol.db");
    let mut failing = Store::open_with_sink(&path, Box::new(FailingSink)).unwrap();
    let mut b = batch(vec![heart_rate("gw-1", "r-1", 70.0, at(0))]);
    b.statuses.push(StatusUpdate {
        device_id: did("gw-1"),
        resident_id: None,
        status: DeviceStatus {
            online: true,
            battery_pct: None,
            rssi_dbm: None,
            firmware: None,
        },
        received_at: at(0),
    });
    let error = failing.commit_batch(&b).expect_err("the sink fails");
    assert!(error.is_retryable());
    drop(failing);

    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.count_readings().unwrap(), 0);
    assert_eq!(store.device_state(&did("gw-1")).unwrap(), None);
    // The resend after the failure is new, not a duplicate.
    assert_eq!(store.commit_batch(&b).unwrap().inserted, vec![true]);
}

#[test]
fn importing_twice_changes_nothing_and_round_trips() {
    let (_dir, mut store) = temp_store();
    let file = roster(ROSTER);
    let first = store.import_roster(&file).unwrap();
    assert_eq!(
        first,
        ImportSummary {
            residents_added: 2,
            devices_added: 3,
            staff_added: 1,
            ..ImportSummary::default()
        }
    );
    let loaded = store.load_roster().unwrap();
    let second = store.import_roster(&file).unwrap();
    assert_eq!(
        second,
        ImportSummary {
            residents_updated: 2,
            devices_updated: 3,
            staff_updated: 1,
            ..ImportSummary::default()
        }
    );
    let again = store.load_roster().unwrap();
    assert_eq!(format!("{loaded:?}"), format!("{again:?}"));

    let r1 = loaded
        .residents
        .iter()
        .find(|r| r.id == rid("r-1"))
        .unwrap();
    let from_file = file.residents.iter().find(|r| r.id == rid("r-1")).unwrap();
    assert_eq!(r1.timezone_name, "Asia/Seoul");
    assert_eq!(r1.timezone, from_file.timezone);
    assert_eq!(r1.checkin, from_file.checkin);
    assert_eq!(r1.away, from_file.away);
    assert_eq!(r1.caseworker.as_ref().map(|c| c.as_str()), Some("cw-01"));
    let r2 = loaded
        .residents
        .iter()
        .find(|r| r.id == rid("r-2"))
        .unwrap();
    assert_eq!(r2.checkin.window, None);
    assert_eq!(r2.enrolled_until, Some(day(2027, 12, 31)));
    let gw2 = loaded.devices.iter().find(|d| d.id == did("gw-2")).unwrap();
    assert_eq!(gw2.secret_env.as_deref(), Some("ONDOL_DEVICE_GW_2"));
    assert_eq!(gw2.resident_at(at(0)), Some(&rid("r-2")));
    assert_eq!(
        loaded.staff[0].token_env.as_deref(),
        Some("ONDOL_TOKEN_CW_01")
    );
}

#[test]
fn an_import_keeps_absent_entries_replaces_away_periods_and_keeps_binding_history() {
    let (dir, mut store) = temp_store();
    store.import_roster(&roster(ROSTER)).unwrap();
    // Provisioning set a credential hash; an import must not clear it.
    let conn = rusqlite::Connection::open(dir.path().join("data/ondol.db")).unwrap();
    conn.execute(
        "UPDATE devices SET credential_hash = 'h' WHERE id = 'gw-1'",
        [],
    )
    .unwrap();

    let moved = r#"
[[residents]]
id = "r-1"
name = "Test Resident One"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"

[[residents]]
id = "r-2"
name = "Renamed"
timezone = "Europe/Lisbon"
region = "alentejo"
enrolled_from = "2026-02-01"

[[devices]]
id = "gw-1"
resident = "r-2"
kind = "gateway"
bound_from = "2026-11-27T09:00:00+09:00"
"#;
    let summary = store.import_roster(&roster(moved)).unwrap();
    assert_eq!(summary.residents_updated, 2);
    assert_eq!(summary.devices_updated, 1);
    assert_eq!(summary.devices_kept, 2);
    assert_eq!(summary.staff_kept, 1);

    let loaded = store.load_roster().unwrap();
    assert_eq!(loaded.devices.len(), 3, "absent devices are kept");
    assert_eq!(loaded.staff.len(), 1, "absent staff are kept");
    let r1 = loaded
        .residents
        .iter()
        .find(|r| r.id == rid("r-1"))
        .unwrap();
    assert!(r1.away.is_empty(), "away periods follow the file");
    assert_eq!(r1.caseworker, None);
    let r2 = loaded
        .residents
        .iter()
        .find(|r| r.id == rid("r-2"))
        .unwrap();
    assert_eq!(r2.name, "Renamed");
    assert_eq!(
        r2.checkin,
        CheckinPlan::default(),
        "an omitted plan is the default"
    );

    let gw1 = loaded.devices.iter().find(|d| d.id == did("gw-1")).unwrap();
    assert_eq!(gw1.bindings.len(), 2);
    assert_eq!(gw1.resident_at(at(-1)), Some(&rid("r-1")), "history kept");
    assert_eq!(gw1.resident_at(at(0)), Some(&rid("r-2")));
    let hash: Option<String> = conn
        .query_row(
            "SELECT credential_hash FROM devices WHERE id = 'gw-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hash.as_deref(), Some("h"));
}

#[test]
fn the_demo_roster_imports() {
    let (_dir, mut store) = temp_store();
    let demo = roster(include_str!("../../../config/registry.toml"));
    let summary = store.import_roster(&demo).unwrap();
    assert_eq!(summary.residents_added, demo.residents.len());
    let loaded = store.load_roster().unwrap();
    assert_eq!(loaded.devices.len(), demo.devices.len());
    assert_eq!(loaded.staff.len(), demo.staff.len());
}

#[test]
fn a_store_can_move_to_the_writer_thread_and_empty_batches_are_free() {
    fn is_send<T: Send>() {}
    is_send::<Store>();
    let mut store = Store::open_in_memory().unwrap();
    assert!(
        store
            .commit_batch(&Batch::default())
            .unwrap()
            .inserted
            .is_empty()
    );
}

#[test]
fn an_in_memory_store_works_like_a_file() {
    let mut store = Store::open_in_memory().unwrap();
    let outcome = store
        .commit_batch(&batch(vec![heart_rate("gw-1", "r-1", 70.0, at(0))]))
        .unwrap();
    assert_eq!(outcome.inserted, vec![true]);
    assert_eq!(store.path(), std::path::Path::new(":memory:"));
}

/// One reading of the property test: which device, type, sensor and second.
#[derive(Debug, Clone)]
struct Key {
    device: usize,
    kind: ReadingType,
    sensor: Option<&'static str>,
    second: i64,
}

const DEVICES: [(&str, &str); 3] = [("gw-1", "r-1"), ("bt-1", "r-1"), ("gw-2", "r-2")];

fn key_strategy() -> impl Strategy<Value = Key> {
    (
        0..DEVICES.len(),
        prop::sample::select(vec![
            ReadingType::HeartRate,
            ReadingType::Steps,
            ReadingType::Motion,
        ]),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        // About two days, so readings fall on several local dates and hours.
        0..(48 * 3600_i64),
    )
        .prop_map(|(device, kind, sensor, second)| Key {
            device,
            kind,
            sensor,
            second: second - second % 600,
        })
}

fn to_new(key: &Key) -> NewReading {
    let (device, resident) = DEVICES[key.device];
    let value = match key.kind {
        ReadingType::Motion => ReadingValue::Motion(true),
        _ => ReadingValue::Number(1.0),
    };
    let mut new = new_reading(device, resident, value, key.kind, at(key.second));
    new.reading.sensor = key.sensor.map(str::to_owned);
    new
}

/// What the rollup of one resident-day should hold.
#[derive(Debug, Default)]
struct ExpectedDay {
    readings: u64,
    by_type: BTreeMap<ReadingType, u64>,
    hours_mask: u32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the resends and however they are batched, every rollup
    /// counts each distinct (device, type, sensor, time) exactly once.
    #[test]
    fn rollups_count_each_distinct_reading_once(
        keys in prop::collection::vec(key_strategy(), 1..60),
        resends in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        cuts in prop::collection::vec(1..10_usize, 1..10),
    ) {
        let mut stream: Vec<Key> = keys.clone();
        for index in &resends {
            stream.push(keys[index.index(keys.len())].clone());
        }
        let mut store = Store::open_in_memory().unwrap();
        let mut seen = BTreeSet::new();
        let mut rest = &stream[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let outcome = store.commit_batch(&batch(chunk.iter().map(to_new).collect())).unwrap();
            for (key, inserted) in chunk.iter().zip(&outcome.inserted) {
                let identity = (key.device, key.kind, key.sensor, key.second);
                prop_assert_eq!(*inserted, seen.insert(identity));
            }
        }

        // Expected rollups from the distinct keys.
        let mut expected: BTreeMap<(ResidentId, Date), ExpectedDay> = BTreeMap::new();
        for (device, kind, sensor, second) in &seen {
            let new = to_new(&Key { device: *device, kind: *kind, sensor: *sensor, second: *second });
            let entry = expected.entry((new.resident_id.clone(), new.local_date)).or_default();
            entry.readings += 1;
            *entry.by_type.entry(*kind).or_default() += 1;
            entry.hours_mask |= 1 << new.local_hour;
        }
        prop_assert_eq!(store.count_readings().unwrap(), seen.len() as u64);
        for ((resident, date), day) in &expected {
            let row = store.resident_day(resident, *date).unwrap().unwrap();
            prop_assert_eq!(row.readings, day.readings);
            prop_assert_eq!(&row.by_type, &day.by_type);
            prop_assert_eq!(row.hours_mask, day.hours_mask);
        }
    }
}

#[test]
fn the_roster_revision_moves_with_every_roster_change_and_only_then() {
    let (dir, mut store) = temp_store();
    let empty = store.roster_revision().unwrap();
    store.import_roster(&roster(ROSTER)).unwrap();
    let imported = store.roster_revision().unwrap();
    assert!(imported > empty);
    // Readings are not roster changes.
    store
        .commit_batch(&batch(vec![heart_rate("gw-1", "r-1", 70.0, at(0))]))
        .unwrap();
    assert_eq!(store.roster_revision().unwrap(), imported);
    // Another connection (the admin API, a hand-made fix) changes an
    // assignment, then an away period.
    let conn = rusqlite::Connection::open(dir.path().join("data/ondol.db")).unwrap();
    conn.execute(
        "UPDATE residents SET caseworker = NULL WHERE id = 'r-1'",
        [],
    )
    .unwrap();
    let reassigned = store.roster_revision().unwrap();
    assert!(reassigned > imported);
    conn.execute("DELETE FROM away_periods WHERE resident_id = 'r-1'", [])
        .unwrap();
    assert!(store.roster_revision().unwrap() > reassigned);
}

#[test]
fn a_residents_readings_follow_the_binding_by_type_range_and_page() {
    let (_dir, mut store) = temp_store();
    // gw-m watched r-1 until base+100 s, then r-2.
    let moved = format!(
        "{ROSTER}\n[[devices]]\nid = \"gw-m\"\nresident = \"r-1\"\nkind = \"gateway\"\nbound_until = \"{}\"\n",
        at(100)
    );
    store.import_roster(&roster(&moved)).unwrap();
    let mut readings = vec![
        heart_rate("gw-1", "r-1", 60.0, at(10)),
        heart_rate("gw-1", "r-1", 61.0, at(20)),
        heart_rate("gw-2", "r-2", 90.0, at(20)),
        heart_rate("gw-m", "r-1", 70.0, at(50)),
        new_reading(
            "gw-1",
            "r-1",
            ReadingValue::Checkin(CheckinValue::Ok),
            ReadingType::Checkin,
            at(30),
        ),
    ];
    // Stored for r-1 although gw-m no longer watched r-1 then (a binding
    // corrected after ingest attributed it): not r-1's reading.
    readings.push(heart_rate("gw-m", "r-1", 71.0, at(150)));
    store.commit_batch(&batch(readings)).unwrap();

    let r1 = rid("r-1");
    let query = |types: &'static [ReadingType], limit, after| ReadingsQuery {
        resident: &r1,
        types,
        from: at(0),
        to: at(1000),
        after,
        limit,
    };
    let all = store.readings_for_resident(&query(&[], 100, None)).unwrap();
    let seen: Vec<_> = all
        .items
        .iter()
        .map(|r| (r.device_id.as_str(), r.reading.ts))
        .collect();
    assert_eq!(
        seen,
        [
            ("gw-1", at(10)),
            ("gw-1", at(20)),
            ("gw-1", at(30)),
            ("gw-m", at(50))
        ]
    );
    assert_eq!(all.next, None);

    let hr = store
        .readings_for_resident(&query(&[ReadingType::HeartRate], 100, None))
        .unwrap();
    assert_eq!(hr.items.len(), 3);
    assert!(
        hr.items
            .iter()
            .all(|r| r.reading.reading_type == ReadingType::HeartRate)
    );

    // Pages of two: the cursor continues exactly after the last item.
    let first = store.readings_for_resident(&query(&[], 2, None)).unwrap();
    assert_eq!(first.items, all.items[..2]);
    let cursor = first.next.clone().expect("a second page");
    let second = store
        .readings_for_resident(&query(&[], 2, Some(&cursor)))
        .unwrap();
    assert_eq!(second.items, all.items[2..]);
    assert_eq!(second.next, None);

    // The range is [from, to).
    let ranged = store
        .readings_for_resident(&ReadingsQuery {
            from: at(20),
            to: at(50),
            ..query(&[], 100, None)
        })
        .unwrap();
    assert_eq!(ranged.items.len(), 2);
}

#[test]
fn a_file_import_does_not_undo_admin_changes() {
    let (_dir, mut store) = temp_store();
    let file = roster(ROSTER);
    store.import_roster(&file).unwrap();
    let imported = store.roster_revision().unwrap();

    // An admin moves r-1 to another region and ends gw-1's binding.
    let loaded = store.load_roster().unwrap();
    let mut r1 = loaded
        .residents
        .iter()
        .find(|r| r.id == rid("r-1"))
        .unwrap()
        .clone();
    r1.region = "moved".into();
    r1.away.clear();
    store
        .admin_upsert(
            &Roster {
                residents: vec![r1],
                ..Roster::default()
            },
            at(0),
        )
        .unwrap();
    assert!(store.roster_revision().unwrap() > imported);

    // The file, imported again (every start), leaves r-1 as the admin left it.
    let summary = store.import_roster(&file).unwrap();
    assert_eq!(summary.kept_admin_changes, ["resident r-1"]);
    assert_eq!(summary.residents_updated, 1, "r-2 still follows the file");
    let after = store.load_roster().unwrap();
    let r1 = after.residents.iter().find(|r| r.id == rid("r-1")).unwrap();
    assert_eq!(r1.region, "moved");
    assert!(r1.away.is_empty(), "the admin's away periods stand");
}
