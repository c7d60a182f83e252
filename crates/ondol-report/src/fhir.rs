//! FHIR R4 export of a resident's vital signs for clinicians (DESIGN §2):
//! a `Bundle` of type `collection` holding one `Observation` per stored
//! vital-sign reading, coded with the LOINC codes and UCUM units of the
//! reading-type table.
//!
//! - Every Observation has `status` `final`, the category `vital-signs`
//!   (`http://terminology.hl7.org/CodeSystem/observation-category`), the
//!   LOINC code, the subject reference the caller gives, `effectiveDateTime`
//!   (the reading's own time, UTC) and a `valueQuantity` in the canonical
//!   unit with `system` `http://unitsofmeasure.org` and the UCUM `code`.
//! - Blood pressure is the panel 85354-9 with the components 8480-6
//!   (systolic) and 8462-4 (diastolic), each with its own `valueQuantity`,
//!   and no value of its own.
//! - Readings that are not vital signs (activity, environment, check-ins,
//!   emergencies, feedback) are left out.
//! - Each entry's `fullUrl` is a `urn:uuid:` derived from the reading's
//!   dedupe key (device, type, sensor, time), so exporting the same reading
//!   twice gives the same id and a receiving system can drop repeats; the
//!   device is named by identifier.
//!
//! The caller (the HTTP API) chooses the subject reference, the readings
//! (one resident, a time range) and audits the read; this module only
//! renders.

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use ondol_model::reading::{Category, ReadingType, ReadingValue};
use ondol_store::StoredReading;

pub const LOINC_SYSTEM: &str = "http://loinc.org";
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";
pub const OBSERVATION_CATEGORY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";
/// The identifier system of Ondol device ids in exported Observations.
pub const DEVICE_SYSTEM: &str = "urn:ondol:device";

/// LOINC codes of the blood-pressure panel's components.
pub const SYSTOLIC_LOINC: &str = "8480-6";
pub const DIASTOLIC_LOINC: &str = "8462-4";

/// How one vital-sign type is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitalCoding {
    pub loinc: &'static str,
    pub display: &'static str,
    /// The UCUM code of the canonical unit.
    pub ucum: &'static str,
    /// The unit as people write it.
    pub unit: &'static str,
}

