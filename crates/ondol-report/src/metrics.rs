//! The metric computation of DESIGN §6 as a pure function over rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::ToSpan;
use jiff::civil::Date;
use serde::Serialize;

use ondol_model::ResidentId;
use ondol_model::alert::{Outcome, Rule};
use ondol_model::roster::Resident;
use ondol_store::report_rows::{AlertFact, DayFact};

use crate::ReportError;
use crate::pseudonym::PseudonymKey;

/// Cells describing fewer residents than this are suppressed.
pub const MIN_RESIDENTS: usize = 5;
/// The `period` label of the whole-range rows.
pub const WHOLE_RANGE: &str = "all";
/// The `region` label of the rows over every region.
pub const ALL_REGIONS: &str = "all";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    pub fn parse(text: &str) -> Option<Granularity> {
        match text {
            "day" => Some(Granularity::Day),
            "week" => Some(Granularity::Week),
            "month" => Some(Granularity::Month),
            _ => None,
        }
    }

    /// The first day of the period holding `date` (weeks start on Monday,
    /// ISO 8601).
    pub fn period_start(self, date: Date) -> Date {
        match self {
            Granularity::Day => date,
            Granularity::Week => date
                .checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
                .unwrap_or(date),
            Granularity::Month => date.first_of_month(),
        }
    }

    /// The last day of the period starting at `start`.
    pub fn period_end(self, start: Date) -> Date {
        match self {
            Granularity::Day => start,
            Granularity::Week => start.checked_add(6.days()).unwrap_or(start),
            Granularity::Month => start.last_of_month(),
        }
    }
}

/// The additive counts behind one cell, before any ratio or suppression.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub residents: BTreeSet<ResidentId>,
    pub resident_days_enrolled: u64,
    pub active_days: u64,
    pub hours_with_data: u64,
    pub checkins_expected: u64,
    pub checkins_done: u64,
    /// Alerts opened on enrolled days, by rule name.
    pub alerts_by_rule: BTreeMap<String, u64>,
    pub seconds_to_ack: Vec<u64>,
    pub seconds_to_resolve: Vec<u64>,
    /// Resolved alerts by outcome name.
    pub outcomes: BTreeMap<String, u64>,
    pub satisfaction_sum: u64,
    pub satisfaction_count: u64,
}

/// One row of the report: a period (or the whole range) × a region (or all).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// `all` for the whole range, else the first day of the period.
    pub period: String,
    /// The first and last day the row covers, clipped to the range.
    pub from: Date,
    pub to: Date,
    pub region: String,
    /// Fewer than [`MIN_RESIDENTS`] residents: every figure is withheld.
    pub suppressed: bool,
    pub figures: Option<Figures>,
}

/// The metrics of DESIGN §6 for one cell. A ratio with a zero denominator
/// is `None` (undefined, not zero).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub residents_enrolled: u64,
    pub resident_days_enrolled: u64,
    pub active_days: u64,
    pub active_day_ratio: Option<f64>,
    pub hours_with_data: u64,
    pub data_completeness: Option<f64>,
    pub checkins_expected: u64,
    pub checkins_done: u64,
    pub checkin_adherence: Option<f64>,
    /// Every rule of DESIGN §4, zero included.
    pub alerts: BTreeMap<String, u64>,
    pub alerts_per_100_resident_days: BTreeMap<String, Option<f64>>,
    pub median_seconds_to_ack: Option<f64>,
    pub p90_seconds_to_ack: Option<u64>,
    pub median_seconds_to_resolve: Option<f64>,
    pub resolved: u64,
    /// Every outcome, zero included.
    pub outcomes: BTreeMap<String, u64>,
    pub false_alarm_ratio: Option<f64>,
    pub satisfaction_responses: u64,
    pub satisfaction_mean: Option<f64>,
}

