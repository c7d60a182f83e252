//! Evaluator utilisation reports (DESIGN §6), computed from the
//! resident-day rollups and the roster, never from raw readings.
//!
//! [`compute`] is a pure function over rows; [`output`] renders the result
//! as CSV, JSON or a self-contained HTML page ([`html`], its figures
//! formatted for people by [`format`]); [`pseudonym`] turns resident ids into keyed pseudonyms;
//! [`fhir`] renders a resident's vital signs as a FHIR R4 Bundle for clinicians.
//! Definitions: docs/REPORTS.md.

pub mod definitions;
pub mod fhir;
pub mod format;
pub mod html;
pub mod metrics;
pub mod output;
pub mod pseudonym;

pub use metrics::{
    ALL_REGIONS, Cell, Counts, Granularity, MIN_RESIDENTS, Report, ResidentRow, WHOLE_RANGE,
    aggregate, compute,
};
pub use pseudonym::{PseudonymKey, load_or_create_key};

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("pseudonym key: {0}")]
    Key(String),
    #[error("report range: {0}")]
    Range(String),
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reading the store: {0}")]
    Store(#[from] ondol_store::StoreError),
}

/// The utilisation report over `from..=to` straight from the store: the
/// roster, the day and alert rollups, then [`compute`]. What `ondol report
/// utilisation` and the HTTP API both run; `phase` hears what it is doing
/// (the CLI shows it on a terminal).
pub fn utilisation(
    store: &ondol_store::Store,
    from: jiff::civil::Date,
    to: jiff::civil::Date,
    granularity: Granularity,
    key: &PseudonymKey,
    phase: &mut dyn FnMut(&str),
) -> Result<Report, ReportError> {
    let roster = store.load_roster()?;
    phase(&format!(
        "reading day rollups of {} residents",
        roster.residents.len()
    ));
    let days = store.day_facts(from, to)?;
    phase(&format!(
        "reading alerts ({} resident-days read)",
        days.len()
    ));
    let alerts = store.alert_facts(from, to)?;
    phase(&format!(
        "computing over {} resident-days and {} alerts",
        days.len(),
        alerts.len()
    ));
    compute(
        &roster.residents,
        &days,
        &alerts,
        from,
        to,
        granularity,
        key,
    )
}
