//! Read helpers for the CLI, the status board and tests, with the row types
//! they return.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{OptionalExtension, params};

use ondol_model::{DeviceId, Reading, ReadingType, ReasonCode, ResidentId};

use crate::Store;
use crate::error::StoreError;
use crate::roster_db::{invalid, parse_id, timestamp};
use crate::sink::decode_value;

/// A reading as stored by the embedded sink.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    pub device_id: DeviceId,
    pub resident_id: ResidentId,
    pub reading: Reading,
    pub received_at: Timestamp,
}

/// A stored rejection.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRejection {
    pub id: i64,
    pub received_at: Timestamp,
    pub device_id: Option<String>,
    pub topic: String,
    pub reason: ReasonCode,
    pub detail: String,
    pub index: Option<u32>,
    pub msg_id: Option<String>,
    pub payload_excerpt: Vec<u8>,
}

/// What the store knows about a device's state. Fields stay `None` until a
/// status message (the first four) or a reading (the last two) arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStateRow {
    pub device_id: DeviceId,
    pub online: Option<bool>,
    pub battery_pct: Option<u8>,
    pub rssi_dbm: Option<i16>,
    pub firmware: Option<String>,
    pub last_status_at: Option<Timestamp>,
    /// Receive time of the last reading accepted from it (resends included).
    pub last_seen_at: Option<Timestamp>,
    /// Time of its latest newly stored reading that shows activity.
    pub last_activity_at: Option<Timestamp>,
}

/// The latest times of a resident's readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentActivityRow {
    pub resident_id: ResidentId,
    pub last_reading_at: Option<Timestamp>,
    pub last_activity_at: Option<Timestamp>,
    /// The latest explicit `checkin: ok`, at any time of day.
    pub last_checkin_at: Option<Timestamp>,
}

/// The ingest part of one resident-day rollup (DESIGN §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentDayRow {
    pub resident_id: ResidentId,
    pub local_date: Date,
    /// Readings stored for the day, every type together.
    pub readings: u64,
    /// Bit h set when a reading fell in local hour h.
    pub hours_mask: u32,
    /// Local hours with at least one reading (0..=24).
    pub hours_with_data: u32,
    pub active: bool,
    pub checkin_done: bool,
    pub satisfaction_sum: u64,
    pub satisfaction_count: u64,
    pub by_type: BTreeMap<ReadingType, u64>,
}

impl Store {
    /// How many raw readings the embedded sink holds.
    pub fn count_readings(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM readings", [], |row| row.get(0))
            .map_err(StoreError::sqlite("counting readings"))
    }