/// One resident over the whole range, under a pseudonym only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResidentRow {
    pub pseudonym: String,
    pub resident_days_enrolled: u64,
    pub active_day_ratio: Option<f64>,
    pub data_completeness: Option<f64>,
    pub checkin_adherence: Option<f64>,
    pub alerts: u64,
    pub satisfaction_responses: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub from: Date,
    pub to: Date,
    pub granularity: Granularity,
    pub min_residents: usize,
    /// The whole range first, then each period in order; within each, the
    /// row over all regions first, then one per region.
    pub cells: Vec<Cell>,
    /// The per-resident table; empty when `residents_suppressed`.
    pub residents: Vec<ResidentRow>,
    /// The report covers fewer than [`MIN_RESIDENTS`] residents, so the
    /// per-resident table is withheld: its rows would describe the whole
    /// population of a suppressed cell (docs/REPORTS.md).
    pub residents_suppressed: bool,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The median of `values` (the mean of the two middle values for an even
/// count); `None` when empty.
pub fn median(values: &[u64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        v.get(n / 2).map(|x| *x as f64)
    } else {
        let a = *v.get(n / 2 - 1)?;
        let b = *v.get(n / 2)?;
        Some((a as f64 + b as f64) / 2.0)
    }
}

/// The nearest-rank 90th percentile: the ⌈0.9·n⌉-th smallest value.
pub fn p90(values: &[u64]) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (9 * v.len()).div_ceil(10);
    rank.checked_sub(1).and_then(|i| v.get(i)).copied()
}

impl Counts {
    /// Counts one enrolled day; the caller adds the resident to
    /// `residents` once per period.
    fn add_day(&mut self, expected: bool, fact: Option<&DayFact>) {
        self.resident_days_enrolled += 1;
        if expected {
            self.checkins_expected += 1;
        }
        if let Some(day) = fact {
            self.active_days += u64::from(day.active);
            self.hours_with_data += u64::from(day.hours_with_data.min(24));
            if expected && day.checkin_done {
                self.checkins_done += 1;
            }
            self.satisfaction_sum += day.satisfaction_sum;
            self.satisfaction_count += day.satisfaction_count;
        }
    }

    fn add_alert(&mut self, alert: &AlertFact) {
        *self.alerts_by_rule.entry(alert.rule.clone()).or_default() += 1;
        if let Some(s) = alert.seconds_to_ack {
            self.seconds_to_ack.push(s);
        }
        if let Some(outcome) = &alert.outcome {
            *self.outcomes.entry(outcome.clone()).or_default() += 1;
            if let Some(s) = alert.seconds_to_resolve {
                self.seconds_to_resolve.push(s);
            }
        }
    }

    /// Adds `other` to these counts (residents as a set union).
    pub fn merge(&mut self, other: &Counts) {
        for r in &other.residents {
            if !self.residents.contains(r) {
                self.residents.insert(r.clone());
            }
        }
        self.resident_days_enrolled += other.resident_days_enrolled;
        self.active_days += other.active_days;
        self.hours_with_data += other.hours_with_data;
        self.checkins_expected += other.checkins_expected;
        self.checkins_done += other.checkins_done;
        for (rule, n) in &other.alerts_by_rule {
            *self.alerts_by_rule.entry(rule.clone()).or_default() += n;
        }
        self.seconds_to_ack.extend_from_slice(&other.seconds_to_ack);
        self.seconds_to_resolve
            .extend_from_slice(&other.seconds_to_resolve);
        for (outcome, n) in &other.outcomes {
            *self.outcomes.entry(outcome.clone()).or_default() += n;
        }
        self.satisfaction_sum += other.satisfaction_sum;
        self.satisfaction_count += other.satisfaction_count;
    }

    pub fn alerts_total(&self) -> u64 {
        self.alerts_by_rule.values().sum()
    }

