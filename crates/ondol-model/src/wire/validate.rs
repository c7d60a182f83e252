//! The per-type rules of DESIGN §2, shared by both wire forms: which units a
//! type accepts and how they convert to the canonical unit, valid ranges, the
//! allowed states, the sensor grammar and the time window.
//!
//! Both decoders first reduce a reading to [`Raw`] values (what JSON kind the
//! device sent, nothing judged yet), so the rules are written once and a
//! SenML `v` and an Ondol `value` are judged the same way.

use jiff::Timestamp;
use serde_json::Value;

use super::DecodeLimits;
use super::detail::{excerpt, json_kind, num};
use crate::reading::{CheckinValue, DoorState, ReadingType, ReadingValue};
use crate::reason::{ReasonCode, Rejection};

/// A field as the device sent it. JSON `null` counts as absent everywhere:
/// devices built on serializers that write `None` as `null` mean "not sent".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Raw<'a> {
    Absent,
    Number(f64),
    Bool(bool),
    Str(&'a str),
    /// Any other kind, named for the detail ("an array", "data (vd)").
    Other(&'static str),
}

impl<'a> Raw<'a> {
    pub(crate) fn from_json(v: Option<&'a Value>) -> Self {
        match v {
            None | Some(Value::Null) => Raw::Absent,
            // Without serde_json's arbitrary_precision every number is
            // representable as f64 (out-of-range literals fail to parse).
            Some(Value::Number(n)) => n.as_f64().map_or(Raw::Other("a number"), Raw::Number),
            Some(Value::Bool(b)) => Raw::Bool(*b),
            Some(Value::String(s)) => Raw::Str(s),
            Some(other) => Raw::Other(json_kind(other)),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Raw::Absent => "nothing",
            Raw::Number(_) => "a number",
            Raw::Bool(_) => "a boolean",
            Raw::Str(_) => "a string",
            Raw::Other(kind) => kind,
        }
    }
}

/// The unit field as sent (`unit`, or SenML `u` falling back to `bu`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RawUnit<'a> {
    Absent,
    Given(&'a str),
    /// Not a string; holds the JSON kind for the detail.
    NotAString(&'static str),
}

impl<'a> RawUnit<'a> {
    pub(crate) fn from_json(v: Option<&'a Value>) -> Self {
        match v {
            None | Some(Value::Null) => RawUnit::Absent,
            Some(Value::String(s)) => RawUnit::Given(s),
            Some(other) => RawUnit::NotAString(json_kind(other)),
        }
    }
}

/// Which wire form a reading came in, so details name the fields the device
/// actually uses (`value` and `unit`, or `v`/`vs`/`vb` and `u`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    OndolJson,
    SenMl,
}

impl Form {
    fn unit_field(self) -> &'static str {
        match self {
            Form::OndolJson => "a unit",
            Form::SenMl => "a unit in u or bu",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conversion {
    Same,
    Scale(f64),
    FahrenheitToCelsius,
}

impl Conversion {
    fn apply(self, v: f64) -> f64 {
        match self {
            Conversion::Same => v,
            Conversion::Scale(factor) => v * factor,
            Conversion::FahrenheitToCelsius => (v - 32.0) * 5.0 / 9.0,
        }
    }
}

/// One accepted spelling of a unit and how it converts to the canonical unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UnitSpelling {
    pub(crate) spelling: &'static str,
    conversion: Conversion,
}

const fn same(spelling: &'static str) -> UnitSpelling {
    UnitSpelling {
        spelling,
        conversion: Conversion::Same,
    }
}

const fn scaled(spelling: &'static str, factor: f64) -> UnitSpelling {
    UnitSpelling {
        spelling,
        conversion: Conversion::Scale(factor),
    }
}

const fn fahrenheit(spelling: &'static str) -> UnitSpelling {
    UnitSpelling {
        spelling,
        conversion: Conversion::FahrenheitToCelsius,
    }
}

/// mg/dL per mmol/L of glucose (molar mass 180.16 g/mol).
const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.016;
/// kg per international avoirdupois pound (exact by definition).
const KG_PER_LB: f64 = 0.453_592_37;

/// Every spelling a type accepts, canonical first (DESIGN §2). Beyond the
/// table there: SenML-registry spellings for heart rate (`beat/min`, `1/min`,
/// and the common `beats/min`) and steps (`count`), lower-case `mg/dl` and
/// `mmol/l`, and `°C`/`°F`. Units are case-sensitive (UCUM): `mmol/l` is
/// accepted because it cannot mean anything else, `c` is not. State types
/// (`motion`, `door`, `checkin`, `fall`) have no unit; one sent is ignored.
pub(crate) fn units(ty: ReadingType) -> &'static [UnitSpelling] {
    const HEART_RATE: &[UnitSpelling] = &[
        same("/min"),
        same("bpm"),
        same("beat/min"),
        same("beats/min"),
        same("1/min"),
    ];
    const SPO2: &[UnitSpelling] = &[same("%")];
    const BODY_TEMPERATURE: &[UnitSpelling] = &[
        same("Cel"),
        same("C"),
        same("°C"),
        fahrenheit("[degF]"),
        fahrenheit("F"),
        fahrenheit("°F"),
    ];
    const BLOOD_PRESSURE: &[UnitSpelling] = &[same("mm[Hg]"), same("mmHg")];
    const BLOOD_GLUCOSE: &[UnitSpelling] = &[
        same("mg/dL"),
        same("mg/dl"),
        scaled("mmol/L", GLUCOSE_MG_DL_PER_MMOL_L),
        scaled("mmol/l", GLUCOSE_MG_DL_PER_MMOL_L),
    ];
    const BODY_WEIGHT: &[UnitSpelling] = &[
        same("kg"),
        scaled("[lb_av]", KG_PER_LB),
        scaled("lb", KG_PER_LB),
    ];
    const STEPS: &[UnitSpelling] = &[same("{steps}"), same("count")];
    const POWER_USE: &[UnitSpelling] = &[same("W")];
    const AMBIENT_TEMPERATURE: &[UnitSpelling] = &[same("Cel"), same("C"), same("°C")];
    const SATISFACTION: &[UnitSpelling] = &[same("{score}")];
    match ty {
        ReadingType::HeartRate => HEART_RATE,
        ReadingType::Spo2 => SPO2,
        ReadingType::BodyTemperature => BODY_TEMPERATURE,
        ReadingType::BloodPressure => BLOOD_PRESSURE,
        ReadingType::BloodGlucose => BLOOD_GLUCOSE,
        ReadingType::BodyWeight => BODY_WEIGHT,
        ReadingType::Steps => STEPS,
        ReadingType::PowerUse => POWER_USE,
        ReadingType::AmbientTemperature => AMBIENT_TEMPERATURE,
        ReadingType::Satisfaction => SATISFACTION,
        ReadingType::Motion | ReadingType::Door | ReadingType::Checkin | ReadingType::Fall => &[],
    }
}

/// Types whose unit must be sent: each has an alternative unit whose numbers
/// are also plausible (37 °C / 98.6 °F, 5.5 mmol/L / 99 mg/dL, 70 kg /
/// 154 lb), so guessing the canonical one could silently store a dangerously
/// wrong value.
pub(crate) fn unit_required(ty: ReadingType) -> bool {
    matches!(
        ty,
        ReadingType::BodyTemperature | ReadingType::BloodGlucose | ReadingType::BodyWeight
    )
}

/// A valid range in the canonical unit, both ends included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    /// Only whole numbers are valid (`steps`, `satisfaction`).
    pub(crate) whole: bool,
}

