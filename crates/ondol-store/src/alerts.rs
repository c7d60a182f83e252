//! Alerts, their transitions, the notification outbox, alerting's timer
//! state and the alert part of the resident-day rollup (DESIGN §4, §6).
//!
//! Every alert change is one transaction together with the notifications
//! it causes and the rollup, so a crash never leaves an alert without its
//! notifications or a notification without its alert. Raising is keyed by
//! `(subject, rule, episode)`: raising the same occurrence again (after a
//! restart) changes nothing, and a partial unique index keeps one open
//! alert per `(subject, rule)`.

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use ondol_model::alert::{AlertEvent, AlertStatus, Cause, Outcome, Rule, Severity, Subject};
use ondol_model::{DeviceId, ResidentId};

use crate::Store;
use crate::alert_events;
use crate::error::StoreError;
use crate::query::{DeviceStateRow, ResidentActivityRow};
use crate::roster_db::{invalid, parse_date, parse_id, timestamp};

/// The actor of changes Ondol makes on its own.
pub const SYSTEM_ACTOR: &str = "system";

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub rule: Rule,
    /// The resident, the device (device_offline) or Ondol itself.
    pub subject: Subject,
    pub resident_id: Option<ResidentId>,
    pub device_id: Option<DeviceId>,
    /// Names this occurrence of the condition (see the module doc).
    pub episode: String,
    pub severity: Severity,
    pub cause: Cause,
    /// What happened, for people (a system alert: which part, how long).
    pub detail: Option<String>,
    /// The resident's local date at opening: the rollup's day.
    pub local_date: Option<Date>,
    pub opened_at: Timestamp,
    pub next_escalation_at: Option<Timestamp>,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: i64,
    pub rule: Rule,
    pub subject: Subject,
    pub resident_id: Option<ResidentId>,
    pub device_id: Option<DeviceId>,
    pub episode: String,
    pub severity: Severity,
    pub cause: Cause,
    pub detail: Option<String>,
    pub status: AlertStatus,
    pub outcome: Option<Outcome>,
    pub local_date: Option<Date>,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub acked_at: Option<Timestamp>,
    pub acked_by: Option<String>,
    pub resolved_at: Option<Timestamp>,
    pub resolved_by: Option<String>,
    pub escalations: u32,
    pub next_escalation_at: Option<Timestamp>,
    /// Notification events so far (numbers idempotency keys).
    pub events: u32,
}

/// One change of an alert, as kept in `alert_transitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: Timestamp,
    pub actor: String,
    pub event: String,
    pub status: AlertStatus,
    pub severity: Option<Severity>,
    pub outcome: Option<Outcome>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Mqtt,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Mqtt => "mqtt",
            Channel::Webhook => "webhook",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Channel> {
        match s {
            "mqtt" => Some(Channel::Mqtt),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// A notification to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Unique per delivery; receivers drop repeats by it.
    pub key: String,
    pub channel: Channel,
    /// MQTT: the topic; webhook: the staff id addressed (`""` for system).
    pub target: String,
    pub payload: Vec<u8>,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub key: String,
    pub alert_id: Option<i64>,
    pub channel: Channel,
    pub target: String,
    pub payload: Vec<u8>,
    pub created_at: Timestamp,
    pub attempts: u32,
}

/// What raising an alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new alert, now open.
    New(AlertRow),
    /// Another occurrence of this (subject, rule) is still open: nothing changed.
    AlreadyOpen(AlertRow),
    /// This very occurrence was raised before (maybe before a restart): nothing changed.
    Known(AlertRow),
}

/// A change alerting makes to an alert that is not resolved.
#[derive(Debug, Clone)]
pub struct AlertUpdate {
    /// `raised` (a higher tier), `repeated`, `escalated`.
    pub event: AlertEvent,
    pub severity: Option<Severity>,
    pub escalated: bool,
    /// `Some(x)` replaces the next escalation time with `x`.
    pub next_escalation_at: Option<Option<Timestamp>>,
    pub note: Option<String>,
}

