//! One ingest batch and how it is committed: readings through the sink,
//! rollups for the readings that were new, last-seen and last-activity
//! times, rejections and device status, all in one transaction.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{Transaction, params};

use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_model::wire::DeviceStatus;
use ondol_model::{DeviceId, Reading, ReasonCode, ResidentId};

use crate::error::StoreError;

/// At most this many bytes of a refused payload are stored.
pub const MAX_EXCERPT_BYTES: usize = 256;

/// Text fields of a rejection (topic, detail, ids) are cut to this many
/// characters: they come from devices, and the store must not become a copy
/// of hostile traffic.
pub const MAX_REJECTION_TEXT_CHARS: usize = 1024;

/// Everything ingest commits at once.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub readings: Vec<NewReading>,
    pub rejections: Vec<NewRejection>,
    pub statuses: Vec<StatusUpdate>,
}

/// A validated reading with what ingest worked out about it.
#[derive(Debug, Clone)]
pub struct NewReading {
    pub device_id: DeviceId,
    /// The resident the device was bound to at the reading's time.
    pub resident_id: ResidentId,
    pub reading: Reading,
    pub received_at: Timestamp,
    /// The reading's local date in the resident's time zone.
    pub local_date: Date,
    /// The reading's local hour (0..=23) in the resident's time zone.
    pub local_hour: u8,
    /// A check-in `ok` (or, with passive check-in, activity) inside the
    /// resident's window: sets the day's `checkin_done`.
    pub checkin_in_window: bool,
    /// Moves the last activity time of the resident and the device.
    pub counts_as_activity: bool,
}

/// A refused reading or message, kept for device makers and operators.
#[derive(Debug, Clone)]
pub struct NewRejection {
    /// The id from the topic as received (may be invalid or unknown).
    pub device_id: Option<String>,
    pub topic: String,
    pub reason: ReasonCode,
    pub detail: String,
    /// The reading's index in its message; `None` when the whole message
    /// was refused.
    pub index: Option<u32>,
    pub msg_id: Option<String>,
    pub received_at: Timestamp,
    /// What the device sent; only the first [`MAX_EXCERPT_BYTES`] are stored.
    pub payload_excerpt: Vec<u8>,
}

/// A status message or Will.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub device_id: DeviceId,
    /// The resident the device is bound to now, if any (places the status
    /// in the alerting feed's partition of that resident).
    pub resident_id: Option<ResidentId>,
    pub status: DeviceStatus,
    pub received_at: Timestamp,
}

/// What became of a batch's readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One per `batch.readings[i]`: `true` = newly stored, `false` = a
    /// duplicate of a reading already stored.
    pub inserted: Vec<bool>,
}

impl BatchOutcome {
    pub fn accepted(&self) -> usize {
        self.inserted.iter().filter(|new| **new).count()
    }

    pub fn duplicates(&self) -> usize {
        self.inserted.len() - self.accepted()
    }
}

/// What one batch adds to a resident-day rollup.
#[derive(Debug, Default)]
struct DayDelta {
    readings: u64,
    hours_mask: u32,
    checkin_done: bool,
    satisfaction_sum: u64,
    satisfaction_count: u64,
    by_type: BTreeMap<ReadingType, u64>,
}

/// Latest times seen in one batch; `None` = nothing to move.
#[derive(Debug, Default)]
struct Latest {
    reading: Option<i64>,
    activity: Option<i64>,
    checkin: Option<i64>,
}

fn later(current: &mut Option<i64>, candidate: i64) {
    *current = Some(current.map_or(candidate, |c| c.max(candidate)));
}

