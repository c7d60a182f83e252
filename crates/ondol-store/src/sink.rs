//! Where raw readings go: the time-series sink.
//!
//! # The seam
//!
//! [`Store::commit_batch`](crate::Store::commit_batch) hands the batch's
//! readings to a [`TimeseriesSink`] inside the batch's open SQLite
//! transaction. The sink answers, per reading, whether it was newly stored
//! or a duplicate, and the store updates the rollups only for the new ones;
//! the transaction then commits, and only after that does ingest publish
//! receipts.
//!
//! - [`EmbeddedSink`] (the default) stores each reading as a row of the
//!   `readings` table in that same transaction. The table's primary key
//!   (device, type, sensor, time) is the dedupe key, so the readings, their
//!   dedupe and the rollups commit or roll back together.
//! - An InfluxDB sink (a later release) keeps only the dedupe keys in SQLite
//!   (a narrower table written the same way, in the same transaction) and
//!   writes the points that turned out new to InfluxDB *before returning*,
//!   so the SQLite commit happens only once they are durable there. If the
//!   SQLite commit then fails, the keys are not stored, the devices resend,
//!   and the points are written again: InfluxDB keeps one point per series
//!   and timestamp, so the replay is harmless. The reverse order (commit
//!   first, write later) could acknowledge readings that never reached
//!   InfluxDB, which is why the write happens inside `write`.
//!
//! The query helpers of [`Store`](crate::Store) that return raw readings
//! read the embedded table.

use std::fmt;

use rusqlite::Transaction;

use ondol_model::reading::{CheckinValue, DoorState, ReadingType, ReadingValue};

use crate::batch::NewReading;
use crate::error::StoreError;

/// Stores raw readings with dedupe on (device, type, sensor, timestamp).
pub trait TimeseriesSink: Send + fmt::Debug {
    /// Stores every reading not stored before, inside `tx`, and returns one
    /// flag per reading, in order: `true` if it was newly stored, `false` if
    /// it was a duplicate (stored by an earlier batch or earlier in this
    /// one). Anything stored outside SQLite must be durable before this
    /// returns `Ok`.
    fn write(
        &mut self,
        tx: &Transaction<'_>,
        readings: &[NewReading],
    ) -> Result<Vec<bool>, StoreError>;
}

/// Raw readings in the store's own SQLite file (table `readings`).
#[derive(Debug, Default, Clone, Copy)]
pub struct EmbeddedSink;

impl TimeseriesSink for EmbeddedSink {
    fn write(
        &mut self,
        tx: &Transaction<'_>,
        readings: &[NewReading],
    ) -> Result<Vec<bool>, StoreError> {
        // ON CONFLICT names the dedupe key, so only a duplicate is skipped;
        // INSERT OR IGNORE would also swallow other constraint failures and
        // report them as duplicates.
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO readings \
                 (device_id, reading_type, sensor, ts_ms, resident_id, value, value2, text, received_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (device_id, reading_type, sensor, ts_ms) DO NOTHING",
            )
            .map_err(StoreError::sqlite("preparing the reading insert"))?;
        let mut inserted = Vec::with_capacity(readings.len());
        for new in readings {
            let reading = &new.reading;
            let (value, value2, text) = encode_value(reading.value);
            let changed = insert
                .execute(rusqlite::params![
                    new.device_id.as_str(),
                    reading.reading_type.as_str(),
                    reading.sensor.as_deref().unwrap_or(""),
                    reading.ts.as_millisecond(),
                    new.resident_id.as_str(),
                    value,
                    value2,
                    text,
                    new.received_at.as_millisecond(),
                ])
                .map_err(StoreError::sqlite("inserting a reading"))?;
            inserted.push(changed == 1);
        }
        Ok(inserted)
    }
}

