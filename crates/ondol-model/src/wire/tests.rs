//! Tests of the wire contract as a device sees it: payload bytes in,
//! readings or reason codes out.

#![allow(clippy::unwrap_used)]

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::reading::{CheckinValue, DoorState, ReadingType, ReadingValue};

/// The receive time of every test: 2026-11-27T09:00:00+09:00, the DESIGN
/// example's message time.
fn t0() -> Timestamp {
    "2026-11-27T00:00:00Z".parse().unwrap()
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn decode(payload: &str) -> Result<DecodedMessage, MessageRejection> {
    decode_readings(payload.as_bytes(), t0(), &limits())
}

fn decode_ok(payload: &str) -> DecodedMessage {
    decode(payload).unwrap_or_else(|e| panic!("{payload} was refused whole: {e:?}"))
}

fn refused(payload: &str) -> MessageRejection {
    match decode(payload) {
        Ok(m) => panic!("{payload} was decoded: {m:?}"),
        Err(e) => e,
    }
}

/// Judges one Ondol JSON reading alone.
fn one(reading: &str) -> Result<Reading, Rejection> {
    let msg = decode_ok(&format!(r#"{{"readings":[{reading}]}}"#));
    assert_eq!(msg.items.len(), 1);
    msg.items.into_iter().next().unwrap()
}

fn value_of(reading: &str) -> ReadingValue {
    match one(reading) {
        Ok(r) => r.value,
        Err(e) => panic!("{reading} was rejected: {e}"),
    }
}

fn number_of(reading: &str) -> f64 {
    match value_of(reading) {
        ReadingValue::Number(n) => n,
        other => panic!("{reading} gave {other:?}"),
    }
}

fn rejected(reading: &str) -> Rejection {
    match one(reading) {
        Ok(r) => panic!("{reading} was accepted: {r:?}"),
        Err(e) => e,
    }
}

fn reason(reading: &str) -> ReasonCode {
    rejected(reading).reason
}

/// Judges a SenML pack; items in pack order.
fn pack(records: &str) -> Vec<Result<Reading, Rejection>> {
    let msg = decode_ok(records);
    assert_eq!(msg.msg_id, None, "a pack has no msg_id");
    msg.items
}

fn reasons(items: &[Result<Reading, Rejection>]) -> Vec<Option<ReasonCode>> {
    items
        .iter()
        .map(|i| i.as_ref().err().map(|e| e.reason))
        .collect()
}

mod topics {
    use super::*;
    use crate::id::IdError;

    fn id(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    #[test]
    fn readings_and_status_topics_name_the_device() {
        assert_eq!(
            parse_device_topic("ondol/v1/devices/gw-0001/readings"),
            Ok(DeviceTopic::Readings(id("gw-0001")))
        );
        assert_eq!(
            parse_device_topic("ondol/v1/devices/gw-0001/status"),
            Ok(DeviceTopic::Status(id("gw-0001")))
        );
        let device = id("A_b-9");
        assert_eq!(
            parse_device_topic(&readings_topic(&device)),
            Ok(DeviceTopic::Readings(device.clone()))
        );
        assert_eq!(
            parse_device_topic(&status_topic(&device)),
            Ok(DeviceTopic::Status(device))
        );
    }

    #[test]
    fn other_shapes_are_not_device_topics() {
        for topic in [
            "",
            "ondol/v1/devices/gw-0001/receipts",
            "ondol/v1/devices/gw-0001",
            "ondol/v1/devices/gw-0001/",
            "ondol/v1/devices/gw-0001/readings/",
            "ondol/v1/devices/gw-0001/readings/extra",
            "ondol/v1/devices/a/b/readings",
            "ondol/v2/devices/gw-0001/readings",
            "/ondol/v1/devices/gw-0001/readings",
            "$share/ondol/ondol/v1/devices/gw-0001/readings",
            "ondol/v1/system/alerts",
            "ondol/v1/devices/gw-0001/READINGS",
        ] {
            assert_eq!(
                parse_device_topic(topic),
                Err(TopicError::NotADeviceTopic),
                "{topic}"
            );
        }
    }

    #[test]
    fn bad_device_ids_are_reported_as_such() {
        for topic in [
            "ondol/v1/devices//readings",
            "ondol/v1/devices/+/readings",
            "ondol/v1/devices/#/status",
            "ondol/v1/devices/gw 1/readings",
            "ondol/v1/devices/gé/readings",
        ] {
            assert!(
                matches!(
                    parse_device_topic(topic),
                    Err(TopicError::InvalidDeviceId(_))
                ),
                "{topic}"
            );
        }
        let long = format!("ondol/v1/devices/{}/readings", "x".repeat(65));
        assert_eq!(
            parse_device_topic(&long),
            Err(TopicError::InvalidDeviceId(IdError::TooLong { len: 65 }))
        );
    }
}

mod message {
    use super::*;

    #[test]
    fn the_design_example_decodes_whole() {
        let msg = decode_ok(
            r#"{
              "msg_id": "7f3a-000123",
              "ts": "2026-11-27T09:00:00+09:00",
              "readings": [
                {"type": "heart_rate", "value": 72, "unit": "/min"},
                {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]"},
                {"type": "motion", "value": 1, "sensor": "pir-kitchen", "ts": 1795737600000},
                {"type": "checkin", "value": "ok"}
              ]
            }"#,
        );
        assert_eq!(msg.msg_id.as_deref(), Some("7f3a-000123"));
        let readings: Vec<Reading> = msg.items.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            readings,
            vec![
                Reading {
                    reading_type: ReadingType::HeartRate,
                    value: ReadingValue::Number(72.0),
                    sensor: None,
                    ts: t0(),
                },
                Reading {
                    reading_type: ReadingType::BloodPressure,
                    value: ReadingValue::BloodPressure {
                        systolic: 128.0,
                        diastolic: 82.0
                    },
                    sensor: None,
                    ts: t0(),
                },
                Reading {
                    reading_type: ReadingType::Motion,
                    value: ReadingValue::Motion(true),
                    sensor: Some("pir-kitchen".to_owned()),
                    ts: Timestamp::from_millisecond(1_795_737_600_000).unwrap(),
                },
                Reading {
                    reading_type: ReadingType::Checkin,
                    value: ReadingValue::Checkin(CheckinValue::Ok),
                    sensor: None,
                    ts: t0(),
                },
            ]
        );
    }

    #[test]
    fn an_empty_readings_array_is_an_empty_message() {
        let msg = decode_ok(r#"{"msg_id":"m1","readings":[]}"#);
        assert_eq!(msg.msg_id.as_deref(), Some("m1"));
        assert!(msg.items.is_empty());
    }

    #[test]
    fn unknown_fields_are_ignored_at_every_level() {
        let msg = decode_ok(
            r#"{"msg_id":"m1","fw":"2.0","extra":{"x":[1]},"readings":[
                {"type":"heart_rate","value":72,"confidence":0.9,"source":{"a":1}}]}"#,
        );
        assert!(msg.items[0].is_ok());
    }

    #[test]
    fn too_large_payloads_are_refused_whole_keeping_a_leading_msg_id() {
        let small = DecodeLimits {
            max_payload_bytes: 100,
            ..limits()
        };
        let filler = "x".repeat(200);
        let payload = format!(r#"{{"msg_id":"m1","readings":[],"pad":"{filler}"}}"#);
        let refusal = decode_readings(payload.as_bytes(), t0(), &small).unwrap_err();
        assert_eq!(refusal.rejection.reason, ReasonCode::PayloadTooLarge);
        assert_eq!(refusal.msg_id.as_deref(), Some("m1"));
        assert!(refusal.rejection.detail.contains("at most 100"));

        // A msg_id beyond the scanned head is not looked for.
        let far = "x".repeat(SALVAGE_SCAN_BYTES);
        let payload = format!(r#"{{"pad":"{far}","msg_id":"m1","readings":[]}}"#);
        let refusal = decode_readings(payload.as_bytes(), t0(), &small).unwrap_err();
        assert_eq!(refusal.rejection.reason, ReasonCode::PayloadTooLarge);
        assert_eq!(refusal.msg_id, None);

        // Exactly at the limit is fine.
        let payload = r#"{"readings":[]}"#;
        let exact = DecodeLimits {
            max_payload_bytes: payload.len(),
            ..limits()
        };
        assert!(decode_readings(payload.as_bytes(), t0(), &exact).is_ok());
    }

    #[test]
    fn too_many_readings_are_refused_whole() {
        let few = DecodeLimits {
            max_readings_per_message: 2,
            ..limits()
        };
        let r = r#"{"type":"checkin","value":"ok"}"#;
        let payload = format!(r#"{{"msg_id":"m1","readings":[{r},{r},{r}]}}"#);
        let refusal = decode_readings(payload.as_bytes(), t0(), &few).unwrap_err();
        assert_eq!(refusal.rejection.reason, ReasonCode::PayloadTooLarge);
        assert_eq!(refusal.msg_id.as_deref(), Some("m1"));
        let payload = format!(r#"{{"msg_id":"m1","readings":[{r},{r}]}}"#);
        assert!(decode_readings(payload.as_bytes(), t0(), &few).is_ok());
    }

    #[test]
    fn what_is_not_json_is_malformed() {
        for payload in [
            &b""[..],
            b"   ",
            b"hello",
            b"{",
            b"{\"readings\":[}",
            b"\xff\xfe{}",
            b"{\"msg_id\":\"\xff\"}",
            b"{\"readings\":[{\"type\":\"heart_rate\",\"value\":1e400}]}",
            b"{\"readings\":[]} trailing",
        ] {
            let refusal = decode_readings(payload, t0(), &limits()).unwrap_err();
            assert_eq!(
                refusal.rejection.reason,
                ReasonCode::MalformedPayload,
                "{payload:?}"
            );
            assert_eq!(refusal.msg_id, None, "{payload:?}");
        }
    }

    #[test]
    fn json_scalars_are_malformed() {
        for payload in ["42", "\"text\"", "null", "true"] {
            let refusal = refused(payload);
            assert_eq!(refusal.rejection.reason, ReasonCode::MalformedPayload);
            assert_eq!(refusal.msg_id, None);
        }
    }

    #[test]
    fn msg_id_is_salvaged_from_broken_messages() {
        for payload in [
            r#"{"msg_id":"m1"}"#,
            r#"{"msg_id":"m1","readings":null}"#,
            r#"{"msg_id":"m1","readings":{"type":"heart_rate"}}"#,
            r#"{"msg_id":"m1","readings":"heart_rate 72"}"#,
            r#"{"msg_id":"m1","readings":[{"type":"heart_rate","value":72},]}"#,
            r#"{"msg_id":"m1","readings":[{"type":"heart_rate","val"#,
            r#"{"ts":"2026-11-27T09:00:00+09:00","msg_id":"m1","readings":[oops]}"#,
            r#"{"msg_id":"m1","ts":"yesterday","readings":[]}"#,
            r#"{"msg_id":"m1","ts":1.5,"readings":[]}"#,
        ] {
            let refusal = refused(payload);
            assert_eq!(
                refusal.rejection.reason,
                ReasonCode::MalformedPayload,
                "{payload}"
            );
            assert_eq!(refusal.msg_id.as_deref(), Some("m1"), "{payload}");
        }
    }

    #[test]
    fn an_invalid_msg_id_refuses_the_message_without_a_receipt() {
        let long = "x".repeat(65);
        for msg_id in [
            "1".to_owned(),
            "\"\"".to_owned(),
            format!("\"{long}\""),
            "[\"m1\"]".to_owned(),
            "{}".to_owned(),
            "\"m\\u0000\"".to_owned(),
            "\"line\\nbreak\"".to_owned(),
        ] {
            let refusal = refused(&format!(r#"{{"msg_id":{msg_id},"readings":[]}}"#));
            assert_eq!(
                refusal.rejection.reason,
                ReasonCode::MalformedPayload,
                "{msg_id}"
            );
            assert_eq!(refusal.msg_id, None, "{msg_id}");
        }
        // A broken payload with an invalid msg_id salvages nothing either.
        assert_eq!(refused(&format!(r#"{{"msg_id":"{long}","#)).msg_id, None);
    }

    #[test]
    fn msg_id_length_counts_characters() {
        let id = "가".repeat(64);
        let msg = decode_ok(&format!(r#"{{"msg_id":"{id}","readings":[]}}"#));
        assert_eq!(msg.msg_id, Some(id));
    }

    #[test]
    fn null_means_absent() {
        let msg = decode_ok(
            r#"{"msg_id":null,"ts":null,"readings":[
                {"type":"heart_rate","value":72,"unit":null,"sensor":null,"ts":null}]}"#,
        );
        assert_eq!(msg.msg_id, None);
        let reading = msg.items[0].as_ref().unwrap();
        assert_eq!(reading.ts, t0());
        assert_eq!(reading.sensor, None);
        assert_eq!(
            reason(r#"{"type":"heart_rate","value":null}"#),
            ReasonCode::MissingField
        );
        assert_eq!(
            reason(r#"{"type":null,"value":72}"#),
            ReasonCode::MissingField
        );
    }

    #[test]
    fn one_bad_reading_never_affects_its_neighbours() {
        let msg = decode_ok(
            r#"{"msg_id":"m1","readings":[
                {"type":"heart_rate","value":72},
                {"type":"heart_rate","value":400},
                "not a reading",
                {"type":"teleport","value":1},
                {"type":"body_temperature","value":36.5},
                {"type":"spo2","value":97,"ts":"garbage"},
                {"type":"door","value":"open"}
            ]}"#,
        );
        assert_eq!(
            reasons(&msg.items),
            vec![
                None,
                Some(ReasonCode::OutOfRange),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::UnknownType),
                Some(ReasonCode::MissingField),
                Some(ReasonCode::MalformedPayload),
                None,
            ]
        );
        assert_eq!(
            msg.items[6].as_ref().unwrap().value,
            ReadingValue::Door(DoorState::Open)
        );
    }
}

mod time {
    use super::*;

    fn ts_of(reading: &str) -> Timestamp {
        one(reading).unwrap().ts
    }

    #[test]
    fn reading_ts_overrides_message_ts_which_overrides_receive_time() {
        let msg = decode_ok(
            r#"{"ts":"2026-11-26T23:00:00Z","readings":[
                {"type":"checkin","value":"ok"},
                {"type":"checkin","value":"ok","ts":"2026-11-26T22:00:00Z"},
                {"type":"checkin","value":"ok","ts":1795734000000}
            ]}"#,
        );
        let times: Vec<Timestamp> = msg.items.into_iter().map(|i| i.unwrap().ts).collect();
        assert_eq!(
            times,
            vec![
                t0() - SignedDuration::from_hours(1),
                t0() - SignedDuration::from_hours(2),
                t0() - SignedDuration::from_hours(1),
            ]
        );
        assert_eq!(ts_of(r#"{"type":"checkin","value":"ok"}"#), t0());
    }

    #[test]
    fn rfc3339_needs_an_offset_and_epoch_millis_must_be_whole() {
        assert_eq!(
            ts_of(r#"{"type":"checkin","value":"ok","ts":"2026-11-27T08:59:30.250+09:00"}"#),
            t0() - SignedDuration::from_millis(29_750)
        );
        assert_eq!(
            ts_of(r#"{"type":"checkin","value":"ok","ts":"2026-11-26T23:59:00Z"}"#),
            t0() - SignedDuration::from_mins(1)
        );
        for ts in [
            r#""2026-11-27T09:00:00""#,
            r#""2026-11-27""#,
            r#""1795737600000""#,
            r#""tomorrow""#,
            "1795737600000.5",
            "true",
            "[1795737600000]",
            "9223372036854775807",
            "18446744073709551615",
        ] {
            let r = rejected(&format!(r#"{{"type":"checkin","value":"ok","ts":{ts}}}"#));
            assert_eq!(r.reason, ReasonCode::MalformedPayload, "{ts}: {r}");
        }
    }

    #[test]
    fn the_window_is_inclusive_and_details_name_time_and_limit() {
        let ms = |d: SignedDuration| (t0() + d).as_millisecond();
        let at = |ms: i64| format!(r#"{{"type":"checkin","value":"ok","ts":{ms}}}"#);
        let skew = SignedDuration::from_mins(5);
        let age = SignedDuration::from_hours(24 * 30);
        let one_ms = SignedDuration::from_millis(1);
        assert!(one(&at(ms(skew))).is_ok());
        assert!(one(&at(ms(-age))).is_ok());

        let future = rejected(&at(ms(skew + one_ms)));
        assert_eq!(future.reason, ReasonCode::TimestampInFuture);
        assert_eq!(
            future.detail,
            "ts 2026-11-27T00:05:00.001Z is more than 5m after receive time 2026-11-27T00:00:00Z"
        );
        let old = rejected(&at(ms(-age - one_ms)));
        assert_eq!(old.reason, ReasonCode::TimestampTooOld);
        assert!(old.detail.contains("2026-10-27T23:59:59.999Z"), "{old}");
        assert!(old.detail.contains("720h"), "{old}");
    }

    #[test]
    fn the_message_ts_is_checked_per_reading() {
        let msg = decode_ok(
            r#"{"ts":"2027-01-01T00:00:00Z","readings":[
                {"type":"checkin","value":"ok"},
                {"type":"checkin","value":"ok","ts":"2026-11-27T00:00:00Z"}]}"#,
        );
        assert_eq!(
            reasons(&msg.items),
            vec![Some(ReasonCode::TimestampInFuture), None]
        );
    }

    #[test]
    fn limits_come_from_config() {
        let strict = DecodeLimits {
            max_future_skew: SignedDuration::ZERO,
            max_age: SignedDuration::from_mins(1),
            ..limits()
        };
        let payload = r#"{"readings":[{"type":"checkin","value":"ok","ts":"2026-11-27T00:00:01Z"},
            {"type":"checkin","value":"ok","ts":"2026-11-26T23:58:59Z"}]}"#;
        let msg = decode_readings(payload.as_bytes(), t0(), &strict).unwrap();
        assert_eq!(
            reasons(&msg.items),
            vec![
                Some(ReasonCode::TimestampInFuture),
                Some(ReasonCode::TimestampTooOld)
            ]
        );
    }
}

mod readings {
    use super::*;

    #[test]
    fn shape_and_type_errors() {
        for (reading, code) in [
            ("72", ReasonCode::MalformedPayload),
            ("[]", ReasonCode::MalformedPayload),
            ("null", ReasonCode::MalformedPayload),
            (r#"{"value":72}"#, ReasonCode::MissingField),
            (r#"{"type":7,"value":72}"#, ReasonCode::MalformedPayload),
            (r#"{"type":["heart_rate"]}"#, ReasonCode::MalformedPayload),
            (
                r#"{"type":"Heart_Rate","value":72}"#,
                ReasonCode::UnknownType,
            ),
            (r#"{"type":"","value":72}"#, ReasonCode::UnknownType),
        ] {
            assert_eq!(reason(reading), code, "{reading}");
        }
    }

    #[test]
    fn details_quote_at_most_a_short_excerpt() {
        let long = "y".repeat(500);
        let r = rejected(&format!(r#"{{"type":"{long}"}}"#));
        assert_eq!(r.reason, ReasonCode::UnknownType);
        assert!(r.detail.len() < 80, "{}", r.detail);
        let r = rejected(&format!(
            r#"{{"type":"heart_rate","value":7,"unit":"{long}"}}"#
        ));
        assert_eq!(r.reason, ReasonCode::InvalidUnit);
        assert!(r.detail.len() < 140, "{}", r.detail);
    }

    #[test]
    fn sensor_must_be_a_plain_name() {
        assert_eq!(
            one(r#"{"type":"motion","value":1,"sensor":"pir-kitchen.1:a_b"}"#)
                .unwrap()
                .sensor
                .as_deref(),
            Some("pir-kitchen.1:a_b")
        );
        let long = "s".repeat(65);
        for sensor in [
            r#""""#.to_owned(),
            r#""pir kitchen""#.to_owned(),
            r#""pir/kitchen""#.to_owned(),
            format!(r#""{long}""#),
            "7".to_owned(),
        ] {
            assert_eq!(
                reason(&format!(
                    r#"{{"type":"motion","value":1,"sensor":{sensor}}}"#
                )),
                ReasonCode::MalformedPayload,
                "{sensor}"
            );
        }
    }

    #[test]
    fn heart_rate_and_its_aliases() {
        for unit in ["", "/min", "bpm", "beat/min", "beats/min", "1/min"] {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(r#","unit":"{unit}""#)
            };
            assert_eq!(
                number_of(&format!(r#"{{"type":"heart_rate","value":72{unit}}}"#)),
                72.0
            );
        }
        assert_eq!(number_of(r#"{"type":"heart_rate","value":20}"#), 20.0);
        assert_eq!(number_of(r#"{"type":"heart_rate","value":250}"#), 250.0);
        let r = rejected(r#"{"type":"heart_rate","value":400,"unit":"/min"}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        assert_eq!(r.detail, "heart_rate 400 /min is outside 20..250");
        assert_eq!(
            reason(r#"{"type":"heart_rate","value":19.9}"#),
            ReasonCode::OutOfRange
        );
        let r = rejected(r#"{"type":"heart_rate","value":72,"unit":"Hz"}"#);
        assert_eq!(r.reason, ReasonCode::InvalidUnit);
        assert_eq!(
            r.detail,
            r#"unit "Hz" is not accepted for heart_rate (use /min, bpm, beat/min, beats/min, 1/min)"#
        );
    }

    #[test]
    fn value_presence_and_kind() {
        for (reading, code) in [
            (r#"{"type":"heart_rate"}"#, ReasonCode::MissingField),
            (
                r#"{"type":"heart_rate","value":"72"}"#,
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"type":"heart_rate","value":true}"#,
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"type":"heart_rate","value":[72]}"#,
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":5}"#,
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":""}"#,
                ReasonCode::InvalidUnit,
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"BPM"}"#,
                ReasonCode::InvalidUnit,
            ),
        ] {
            assert_eq!(reason(reading), code, "{reading}");
        }
    }

    #[test]
    fn spo2() {
        assert_eq!(number_of(r#"{"type":"spo2","value":97,"unit":"%"}"#), 97.0);
        assert_eq!(number_of(r#"{"type":"spo2","value":50}"#), 50.0);
        assert_eq!(number_of(r#"{"type":"spo2","value":100}"#), 100.0);
        assert_eq!(
            reason(r#"{"type":"spo2","value":101}"#),
            ReasonCode::OutOfRange
        );
        assert_eq!(
            reason(r#"{"type":"spo2","value":0.97}"#),
            ReasonCode::OutOfRange
        );
        assert_eq!(
            reason(r#"{"type":"spo2","value":97,"unit":"ratio"}"#),
            ReasonCode::InvalidUnit
        );
    }

    #[test]
    fn body_temperature_needs_a_unit_and_converts_fahrenheit() {
        for unit in ["Cel", "C", "°C"] {
            assert_eq!(
                number_of(&format!(
                    r#"{{"type":"body_temperature","value":36.6,"unit":"{unit}"}}"#
                )),
                36.6
            );
        }
        for unit in ["[degF]", "F", "°F"] {
            let c = number_of(&format!(
                r#"{{"type":"body_temperature","value":98.6,"unit":"{unit}"}}"#
            ));
            assert!((c - 37.0).abs() < 1e-9, "{unit}: {c}");
        }
        let r = rejected(r#"{"type":"body_temperature","value":36.6}"#);
        assert_eq!(r.reason, ReasonCode::MissingField);
        assert!(r.detail.contains("[degF]"), "{r}");
        let r = rejected(r#"{"type":"body_temperature","value":120,"unit":"[degF]"}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        assert_eq!(
            r.detail,
            r#"body_temperature 48.8889 Cel is outside 30..45 (sent 120 "[degF]")"#
        );
        assert_eq!(
            reason(r#"{"type":"body_temperature","value":310,"unit":"K"}"#),
            ReasonCode::InvalidUnit
        );
        assert_eq!(
            reason(r#"{"type":"body_temperature","value":29.9,"unit":"Cel"}"#),
            ReasonCode::OutOfRange
        );
    }

    #[test]
    fn blood_pressure() {
        let bp = |s: f64, d: f64| ReadingValue::BloodPressure {
            systolic: s,
            diastolic: d,
        };
        for unit in ["", r#","unit":"mm[Hg]""#, r#","unit":"mmHg""#] {
            assert_eq!(
                value_of(&format!(
                    r#"{{"type":"blood_pressure","systolic":128,"diastolic":82{unit}}}"#
                )),
                bp(128.0, 82.0)
            );
        }
        assert_eq!(
            value_of(r#"{"type":"blood_pressure","systolic":260,"diastolic":30}"#),
            bp(260.0, 30.0)
        );
        assert_eq!(
            value_of(r#"{"type":"blood_pressure","systolic":50,"diastolic":30}"#),
            bp(50.0, 30.0)
        );
        for (reading, code) in [
            (
                r#"{"type":"blood_pressure","diastolic":82}"#,
                ReasonCode::MissingField,
            ),
            (
                r#"{"type":"blood_pressure","systolic":128}"#,
                ReasonCode::MissingField,
            ),
            (
                r#"{"type":"blood_pressure","value":128}"#,
                ReasonCode::MissingField,
            ),
            (
                r#"{"type":"blood_pressure","systolic":"128","diastolic":82}"#,
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"type":"blood_pressure","systolic":128,"diastolic":82,"unit":"kPa"}"#,
                ReasonCode::InvalidUnit,
            ),
            (
                r#"{"type":"blood_pressure","systolic":261,"diastolic":82}"#,
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"type":"blood_pressure","systolic":128,"diastolic":29}"#,
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"type":"blood_pressure","systolic":128,"diastolic":161}"#,
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"type":"blood_pressure","systolic":80,"diastolic":90}"#,
                ReasonCode::Inconsistent,
            ),
            (
                r#"{"type":"blood_pressure","systolic":90,"diastolic":90}"#,
                ReasonCode::Inconsistent,
            ),
        ] {
            assert_eq!(reason(reading), code, "{reading}");
        }
        assert_eq!(
            rejected(r#"{"type":"blood_pressure","systolic":80,"diastolic":90}"#).detail,
            "blood_pressure systolic 80 is not above diastolic 90"
        );
    }

    #[test]
    fn blood_glucose_needs_a_unit_and_converts_mmol() {
        assert_eq!(
            number_of(r#"{"type":"blood_glucose","value":99,"unit":"mg/dL"}"#),
            99.0
        );
        assert_eq!(
            number_of(r#"{"type":"blood_glucose","value":99,"unit":"mg/dl"}"#),
            99.0
        );
        for unit in ["mmol/L", "mmol/l"] {
            let v = number_of(&format!(
                r#"{{"type":"blood_glucose","value":5.5,"unit":"{unit}"}}"#
            ));
            assert!((v - 99.088).abs() < 1e-9, "{unit}: {v}");
        }
        assert_eq!(
            reason(r#"{"type":"blood_glucose","value":99}"#),
            ReasonCode::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"blood_glucose","value":700,"unit":"mg/dL"}"#),
            ReasonCode::OutOfRange
        );
        assert_eq!(
            reason(r#"{"type":"blood_glucose","value":99,"unit":"g/L"}"#),
            ReasonCode::InvalidUnit
        );
    }

    #[test]
    fn body_weight_needs_a_unit_and_converts_pounds() {
        assert_eq!(
            number_of(r#"{"type":"body_weight","value":70,"unit":"kg"}"#),
            70.0
        );
        for unit in ["[lb_av]", "lb"] {
            let kg = number_of(&format!(
                r#"{{"type":"body_weight","value":154,"unit":"{unit}"}}"#
            ));
            assert!((kg - 69.853_224_98).abs() < 1e-9, "{unit}: {kg}");
        }
        assert_eq!(
            reason(r#"{"type":"body_weight","value":70}"#),
            ReasonCode::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"body_weight","value":19.9,"unit":"kg"}"#),
            ReasonCode::OutOfRange
        );
        // 700 lb is 317.5 kg.
        assert_eq!(
            reason(r#"{"type":"body_weight","value":700,"unit":"lb"}"#),
            ReasonCode::OutOfRange
        );
        assert_eq!(
            reason(r#"{"type":"body_weight","value":70,"unit":"st"}"#),
            ReasonCode::InvalidUnit
        );
    }

    #[test]
    fn steps_are_whole() {
        for unit in ["", r#","unit":"{steps}""#, r#","unit":"count""#] {
            assert_eq!(
                number_of(&format!(r#"{{"type":"steps","value":1234{unit}}}"#)),
                1234.0
            );
        }
        assert_eq!(number_of(r#"{"type":"steps","value":0}"#), 0.0);
        assert_eq!(number_of(r#"{"type":"steps","value":100000}"#), 100_000.0);
        assert_eq!(number_of(r#"{"type":"steps","value":12.0}"#), 12.0);
        let r = rejected(r#"{"type":"steps","value":12.5}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        assert_eq!(r.detail, "steps 12.5 {steps} is not a whole number");
        assert_eq!(
            reason(r#"{"type":"steps","value":-1}"#),
            ReasonCode::OutOfRange
        );
        assert_eq!(
            reason(r#"{"type":"steps","value":100001}"#),
            ReasonCode::OutOfRange
        );
    }

    #[test]
    fn power_use() {
        assert_eq!(
            number_of(r#"{"type":"power_use","value":0,"unit":"W"}"#),
            0.0
        );
        assert_eq!(number_of(r#"{"type":"power_use","value":10000}"#), 10_000.0);
        assert_eq!(
            reason(r#"{"type":"power_use","value":-0.5}"#),
            ReasonCode::OutOfRange
        );
        assert_eq!(
            reason(r#"{"type":"power_use","value":1,"unit":"kW"}"#),
            ReasonCode::InvalidUnit
        );
    }

    #[test]
    fn ambient_temperature() {
        for unit in ["", r#","unit":"Cel""#, r#","unit":"C""#, r#","unit":"°C""#] {
            assert_eq!(
                number_of(&format!(
                    r#"{{"type":"ambient_temperature","value":-30{unit}}}"#
                )),
                -30.0
            );
        }
        assert_eq!(
            number_of(r#"{"type":"ambient_temperature","value":60}"#),
            60.0
        );
        let r = rejected(r#"{"type":"ambient_temperature","value":-31}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        assert_eq!(r.detail, "ambient_temperature -31 Cel is outside -30..60");
        assert_eq!(
            reason(r#"{"type":"ambient_temperature","value":70,"unit":"[degF]"}"#),
            ReasonCode::InvalidUnit
        );
    }

    #[test]
    fn satisfaction_is_a_whole_score() {
        for score in 1..=5u8 {
            assert_eq!(
                value_of(&format!(r#"{{"type":"satisfaction","value":{score}}}"#)),
                ReadingValue::Score(score)
            );
        }
        assert_eq!(
            value_of(r#"{"type":"satisfaction","value":4,"unit":"{score}"}"#),
            ReadingValue::Score(4)
        );
        for value in ["0", "6", "3.5", "-1"] {
            assert_eq!(
                reason(&format!(r#"{{"type":"satisfaction","value":{value}}}"#)),
                ReasonCode::OutOfRange,
                "{value}"
            );
        }
        assert_eq!(
            reason(r#"{"type":"satisfaction","value":"4"}"#),
            ReasonCode::MalformedPayload
        );
        assert_eq!(
            reason(r#"{"type":"satisfaction","value":4,"unit":"stars"}"#),
            ReasonCode::InvalidUnit
        );
    }

    #[test]
    fn motion() {
        for (value, moved) in [("1", true), ("0", false), ("true", true), ("false", false)] {
            assert_eq!(
                value_of(&format!(r#"{{"type":"motion","value":{value}}}"#)),
                ReadingValue::Motion(moved)
            );
        }
        for (value, code) in [
            ("2", ReasonCode::OutOfRange),
            ("0.5", ReasonCode::OutOfRange),
            ("-1", ReasonCode::OutOfRange),
            (r#""1""#, ReasonCode::MalformedPayload),
            ("[1]", ReasonCode::MalformedPayload),
        ] {
            assert_eq!(
                reason(&format!(r#"{{"type":"motion","value":{value}}}"#)),
                code,
                "{value}"
            );
        }
        assert_eq!(reason(r#"{"type":"motion"}"#), ReasonCode::MissingField);
        // State types have no unit; one sent is ignored.
        assert_eq!(
            value_of(r#"{"type":"motion","value":1,"unit":"whatever"}"#),
            ReadingValue::Motion(true)
        );
    }

    #[test]
    fn door_and_checkin_states() {
        assert_eq!(
            value_of(r#"{"type":"door","value":"open"}"#),
            ReadingValue::Door(DoorState::Open)
        );
        assert_eq!(
            value_of(r#"{"type":"door","value":"closed"}"#),
            ReadingValue::Door(DoorState::Closed)
        );
        assert_eq!(
            value_of(r#"{"type":"checkin","value":"ok"}"#),
            ReadingValue::Checkin(CheckinValue::Ok)
        );
        assert_eq!(
            value_of(r#"{"type":"checkin","value":"help"}"#),
            ReadingValue::Checkin(CheckinValue::Help)
        );
        let r = rejected(r#"{"type":"door","value":"ajar"}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        assert_eq!(r.detail, r#"door "ajar" must be "open" or "closed""#);
        for (reading, code) in [
            (r#"{"type":"checkin","value":"OK"}"#, ReasonCode::OutOfRange),
            (
                r#"{"type":"checkin","value":1}"#,
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"type":"door","value":true}"#,
                ReasonCode::MalformedPayload,
            ),
            (r#"{"type":"door"}"#, ReasonCode::MissingField),
            (r#"{"type":"checkin"}"#, ReasonCode::MissingField),
        ] {
            assert_eq!(reason(reading), code, "{reading}");
        }
    }

    #[test]
    fn fall_is_only_true() {
        assert_eq!(
            value_of(r#"{"type":"fall","value":true}"#),
            ReadingValue::Fall
        );
        for (reading, code) in [
            (r#"{"type":"fall","value":false}"#, ReasonCode::OutOfRange),
            (r#"{"type":"fall","value":1}"#, ReasonCode::MalformedPayload),
            (
                r#"{"type":"fall","value":"true"}"#,
                ReasonCode::MalformedPayload,
            ),
            (r#"{"type":"fall"}"#, ReasonCode::MissingField),
        ] {
            assert_eq!(reason(reading), code, "{reading}");
        }
    }

    #[test]
    fn non_finite_numbers_never_get_through() {
        // JSON cannot spell infinity; a conversion can overflow to it.
        let r = rejected(r#"{"type":"blood_glucose","value":1e308,"unit":"mmol/L"}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        let r = rejected(r#"{"type":"body_weight","value":-1.7e308,"unit":"lb"}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        let r = rejected(r#"{"type":"body_temperature","value":-1.7e308,"unit":"F"}"#);
        assert_eq!(r.reason, ReasonCode::OutOfRange);
        assert!(!r.detail.contains("inf"), "{r}");
    }
}

mod senml {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn a_pack_resolves_base_name_time_and_unit() {
        let items = pack(
            r#"[
              {"bn":"urn:dev:gw-0001:","bt":1795737000,"bu":"Cel","n":"body_temperature","v":36.6},
              {"n":"heart_rate","u":"beat/min","v":72,"t":60},
              {"n":"ambient_temperature","v":21.5,"t":120.5},
              {"n":"door","vs":"closed"},
              {"n":"motion","vb":true},
              {"n":"motion","v":0},
              {"n":"fall","vb":true},
              {"n":"checkin","vs":"help"},
              {"n":"satisfaction","u":"{score}","v":5},
              {"n":"steps","u":"count","v":100}
            ]"#,
        );
        let readings: Vec<Reading> = items.into_iter().map(Result::unwrap).collect();
        let base = at(1_795_737_000);
        let expected = [
            (
                ReadingType::BodyTemperature,
                ReadingValue::Number(36.6),
                base,
            ),
            (
                ReadingType::HeartRate,
                ReadingValue::Number(72.0),
                base + SignedDuration::from_secs(60),
            ),
            (
                ReadingType::AmbientTemperature,
                ReadingValue::Number(21.5),
                base + SignedDuration::from_millis(120_500),
            ),
            (
                ReadingType::Door,
                ReadingValue::Door(DoorState::Closed),
                base,
            ),
            (ReadingType::Motion, ReadingValue::Motion(true), base),
            (ReadingType::Motion, ReadingValue::Motion(false), base),
            (ReadingType::Fall, ReadingValue::Fall, base),
            (
                ReadingType::Checkin,
                ReadingValue::Checkin(CheckinValue::Help),
                base,
            ),
            (ReadingType::Satisfaction, ReadingValue::Score(5), base),
            (ReadingType::Steps, ReadingValue::Number(100.0), base),
        ];
        assert_eq!(readings.len(), expected.len());
        for (reading, (ty, value, ts)) in readings.iter().zip(expected) {
            assert_eq!(reading.reading_type, ty);
            assert_eq!(reading.value, value, "{ty}");
            assert_eq!(reading.ts, ts, "{ty}");
            assert_eq!(reading.sensor, None);
        }
    }

    #[test]
    fn small_times_are_relative_to_the_receive_time() {
        let items = pack(
            r#"[{"n":"heart_rate","v":72},
                {"n":"heart_rate","v":73,"t":-30},
                {"n":"heart_rate","v":74,"bt":-60,"t":0.25},
                {"n":"heart_rate","v":75,"bt":0,"t":-0.001}]"#,
        );
        let times: Vec<Timestamp> = items.into_iter().map(|i| i.unwrap().ts).collect();
        assert_eq!(
            times,
            vec![
                t0(),
                t0() - SignedDuration::from_secs(30),
                t0() - SignedDuration::from_millis(59_750),
                t0() - SignedDuration::from_millis(1),
            ]
        );
        // 2^28 and above is absolute (1978-07-04T21:24:16Z), thus too old.
        let items = pack(r#"[{"n":"heart_rate","v":72,"t":268435456}]"#);
        assert_eq!(reasons(&items), vec![Some(ReasonCode::TimestampTooOld)]);
        let items = pack(r#"[{"n":"heart_rate","v":72,"t":268435455}]"#);
        assert_eq!(reasons(&items), vec![Some(ReasonCode::TimestampInFuture)]);
    }

    #[test]
    fn absolute_times_may_be_fractional() {
        let items = pack(r#"[{"bt":1795737599.123,"n":"heart_rate","v":72}]"#);
        assert_eq!(
            items[0].as_ref().unwrap().ts,
            t0() - SignedDuration::from_millis(877)
        );
    }

    #[test]
    fn names_map_to_types_by_their_last_segment() {
        let items = pack(
            r#"[{"n":"heart_rate","v":72},
                {"n":"urn:dev:gw-0001:heart_rate","v":72},
                {"bn":"gw-0001/","n":"heart_rate","v":72},
                {"bn":"urn:dev:gw-0001:heart_rate","v":72},
                {"bn":"urn:dev:gw-0001:","n":"temp","v":21},
                {"bn":"urn:dev:gw-0001:","v":21},
                {"bn":"","n":"heart_rate:x","v":1}]"#,
        );
        assert_eq!(
            reasons(&items),
            vec![
                None,
                None,
                None,
                None,
                Some(ReasonCode::UnknownType),
                Some(ReasonCode::UnknownType),
                Some(ReasonCode::UnknownType),
            ]
        );
    }

    #[test]
    fn unit_comes_from_u_else_bu() {
        let items = pack(
            r#"[{"bu":"[degF]","n":"body_temperature","v":98.6},
                {"n":"body_temperature","u":"Cel","v":36.6},
                {"n":"heart_rate","u":"/min","v":72},
                {"bu":"mmol/L","n":"blood_glucose","v":5.5}]"#,
        );
        let values: Vec<f64> = items
            .into_iter()
            .map(|i| match i.unwrap().value {
                ReadingValue::Number(n) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!((values[0] - 37.0).abs() < 1e-9);
        assert_eq!(values[1], 36.6);
        assert_eq!(values[2], 72.0);
        assert!((values[3] - 99.088).abs() < 1e-9);

        // bu applies to a later heart_rate too, where it is wrong.
        let items =
            pack(r#"[{"bu":"Cel","n":"body_temperature","v":36.6},{"n":"heart_rate","v":72}]"#);
        assert_eq!(reasons(&items), vec![None, Some(ReasonCode::InvalidUnit)]);
        let items = pack(r#"[{"n":"body_temperature","v":36.6}]"#);
        let r = items[0].as_ref().unwrap_err();
        assert_eq!(r.reason, ReasonCode::MissingField);
        assert!(r.detail.contains("in u or bu"), "{r}");
    }

    #[test]
    fn base_value_is_added_to_v() {
        let items = pack(r#"[{"bv":70,"n":"heart_rate","v":2},{"n":"heart_rate","v":-1}]"#);
        let values: Vec<ReadingValue> = items.into_iter().map(|i| i.unwrap().value).collect();
        assert_eq!(
            values,
            vec![ReadingValue::Number(72.0), ReadingValue::Number(69.0)]
        );
    }

    #[test]
    fn base_only_records_are_not_readings() {
        let items = pack(
            r#"[{"bn":"urn:dev:gw-0001:","bt":1795737600,"bver":10},
                {"n":"heart_rate","v":72},
                {"bu":"Cel"},
                {"n":"body_temperature","v":36.6}]"#,
        );
        assert_eq!(reasons(&items), vec![None, None]);
        assert_eq!(items[1].as_ref().unwrap().ts, t0());
        // Neither base nor reading fields: a record without a name.
        assert_eq!(reasons(&pack("[{}]")), vec![Some(ReasonCode::MissingField)]);
        assert!(pack("[]").is_empty());
    }

    #[test]
    fn blood_pressure_cannot_be_one_record() {
        let items = pack(r#"[{"n":"urn:dev:gw-0001:blood_pressure","u":"mm[Hg]","v":128}]"#);
        let r = items[0].as_ref().unwrap_err();
        assert_eq!(r.reason, ReasonCode::MissingField);
        assert!(r.detail.contains("Ondol JSON"), "{r}");
    }

    #[test]
    fn record_errors_stay_in_their_record() {
        let items = pack(
            r#"[{"n":"heart_rate","v":72},
                "heart_rate",
                {"n":"heart_rate","v":"72"},
                {"n":"heart_rate","v":72,"vs":"72"},
                {"n":"door","vd":"b3Blbg"},
                {"n":"door","v":1},
                {"n":"fall","vb":false},
                {"n":"heart_rate","t":"now","v":72},
                {"n":"heart_rate"},
                {"n":"heart_rate","s":100},
                {"n":7,"v":72},
                {"v":72},
                {"n":"heart_rate","v":72,"u":5},
                {"n":"heart_rate","v":300},
                {"n":"spo2","v":97}]"#,
        );
        assert_eq!(
            reasons(&items),
            vec![
                None,
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::OutOfRange),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MissingField),
                Some(ReasonCode::MissingField),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MissingField),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::OutOfRange),
                None,
            ]
        );
    }

    #[test]
    fn an_invalid_base_refuses_the_records_that_inherit_it() {
        let items = pack(
            r#"[{"bn":"urn:dev:gw-0001:","n":"heart_rate","v":72},
                {"bn":5,"n":"heart_rate","v":72},
                {"n":"heart_rate","v":72},
                {"bn":"urn:dev:gw-0001:","n":"heart_rate","v":72},
                {"bt":"now"},
                {"n":"heart_rate","v":72},
                {"bt":0,"bv":"x"},
                {"n":"motion","vb":true},
                {"n":"heart_rate","v":72}]"#,
        );
        assert_eq!(
            reasons(&items),
            vec![
                None,
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                None,
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                Some(ReasonCode::MalformedPayload),
                // bv only matters to a numeric v.
                None,
                Some(ReasonCode::MalformedPayload),
            ]
        );
        assert!(
            items[2]
                .as_ref()
                .unwrap_err()
                .detail
                .contains("invalid bn of record 1")
        );
    }

    #[test]
    fn millisecond_times_get_a_hint() {
        let items = pack(r#"[{"bt":1795737600000,"n":"heart_rate","v":72}]"#);
        let r = items[0].as_ref().unwrap_err();
        assert_eq!(r.reason, ReasonCode::MalformedPayload);
        assert!(r.detail.contains("seconds, not milliseconds"), "{r}");
        let items = pack(r#"[{"bt":-1e300,"n":"heart_rate","v":72}]"#);
        assert_eq!(reasons(&items), vec![Some(ReasonCode::MalformedPayload)]);
    }

    #[test]
    fn time_window_applies_to_packs() {
        let items =
            pack(r#"[{"n":"heart_rate","v":72,"t":301},{"n":"heart_rate","v":72,"t":300}]"#);
        assert_eq!(
            reasons(&items),
            vec![Some(ReasonCode::TimestampInFuture), None]
        );
    }

    #[test]
    fn must_understand_fields_refuse_the_pack() {
        let refusal = refused(r#"[{"n":"heart_rate","v":72},{"n":"spo2","v":97,"crypt_":1}]"#);
        assert_eq!(refusal.rejection.reason, ReasonCode::MalformedPayload);
        assert_eq!(refusal.msg_id, None);
    }

    #[test]
    fn too_many_records_refuse_the_pack() {
        let few = DecodeLimits {
            max_readings_per_message: 1,
            ..limits()
        };
        let payload = r#"[{"n":"heart_rate","v":72},{"n":"spo2","v":97}]"#;
        let refusal = decode_readings(payload.as_bytes(), t0(), &few).unwrap_err();
        assert_eq!(refusal.rejection.reason, ReasonCode::PayloadTooLarge);
        assert_eq!(refusal.msg_id, None);
    }
}

mod status {
    use super::*;

    fn status(payload: &str) -> Result<DeviceStatus, Rejection> {
        decode_status(payload.as_bytes())
    }

    #[test]
    fn full_and_minimal_status() {
        assert_eq!(
            status(
                r#"{"state":"online","battery_pct":87,"rssi_dbm":-70,"firmware":"1.2.3","x":1}"#
            ),
            Ok(DeviceStatus {
                online: true,
                battery_pct: Some(87),
                rssi_dbm: Some(-70),
                firmware: Some("1.2.3".to_owned()),
            })
        );
        assert_eq!(
            status(r#"{"state":"offline","battery_pct":null}"#),
            Ok(DeviceStatus {
                online: false,
                battery_pct: None,
                rssi_dbm: None,
                firmware: None,
            })
        );
        let edges = status(r#"{"state":"online","battery_pct":100.0,"rssi_dbm":-150}"#).unwrap();
        assert_eq!((edges.battery_pct, edges.rssi_dbm), (Some(100), Some(-150)));
        let edges = status(r#"{"state":"online","battery_pct":0,"rssi_dbm":0}"#).unwrap();
        assert_eq!((edges.battery_pct, edges.rssi_dbm), (Some(0), Some(0)));
    }

    #[test]
    fn status_rejections() {
        let long = "f".repeat(65);
        for (payload, code) in [
            ("".to_owned(), ReasonCode::MalformedPayload),
            ("offline".to_owned(), ReasonCode::MalformedPayload),
            (r#"["online"]"#.to_owned(), ReasonCode::MalformedPayload),
            ("{}".to_owned(), ReasonCode::MissingField),
            (r#"{"state":null}"#.to_owned(), ReasonCode::MissingField),
            (r#"{"state":"sleeping"}"#.to_owned(), ReasonCode::OutOfRange),
            (r#"{"state":"ONLINE"}"#.to_owned(), ReasonCode::OutOfRange),
            (r#"{"state":true}"#.to_owned(), ReasonCode::MalformedPayload),
            (
                r#"{"state":"online","battery_pct":101}"#.to_owned(),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","battery_pct":-1}"#.to_owned(),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","battery_pct":87.5}"#.to_owned(),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","battery_pct":"87"}"#.to_owned(),
                ReasonCode::MalformedPayload,
            ),
            (
                r#"{"state":"online","rssi_dbm":-151}"#.to_owned(),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","rssi_dbm":1}"#.to_owned(),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","rssi_dbm":[-70]}"#.to_owned(),
                ReasonCode::MalformedPayload,
            ),
            (
                format!(r#"{{"state":"online","firmware":"{long}"}}"#),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","firmware":"1\n2"}"#.to_owned(),
                ReasonCode::OutOfRange,
            ),
            (
                r#"{"state":"online","firmware":123}"#.to_owned(),
                ReasonCode::MalformedPayload,
            ),
        ] {
            assert_eq!(
                status(&payload).map_err(|r| r.reason),
                Err(code),
                "{payload}"
            );
        }
        assert_eq!(
            decode_status(b"{\"state\":\"\xff\"}").map_err(|r| r.reason),
            Err(ReasonCode::MalformedPayload)
        );
    }
}

mod encode {
    use super::*;

    fn reading(reading_type: ReadingType, value: ReadingValue) -> Reading {
        Reading {
            reading_type,
            value,
            sensor: None,
            ts: t0(),
        }
    }

    #[test]
    fn encodes_the_documented_shape() {
        let mut bp = reading(
            ReadingType::BloodPressure,
            ReadingValue::BloodPressure {
                systolic: 128.0,
                diastolic: 82.5,
            },
        );
        bp.sensor = Some("cuff".to_owned());
        let bytes = encode_message(
            Some("m1"),
            &[
                bp,
                reading(ReadingType::Motion, ReadingValue::Motion(true)),
                reading(ReadingType::Fall, ReadingValue::Fall),
            ],
        );
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "msg_id": "m1",
                "readings": [
                    {"type": "blood_pressure", "systolic": 128, "diastolic": 82.5,
                     "unit": "mm[Hg]", "sensor": "cuff", "ts": 1_795_737_600_000_i64},
                    {"type": "motion", "value": 1, "ts": 1_795_737_600_000_i64},
                    {"type": "fall", "value": true, "ts": 1_795_737_600_000_i64},
                ]
            })
        );
        let bytes = encode_message(None, &[]);
        assert_eq!(bytes, br#"{"readings":[]}"#);
    }

    #[test]
    fn every_type_round_trips() {
        let readings = vec![
            reading(ReadingType::HeartRate, ReadingValue::Number(72.0)),
            reading(ReadingType::Spo2, ReadingValue::Number(97.5)),
            reading(ReadingType::BodyTemperature, ReadingValue::Number(36.65)),
            reading(
                ReadingType::BloodPressure,
                ReadingValue::BloodPressure {
                    systolic: 128.0,
                    diastolic: 82.0,
                },
            ),
            reading(ReadingType::BloodGlucose, ReadingValue::Number(99.088)),
            reading(ReadingType::BodyWeight, ReadingValue::Number(69.853_224_98)),
            reading(ReadingType::Steps, ReadingValue::Number(1234.0)),
            reading(ReadingType::Motion, ReadingValue::Motion(false)),
            reading(ReadingType::Door, ReadingValue::Door(DoorState::Closed)),
            reading(ReadingType::PowerUse, ReadingValue::Number(0.1)),
            reading(ReadingType::AmbientTemperature, ReadingValue::Number(-3.25)),
            reading(
                ReadingType::Checkin,
                ReadingValue::Checkin(CheckinValue::Help),
            ),
            reading(ReadingType::Fall, ReadingValue::Fall),
            reading(ReadingType::Satisfaction, ReadingValue::Score(3)),
        ];
        let types: Vec<ReadingType> = readings.iter().map(|r| r.reading_type).collect();
        assert_eq!(types, ReadingType::ALL);
        let bytes = encode_message(Some("all"), &readings);
        let msg = decode_readings(&bytes, t0(), &limits()).unwrap();
        assert_eq!(msg.msg_id.as_deref(), Some("all"));
        let back: Vec<Reading> = msg.items.into_iter().map(Result::unwrap).collect();
        assert_eq!(back, readings);
    }

    #[test]
    fn sub_millisecond_digits_are_truncated() {
        let mut r = reading(ReadingType::HeartRate, ReadingValue::Number(72.0));
        r.ts = t0() + SignedDuration::from_micros(1_500);
        let msg = decode_readings(&encode_message(None, &[r]), t0(), &limits()).unwrap();
        assert_eq!(
            msg.items[0].as_ref().unwrap().ts,
            t0() + SignedDuration::from_millis(1)
        );
    }

    #[test]
    fn non_finite_values_encode_as_null_and_are_refused() {
        let r = reading(ReadingType::HeartRate, ReadingValue::Number(f64::NAN));
        let msg = decode_readings(&encode_message(None, &[r]), t0(), &limits()).unwrap();
        assert_eq!(reasons(&msg.items), vec![Some(ReasonCode::MissingField)]);
    }
}

/// Every reason code is either produced by the decoder (with an input that
/// shows it) or produced elsewhere, by name. A new code does not compile
/// here until someone decides which.
mod reachability {
    use super::*;

    /// Codes that ingest decides from the roster and its counters; the
    /// decoder never sees a device.
    const PRODUCED_BY_INGEST: [ReasonCode; 3] = [
        ReasonCode::UnknownDevice,
        ReasonCode::DeviceInactive,
        ReasonCode::RateLimited,
    ];

    fn example(code: ReasonCode) -> Option<Vec<u8>> {
        let reading = |r: &str| Some(format!(r#"{{"readings":[{r}]}}"#).into_bytes());
        match code {
            ReasonCode::MalformedPayload => Some(b"{not json".to_vec()),
            ReasonCode::PayloadTooLarge => Some(vec![b' '; 64 * 1024 + 1]),
            ReasonCode::UnknownType => reading(r#"{"type":"teleport","value":1}"#),
            ReasonCode::MissingField => reading(r#"{"type":"heart_rate"}"#),
            ReasonCode::InvalidUnit => reading(r#"{"type":"heart_rate","value":72,"unit":"Hz"}"#),
            ReasonCode::OutOfRange => reading(r#"{"type":"heart_rate","value":400}"#),
            ReasonCode::Inconsistent => {
                reading(r#"{"type":"blood_pressure","systolic":80,"diastolic":90}"#)
            }
            ReasonCode::TimestampInFuture => {
                reading(r#"{"type":"checkin","value":"ok","ts":"2027-01-01T00:00:00Z"}"#)
            }
            ReasonCode::TimestampTooOld => {
                reading(r#"{"type":"checkin","value":"ok","ts":"2025-01-01T00:00:00Z"}"#)
            }
            ReasonCode::UnknownDevice | ReasonCode::DeviceInactive | ReasonCode::RateLimited => {
                None
            }
        }
    }

    fn produced(payload: &[u8]) -> Vec<ReasonCode> {
        match decode_readings(payload, t0(), &limits()) {
            Err(refusal) => vec![refusal.rejection.reason],
            Ok(msg) => msg
                .items
                .iter()
                .filter_map(|i| i.as_ref().err().map(|e| e.reason))
                .collect(),
        }
    }

    #[test]
    fn every_decoder_code_is_reachable_and_the_rest_are_named() {
        for code in ReasonCode::ALL {
            match example(code) {
                Some(payload) => assert_eq!(produced(&payload), vec![code], "{code}"),
                None => assert!(PRODUCED_BY_INGEST.contains(&code), "{code}"),
            }
        }
    }
}

/// docs/DEVICES.md is what device makers build against: it must name every
/// type, unit spelling and reason code the decoder knows.
mod documentation {
    use super::*;
    use crate::wire::validate::units;

    const DEVICES_MD: &str = include_str!("../../../../docs/DEVICES.md");

    #[test]
    fn the_device_guide_covers_every_type_unit_and_code() {
        for ty in ReadingType::ALL {
            assert!(DEVICES_MD.contains(&format!("`{ty}`")), "{ty}");
            for unit in units(ty) {
                assert!(
                    DEVICES_MD.contains(&format!("`{}`", unit.spelling)),
                    "{ty} {}",
                    unit.spelling
                );
            }
        }
        for code in ReasonCode::ALL {
            assert!(DEVICES_MD.contains(&format!("`{code}`")), "{code}");
        }
    }
}

mod props {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Pieces of reading messages and packs, glued at random: mostly invalid
    /// JSON, sometimes valid, always close to what the decoder looks for.
    const FRAGMENTS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\"",
        "null",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "72",
        "1e400",
        "-0",
        "0.5",
        "1795737600000",
        "1795737600",
        "268435456",
        "\"msg_id\"",
        "\"m1\"",
        "\"readings\"",
        "\"type\"",
        "\"value\"",
        "\"unit\"",
        "\"ts\"",
        "\"sensor\"",
        "\"systolic\"",
        "\"diastolic\"",
        "\"heart_rate\"",
        "\"blood_pressure\"",
        "\"motion\"",
        "\"door\"",
        "\"open\"",
        "\"checkin\"",
        "\"ok\"",
        "\"fall\"",
        "\"satisfaction\"",
        "\"body_temperature\"",
        "\"[degF]\"",
        "\"mmol/L\"",
        "\"lb\"",
        "\"Cel\"",
        "\"2026-11-27T09:00:00+09:00\"",
        "\"bn\"",
        "\"bt\"",
        "\"bu\"",
        "\"bv\"",
        "\"n\"",
        "\"v\"",
        "\"vs\"",
        "\"vb\"",
        "\"vd\"",
        "\"t\"",
        "\"u\"",
        "\"urn:dev:gw-0001:\"",
        "\"x_\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\u{ff}",
        "é",
    ];

    const KEYS: &[&str] = &[
        "msg_id",
        "readings",
        "ts",
        "type",
        "value",
        "unit",
        "sensor",
        "systolic",
        "diastolic",
        "bn",
        "bt",
        "bu",
        "bv",
        "bs",
        "bver",
        "n",
        "u",
        "v",
        "vs",
        "vb",
        "vd",
        "s",
        "t",
        "ut",
        "state",
        "battery_pct",
        "rssi_dbm",
        "firmware",
        "x_",
        "other",
    ];

    const WORDS: &[&str] = &[
        "heart_rate",
        "spo2",
        "body_temperature",
        "blood_pressure",
        "blood_glucose",
        "body_weight",
        "steps",
        "motion",
        "door",
        "power_use",
        "ambient_temperature",
        "checkin",
        "fall",
        "satisfaction",
        "teleport",
        "/min",
        "bpm",
        "%",
        "Cel",
        "C",
        "[degF]",
        "F",
        "mm[Hg]",
        "mg/dL",
        "mmol/L",
        "kg",
        "lb",
        "{steps}",
        "W",
        "{score}",
        "Hz",
        "open",
        "closed",
        "ajar",
        "ok",
        "help",
        "online",
        "offline",
        "m1",
        "pir-kitchen",
        "urn:dev:gw-0001:",
        "urn:dev:gw-0001:heart_rate",
        "gw-0001/motion",
        "2026-11-27T09:00:00+09:00",
        "2026-11-27T00:00:00Z",
        "2026-11-27T09:00:00",
        "",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            (-50.0..700.0f64).prop_map(Value::from),
            (1_790_000_000_000i64..1_800_000_000_000).prop_map(Value::from),
            (-1e9..1.8e9f64).prop_map(Value::from),
            prop::sample::select(WORDS).prop_map(Value::from),
            ".{0,70}".prop_map(Value::from),
        ]
    }

    fn object_of(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
        prop::collection::btree_map(prop::sample::select(KEYS), value, 0..8)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }

    fn any_json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                object_of(inner),
            ]
        })
    }

    const TYPE_NAMES: &[&str] = &[
        "heart_rate",
        "spo2",
        "body_temperature",
        "blood_pressure",
        "blood_glucose",
        "body_weight",
        "steps",
        "motion",
        "door",
        "power_use",
        "ambient_temperature",
        "checkin",
        "fall",
        "satisfaction",
        "teleport",
    ];

    const UNITS: &[&str] = &[
        "/min", "bpm", "beat/min", "%", "Cel", "C", "[degF]", "F", "mm[Hg]", "mmHg", "mg/dL",
        "mmol/L", "kg", "lb", "{steps}", "count", "W", "{score}", "Hz", "",
    ];

    /// Numbers around every valid range, whole and fractional.
    fn plausible_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            (-50.0..700.0f64).prop_map(Value::from),
            (-5i64..300).prop_map(Value::from),
            (0i64..2).prop_map(Value::from),
        ]
    }

    fn value_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => plausible_number(),
            1 => any::<bool>().prop_map(Value::from),
            2 => prop::sample::select(WORDS).prop_map(Value::from),
            1 => leaf(),
        ]
    }

    /// Times around the receive time, in every accepted spelling.
    fn time_leaf() -> impl Strategy<Value = Value> {
        let t0_ms = t0().as_millisecond();
        let day_ms = 86_400_000;
        prop_oneof![
            3 => (t0_ms - 40 * day_ms..t0_ms + day_ms).prop_map(Value::from),
            1 => (t0_ms - 40 * day_ms..t0_ms + day_ms).prop_map(|ms| {
                Value::from(Timestamp::from_millisecond(ms).unwrap().to_string())
            }),
            1 => leaf(),
        ]
    }

    fn insert(m: &mut serde_json::Map<String, Value>, key: &str, v: Option<Value>) {
        if let Some(v) = v {
            m.insert(key.to_owned(), v);
        }
    }

    fn some<T: Strategy>(s: T) -> impl Strategy<Value = Option<T::Value>> {
        prop::option::weighted(0.7, s)
    }

    fn rare<T: Strategy>(s: T) -> impl Strategy<Value = Option<T::Value>> {
        prop::option::weighted(0.15, s)
    }

    fn ondol_reading() -> impl Strategy<Value = Value> {
        (
            rare(leaf()),
            some(prop::sample::select(TYPE_NAMES)),
            some(value_leaf()),
            some(prop::sample::select(UNITS)),
            (some(plausible_number()), some(plausible_number())),
            rare(time_leaf()),
            rare(prop::sample::select(WORDS)),
        )
            .prop_map(|(junk, ty, value, unit, (sys, dia), ts, sensor)| {
                let mut m = serde_json::Map::new();
                insert(&mut m, "other", junk);
                insert(&mut m, "type", ty.map(Value::from));
                insert(&mut m, "value", value);
                insert(&mut m, "unit", unit.map(Value::from));
                insert(&mut m, "systolic", sys);
                insert(&mut m, "diastolic", dia);
                insert(&mut m, "ts", ts);
                insert(&mut m, "sensor", sensor.map(Value::from));
                Value::Object(m)
            })
    }

    fn senml_record() -> impl Strategy<Value = Value> {
        let value = prop_oneof![
            4 => plausible_number().prop_map(|v| Some(("v", v))),
            2 => prop::sample::select(WORDS).prop_map(|w| Some(("vs", Value::from(w)))),
            2 => any::<bool>().prop_map(|b| Some(("vb", Value::from(b)))),
            1 => leaf().prop_map(|v| Some(("vd", v))),
            1 => Just(None),
        ];
        let base_time = t0().as_second() as f64;
        (
            rare(prop::sample::select(
                &["urn:dev:gw-0001:", "gw-0001/", "", "x_"][..],
            )),
            some(prop::sample::select(TYPE_NAMES)),
            value,
            rare(prop::sample::select(UNITS)),
            rare(prop::sample::select(UNITS)),
            rare(prop_oneof![
                (base_time - 4e6..base_time + 1e3).prop_map(Value::from),
                leaf()
            ]),
            rare(prop_oneof![(-1e3..1e3f64).prop_map(Value::from), leaf()]),
            rare(plausible_number()),
        )
            .prop_map(|(bn, n, value, u, bu, bt, t, bv)| {
                let mut m = serde_json::Map::new();
                insert(&mut m, "bn", bn.map(Value::from));
                insert(&mut m, "n", n.map(Value::from));
                if let Some((field, v)) = value {
                    m.insert(field.to_owned(), v);
                }
                insert(&mut m, "u", u.map(Value::from));
                insert(&mut m, "bu", bu.map(Value::from));
                insert(&mut m, "bt", bt);
                insert(&mut m, "t", t);
                insert(&mut m, "bv", bv);
                Value::Object(m)
            })
    }

    /// Messages and packs whose shape is right often enough to reach the
    /// per-reading and per-record rules.
    fn message_like() -> impl Strategy<Value = Value> {
        let reading = prop_oneof![6 => ondol_reading(), 1 => object_of(leaf()), 1 => leaf()];
        let record = prop_oneof![6 => senml_record(), 1 => object_of(leaf()), 1 => leaf()];
        prop_oneof![
            4 => (
                rare(leaf()),
                rare(time_leaf()),
                prop::collection::vec(reading, 0..8)
            )
                .prop_map(|(msg_id, ts, readings)| {
                    let mut m = serde_json::Map::new();
                    insert(&mut m, "msg_id", msg_id);
                    insert(&mut m, "ts", ts);
                    m.insert("readings".into(), Value::Array(readings));
                    Value::Object(m)
                }),
            3 => prop::collection::vec(record, 0..8).prop_map(Value::Array),
            1 => any_json(),
        ]
    }

    fn check_message(result: &Result<DecodedMessage, MessageRejection>) {
        let check = |r: &Rejection| {
            assert!(r.detail.chars().count() <= 200, "{}", r.detail);
            assert!(!r.detail.chars().any(char::is_control), "{:?}", r.detail);
        };
        match result {
            Ok(msg) => {
                assert!(msg.items.len() <= limits().max_readings_per_message);
                for item in &msg.items {
                    match item {
                        Ok(reading) => check_reading(reading),
                        Err(rejection) => check(rejection),
                    }
                }
            }
            Err(refusal) => check(&refusal.rejection),
        }
        let msg_id = match result {
            Ok(msg) => msg.msg_id.as_deref(),
            Err(refusal) => refusal.msg_id.as_deref(),
        };
        if let Some(id) = msg_id {
            assert!(ondol_json::valid_msg_id(id), "{id:?}");
        }
    }

    /// What every accepted reading guarantees to the rest of the system.
    fn check_reading(reading: &Reading) {
        let window = limits();
        assert!(reading.ts <= t0() + window.max_future_skew);
        assert!(reading.ts >= t0() - window.max_age);
        if let Some(sensor) = &reading.sensor {
            assert!(validate::valid_sensor(sensor));
        }
        match reading.value {
            ReadingValue::Number(n) => {
                let range = validate::numeric_range(reading.reading_type).unwrap();
                assert!(n.is_finite() && n >= range.lo && n <= range.hi);
            }
            ReadingValue::BloodPressure {
                systolic,
                diastolic,
            } => {
                assert_eq!(reading.reading_type, ReadingType::BloodPressure);
                assert!(systolic.is_finite() && diastolic.is_finite() && systolic > diastolic);
            }
            ReadingValue::Score(s) => assert!((1..=5).contains(&s)),
            _ => {}
        }
    }

    fn in_range(lo: f64, hi: f64) -> BoxedStrategy<f64> {
        prop_oneof![Just(lo), Just(hi), lo..=hi].boxed()
    }

    fn value_for(ty: ReadingType) -> BoxedStrategy<ReadingValue> {
        match ty {
            ReadingType::BloodPressure => in_range(30.0, 160.0)
                .prop_flat_map(|dia| (in_range(f64::max(50.0, dia + 1e-6), 260.0), Just(dia)))
                .prop_map(|(systolic, diastolic)| ReadingValue::BloodPressure {
                    systolic,
                    diastolic,
                })
                .boxed(),
            ReadingType::Steps => (0u32..=100_000)
                .prop_map(|n| ReadingValue::Number(f64::from(n)))
                .boxed(),
            ReadingType::Satisfaction => (1u8..=5).prop_map(ReadingValue::Score).boxed(),
            ReadingType::Motion => any::<bool>().prop_map(ReadingValue::Motion).boxed(),
            ReadingType::Door => prop_oneof![
                Just(ReadingValue::Door(DoorState::Open)),
                Just(ReadingValue::Door(DoorState::Closed)),
            ]
            .boxed(),
            ReadingType::Checkin => prop_oneof![
                Just(ReadingValue::Checkin(CheckinValue::Ok)),
                Just(ReadingValue::Checkin(CheckinValue::Help)),
            ]
            .boxed(),
            ReadingType::Fall => Just(ReadingValue::Fall).boxed(),
            ReadingType::HeartRate
            | ReadingType::Spo2
            | ReadingType::BodyTemperature
            | ReadingType::BloodGlucose
            | ReadingType::BodyWeight
            | ReadingType::PowerUse
            | ReadingType::AmbientTemperature => {
                let range = validate::numeric_range(ty).unwrap();
                in_range(range.lo, range.hi)
                    .prop_map(ReadingValue::Number)
                    .boxed()
            }
        }
    }

    fn valid_reading() -> impl Strategy<Value = Reading> {
        let max_age_ms = limits().max_age.as_millis() as i64;
        let skew_ms = limits().max_future_skew.as_millis() as i64;
        prop::sample::select(ReadingType::ALL.to_vec())
            .prop_flat_map(move |ty| {
                (
                    Just(ty),
                    value_for(ty),
                    prop::option::of("[A-Za-z0-9_.:-]{1,64}"),
                    -max_age_ms..=skew_ms,
                )
            })
            .prop_map(|(reading_type, value, sensor, offset_ms)| Reading {
                reading_type,
                value,
                sensor,
                ts: t0() + SignedDuration::from_millis(offset_ms),
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check_message(&decode_readings(&bytes, t0(), &limits()));
            let _ = decode_status(&bytes);
        }

        #[test]
        fn json_fragments_never_panic(
            parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..48)
        ) {
            let payload = parts.concat();
            check_message(&decode_readings(payload.as_bytes(), t0(), &limits()));
            let _ = decode_status(payload.as_bytes());
        }

        #[test]
        fn structured_json_never_panics(value in message_like()) {
            let payload = serde_json::to_vec(&value).unwrap();
            let result = decode_readings(&payload, t0(), &limits());
            check_message(&result);
            // An Ondol message that decodes has one item per reading.
            if let (Ok(msg), Some(Value::Array(readings))) = (&result, value.get("readings")) {
                prop_assert_eq!(msg.items.len(), readings.len());
            }
        }

        #[test]
        fn status_never_panics(value in any_json(), state in prop::option::of(leaf())) {
            let mut value = value;
            if let (Some(obj), Some(state)) = (value.as_object_mut(), state) {
                obj.insert("state".into(), state);
            }
            let payload = serde_json::to_vec(&value).unwrap();
            if let Ok(status) = decode_status(&payload) {
                prop_assert!(status.battery_pct.is_none_or(|b| b <= 100));
                prop_assert!(status.rssi_dbm.is_none_or(|r| (-150..=0).contains(&r)));
            }
        }

        #[test]
        fn valid_readings_survive_encode_and_decode(
            msg_id in prop::option::of("\\PC{1,64}"),
            readings in prop::collection::vec(valid_reading(), 0..20),
        ) {
            let payload = encode_message(msg_id.as_deref(), &readings);
            let msg = decode_readings(&payload, t0(), &limits());
            let msg = msg.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(msg.msg_id, msg_id);
            let expected: Vec<Result<Reading, Rejection>> =
                readings.into_iter().map(Ok).collect();
            prop_assert_eq!(msg.items, expected);
        }

        #[test]
        fn a_bad_reading_leaves_its_neighbours_alone(
            readings in prop::collection::vec(valid_reading(), 1..10),
            garbage in any_json(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut message: Value =
                serde_json::from_slice(&encode_message(Some("m1"), &readings)).unwrap();
            let position = at.index(readings.len() + 1);
            message["readings"].as_array_mut().unwrap().insert(position, garbage);
            let payload = serde_json::to_vec(&message).unwrap();
            let msg = decode_readings(&payload, t0(), &limits())
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(msg.items.len(), readings.len() + 1);
            let mut others = msg.items;
            let _garbage_item = others.remove(position);
            let expected: Vec<Result<Reading, Rejection>> =
                readings.into_iter().map(Ok).collect();
            prop_assert_eq!(others, expected);
        }
    }
}
