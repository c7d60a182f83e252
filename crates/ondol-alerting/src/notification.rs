//! Who hears of an alert event. The event JSON itself is built by the store
//! ([`ondol_store::alert_events`]), because staff acknowledging or resolving
//! through the API or the CLI cause events too, and whoever was paged must
//! hear the end whoever ends it.
//!
//! Events alerting sends: `opened`, `raised` (a higher tier), `repeated`
//! (another help request while one is open), `escalated` (nobody
//! acknowledged; sent to the supervisors and again to the caseworker).

use ondol_model::StaffId;
use ondol_model::alert::AlertEvent;
use ondol_store::alert_events::{self, Recipient};
use ondol_store::alerts::{AlertRow, Channel, NewNotification};

/// Who an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Staff members, each on their own topic.
    Staff(Vec<StaffId>),
    /// Supervisors on the system topic.
    System,
}

impl Audience {
    /// Each member of the audience on MQTT, and on the webhook if there is one.
    fn recipients(&self, webhook: bool) -> Vec<Recipient> {
        let staff: Vec<Option<StaffId>> = match self {
            Audience::Staff(staff) => staff.iter().cloned().map(Some).collect(),
            Audience::System => vec![None],
        };
        let channels: &[Channel] = if webhook {
            &[Channel::Mqtt, Channel::Webhook]
        } else {
            &[Channel::Mqtt]
        };
        staff
            .into_iter()
            .flat_map(|staff| {
                channels.iter().map(move |&channel| Recipient {
                    staff: staff.clone(),
                    channel,
                })
            })
            .collect()
    }
}

/// The notifications of one event of `alert`: one per recipient and channel.
pub fn for_alert(
    alert: &AlertRow,
    event: AlertEvent,
    audience: &Audience,
    webhook: bool,
) -> Vec<NewNotification> {
    alert_events::notifications(alert, event, &audience.recipients(webhook))
}