/// The coding of `reading_type`, or `None` if it is not a vital sign. The
/// LOINC code and UCUM unit come from the model's reading-type table
/// (DESIGN §2); only the human-readable texts are added here.
pub fn vital_coding(reading_type: ReadingType) -> Option<VitalCoding> {
    if reading_type.category() != Category::Vital {
        return None;
    }
    let loinc = reading_type.loinc()?;
    let ucum = reading_type.canonical_unit()?;
    let (display, unit) = match reading_type {
        ReadingType::HeartRate => ("Heart rate", "beats/minute"),
        ReadingType::Spo2 => ("Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
        ReadingType::BodyTemperature => ("Body temperature", "°C"),
        ReadingType::BloodPressure => ("Blood pressure panel with all children optional", "mmHg"),
        ReadingType::BloodGlucose => ("Glucose [Mass/volume] in Blood", "mg/dL"),
        ReadingType::BodyWeight => ("Body weight", "kg"),
        _ => return None,
    };
    Some(VitalCoding {
        loinc,
        display,
        ucum,
        unit,
    })
}

/// A Bundle (type `collection`) of the vital-sign Observations among
/// `readings`, about `subject` (a FHIR reference such as `Patient/r-0001`),
/// in time order, stamped `generated_at`.
pub fn bundle(subject: &str, readings: &[StoredReading], generated_at: Timestamp) -> Value {
    let mut vitals: Vec<&StoredReading> = readings
        .iter()
        .filter(|r| vital_coding(r.reading.reading_type).is_some())
        .collect();
    vitals.sort_by(|a, b| {
        (a.reading.ts, a.reading.reading_type, a.device_id.as_str()).cmp(&(
            b.reading.ts,
            b.reading.reading_type,
            b.device_id.as_str(),
        ))
    });
    let entries: Vec<Value> = vitals
        .into_iter()
        .filter_map(|r| {
            let resource = observation(subject, r)?;
            Some(json!({"fullUrl": reading_urn(r), "resource": resource}))
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": generated_at.to_string(),
        "entry": entries,
    })
}

/// The Observation of one stored reading, or `None` if it is not a vital
/// sign (or its value does not fit its type).
pub fn observation(subject: &str, stored: &StoredReading) -> Option<Value> {
    let reading = &stored.reading;
    let coding = vital_coding(reading.reading_type)?;
    let mut obs = json!({
        "resourceType": "Observation",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": reading_urn(stored)}],
        "status": "final",
        "category": [{
            "coding": [{
                "system": OBSERVATION_CATEGORY_SYSTEM,
                "code": "vital-signs",
                "display": "Vital Signs",
            }],
        }],
        "code": {
            "coding": [{"system": LOINC_SYSTEM, "code": coding.loinc, "display": coding.display}],
            "text": coding.display,
        },
        "subject": {"reference": subject},
        "effectiveDateTime": reading.ts.to_string(),
        "device": {"identifier": {"system": DEVICE_SYSTEM, "value": stored.device_id.as_str()}},
    });
    match (reading.reading_type, reading.value) {
        (
            ReadingType::BloodPressure,
            ReadingValue::BloodPressure {
                systolic,
                diastolic,
            },
        ) => {
            obs["component"] = json!([
                component(SYSTOLIC_LOINC, "Systolic blood pressure", systolic, &coding),
                component(
                    DIASTOLIC_LOINC,
                    "Diastolic blood pressure",
                    diastolic,
                    &coding
                ),
            ]);
        }
        (ReadingType::BloodPressure, _) => return None,
        (_, ReadingValue::Number(value)) => {
            obs["valueQuantity"] = quantity(value, &coding);
        }
        _ => return None,
    }
    Some(obs)
}

fn quantity(value: f64, coding: &VitalCoding) -> Value {
    json!({"value": value, "unit": coding.unit, "system": UCUM_SYSTEM, "code": coding.ucum})
}

fn component(loinc: &str, display: &str, value: f64, coding: &VitalCoding) -> Value {
    json!({
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": loinc, "display": display}], "text": display},
        "valueQuantity": quantity(value, coding),
    })
}

/// A name-based UUID (RFC 9562 version 8, from SHA-256) of the reading's
/// dedupe key, as a URN.
pub fn reading_urn(stored: &StoredReading) -> String {
    let reading = &stored.reading;
    let mut hash = Sha256::new();
    for part in [
        "ondol-reading",
        stored.device_id.as_str(),
        reading.reading_type.as_str(),
        reading.sensor.as_deref().unwrap_or(""),
        &reading.ts.as_millisecond().to_string(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ondol_model::reading::{CheckinValue, DoorState};
    use ondol_model::{DeviceId, Reading, ResidentId};

    use super::*;

    const SUBJECT: &str = "Patient/r-0001";

    fn stored(reading_type: ReadingType, value: ReadingValue, ts_ms: i64) -> StoredReading {
        let ts = Timestamp::from_millisecond(ts_ms).unwrap();
        StoredReading {
            device_id: DeviceId::new("wb-0001").unwrap(),
            resident_id: ResidentId::new("r-0001").unwrap(),
            reading: Reading {
                reading_type,
                value,
                sensor: None,
                ts,
            },
            received_at: ts,
        }
    }

    /// DESIGN §2, written out again here so a change of the model's table
    /// shows up as a failing test: type, LOINC, UCUM unit, a value.
    const DESIGN_VITALS: [(ReadingType, &str, &str, f64); 5] = [
        (ReadingType::HeartRate, "8867-4", "/min", 72.0),
        (ReadingType::Spo2, "59408-5", "%", 97.0),
        (ReadingType::BodyTemperature, "8310-5", "Cel", 36.6),
        (ReadingType::BloodGlucose, "2339-0", "mg/dL", 104.0),
        (ReadingType::BodyWeight, "29463-7", "kg", 61.4),
    ];

    fn check_common(obs: &Value, ts: &str) {
        assert_eq!(obs["resourceType"], "Observation");
        assert_eq!(obs["status"], "final");
        let category = &obs["category"][0]["coding"][0];
        assert_eq!(
            category["system"],
            "http://terminology.hl7.org/CodeSystem/observation-category"
        );
        assert_eq!(category["code"], "vital-signs");
        assert_eq!(obs["subject"]["reference"], SUBJECT);
        assert_eq!(obs["effectiveDateTime"], ts);
        assert_eq!(obs["code"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(obs["device"]["identifier"]["value"], "wb-0001");
    }

    #[test]
    fn every_vital_sign_is_coded_as_design_section_2_says() {
        for (i, (reading_type, loinc, ucum, value)) in DESIGN_VITALS.into_iter().enumerate() {
            // 2026-11-27T00:00:00Z plus i minutes.
            let ts_ms = 1_795_737_600_000 + i as i64 * 60_000;
            let reading = stored(reading_type, ReadingValue::Number(value), ts_ms);
            let obs = observation(SUBJECT, &reading).unwrap();
            check_common(&obs, &format!("2026-11-27T00:0{i}:00Z"));
            assert_eq!(obs["code"]["coding"][0]["code"], loinc, "{reading_type}");
            let quantity = &obs["valueQuantity"];
            assert_eq!(quantity["value"], value, "{reading_type}");
            assert_eq!(quantity["system"], "http://unitsofmeasure.org");
            assert_eq!(quantity["code"], ucum, "{reading_type}");
            assert!(quantity["unit"].as_str().is_some_and(|u| !u.is_empty()));
            assert!(obs.get("component").is_none());
        }
    }

    #[test]
    fn blood_pressure_is_a_panel_with_systolic_and_diastolic_components() {
        let reading = stored(
            ReadingType::BloodPressure,
            ReadingValue::BloodPressure {
                systolic: 128.0,
                diastolic: 82.0,
            },
            1_795_737_600_000,
        );
        let obs = observation(SUBJECT, &reading).unwrap();
        check_common(&obs, "2026-11-27T00:00:00Z");
        assert_eq!(obs["code"]["coding"][0]["code"], "85354-9");
        assert!(obs.get("valueQuantity").is_none());
        let components = obs["component"].as_array().unwrap();
        assert_eq!(components.len(), 2);
        for (component, (loinc, value)) in
            components.iter().zip([("8480-6", 128.0), ("8462-4", 82.0)])
        {
            assert_eq!(component["code"]["coding"][0]["system"], "http://loinc.org");
            assert_eq!(component["code"]["coding"][0]["code"], loinc);
            let quantity = &component["valueQuantity"];
            assert_eq!(quantity["value"], value);
            assert_eq!(quantity["system"], "http://unitsofmeasure.org");
            assert_eq!(quantity["code"], "mm[Hg]");
        }
    }

    #[test]
    fn the_bundle_holds_only_vital_signs_in_time_order() {
        let t = 1_795_737_600_000;
        let readings = vec![
            stored(
                ReadingType::HeartRate,
                ReadingValue::Number(80.0),
                t + 120_000,
            ),
            stored(ReadingType::Motion, ReadingValue::Motion(true), t),
            stored(ReadingType::Door, ReadingValue::Door(DoorState::Open), t),
            stored(
                ReadingType::Checkin,
                ReadingValue::Checkin(CheckinValue::Ok),
                t,
            ),
            stored(ReadingType::Steps, ReadingValue::Number(1200.0), t),
            stored(
                ReadingType::AmbientTemperature,
                ReadingValue::Number(21.0),
                t,
            ),
            stored(ReadingType::PowerUse, ReadingValue::Number(40.0), t),
            stored(ReadingType::Fall, ReadingValue::Fall, t),
            stored(ReadingType::Satisfaction, ReadingValue::Score(4), t),
            stored(ReadingType::Spo2, ReadingValue::Number(96.0), t + 60_000),
        ];
        let generated = Timestamp::from_millisecond(t + 3_600_000).unwrap();
        let bundle = bundle(SUBJECT, &readings, generated);
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "collection");
        assert_eq!(bundle["timestamp"], "2026-11-27T01:00:00Z");
        let entries = bundle["entry"].as_array().unwrap();
        let codes: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["59408-5", "8867-4"]);
        for entry in entries {
            let url = entry["fullUrl"].as_str().unwrap();
            assert!(url.starts_with("urn:uuid:"), "{url}");
            assert_eq!(url.len(), "urn:uuid:".len() + 36);
            assert_eq!(entry["resource"]["identifier"][0]["value"], url);
        }
        assert_ne!(entries[0]["fullUrl"], entries[1]["fullUrl"]);
        // The same reading exported again keeps its id.
        let again = bundle_of_one(&readings[0]);
        assert_eq!(again, entries[1]["fullUrl"]);
    }

    fn bundle_of_one(reading: &StoredReading) -> Value {
        let b = bundle(
            SUBJECT,
            std::slice::from_ref(reading),
            Timestamp::UNIX_EPOCH,
        );
        b["entry"][0]["fullUrl"].clone()
    }

    #[test]
    fn exactly_the_vital_signs_of_design_section_2_are_exported() {
        for reading_type in ReadingType::ALL {
            let listed = reading_type == ReadingType::BloodPressure
                || DESIGN_VITALS.iter().any(|v| v.0 == reading_type);
            assert_eq!(
                vital_coding(reading_type).is_some(),
                listed,
                "{reading_type}"
            );
        }
    }

    #[test]
    fn an_empty_export_is_an_empty_collection() {
        let b = bundle(SUBJECT, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(b["entry"], json!([]));
        assert_eq!(b["type"], "collection");
    }

    #[test]
    fn uuids_have_version_8_and_the_rfc_variant() {
        let r = stored(ReadingType::HeartRate, ReadingValue::Number(70.0), 0);
        let urn = reading_urn(&r);
        let uuid = urn.trim_start_matches("urn:uuid:");
        assert_eq!(&uuid[14..15], "8");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
    }
}