const fn range(lo: f64, hi: f64) -> Range {
    Range {
        lo,
        hi,
        whole: false,
    }
}

const fn whole(lo: f64, hi: f64) -> Range {
    Range {
        lo,
        hi,
        whole: true,
    }
}

pub(crate) const SYSTOLIC: Range = range(50.0, 260.0);
pub(crate) const DIASTOLIC: Range = range(30.0, 160.0);

/// The range of a single-number type; `None` for blood pressure (two
/// numbers, [`SYSTOLIC`] and [`DIASTOLIC`]) and the state types.
pub(crate) fn numeric_range(ty: ReadingType) -> Option<Range> {
    match ty {
        ReadingType::HeartRate => Some(range(20.0, 250.0)),
        ReadingType::Spo2 => Some(range(50.0, 100.0)),
        ReadingType::BodyTemperature => Some(range(30.0, 45.0)),
        ReadingType::BloodGlucose => Some(range(20.0, 600.0)),
        ReadingType::BodyWeight => Some(range(20.0, 300.0)),
        ReadingType::Steps => Some(whole(0.0, 100_000.0)),
        ReadingType::PowerUse => Some(range(0.0, 10_000.0)),
        ReadingType::AmbientTemperature => Some(range(-30.0, 60.0)),
        ReadingType::Satisfaction => Some(whole(1.0, 5.0)),
        ReadingType::BloodPressure
        | ReadingType::Motion
        | ReadingType::Door
        | ReadingType::Checkin
        | ReadingType::Fall => None,
    }
}

