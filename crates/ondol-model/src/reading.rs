//! Reading types, their canonical units, valid ranges and what they count as
//! (DESIGN §2). Values are always held in the canonical unit; conversion from
//! aliases happens once, while decoding.

use std::fmt;

use jiff::Timestamp;

/// What a reading type counts as, for alerting and the evaluator rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Vital,
    Activity,
    Environment,
    Checkin,
    Emergency,
    Feedback,
}

/// Every reading type of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadingType {
    HeartRate,
    Spo2,
    BodyTemperature,
    BloodPressure,
    BloodGlucose,
    BodyWeight,
    Steps,
    Motion,
    Door,
    PowerUse,
    AmbientTemperature,
    Checkin,
    Fall,
    Satisfaction,
}

impl ReadingType {
    pub const ALL: [ReadingType; 14] = [
        ReadingType::HeartRate,
        ReadingType::Spo2,
        ReadingType::BodyTemperature,
        ReadingType::BloodPressure,
        ReadingType::BloodGlucose,
        ReadingType::BodyWeight,
        ReadingType::Steps,
        ReadingType::Motion,
        ReadingType::Door,
        ReadingType::PowerUse,
        ReadingType::AmbientTemperature,
        ReadingType::Checkin,
        ReadingType::Fall,
        ReadingType::Satisfaction,
    ];

    /// The wire spelling, e.g. `heart_rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadingType::HeartRate => "heart_rate",
            ReadingType::Spo2 => "spo2",
            ReadingType::BodyTemperature => "body_temperature",
            ReadingType::BloodPressure => "blood_pressure",
            ReadingType::BloodGlucose => "blood_glucose",
            ReadingType::BodyWeight => "body_weight",
            ReadingType::Steps => "steps",
            ReadingType::Motion => "motion",
            ReadingType::Door => "door",
            ReadingType::PowerUse => "power_use",
            ReadingType::AmbientTemperature => "ambient_temperature",
            ReadingType::Checkin => "checkin",
            ReadingType::Fall => "fall",
            ReadingType::Satisfaction => "satisfaction",
        }
    }

    pub fn parse(s: &str) -> Option<ReadingType> {
        ReadingType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The canonical UCUM unit values are stored in; `None` for types whose
    /// value is a state (`motion`, `door`, `checkin`, `fall`).
    pub fn canonical_unit(self) -> Option<&'static str> {
        match self {
            ReadingType::HeartRate => Some("/min"),
            ReadingType::Spo2 => Some("%"),
            ReadingType::BodyTemperature | ReadingType::AmbientTemperature => Some("Cel"),
            ReadingType::BloodPressure => Some("mm[Hg]"),
            ReadingType::BloodGlucose => Some("mg/dL"),
            ReadingType::BodyWeight => Some("kg"),
            ReadingType::Steps => Some("{steps}"),
            ReadingType::PowerUse => Some("W"),
            ReadingType::Satisfaction => Some("{score}"),
            ReadingType::Motion | ReadingType::Door | ReadingType::Checkin | ReadingType::Fall => {
                None
            }
        }
    }

    pub fn category(self) -> Category {
        match self {
            ReadingType::HeartRate
            | ReadingType::Spo2
            | ReadingType::BodyTemperature
            | ReadingType::BloodPressure
            | ReadingType::BloodGlucose
            | ReadingType::BodyWeight => Category::Vital,
            ReadingType::Steps
            | ReadingType::Motion
            | ReadingType::Door
            | ReadingType::PowerUse => Category::Activity,
            ReadingType::AmbientTemperature => Category::Environment,
            ReadingType::Checkin => Category::Checkin,
            ReadingType::Fall => Category::Emergency,
            ReadingType::Satisfaction => Category::Feedback,
        }
    }

    /// The LOINC code used by the FHIR export, for vital signs.
    pub fn loinc(self) -> Option<&'static str> {
        match self {
            ReadingType::HeartRate => Some("8867-4"),
            ReadingType::Spo2 => Some("59408-5"),
            ReadingType::BodyTemperature => Some("8310-5"),
            ReadingType::BloodPressure => Some("85354-9"),
            ReadingType::BloodGlucose => Some("2339-0"),
            ReadingType::BodyWeight => Some("29463-7"),
            ReadingType::Steps => Some("55423-8"),
            _ => None,
        }
    }
}

impl fmt::Display for ReadingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoorState {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckinValue {
    /// "I'm OK".
    Ok,
    /// The resident asks for help: an emergency.
    Help,
}

/// A validated value in the canonical unit of its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadingValue {
    /// heart_rate, spo2, body_temperature, blood_glucose, body_weight, steps,
    /// power_use, ambient_temperature: a finite number in the canonical unit.
    Number(f64),
    BloodPressure {
        systolic: f64,
        diastolic: f64,
    },
    Motion(bool),
    Door(DoorState),
    Checkin(CheckinValue),
    /// A fall was detected (the wire value is always `true`).
    Fall,
    /// satisfaction: an integer score 1..=5.
    Score(u8),
}

/// One validated reading. The device and resident it belongs to are known from
/// the topic and the roster, not from the reading itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub reading_type: ReadingType,
    pub value: ReadingValue,
    /// Which sensor of the device produced it (e.g. `pir-kitchen`); part of
    /// the dedupe key.
    pub sensor: Option<String>,
    /// When it was measured: the reading's own time, else the message's, else
    /// the receive time.
    pub ts: Timestamp,
}

impl Reading {
    /// Whether this reading shows that someone moved or acted in the home,
    /// which is what the inactivity rule watches. Vitals from a wearable do
    /// not count: a worn watch keeps measuring a person lying on the floor.
    /// `power_use` counts only when it changes, which needs the previous
    /// value: the caller decides for it, so it returns false here.
    pub fn shows_activity(&self) -> bool {
        match self.value {
            ReadingValue::Motion(moved) => moved,
            ReadingValue::Door(_) | ReadingValue::Checkin(_) => true,
            ReadingValue::Number(n) => self.reading_type == ReadingType::Steps && n > 0.0,
            _ => false,
        }
    }
}
