//! Range reads of the resident-day rollups (DESIGN §6) for evaluator
//! reports: one pass over the rollup tables, never over raw readings.

use jiff::civil::Date;
use rusqlite::params;

use ondol_model::ResidentId;

use crate::Store;
use crate::error::StoreError;
use crate::roster_db::{invalid, parse_id};

/// The ingest and check-in part of one resident-day rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFact {
    pub resident_id: ResidentId,
    pub local_date: Date,
    pub active: bool,
    /// Local hours with at least one reading (0..=24).
    pub hours_with_data: u32,
    pub checkin_done: bool,
    pub satisfaction_sum: u64,
    pub satisfaction_count: u64,
}

/// One alert, on the local date it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFact {
    pub resident_id: ResidentId,
    pub local_date: Date,
    pub rule: String,
    pub seconds_to_ack: Option<u64>,
    pub seconds_to_resolve: Option<u64>,
    pub outcome: Option<String>,
}

fn parse_date(text: &str, table: &'static str) -> Result<Date, StoreError> {
    text.parse()
        .map_err(|e| invalid(table, text.to_string(), format!("local_date: {e}")))
}

impl Store {
    /// Every resident-day rollup with `from <= local_date <= to`.
    pub fn day_facts(&self, from: Date, to: Date) -> Result<Vec<DayFact>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT resident_id, local_date, active, hours_mask, checkin_done, \
                 satisfaction_sum, satisfaction_count FROM resident_days \
                 WHERE local_date >= ?1 AND local_date <= ?2",
            )
            .map_err(StoreError::sqlite("preparing the day-rollup range query"))?;
        let rows = stmt
            .query_map(params![from.to_string(), to.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, bool>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, bool>(4)?,
                    row.get::<_, u64>(5)?,
                    row.get::<_, u64>(6)?,
                ))
            })
            .map_err(StoreError::sqlite("reading day rollups"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, date, active, mask, checkin_done, sat_sum, sat_count) =
                row.map_err(StoreError::sqlite("reading day rollups"))?;
            out.push(DayFact {
                resident_id: parse_id(&id, "resident_days", || format!("{id} {date}"))?,
                local_date: parse_date(&date, "resident_days")?,
                active,
                hours_with_data: mask.count_ones(),
                checkin_done,
                satisfaction_sum: sat_sum,
                satisfaction_count: sat_count,
            });
        }
        Ok(out)
    }

    /// Every alert fact with `from <= local_date <= to`.
    pub fn alert_facts(&self, from: Date, to: Date) -> Result<Vec<AlertFact>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT resident_id, local_date, rule, seconds_to_ack, seconds_to_resolve, outcome \
                 FROM resident_day_alerts WHERE local_date >= ?1 AND local_date <= ?2",
            )
            .map_err(StoreError::sqlite("preparing the alert-rollup range query"))?;
        let rows = stmt
            .query_map(params![from.to_string(), to.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(StoreError::sqlite("reading alert rollups"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, date, rule, ack, resolve, outcome) =
                row.map_err(StoreError::sqlite("reading alert rollups"))?;
            out.push(AlertFact {
                resident_id: parse_id(&id, "resident_day_alerts", || format!("{id} {date}"))?,
                local_date: parse_date(&date, "resident_day_alerts")?,
                rule,
                // A negative duration (clock step) is treated as zero.
                seconds_to_ack: ack.map(|s| u64::try_from(s).unwrap_or(0)),
                seconds_to_resolve: resolve.map(|s| u64::try_from(s).unwrap_or(0)),
                outcome,
            });
        }
        Ok(out)
    }
}