/// Writes everything of `batch` except the raw readings, which the sink has
/// already handled and reported as `inserted`. Rollups and activity times
/// move only for new readings, so a resend never counts twice; a device's
/// last-seen time moves for every reading (a device that resends is alive).
pub(crate) fn write_rest(
    tx: &Transaction<'_>,
    batch: &Batch,
    inserted: &[bool],
) -> Result<(), StoreError> {
    let mut days: HashMap<(&ResidentId, Date), DayDelta> = HashMap::new();
    let mut residents: HashMap<&ResidentId, Latest> = HashMap::new();
    let mut devices: HashMap<&DeviceId, (i64, Option<i64>)> = HashMap::new();

    for (new, &is_new) in batch.readings.iter().zip(inserted) {
        let received_ms = new.received_at.as_millisecond();
        let device = devices.entry(&new.device_id).or_insert((received_ms, None));
        device.0 = device.0.max(received_ms);
        if !is_new {
            continue;
        }
        let ts_ms = new.reading.ts.as_millisecond();
        if new.counts_as_activity {
            later(&mut device.1, ts_ms);
        }

        let latest = residents.entry(&new.resident_id).or_default();
        later(&mut latest.reading, ts_ms);
        if new.counts_as_activity {
            later(&mut latest.activity, ts_ms);
        }
        if new.reading.value == ReadingValue::Checkin(CheckinValue::Ok) {
            later(&mut latest.checkin, ts_ms);
        }

        let day = days.entry((&new.resident_id, new.local_date)).or_default();
        day.readings += 1;
        // An hour outside 0..=23 is an ingest bug; the reading still counts,
        // it just sets no hour bit.
        if new.local_hour < 24 {
            day.hours_mask |= 1 << new.local_hour;
        }
        day.checkin_done |= new.checkin_in_window;
        if let ReadingValue::Score(score) = new.reading.value {
            day.satisfaction_sum += u64::from(score);
            day.satisfaction_count += 1;
        }
        *day.by_type.entry(new.reading.reading_type).or_default() += 1;
    }

    write_days(tx, &days)?;
    write_resident_activity(tx, &residents)?;
    write_device_activity(tx, &devices)?;
    write_rejections(tx, &batch.rejections)?;
    write_statuses(tx, &batch.statuses)?;
    Ok(())
}

fn write_days(
    tx: &Transaction<'_>,
    days: &HashMap<(&ResidentId, Date), DayDelta>,
) -> Result<(), StoreError> {
    let mut day_stmt = tx
        .prepare_cached(
            "INSERT INTO resident_days \
             (resident_id, local_date, readings, hours_mask, checkin_done, satisfaction_sum, satisfaction_count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (resident_id, local_date) DO UPDATE SET \
               readings = readings + excluded.readings, \
               hours_mask = hours_mask | excluded.hours_mask, \
               checkin_done = max(checkin_done, excluded.checkin_done), \
               satisfaction_sum = satisfaction_sum + excluded.satisfaction_sum, \
               satisfaction_count = satisfaction_count + excluded.satisfaction_count",
        )
        .map_err(StoreError::sqlite("preparing the day rollup"))?;
    let mut type_stmt = tx
        .prepare_cached(
            "INSERT INTO resident_day_readings (resident_id, local_date, reading_type, count) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (resident_id, local_date, reading_type) DO UPDATE SET \
               count = count + excluded.count",
        )
        .map_err(StoreError::sqlite("preparing the per-type rollup"))?;
    for ((resident, date), delta) in days {
        let date = date.to_string();
        day_stmt
            .execute(params![
                resident.as_str(),
                date,
                delta.readings,
                delta.hours_mask,
                delta.checkin_done,
                delta.satisfaction_sum,
                delta.satisfaction_count,
            ])
            .map_err(StoreError::sqlite("updating a day rollup"))?;
        for (reading_type, count) in &delta.by_type {
            type_stmt
                .execute(params![
                    resident.as_str(),
                    date,
                    reading_type.as_str(),
                    count
                ])
                .map_err(StoreError::sqlite("updating a per-type rollup"))?;
        }
    }
    Ok(())
}

/// `max` that treats NULL as "no value yet" (SQLite's `max` returns NULL
/// when any argument is NULL).
macro_rules! latest_of {
    ($col:literal) => {
        concat!(
            $col,
            " = max(coalesce(",
            $col,
            ", excluded.",
            $col,
            "), coalesce(excluded.",
            $col,
            ", ",
            $col,
            "))"
        )
    };
}

