//! Evaluator utilisation reports (DESIGN §6), computed from the
//! resident-day rollups and the roster, never from raw readings.
//!
//! [`compute`] is a pure function over rows; [`output`] renders the result
//! as CSV, JSON or a self-contained HTML page ([`html`]); [`pseudonym`] turns resident ids into keyed pseudonyms;
//! [`fhir`] renders a resident's vital signs as a FHIR R4 Bundle for clinicians.
//! Definitions: docs/REPORTS.md.

pub mod definitions;
pub mod fhir;
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
}