fn reject(reason: ReasonCode, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail)
}

/// Judges the value of a reading of any type but blood pressure, whose two
/// numbers only the Ondol JSON form can carry ([`blood_pressure`]).
pub(crate) fn value(
    ty: ReadingType,
    raw: Raw<'_>,
    unit: RawUnit<'_>,
    form: Form,
) -> Result<ReadingValue, Rejection> {
    if let Some(range) = numeric_range(ty) {
        return numeric(ty, range, raw, unit, form);
    }
    match ty {
        ReadingType::BloodPressure => Err(reject(
            ReasonCode::MissingField,
            match form {
                Form::OndolJson => "blood_pressure needs systolic and diastolic",
                Form::SenMl => {
                    "blood_pressure needs systolic and diastolic: send it as Ondol JSON, not SenML"
                }
            },
        )),
        ReadingType::Motion => motion(raw, form),
        ReadingType::Door => choice(
            ty,
            raw,
            form,
            &[("open", DoorState::Open), ("closed", DoorState::Closed)],
        )
        .map(ReadingValue::Door),
        ReadingType::Checkin => choice(
            ty,
            raw,
            form,
            &[("ok", CheckinValue::Ok), ("help", CheckinValue::Help)],
        )
        .map(ReadingValue::Checkin),
        ReadingType::Fall => fall(raw, form),
        // Numeric types returned above; listed so a new type must be placed.
        ReadingType::HeartRate
        | ReadingType::Spo2
        | ReadingType::BodyTemperature
        | ReadingType::BloodGlucose
        | ReadingType::BodyWeight
        | ReadingType::Steps
        | ReadingType::PowerUse
        | ReadingType::AmbientTemperature
        | ReadingType::Satisfaction => Err(reject(
            ReasonCode::MalformedPayload,
            format!("{ty} has no valid range"),
        )),
    }
}