/// Why a caseworker's command on an alert was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandRefused {
    NotFound,
    /// The alert is in a status the command does not apply to.
    Status(AlertStatus),
}

const ALERT_COLUMNS: &str = "id, rule, subject, resident_id, device_id, episode, severity, cause, status, \
     outcome, local_date, opened_ms, updated_ms, acked_ms, acked_by, resolved_ms, resolved_by, \
     escalations, next_escalation_ms, events, detail";

fn read_alert(row: &Row<'_>) -> rusqlite::Result<RawAlert> {
    Ok(RawAlert {
        id: row.get(0)?,
        rule: row.get(1)?,
        subject: row.get(2)?,
        resident_id: row.get(3)?,
        device_id: row.get(4)?,
        episode: row.get(5)?,
        severity: row.get(6)?,
        cause: row.get(7)?,
        status: row.get(8)?,
        outcome: row.get(9)?,
        local_date: row.get(10)?,
        opened_ms: row.get(11)?,
        updated_ms: row.get(12)?,
        acked_ms: row.get(13)?,
        acked_by: row.get(14)?,
        resolved_ms: row.get(15)?,
        resolved_by: row.get(16)?,
        escalations: row.get(17)?,
        next_escalation_ms: row.get(18)?,
        events: row.get(19)?,
        detail: row.get(20)?,
    })
}

struct RawAlert {
    id: i64,
    rule: String,
    subject: String,
    resident_id: Option<String>,
    device_id: Option<String>,
    episode: String,
    severity: String,
    cause: String,
    status: String,
    outcome: Option<String>,
    local_date: Option<String>,
    opened_ms: i64,
    updated_ms: i64,
    acked_ms: Option<i64>,
    acked_by: Option<String>,
    resolved_ms: Option<i64>,
    resolved_by: Option<String>,
    escalations: u32,
    next_escalation_ms: Option<i64>,
    events: u32,
    detail: Option<String>,
}

impl RawAlert {
    fn into_row(self) -> Result<AlertRow, StoreError> {
        const TABLE: &str = "alerts";
        let id = self.id;
        let key = || id.to_string();
        let at = |ms: Option<i64>| ms.map(|ms| timestamp(ms, TABLE, key)).transpose();
        Ok(AlertRow {
            id,
            rule: Rule::parse(&self.rule)
                .ok_or_else(|| invalid(TABLE, key(), format!("rule {:?}", self.rule)))?,
            subject: Subject::parse(&self.subject)
                .ok_or_else(|| invalid(TABLE, key(), format!("subject {:?}", self.subject)))?,
            resident_id: self
                .resident_id
                .map(|r| parse_id(&r, TABLE, key))
                .transpose()?,
            device_id: self
                .device_id
                .map(|d| parse_id(&d, TABLE, key))
                .transpose()?,
            episode: self.episode,
            severity: Severity::parse(&self.severity)
                .ok_or_else(|| invalid(TABLE, key(), format!("severity {:?}", self.severity)))?,
            cause: Cause::parse(&self.cause)
                .ok_or_else(|| invalid(TABLE, key(), format!("cause {:?}", self.cause)))?,
            detail: self.detail,
            status: AlertStatus::parse(&self.status)
                .ok_or_else(|| invalid(TABLE, key(), format!("status {:?}", self.status)))?,
            outcome: self
                .outcome
                .map(|o| {
                    Outcome::parse(&o)
                        .ok_or_else(|| invalid(TABLE, key(), format!("outcome {o:?}")))
                })
                .transpose()?,
            local_date: self
                .local_date
                .map(|d| parse_date(&d, TABLE, key))
                .transpose()?,
            opened_at: timestamp(self.opened_ms, TABLE, key)?,
            updated_at: timestamp(self.updated_ms, TABLE, key)?,
            acked_at: at(self.acked_ms)?,
            acked_by: self.acked_by,
            resolved_at: at(self.resolved_ms)?,
            resolved_by: self.resolved_by,
            escalations: self.escalations,
            next_escalation_at: at(self.next_escalation_ms)?,
            events: self.events,
        })
    }
}