    pub fn figures(&self) -> Figures {
        let mut alerts: BTreeMap<String, u64> = Rule::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), 0))
            .collect();
        for (rule, n) in &self.alerts_by_rule {
            *alerts.entry(rule.clone()).or_default() += n;
        }
        let per_100 = alerts
            .iter()
            .map(|(rule, n)| (rule.clone(), ratio(*n * 100, self.resident_days_enrolled)))
            .collect();
        let mut outcomes: BTreeMap<String, u64> = Outcome::ALL
            .iter()
            .map(|o| (o.as_str().to_string(), 0))
            .collect();
        for (outcome, n) in &self.outcomes {
            *outcomes.entry(outcome.clone()).or_default() += n;
        }
        let resolved: u64 = self.outcomes.values().sum();
        let false_alarms = [Outcome::FalseAlarmDevice, Outcome::FalseAlarmBehaviour]
            .iter()
            .map(|o| self.outcomes.get(o.as_str()).copied().unwrap_or(0))
            .sum();
        Figures {
            residents_enrolled: self.residents.len() as u64,
            resident_days_enrolled: self.resident_days_enrolled,
            active_days: self.active_days,
            active_day_ratio: ratio(self.active_days, self.resident_days_enrolled),
            hours_with_data: self.hours_with_data,
            data_completeness: ratio(self.hours_with_data, 24 * self.resident_days_enrolled),
            checkins_expected: self.checkins_expected,
            checkins_done: self.checkins_done,
            checkin_adherence: ratio(self.checkins_done, self.checkins_expected),
            alerts,
            alerts_per_100_resident_days: per_100,
            median_seconds_to_ack: median(&self.seconds_to_ack),
            p90_seconds_to_ack: p90(&self.seconds_to_ack),
            median_seconds_to_resolve: median(&self.seconds_to_resolve),
            resolved,
            outcomes,
            false_alarm_ratio: ratio(false_alarms, resolved),
            satisfaction_responses: self.satisfaction_count,
            satisfaction_mean: ratio(self.satisfaction_sum, self.satisfaction_count),
        }
    }
}

/// Whether `resident` counts as enrolled on `date`: inside the enrolment
/// (both ends included) and not inside an away period.
pub fn enrolled_on(resident: &Resident, date: Date) -> bool {
    date >= resident.enrolled_from
        && resident.enrolled_until.is_none_or(|until| date <= until)
        && !resident
            .away
            .iter()
            .any(|a| a.from <= date && date <= a.until)
}

/// Key of a cell: (period start or `None` for the whole range, region or
/// `None` for every region).
pub type CellKey = (Option<Date>, Option<String>);

/// The raw counts of every cell, and per resident over the whole range.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub cells: BTreeMap<CellKey, Counts>,
    pub per_resident: BTreeMap<ResidentId, Counts>,
}