/// Judges a blood pressure reading (Ondol JSON `systolic`, `diastolic`).
pub(crate) fn blood_pressure(
    systolic: Raw<'_>,
    diastolic: Raw<'_>,
    unit: RawUnit<'_>,
) -> Result<ReadingValue, Rejection> {
    let ty = ReadingType::BloodPressure;
    let sys = bp_number("systolic", systolic)?;
    let dia = bp_number("diastolic", diastolic)?;
    let conversion = unit_conversion(ty, unit, Form::OndolJson)?;
    let sys = conversion.apply(sys);
    let dia = conversion.apply(dia);
    for (name, v, r) in [("systolic", sys, SYSTOLIC), ("diastolic", dia, DIASTOLIC)] {
        if !(v.is_finite() && v >= r.lo && v <= r.hi) {
            return Err(reject(
                ReasonCode::OutOfRange,
                format!(
                    "blood_pressure {name} {} mm[Hg] is outside {}..{}",
                    num(v),
                    num(r.lo),
                    num(r.hi)
                ),
            ));
        }
    }
    if sys <= dia {
        return Err(reject(
            ReasonCode::Inconsistent,
            format!(
                "blood_pressure systolic {} is not above diastolic {}",
                num(sys),
                num(dia)
            ),
        ));
    }
    Ok(ReadingValue::BloodPressure {
        systolic: sys,
        diastolic: dia,
    })
}

fn bp_number(name: &str, raw: Raw<'_>) -> Result<f64, Rejection> {
    match raw {
        Raw::Number(n) => Ok(n),
        Raw::Absent => Err(reject(
            ReasonCode::MissingField,
            format!("blood_pressure has no {name}"),
        )),
        other => Err(reject(
            ReasonCode::MalformedPayload,
            format!(
                "blood_pressure {name} must be a number, not {}",
                other.kind()
            ),
        )),
    }
}

fn numeric(
    ty: ReadingType,
    range: Range,
    raw: Raw<'_>,
    unit: RawUnit<'_>,
    form: Form,
) -> Result<ReadingValue, Rejection> {
    let sent = match raw {
        Raw::Number(n) => n,
        Raw::Absent => return Err(missing_value(ty, form)),
        other => {
            let detail = match form {
                Form::OndolJson => format!("{ty} value must be a number, not {}", other.kind()),
                Form::SenMl => format!("{ty} needs a number in v, not {}", other.kind()),
            };
            return Err(reject(ReasonCode::MalformedPayload, detail));
        }
    };
    let conversion = unit_conversion(ty, unit, form)?;
    let v = conversion.apply(sent);
    let canonical = ty.canonical_unit().unwrap_or("");
    let sent_note = match (conversion, unit) {
        (Conversion::Same, _) | (_, RawUnit::Absent | RawUnit::NotAString(_)) => String::new(),
        (_, RawUnit::Given(spelling)) => format!(" (sent {} {})", num(sent), excerpt(spelling)),
    };
    // Non-finite values fail this test too (NaN compares false), so they
    // never reach a sink.
    if !(v.is_finite() && v >= range.lo && v <= range.hi) {
        return Err(reject(
            ReasonCode::OutOfRange,
            format!(
                "{ty} {} {canonical} is outside {}..{}{sent_note}",
                num(v),
                num(range.lo),
                num(range.hi)
            ),
        ));
    }
    if range.whole && v.fract() != 0.0 {
        return Err(reject(
            ReasonCode::OutOfRange,
            format!("{ty} {} {canonical} is not a whole number", num(v)),
        ));
    }
    if ty == ReadingType::Satisfaction {
        // Whole and inside 1..=5, so the cast is exact.
        return Ok(ReadingValue::Score(v as u8));
    }
    Ok(ReadingValue::Number(v))
}

