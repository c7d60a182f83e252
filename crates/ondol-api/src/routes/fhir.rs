//! `GET /residents/{id}/fhir`: a resident's vital signs as a FHIR R4 Bundle
//! for clinicians (rendered by `ondol_report::fhir`). The same scope and
//! audit as the readings it is made of.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use ondol_model::{Category, ReadingType, ResidentId};
use ondol_store::{ReadingsQuery, StoredReading};

use crate::context::{Audited, Ctx};
use crate::error::{ApiError, ErrorBody};
use crate::routes::residents::{path_resident, readings_request};

/// Most Observations one Bundle holds; a longer range is refused (400)
/// rather than answered with a Bundle too large to handle.
pub const MAX_OBSERVATIONS: usize = 20_000;

/// The resident's vital signs in a time range as a FHIR R4 Bundle of
/// Observations (LOINC, UCUM; blood pressure as a panel).
#[utoipa::path(
    get,
    path = "/api/v1/residents/{id}/fhir",
    params(
        ("id" = String, Path, description = "Resident id"),
        ("type" = Option<String>, Query, description = "Vital-sign types, comma-separated or repeated (default: every vital sign)"),
        ("from" = Option<String>, Query, description = "RFC 3339; default 7 days before `to`"),
        ("to" = Option<String>, Query, description = "RFC 3339, exclusive; default now"),
    ),
    responses(
        (status = 200, description = "A Bundle of type collection", content_type = "application/fhir+json", body = Object),
        (status = 400, description = "Invalid parameter, or more vital signs than one Bundle holds", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no resident data", body = ErrorBody),
        (status = 404, description = "No such resident in the caller's scope", body = ErrorBody),
        (status = 501, description = "Raw readings are kept in InfluxDB", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "residents"
)]
pub async fn bundle(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = path_resident(id);
    let backend = ctx.state().readings().clone();
    ctx.audited(id.clone(), move |store, principal, now| {
        let (id, params) = readings_request(store, principal, id, query, backend)?;
        if let Some(t) = params.types.iter().find(|t| t.category() != Category::Vital) {
            return Err(ApiError::BadRequest(format!(
                "{} is not a vital sign; the FHIR export holds vital signs only",
                t.as_str()
            )));
        }
        let types: Vec<ReadingType> = if params.types.is_empty() {
            ReadingType::ALL
                .into_iter()
                .filter(|t| t.category() == Category::Vital)
                .collect()
        } else {
            params.types.clone()
        };
        let (from, to) = params.range(now)?;
        let resident = ResidentId::new(id.clone()).map_err(|_| ApiError::no_resident())?;
        let mut readings: Vec<StoredReading> = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .readings_for_resident(&ReadingsQuery {
                    resident: &resident,
                    types: &types,
                    from,
                    to,
                    after: after.as_ref(),
                    limit: MAX_OBSERVATIONS + 1 - readings.len(),
                })
                .map_err(ApiError::store("reading a resident's vital signs"))?;
            readings.extend(page.items);
            if readings.len() > MAX_OBSERVATIONS {
                return Err(ApiError::BadRequest(format!(
                    "the range holds more than {MAX_OBSERVATIONS} vital signs; ask for a shorter one"
                )));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let bundle = ondol_report::fhir::bundle(&format!("Patient/{id}"), &readings, now);
        let response = (
            [(header::CONTENT_TYPE, "application/fhir+json")],
            bundle.to_string(),
        )
            .into_response();
        Ok(Audited::new(response, vec![id]))
    })
    .await
}