    /// A device's readings, newest first. Sorts all of the device's rows
    /// (the dedupe key leads with type, not time): for the CLI and tests,
    /// not for a hot path.
    pub fn readings_for_device(
        &self,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT device_id, resident_id, reading_type, sensor, ts_ms, value, value2, text, \
                   received_ms \
                 FROM readings WHERE device_id = ?1 \
                 ORDER BY ts_ms DESC, reading_type, sensor LIMIT ?2",
            )
            .map_err(StoreError::sqlite("preparing the readings query"))?;
        let rows = stmt
            .query_map(
                params![device.as_str(), limit_param(limit)],
                RawReading::from_row,
            )
            .map_err(StoreError::sqlite("reading readings"))?;
        rows.map(|row| row.map_err(StoreError::sqlite("reading readings"))?.parse())
            .collect()
    }

    /// The latest rejections, newest first.
    pub fn recent_rejections(&self, limit: usize) -> Result<Vec<StoredRejection>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, received_ms, device_id, topic, reason, detail, idx, msg_id, payload_excerpt \
                 FROM rejections ORDER BY received_ms DESC, id DESC LIMIT ?1",
            )
            .map_err(StoreError::sqlite("preparing the rejections query"))?;
        let rows = stmt
            .query_map([limit_param(limit)], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, Option<u32>>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Vec<u8>>(8)?,
                ))
            })
            .map_err(StoreError::sqlite("reading rejections"))?;
        let table = "rejections";
        rows.map(|row| {
            let (id, received_ms, device_id, topic, reason, detail, index, msg_id, excerpt) =
                row.map_err(StoreError::sqlite("reading rejections"))?;
            let key = || id.to_string();
            Ok(StoredRejection {
                id,
                received_at: timestamp(received_ms, table, key)?,
                device_id,
                topic,
                reason: parse_reason(&reason, key)?,
                detail,
                index,
                msg_id,
                payload_excerpt: excerpt,
            })
        })
        .collect()
    }

    /// How many rejections each reason has, most frequent first.
    pub fn rejection_counts(&self) -> Result<Vec<(ReasonCode, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reason, count(*) AS n FROM rejections GROUP BY reason ORDER BY n DESC, reason",
            )
            .map_err(StoreError::sqlite("preparing the rejection counts"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })
            .map_err(StoreError::sqlite("counting rejections"))?;
        rows.map(|row| {
            let (reason, n) = row.map_err(StoreError::sqlite("counting rejections"))?;
            Ok((parse_reason(&reason, || reason.clone())?, n))
        })
        .collect()
    }

    pub fn device_state(&self, device: &DeviceId) -> Result<Option<DeviceStateRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT online, battery_pct, rssi_dbm, firmware, last_status_ms, last_seen_ms, \
                   last_activity_ms \
                 FROM device_state WHERE device_id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([device.as_str()], |row| {
                    Ok((
                        row.get::<_, Option<bool>>(0)?,
                        row.get::<_, Option<u8>>(1)?,
                        row.get::<_, Option<i16>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                        row.get::<_, Option<i64>>(6)?,
                    ))
                })
                .optional()
            })
            .map_err(StoreError::sqlite("reading device state"))?;
        let Some((online, battery_pct, rssi_dbm, firmware, status, seen, activity)) = row else {
            return Ok(None);
        };
        let at = |ms: Option<i64>| {
            ms.map(|ms| timestamp(ms, "device_state", || device.to_string()))
                .transpose()
        };
        Ok(Some(DeviceStateRow {
            device_id: device.clone(),
            online,
            battery_pct,
            rssi_dbm,
            firmware,
            last_status_at: at(status)?,
            last_seen_at: at(seen)?,
            last_activity_at: at(activity)?,
        }))
    }

    pub fn resident_activity(
        &self,
        resident: &ResidentId,
    ) -> Result<Option<ResidentActivityRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT last_reading_ms, last_activity_ms, last_checkin_ms \
                 FROM resident_activity WHERE resident_id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([resident.as_str()], |row| {
                    Ok((
                        row.get::<_, Option<i64>>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                    ))
                })
                .optional()
            })
            .map_err(StoreError::sqlite("reading resident activity"))?;
        let Some((reading, activity, checkin)) = row else {
            return Ok(None);
        };
        let at = |ms: Option<i64>| {
            ms.map(|ms| timestamp(ms, "resident_activity", || resident.to_string()))
                .transpose()
        };
        Ok(Some(ResidentActivityRow {
            resident_id: resident.clone(),
            last_reading_at: at(reading)?,
            last_activity_at: at(activity)?,
            last_checkin_at: at(checkin)?,
        }))
    }

    /// The rollup of one resident-day, or `None` if no reading fell on it.
    pub fn resident_day(
        &self,
        resident: &ResidentId,
        date: Date,
    ) -> Result<Option<ResidentDayRow>, StoreError> {
        let date_text = date.to_string();
        let row = self
            .conn
            .prepare_cached(
                "SELECT readings, hours_mask, active, checkin_done, satisfaction_sum, satisfaction_count \
                 FROM resident_days WHERE resident_id = ?1 AND local_date = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![resident.as_str(), date_text], |row| {
                    Ok((
                        row.get::<_, u64>(0)?,
                        row.get::<_, u32>(1)?,
                        row.get::<_, bool>(2)?,
                        row.get::<_, bool>(3)?,
                        row.get::<_, u64>(4)?,
                        row.get::<_, u64>(5)?,
                    ))
                })
                .optional()
            })
            .map_err(StoreError::sqlite("reading a day rollup"))?;
        let Some((readings, hours_mask, active, checkin_done, sat_sum, sat_count)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reading_type, count FROM resident_day_readings \
                 WHERE resident_id = ?1 AND local_date = ?2",
            )
            .map_err(StoreError::sqlite("preparing the per-type rollup query"))?;
        let rows = stmt
            .query_map(params![resident.as_str(), date_text], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })
            .map_err(StoreError::sqlite("reading a per-type rollup"))?;
        let mut by_type = BTreeMap::new();
        for row in rows {
            let (kind, count) = row.map_err(StoreError::sqlite("reading a per-type rollup"))?;
            let reading_type = ReadingType::parse(&kind).ok_or_else(|| {
                invalid(
                    "resident_day_readings",
                    format!("{resident} {date}"),
                    format!("unknown type {kind:?}"),
                )
            })?;
            by_type.insert(reading_type, count);
        }
        Ok(Some(ResidentDayRow {
            resident_id: resident.clone(),
            local_date: date,
            readings,
            hours_mask,
            hours_with_data: hours_mask.count_ones(),
            active,
            checkin_done,
            satisfaction_sum: sat_sum,
            satisfaction_count: sat_count,
            by_type,
        }))
    }

    /// A resident's readings of the embedded sink, oldest first, one page at
    /// a time: those whose device was bound to the resident at the
    /// reading's time. Ingest attributes each reading through that binding
    /// when it stores it (`resident_id`); a binding corrected since (ended
    /// or removed) takes the readings it no longer covers away from the
    /// resident. Uses the `(resident_id, ts_ms)` index. With the InfluxDB
    /// sink the table is empty: the raw readings are in InfluxDB.
    pub fn readings_for_resident(
        &self,
        query: &ReadingsQuery<'_>,
    ) -> Result<ReadingsPage, StoreError> {
        let types = if query.types.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&query.types.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                    .map_err(|e| invalid("readings", query.resident.to_string(), e.to_string()))?,
            )
        };
        let after = query.after;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.device_id, r.resident_id, r.reading_type, r.sensor, r.ts_ms, r.value, \
                   r.value2, r.text, r.received_ms \
                 FROM readings r \
                 WHERE r.resident_id = ?1 AND r.ts_ms >= ?2 AND r.ts_ms < ?3 \
                   AND (?4 IS NULL OR r.reading_type IN (SELECT value FROM json_each(?4))) \
                   AND (?5 IS NULL OR (r.ts_ms, r.device_id, r.reading_type, r.sensor) > (?5, ?6, ?7, ?8)) \
                   AND EXISTS (SELECT 1 FROM device_bindings b \
                     WHERE b.device_id = r.device_id AND b.resident_id = r.resident_id \
                       AND (b.from_ms IS NULL OR b.from_ms <= r.ts_ms) \
                       AND (b.until_ms IS NULL OR r.ts_ms < b.until_ms)) \
                 ORDER BY r.ts_ms, r.device_id, r.reading_type, r.sensor \
                 LIMIT ?9",
            )
            .map_err(StoreError::sqlite("preparing the resident readings query"))?;
        let rows = stmt
            .query_map(
                params![
                    query.resident.as_str(),
                    query.from.as_millisecond(),
                    query.to.as_millisecond(),
                    types,
                    after.map(|a| a.ts_ms),
                    after.map(|a| a.device_id.as_str()),
                    after.map(|a| a.reading_type.as_str()),
                    after.map(|a| a.sensor.as_str()),
                    // One more than asked tells whether another page follows.
                    limit_param(query.limit.saturating_add(1)),
                ],
                RawReading::from_row,
            )
            .map_err(StoreError::sqlite("reading a resident's readings"))?;
        let mut items: Vec<StoredReading> = Vec::new();
        let mut next = None;
        for row in rows {
            let row = row.map_err(StoreError::sqlite("reading a resident's readings"))?;
            if items.len() == query.limit {
                next = items.last().map(|last| ReadingCursor {
                    ts_ms: last.reading.ts.as_millisecond(),
                    device_id: last.device_id.to_string(),
                    reading_type: last.reading.reading_type.as_str().to_owned(),
                    sensor: last.reading.sensor.clone().unwrap_or_default(),
                });
                break;
            }
            items.push(row.parse()?);
        }
        Ok(ReadingsPage { items, next })
    }
}