/// A value as the `(value, value2, text)` columns of `readings`.
pub(crate) fn encode_value(
    value: ReadingValue,
) -> (Option<f64>, Option<f64>, Option<&'static str>) {
    match value {
        ReadingValue::Number(n) => (Some(n), None, None),
        ReadingValue::BloodPressure {
            systolic,
            diastolic,
        } => (Some(systolic), Some(diastolic), None),
        ReadingValue::Motion(moved) => (Some(if moved { 1.0 } else { 0.0 }), None, None),
        ReadingValue::Door(DoorState::Open) => (None, None, Some("open")),
        ReadingValue::Door(DoorState::Closed) => (None, None, Some("closed")),
        ReadingValue::Checkin(CheckinValue::Ok) => (None, None, Some("ok")),
        ReadingValue::Checkin(CheckinValue::Help) => (None, None, Some("help")),
        ReadingValue::Fall => (Some(1.0), None, None),
        ReadingValue::Score(score) => (Some(f64::from(score)), None, None),
    }
}

/// The inverse of [`encode_value`]; `None` if the columns do not fit the type.
pub(crate) fn decode_value(
    reading_type: ReadingType,
    value: Option<f64>,
    value2: Option<f64>,
    text: Option<&str>,
) -> Option<ReadingValue> {
    Some(match reading_type {
        ReadingType::BloodPressure => ReadingValue::BloodPressure {
            systolic: value?,
            diastolic: value2?,
        },
        ReadingType::Motion => ReadingValue::Motion(value? != 0.0),
        ReadingType::Door => ReadingValue::Door(match text? {
            "open" => DoorState::Open,
            "closed" => DoorState::Closed,
            _ => return None,
        }),
        ReadingType::Checkin => ReadingValue::Checkin(match text? {
            "ok" => CheckinValue::Ok,
            "help" => CheckinValue::Help,
            _ => return None,
        }),
        ReadingType::Fall => ReadingValue::Fall,
        ReadingType::Satisfaction => {
            let score = value?;
            if score.fract() != 0.0 {
                return None;
            }
            // An integer-valued float: `as` is exact here (and saturates
            // for out-of-range values, which try_from then refuses).
            ReadingValue::Score(u8::try_from(score as i64).ok()?)
        }
        ReadingType::HeartRate
        | ReadingType::Spo2
        | ReadingType::BodyTemperature
        | ReadingType::BloodGlucose
        | ReadingType::BodyWeight
        | ReadingType::Steps
        | ReadingType::PowerUse
        | ReadingType::AmbientTemperature => ReadingValue::Number(value?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_value_round_trips_through_the_columns() {
        let cases = [
            (ReadingType::HeartRate, ReadingValue::Number(72.5)),
            (
                ReadingType::BloodPressure,
                ReadingValue::BloodPressure {
                    systolic: 128.0,
                    diastolic: 82.0,
                },
            ),
            (ReadingType::Motion, ReadingValue::Motion(true)),
            (ReadingType::Motion, ReadingValue::Motion(false)),
            (ReadingType::Door, ReadingValue::Door(DoorState::Open)),
            (ReadingType::Door, ReadingValue::Door(DoorState::Closed)),
            (
                ReadingType::Checkin,
                ReadingValue::Checkin(CheckinValue::Ok),
            ),
            (
                ReadingType::Checkin,
                ReadingValue::Checkin(CheckinValue::Help),
            ),
            (ReadingType::Fall, ReadingValue::Fall),
            (ReadingType::Satisfaction, ReadingValue::Score(4)),
        ];
        for (reading_type, value) in cases {
            let (v, v2, text) = encode_value(value);
            assert_eq!(decode_value(reading_type, v, v2, text), Some(value));
        }
    }

    #[test]
    fn columns_that_do_not_fit_the_type_are_refused() {
        assert_eq!(decode_value(ReadingType::HeartRate, None, None, None), None);
        assert_eq!(
            decode_value(ReadingType::Door, None, None, Some("ajar")),
            None
        );
        assert_eq!(
            decode_value(ReadingType::Satisfaction, Some(2.5), None, None),
            None
        );
        assert_eq!(
            decode_value(ReadingType::BloodPressure, Some(120.0), None, None),
            None
        );
    }
}
