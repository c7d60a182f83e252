//! The schema as an ordered list of migrations. `PRAGMA user_version` holds
//! how many have been applied; each runs in its own transaction together
//! with the version bump, so a crash mid-migration leaves the previous
//! version intact. Never edit a migration that has shipped: append a new one.
//!
//! Conventions: timestamps are `INTEGER` Unix epoch milliseconds (UTC) and
//! end in `_ms` (finer precision is cut, so the dedupe key works at the
//! wire contract's millisecond resolution); local dates are `TEXT` `YYYY-MM-DD`; booleans are `0`/`1`.
//! Tables keyed by natural keys are `WITHOUT ROWID` (the key is the storage
//! order, so lookups and range scans by key touch one b-tree).
//!
//! Foreign keys guard the roster tables only. The tables ingest writes
//! (readings, device state, activity, rollups, rejections) deliberately have
//! none: a batch is one transaction, and one row that violates a constraint
//! would fail the whole batch and every receipt in it, forever, on each
//! resend. Ingest checks devices against the roster before it writes.

use std::path::Path;

use rusqlite::Connection;

use crate::error::StoreError;

/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    V1_INITIAL,
    V2_DEVICE_CREDENTIALS,
    V3_ALERTING,
    V4_SINK_KEYS,
    V5_AUDIT_LOG,
    V6_ROSTER_REVISION,
    V7_ADMIN_REGISTRY,
    V8_BACKFILLS,
    V9_ALERT_DETAIL,
    V10_PROCESSES,
];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const V1_INITIAL: &str = r#"
-- The roster (DESIGN §3). The roster file is an import path: entries are
-- added and updated, never deleted, by an import.

CREATE TABLE staff (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('caseworker', 'supervisor', 'evaluator', 'admin')),
    -- The region a supervisor oversees; NULL = every region.
    region     TEXT,
    -- Environment variable holding the bearer token (never the token).
    token_env  TEXT
) WITHOUT ROWID;

CREATE TABLE residents (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    -- IANA name, e.g. Asia/Seoul.
    timezone        TEXT NOT NULL,
    region          TEXT NOT NULL,
    enrolled_from   TEXT NOT NULL,
    -- Last enrolled day, inclusive; NULL = open-ended.
    enrolled_until  TEXT,
    -- The caseworker assignment.
    caseworker      TEXT REFERENCES staff (id),
    -- Daily check-in window [start, end) in local time as HH:MM:SS; both NULL
    -- when the resident has no daily check-in.
    checkin_start   TEXT,
    checkin_end     TEXT,
    -- Whether any activity inside the window counts as a check-in.
    checkin_passive INTEGER NOT NULL DEFAULT 0,
    CHECK ((checkin_start IS NULL) = (checkin_end IS NULL))
) WITHOUT ROWID;

CREATE INDEX residents_by_caseworker ON residents (caseworker);
CREATE INDEX residents_by_region ON residents (region);

-- Days a resident is away (hospital, family visit); both ends included.
CREATE TABLE away_periods (
    resident_id TEXT NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    from_date   TEXT NOT NULL,
    until_date  TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (resident_id, from_date),
    CHECK (from_date <= until_date)
) WITHOUT ROWID;

CREATE TABLE devices (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('gateway', 'wearable', 'button', 'sensor')),
    active          INTEGER NOT NULL DEFAULT 1,
    -- Environment variable holding the broker password (import path).
    secret_env      TEXT,
    -- Filled by device provisioning (a later release); never by an import.
    credential_hash TEXT
) WITHOUT ROWID;

-- Which resident a device watched over [from_ms, until_ms); NULL ends are
-- unbounded. A reading is attributed to the binding valid at its time.
CREATE TABLE device_bindings (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    resident_id TEXT NOT NULL REFERENCES residents (id),
    from_ms     INTEGER,
    until_ms    INTEGER,
    CHECK (from_ms IS NULL OR until_ms IS NULL OR from_ms < until_ms)
);

CREATE INDEX device_bindings_by_device ON device_bindings (device_id, from_ms);
CREATE INDEX device_bindings_by_resident ON device_bindings (resident_id);

-- The embedded time-series sink (see sink.rs). The primary key is the dedupe
-- key of DESIGN §2: a resend of the same (device, type, sensor, time) is
-- stored once. `sensor` is '' when the reading names none.
CREATE TABLE readings (
    device_id    TEXT NOT NULL,
    reading_type TEXT NOT NULL,
    sensor       TEXT NOT NULL DEFAULT '',
    ts_ms        INTEGER NOT NULL,
    resident_id  TEXT NOT NULL,
    -- Numbers in the canonical unit; blood pressure is value = systolic,
    -- value2 = diastolic; motion is 0/1, fall is 1, satisfaction the score.
    value        REAL,
    value2       REAL,
    -- door: open/closed; checkin: ok/help.
    text         TEXT,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, reading_type, sensor, ts_ms)
) WITHOUT ROWID;

