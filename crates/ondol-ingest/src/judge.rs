//! Judging one inbound message: topic, device, decoding and validation
//! against the roster. Pure apart from the power-use memory, so every rule is
//! unit-tested without a broker or a database.

use std::collections::HashMap;

use bytes::Bytes;
use jiff::Timestamp;
use ondol_model::reading::{CheckinValue, ReadingValue};
use ondol_model::wire::{self, DecodeLimits, DeviceTopic, TopicError};
use ondol_model::{DeviceId, ReadingType, ReasonCode, Rejection};
use ondol_store::{NewReading, NewRejection, StatusUpdate};

use crate::rate_limit::{RateLimit, RateLimiter};
use crate::roster_index::RosterIndex;

/// At most this much of a refused payload is kept, to help a device maker
/// debug without turning the rejection store into a copy of the traffic.
pub const EXCERPT_BYTES: usize = 256;

/// A change in `power_use` of at least this many watts means someone
/// switched something on or off.
pub const POWER_CHANGE_W: f64 = 5.0;

/// A message as it came off the broker.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
    pub received_at: Timestamp,
    /// What acknowledges this message to an external broker once it is
    /// committed; `None` for the embedded link.
    pub ack: Option<crate::source::AckToken>,
}

/// What became of one reading of a message, by its index.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemVerdict {
    Rejected(Rejection),
    /// Valid; stored or found to be a duplicate at commit. The number is the
    /// reading's position in [`Verdict::readings`].
    Pending(usize),
}

/// Everything ingest does with one message.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Where the receipt goes, when the message asked for one.
    pub receipt: Option<ReceiptPlan>,
    /// One per reading of the message, in order; empty when the message was
    /// refused whole.
    pub items: Vec<ItemVerdict>,
    /// A whole-message refusal, reported on the receipt's `error`.
    pub refused: Option<Rejection>,
    pub readings: Vec<NewReading>,
    pub rejections: Vec<NewRejection>,
    pub status: Option<StatusUpdate>,
}

/// The device and msg_id a receipt answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPlan {
    pub device: DeviceId,
    pub msg_id: String,
}

/// Judges messages; remembers the last power reading per sensor.
#[derive(Debug)]
pub struct Judge {
    limits: DecodeLimits,
    last_power: HashMap<(DeviceId, Option<String>), f64>,
    limiter: Option<RateLimiter>,
}

impl Judge {
    pub fn new(limits: DecodeLimits) -> Self {
        Self {
            limits,
            last_power: HashMap::new(),
            limiter: None,
        }
    }

