//! `GET /reports/utilisation`: the evaluator report of DESIGN §6, computed
//! by ondol-report exactly as `ondol report utilisation` computes it.
//! Residents appear only under keyed pseudonyms.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use serde::Deserialize;
use utoipa::IntoParams;

use ondol_model::roster::StaffRole;
use ondol_report::{Granularity, ReportError, html, output};

use crate::context::{Audited, Ctx};
use crate::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UtilisationParams {
    /// First local date (included), YYYY-MM-DD.
    #[param(format = Date, example = "2026-01-01")]
    pub from: String,
    /// Last local date (included), YYYY-MM-DD; at most 800 days after `from`.
    #[param(format = Date, example = "2026-06-30")]
    pub to: String,
    /// day, week (ISO) or month (default).
    #[param(pattern = "^(day|week|month)$")]
    pub granularity: Option<String>,
    /// json (default: cells and per-resident rows), csv (one table, see
    /// `table`) or html (the self-contained report with charts).
    #[param(pattern = "^(json|csv|html)$")]
    pub format: Option<String>,
    /// With csv: `cells` (default: per period and region) or `residents`
    /// (the per-resident table under pseudonyms).
    #[param(pattern = "^(cells|residents)$")]
    pub table: Option<String>,
    /// The breakdown of each period besides the row over all regions; only
    /// `region` (the default) exists.
    #[param(pattern = "^region$")]
    pub by: Option<String>,
}

/// The answer's encoding.
enum Format {
    Json,
    Csv,
    Html,
}

/// Longest range one request may ask for, in days (two years and a bit).
const MAX_RANGE_DAYS: i32 = 800;

/// Utilisation per period and region (evaluators and admins).
#[utoipa::path(
    get,
    path = "/api/v1/reports/utilisation",
    params(UtilisationParams),
    responses(
        (status = 200, description = "The report: JSON, CSV (format=csv) or a self-contained HTML page with charts (format=html)", content_type = "application/json", body = Object),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Only evaluators and admins", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "reports"
)]
pub async fn utilisation(
    ctx: Ctx,
    params: Result<Query<UtilisationParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = ctx.state().pseudonym_key().cloned();
    ctx.audited(None, move |store, principal, _| {
        principal.require(&[StaffRole::Evaluator, StaffRole::Admin])?;
        let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let date = |key: &str, value: &str| {
            value.parse::<Date>().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a date such as 2026-01-31"))
            })
        };
        let from = date("from", &params.from)?;
        let to = date("to", &params.to)?;
        if from > to {
            return Err(ApiError::BadRequest("from is after to".into()));
        }
        if (to - from).get_days() > MAX_RANGE_DAYS {
            return Err(ApiError::BadRequest(format!(
                "the range is longer than {MAX_RANGE_DAYS} days"
            )));
        }
        let granularity = match params.granularity.as_deref() {
            None => Granularity::Month,
            Some(text) => Granularity::parse(text).ok_or_else(|| {
                ApiError::BadRequest(format!("granularity {text:?} is not day, week or month"))
            })?,
        };
        if let Some(by) = params.by.as_deref().filter(|by| *by != "region") {
            return Err(ApiError::BadRequest(format!(
                "by {by:?} is not region (the only breakdown)"
            )));
        }
        let residents_table = match params.table.as_deref() {
            None | Some("cells") => false,
            Some("residents") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "table {other:?} is not cells or residents"
                )));
            }
        };
        let format = match params.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("html") => Format::Html,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "format {other:?} is not json, csv or html"
                )));
            }
        };
        let key = key.ok_or_else(|| {
            ApiError::NotImplemented("no pseudonym key: reports are off in this process".into())
        })?;
        let report = ondol_report::utilisation(store, from, to, granularity, &key, &mut |_| {})
            .map_err(|error| match error {
                ReportError::Range(message) => ApiError::BadRequest(message),
                other => ApiError::internal("computing a report", other),
            })?;
        let response = match format {
            Format::Csv => (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                if residents_table {
                    output::residents_csv(&report)
                } else {
                    output::cells_csv(&report)
                },
            )
                .into_response(),
            Format::Html => (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html::render(&report),
            )
                .into_response(),
            Format::Json => {
                let json = output::json(&report)
                    .map_err(|error| ApiError::internal("encoding a report", error))?;
                ([(header::CONTENT_TYPE, "application/json")], json).into_response()
            }
        };
        // Pseudonymised: no resident's identity is in the answer.
        Ok(Audited::new(response, Vec::new()))
    })
    .await
}
