//! The alert event: what staff apps and webhooks receive (DESIGN §2, §4),
//! built in one place for everyone who changes an alert — alerting when it
//! opens, raises, repeats or escalates one, and the store itself when staff
//! (API, CLI) or Ondol acknowledge or resolve it.
//!
//! ```json
//! {"event": "opened", "idempotency_key": "alert-12-0-cw-01", "to": "cw-01",
//!  "alert": {"id": 12, "rule": "missed_checkin", "severity": "alarm",
//!            "cause": "no_checkin", "detail": null, "status": "open",
//!            "outcome": null, "resident_id": "r-0001", "device_id": null,
//!            "local_date": "2026-11-27", "opened_at": "2026-11-27T01:00:00Z",
//!            "escalations": 0}}
//! ```
//!
//! Ids only: names and contact details stay in the roster. The same
//! `idempotency_key` goes over MQTT and the webhook; a receiver that sees it
//! twice drops the repeat (delivery is at least once).
//!
//! Whoever was paged hears the end: an acknowledgement or a resolution is
//! sent to every recipient (per channel) that has any notification of the
//! alert in the outbox, in the same transaction as the change
//! ([`past_recipients`]).

use ondol_model::StaffId;
use ondol_model::alert::{AlertEvent, staff_alerts_topic, staff_of_alerts_topic};
use ondol_model::wire::SYSTEM_ALERTS_TOPIC;
use rusqlite::Connection;
use serde_json::json;

use crate::alerts::{AlertRow, Channel, NewNotification};
use crate::error::StoreError;

/// One receiver of alert events on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Recipient {
    /// The staff member addressed; `None`: the supervisors' system topic.
    pub staff: Option<StaffId>,
    pub channel: Channel,
}

impl Recipient {
    /// Where the notification goes: the MQTT topic, or for the webhook the
    /// staff id addressed (`""` for system alerts).
    fn target(&self) -> String {
        match (self.channel, &self.staff) {
            (Channel::Mqtt, Some(staff)) => staff_alerts_topic(staff),
            (Channel::Mqtt, None) => SYSTEM_ALERTS_TOPIC.to_owned(),
            (Channel::Webhook, staff) => staff.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        }
    }

    /// The recipient of an outbox row, from its channel and target.
    fn of_target(channel: Channel, target: &str) -> Option<Recipient> {
        let staff = match channel {
            Channel::Mqtt if target == SYSTEM_ALERTS_TOPIC => None,
            Channel::Mqtt => Some(staff_of_alerts_topic(target)?),
            Channel::Webhook if target.is_empty() => None,
            Channel::Webhook => Some(target.parse().ok()?),
        };
        Some(Recipient { staff, channel })
    }
}

/// The notifications of one event of `alert`: one per recipient.
pub fn notifications(
    alert: &AlertRow,
    event: AlertEvent,
    recipients: &[Recipient],
) -> Vec<NewNotification> {
    recipients
        .iter()
        .map(|recipient| {
            let to = recipient.staff.as_ref();
            let key = format!(
                "alert-{}-{}-{}",
                alert.id,
                alert.events,
                to.map_or("system", StaffId::as_str)
            );
            NewNotification {
                payload: payload(alert, event, &key, to),
                key: format!("{key}:{}", recipient.channel.as_str()),
                channel: recipient.channel,
                target: recipient.target(),
            }
        })
        .collect()
}

fn payload(alert: &AlertRow, event: AlertEvent, key: &str, to: Option<&StaffId>) -> Vec<u8> {
    json!({
        "event": event.as_str(),
        "idempotency_key": key,
        "to": to.map(StaffId::as_str),
        "alert": {
            "id": alert.id,
            "rule": alert.rule.as_str(),
            "severity": alert.severity.as_str(),
            "cause": alert.cause.to_string(),
            "detail": alert.detail,
            "status": alert.status.as_str(),
            "outcome": alert.outcome.map(|o| o.as_str()),
            "resident_id": alert.resident_id.as_ref().map(|r| r.as_str()),
            "device_id": alert.device_id.as_ref().map(|d| d.as_str()),
            "local_date": alert.local_date.map(|d| d.to_string()),
            "opened_at": alert.opened_at.to_string(),
            "escalations": alert.escalations,
        }
    })
    .to_string()
    .into_bytes()
}

/// Everyone who was sent (or is still being sent) any event of alert `id`,
/// each on the channels they were sent it on, in a stable order.
pub(crate) fn past_recipients(conn: &Connection, id: i64) -> Result<Vec<Recipient>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT DISTINCT channel, target FROM notification_outbox WHERE alert_id = ?1 \
             ORDER BY channel, target",
        )
        .map_err(StoreError::sqlite("preparing the recipients query"))?;
    let rows = stmt
        .query_map([id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(StoreError::sqlite("reading an alert's recipients"))?;
    let mut recipients = Vec::new();
    for row in rows {
        let (channel, target) = row.map_err(StoreError::sqlite("reading an alert's recipients"))?;
        match Channel::parse(&channel).and_then(|c| Recipient::of_target(c, &target)) {
            Some(recipient) => recipients.push(recipient),
            None => tracing::warn!(
                alert = id,
                channel,
                "an outbox row of this alert names no recipient Ondol knows; it gets no closing event"
            ),
        }
    }
    Ok(recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_is_found_again_from_its_outbox_row() {
        let staff: StaffId = "cw-1".parse().expect("valid");
        for recipient in [
            Recipient {
                staff: Some(staff.clone()),
                channel: Channel::Mqtt,
            },
            Recipient {
                staff: Some(staff),
                channel: Channel::Webhook,
            },
            Recipient {
                staff: None,
                channel: Channel::Mqtt,
            },
            Recipient {
                staff: None,
                channel: Channel::Webhook,
            },
        ] {
            let found = Recipient::of_target(recipient.channel, &recipient.target());
            assert_eq!(found, Some(recipient));
        }
        assert_eq!(Recipient::of_target(Channel::Mqtt, "elsewhere"), None);
    }
}
