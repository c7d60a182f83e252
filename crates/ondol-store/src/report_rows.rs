//! Range reads of the resident-day rollups (DESIGN §6) for evaluator
//! reports: one pass over the rollup tables, never over raw readings.

use std::collections::HashMap;

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

/// Bytes of the database file a range read may map into memory: two years
/// of a thousand residents' rollups are read through the page cache without
/// a read() per page (measured: about half the time of a whole-range read).
const MMAP_BYTES: i64 = 1 << 30;

/// Parsed ids and dates, so a range read of hundreds of thousands of rows
/// parses and validates each distinct resident id and date once.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, ResidentId>,
    dates: HashMap<String, Date>,
}

impl Interner {
    fn id(&mut self, text: &str, table: &'static str) -> Result<ResidentId, StoreError> {
        if let Some(id) = self.ids.get(text) {
            return Ok(id.clone());
        }
        let id: ResidentId = parse_id(text, table, || text.to_string())?;
        self.ids.insert(text.to_string(), id.clone());
        Ok(id)
    }

    fn date(&mut self, text: &str, table: &'static str) -> Result<Date, StoreError> {
        if let Some(date) = self.dates.get(text) {
            return Ok(*date);
        }
        let date = parse_date(text, table)?;
        self.dates.insert(text.to_string(), date);
        Ok(date)
    }
}

fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(Into::into)
}

type DayFields<'r> = (&'r str, &'r str, bool, u32, bool, u64, u64);

fn day_fields<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<DayFields<'r>> {
    Ok((
        text(row, 0)?,
        text(row, 1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

type AlertFields<'r> = (
    &'r str,
    &'r str,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn alert_fields<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<AlertFields<'r>> {
    Ok((
        text(row, 0)?,
        text(row, 1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

impl Store {
    fn map_for_range_reads(&self) -> Result<(), StoreError> {
        // A file database answers with the size granted (not needed); an
        // in-memory one answers nothing.
        let during = "mapping the database for range reads";
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA mmap_size = {MMAP_BYTES}"))
            .map_err(StoreError::sqlite(during))?;
        let mut rows = stmt.query([]).map_err(StoreError::sqlite(during))?;
        rows.next().map_err(StoreError::sqlite(during))?;
        Ok(())
    }

    /// Every resident-day rollup with `from <= local_date <= to`.
    pub fn day_facts(&self, from: Date, to: Date) -> Result<Vec<DayFact>, StoreError> {
        self.map_for_range_reads()?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT resident_id, local_date, active, hours_mask, checkin_done, \
                 satisfaction_sum, satisfaction_count FROM resident_days \
                 WHERE local_date >= ?1 AND local_date <= ?2",
            )
            .map_err(StoreError::sqlite("preparing the day-rollup range query"))?;
        let table = "resident_days";
        let mut names = Interner::default();
        let mut rows = stmt
            .query(params![from.to_string(), to.to_string()])
            .map_err(StoreError::sqlite("reading day rollups"))?;
        let mut out = Vec::new();
        while let Some(row) = rows
            .next()
            .map_err(StoreError::sqlite("reading day rollups"))?
        {
            let (id, date, active, mask, checkin_done, sat_sum, sat_count) =
                day_fields(row).map_err(StoreError::sqlite("reading day rollups"))?;
            out.push(DayFact {
                resident_id: names.id(id, table)?,
                local_date: names.date(date, table)?,
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
        self.map_for_range_reads()?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT resident_id, local_date, rule, seconds_to_ack, seconds_to_resolve, outcome \
                 FROM resident_day_alerts WHERE local_date >= ?1 AND local_date <= ?2",
            )
            .map_err(StoreError::sqlite("preparing the alert-rollup range query"))?;
        let table = "resident_day_alerts";
        let mut names = Interner::default();
        let mut rows = stmt
            .query(params![from.to_string(), to.to_string()])
            .map_err(StoreError::sqlite("reading alert rollups"))?;
        let mut out = Vec::new();
        while let Some(row) = rows
            .next()
            .map_err(StoreError::sqlite("reading alert rollups"))?
        {
            let (id, date, rule, ack, resolve, outcome) =
                alert_fields(row).map_err(StoreError::sqlite("reading alert rollups"))?;
            out.push(AlertFact {
                resident_id: names.id(id, table)?,
                local_date: names.date(date, table)?,
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
