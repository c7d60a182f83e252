//! Status messages and Wills (`ondol/v1/devices/{id}/status`, DESIGN §2).

use serde_json::{Map, Value};

use super::DeviceStatus;
use super::detail::{excerpt, json_kind, num};
use crate::reason::{ReasonCode, Rejection};

const MAX_FIRMWARE_CHARS: usize = 64;

fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::MalformedPayload, detail)
}

fn out_of_range(detail: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::OutOfRange, detail)
}

pub(super) fn decode_status(payload: &[u8]) -> Result<DeviceStatus, Rejection> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|error| malformed(format!("status is not valid JSON: {error}")))?;
    let Value::Object(obj) = value else {
        return Err(malformed(format!(
            "status must be a JSON object, not {}",
            json_kind(&value)
        )));
    };
    let online = match obj.get("state") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                ReasonCode::MissingField,
                "status has no state",
            ));
        }
        Some(Value::String(s)) if s == "online" => true,
        Some(Value::String(s)) if s == "offline" => false,
        Some(Value::String(s)) => {
            return Err(out_of_range(format!(
                "state {} must be \"online\" or \"offline\"",
                excerpt(s)
            )));
        }
        Some(other) => {
            return Err(malformed(format!(
                "state must be a string, not {}",
                json_kind(other)
            )));
        }
    };
    // Both ranges fit their types, so the casts after the checks are exact.
    let battery_pct = whole_number(&obj, "battery_pct", 0, 100)?.map(|v| v as u8);
    let rssi_dbm = whole_number(&obj, "rssi_dbm", -150, 0)?.map(|v| v as i16);
    let firmware = match obj.get("firmware") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if s.chars().count() <= MAX_FIRMWARE_CHARS && !s.chars().any(char::is_control) =>
        {
            Some(s.clone())
        }
        Some(Value::String(_)) => {
            return Err(out_of_range(
                "firmware must be at most 64 characters without control characters",
            ));
        }
        Some(other) => {
            return Err(malformed(format!(
                "firmware must be a string, not {}",
                json_kind(other)
            )));
        }
    };
    Ok(DeviceStatus {
        online,
        battery_pct,
        rssi_dbm,
        firmware,
    })
}

fn whole_number(
    obj: &Map<String, Value>,
    field: &str,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        // `87` and `87.0` are the same number; `87.5` is not a whole one.
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64 => Ok(Some(v as i64)),
            v => Err(out_of_range(format!(
                "{field} {} must be a whole number in {lo}..{hi}",
                v.map_or_else(|| n.to_string(), num)
            ))),
        },
        Some(other) => Err(malformed(format!(
            "{field} must be a number, not {}",
            json_kind(other)
        ))),
    }
}