fn write_resident_activity(
    tx: &Transaction<'_>,
    residents: &HashMap<&ResidentId, Latest>,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(concat!(
            "INSERT INTO resident_activity (resident_id, last_reading_ms, last_activity_ms, last_checkin_ms) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (resident_id) DO UPDATE SET ",
            latest_of!("last_reading_ms"),
            ", ",
            latest_of!("last_activity_ms"),
            ", ",
            latest_of!("last_checkin_ms"),
        ))
        .map_err(StoreError::sqlite("preparing the resident activity update"))?;
    for (resident, latest) in residents {
        stmt.execute(params![
            resident.as_str(),
            latest.reading,
            latest.activity,
            latest.checkin
        ])
        .map_err(StoreError::sqlite("updating resident activity"))?;
    }
    Ok(())
}

fn write_device_activity(
    tx: &Transaction<'_>,
    devices: &HashMap<&DeviceId, (i64, Option<i64>)>,
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(concat!(
            "INSERT INTO device_state (device_id, last_seen_ms, last_activity_ms) \
             VALUES (?1, ?2, ?3) \
             ON CONFLICT (device_id) DO UPDATE SET ",
            latest_of!("last_seen_ms"),
            ", ",
            latest_of!("last_activity_ms"),
        ))
        .map_err(StoreError::sqlite("preparing the device activity update"))?;
    for (device, (seen, activity)) in devices {
        stmt.execute(params![device.as_str(), seen, activity])
            .map_err(StoreError::sqlite("updating device activity"))?;
    }
    Ok(())
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

fn write_rejections(tx: &Transaction<'_>, rejections: &[NewRejection]) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO rejections \
             (received_ms, device_id, topic, reason, detail, idx, msg_id, payload_excerpt) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(StoreError::sqlite("preparing the rejection insert"))?;
    let text = |s: &str| truncate_chars(s, MAX_REJECTION_TEXT_CHARS).to_owned();
    for rejection in rejections {
        let excerpt =
            &rejection.payload_excerpt[..rejection.payload_excerpt.len().min(MAX_EXCERPT_BYTES)];
        stmt.execute(params![
            rejection.received_at.as_millisecond(),
            rejection.device_id.as_deref().map(text),
            text(&rejection.topic),
            rejection.reason.as_str(),
            text(&rejection.detail),
            rejection.index,
            rejection.msg_id.as_deref().map(text),
            excerpt,
        ])
        .map_err(StoreError::sqlite("storing a rejection"))?;
    }
    Ok(())
}

/// Applies status messages in order. An update older than the stored one
/// is ignored, and fields a message leaves out (a Will usually carries only
/// `state`) keep their last reported value.
fn write_statuses(tx: &Transaction<'_>, statuses: &[StatusUpdate]) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO device_state \
             (device_id, online, battery_pct, rssi_dbm, firmware, last_status_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (device_id) DO UPDATE SET \
               online = excluded.online, \
               battery_pct = coalesce(excluded.battery_pct, battery_pct), \
               rssi_dbm = coalesce(excluded.rssi_dbm, rssi_dbm), \
               firmware = coalesce(excluded.firmware, firmware), \
               last_status_ms = excluded.last_status_ms \
             WHERE last_status_ms IS NULL OR excluded.last_status_ms >= last_status_ms",
        )
        .map_err(StoreError::sqlite("preparing the device status update"))?;
    for update in statuses {
        let status = &update.status;
        stmt.execute(params![
            update.device_id.as_str(),
            status.online,
            status.battery_pct,
            status.rssi_dbm,
            status
                .firmware
                .as_deref()
                .map(|f| truncate_chars(f, MAX_REJECTION_TEXT_CHARS)),
            update.received_at.as_millisecond(),
        ])
        .map_err(StoreError::sqlite("updating device status"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_chars("abc", 5), "abc");
        assert_eq!(truncate_chars("abc", 2), "ab");
        assert_eq!(truncate_chars("강진군", 2), "강진");
        assert_eq!(truncate_chars("", 0), "");
    }
}