    /// Limits each device's reading messages (see [`crate::rate_limit`]).
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.limiter = Some(RateLimiter::new(limit));
        self
    }

    pub fn judge(&mut self, inbound: &Inbound, roster: &RosterIndex) -> Verdict {
        match wire::parse_device_topic(&inbound.topic) {
            Ok(DeviceTopic::Readings(device)) => self.readings(device, inbound, roster),
            Ok(DeviceTopic::Status(device)) => status(device, inbound, roster),
            Err(TopicError::InvalidDeviceId(error)) => {
                let rejection = Rejection::new(
                    ReasonCode::UnknownDevice,
                    format!("the device id in the topic is invalid: {error}"),
                );
                whole_message_refused(inbound, None, None, rejection)
            }
            // Not ours (e.g. a probe): nothing to do.
            Err(TopicError::NotADeviceTopic) => Verdict::default(),
        }
    }

    fn readings(
        &mut self,
        device_id: DeviceId,
        inbound: &Inbound,
        roster: &RosterIndex,
    ) -> Verdict {
        let decoded = wire::decode_readings(&inbound.payload, inbound.received_at, &self.limits);
        let device = roster.device(device_id.as_str());
        let message = match decoded {
            Ok(message) => message,
            Err(refusal) => {
                // A device we do not know is the more useful thing to say.
                let rejection = match device {
                    None => unknown_device(&device_id),
                    Some(d) if !d.active => inactive_device(&device_id),
                    Some(_) => refusal.rejection,
                };
                return whole_message_refused(inbound, Some(device_id), refusal.msg_id, rejection);
            }
        };
        let receipt = message.msg_id.clone().map(|msg_id| ReceiptPlan {
            device: device_id.clone(),
            msg_id,
        });
        let device_refusal = match device {
            None => Some(unknown_device(&device_id)),
            Some(d) if !d.active => Some(inactive_device(&device_id)),
            Some(_) => None,
        };
        if let Some(rejection) = device_refusal {
            // Every reading gets the device's refusal on the receipt; the
            // rejection store keeps one row for the message.
            let items = message
                .items
                .iter()
                .map(|_| ItemVerdict::Rejected(rejection.clone()))
                .collect();
            let row = new_rejection(
                inbound,
                Some(&device_id),
                message.msg_id.clone(),
                None,
                &rejection,
            );
            return Verdict {
                receipt,
                items,
                rejections: vec![row],
                ..Verdict::default()
            };
        }
        let Some(device) = device else {
            return Verdict::default();
        };
        if let Some(limiter) = &mut self.limiter
            && !limiter.allow(&device_id, inbound.received_at)
        {
            // Counted, answered on the receipt, not stored: a flood must not
            // turn into a flood of rejection rows.
            let rejection = Rejection::new(
                ReasonCode::RateLimited,
                format!(
                    "device {device_id} sent more than {} messages a minute; resend later, unchanged",
                    limiter.limit().per_minute
                ),
            );
            let items = message
                .items
                .iter()
                .map(|_| ItemVerdict::Rejected(rejection.clone()))
                .collect();
            return Verdict {
                receipt,
                items,
                ..Verdict::default()
            };
        }

        let mut verdict = Verdict {
            receipt,
            ..Verdict::default()
        };
        for (index, item) in message.items.into_iter().enumerate() {
            let index_u32 = u32::try_from(index).ok();
            let reading = match item {
                Ok(reading) => reading,
                Err(rejection) => {
                    verdict.rejections.push(new_rejection(
                        inbound,
                        Some(&device_id),
                        message.msg_id.clone(),
                        index_u32,
                        &rejection,
                    ));
                    verdict.items.push(ItemVerdict::Rejected(rejection));
                    continue;
                }
            };
            let Some(resident_id) = device.resident_at(reading.ts).cloned() else {
                let rejection = Rejection::new(
                    ReasonCode::DeviceInactive,
                    format!(
                        "device {device_id} was not bound to a resident at {}",
                        reading.ts
                    ),
                );
                verdict.rejections.push(new_rejection(
                    inbound,
                    Some(&device_id),
                    message.msg_id.clone(),
                    index_u32,
                    &rejection,
                ));
                verdict.items.push(ItemVerdict::Rejected(rejection));
                continue;
            };
            let Some(resident) = roster.resident(&resident_id) else {
                // The roster import guarantees bindings name residents; a
                // binding without one means the device cannot be attributed.
                let rejection = Rejection::new(
                    ReasonCode::DeviceInactive,
                    format!("device {device_id} is bound to a resident that is not enrolled"),
                );
                verdict.items.push(ItemVerdict::Rejected(rejection));
                continue;
            };
            let local = reading.ts.to_zoned(resident.timezone.clone());
            let counts_as_activity = match (reading.reading_type, reading.value) {
                (ReadingType::PowerUse, ReadingValue::Number(watts)) => {
                    self.power_changed(&device_id, reading.sensor.clone(), watts)
                }
                _ => reading.shows_activity(),
            };
            let in_window = resident
                .checkin
                .window
                .is_some_and(|w| w.contains(local.time()));
            let checks_in = match reading.value {
                ReadingValue::Checkin(CheckinValue::Ok) => true,
                _ => resident.checkin.passive && counts_as_activity,
            };
            verdict
                .items
                .push(ItemVerdict::Pending(verdict.readings.len()));
            verdict.readings.push(NewReading {
                device_id: device_id.clone(),
                resident_id,
                local_date: local.date(),
                local_hour: u8::try_from(local.hour()).unwrap_or(0),
                checkin_in_window: checks_in && in_window,
                counts_as_activity,
                received_at: inbound.received_at,
                reading,
            });
        }
        verdict
    }

    fn power_changed(&mut self, device: &DeviceId, sensor: Option<String>, watts: f64) -> bool {
        let previous = self.last_power.insert((device.clone(), sensor), watts);
        previous.is_some_and(|p| (p - watts).abs() >= POWER_CHANGE_W)
    }
}