/// Adds every enrolled resident-day in `from..=to` to its cells. Rollup rows
/// and alerts on days a resident is not enrolled (before enrolment, after
/// it, away) are left out of every figure.
pub fn aggregate(
    residents: &[Resident],
    days: &[DayFact],
    alerts: &[AlertFact],
    from: Date,
    to: Date,
    granularity: Granularity,
) -> Aggregate {
    let mut day_index: HashMap<&ResidentId, HashMap<Date, &DayFact>> = HashMap::new();
    for d in days {
        day_index
            .entry(&d.resident_id)
            .or_default()
            .insert(d.local_date, d);
    }
    let mut alert_index: HashMap<&ResidentId, HashMap<Date, Vec<&AlertFact>>> = HashMap::new();
    for a in alerts {
        alert_index
            .entry(&a.resident_id)
            .or_default()
            .entry(a.local_date)
            .or_default()
            .push(a);
    }
    let no_days = HashMap::new();
    let no_alerts = HashMap::new();
    let mut out = Aggregate::default();
    for resident in residents {
        let start = from.max(resident.enrolled_from);
        let end = resident.enrolled_until.map_or(to, |u| u.min(to));
        if start > end {
            continue;
        }
        let expects_checkin = resident.checkin.window.is_some();
        let my_days = day_index.get(&resident.id).unwrap_or(&no_days);
        let my_alerts = alert_index.get(&resident.id).unwrap_or(&no_alerts);
        // This resident's counts per period, merged into the cells once.
        let mut periods: BTreeMap<Date, Counts> = BTreeMap::new();
        // Day by day with `tomorrow` (cheaper than span arithmetic), the
        // current period's counts at hand until the period changes.
        let mut date = start;
        let mut period = granularity.period_start(date);
        let mut counts = Counts::default();
        loop {
            if enrolled_on(resident, date) {
                counts.add_day(expects_checkin, my_days.get(&date).copied());
                for a in my_alerts.get(&date).into_iter().flatten() {
                    counts.add_alert(a);
                }
            }
            let next = match date.tomorrow() {
                Ok(next) if next <= end => next,
                _ => break,
            };
            let next_period = granularity.period_start(next);
            if next_period != period {
                if counts.resident_days_enrolled > 0 {
                    counts.residents.insert(resident.id.clone());
                    periods.insert(period, std::mem::take(&mut counts));
                }
                period = next_period;
            }
            date = next;
        }
        if counts.resident_days_enrolled > 0 {
            counts.residents.insert(resident.id.clone());
            periods.insert(period, counts);
        }
        if periods.is_empty() {
            continue;
        }
        let mut whole = Counts::default();
        let region = Some(resident.region.clone());
        for (period, counts) in &periods {
            for key in [(Some(*period), region.clone()), (Some(*period), None)] {
                out.cells.entry(key).or_default().merge(counts);
            }
            whole.merge(counts);
        }
        for key in [(None, region.clone()), (None, None)] {
            out.cells.entry(key).or_default().merge(&whole);
        }
        out.per_resident.insert(resident.id.clone(), whole);
    }
    out
}

/// The report of DESIGN §6 over `from..=to` (local dates, both included).
pub fn compute(
    residents: &[Resident],
    days: &[DayFact],
    alerts: &[AlertFact],
    from: Date,
    to: Date,
    granularity: Granularity,
    key: &PseudonymKey,
) -> Result<Report, ReportError> {
    if from > to {
        return Err(ReportError::Range(format!(
            "--from {from} is after --to {to}"
        )));
    }
    let agg = aggregate(residents, days, alerts, from, to, granularity);
    let cells = agg
        .cells
        .iter()
        .map(|((period, region), counts)| {
            let (label, cell_from, cell_to) = match period {
                Some(start) => (
                    start.to_string(),
                    (*start).max(from),
                    granularity.period_end(*start).min(to),
                ),
                None => (WHOLE_RANGE.to_string(), from, to),
            };
            let suppressed = counts.residents.len() < MIN_RESIDENTS;
            Cell {
                period: label,
                from: cell_from,
                to: cell_to,
                region: region.clone().unwrap_or_else(|| ALL_REGIONS.to_string()),
                suppressed,
                figures: (!suppressed).then(|| counts.figures()),
            }
        })
        .collect();
    let mut rows: Vec<ResidentRow> = agg
        .per_resident
        .iter()
        .map(|(id, c)| {
            let f = c.figures();
            ResidentRow {
                pseudonym: key.pseudonym(id),
                resident_days_enrolled: f.resident_days_enrolled,
                active_day_ratio: f.active_day_ratio,
                data_completeness: f.data_completeness,
                checkin_adherence: f.checkin_adherence,
                alerts: c.alerts_total(),
                satisfaction_responses: f.satisfaction_responses,
            }
        })
        .collect();
    // Sorted by pseudonym, so the order says nothing about the ids.
    rows.sort_by(|a, b| a.pseudonym.cmp(&b.pseudonym));
    // Rows carry no region or period, so they cannot rebuild a suppressed
    // region or period cell; but with fewer than MIN_RESIDENTS in the whole
    // report they would rebuild the suppressed whole-range cell.
    let residents_suppressed = rows.len() < MIN_RESIDENTS;
    if residents_suppressed {
        rows.clear();
    }
    Ok(Report {
        from,
        to,
        granularity,
        min_residents: MIN_RESIDENTS,
        cells,
        residents: rows,
        residents_suppressed,
    })
}