/// Which of a resident's readings [`Store::readings_for_resident`] returns.
#[derive(Debug, Clone)]
pub struct ReadingsQuery<'a> {
    pub resident: &'a ResidentId,
    /// Only these types; empty = every type.
    pub types: &'a [ReadingType],
    /// Reading times `from <= ts < to`.
    pub from: Timestamp,
    pub to: Timestamp,
    /// Continue after this reading (the `next` of the previous page).
    pub after: Option<&'a ReadingCursor>,
    /// Most readings in the page.
    pub limit: usize,
}

/// The position of a reading in a resident's readings: the sort key
/// (time, device, type, sensor), which is unique (the dedupe key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingCursor {
    pub ts_ms: i64,
    pub device_id: String,
    pub reading_type: String,
    pub sensor: String,
}

/// One page of a resident's readings, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingsPage {
    pub items: Vec<StoredReading>,
    /// Where the next page starts; `None` when this was the last.
    pub next: Option<ReadingCursor>,
}

/// SQLite's LIMIT takes an i64; a larger request means "all".
/// A `readings` row as selected (`device_id, resident_id, reading_type,
/// sensor, ts_ms, value, value2, text, received_ms`), before it is checked.
struct RawReading {
    device: String,
    resident: String,
    kind: String,
    sensor: String,
    ts_ms: i64,
    value: Option<f64>,
    value2: Option<f64>,
    text: Option<String>,
    received_ms: i64,
}