fn status(device_id: DeviceId, inbound: &Inbound, roster: &RosterIndex) -> Verdict {
    // An empty retained message is how MQTT clears a retained status: not
    // a device speaking, so nothing to store or refuse.
    if inbound.payload.is_empty() {
        return Verdict::default();
    }
    let Some(device) = roster.device(device_id.as_str()) else {
        let rejection = unknown_device(&device_id);
        return whole_message_refused(inbound, None, None, rejection);
    };
    let resident_id = device.resident_at(inbound.received_at).cloned();
    match wire::decode_status(&inbound.payload) {
        Ok(status) => Verdict {
            status: Some(StatusUpdate {
                device_id,
                resident_id,
                status,
                received_at: inbound.received_at,
            }),
            ..Verdict::default()
        },
        Err(rejection) => whole_message_refused(inbound, None, None, rejection),
    }
}

fn unknown_device(device: &DeviceId) -> Rejection {
    Rejection::new(
        ReasonCode::UnknownDevice,
        format!("device {device} is not registered"),
    )
}

fn inactive_device(device: &DeviceId) -> Rejection {
    Rejection::new(
        ReasonCode::DeviceInactive,
        format!("device {device} is not active"),
    )
}

/// A message refused as a whole. It gets a receipt only when its msg_id
/// could be read and the device id is valid.
fn whole_message_refused(
    inbound: &Inbound,
    device: Option<DeviceId>,
    msg_id: Option<String>,
    rejection: Rejection,
) -> Verdict {
    let row = new_rejection(inbound, device.as_ref(), msg_id.clone(), None, &rejection);
    let receipt = match (device, msg_id) {
        (Some(device), Some(msg_id)) => Some(ReceiptPlan { device, msg_id }),
        _ => None,
    };
    Verdict {
        receipt,
        refused: Some(rejection),
        rejections: vec![row],
        ..Verdict::default()
    }
}