-- For a resident's readings over a time range (API, FHIR export).
CREATE INDEX readings_by_resident ON readings (resident_id, ts_ms);

-- Readings and messages ingest refused, for device makers and operators.
CREATE TABLE rejections (
    id              INTEGER PRIMARY KEY,
    received_ms     INTEGER NOT NULL,
    -- The id from the topic as received: possibly invalid or unknown.
    device_id       TEXT,
    topic           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    -- The reading's index in its message; NULL when the whole message was refused.
    idx             INTEGER,
    msg_id          TEXT,
    -- At most 256 bytes of what the device sent.
    payload_excerpt BLOB NOT NULL
);

CREATE INDEX rejections_by_time ON rejections (received_ms);
CREATE INDEX rejections_by_reason ON rejections (reason, received_ms);

-- What each device last told us and when we last heard from it.
CREATE TABLE device_state (
    device_id        TEXT PRIMARY KEY NOT NULL,
    -- From the last status message or Will; NULL until one arrives.
    online           INTEGER,
    battery_pct      INTEGER,
    rssi_dbm         INTEGER,
    firmware         TEXT,
    last_status_ms   INTEGER,
    -- Receive time of the last reading accepted from it (resends included:
    -- a device that resends is alive).
    last_seen_ms     INTEGER,
    -- Time of its latest newly stored reading that shows activity.
    last_activity_ms INTEGER
) WITHOUT ROWID;

-- Per resident: the times the status board and the alert rules start from.
CREATE TABLE resident_activity (
    resident_id      TEXT PRIMARY KEY NOT NULL,
    -- Latest reading of any type.
    last_reading_ms  INTEGER,
    -- Latest reading that shows someone moved or acted in the home.
    last_activity_ms INTEGER,
    -- Latest explicit `checkin: ok`, at any time of day.
    last_checkin_ms  INTEGER
) WITHOUT ROWID;

-- The evaluator rollup per resident and local day (DESIGN §6): the part
-- ingest fills. Days with no reading have no row. Alerting and reporting add
-- their own columns or tables (alerts by rule, enrolment, checkin_expected)
-- in later migrations.
CREATE TABLE resident_days (
    resident_id        TEXT NOT NULL,
    local_date         TEXT NOT NULL,
    readings           INTEGER NOT NULL DEFAULT 0,
    -- Bit h is set when a reading fell in local hour h (0..=23);
    -- hours_with_data = popcount.
    hours_mask         INTEGER NOT NULL DEFAULT 0,
    active             INTEGER GENERATED ALWAYS AS (readings > 0) VIRTUAL,
    -- An `ok` (or, with passive check-in, activity) inside the window.
    checkin_done       INTEGER NOT NULL DEFAULT 0,
    satisfaction_sum   INTEGER NOT NULL DEFAULT 0,
    satisfaction_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resident_id, local_date)
) WITHOUT ROWID;

CREATE INDEX resident_days_by_date ON resident_days (local_date);

CREATE TABLE resident_day_readings (
    resident_id  TEXT NOT NULL,
    local_date   TEXT NOT NULL,
    reading_type TEXT NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (resident_id, local_date, reading_type)
) WITHOUT ROWID;
"#;

const V2_DEVICE_CREDENTIALS: &str = r#"
-- Device identity (issue 3). `credential_hash` (from V1) is an Argon2id PHC
-- string set by `ondol device add|rotate-secret` or a roster `secret_env`
-- import; the secret itself is never stored. A revoked device has
-- `revoked_ms` set and no hash: it can connect again only after a new
-- secret is issued.
ALTER TABLE devices ADD COLUMN revoked_ms INTEGER;
ALTER TABLE devices ADD COLUMN credential_changed_ms INTEGER;
"#;

const V3_ALERTING: &str = r#"
-- Alerting (DESIGN §4): alerts, every transition, the notification outbox
-- and the timer state that must survive a restart.

