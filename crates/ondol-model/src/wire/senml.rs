//! SenML packs (RFC 8428, JSON representation) mapped to readings.
//!
//! - Base fields (`bn`, `bt`, `bu`, `bv`) apply to their own record and every
//!   later one until changed. A base field of the wrong JSON kind refuses its
//!   record (`malformed_payload`) and every later record that would inherit
//!   it, rather than silently falling back to an older base that could name
//!   a different type.
//! - The resolved name is `bn` + `n`; the reading type is its last segment,
//!   after the final `:` or `/` (`urn:dev:gw-0001:heart_rate`).
//! - The resolved time is `bt` + `t` in seconds (fractions allowed, rounded to
//!   the microsecond). Below 2^28 it is relative to the receive time (RFC 8428
//!   §4.5.3), so a record with no time at all gets the receive time.
//! - `v` (plus `bv`), `vs` and `vb` carry the value; `vd` and sums (`s`) have
//!   no meaning for any reading type. `u`, else `bu`, is the unit.
//! - A record holding only base fields is not a reading and yields no item, so
//!   a pack's item indices count the records that carry a reading.
//! - Blood pressure needs two numbers and a SenML record carries one, so a
//!   `blood_pressure` record is `missing_field` (send it as Ondol JSON).
//! - A pack cannot name a sensor (`sensor` is `None`), and has no `msg_id`.
//! - A field whose label ends in `_` must be understood (RFC 8428 §4.4); no
//!   such extension is supported, so it refuses the whole pack.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use super::detail::{excerpt, json_kind, num};
use super::validate::{self, Form, Raw, RawUnit};
use super::{DecodeLimits, DecodedMessage, MessageRejection};
use crate::reading::{Reading, ReadingType};
use crate::reason::{ReasonCode, Rejection};

/// Resolved times below this many seconds are relative to now (RFC 8428).
const RELATIVE_TIME_LIMIT_S: f64 = 268_435_456.0; // 2^28

/// Labels that make a record carry a reading (anything but base fields).
const RECORD_FIELDS: [&str; 9] = ["n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"];
const BASE_FIELDS: [&str; 6] = ["bn", "bt", "bu", "bv", "bs", "bver"];
const VALUE_FIELDS: [&str; 4] = ["v", "vs", "vb", "vd"];

fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::MalformedPayload, detail)
}

fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// A base field's state while walking a pack.
#[derive(Debug, Clone, PartialEq)]
enum Inherited<T> {
    Unset,
    Set(T),
    /// Set to a value of the wrong kind in the record at this position.
    Invalid {
        record: usize,
    },
}

impl<T> Inherited<T> {
    fn get(&self, field: &str) -> Result<Option<&T>, Rejection> {
        match self {
            Inherited::Unset => Ok(None),
            Inherited::Set(v) => Ok(Some(v)),
            Inherited::Invalid { record } => Err(malformed(format!(
                "inherits the invalid {field} of record {record}"
            ))),
        }
    }
}

#[derive(Debug)]
struct Base {
    name: Inherited<String>,
    time: Inherited<f64>,
    unit: Inherited<String>,
    value: Inherited<f64>,
}

impl Base {
    fn new() -> Self {
        Self {
            name: Inherited::Unset,
            time: Inherited::Unset,
            unit: Inherited::Unset,
            value: Inherited::Unset,
        }
    }

    /// Applies the base fields a record sets; returns the first that was of
    /// the wrong kind, which refuses the record itself.
    fn update(&mut self, obj: &Map<String, Value>, record: usize) -> Option<Rejection> {
        let mut problem = None;
        let mut note = |field: &str, v: &Value, expected: &str| {
            problem.get_or_insert_with(|| {
                malformed(format!("{field} must be {expected}, not {}", json_kind(v)))
            });
        };
        if let Some(v) = present(obj, "bn") {
            self.name = match v {
                Value::String(s) => Inherited::Set(s.clone()),
                other => {
                    note("bn", other, "a string");
                    Inherited::Invalid { record }
                }
            };
        }
        if let Some(v) = present(obj, "bu") {
            self.unit = match v {
                Value::String(s) => Inherited::Set(s.clone()),
                other => {
                    note("bu", other, "a string");
                    Inherited::Invalid { record }
                }
            };
        }
        for (field, slot) in [("bt", &mut self.time), ("bv", &mut self.value)] {
            if let Some(v) = present(obj, field) {
                *slot = match v.as_f64() {
                    Some(n) => Inherited::Set(n),
                    None => {
                        note(field, v, "a number");
                        Inherited::Invalid { record }
                    }
                };
            }
        }
        problem
    }
}

/// Decodes a pack whose payload parsed as a JSON array.
pub(super) fn decode_pack(
    records: &[Value],
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Result<DecodedMessage, MessageRejection> {
    let refuse = |reason, detail: String| MessageRejection {
        msg_id: None,
        rejection: Rejection::new(reason, detail),
    };
    if records.len() > limits.max_readings_per_message {
        return Err(refuse(
            ReasonCode::PayloadTooLarge,
            format!(
                "pack has {} records; at most {} are accepted",
                records.len(),
                limits.max_readings_per_message
            ),
        ));
    }
    let must_understand = records
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|obj| obj.keys())
        .find(|label| label.ends_with('_'));
    if let Some(label) = must_understand {
        return Err(refuse(
            ReasonCode::MalformedPayload,
            format!(
                "SenML field {} must be understood and is not supported",
                excerpt(label)
            ),
        ));
    }
    let mut base = Base::new();
    let items = records
        .iter()
        .enumerate()
        .filter_map(|(position, record)| {
            decode_record(position, record, &mut base, received_at, limits)
        })
        .collect();
    Ok(DecodedMessage {
        msg_id: None,
        items,
    })
}

