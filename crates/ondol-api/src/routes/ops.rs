//! Operations and identity: `/healthz`, `/readyz`, `/metrics`, `GET /me`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::context::Ctx;
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or for readiness `not_ready`.
    pub status: String,
    /// Readiness: whether the store answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Readiness: whether the ingest pipeline runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<bool>,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    responses((status = 200, description = "Alive", body = Health)),
    tag = "operations"
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        store: None,
        pipeline: None,
    })
}

/// Readiness: the store answers and the ingest pipeline runs.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Health),
    ),
    tag = "operations"
)]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let store = state
        .with_store(|store| {
            store
                .schema_version()
                .map_err(ApiError::store("probing the store"))
        })
        .await
        .is_ok();
    let pipeline = state.pipeline_running();
    let ready = store && pipeline;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ready { "ok" } else { "not_ready" }.into(),
            store: Some(store),
            pipeline: Some(pipeline),
        }),
    )
        .into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain", body = String),
        (status = 404, description = "No metrics recorder in this process", body = ErrorBody),
    ),
    tag = "operations"
)]
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let render = state
        .metrics()
        .ok_or_else(|| ApiError::NotFound("no metrics recorder is installed".into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
        .into_response())
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub name: String,
    /// caseworker, supervisor, evaluator or admin.
    pub role: String,
    /// A supervisor's region; null = every region (or not a supervisor).
    pub region: Option<String>,
}

/// Who the token belongs to; the dashboard signs in with it.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "identity"
)]
pub async fn me(ctx: Ctx) -> Result<Json<Me>, ApiError> {
    ctx.run(|_, principal, _| {
        Ok(Me {
            id: principal.id.to_string(),
            name: principal.name.clone(),
            role: principal.role.as_str().to_owned(),
            region: principal.region.clone(),
        })
    })
    .await
    .map(Json)
}
