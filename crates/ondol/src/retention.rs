//! Explicit retention (`[retention]`): how long raw readings and rejections
//! are kept. Rollups, alerts and the roster are kept forever, so evaluator
//! reports over the whole pilot never lose a day.
//!
//! By default raw readings are kept for the whole pilot (never deleted) and
//! rejections for 90 days: they are diagnostics for device makers, and
//! their payload excerpts may hold personal data. A configured deletion runs
//! at start-up and then every `interval`, in every process that runs ingest;
//! each pass is logged with what it deleted and counted in
//! `ondol_retention_deleted_rows_total{table}`. Nothing is deleted silently.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ondol_model::Clock;
use ondol_store::Store;
use ondol_store::retention::Pruned;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The `[retention]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw readings measured longer ago than this are deleted; `0s` keeps
    /// them for the whole pilot.
    #[serde(with = "ondol_model::serde_duration")]
    pub readings_max_age: Duration,
    /// Rejections received longer ago than this are deleted; `0s` keeps them.
    #[serde(with = "ondol_model::serde_duration")]
    pub rejections_max_age: Duration,
    /// How often deletion runs.
    #[serde(with = "ondol_model::serde_duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            readings_max_age: Duration::ZERO,
            rejections_max_age: Duration::from_secs(90 * 86_400),
            interval: Duration::from_secs(3600),
        }
    }
}

impl RetentionConfig {
    /// Problems as (key within the section, message). `ingest_max_age` is
    /// how old a reading ingest still accepts.
    pub fn problems(&self, ingest_max_age: Duration) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.readings_max_age.is_zero() && self.readings_max_age <= ingest_max_age {
            out.push((
                "readings_max_age",
                format!(
                    "is {} but ingest.max_age is {}: a device resending a reading that was already deleted would be counted again in the rollups; keep readings longer than ingest accepts them (or \"0s\" to keep them)",
                    human(self.readings_max_age),
                    human(ingest_max_age)
                ),
            ));
        }
        if self.interval.is_zero() {
            out.push(("interval", "must be longer than 0s".into()));
        }
        out
    }

    fn keeps_everything(&self) -> bool {
        self.readings_max_age.is_zero() && self.rejections_max_age.is_zero()
    }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else {
        format!("{secs}s")
    }
}

fn before(now: Timestamp, age: Duration) -> Option<Timestamp> {
    if age.is_zero() {
        return None;
    }
    let age = SignedDuration::try_from(age).ok()?;
    now.checked_sub(age).ok()
}

/// One pass: deletes what is older than the configured ages at `now`.
pub fn prune(
    store: &mut Store,
    config: &RetentionConfig,
    now: Timestamp,
) -> Result<Pruned, ondol_store::StoreError> {
    let mut pruned = Pruned::default();
    if let Some(cutoff) = before(now, config.readings_max_age) {
        pruned = store.prune_readings_before(cutoff)?;
    }
    if let Some(cutoff) = before(now, config.rejections_max_age) {
        pruned.rejections = store.prune_rejections_before(cutoff)?;
    }
    for (table, n) in [
        ("readings", pruned.readings),
        ("reading_keys", pruned.reading_keys),
        ("rejections", pruned.rejections),
    ] {
        metrics::counter!("ondol_retention_deleted_rows_total", "table" => table).increment(n);
    }
    if pruned != Pruned::default() {
        tracing::info!(
            readings = pruned.readings,
            reading_keys = pruned.reading_keys,
            rejections = pruned.rejections,
            readings_before = ?before(now, config.readings_max_age),
            rejections_before = ?before(now, config.rejections_max_age),
            "retention: deleted what is past its retention period (rollups kept)"
        );
    } else {
        tracing::debug!("retention: nothing past its retention period");
    }
    Ok(pruned)
}

/// Runs [`prune`] at once and then every `interval` on its own connection
/// to the store at `database`, until `shutdown`. Returns `None` (after
/// saying so) when the configuration keeps everything.
pub fn spawn(
    config: RetentionConfig,
    database: PathBuf,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.keeps_everything() {
        tracing::info!("retention: raw readings and rejections are kept (retention.* = \"0s\")");
        return None;
    }
    tracing::info!(
        readings_max_age = %human(config.readings_max_age),
        rejections_max_age = %human(config.rejections_max_age),
        "retention: deleting raw readings and rejections past these ages (\"0s\" = kept); rollups are kept"
    );
    Some(tokio::spawn(async move {
        let mut store = None;
        loop {
            let pass = {
                let config = config.clone();
                let database = database.clone();
                let now = clock.now();
                let taken = store.take();
                tokio::task::spawn_blocking(move || {
                    let mut opened = match taken {
                        Some(store) => store,
                        None => Store::open(&database)?,
                    };
                    let result = prune(&mut opened, &config, now);
                    Ok::<_, ondol_store::StoreError>((opened, result))
                })
                .await
            };
            match pass {
                Ok(Ok((opened, result))) => {
                    store = Some(opened);
                    if let Err(error) = result {
                        tracing::error!(error = %error, "retention: a deletion pass failed; it runs again next interval");
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(error = %error, "retention: cannot open the store; trying again next interval");
                }
                Err(error) => {
                    tracing::error!(error = %error, "retention: the deletion pass panicked");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(config.interval) => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jiff::civil::date;
    use jiff::tz::TimeZone;
    use ondol_model::reading::{ReadingType, ReadingValue};
    use ondol_model::{DeviceId, ManualClock, Reading, ReasonCode, ResidentId};
    use ondol_store::{Batch, NewReading, NewRejection};

    use super::*;

    fn day(d: i8) -> Timestamp {
        date(2026, 3, d)
            .at(12, 0, 0, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp()
    }

    fn store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let roster = crate::roster::parse(
            "[[residents]]\nid = \"r-1\"\nname = \"Kept Person\"\ntimezone = \"UTC\"\nregion = \"north\"\n\
             enrolled_from = \"2026-01-01\"\n\n[[devices]]\nid = \"gw-1\"\nresident = \"r-1\"\nkind = \"gateway\"\n",
            "test roster",
        )
        .unwrap();
        store.import_roster(&roster).unwrap();
        let readings = (1..=20)
            .map(|d| NewReading {
                device_id: DeviceId::new("gw-1").unwrap(),
                resident_id: ResidentId::new("r-1").unwrap(),
                reading: Reading {
                    reading_type: ReadingType::HeartRate,
                    value: ReadingValue::Number(70.0),
                    sensor: None,
                    ts: day(d),
                },
                received_at: day(d),
                local_date: date(2026, 3, d),
                local_hour: 12,
                checkin_in_window: false,
                counts_as_activity: false,
            })
            .collect();
        let rejections = (1..=20)
            .map(|d| NewRejection {
                device_id: Some("gw-1".into()),
                topic: "ondol/v1/devices/gw-1/readings".into(),
                reason: ReasonCode::OutOfRange,
                detail: "heart_rate 400 /min is outside 20..250".into(),
                index: Some(0),
                msg_id: None,
                received_at: day(d),
                payload_excerpt: Vec::new(),
            })
            .collect();
        store
            .commit_batch(&Batch {
                readings,
                rejections,
                statuses: Vec::new(),
            })
            .unwrap();
        store
    }

    fn days_kept(store: &Store) -> usize {
        (1..=20)
            .filter(|d| {
                store
                    .resident_day(&ResidentId::new("r-1").unwrap(), date(2026, 3, *d))
                    .unwrap()
                    .is_some_and(|r| r.readings == 1)
            })
            .count()
    }

    #[test]
    fn the_defaults_keep_readings_and_delete_rejections_after_90_days() {
        let mut store = store();
        let clock = ManualClock::new(day(20));
        let config = RetentionConfig::default();
        assert_eq!(
            prune(&mut store, &config, clock.now()).unwrap(),
            Pruned::default()
        );
        // 100 days later: every rejection is older than 90 days, every
        // reading is still there.
        clock.advance(SignedDuration::from_hours(24 * 100));
        let pruned = prune(&mut store, &config, clock.now()).unwrap();
        assert_eq!(pruned.readings, 0);
        assert_eq!(pruned.rejections, 20);
        assert_eq!(store.count_readings().unwrap(), 20);
        assert_eq!(days_kept(&store), 20);
    }

    #[test]
    fn a_configured_period_deletes_raw_readings_as_time_passes_and_keeps_rollups() {
        let mut store = store();
        let config = RetentionConfig {
            readings_max_age: Duration::from_secs(40 * 86_400),
            rejections_max_age: Duration::ZERO,
            interval: Duration::from_secs(3600),
        };
        // 2026-04-20 12:00: readings up to 2026-03-10 12:00 are older than
        // 40 days (the one exactly 40 days old is kept).
        let clock = ManualClock::new(day(20));
        clock.set(
            date(2026, 4, 20)
                .at(12, 0, 0, 0)
                .to_zoned(TimeZone::UTC)
                .unwrap()
                .timestamp(),
        );
        let pruned = prune(&mut store, &config, clock.now()).unwrap();
        assert_eq!(pruned.readings, 10);
        assert_eq!(store.count_readings().unwrap(), 10);
        clock.advance(SignedDuration::from_hours(24 * 5));
        assert_eq!(prune(&mut store, &config, clock.now()).unwrap().readings, 5);
        assert_eq!(store.count_readings().unwrap(), 5);
        // Rollups and rejections stay.
        assert_eq!(days_kept(&store), 20);
        assert_eq!(store.recent_rejections(100).unwrap().len(), 20);
    }

    #[test]
    fn readings_may_not_be_deleted_while_ingest_still_accepts_them() {
        let config = RetentionConfig {
            readings_max_age: Duration::from_secs(30 * 86_400),
            ..RetentionConfig::default()
        };
        let problems = config.problems(Duration::from_secs(30 * 86_400));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "readings_max_age");
        assert!(
            problems[0].1.contains("ingest.max_age"),
            "{}",
            problems[0].1
        );
        assert!(
            RetentionConfig::default()
                .problems(Duration::from_secs(30 * 86_400))
                .is_empty()
        );
    }
}
