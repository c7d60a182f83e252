//! The device wire contract (DESIGN §2): topics, reading messages (Ondol JSON
//! and SenML packs), status messages and receipts. docs/DEVICES.md is the
//! same contract written for device makers; a test keeps the two in step.
//!
//! - [`parse_device_topic`], [`decode_readings`], [`decode_status`] and
//!   [`encode_message`] are the entry points; this file also holds the types
//!   they return and the receipt.
//! - `ondol_json`: the Ondol reading message, decoding and encoding.
//! - `senml`: SenML packs (RFC 8428): base fields, times, names → types.
//! - `validate`: the per-type rules both forms share: units and conversions,
//!   ranges, states, sensor names, timestamps and the time window.
//! - `status`: status messages and Wills.
//! - `detail`: how rejection details quote device input (short, escaped).
//!
//! Everything here is pure and total: any bytes give a value or a
//! rejection, never a panic (property-tested).

use jiff::{SignedDuration, Timestamp};

mod detail;
mod ondol_json;
mod senml;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use crate::id::DeviceId;
use crate::reading::Reading;
use crate::reason::{ReasonCode, Rejection};

pub const TOPIC_PREFIX: &str = "ondol/v1/devices/";
/// What ingest subscribes to for readings.
pub const READINGS_FILTER: &str = "ondol/v1/devices/+/readings";
/// What ingest subscribes to for status messages and Wills.
pub const STATUS_FILTER: &str = "ondol/v1/devices/+/status";
pub const SYSTEM_ALERTS_TOPIC: &str = "ondol/v1/system/alerts";

pub fn readings_topic(device: &DeviceId) -> String {
    format!("{TOPIC_PREFIX}{device}/readings")
}

pub fn status_topic(device: &DeviceId) -> String {
    format!("{TOPIC_PREFIX}{device}/status")
}

pub fn receipts_topic(device: &DeviceId) -> String {
    format!("{TOPIC_PREFIX}{device}/receipts")
}

/// A topic a device publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTopic {
    Readings(DeviceId),
    Status(DeviceId),
}

/// Why a topic is not one ingest handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is not under ondol/v1/devices/{{id}}/readings or /status")]
    NotADeviceTopic,
    #[error("device id in topic is invalid: {0}")]
    InvalidDeviceId(#[from] crate::id::IdError),
}

/// Limits applied while decoding and validating, from config.
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// Larger payloads are refused whole with `payload_too_large`.
    pub max_payload_bytes: usize,
    /// Messages with more readings are refused whole with `payload_too_large`.
    pub max_readings_per_message: usize,
    /// A reading further ahead of the receive time is `timestamp_in_future`.
    pub max_future_skew: SignedDuration,
    /// A reading older than this before the receive time is `timestamp_too_old`.
    pub max_age: SignedDuration,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_readings_per_message: 500,
            max_future_skew: SignedDuration::from_mins(5),
            max_age: SignedDuration::from_hours(24 * 30),
        }
    }
}

/// A decoded reading message: each reading judged alone.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMessage {
    /// Present when the device asked for a receipt (Ondol JSON only).
    pub msg_id: Option<String>,
    /// One entry per reading, in message order: the index is the receipt's.
    pub items: Vec<Result<Reading, Rejection>>,
}

/// A message refused whole (undecodable or too large).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRejection {
    /// Salvaged when it could still be read, so the device can get a receipt.
    pub msg_id: Option<String>,
    pub rejection: Rejection,
}

/// The device's state from a status message or its Will.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    pub online: bool,
    pub battery_pct: Option<u8>,
    pub rssi_dbm: Option<i16>,
    pub firmware: Option<String>,
}

/// One refused reading on a receipt.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptRejection {
    pub index: usize,
    #[serde(with = "reason_code_serde")]
    pub reason: ReasonCode,
    pub detail: String,
}

/// The answer to a message with a `msg_id`, published after commit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub msg_id: String,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<ReceiptRejection>,
    /// Set when the message was refused whole (undecodable, too large,
    /// unknown device), so no reading index applies. An addition to the
    /// receipt of DESIGN §2; devices ignore fields they do not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReceiptError>,
}

/// Why a whole message was refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptError {
    #[serde(with = "reason_code_serde")]
    pub reason: ReasonCode,
    pub detail: String,
}

impl From<Rejection> for ReceiptError {
    fn from(rejection: Rejection) -> Self {
        Self {
            reason: rejection.reason,
            detail: rejection.detail,
        }
    }
}

mod reason_code_serde {
    use super::ReasonCode;

