//! Deliberately bad messages, as buggy or hostile firmware sends them, so
//! ingest's refusal paths run under load. Each carries a `msg_id` that ingest
//! can still read, so a receipt with the rejection comes back.

use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use serde_json::json;

/// The kinds of garbage, each aimed at one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Garbage {
    /// Truncated JSON; the `msg_id` comes first so it can be salvaged.
    TruncatedJson,
    /// Valid JSON, but `readings` is not a list.
    ReadingsNotAList,
    OutOfRange,
    UnknownType,
    MissingValue,
    InvalidUnit,
    /// Blood pressure with the diastolic above the systolic.
    Inconsistent,
    /// A reading a day ahead of the clock.
    InFuture,
}

impl Garbage {
    pub(crate) const ALL: [Garbage; 8] = [
        Garbage::TruncatedJson,
        Garbage::ReadingsNotAList,
        Garbage::OutOfRange,
        Garbage::UnknownType,
        Garbage::MissingValue,
        Garbage::InvalidUnit,
        Garbage::Inconsistent,
        Garbage::InFuture,
    ];

    pub(crate) fn pick(rng: &mut impl Rng) -> Garbage {
        Garbage::ALL[rng.random_range(0..Garbage::ALL.len())]
    }

    /// The reason code the wire contract (DESIGN §2) gives this garbage.
    #[cfg(test)]
    pub(crate) fn expected_reason(self) -> ondol_model::ReasonCode {
        use ondol_model::ReasonCode;
        match self {
            Garbage::TruncatedJson | Garbage::ReadingsNotAList => ReasonCode::MalformedPayload,
            Garbage::OutOfRange => ReasonCode::OutOfRange,
            Garbage::UnknownType => ReasonCode::UnknownType,
            Garbage::MissingValue => ReasonCode::MissingField,
            Garbage::InvalidUnit => ReasonCode::InvalidUnit,
            Garbage::Inconsistent => ReasonCode::Inconsistent,
            Garbage::InFuture => ReasonCode::TimestampInFuture,
        }
    }

    /// The payload, stamped at `at` (simulated time).
    pub(crate) fn payload(self, msg_id: &str, at: Timestamp) -> Vec<u8> {
        let ms = at.as_millisecond();
        let reading = match self {
            Garbage::TruncatedJson => {
                let id = json!(msg_id);
                return format!(r#"{{"msg_id":{id},"readings":[{{"type":"heart_rate","value":7"#)
                    .into_bytes();
            }
            Garbage::ReadingsNotAList => {
                return json!({"msg_id": msg_id, "ts": ms, "readings": "heart_rate=72"})
                    .to_string()
                    .into_bytes();
            }
            Garbage::OutOfRange => {
                json!({"type": "heart_rate", "value": 400, "unit": "/min", "ts": ms})
            }
            Garbage::UnknownType => json!({"type": "mood", "value": 3, "ts": ms}),
            Garbage::MissingValue => json!({"type": "spo2", "unit": "%", "ts": ms}),
            Garbage::InvalidUnit => {
                json!({"type": "heart_rate", "value": 72, "unit": "furlong", "ts": ms})
            }
            Garbage::Inconsistent => json!({
                "type": "blood_pressure", "systolic": 70, "diastolic": 95, "unit": "mm[Hg]", "ts": ms
            }),
            Garbage::InFuture => {
                let ahead = at
                    .checked_add(SignedDuration::from_hours(24))
                    .unwrap_or(at)
                    .as_millisecond();
                json!({"type": "heart_rate", "value": 70, "unit": "/min", "ts": ahead})
            }
        };
        json!({"msg_id": msg_id, "readings": [reading]})
            .to_string()
            .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_names_its_msg_id_and_only_truncated_json_fails_to_parse() {
        let at = Timestamp::from_second(1_800_000_000).expect("ts");
        for kind in Garbage::ALL {
            let payload = kind.payload("ab12-000007", at);
            let text = String::from_utf8(payload.clone()).expect("utf-8");
            assert!(
                text.contains(r#""msg_id":"ab12-000007""#),
                "{kind:?}: {text}"
            );
            let parsed = serde_json::from_slice::<serde_json::Value>(&payload);
            assert_eq!(parsed.is_err(), kind == Garbage::TruncatedJson, "{kind:?}");
            assert!(ondol_model::ReasonCode::ALL.contains(&kind.expected_reason()));
        }
    }

    #[test]
    fn ingest_refuses_each_kind_for_the_intended_reason_and_can_answer_it() {
        use ondol_model::wire::{DecodeLimits, decode_readings};
        let at = Timestamp::from_second(1_800_000_000).expect("ts");
        for kind in Garbage::ALL {
            let payload = kind.payload("ab12-000007", at);
            let reason = match decode_readings(&payload, at, &DecodeLimits::default()) {
                Err(whole) => {
                    assert_eq!(whole.msg_id.as_deref(), Some("ab12-000007"), "{kind:?}");
                    whole.rejection.reason
                }
                Ok(decoded) => {
                    assert_eq!(decoded.msg_id.as_deref(), Some("ab12-000007"), "{kind:?}");
                    assert_eq!(decoded.items.len(), 1, "{kind:?}");
                    match &decoded.items[0] {
                        Err(rejection) => rejection.reason,
                        Ok(reading) => panic!("{kind:?} was accepted as {reading:?}"),
                    }
                }
            };
            assert_eq!(reason, kind.expected_reason(), "{kind:?}");
        }
    }
}
