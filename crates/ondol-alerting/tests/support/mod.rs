//! A store on disk, a roster, a manual clock and an engine, driven as a
//! deployment drives it: readings are committed to the store (by another
//! connection, as ingest in another process would), and the engine takes
//! them from the store's alerting feed.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ondol_alerting::{AlertingConfig, Engine, Input, Pacemaker};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_model::roster::Roster;
use ondol_model::wire::DeviceStatus;
use ondol_model::{DeviceId, ManualClock, Reading, ResidentId};
use ondol_store::alerts::AlertRow;
use ondol_store::{Batch, NewReading, StatusUpdate, Store, parse_roster};
use tokio::sync::Notify;

/// One resident in Asia/Seoul with a gateway, their caseworker and the
/// region's supervisor.
pub const SEOUL: &str = r#"
[[residents]]
id = "r-1"
name = "Kim"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"

[[staff]]
id = "cw-1"
name = "Park"
role = "caseworker"

[[staff]]
id = "sup-1"
name = "Lee"
role = "supervisor"
region = "gangjin"
"#;

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("an RFC 3339 timestamp")
}

pub fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

pub fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// Alerting config for tests: no grace unless asked, so deadlines fire on time.
pub fn config() -> AlertingConfig {
    AlertingConfig {
        grace: Duration::ZERO,
        ..AlertingConfig::default()
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub config: AlertingConfig,
    pub engine: Option<Engine>,
    pub roster: Roster,
    /// A second connection, for committing readings and reading alerts.
    pub db: Store,
    pub webhook: bool,
}

impl Harness {
    pub fn new(roster_toml: &str, start: &str, config: AlertingConfig) -> Harness {
        Self::build(roster_toml, start, config, false)
    }

    /// Like [`new`](Self::new), with webhook notifications queued too.
    pub fn with_webhook(roster_toml: &str, start: &str, config: AlertingConfig) -> Harness {
        Self::build(roster_toml, start, config, true)
    }

    fn build(roster_toml: &str, start: &str, config: AlertingConfig, webhook: bool) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ondol.db");
        let roster = parse_roster(roster_toml, "test roster").expect("valid roster");
        let mut db = Store::open(&path).expect("store");
        db.import_roster(&roster).expect("import");
        // As the binary sets ingest's store: the watched vitals reach the feed.
        db.feed_alerting(Some(config.watched_vitals()));
        let clock = ManualClock::new(ts(start));
        let mut harness = Harness {
            dir,
            clock,
            config,
            engine: None,
            roster,
            db,
            webhook,
        };
        harness.start();
        harness
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("ondol.db")
    }

    /// Starts (or restarts) the engine from what the store holds.
    pub fn start(&mut self) {
        self.engine = None;
        let store = Store::open(&self.path()).expect("store");
        let engine = Engine::start(
            store,
            self.config.clone(),
            Arc::new(self.clock.clone()),
            self.webhook,
            Arc::new(Notify::new()),
        )
        .expect("engine starts");
        self.engine = Some(engine);
    }

    /// Stops the engine (a crash: nothing more is applied).
    pub fn stop(&mut self) {
        self.engine = None;
    }

    pub fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("engine running")
    }

    pub fn now(&self) -> Timestamp {
        use ondol_model::Clock;
        self.clock.now()
    }

    /// Moves the clock to `to` and fires what is due.
    pub fn at(&mut self, to: &str) {
        self.clock.set(ts(to));
        self.engine().tick().expect("tick");
    }

    pub fn advance(&mut self, by: SignedDuration) {
        self.clock.advance(by);
        self.engine().tick().expect("tick");
    }

    /// Moves the clock in steps of `step` up to `to`, ticking at each (as the
    /// running service would wake at each deadline).
    pub fn run_until(&mut self, to: &str, step: SignedDuration) {
        let end = ts(to);
        while self.now() < end {
            let next = self.now().saturating_add(step).expect("in range").min(end);
            self.clock.set(next);
            self.engine().tick().expect("tick");
        }
    }

    fn new_reading(
        &self,
        device: &str,
        at: Timestamp,
        value: ReadingValue,
        kind: ReadingType,
    ) -> NewReading {
        let device_id = DeviceId::new(device).expect("device id");
        let roster_device = self
            .roster
            .devices
            .iter()
            .find(|d| d.id == device_id)
            .expect("device on the roster");
        let resident_id = roster_device.resident_at(at).expect("bound").clone();
        let resident = self
            .roster
            .residents
            .iter()
            .find(|r| r.id == resident_id)
            .expect("resident");
        let reading = Reading {
            reading_type: kind,
            value,
            sensor: None,
            ts: at,
        };
        let zoned = at.to_zoned(resident.timezone.clone());
        let counts_as_activity = reading.shows_activity();
        let in_window = resident
            .checkin
            .window
            .is_some_and(|w| w.contains(zoned.time()));
        let checks_in = value == ReadingValue::Checkin(CheckinValue::Ok)
            || (resident.checkin.passive && counts_as_activity);
        NewReading {
            device_id,
            resident_id,
            reading,
            received_at: self.now(),
            local_date: zoned.date(),
            local_hour: u8::try_from(zoned.hour()).expect("hour"),
            checkin_in_window: checks_in && in_window,
            counts_as_activity,
        }
    }

    /// A device reading measured at `at`, received now: committed, then
    /// handed to the engine.
    pub fn reading(&mut self, device: &str, at: Timestamp, value: ReadingValue, kind: ReadingType) {
        let new = self.new_reading(device, at, value, kind);
        let batch = Batch {
            readings: vec![new.clone()],
            ..Batch::default()
        };
        self.db.commit_batch(&batch).expect("commit");
        self.follow();
    }

    /// The engine takes what the store's alerting feed holds, then fires
    /// what is due.
    pub fn follow(&mut self) {
        self.engine()
            .follow_feed(usize::MAX)
            .expect("engine follows the feed");
        self.engine().tick().expect("tick");
    }

    /// A device reading measured at `at`, received and committed now, but
    /// not yet taken by the engine: it waits in the store's alerting feed.
    /// `false`: a duplicate.
    pub fn commit(
        &mut self,
        device: &str,
        at: Timestamp,
        value: ReadingValue,
        kind: ReadingType,
    ) -> bool {
        let new = self.new_reading(device, at, value, kind);
        let batch = Batch {
            readings: vec![new.clone()],
            ..Batch::default()
        };
        let outcome = self.db.commit_batch(&batch).expect("commit");
        outcome.inserted.first().copied().unwrap_or(false)
    }

    /// One turn of the running service at monotonic time `mono`: the
    /// waiting `inputs`, then the due deadlines (see [`ondol_alerting::turn`]).
    pub fn turn(&mut self, pacemaker: &mut Pacemaker, inputs: Vec<Input>, mono: Duration) {
        ondol_alerting::turn(self.engine(), pacemaker, inputs, &|| mono);
    }

    pub fn checkin(&mut self, device: &str, at: Timestamp) {
        self.reading(
            device,
            at,
            ReadingValue::Checkin(CheckinValue::Ok),
            ReadingType::Checkin,
        );
    }

    pub fn motion(&mut self, device: &str, at: Timestamp) {
        self.reading(device, at, ReadingValue::Motion(true), ReadingType::Motion);
    }

    pub fn status(&mut self, device: &str, online: bool) {
        let update = StatusUpdate {
            device_id: DeviceId::new(device).expect("id"),
            resident_id: None,
            status: DeviceStatus {
                online,
                battery_pct: None,
                rssi_dbm: None,
                firmware: None,
            },
            received_at: self.now(),
        };
        let batch = Batch {
            statuses: vec![update.clone()],
            ..Batch::default()
        };
        self.db.commit_batch(&batch).expect("commit");
        self.follow();
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> Vec<AlertRow> {
        let mut all = self.db.recent_alerts(10_000).expect("alerts");
        all.reverse();
        all
    }

    pub fn alerts_of(&self, rule: &str) -> Vec<AlertRow> {
        self.alerts()
            .into_iter()
            .filter(|a| a.rule.as_str() == rule)
            .collect()
    }

    /// (topic or target, payload JSON) of every queued notification on `channel`.
    pub fn outbox(&self, channel: &str) -> Vec<(String, serde_json::Value)> {
        read_outbox(&self.path(), channel)
    }

    pub fn resident(&self, id: &str) -> ResidentId {
        ResidentId::new(id).expect("id")
    }
}