fn alert_where(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Option<AlertRow>, StoreError> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {condition}"
        ))
        .and_then(|mut stmt| stmt.query_row(params, read_alert).optional())
        .map_err(StoreError::sqlite("reading an alert"))?;
    raw.map(RawAlert::into_row).transpose()
}

pub(crate) fn alerts_where(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AlertRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {condition}"
        ))
        .map_err(StoreError::sqlite("preparing an alert query"))?;
    let rows = stmt
        .query_map(params, read_alert)
        .map_err(StoreError::sqlite("reading alerts"))?;
    rows.map(|raw| {
        raw.map_err(StoreError::sqlite("reading alerts"))?
            .into_row()
    })
    .collect()
}

/// One transition to record.
struct Change<'a> {
    actor: &'a str,
    event: &'a str,
    status: AlertStatus,
    severity: Option<Severity>,
    outcome: Option<Outcome>,
    note: Option<&'a str>,
}

fn add_transition(
    tx: &Transaction<'_>,
    alert_id: i64,
    at: Timestamp,
    change: &Change<'_>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO alert_transitions (alert_id, at_ms, actor, event, status, severity, outcome, note) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            alert_id,
            at.as_millisecond(),
            change.actor,
            change.event,
            change.status.as_str(),
            change.severity.map(Severity::as_str),
            change.outcome.map(Outcome::as_str),
            change.note,
        ])
    })
    .map_err(StoreError::sqlite("recording an alert transition"))?;
    Ok(())
}