fn unit_conversion(
    ty: ReadingType,
    unit: RawUnit<'_>,
    form: Form,
) -> Result<Conversion, Rejection> {
    let accepted = || {
        units(ty)
            .iter()
            .map(|u| u.spelling)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let spelling = match unit {
        RawUnit::Absent if unit_required(ty) => {
            return Err(reject(
                ReasonCode::MissingField,
                format!("{ty} needs {}: one of {}", form.unit_field(), accepted()),
            ));
        }
        RawUnit::Absent => return Ok(Conversion::Same),
        RawUnit::NotAString(kind) => {
            return Err(reject(
                ReasonCode::MalformedPayload,
                format!("unit must be a string, not {kind}"),
            ));
        }
        RawUnit::Given(spelling) => spelling,
    };
    units(ty)
        .iter()
        .find(|u| u.spelling == spelling)
        .map(|u| u.conversion)
        .ok_or_else(|| {
            reject(
                ReasonCode::InvalidUnit,
                format!(
                    "unit {} is not accepted for {ty} (use {})",
                    excerpt(spelling),
                    accepted()
                ),
            )
        })
}

fn missing_value(ty: ReadingType, form: Form) -> Rejection {
    let detail = match form {
        Form::OndolJson => format!("{ty} has no value"),
        Form::SenMl => format!("{ty} record has no value (v, vs or vb)"),
    };
    reject(ReasonCode::MissingField, detail)
}

fn motion(raw: Raw<'_>, form: Form) -> Result<ReadingValue, Rejection> {
    match raw {
        Raw::Bool(moved) => Ok(ReadingValue::Motion(moved)),
        Raw::Number(0.0) => Ok(ReadingValue::Motion(false)),
        Raw::Number(1.0) => Ok(ReadingValue::Motion(true)),
        Raw::Number(n) => Err(reject(
            ReasonCode::OutOfRange,
            format!("motion {} must be 0 or 1", num(n)),
        )),
        Raw::Absent => Err(missing_value(ReadingType::Motion, form)),
        other => {
            let detail = match form {
                Form::OndolJson => {
                    format!(
                        "motion value must be 0, 1, true or false, not {}",
                        other.kind()
                    )
                }
                Form::SenMl => format!("motion needs vb, or v 0 or 1, not {}", other.kind()),
            };
            Err(reject(ReasonCode::MalformedPayload, detail))
        }
    }
}

fn choice<T: Copy>(
    ty: ReadingType,
    raw: Raw<'_>,
    form: Form,
    options: &[(&'static str, T)],
) -> Result<T, Rejection> {
    let names = || {
        options
            .iter()
            .map(|(name, _)| format!("{name:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match raw {
        Raw::Str(s) => options
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                reject(
                    ReasonCode::OutOfRange,
                    format!("{ty} {} must be {}", excerpt(s), names()),
                )
            }),
        Raw::Absent => Err(missing_value(ty, form)),
        other => {
            let detail = match form {
                Form::OndolJson => {
                    format!(
                        "{ty} value must be the string {}, not {}",
                        names(),
                        other.kind()
                    )
                }
                Form::SenMl => format!("{ty} needs vs {}, not {}", names(), other.kind()),
            };
            Err(reject(ReasonCode::MalformedPayload, detail))
        }
    }
}

fn fall(raw: Raw<'_>, form: Form) -> Result<ReadingValue, Rejection> {
    match raw {
        Raw::Bool(true) => Ok(ReadingValue::Fall),
        Raw::Bool(false) => Err(reject(
            ReasonCode::OutOfRange,
            "fall must be true: send a fall reading only when a fall is detected",
        )),
        Raw::Absent => Err(missing_value(ReadingType::Fall, form)),
        other => {
            let detail = match form {
                Form::OndolJson => format!("fall value must be true, not {}", other.kind()),
                Form::SenMl => format!("fall needs vb true, not {}", other.kind()),
            };
            Err(reject(ReasonCode::MalformedPayload, detail))
        }
    }
}

/// Whether a sensor name matches `[A-Za-z0-9_.:-]{1,64}`: it is part of the
/// dedupe key and goes into storage tags, so it is kept plain.
pub(crate) fn valid_sensor(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The optional `sensor` of an Ondol JSON reading.
pub(crate) fn sensor(v: Option<&Value>) -> Result<Option<String>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if valid_sensor(s) => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(reject(
            ReasonCode::MalformedPayload,
            format!(
                "sensor {} must be 1 to 64 of A-Z a-z 0-9 _ . : -",
                excerpt(s)
            ),
        )),
        Some(other) => Err(reject(
            ReasonCode::MalformedPayload,
            format!("sensor must be a string, not {}", json_kind(other)),
        )),
    }
}

/// An Ondol JSON `ts`: RFC 3339 with an offset (what jiff's `Timestamp`
/// parser accepts, which also allows RFC 9557 annotations) or whole Unix epoch
/// milliseconds. `null` means absent. `field` names it in the detail.
pub(crate) fn timestamp(v: &Value, field: &str) -> Result<Option<Timestamp>, Rejection> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s.parse::<Timestamp>().map(Some).map_err(|_| {
            reject(
                ReasonCode::MalformedPayload,
                format!("{field} {} is not RFC 3339 with an offset", excerpt(s)),
            )
        }),
        Value::Number(n) => match n.as_i64() {
            Some(ms) => Timestamp::from_millisecond(ms).map(Some).map_err(|_| {
                reject(
                    ReasonCode::MalformedPayload,
                    format!("{field} {ms} ms is outside the supported time range"),
                )
            }),
            None => Err(reject(
                ReasonCode::MalformedPayload,
                format!(
                    "{field} {} must be whole epoch milliseconds",
                    n.as_f64().map_or_else(|| "number".to_owned(), num)
                ),
            )),
        },
        other => Err(reject(
            ReasonCode::MalformedPayload,
            format!(
                "{field} must be an RFC 3339 string or epoch milliseconds, not {}",
                json_kind(other)
            ),
        )),
    }
}