/// Reads the whole outbox through the public store API, in queue order.
fn read_outbox(path: &std::path::Path, channel: &str) -> Vec<(String, serde_json::Value)> {
    let store = Store::open(path).expect("store");
    store
        .notifications(100_000)
        .expect("outbox")
        .into_iter()
        .filter(|row| row.channel.as_str() == channel)
        .map(|row| {
            (
                row.target,
                serde_json::from_slice(&row.payload).expect("JSON payload"),
            )
        })
        .collect()
}

impl Harness {
    /// Imports `roster_toml` into the store (as the admin API would write
    /// it) and hands the store's roster to the running engine.
    pub fn change_roster(&mut self, roster_toml: &str) -> ondol_alerting::RosterChanges {
        let roster = parse_roster(roster_toml, "changed roster").expect("valid roster");
        self.db.import_roster(&roster).expect("import");
        self.roster = self.db.load_roster().expect("load");
        let stored = self.roster.clone();
        self.apply(&stored)
    }

    /// Hands `roster` to the engine as is (entries missing from it are
    /// gone: an import never deletes, the admin API will).
    pub fn apply(&mut self, roster: &Roster) -> ondol_alerting::RosterChanges {
        let changes = self.engine().apply_roster(roster).expect("roster applied");
        self.engine().tick().expect("tick");
        changes
    }
}