    pub fn serialize<S: serde::Serializer>(code: &ReasonCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(code.as_str())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ReasonCode, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        ReasonCode::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason code {s:?}")))
    }
}

/// Parses `ondol/v1/devices/{id}/readings|status`.
pub fn parse_device_topic(topic: &str) -> Result<DeviceTopic, TopicError> {
    let rest = topic
        .strip_prefix(TOPIC_PREFIX)
        .ok_or(TopicError::NotADeviceTopic)?;
    let (id, kind) = rest.split_once('/').ok_or(TopicError::NotADeviceTopic)?;
    let which: fn(DeviceId) -> DeviceTopic = match kind {
        "readings" => DeviceTopic::Readings,
        "status" => DeviceTopic::Status,
        _ => return Err(TopicError::NotADeviceTopic),
    };
    Ok(which(DeviceId::new(id)?))
}

/// Decodes a reading message (Ondol JSON object or SenML array) and validates
/// every reading against the types, units, ranges and time limits.
/// `received_at` is the receive time: the default reading time and the
/// reference for the future/too-old checks.
///
/// A message is refused whole only when it cannot be read as a list of
/// readings (too large, not JSON, wrong shape, bad `msg_id` or message
/// `ts`); then `msg_id` is still returned when it can be read, so the device
/// gets a receipt telling it not to resend. Otherwise every reading is judged
/// alone, in message order. JSON `null` counts as an absent field.
pub fn decode_readings(
    payload: &[u8],
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Result<DecodedMessage, MessageRejection> {
    if payload.len() > limits.max_payload_bytes {
        let head = payload.get(..SALVAGE_SCAN_BYTES).unwrap_or(payload);
        return Err(MessageRejection {
            msg_id: salvage_msg_id(head),
            rejection: Rejection::new(
                ReasonCode::PayloadTooLarge,
                format!(
                    "payload is {} bytes; at most {} are accepted",
                    payload.len(),
                    limits.max_payload_bytes
                ),
            ),
        });
    }
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(error) => {
            return Err(MessageRejection {
                msg_id: salvage_msg_id(payload),
                rejection: Rejection::new(
                    ReasonCode::MalformedPayload,
                    format!("payload is not valid JSON: {error}"),
                ),
            });
        }
    };
    match &value {
        serde_json::Value::Object(message) => {
            ondol_json::decode_message(message, received_at, limits)
        }
        serde_json::Value::Array(pack) => senml::decode_pack(pack, received_at, limits),
        other => Err(MessageRejection {
            msg_id: None,
            rejection: Rejection::new(
                ReasonCode::MalformedPayload,
                format!(
                    "payload must be a JSON object (reading message) or array (SenML pack), not {}",
                    detail::json_kind(other)
                ),
            ),
        }),
    }
}

/// How much of an oversized payload is scanned for its `msg_id`: enough for
/// a `msg_id` written first, as every example does, without parsing the
/// rest of a payload that was refused for its size.
const SALVAGE_SCAN_BYTES: usize = 4096;

/// Reads the top-level `msg_id` of a payload that cannot be decoded whole
/// (syntax error, or too large), so the device still gets a receipt and can
/// stop resending a message that will never be accepted. Scans only up to
/// the `msg_id` key, skipping earlier values without building them.
fn salvage_msg_id(payload: &[u8]) -> Option<String> {
    use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};

    struct Finder<'a>(&'a mut Option<String>);

    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "msg_id" {
                    let value: serde_json::Value = map.next_value()?;
                    *self.0 = value
                        .as_str()
                        .filter(|id| ondol_json::valid_msg_id(id))
                        .map(str::to_owned);
                    // Stop here: the rest may be broken or huge.
                    return Err(A::Error::custom("msg_id found"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    // The error is expected (early stop, or the very breakage that brought
    // us here); only what was found matters.
    let _ = serde::Deserializer::deserialize_map(&mut de, Finder(&mut found));
    found
}

/// Decodes a status message or Will.
pub fn decode_status(payload: &[u8]) -> Result<DeviceStatus, Rejection> {
    status::decode_status(payload)
}

/// Encodes readings as an Ondol JSON reading message (what the simulator and
/// tests send). Every reading carries its own `ts` in epoch milliseconds.
///
/// `decode_readings(encode_message(..))` gives back equal readings when their
/// timestamps have millisecond precision (finer digits are truncated), their
/// sensors match the sensor grammar, and their values are valid for their
/// types and inside the decode limits.
pub fn encode_message(msg_id: Option<&str>, readings: &[Reading]) -> Vec<u8> {
    ondol_json::encode_message(msg_id, readings)
}

impl Receipt {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Receipt, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