/// Refuses readings from too far in the future (a device clock gone wrong)
/// or too long ago (a replayed backlog that would rewrite closed rollups).
pub(crate) fn check_window(
    ts: Timestamp,
    received_at: Timestamp,
    limits: &DecodeLimits,
) -> Result<(), Rejection> {
    // Saturation cannot fail for a SignedDuration; the fallbacks only keep
    // this total.
    let latest = received_at
        .saturating_add(limits.max_future_skew)
        .unwrap_or(Timestamp::MAX);
    if ts > latest {
        return Err(reject(
            ReasonCode::TimestampInFuture,
            format!(
                "ts {ts} is more than {:#} after receive time {received_at}",
                limits.max_future_skew
            ),
        ));
    }
    let earliest = received_at
        .saturating_sub(limits.max_age)
        .unwrap_or(Timestamp::MIN);
    if ts < earliest {
        return Err(reject(
            ReasonCode::TimestampTooOld,
            format!(
                "ts {ts} is more than {:#} before receive time {received_at}",
                limits.max_age
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_unit_is_listed_first_for_every_type() {
        for ty in ReadingType::ALL {
            let first = units(ty).first().map(|u| u.spelling);
            assert_eq!(first, ty.canonical_unit(), "{ty}");
            if let Some(first) = units(ty).first() {
                assert_eq!(first.conversion, Conversion::Same, "{ty}");
            }
        }
    }

    #[test]
    fn every_numeric_type_has_a_range_and_a_unit() {
        for ty in ReadingType::ALL {
            let numeric = numeric_range(ty).is_some();
            let stateful = matches!(
                ty,
                ReadingType::Motion | ReadingType::Door | ReadingType::Checkin | ReadingType::Fall
            );
            assert_eq!(
                numeric,
                !stateful && ty != ReadingType::BloodPressure,
                "{ty}"
            );
            assert_eq!(units(ty).is_empty(), stateful, "{ty}");
        }
    }

    #[test]
    fn sensor_grammar() {
        assert!(valid_sensor("pir-kitchen"));
        assert!(valid_sensor("a.b:c_d-9"));
        assert!(valid_sensor(&"x".repeat(64)));
        assert!(!valid_sensor(""));
        assert!(!valid_sensor(&"x".repeat(65)));
        assert!(!valid_sensor("a/b"));
        assert!(!valid_sensor("a b"));
        assert!(!valid_sensor("é"));
    }
}