-- One row per occurrence of a condition. `subject` is what the alert is
-- about: the resident id, the device id for device_offline, or 'system' for
-- system_outage. `episode` names the occurrence (the local date of a missed
-- check-in, the start of a silence), so raising it again after a restart
-- changes nothing.
CREATE TABLE alerts (
    id                 INTEGER PRIMARY KEY,
    rule               TEXT NOT NULL,
    subject            TEXT NOT NULL,
    resident_id        TEXT,
    device_id          TEXT,
    episode            TEXT NOT NULL,
    severity           TEXT NOT NULL,
    -- Why: no_checkin, no_activity, no_data, help, fall, silent, will_offline, mass_silence, broker_unreachable.
    cause              TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    outcome            TEXT,
    -- The resident's local date when it opened (the rollup's day).
    local_date         TEXT,
    opened_ms          INTEGER NOT NULL,
    updated_ms         INTEGER NOT NULL,
    acked_ms           INTEGER,
    acked_by           TEXT,
    resolved_ms        INTEGER,
    resolved_by        TEXT,
    escalations        INTEGER NOT NULL DEFAULT 0,
    -- When the next escalation is due while nobody acknowledges; NULL = none.
    next_escalation_ms INTEGER,
    -- Notification events so far; numbers the idempotency key of the next.
    events             INTEGER NOT NULL DEFAULT 0,
    UNIQUE (subject, rule, episode)
);

-- One open alert per (subject, rule).
CREATE UNIQUE INDEX alerts_one_open ON alerts (subject, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_by_status ON alerts (status, opened_ms);
CREATE INDEX alerts_by_resident ON alerts (resident_id, opened_ms);

-- Every change of an alert, with who made it and when.
CREATE TABLE alert_transitions (
    id        INTEGER PRIMARY KEY,
    alert_id  INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    -- 'system' or a staff id.
    actor     TEXT NOT NULL,
    -- opened, raised (a higher tier), repeated, escalated, acknowledged, resolved.
    event     TEXT NOT NULL,
    status    TEXT NOT NULL,
    severity  TEXT,
    outcome   TEXT,
    note      TEXT
);

CREATE INDEX alert_transitions_by_alert ON alert_transitions (alert_id, id);

-- Notifications waiting to be delivered or delivered, written in the same
-- transaction as the alert change that caused them. Delivery is at least
-- once; receivers drop repeats by idempotency_key.
CREATE TABLE notification_outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    alert_id        INTEGER,
    channel         TEXT NOT NULL CHECK (channel IN ('mqtt', 'webhook')),
    -- mqtt: the topic; webhook: the staff id addressed ('' for system alerts).
    target          TEXT NOT NULL,
    payload         BLOB NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms    INTEGER,
    -- Set when delivery was given up (an operator must act).
    failed_ms       INTEGER,
    last_error      TEXT
);

CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_ms)
    WHERE delivered_ms IS NULL AND failed_ms IS NULL;

-- Timer state per watched subject (resident or device): since when it is
-- watched (its first deadlines count from here) and the last local date
-- whose check-in deadline was evaluated.
CREATE TABLE alert_watch (
    subject           TEXT PRIMARY KEY NOT NULL,
    since_ms          INTEGER NOT NULL,
    checkin_evaluated TEXT
) WITHOUT ROWID;

-- The alert part of the resident-day rollup (DESIGN §6): how many alerts
-- opened that day, and per alert its rule, seconds to acknowledge and to
-- resolve, and outcome.
ALTER TABLE resident_days ADD COLUMN alerts INTEGER NOT NULL DEFAULT 0;

CREATE TABLE resident_day_alerts (
    resident_id        TEXT NOT NULL,
    local_date         TEXT NOT NULL,
    alert_id           INTEGER NOT NULL,
    rule               TEXT NOT NULL,
    seconds_to_ack     INTEGER,
    seconds_to_resolve INTEGER,
    outcome            TEXT,
    PRIMARY KEY (resident_id, local_date, alert_id)
) WITHOUT ROWID;
"#;

/// The dedupe keys of readings kept by an external time-series sink
/// (InfluxDB): the raw readings live there, the keys here, committed in the
/// same transaction as the rollups they gate.
const V4_SINK_KEYS: &str = r#"
CREATE TABLE reading_keys (
    device_id    TEXT NOT NULL,
    reading_type TEXT NOT NULL,
    sensor       TEXT NOT NULL DEFAULT '',
    ts_ms        INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, reading_type, sensor, ts_ms)
) WITHOUT ROWID;
"#;

/// The append-only, hash-chained audit log (see `audit.rs`). `residents` is
/// a JSON array of resident ids; `at_ms` is Unix milliseconds.
const V5_AUDIT_LOG: &str = r#"
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    residents  TEXT NOT NULL,
    source     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at_ms);
-- Finding a repeated entry (a polling dashboard) by actor and time.
CREATE INDEX audit_log_actor ON audit_log (actor, at_ms);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#;

