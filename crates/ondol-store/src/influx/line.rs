//! Readings as InfluxDB line protocol (the schema is documented in
//! ARCHITECTURE.md):
//!
//! ```text
//! reading,device=gw-1,region=gangjin,resident=r-1,sensor=pir-kitchen,type=motion value=1 1795737600000000000
//! ```
//!
//! One measurement, `reading`; tags in key order; fields by value kind;
//! the timestamp is the reading's own time in nanoseconds (a whole number
//! of milliseconds, the wire contract's resolution), so a resend writes the
//! very same point again and InfluxDB keeps one.
//!
//! We build the lines ourselves rather than through `influxdb2`'s
//! `DataPoint`, which leaves newlines in tags and backslashes in strings
//! unescaped and writes `NaN`: every byte of a line is decided here.

use std::fmt::Write as _;

use ondol_model::reading::{CheckinValue, DoorState, ReadingValue};

use crate::batch::NewReading;

/// The measurement every reading is written to.
pub const MEASUREMENT: &str = "reading";

/// Why a reading cannot be written as a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unencodable(pub String);

/// Appends one reading as a line (with its trailing newline) to `out`.
pub fn encode(new: &NewReading, region: &str, out: &mut String) -> Result<(), Unencodable> {
    let reading = &new.reading;
    let ts_ns = i128::from(reading.ts.as_millisecond()) * 1_000_000;
    let ts_ns = i64::try_from(ts_ns)
        .map_err(|_| Unencodable(format!("timestamp {} out of range", reading.ts)))?;
    let start = out.len();
    out.push_str(MEASUREMENT);
    // Tags in lexical key order (what InfluxDB would sort them to anyway).
    tag(out, "device", new.device_id.as_str());
    if !region.is_empty() {
        tag(out, "region", region);
    }
    tag(out, "resident", new.resident_id.as_str());
    if let Some(sensor) = reading.sensor.as_deref().filter(|s| !s.is_empty()) {
        tag(out, "sensor", sensor);
    }
    tag(out, "type", reading.reading_type.as_str());
    out.push(' ');
    let fields = match reading.value {
        ReadingValue::Number(n) => number(out, "value", n),
        ReadingValue::BloodPressure {
            systolic,
            diastolic,
        } => number(out, "systolic", systolic).and_then(|()| {
            out.push(',');
            number(out, "diastolic", diastolic)
        }),
        ReadingValue::Motion(moved) => number(out, "value", if moved { 1.0 } else { 0.0 }),
        ReadingValue::Fall => number(out, "value", 1.0),
        ReadingValue::Score(score) => number(out, "value", f64::from(score)),
        ReadingValue::Door(state) => {
            string(
                out,
                "state",
                match state {
                    DoorState::Open => "open",
                    DoorState::Closed => "closed",
                },
            );
            Ok(())
        }
        ReadingValue::Checkin(value) => {
            string(
                out,
                "state",
                match value {
                    CheckinValue::Ok => "ok",
                    CheckinValue::Help => "help",
                },
            );
            Ok(())
        }
    };
    if let Err(error) = fields {
        out.truncate(start);
        return Err(error);
    }
    let _ = writeln!(out, " {ts_ns}");
    Ok(())
}

fn tag(out: &mut String, key: &str, value: &str) {
    out.push(',');
    out.push_str(key);
    out.push('=');
    escape_tag_value(out, value);
}

/// Tag values escape commas, equals signs and spaces; a line break cannot be
/// escaped in line protocol at all, so control characters become `_`.
fn escape_tag_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            ',' | '=' | ' ' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('_'),
            c => out.push(c),
        }
    }
}

fn number(out: &mut String, key: &str, value: f64) -> Result<(), Unencodable> {
    if !value.is_finite() {
        return Err(Unencodable(format!("{key} is not a finite number")));
    }
    // `{}` of an f64 never uses an exponent and always round-trips; without
    // an `i` suffix InfluxDB reads it as a float, whole or not.
    let _ = write!(out, "{key}={value}");
    Ok(())
}

fn string(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use ondol_model::{DeviceId, Reading, ReadingType, ResidentId};

    use super::*;

    fn new_reading(
        reading_type: ReadingType,
        value: ReadingValue,
        sensor: Option<&str>,
    ) -> NewReading {
        let ts = Timestamp::from_millisecond(1_795_737_600_123).expect("valid");
        NewReading {
            device_id: DeviceId::new("gw-1").expect("valid"),
            resident_id: ResidentId::new("r-1").expect("valid"),
            reading: Reading {
                reading_type,
                value,
                sensor: sensor.map(str::to_owned),
                ts,
            },
            received_at: ts,
            local_date: jiff::civil::date(2026, 11, 27),
            local_hour: 9,
            checkin_in_window: false,
            counts_as_activity: false,
        }
    }

    fn line(new: &NewReading, region: &str) -> String {
        let mut out = String::new();
        encode(new, region, &mut out).expect("encodable");
        out
    }

    #[test]
    fn each_value_kind_has_its_fields_and_the_timestamp_is_in_nanoseconds() {
        assert_eq!(
            line(
                &new_reading(
                    ReadingType::Motion,
                    ReadingValue::Motion(true),
                    Some("pir-kitchen")
                ),
                "gangjin"
            ),
            "reading,device=gw-1,region=gangjin,resident=r-1,sensor=pir-kitchen,type=motion value=1 1795737600123000000\n"
        );
        assert_eq!(
            line(
                &new_reading(
                    ReadingType::BloodPressure,
                    ReadingValue::BloodPressure {
                        systolic: 128.0,
                        diastolic: 82.5
                    },
                    None
                ),
                "gangjin"
            ),
            "reading,device=gw-1,region=gangjin,resident=r-1,type=blood_pressure systolic=128,diastolic=82.5 1795737600123000000\n"
        );
        assert_eq!(
            line(
                &new_reading(
                    ReadingType::Checkin,
                    ReadingValue::Checkin(CheckinValue::Help),
                    None
                ),
                ""
            ),
            "reading,device=gw-1,resident=r-1,type=checkin state=\"help\" 1795737600123000000\n"
        );
        assert_eq!(
            line(
                &new_reading(ReadingType::HeartRate, ReadingValue::Number(1e-7), None),
                "x"
            ),
            "reading,device=gw-1,region=x,resident=r-1,type=heart_rate value=0.0000001 1795737600123000000\n"
        );
    }

    #[test]
    fn operator_text_is_escaped_and_cannot_break_a_line() {
        let out = line(
            &new_reading(ReadingType::Steps, ReadingValue::Number(10.0), None),
            "south, east=1\nx\\",
        );
        assert_eq!(
            out,
            "reading,device=gw-1,region=south\\,\\ east\\=1_x\\\\,resident=r-1,type=steps value=10 1795737600123000000\n"
        );
        assert_eq!(out.matches('\n').count(), 1);
        let mut s = String::new();
        string(&mut s, "state", "a\"b\\c\nd");
        assert_eq!(s, "state=\"a\\\"b\\\\c d\"");
    }

    #[test]
    fn non_finite_numbers_are_refused_and_leave_nothing_behind() {
        let mut out = String::from("before\n");
        let error = encode(
            &new_reading(ReadingType::HeartRate, ReadingValue::Number(f64::NAN), None),
            "x",
            &mut out,
        );
        assert!(error.is_err());
        assert_eq!(out, "before\n");
    }
}
