//! Explicit retention: raw readings (and, with an external sink, their
//! dedupe keys) and rejections older than a cutoff are deleted; the
//! resident-day rollups, alerts and the roster are never touched, so
//! evaluator reports over the whole pilot stay complete.
//!
//! Deleting a reading also forgets its dedupe key: a device that resent it
//! afterwards would be counted again in the rollups. The binary therefore
//! refuses a readings retention shorter than ingest's `max_age`, beyond
//! which ingest refuses a reading as `timestamp_too_old` before it reaches
//! the store.
//!
//! Deletion runs in short transactions (one resident's or device's rows, or
//! [`CHUNK_ROWS`] rejections, at a time) so ingest's writer never waits long
//! for the lock.

use jiff::Timestamp;
use rusqlite::params;

use crate::Store;
use crate::error::StoreError;

/// Rejections deleted per transaction.
pub const CHUNK_ROWS: i64 = 10_000;

/// What one pruning pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Raw readings of the embedded sink.
    pub readings: u64,
    /// Dedupe keys kept for an external sink (InfluxDB).
    pub reading_keys: u64,
    pub rejections: u64,
}

impl Store {
    /// Deletes raw readings measured before `cutoff`, and the dedupe keys
    /// of an external sink for them. Rollups are left as they are.
    pub fn prune_readings_before(&mut self, cutoff: Timestamp) -> Result<Pruned, StoreError> {
        let cutoff_ms = cutoff.as_millisecond();
        let mut pruned = Pruned::default();
        // Per resident through `readings_by_resident` (resident_id, ts_ms),
        // so no pass scans the whole table and no transaction is long.
        let residents = self.ids("SELECT id FROM residents")?;
        for resident in residents {
            let n = self
                .conn
                .execute(
                    "DELETE FROM readings WHERE resident_id = ?1 AND ts_ms < ?2",
                    params![resident, cutoff_ms],
                )
                .map_err(StoreError::sqlite("deleting old readings"))?;
            pruned.readings += n as u64;
        }
        // The dedupe keys lead with the device id.
        let devices = self.ids("SELECT id FROM devices")?;
        for device in devices {
            let n = self
                .conn
                .execute(
                    "DELETE FROM reading_keys WHERE device_id = ?1 AND ts_ms < ?2",
                    params![device, cutoff_ms],
                )
                .map_err(StoreError::sqlite("deleting old dedupe keys"))?;
            pruned.reading_keys += n as u64;
        }
        Ok(pruned)
    }

    /// Deletes rejections received before `cutoff`.
    pub fn prune_rejections_before(&mut self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .conn
                .execute(
                    "DELETE FROM rejections WHERE id IN \
                     (SELECT id FROM rejections WHERE received_ms < ?1 LIMIT ?2)",
                    params![cutoff.as_millisecond(), CHUNK_ROWS],
                )
                .map_err(StoreError::sqlite("deleting old rejections"))?;
            total += n as u64;
            if (n as i64) < CHUNK_ROWS {
                return Ok(total);
            }
        }
    }

    fn ids(&self, sql: &'static str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(StoreError::sqlite("listing ids to prune"))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(StoreError::sqlite("listing ids to prune"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::sqlite("listing ids to prune"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jiff::civil::date;
    use jiff::tz::TimeZone;

    use ondol_model::reading::{ReadingType, ReadingValue};
    use ondol_model::roster::{CheckinPlan, Device, DeviceBinding, DeviceKind, Resident, Roster};
    use ondol_model::{DeviceId, Reading, ReasonCode, ResidentId};

    use crate::{Batch, NewReading, NewRejection, Store};

    fn roster() -> Roster {
        let resident = ResidentId::new("r-1").unwrap();
        Roster {
            residents: vec![Resident {
                id: resident.clone(),
                name: "Retention Person".into(),
                timezone_name: "UTC".into(),
                timezone: TimeZone::UTC,
                region: "north".into(),
                enrolled_from: date(2026, 1, 1),
                enrolled_until: None,
                caseworker: None,
                checkin: CheckinPlan::default(),
                away: Vec::new(),
            }],
            devices: vec![Device {
                id: DeviceId::new("gw-1").unwrap(),
                kind: DeviceKind::Gateway,
                bindings: vec![DeviceBinding {
                    resident,
                    from: None,
                    until: None,
                }],
                active: true,
                secret_env: None,
            }],
            staff: Vec::new(),
        }
    }

    fn reading_at(day: i8) -> NewReading {
        let ts = date(2026, 3, day)
            .at(8, 0, 0, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp();
        NewReading {
            device_id: DeviceId::new("gw-1").unwrap(),
            resident_id: ResidentId::new("r-1").unwrap(),
            reading: Reading {
                reading_type: ReadingType::HeartRate,
                value: ReadingValue::Number(70.0),
                sensor: None,
                ts,
            },
            received_at: ts,
            local_date: date(2026, 3, day),
            local_hour: 8,
            checkin_in_window: false,
            counts_as_activity: false,
        }
    }

    fn rejection_at(day: i8) -> NewRejection {
        NewRejection {
            device_id: Some("gw-1".into()),
            topic: "ondol/v1/devices/gw-1/readings".into(),
            reason: ReasonCode::MalformedPayload,
            detail: "not JSON".into(),
            index: None,
            msg_id: None,
            received_at: date(2026, 3, day)
                .at(8, 0, 0, 0)
                .to_zoned(TimeZone::UTC)
                .unwrap()
                .timestamp(),
            payload_excerpt: b"{".to_vec(),
        }
    }

    #[test]
    fn old_readings_and_rejections_go_rollups_stay() {
        let mut store = Store::open_in_memory().unwrap();
        store.import_roster(&roster()).unwrap();
        store
            .commit_batch(&Batch {
                readings: (1..=4).map(reading_at).collect(),
                rejections: (1..=4).map(rejection_at).collect(),
                statuses: Vec::new(),
            })
            .unwrap();
        let cutoff = date(2026, 3, 3)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp();
        let pruned = store.prune_readings_before(cutoff).unwrap();
        assert_eq!(pruned.readings, 2);
        assert_eq!(store.prune_rejections_before(cutoff).unwrap(), 2);
        assert_eq!(store.count_readings().unwrap(), 2);
        assert_eq!(store.recent_rejections(10).unwrap().len(), 2);
        let resident = ResidentId::new("r-1").unwrap();
        for day in 1..=4 {
            let rollup = store.resident_day(&resident, date(2026, 3, day)).unwrap();
            assert_eq!(rollup.map(|r| r.readings), Some(1), "day {day}");
        }
        // Nothing older is left: a second pass deletes nothing.
        assert_eq!(store.prune_readings_before(cutoff).unwrap().readings, 0);
        assert_eq!(store.prune_rejections_before(cutoff).unwrap(), 0);
    }
}
