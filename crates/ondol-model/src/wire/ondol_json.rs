//! The Ondol JSON reading message (DESIGN §2): decoding one, and encoding
//! readings as one (what the simulator and tests send).

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::detail::json_kind;
use super::validate::{self, Form, Raw, RawUnit};
use super::{DecodeLimits, DecodedMessage, MessageRejection};
use crate::reading::{CheckinValue, DoorState, Reading, ReadingType, ReadingValue};
use crate::reason::{ReasonCode, Rejection};

/// The longest `msg_id`, in characters.
pub(crate) const MAX_MSG_ID_CHARS: usize = 64;

/// Whether a `msg_id` may be used: 1 to 64 characters and no control
/// characters, since it is echoed on receipts and stored with rejections.
pub(crate) fn valid_msg_id(s: &str) -> bool {
    let chars = s.chars().count();
    (1..=MAX_MSG_ID_CHARS).contains(&chars) && !s.chars().any(char::is_control)
}

fn msg_id(v: Option<&Value>) -> Result<Option<String>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if valid_msg_id(s) => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Rejection::new(
            ReasonCode::MalformedPayload,
            "msg_id must be 1 to 64 characters without control characters",
        )),
        Some(other) => Err(Rejection::new(
            ReasonCode::MalformedPayload,
            format!("msg_id must be a string, not {}", json_kind(other)),
        )),
    }
}

/// Decodes a reading message whose payload parsed as a JSON object.
pub(super) fn decode_message(
    obj: &Map<String, Value>,
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Result<DecodedMessage, MessageRejection> {
    // An unusable msg_id cannot be echoed, so that refusal gets no receipt.
    let msg_id = msg_id(obj.get("msg_id")).map_err(|rejection| MessageRejection {
        msg_id: None,
        rejection,
    })?;
    let refuse = |reason, detail: String| MessageRejection {
        msg_id: msg_id.clone(),
        rejection: Rejection::new(reason, detail),
    };
    let readings = match obj.get("readings") {
        Some(Value::Array(readings)) => readings,
        None | Some(Value::Null) => {
            return Err(refuse(
                ReasonCode::MalformedPayload,
                "message has no readings array".to_owned(),
            ));
        }
        Some(other) => {
            return Err(refuse(
                ReasonCode::MalformedPayload,
                format!("readings must be an array, not {}", json_kind(other)),
            ));
        }
    };
    if readings.len() > limits.max_readings_per_message {
        return Err(refuse(
            ReasonCode::PayloadTooLarge,
            format!(
                "message has {} readings; at most {} are accepted",
                readings.len(),
                limits.max_readings_per_message
            ),
        ));
    }
    // A broken message time would silently re-date every reading that relies
    // on it, so it refuses the whole message.
    let message_ts = match obj.get("ts") {
        None => None,
        Some(v) => validate::timestamp(v, "message ts")
            .map_err(|rejection| refuse(rejection.reason, rejection.detail))?,
    };
    let items = readings
        .iter()
        .map(|reading| decode_reading(reading, message_ts, received_at, limits))
        .collect();
    Ok(DecodedMessage { msg_id, items })
}

/// Judges one reading alone. Checks run in this order and the first failure
/// is the reason: shape, `type`, `sensor`, `ts`, the value (presence, JSON
/// kind, unit, range, consistency), then the time window.
fn decode_reading(
    reading: &Value,
    message_ts: Option<Timestamp>,
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Result<Reading, Rejection> {
    let Some(obj) = reading.as_object() else {
        return Err(Rejection::new(
            ReasonCode::MalformedPayload,
            format!("reading must be an object, not {}", json_kind(reading)),
        ));
    };
    let reading_type = match obj.get("type") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                ReasonCode::MissingField,
                "reading has no type",
            ));
        }
        Some(Value::String(s)) => ReadingType::parse(s).ok_or_else(|| {
            Rejection::new(
                ReasonCode::UnknownType,
                format!("unknown type {}", super::detail::excerpt(s)),
            )
        })?,
        Some(other) => {
            return Err(Rejection::new(
                ReasonCode::MalformedPayload,
                format!("type must be a string, not {}", json_kind(other)),
            ));
        }
    };
    let sensor = validate::sensor(obj.get("sensor"))?;
    let own_ts = match obj.get("ts") {
        None => None,
        Some(v) => validate::timestamp(v, "ts")?,
    };
    let ts = own_ts.or(message_ts).unwrap_or(received_at);
    let unit = RawUnit::from_json(obj.get("unit"));
    let value = if reading_type == ReadingType::BloodPressure {
        validate::blood_pressure(
            Raw::from_json(obj.get("systolic")),
            Raw::from_json(obj.get("diastolic")),
            unit,
        )?
    } else {
        validate::value(
            reading_type,
            Raw::from_json(obj.get("value")),
            unit,
            Form::OndolJson,
        )?
    };
    validate::check_window(ts, received_at, limits)?;
    Ok(Reading {
        reading_type,
        value,
        sensor,
        ts,
    })
}