/// A counter every change of the roster tables bumps (triggers, so it holds
/// whoever writes: the import, the CLI, the admin API, a hand-made fix).
/// Processes that keep the roster in memory poll it to learn of changes.
const V6_ROSTER_REVISION: &str = r#"
CREATE TABLE roster_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO roster_revision (id, revision) VALUES (1, 0);

CREATE TRIGGER staff_insert_bumps_revision AFTER INSERT ON staff
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER staff_update_bumps_revision AFTER UPDATE ON staff
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER staff_delete_bumps_revision AFTER DELETE ON staff
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER residents_insert_bumps_revision AFTER INSERT ON residents
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER residents_update_bumps_revision AFTER UPDATE ON residents
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER residents_delete_bumps_revision AFTER DELETE ON residents
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER away_periods_insert_bumps_revision AFTER INSERT ON away_periods
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER away_periods_update_bumps_revision AFTER UPDATE ON away_periods
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER away_periods_delete_bumps_revision AFTER DELETE ON away_periods
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER devices_insert_bumps_revision AFTER INSERT ON devices
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER devices_update_bumps_revision AFTER UPDATE ON devices
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER devices_delete_bumps_revision AFTER DELETE ON devices
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER device_bindings_insert_bumps_revision AFTER INSERT ON device_bindings
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER device_bindings_update_bumps_revision AFTER UPDATE ON device_bindings
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
CREATE TRIGGER device_bindings_delete_bumps_revision AFTER DELETE ON device_bindings
BEGIN UPDATE roster_revision SET revision = revision + 1; END;
"#;

/// Registry entries an admin changed through the API (see `admin.rs`).
const V7_ADMIN_REGISTRY: &str = r#"
-- Registry entries changed through the admin API carry the time of the
-- last change; a roster file import no longer overwrites them (roster_db).
ALTER TABLE staff ADD COLUMN admin_changed_ms INTEGER;
ALTER TABLE residents ADD COLUMN admin_changed_ms INTEGER;
ALTER TABLE devices ADD COLUMN admin_changed_ms INTEGER;
"#;

/// Synthetic history written by `ondol simulate backfill`: which run (its
/// parameters, one canonical string) filled this store, so a rerun with the
/// same parameters can complete it and any other is refused.
const V8_BACKFILLS: &str = r#"
CREATE TABLE backfills (
    params      TEXT PRIMARY KEY NOT NULL,
    started_ms  INTEGER NOT NULL,
    -- NULL while the run has not finished (interrupted runs are completed by
    -- running them again).
    finished_ms INTEGER
) WITHOUT ROWID;
"#;

const V9_ALERT_DETAIL: &str = r#"
-- What happened, for people: a system alert says which part of Ondol
-- stopped and for how long (a stall: "alerting did not run for 4m 2s").
ALTER TABLE alerts ADD COLUMN detail TEXT;

-- An alert's notifications to one target go out in event order (see
-- `Store::due_notifications`); also finds who heard of an alert.
CREATE INDEX notification_outbox_by_alert
    ON notification_outbox (alert_id, channel, target, id);
"#;

const V10_PROCESSES: &str = r#"
-- What alerting needs of each committed batch (see feed.rs), written in the
-- batch's transaction by whichever process committed it, and deleted by
-- alerting once applied. A queue, never tailed by id.
CREATE TABLE alerting_feed (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    partition    INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    facts        TEXT NOT NULL
);
CREATE INDEX alerting_feed_by_partition ON alerting_feed (partition, id);

-- Each ingest worker's heartbeat and the conditions it sees (broker
-- unreachable, nothing arriving, ...): alerting in another process holds
-- missing-data alerts on them, and raises one system alert when no worker
-- has been heard from.
CREATE TABLE ingest_workers (
    worker       TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    conditions   TEXT NOT NULL
) WITHOUT ROWID;

-- The one alerting process of this store and its lease.
CREATE TABLE alerting_holder (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    holder     TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    since_ms   INTEGER NOT NULL,
    renewed_ms INTEGER NOT NULL
);
"#;

/// Brings the schema of `conn` up to [`SCHEMA_VERSION`]. Refuses a database
/// written by a newer Ondol: this code cannot know what its tables mean.
///
/// The version is read again inside each exclusive transaction, so two
/// processes opening a new file at once do not both apply the same step.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        if found < 0 {
            return Err(StoreError::InvalidRow {
                table: "PRAGMA user_version",
                key: path.display().to_string(),
                detail: format!("negative schema version {found}: not an Ondol database"),
            });
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        let Some(script) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            // Up to date (dropping `tx` ends the empty transaction).
            return Ok(());
        };
        let version = found + 1;
        let failed = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        tx.execute_batch(script).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, "database schema migrated");
    }
}