fn new_rejection(
    inbound: &Inbound,
    device: Option<&DeviceId>,
    msg_id: Option<String>,
    index: Option<u32>,
    rejection: &Rejection,
) -> NewRejection {
    let device_id = device.map(|d| d.to_string()).or_else(|| {
        // Keep the raw id from the topic (it may be invalid) for debugging.
        inbound
            .topic
            .strip_prefix(wire::TOPIC_PREFIX)
            .and_then(|rest| rest.split('/').next())
            .map(|id| id.chars().take(64).collect())
    });
    NewRejection {
        device_id,
        topic: inbound.topic.chars().take(256).collect(),
        reason: rejection.reason,
        detail: rejection.detail.clone(),
        index,
        msg_id,
        received_at: inbound.received_at,
        payload_excerpt: inbound.payload[..inbound.payload.len().min(EXCERPT_BYTES)].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jiff::civil::{Time, date};
    use jiff::tz::TimeZone;
    use ondol_model::roster::{
        CheckinPlan, CheckinWindow, Device, DeviceBinding, DeviceKind, Resident, Roster,
    };
    use ondol_model::{ResidentId, StaffId};

    use super::*;

    fn resident(id: &str, zone: &str, passive: bool) -> Resident {
        Resident {
            id: ResidentId::new(id).unwrap(),
            name: "Test".into(),
            timezone_name: zone.into(),
            timezone: TimeZone::get(zone).unwrap(),
            region: "r".into(),
            enrolled_from: date(2026, 1, 1),
            enrolled_until: None,
            caseworker: Some(StaffId::new("cw-1").unwrap()),
            checkin: CheckinPlan {
                window: Some(CheckinWindow {
                    start: Time::constant(6, 0, 0, 0),
                    end: Time::constant(10, 0, 0, 0),
                }),
                passive,
            },
            away: Vec::new(),
        }
    }

    fn device(id: &str, resident: &str, active: bool, from: Option<Timestamp>) -> Device {
        Device {
            id: DeviceId::new(id).unwrap(),
            kind: DeviceKind::Sensor,
            bindings: vec![DeviceBinding {
                resident: ResidentId::new(resident).unwrap(),
                from,
                until: None,
            }],
            active,
            secret_env: None,
        }
    }

    fn roster() -> RosterIndex {
        RosterIndex::new(&Roster {
            residents: vec![
                resident("r-1", "Asia/Seoul", false),
                resident("r-2", "Europe/Lisbon", true),
            ],
            devices: vec![
                device("gw-1", "r-1", true, None),
                device("mv-2", "r-2", true, None),
                device("old-1", "r-1", false, None),
                device("new-1", "r-1", true, Some(ts("2026-11-27T00:00:00Z"))),
            ],
            staff: Vec::new(),
        })
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn inbound(topic: &str, payload: &str, at: &str) -> Inbound {
        Inbound {
            ack: None,
            topic: topic.into(),
            payload: Bytes::from(payload.to_owned()),
            received_at: ts(at),
        }
    }

    fn judge(topic: &str, payload: &str) -> Verdict {
        Judge::new(DecodeLimits::default())
            .judge(&inbound(topic, payload, "2026-11-27T12:00:00Z"), &roster())
    }

    #[test]
    fn a_device_over_its_rate_gets_rate_limited_on_every_reading() {
        let mut judge = Judge::new(DecodeLimits::default()).with_rate_limit(RateLimit {
            per_minute: 60.0,
            burst: 2.0,
        });
        let roster = roster();
        let message = r#"{"msg_id":"m","readings":[{"type":"heart_rate","value":70,"ts":"2026-11-27T11:59:00Z"},{"type":"spo2","value":97,"ts":"2026-11-27T11:59:00Z"}]}"#;
        let at = |t: &str| inbound("ondol/v1/devices/gw-1/readings", message, t);
        for _ in 0..2 {
            let verdict = judge.judge(&at("2026-11-27T12:00:00Z"), &roster);
            assert_eq!(verdict.readings.len(), 2);
        }
        let limited = judge.judge(&at("2026-11-27T12:00:00Z"), &roster);
        assert!(limited.readings.is_empty());
        assert!(limited.rejections.is_empty(), "not stored");
        assert_eq!(limited.items.len(), 2);
        assert!(limited.items.iter().all(|item| matches!(
            item,
            ItemVerdict::Rejected(r) if r.reason == ReasonCode::RateLimited
        )));
        assert!(limited.receipt.is_some());
        // Another device is not affected; a second later gw-1 may send again.
        let other = judge.judge(
            &inbound(
                "ondol/v1/devices/mv-2/readings",
                message,
                "2026-11-27T12:00:00Z",
            ),
            &roster,
        );
        assert_eq!(other.readings.len(), 2);
        let later = judge.judge(&at("2026-11-27T12:00:01Z"), &roster);
        assert_eq!(later.readings.len(), 2);
    }

    #[test]
    fn readings_get_the_residents_local_day_hour_and_check_in_window() {
        // 23:30 UTC is 08:30 the next morning in Seoul: inside the window.
        let verdict = judge(
            "ondol/v1/devices/gw-1/readings",
            r#"{"msg_id":"m","readings":[{"type":"checkin","value":"ok","ts":"2026-11-26T23:30:00Z"},
                {"type":"checkin","value":"ok","ts":"2026-11-27T03:30:00Z"}]}"#,
        );
        assert_eq!(
            verdict.items,
            vec![ItemVerdict::Pending(0), ItemVerdict::Pending(1)]
        );
        let first = &verdict.readings[0];
        assert_eq!(first.local_date, date(2026, 11, 27));
        assert_eq!(first.local_hour, 8);
        assert!(first.checkin_in_window);
        assert!(first.counts_as_activity);
        // 12:30 in Seoul: a check-in, but after the deadline.
        assert!(!verdict.readings[1].checkin_in_window);
        assert_eq!(
            verdict.receipt,
            Some(ReceiptPlan {
                device: DeviceId::new("gw-1").unwrap(),
                msg_id: "m".into()
            })
        );
    }

    #[test]
    fn activity_in_the_window_is_a_check_in_only_for_passive_plans() {
        let motion_at_8_local =
            r#"{"readings":[{"type":"motion","value":1,"ts":"2026-11-27T08:00:00Z"}]}"#;
        let passive = judge("ondol/v1/devices/mv-2/readings", motion_at_8_local);
        assert!(
            passive.readings[0].checkin_in_window,
            "Lisbon is UTC+0 in November"
        );
        let active = judge(
            "ondol/v1/devices/gw-1/readings",
            r#"{"readings":[{"type":"motion","value":1,"ts":"2026-11-26T23:00:00Z"}]}"#,
        );
        assert!(!active.readings[0].checkin_in_window);
        let no_motion = judge(
            "ondol/v1/devices/mv-2/readings",
            r#"{"readings":[{"type":"motion","value":0,"ts":"2026-11-27T08:00:00Z"}]}"#,
        );
        assert!(!no_motion.readings[0].checkin_in_window);
        assert!(!no_motion.readings[0].counts_as_activity);
    }

    #[test]
    fn power_use_counts_as_activity_only_when_it_changes() {
        let mut judge = Judge::new(DecodeLimits::default());
        let roster = roster();
        let mut watts = |w: f64, minute: u32| {
            let payload = format!(
                r#"{{"readings":[{{"type":"power_use","value":{w},"ts":"2026-11-27T11:{minute:02}:00Z"}}]}}"#
            );
            judge
                .judge(
                    &inbound(
                        "ondol/v1/devices/gw-1/readings",
                        &payload,
                        "2026-11-27T12:00:00Z",
                    ),
                    &roster,
                )
                .readings[0]
                .counts_as_activity
        };
        assert!(!watts(3.0, 0), "a first value is no change");
        assert!(!watts(4.0, 1), "standby noise");
        assert!(watts(1200.0, 2), "the kettle went on");
        assert!(watts(4.0, 3), "and off");
    }

    #[test]
    fn unknown_and_inactive_devices_refuse_every_reading() {
        let payload = r#"{"msg_id":"m","readings":[{"type":"motion","value":1},{"type":"motion","value":0}]}"#;
        let unknown = judge("ondol/v1/devices/ghost-1/readings", payload);
        assert!(unknown.readings.is_empty());
        assert_eq!(unknown.items.len(), 2);
        assert!(unknown.items.iter().all(
            |i| matches!(i, ItemVerdict::Rejected(r) if r.reason == ReasonCode::UnknownDevice)
        ));
        assert_eq!(unknown.rejections.len(), 1, "one stored row per message");
        assert!(unknown.receipt.is_some(), "the device still learns why");

        let revoked = judge("ondol/v1/devices/old-1/readings", payload);
        assert!(revoked.items.iter().all(
            |i| matches!(i, ItemVerdict::Rejected(r) if r.reason == ReasonCode::DeviceInactive)
        ));
    }

    #[test]
    fn a_reading_from_before_the_device_was_bound_is_refused_alone() {
        let verdict = judge(
            "ondol/v1/devices/new-1/readings",
            r#"{"readings":[{"type":"motion","value":1,"ts":"2026-11-26T23:00:00Z"},
                {"type":"motion","value":1,"ts":"2026-11-27T01:00:00Z"}]}"#,
        );
        assert!(
            matches!(&verdict.items[0], ItemVerdict::Rejected(r) if r.reason == ReasonCode::DeviceInactive)
        );
        assert_eq!(verdict.items[1], ItemVerdict::Pending(0));
        assert_eq!(verdict.rejections[0].index, Some(0));
    }

    #[test]
    fn whole_message_refusals_keep_the_msg_id_when_it_can_be_read() {
        let broken = judge(
            "ondol/v1/devices/gw-1/readings",
            r#"{"msg_id":"m9","readings":"#,
        );
        assert_eq!(
            broken.refused.as_ref().map(|r| r.reason),
            Some(ReasonCode::MalformedPayload)
        );
        assert_eq!(broken.receipt.map(|p| p.msg_id), Some("m9".to_owned()));
        assert_eq!(broken.rejections.len(), 1);

        let bad_topic = judge("ondol/v1/devices/a+b/readings", r#"{"msg_id":"m"}"#);
        assert_eq!(
            bad_topic.refused.map(|r| r.reason),
            Some(ReasonCode::UnknownDevice)
        );
        assert!(bad_topic.receipt.is_none(), "no topic to answer on");
        assert_eq!(bad_topic.rejections[0].device_id.as_deref(), Some("a+b"));
    }

    #[test]
    fn status_messages() {
        let online = judge(
            "ondol/v1/devices/gw-1/status",
            r#"{"state":"online","battery_pct":40}"#,
        );
        assert_eq!(online.status.map(|s| s.status.battery_pct), Some(Some(40)));
        assert!(
            judge("ondol/v1/devices/gw-1/status", "")
                .rejections
                .is_empty(),
            "retained clear"
        );
        let stranger = judge("ondol/v1/devices/ghost-1/status", r#"{"state":"online"}"#);
        assert_eq!(stranger.rejections[0].reason, ReasonCode::UnknownDevice);
        let garbage = judge("ondol/v1/devices/gw-1/status", "on");
        assert_eq!(garbage.rejections[0].reason, ReasonCode::MalformedPayload);
        assert!(judge("ondol/internal/probe", "ping").rejections.is_empty());
    }
}
