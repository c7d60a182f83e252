//! The alerting feed: what alerting needs to know of each committed batch,
//! written in the batch's own transaction, so whichever process commits
//! (one of several ingest workers, or ingest in the same process) alerting
//! learns of it from the store alone.
//!
//! A feed row holds one batch's facts for one partition of residents
//! ([`partition_of`]): the readings alerting reacts to, reduced to those
//! that can change a decision (every check-in, help press and fall, every
//! vital a band watches, and per device the latest reading received, the
//! latest measured and the latest activity of each local date), and every
//! device status. Alerting consumes the feed as a queue: it reads rows,
//! applies them and deletes them ([`Store::take_feed`],
//! [`Store::finish_feed`]). It never tails by id, so a row that becomes
//! visible after a row with a higher id (several writers) is still taken.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ondol_model::reading::{ReadingType, ReadingValue};
use ondol_model::wire::DeviceStatus;
use ondol_model::{DeviceId, Reading, ResidentId};

use crate::Store;
use crate::batch::{Batch, NewReading, StatusUpdate};
use crate::error::StoreError;
use crate::sink::{decode_value, encode_value};

/// Residents are spread over this many partitions. Fixed: a partition's
/// residents must not move when processes come and go, so that a later
/// rebalance moves whole partitions between alerting processes.
pub const PARTITIONS: u16 = 64;

/// The partition of a resident: a stable hash (the same on every machine
/// and version), not `std`'s randomly seeded one.
pub fn partition_of(resident: &ResidentId) -> u16 {
    let digest = Sha256::digest(resident.as_str().as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % PARTITIONS
}

/// What alerting takes from the feed at once: one or more batches' facts,
/// in commit order within each writer.
#[derive(Debug, Clone, Default)]
pub struct FeedFacts {
    pub readings: Vec<NewReading>,
    pub statuses: Vec<StatusUpdate>,
}

/// One feed row: one batch's facts for one partition.
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub id: i64,
    pub committed_at: Timestamp,
    pub facts: FeedFacts,
}

/// Rows taken from the feed, to be applied in order and then finished.
#[derive(Debug, Default)]
pub struct FeedTake {
    pub rows: Vec<FeedRow>,
    /// Rows that could not be read (a bug, or a newer writer): to be
    /// finished with the rest and reported, rather than block the feed.
    pub unreadable: Vec<(i64, String)>,
}

