//! The alert event: what staff apps and webhooks receive (DESIGN §2, §4),
//! and who receives it.
//!
//! ```json
//! {"event": "opened", "idempotency_key": "alert-12-0-cw-01", "to": "cw-01",
//!  "alert": {"id": 12, "rule": "missed_checkin", "severity": "alarm",
//!            "cause": "no_checkin", "status": "open", "resident_id": "r-0001",
//!            "device_id": null, "local_date": "2026-11-27",
//!            "opened_at": "2026-11-27T01:00:00Z", "escalations": 0}}
//! ```
//!
//! Events: `opened`, `raised` (a higher tier), `repeated` (another help
//! request while one is open), `escalated` (nobody acknowledged; sent to the
//! supervisors and again to the caseworker). Ids only: names and contact
//! details stay in the roster. The same `idempotency_key` goes over MQTT and
//! the webhook; a receiver that sees it twice drops the repeat (delivery is
//! at least once).

use ondol_model::StaffId;
use ondol_model::alert::staff_alerts_topic;
use ondol_model::wire::SYSTEM_ALERTS_TOPIC;
use ondol_store::alerts::{AlertRow, Channel, NewNotification};
use serde_json::json;

/// Who an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Staff members, each on their own topic.
    Staff(Vec<StaffId>),
    /// Supervisors on the system topic.
    System,
}

/// The notifications of one event of `alert`: one per recipient and channel.
pub fn for_alert(
    alert: &AlertRow,
    event: &str,
    audience: &Audience,
    webhook: bool,
) -> Vec<NewNotification> {
    let mut out = Vec::new();
    let mut add = |to: Option<&StaffId>, topic: String| {
        let key = format!(
            "alert-{}-{}-{}",
            alert.id,
            alert.events,
            to.map_or("system", StaffId::as_str)
        );
        let payload = payload(alert, event, &key, to);
        out.push(NewNotification {
            key: format!("{key}:mqtt"),
            channel: Channel::Mqtt,
            target: topic,
            payload: payload.clone(),
        });
        if webhook {
            out.push(NewNotification {
                key: format!("{key}:webhook"),
                channel: Channel::Webhook,
                target: to.map(|s| s.to_string()).unwrap_or_default(),
                payload,
            });
        }
    };
    match audience {
        Audience::Staff(staff) => {
            for to in staff {
                add(Some(to), staff_alerts_topic(to));
            }
        }
        Audience::System => add(None, SYSTEM_ALERTS_TOPIC.to_owned()),
    }
    out
}

fn payload(alert: &AlertRow, event: &str, key: &str, to: Option<&StaffId>) -> Vec<u8> {
    json!({
        "event": event,
        "idempotency_key": key,
        "to": to.map(StaffId::as_str),
        "alert": {
            "id": alert.id,
            "rule": alert.rule.as_str(),
            "severity": alert.severity.as_str(),
            "cause": alert.cause,
            "status": alert.status.as_str(),
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