fn add_notifications(
    tx: &Transaction<'_>,
    alert_id: Option<i64>,
    at: Timestamp,
    notifications: &[NewNotification],
) -> Result<(), StoreError> {
    if notifications.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO notification_outbox \
             (idempotency_key, alert_id, channel, target, payload, created_ms, next_attempt_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .map_err(StoreError::sqlite("preparing the outbox insert"))?;
    for n in notifications {
        stmt.execute(params![
            n.key,
            alert_id,
            n.channel.as_str(),
            n.target,
            n.payload,
            at.as_millisecond()
        ])
        .map_err(StoreError::sqlite("queueing a notification"))?;
    }
    if let Some(id) = alert_id {
        tx.prepare_cached("UPDATE alerts SET events = events + 1 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([id]))
            .map_err(StoreError::sqlite("counting alert events"))?;
    }
    Ok(())
}

/// Queues `event` of alert `id` (as it is now in `tx`) for everyone who was
/// sent any earlier event of it; returns the alert as it is afterwards.
fn tell_past_recipients(
    tx: &Transaction<'_>,
    id: i64,
    event: AlertEvent,
    at: Timestamp,
) -> Result<Option<AlertRow>, StoreError> {
    let Some(row) = alert_where(tx, "id = ?1", [id])? else {
        return Ok(None);
    };
    let recipients = alert_events::past_recipients(tx, id)?;
    if recipients.is_empty() {
        return Ok(Some(row));
    }
    add_notifications(
        tx,
        Some(id),
        at,
        &alert_events::notifications(&row, event, &recipients),
    )?;
    alert_where(tx, "id = ?1", [id])
}

/// An outbox row `o` that no earlier, still undelivered event of the same
/// alert to the same target on the same channel holds back.
const NOT_BEHIND_AN_EARLIER_EVENT: &str = "NOT EXISTS (SELECT 1 FROM notification_outbox e \
     WHERE e.alert_id = o.alert_id AND e.channel = o.channel AND e.target = o.target \
       AND e.id < o.id AND e.delivered_ms IS NULL AND e.failed_ms IS NULL)";

/// Whole seconds from `from` to `to`, never negative.
fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    (to.as_second() - from.as_second()).max(0)
}

impl Store {
    fn immediate(&mut self, during: &'static str) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite(during))
    }

    /// Raises `new` unless this occurrence is known or another occurrence of
    /// the same (subject, rule) is open. A new alert gets its `opened`
    /// transition, its rollup entry and the notifications `notify` makes
    /// for it, all in one transaction.
    pub fn raise_alert(
        &mut self,
        new: &NewAlert,
        notify: impl FnOnce(&AlertRow) -> Vec<NewNotification>,
    ) -> Result<Raised, StoreError> {
        let tx = self.immediate("starting to raise an alert")?;
        let rule = new.rule.as_str();
        let subject = new.subject.to_string();
        let cause = new.cause.to_string();
        if let Some(known) = alert_where(
            &tx,
            "subject = ?1 AND rule = ?2 AND episode = ?3",
            params![subject, rule, new.episode],
        )? {
            return Ok(Raised::Known(known));
        }
        if let Some(open) = alert_where(
            &tx,
            "subject = ?1 AND rule = ?2 AND status <> 'resolved'",
            params![subject, rule],
        )? {
            return Ok(Raised::AlreadyOpen(open));
        }
        let opened_ms = new.opened_at.as_millisecond();
        tx.prepare_cached(
            "INSERT INTO alerts (rule, subject, resident_id, device_id, episode, severity, cause, \
               status, local_date, opened_ms, updated_ms, next_escalation_ms, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, ?9, ?10, ?11)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                rule,
                subject,
                new.resident_id.as_ref().map(ResidentId::as_str),
                new.device_id.as_ref().map(DeviceId::as_str),
                new.episode,
                new.severity.as_str(),
                cause,
                new.local_date.map(|d| d.to_string()),
                opened_ms,
                new.next_escalation_at.map(Timestamp::as_millisecond),
                new.detail,
            ])
        })
        .map_err(StoreError::sqlite("inserting an alert"))?;
        let id = tx.last_insert_rowid();
        add_transition(
            &tx,
            id,
            new.opened_at,
            &Change {
                actor: SYSTEM_ACTOR,
                event: "opened",
                status: AlertStatus::Open,
                severity: Some(new.severity),
                outcome: None,
                note: Some(&cause),
            },
        )?;
        if let (Some(resident), Some(date)) = (&new.resident_id, new.local_date) {
            let date = date.to_string();
            tx.prepare_cached(
                "INSERT INTO resident_days (resident_id, local_date, alerts) VALUES (?1, ?2, 1) \
                 ON CONFLICT (resident_id, local_date) DO UPDATE SET alerts = alerts + 1",
            )
            .and_then(|mut stmt| stmt.execute(params![resident.as_str(), date]))
            .map_err(StoreError::sqlite("counting an alert in the day rollup"))?;
            tx.prepare_cached(
                "INSERT INTO resident_day_alerts (resident_id, local_date, alert_id, rule) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| stmt.execute(params![resident.as_str(), date, id, rule]))
            .map_err(StoreError::sqlite("adding an alert to the day rollup"))?;
        }
        let row = alert_where(&tx, "id = ?1", [id])?
            .ok_or_else(|| invalid("alerts", id.to_string(), "vanished after insert".into()))?;
        let notifications = notify(&row);
        add_notifications(&tx, Some(id), new.opened_at, &notifications)?;
        let row = alert_where(&tx, "id = ?1", [id])?.unwrap_or(row);
        tx.commit()
            .map_err(StoreError::sqlite("committing a new alert"))?;
        Ok(Raised::New(row))
    }

    /// Applies an update by alerting to an alert that is not resolved (an
    /// escalation: that is still open), with the notifications `notify`
    /// makes for the updated alert. `None` when nothing changed.
    pub fn update_alert(
        &mut self,
        id: i64,
        update: &AlertUpdate,
        at: Timestamp,
        notify: impl FnOnce(&AlertRow) -> Vec<NewNotification>,
    ) -> Result<Option<AlertRow>, StoreError> {
        let tx = self.immediate("starting an alert update")?;
        // An escalation applies only while nobody has acknowledged: checked
        // in the same transaction as the update, so an acknowledgement from
        // another process in between wins.
        let condition = if update.escalated {
            "id = ?1 AND status = 'open'"
        } else {
            "id = ?1 AND status <> 'resolved'"
        };
        let Some(current) = alert_where(&tx, condition, [id])? else {
            return Ok(None);
        };
        let severity = update.severity.unwrap_or(current.severity);
        let next = match update.next_escalation_at {
            Some(next) => next,
            None => current.next_escalation_at,
        };
        tx.prepare_cached(
            "UPDATE alerts SET severity = ?2, escalations = escalations + ?3, \
               next_escalation_ms = ?4, updated_ms = ?5 WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                severity.as_str(),
                u32::from(update.escalated),
                next.map(Timestamp::as_millisecond),
                at.as_millisecond(),
            ])
        })
        .map_err(StoreError::sqlite("updating an alert"))?;
        add_transition(
            &tx,
            id,
            at,
            &Change {
                actor: SYSTEM_ACTOR,
                event: update.event.as_str(),
                status: current.status,
                severity: Some(severity),
                outcome: None,
                note: update.note.as_deref(),
            },
        )?;
        let row = alert_where(&tx, "id = ?1", [id])?.unwrap_or(current);
        let notifications = notify(&row);
        add_notifications(&tx, Some(id), at, &notifications)?;
        let row = alert_where(&tx, "id = ?1", [id])?.unwrap_or(row);
        tx.commit()
            .map_err(StoreError::sqlite("committing an alert update"))?;
        Ok(Some(row))
    }

    /// A staff member acknowledges an open alert: escalation stops.
    pub fn acknowledge_alert(
        &mut self,
        id: i64,
        actor: &str,
        at: Timestamp,
        note: Option<&str>,
    ) -> Result<Result<AlertRow, CommandRefused>, StoreError> {
        let tx = self.immediate("starting an acknowledgement")?;
        let Some(current) = alert_where(&tx, "id = ?1", [id])? else {
            return Ok(Err(CommandRefused::NotFound));
        };
        if current.status != AlertStatus::Open {
            return Ok(Err(CommandRefused::Status(current.status)));
        }
        tx.prepare_cached(
            "UPDATE alerts SET status = 'acknowledged', acked_ms = ?2, acked_by = ?3, \
               next_escalation_ms = NULL, updated_ms = ?2 WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.execute(params![id, at.as_millisecond(), actor]))
        .map_err(StoreError::sqlite("acknowledging an alert"))?;
        add_transition(
            &tx,
            id,
            at,
            &Change {
                actor,
                event: "acknowledged",
                status: AlertStatus::Acknowledged,
                severity: None,
                outcome: None,
                note,
            },
        )?;
        tx.prepare_cached("UPDATE resident_day_alerts SET seconds_to_ack = ?2 WHERE alert_id = ?1")
            .and_then(|mut stmt| stmt.execute(params![id, seconds_between(current.opened_at, at)]))
            .map_err(StoreError::sqlite("recording the time to acknowledge"))?;
        let row = tell_past_recipients(&tx, id, AlertEvent::Acknowledged, at)?.unwrap_or(current);
        tx.commit()
            .map_err(StoreError::sqlite("committing an acknowledgement"))?;
        Ok(Ok(row))
    }

    /// Resolves an alert that is open or acknowledged. A staff member who
    /// resolves an open alert has also acknowledged it; the system
    /// (`cleared_by_resident`) has not.
    pub fn resolve_alert(
        &mut self,
        id: i64,
        actor: &str,
        outcome: Outcome,
        at: Timestamp,
        note: Option<&str>,
    ) -> Result<Result<AlertRow, CommandRefused>, StoreError> {
        let tx = self.immediate("starting a resolution")?;
        let Some(current) = alert_where(&tx, "id = ?1", [id])? else {
            return Ok(Err(CommandRefused::NotFound));
        };
        if current.status == AlertStatus::Resolved {
            return Ok(Err(CommandRefused::Status(current.status)));
        }
        let acked_at = match current.acked_at {
            Some(acked) => Some(acked),
            None if actor != SYSTEM_ACTOR => Some(at),
            None => None,
        };
        tx.prepare_cached(
            "UPDATE alerts SET status = 'resolved', outcome = ?2, resolved_ms = ?3, resolved_by = ?4, \
               acked_ms = ?5, acked_by = coalesce(acked_by, CASE WHEN ?5 IS NULL THEN NULL ELSE ?4 END), \
               next_escalation_ms = NULL, updated_ms = ?3 WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                outcome.as_str(),
                at.as_millisecond(),
                actor,
                acked_at.map(Timestamp::as_millisecond)
            ])
        })
        .map_err(StoreError::sqlite("resolving an alert"))?;
        add_transition(
            &tx,
            id,
            at,
            &Change {
                actor,
                event: "resolved",
                status: AlertStatus::Resolved,
                severity: None,
                outcome: Some(outcome),
                note,
            },
        )?;
        tx.prepare_cached(
            "UPDATE resident_day_alerts SET seconds_to_ack = ?2, seconds_to_resolve = ?3, outcome = ?4 \
             WHERE alert_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                acked_at.map(|a| seconds_between(current.opened_at, a)),
                seconds_between(current.opened_at, at),
                outcome.as_str()
            ])
        })
        .map_err(StoreError::sqlite("recording the time to resolve"))?;
        let row = tell_past_recipients(&tx, id, AlertEvent::Resolved, at)?.unwrap_or(current);
        tx.commit()
            .map_err(StoreError::sqlite("committing a resolution"))?;
        Ok(Ok(row))
    }

    pub fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        alert_where(&self.conn, "id = ?1", [id])
    }

    /// The alert of (subject, rule) that is open or acknowledged, if any.
    pub fn unresolved_alert(
        &self,
        subject: &Subject,
        rule: Rule,
    ) -> Result<Option<AlertRow>, StoreError> {
        alert_where(
            &self.conn,
            "subject = ?1 AND rule = ?2 AND status <> 'resolved'",
            params![subject.to_string(), rule.as_str()],
        )
    }

    /// Every alert that is open or acknowledged, oldest first.
    pub fn unresolved_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        alerts_where(&self.conn, "status <> 'resolved' ORDER BY id", [])
    }

    /// The latest alerts (all statuses), newest first.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        alerts_where(
            &self.conn,
            "1 ORDER BY id DESC LIMIT ?1",
            [i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// The transitions of one alert, oldest first.
    pub fn alert_transitions(&self, id: i64) -> Result<Vec<Transition>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at_ms, actor, event, status, severity, outcome, note \
                 FROM alert_transitions WHERE alert_id = ?1 ORDER BY id",
            )
            .map_err(StoreError::sqlite("preparing the transitions query"))?;
        let rows = stmt
            .query_map([id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(StoreError::sqlite("reading transitions"))?;
        let table = "alert_transitions";
        let key = || id.to_string();
        rows.map(|row| {
            let (at, actor, event, status, severity, outcome, note) =
                row.map_err(StoreError::sqlite("reading transitions"))?;
            Ok(Transition {
                at: timestamp(at, table, key)?,
                actor,
                event,
                status: AlertStatus::parse(&status)
                    .ok_or_else(|| invalid(table, key(), format!("status {status:?}")))?,
                severity: severity.and_then(|s| Severity::parse(&s)),
                outcome: outcome.and_then(|o| Outcome::parse(&o)),
                note,
            })
        })
        .collect()
    }

    /// Whether a staff member with this id is on the roster.
    pub fn staff_exists(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT 1 FROM staff WHERE id = ?1")
            .and_then(|mut stmt| stmt.exists([id]))
            .map_err(StoreError::sqlite("looking up a staff member"))
    }

    // ---- the outbox ----

    /// Notifications due for delivery at `now`, oldest first. An alert's
    /// events to one target go out in order: one waits while an earlier one
    /// of the same alert, channel and target is still undelivered (failing
    /// and retried), so no app is told "resolved" before "opened".
    pub fn due_notifications(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_where(
            &format!(
                "delivered_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?1 \
                 AND {NOT_BEHIND_AN_EARLIER_EVENT} ORDER BY next_attempt_ms, id LIMIT ?2"
            ),
            params![
                now.as_millisecond(),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    /// Every notification, delivered or not, in the order it was queued (at
    /// most `limit`): what the outbox holds, for operators' tools and tests.
    pub fn notifications(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_where(
            "1 ORDER BY id LIMIT ?1",
            [i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn outbox_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, idempotency_key, alert_id, channel, target, payload, created_ms, attempts \
                 FROM notification_outbox o WHERE {condition}"
            ))
            .map_err(StoreError::sqlite("preparing the outbox query"))?;
        let rows = stmt
            .query_map(params, |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Vec<u8>>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, u32>(7)?,
                ))
            })
            .map_err(StoreError::sqlite("reading the outbox"))?;
        let table = "notification_outbox";
        rows.map(|row| {
            let (id, key, alert_id, channel, target, payload, created, attempts) =
                row.map_err(StoreError::sqlite("reading the outbox"))?;
            Ok(OutboxRow {
                id,
                channel: Channel::parse(&channel).ok_or_else(|| {
                    invalid(table, id.to_string(), format!("channel {channel:?}"))
                })?,
                key,
                alert_id,
                target,
                payload,
                created_at: timestamp(created, table, || id.to_string())?,
                attempts,
            })
        })
        .collect()
    }

    /// When the next undelivered notification is due, if any (one waiting
    /// behind an earlier event of its alert does not count: that one is).
    pub fn next_notification_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let ms: Option<i64> = self
            .conn
            .query_row(
                &format!(
                    "SELECT min(next_attempt_ms) FROM notification_outbox o \
                     WHERE delivered_ms IS NULL AND failed_ms IS NULL AND {NOT_BEHIND_AN_EARLIER_EVENT}"
                ),
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("reading the outbox"))?;
        ms.map(|ms| timestamp(ms, "notification_outbox", || "min".into()))
            .transpose()
    }

    pub fn notification_delivered(&mut self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE notification_outbox SET delivered_ms = ?2, attempts = attempts + 1 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![id, at.as_millisecond()]))
            .map_err(StoreError::sqlite("marking a notification delivered"))?;
        Ok(())
    }

    /// A delivery attempt failed: try again at `retry_at`, or give up (`None`).
    pub fn notification_failed(
        &mut self,
        id: i64,
        at: Timestamp,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE notification_outbox SET attempts = attempts + 1, last_error = ?2, \
                   next_attempt_ms = coalesce(?3, next_attempt_ms), \
                   failed_ms = CASE WHEN ?3 IS NULL THEN ?4 ELSE NULL END WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    error,
                    retry_at.map(Timestamp::as_millisecond),
                    at.as_millisecond()
                ])
            })
            .map_err(StoreError::sqlite("recording a failed delivery"))?;
        Ok(())
    }

    // ---- alerting's timer state ----

    /// The watch state: subject → (watched since, last check-in date evaluated).
    pub fn watch_states(&self) -> Result<Vec<(Subject, Timestamp, Option<Date>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT subject, since_ms, checkin_evaluated FROM alert_watch")
            .map_err(StoreError::sqlite("preparing the watch query"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(StoreError::sqlite("reading the watch state"))?;
        let table = "alert_watch";
        rows.map(|row| {
            let (subject, since, date) =
                row.map_err(StoreError::sqlite("reading the watch state"))?;
            let key = || subject.clone();
            Ok((
                Subject::parse(&subject)
                    .ok_or_else(|| invalid(table, key(), format!("subject {subject:?}")))?,
                timestamp(since, table, key)?,
                date.map(|d| parse_date(&d, table, key)).transpose()?,
            ))
        })
        .collect()
    }

    /// Starts watching the subjects not watched yet, in one transaction.
    pub fn start_watching(&mut self, subjects: &[(Subject, Timestamp)]) -> Result<(), StoreError> {
        let tx = self.immediate("starting to record watch state")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO alert_watch (subject, since_ms) VALUES (?1, ?2)",
                )
                .map_err(StoreError::sqlite("preparing the watch insert"))?;
            for (subject, since) in subjects {
                stmt.execute(params![subject.to_string(), since.as_millisecond()])
                    .map_err(StoreError::sqlite("recording watch state"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sqlite("committing watch state"))
    }

    /// Starts watching these subjects again from the given time (a resident
    /// or device that joined the roster while alerting runs, perhaps for the
    /// second time): `since` is replaced, the evaluated check-in day kept.
    pub fn restart_watching(
        &mut self,
        subjects: &[(Subject, Timestamp)],
    ) -> Result<(), StoreError> {
        if subjects.is_empty() {
            return Ok(());
        }
        let tx = self.immediate("starting to record watch state")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO alert_watch (subject, since_ms) VALUES (?1, ?2) \
                     ON CONFLICT (subject) DO UPDATE SET since_ms = excluded.since_ms",
                )
                .map_err(StoreError::sqlite("preparing the watch upsert"))?;
            for (subject, since) in subjects {
                stmt.execute(params![subject.to_string(), since.as_millisecond()])
                    .map_err(StoreError::sqlite("recording watch state"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sqlite("committing watch state"))
    }

    /// Records, in one transaction, that these check-in deadlines have been
    /// evaluated (subject, local date).
    pub fn checkins_evaluated(&mut self, marks: &[(Subject, Date)]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let tx = self.immediate("starting to record check-in evaluations")?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE alert_watch SET checkin_evaluated = ?2 WHERE subject = ?1")
                .map_err(StoreError::sqlite("preparing the evaluation update"))?;
            for (subject, date) in marks {
                stmt.execute(params![subject.to_string(), date.to_string()])
                    .map_err(StoreError::sqlite("recording a check-in evaluation"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sqlite("committing check-in evaluations"))
    }

    /// Whether the resident-day rollup has a check-in inside the window.
    pub fn checkin_done(&self, resident: &ResidentId, date: Date) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT 1 FROM resident_days WHERE resident_id = ?1 AND local_date = ?2 AND checkin_done = 1",
            )
            .and_then(|mut stmt| stmt.exists(params![resident.as_str(), date.to_string()]))
            .map_err(StoreError::sqlite("reading a check-in"))
    }

    /// Every resident's activity times (for rebuilding alerting's state).
    pub fn all_resident_activity(&self) -> Result<Vec<ResidentActivityRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT resident_id, last_reading_ms, last_activity_ms, last_checkin_ms FROM resident_activity",
            )
            .map_err(StoreError::sqlite("preparing the activity scan"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ))
            })
            .map_err(StoreError::sqlite("scanning resident activity"))?;
        let table = "resident_activity";
        rows.map(|row| {
            let (id, reading, activity, checkin) =
                row.map_err(StoreError::sqlite("scanning resident activity"))?;
            let key = || id.clone();
            let at = |ms: Option<i64>| ms.map(|ms| timestamp(ms, table, key)).transpose();
            Ok(ResidentActivityRow {
                resident_id: parse_id(&id, table, key)?,
                last_reading_at: at(reading)?,
                last_activity_at: at(activity)?,
                last_checkin_at: at(checkin)?,
            })
        })
        .collect()
    }

    /// Every device's state (for rebuilding alerting's state).
    pub fn all_device_states(&self) -> Result<Vec<DeviceStateRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT device_id, online, battery_pct, rssi_dbm, firmware, last_status_ms, last_seen_ms, \
                   last_activity_ms FROM device_state",
            )
            .map_err(StoreError::sqlite("preparing the device state scan"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<bool>>(1)?,
                    row.get::<_, Option<u8>>(2)?,
                    row.get::<_, Option<i16>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(StoreError::sqlite("scanning device state"))?;
        let table = "device_state";
        rows.map(|row| {
            let (id, online, battery, rssi, firmware, status, seen, activity) =
                row.map_err(StoreError::sqlite("scanning device state"))?;
            let key = || id.clone();
            let at = |ms: Option<i64>| ms.map(|ms| timestamp(ms, table, key)).transpose();
            Ok(DeviceStateRow {
                device_id: parse_id(&id, table, key)?,
                online,
                battery_pct: battery,
                rssi_dbm: rssi,
                firmware,
                last_status_at: at(status)?,
                last_seen_at: at(seen)?,
                last_activity_at: at(activity)?,
            })
        })
        .collect()
    }
}