impl FeedTake {
    /// Every row id taken, readable or not, for [`Store::finish_feed`].
    pub fn ids(&self) -> Vec<i64> {
        self.rows
            .iter()
            .map(|row| row.id)
            .chain(self.unreadable.iter().map(|(id, _)| *id))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rows.len() + self.unreadable.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reading as a feed row stores it (the `readings` table's columns).
#[derive(Debug, Serialize, Deserialize)]
struct RowReading {
    device: String,
    resident: String,
    #[serde(rename = "type")]
    reading_type: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    sensor: Option<String>,
    ts_ms: i64,
    received_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    text: Option<String>,
    local_date: Date,
    local_hour: u8,
    in_window: bool,
    activity: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct RowStatus {
    device: String,
    online: bool,
    received_ms: i64,
}

/// One feed row's payload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RowFacts {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    readings: Vec<RowReading>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    statuses: Vec<RowStatus>,
}

impl RowReading {
    fn of(new: &NewReading) -> RowReading {
        let (value, value2, text) = encode_value(new.reading.value);
        RowReading {
            device: new.device_id.as_str().to_owned(),
            resident: new.resident_id.as_str().to_owned(),
            reading_type: new.reading.reading_type.as_str().to_owned(),
            sensor: new.reading.sensor.clone(),
            ts_ms: new.reading.ts.as_millisecond(),
            received_ms: new.received_at.as_millisecond(),
            value,
            value2,
            text: text.map(str::to_owned),
            local_date: new.local_date,
            local_hour: new.local_hour,
            in_window: new.checkin_in_window,
            activity: new.counts_as_activity,
        }
    }

    fn into_reading(self) -> Result<NewReading, String> {
        let reading_type = ReadingType::parse(&self.reading_type)
            .ok_or_else(|| format!("unknown reading type {:?}", self.reading_type))?;
        let value = decode_value(reading_type, self.value, self.value2, self.text.as_deref())
            .ok_or_else(|| format!("a {} value that does not fit its type", self.reading_type))?;
        Ok(NewReading {
            device_id: DeviceId::new(self.device).map_err(|e| e.to_string())?,
            resident_id: ResidentId::new(self.resident).map_err(|e| e.to_string())?,
            reading: Reading {
                reading_type,
                value,
                sensor: self.sensor,
                ts: timestamp(self.ts_ms)?,
            },
            received_at: timestamp(self.received_ms)?,
            local_date: self.local_date,
            local_hour: self.local_hour,
            checkin_in_window: self.in_window,
            counts_as_activity: self.activity,
        })
    }
}

fn timestamp(ms: i64) -> Result<Timestamp, String> {
    Timestamp::from_millisecond(ms).map_err(|e| e.to_string())
}

/// The readings of a batch that can change an alerting decision, by index,
/// in batch order. Alerting keeps maxima (last heard, last measured, last
/// activity) and reacts to events; the readings in between change nothing.
fn worth_telling(batch: &Batch, inserted: &[bool], vitals: &BTreeSet<ReadingType>) -> Vec<usize> {
    let mut keep = BTreeSet::new();
    let mut latest_received: HashMap<&DeviceId, usize> = HashMap::new();
    let mut latest_measured: HashMap<&DeviceId, usize> = HashMap::new();
    let mut latest_activity: HashMap<(&DeviceId, Date), usize> = HashMap::new();
    let newer =
        |slot: Option<&usize>, candidate: &NewReading, key: fn(&NewReading) -> Timestamp| {
            slot.is_none_or(|&i| key(&batch.readings[i]) < key(candidate))
        };
    for (i, new) in batch.readings.iter().enumerate() {
        if !inserted.get(i).copied().unwrap_or(false) {
            continue;
        }
        let event = match new.reading.value {
            ReadingValue::Checkin(_) | ReadingValue::Fall => true,
            ReadingValue::Number(_) | ReadingValue::BloodPressure { .. } => {
                vitals.contains(&new.reading.reading_type)
            }
            _ => false,
        };
        if event {
            keep.insert(i);
        }
        let device = &new.device_id;
        if newer(latest_received.get(device), new, |n| n.received_at) {
            latest_received.insert(device, i);
        }
        if newer(latest_measured.get(device), new, |n| n.reading.ts) {
            latest_measured.insert(device, i);
        }
        if new.counts_as_activity {
            let key = (device, new.local_date);
            if newer(latest_activity.get(&key), new, |n| n.reading.ts) {
                latest_activity.insert(key, i);
            }
        }
    }
    keep.extend(latest_received.into_values());
    keep.extend(latest_measured.into_values());
    keep.extend(latest_activity.into_values());
    keep.into_iter().collect()
}

/// Writes `batch`'s feed rows, one per partition it touches. Runs inside
/// the batch's transaction.
pub(crate) fn write(
    tx: &Transaction<'_>,
    batch: &Batch,
    inserted: &[bool],
    vitals: &BTreeSet<ReadingType>,
) -> Result<(), StoreError> {
    let mut rows: BTreeMap<u16, RowFacts> = BTreeMap::new();
    let mut partitions: HashMap<ResidentId, u16> = HashMap::new();
    let mut partition = |resident: &ResidentId| -> u16 {
        if let Some(&p) = partitions.get(resident) {
            return p;
        }
        let p = partition_of(resident);
        partitions.insert(resident.clone(), p);
        p
    };
    for i in worth_telling(batch, inserted, vitals) {
        let new = &batch.readings[i];
        rows.entry(partition(&new.resident_id))
            .or_default()
            .readings
            .push(RowReading::of(new));
    }
    for update in &batch.statuses {
        // A device bound to nobody still has a status; it goes with
        // partition 0 (alerting ignores devices it does not watch).
        let p = update.resident_id.as_ref().map_or(0, &mut partition);
        rows.entry(p).or_default().statuses.push(RowStatus {
            device: update.device_id.as_str().to_owned(),
            online: update.status.online,
            received_ms: update.received_at.as_millisecond(),
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().as_millisecond();
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO alerting_feed (partition, committed_ms, facts) VALUES (?1, ?2, ?3)",
        )
        .map_err(StoreError::sqlite("preparing the alerting feed insert"))?;
    for (p, facts) in rows {
        let json = serde_json::to_string(&facts).map_err(|error| StoreError::InvalidRow {
            table: "alerting_feed",
            key: p.to_string(),
            detail: error.to_string(),
        })?;
        stmt.execute(params![p, now, json])
            .map_err(StoreError::sqlite("writing the alerting feed"))?;
    }
    Ok(())
}

impl Store {
    /// Makes this store's batch commits write the alerting feed, with the
    /// readings of the vital types alerting's bands watch (`Some`), or not
    /// (`None`, the default: alerting disabled, or a backfill of history).
    /// The ingest writer's store sets this once.
    pub fn feed_alerting(&mut self, watched_vitals: Option<BTreeSet<ReadingType>>) {
        self.feed = watched_vitals;
    }

    /// Up to `limit` feed rows, oldest first, with their facts in order.
    /// Nothing is removed until [`finish_feed`](Self::finish_feed).
    pub fn take_feed(&self, limit: usize) -> Result<FeedTake, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, committed_ms, facts FROM alerting_feed ORDER BY id LIMIT ?1",
            )
            .map_err(StoreError::sqlite("preparing the alerting feed read"))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(StoreError::sqlite("reading the alerting feed"))?;
        let mut take = FeedTake::default();
        for row in rows {
            let (id, committed_ms, json) =
                row.map_err(StoreError::sqlite("reading the alerting feed"))?;
            let decoded = timestamp(committed_ms).and_then(|committed_at| {
                decode_row(&json).map(|facts| FeedRow {
                    id,
                    committed_at,
                    facts,
                })
            });
            match decoded {
                Ok(row) => take.rows.push(row),
                Err(problem) => take.unreadable.push((id, problem)),
            }
        }
        Ok(take)
    }

    /// Removes feed rows whose facts have been applied.
    pub fn finish_feed(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting to finish feed rows"))?;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM alerting_feed WHERE id = ?1")
                .map_err(StoreError::sqlite("preparing the feed delete"))?;
            for id in ids {
                stmt.execute([id])
                    .map_err(StoreError::sqlite("finishing feed rows"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sqlite("finishing feed rows"))
    }

    /// When the oldest row still waiting was committed: alerting takes rows
    /// within a second, so an old one means no alerting process is taking
    /// them (one indexed read, for a gauge every ingest worker exports).
    pub fn feed_oldest(&self) -> Result<Option<Timestamp>, StoreError> {
        self.conn
            .query_row(
                "SELECT committed_ms FROM alerting_feed ORDER BY id LIMIT 1",
                [],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map_err(StoreError::sqlite("reading the alerting feed's oldest row"))?
            .map(|ms| {
                Timestamp::from_millisecond(ms).map_err(|error| StoreError::InvalidRow {
                    table: "alerting_feed",
                    key: ms.to_string(),
                    detail: error.to_string(),
                })
            })
            .transpose()
    }

    /// How many feed rows wait (a gauge for operators).
    pub fn feed_backlog(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM alerting_feed", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(StoreError::sqlite("counting the alerting feed"))
    }
}

fn decode_row(json: &str) -> Result<FeedFacts, String> {
    let row: RowFacts = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut facts = FeedFacts::default();
    for reading in row.readings {
        facts.readings.push(reading.into_reading()?);
    }
    for status in row.statuses {
        facts.statuses.push(StatusUpdate {
            device_id: DeviceId::new(status.device).map_err(|e| e.to_string())?,
            resident_id: None,
            status: DeviceStatus {
                online: status.online,
                battery_pct: None,
                rssi_dbm: None,
                firmware: None,
            },
            received_at: timestamp(status.received_ms)?,
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tests::{at, new_reading, temp_store};
    use ondol_model::reading::CheckinValue;

    fn motion(device: &str, resident: &str, t: i64) -> NewReading {
        new_reading(
            device,
            resident,
            ReadingValue::Motion(true),
            ReadingType::Motion,
            at(t),
        )
    }

    fn heart_rate(t: i64) -> NewReading {
        new_reading(
            "wr-1",
            "r-1",
            ReadingValue::Number(70.0),
            ReadingType::HeartRate,
            at(t),
        )
    }

    fn feeding() -> (tempfile::TempDir, Store) {
        let (dir, mut store) = temp_store();
        store.feed_alerting(Some(BTreeSet::new()));
        (dir, store)
    }

    fn commit(store: &mut Store, readings: Vec<NewReading>) {
        store
            .commit_batch(&Batch {
                readings,
                ..Batch::default()
            })
            .unwrap();
    }

    fn taken(store: &Store) -> Vec<(String, i64)> {
        let take = store.take_feed(usize::MAX).unwrap();
        take.rows
            .iter()
            .flat_map(|row| row.facts.readings.iter())
            .map(|r| {
                (
                    format!("{}/{}", r.device_id, r.reading.reading_type.as_str()),
                    r.reading.ts.as_second() - at(0).as_second(),
                )
            })
            .collect()
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Pinned: a changed hash would move residents between partitions
        // of a running deployment.
        assert_eq!(partition_of(&ResidentId::new("r-1").unwrap()), 58);
        for i in 0..1000 {
            assert!(partition_of(&ResidentId::new(format!("r-{i}")).unwrap()) < PARTITIONS);
        }
    }

    #[test]
    fn a_batch_tells_alerting_only_what_can_change_a_decision() {
        let (_dir, mut store) = feeding();
        let mut batch = vec![
            motion("gw-1", "r-1", 10),
            motion("gw-1", "r-1", 30), // the latest motion of gw-1
            motion("gw-1", "r-1", 20),
            new_reading(
                "bt-1",
                "r-1",
                ReadingValue::Checkin(CheckinValue::Help),
                ReadingType::Checkin,
                at(15),
            ),
            new_reading(
                "bt-1",
                "r-1",
                ReadingValue::Checkin(CheckinValue::Ok),
                ReadingType::Checkin,
                at(16),
            ),
            heart_rate(5),
            heart_rate(6),
        ];
        // A motion received last but measured earlier: kept as gw-1's
        // latest receipt.
        let mut late = motion("gw-1", "r-1", 1);
        late.received_at = at(100);
        batch.push(late);
        commit(&mut store, batch);
        let mut got = taken(&store);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("bt-1/checkin".to_owned(), 15),
                ("bt-1/checkin".to_owned(), 16),
                ("gw-1/motion".to_owned(), 1),
                ("gw-1/motion".to_owned(), 30),
                // No band watches heart rate: only the device's latest.
                ("wr-1/heart_rate".to_owned(), 6),
            ]
        );
    }

    #[test]
    fn watched_vitals_all_reach_alerting_and_duplicates_never_do() {
        let (_dir, mut store) = temp_store();
        store.feed_alerting(Some([ReadingType::HeartRate].into()));
        commit(&mut store, vec![heart_rate(5), heart_rate(6)]);
        assert_eq!(taken(&store).len(), 2);
        let ids = store.take_feed(usize::MAX).unwrap().ids();
        store.finish_feed(&ids).unwrap();
        // A resend: stored once, told once.
        commit(&mut store, vec![heart_rate(5), heart_rate(6)]);
        assert!(store.take_feed(usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn the_feed_is_a_queue_rows_stay_until_finished() {
        let (_dir, mut store) = feeding();
        commit(&mut store, vec![motion("gw-1", "r-1", 1)]);
        let first = store.take_feed(10).unwrap();
        assert_eq!(first.len(), 1);
        // Committed after the take, before the finish: not lost.
        commit(&mut store, vec![motion("gw-2", "r-2", 2)]);
        // Not finished (a crash): taken again.
        assert_eq!(store.take_feed(10).unwrap().len(), 2);
        store.finish_feed(&first.ids()).unwrap();
        let rest = store.take_feed(10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest.rows[0].facts.readings[0].device_id.as_str(), "gw-2");
        assert_eq!(store.feed_backlog().unwrap(), 1);
        assert!(store.feed_oldest().unwrap().is_some());
        store.finish_feed(&rest.ids()).unwrap();
        assert_eq!(store.feed_backlog().unwrap(), 0);
        assert_eq!(store.feed_oldest().unwrap(), None);
    }

    #[test]
    fn an_unreadable_row_is_reported_not_blocking() {
        let (_dir, mut store) = feeding();
        store
            .conn
            .execute(
                "INSERT INTO alerting_feed (partition, committed_ms, facts) VALUES (0, 0, 'not json')",
                [],
            )
            .unwrap();
        commit(&mut store, vec![motion("gw-1", "r-1", 1)]);
        let take = store.take_feed(10).unwrap();
        assert_eq!(take.unreadable.len(), 1);
        assert_eq!(take.rows.len(), 1);
        store.finish_feed(&take.ids()).unwrap();
        assert!(store.take_feed(10).unwrap().is_empty());
    }

    #[test]
    fn without_alerting_no_feed_is_written() {
        let (_dir, mut store) = temp_store();
        commit(&mut store, vec![motion("gw-1", "r-1", 1)]);
        assert_eq!(store.feed_backlog().unwrap(), 0);
    }

    #[test]
    fn a_status_goes_to_the_partition_of_its_resident() {
        let (_dir, mut store) = feeding();
        let r1 = ResidentId::new("r-1").unwrap();
        store
            .commit_batch(&Batch {
                statuses: vec![StatusUpdate {
                    device_id: DeviceId::new("gw-1").unwrap(),
                    resident_id: Some(r1.clone()),
                    status: DeviceStatus {
                        online: false,
                        battery_pct: Some(50),
                        rssi_dbm: None,
                        firmware: None,
                    },
                    received_at: at(3),
                }],
                ..Batch::default()
            })
            .unwrap();
        let partition: i64 = store
            .conn
            .query_row("SELECT partition FROM alerting_feed", [], |r| r.get(0))
            .unwrap();
        assert_eq!(partition, i64::from(partition_of(&r1)));
        let take = store.take_feed(10).unwrap();
        let status = &take.rows[0].facts.statuses[0];
        assert!(!status.status.online);
        assert_eq!(status.received_at, at(3));
    }
}