/// Encodes readings as an Ondol JSON message. Values go out in the canonical
/// unit, named where the type has one; `ts` is epoch milliseconds, so a
/// timestamp with sub-millisecond digits comes back truncated to the
/// millisecond. A non-finite number becomes `null` and is refused on decode.
pub(super) fn encode_message(msg_id: Option<&str>, readings: &[Reading]) -> Vec<u8> {
    let mut msg = Map::new();
    if let Some(id) = msg_id {
        msg.insert("msg_id".to_owned(), Value::from(id));
    }
    msg.insert(
        "readings".to_owned(),
        Value::Array(readings.iter().map(encode_reading).collect()),
    );
    // Serializing a Value into a Vec cannot fail (string keys, no IO).
    serde_json::to_vec(&Value::Object(msg)).unwrap_or_default()
}

fn encode_reading(reading: &Reading) -> Value {
    let mut obj = Map::new();
    obj.insert(
        "type".to_owned(),
        Value::from(reading.reading_type.as_str()),
    );
    match reading.value {
        ReadingValue::Number(n) => {
            obj.insert("value".to_owned(), number(n));
        }
        ReadingValue::BloodPressure {
            systolic,
            diastolic,
        } => {
            obj.insert("systolic".to_owned(), number(systolic));
            obj.insert("diastolic".to_owned(), number(diastolic));
        }
        ReadingValue::Motion(moved) => {
            obj.insert("value".to_owned(), Value::from(u8::from(moved)));
        }
        ReadingValue::Door(state) => {
            let s = match state {
                DoorState::Open => "open",
                DoorState::Closed => "closed",
            };
            obj.insert("value".to_owned(), Value::from(s));
        }
        ReadingValue::Checkin(checkin) => {
            let s = match checkin {
                CheckinValue::Ok => "ok",
                CheckinValue::Help => "help",
            };
            obj.insert("value".to_owned(), Value::from(s));
        }
        ReadingValue::Fall => {
            obj.insert("value".to_owned(), Value::Bool(true));
        }
        ReadingValue::Score(score) => {
            obj.insert("value".to_owned(), Value::from(score));
        }
    }
    if let Some(unit) = reading.reading_type.canonical_unit() {
        obj.insert("unit".to_owned(), Value::from(unit));
    }
    if let Some(sensor) = &reading.sensor {
        obj.insert("sensor".to_owned(), Value::from(sensor.as_str()));
    }
    obj.insert("ts".to_owned(), Value::from(reading.ts.as_millisecond()));
    Value::Object(obj)
}

/// Whole numbers as JSON integers (`72`, as a device would write them), the
/// rest as the shortest decimal that reads back as the same f64.
fn number(n: f64) -> Value {
    const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT_INTEGER_LIMIT {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}
