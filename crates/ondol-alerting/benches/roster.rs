//! Alerting over a large roster: memory per resident, time to rebuild the
//! state at start-up, and time to evaluate a deadline. Prints figures (no
//! statistics framework): `cargo bench -p ondol-alerting`.
//!
//! The roster: N residents (default 100,000; `ONDOL_BENCH_RESIDENTS`
//! overrides) in two time zones, one gateway each, every one with a stored
//! activity time and device state, as after a day of ingest. The store is a
//! SQLite file in a temporary directory with `synchronous = FULL`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use jiff::civil::{Time, date};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use ondol_alerting::{AlertingConfig, Engine};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_model::roster::{
    CheckinPlan, CheckinWindow, Device, DeviceBinding, DeviceKind, Resident, Roster, Staff,
    StaffRole,
};
use ondol_model::{Clock, DeviceId, ManualClock, Reading, ResidentId, StaffId};
use ondol_store::{Batch, NewReading, Store};
use tokio::sync::Notify;

/// Resident set size of this process in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    // `cargo test --benches` runs this too; keep that cheap.
    let residents: usize = std::env::var("ONDOL_BENCH_RESIDENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            100_000
        } else {
            1_000
        });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ondol.db");
    let zones = [
        TimeZone::get("Asia/Seoul").unwrap(),
        TimeZone::get("Europe/Lisbon").unwrap(),
    ];
    let cw = StaffId::new("cw-1").unwrap();
    let mut roster = Roster {
        staff: vec![Staff {
            id: cw.clone(),
            name: "cw".into(),
            role: StaffRole::Caseworker,
            region: None,
            token_env: None,
        }],
        ..Roster::default()
    };
    for i in 0..residents {
        let zone = &zones[i % 2];
        // Windows end at one of 240 minutes (06:00..09:59 + 1h), so a
        // deadline instant has a few hundred residents, as in real life.
        let end_minute = 7 * 60 + (i % 240) as i32;
        let id = ResidentId::new(format!("r-{i:06}")).unwrap();
        roster.residents.push(Resident {
            id: id.clone(),
            name: "x".into(),
            timezone_name: zone.iana_name().unwrap_or("UTC").into(),
            timezone: zone.clone(),
            region: "r".into(),
            enrolled_from: date(2026, 1, 1),
            enrolled_until: None,
            caseworker: Some(cw.clone()),
            checkin: CheckinPlan {
                window: Some(CheckinWindow {
                    start: Time::constant(6, 0, 0, 0),
                    end: Time::new((end_minute / 60) as i8, (end_minute % 60) as i8, 0, 0).unwrap(),
                }),
                passive: false,
            },
            away: Vec::new(),
        });
        roster.devices.push(Device {
            id: DeviceId::new(format!("gw-{i:06}")).unwrap(),
            kind: DeviceKind::Gateway,
            bindings: vec![DeviceBinding {
                resident: id,
                from: None,
                until: None,
            }],
            active: true,
            secret_env: None,
        });
    }
    let mut store = Store::open(&path).unwrap();
    let started = Instant::now();
    store.import_roster(&roster).unwrap();
    println!(
        "roster of {residents} residents imported in {:?}",
        started.elapsed()
    );

    // A morning of ingest: between 06:00 and 06:10 local time on 27 Nov,
    // nine residents in ten checked in; the tenth only moved.
    let mut batch = Batch::default();
    for (i, (resident, device)) in roster.residents.iter().zip(&roster.devices).enumerate() {
        let six = Time::constant(6, 0, 0, 0);
        let at =
            ondol_alerting::schedule::local_instant(date(2026, 11, 27), six, &resident.timezone)
                .unwrap()
                + SignedDuration::from_secs((i % 600) as i64);
        let zoned = at.to_zoned(resident.timezone.clone());
        let value = if i % 10 != 0 {
            ReadingValue::Checkin(CheckinValue::Ok)
        } else {
            ReadingValue::Motion(true)
        };
        let reading = Reading {
            reading_type: if i % 10 != 0 {
                ReadingType::Checkin
            } else {
                ReadingType::Motion
            },
            value,
            sensor: None,
            ts: at,
        };
        let in_window = resident
            .checkin
            .window
            .is_some_and(|w| w.contains(zoned.time()));
        batch.readings.push(NewReading {
            device_id: device.id.clone(),
            resident_id: resident.id.clone(),
            counts_as_activity: reading.shows_activity(),
            reading,
            received_at: at,
            local_date: zoned.date(),
            local_hour: zoned.hour() as u8,
            checkin_in_window: i % 10 != 0 && in_window,
        });
    }
    store.commit_batch(&batch).unwrap();
    drop(batch);
    drop(store);

    let config = AlertingConfig {
        grace: std::time::Duration::ZERO,
        device_silent_after: std::time::Duration::from_secs(48 * 3600),
        inactivity_caution: std::time::Duration::from_secs(48 * 3600),
        inactivity_alarm: std::time::Duration::from_secs(49 * 3600),
        inactivity_danger: std::time::Duration::from_secs(50 * 3600),
        // Deadlines of the rules only: no escalations in the figures.
        ack_timeout: std::time::Duration::from_secs(48 * 3600),
        ..AlertingConfig::default()
    };
    let clock = ManualClock::new("2026-11-26T22:00:00Z".parse().unwrap());
    let before = rss_bytes();
    let started = Instant::now();
    let mut engine = Engine::start(
        Store::open(&path).unwrap(),
        config.clone(),
        Arc::new(clock.clone()),
        false,
        Arc::new(Notify::new()),
    )
    .unwrap();
    let rebuild = started.elapsed();
    let after = rss_bytes();
    let stats = engine.stats();
    println!(
        "start-up rebuild: {rebuild:?} for {} residents, {} devices, {} timers",
        stats.residents, stats.devices, stats.timers
    );
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "memory: {:.1} MiB for the engine, {} bytes per resident (one device each)",
            (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
            after.saturating_sub(before) / residents as u64
        );
    }

    // A tick with nothing due touches only the earliest deadline.
    let started = Instant::now();
    let rounds = 100_000;
    for _ in 0..rounds {
        engine.tick().unwrap();
    }
    println!(
        "tick with nothing due: {:?} per tick",
        started.elapsed() / rounds
    );

    // The check-in deadlines of the 27th, minute by minute: nine in ten
    // residents checked in (a rollup read; evaluations recorded in one
    // transaction per tick), one in ten did not (alert, transition, rollup
    // and outbox in one durable transaction each).
    let mut fired = 0;
    let mut spent = std::time::Duration::ZERO;
    let mut slowest = std::time::Duration::ZERO;
    let mut minute = clock.now();
    let end: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
    while minute < end {
        minute += SignedDuration::from_mins(1);
        clock.set(minute);
        let started = Instant::now();
        let n = engine.tick().unwrap();
        let took = started.elapsed();
        if n > 0 {
            fired += n;
            spent += took;
            slowest = slowest.max(took / n as u32);
        }
    }
    let alerts = engine.store().unresolved_alerts().unwrap().len();
    println!(
        "deadlines evaluated: {fired} ({alerts} alerts raised), {:?} per deadline on average",
        spent / fired.max(1) as u32
    );
}