impl RawReading {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawReading> {
        Ok(RawReading {
            device: row.get(0)?,
            resident: row.get(1)?,
            kind: row.get(2)?,
            sensor: row.get(3)?,
            ts_ms: row.get(4)?,
            value: row.get(5)?,
            value2: row.get(6)?,
            text: row.get(7)?,
            received_ms: row.get(8)?,
        })
    }

    fn parse(self) -> Result<StoredReading, StoreError> {
        let table = "readings";
        let RawReading {
            device,
            resident,
            kind,
            sensor,
            ts_ms,
            value,
            value2,
            text,
            received_ms,
        } = self;
        let key = || format!("{device} {kind} {sensor:?} {ts_ms}");
        let reading_type = ReadingType::parse(&kind)
            .ok_or_else(|| invalid(table, key(), format!("unknown type {kind:?}")))?;
        let value = decode_value(reading_type, value, value2, text.as_deref())
            .ok_or_else(|| invalid(table, key(), "value columns do not fit the type".into()))?;
        Ok(StoredReading {
            device_id: parse_id(&device, table, key)?,
            resident_id: parse_id(&resident, table, key)?,
            reading: Reading {
                reading_type,
                value,
                sensor: (!sensor.is_empty()).then(|| sensor.clone()),
                ts: timestamp(ts_ms, table, key)?,
            },
            received_at: timestamp(received_ms, table, key)?,
        })
    }
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn parse_reason(reason: &str, key: impl Fn() -> String) -> Result<ReasonCode, StoreError> {
    ReasonCode::parse(reason).ok_or_else(|| {
        invalid(
            "rejections",
            key(),
            format!("unknown reason code {reason:?}"),
        )
    })
}