/// One record: `None` when it only sets base fields.
fn decode_record(
    position: usize,
    record: &Value,
    base: &mut Base,
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Option<Result<Reading, Rejection>> {
    let Some(obj) = record.as_object() else {
        return Some(Err(malformed(format!(
            "record must be an object, not {}",
            json_kind(record)
        ))));
    };
    if let Some(problem) = base.update(obj, position) {
        return Some(Err(problem));
    }
    let has = |fields: &[&str]| fields.iter().any(|f| present(obj, f).is_some());
    if !has(&RECORD_FIELDS) && has(&BASE_FIELDS) {
        return None;
    }
    Some(resolve(obj, base, received_at, limits))
}

/// Judges a record carrying a reading. Checks run in this order: name and
/// type, time, value (fields, unit, range), then the time window.
fn resolve(
    obj: &Map<String, Value>,
    base: &Base,
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Result<Reading, Rejection> {
    let base_name = base.name.get("bn")?.map_or("", String::as_str);
    let name = match present(obj, "n") {
        None => base_name.to_owned(),
        Some(Value::String(n)) => format!("{base_name}{n}"),
        Some(other) => {
            return Err(malformed(format!(
                "n must be a string, not {}",
                json_kind(other)
            )));
        }
    };
    if name.is_empty() {
        return Err(Rejection::new(
            ReasonCode::MissingField,
            "record has no name (n or bn)",
        ));
    }
    // rsplit always yields at least one piece; the fallback keeps this total.
    let segment = name.rsplit([':', '/']).next().unwrap_or_default();
    let reading_type = ReadingType::parse(segment).ok_or_else(|| {
        Rejection::new(
            ReasonCode::UnknownType,
            format!(
                "unknown type {} (the name's part after its last : or /)",
                excerpt(segment)
            ),
        )
    })?;

    let t = match present(obj, "t") {
        None => 0.0,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| malformed(format!("t must be a number, not {}", json_kind(v))))?,
    };
    let bt = base.time.get("bt")?.copied().unwrap_or(0.0);
    let ts = resolve_time(bt + t, received_at)?;

    let raw = value(obj, base)?;
    let unit = match present(obj, "u") {
        Some(u) => RawUnit::from_json(Some(u)),
        None => base
            .unit
            .get("bu")?
            .map_or(RawUnit::Absent, |u| RawUnit::Given(u)),
    };
    let value = validate::value(reading_type, raw, unit, Form::SenMl)?;
    validate::check_window(ts, received_at, limits)?;
    Ok(Reading {
        reading_type,
        value,
        sensor: None,
        ts,
    })
}

/// The record's one value field, with `bv` added to a numeric `v`.
fn value<'a>(obj: &'a Map<String, Value>, base: &Base) -> Result<Raw<'a>, Rejection> {
    let mut fields = VALUE_FIELDS
        .iter()
        .filter_map(|f| present(obj, f).map(|v| (*f, v)));
    let Some((field, v)) = fields.next() else {
        return Ok(Raw::Absent);
    };
    if fields.next().is_some() {
        return Err(malformed("record has more than one of v, vs, vb and vd"));
    }
    let wrong =
        |expected: &str| malformed(format!("{field} must be {expected}, not {}", json_kind(v)));
    match (field, v) {
        ("v", Value::Number(n)) => {
            let bv = base.value.get("bv")?.copied().unwrap_or(0.0);
            Ok(Raw::Number(n.as_f64().unwrap_or(f64::NAN) + bv))
        }
        ("v", _) => Err(wrong("a number")),
        ("vs", Value::String(s)) => Ok(Raw::Str(s)),
        ("vs", _) => Err(wrong("a string")),
        ("vb", Value::Bool(b)) => Ok(Raw::Bool(*b)),
        ("vb", _) => Err(wrong("a boolean")),
        _ => Ok(Raw::Other("data (vd)")),
    }
}

/// Turns resolved SenML seconds into a timestamp (RFC 8428 §4.5.3).
fn resolve_time(secs: f64, received_at: Timestamp) -> Result<Timestamp, Rejection> {
    // i64 microseconds span about ±292,000 years; jiff's range is narrower
    // and checked below.
    const MAX_MICROS: f64 = 9.2e18;
    let out_of_range = || {
        let hint = if secs > 1e11 {
            " (SenML times are seconds, not milliseconds)"
        } else {
            ""
        };
        malformed(format!(
            "time {} s is outside the supported range{hint}",
            num(secs)
        ))
    };
    let micros = (secs * 1e6).round();
    if !(micros.is_finite() && micros.abs() < MAX_MICROS) {
        return Err(out_of_range());
    }
    // In range for i64, checked above.
    let micros = micros as i64;
    if secs < RELATIVE_TIME_LIMIT_S {
        received_at
            .checked_add(SignedDuration::from_micros(micros))
            .map_err(|_| out_of_range())
    } else {
        Timestamp::from_microsecond(micros).map_err(|_| out_of_range())
    }
}
