//! The HTTP API of Ondol (DESIGN §5) and the caseworker dashboard's files.
//!
//! [`app`] builds the whole router from an [`ApiState`]; tests drive it with
//! `tower::ServiceExt::oneshot`, the binary serves it with [`serve`].
//!
//! - [`auth`]: bearer tokens (SHA-256 digests compared in constant time),
//!   the caller ([`auth::Principal`]) and their scope of residents.
//! - [`context`]: the one place every authenticated request passes through;
//!   requests on resident data leave an audit entry there ([`audit`]).
//! - [`error`]: [`ApiError`], the JSON error body; 5xx are opaque.
//! - [`routes`]: alerts, residents and readings, the supervisor's
//!   overview, reports, the admin registry, operations, the dashboard.
//! - [`openapi`]: the OpenAPI 3 document generated from the handlers.
//! - [`state`]: the shared state and the `[http]` configuration.
//!
//! Scopes: a caseworker sees the residents assigned to them, a supervisor
//! those of their region (all without one) and system alerts, an admin
//! everyone; an evaluator sees pseudonymised reports only (403 elsewhere).
//! The overview of a region is for supervisors and admins only.
//! A resident or alert outside the caller's scope answers 404 exactly like
//! one that does not exist.

pub mod audit;
pub mod auth;
pub mod context;
mod cursor;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::Tokens;
pub use error::ApiError;
pub use state::{
    ApiParts, ApiState, HttpConfig, IssuedSecret, MetricsRender, ReadingsBackend, SecretIssuer,
    TokenSource,
};

/// Requests answered, by route, method and status.
pub const HTTP_REQUESTS: &str = "ondol_http_requests_total";
/// Time to answer, by route.
pub const HTTP_REQUEST_SECONDS: &str = "ondol_http_request_duration_seconds";

/// The whole API and the dashboard.
pub fn app(state: ApiState) -> Router {
    let timeout = state.config().request_timeout;
    let api = Router::new()
        .route("/me", get(routes::ops::me))
        .route("/alerts", get(routes::alerts::list))
        .route("/alerts/:id", get(routes::alerts::get))
        .route("/alerts/:id/ack", post(routes::alerts::ack))
        .route("/alerts/:id/resolve", post(routes::alerts::resolve))
        .route("/overview", get(routes::overview::overview))
        .route("/residents", get(routes::residents::list))
        .route("/residents/:id", get(routes::residents::get))
        .route("/residents/:id/readings", get(routes::residents::readings))
        .route("/residents/:id/fhir", get(routes::fhir::bundle))
        .route("/reports/utilisation", get(routes::reports::utilisation))
        .route("/admin/residents", get(routes::admin::residents))
        .route("/admin/residents/:id", put(routes::admin::put_resident))
        .route(
            "/admin/residents/:id/caseworker",
            put(routes::admin::put_assignment),
        )
        .route("/admin/residents/:id/away", put(routes::admin::put_away))
        .route("/admin/devices", get(routes::admin::devices))
        .route("/admin/devices/:id", put(routes::admin::put_device))
        .route(
            "/admin/devices/:id/secret",
            post(routes::admin::post_device_secret),
        )
        .route("/admin/staff", get(routes::admin::staff))
        .route("/admin/staff/:id", put(routes::admin::put_staff))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found);
    Router::new()
        .route("/", get(routes::dashboard::index))
        .route("/assets/app.js", get(routes::dashboard::app_js))
        .route("/assets/app.css", get(routes::dashboard::app_css))
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn(count))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                // The matched route, never the raw path: paths hold resident ids.
                tracing::info_span!("http", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

/// Only `/healthz`, `/readyz` and `/metrics`: what a process without the
/// API role (a broker, an ingest worker, alerting) serves to operators.
pub fn ops_app(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(count))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// Counts each answer by route (the pattern, not the path) and status.
async fn count(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::counter!(
        HTTP_REQUESTS,
        "route" => route.clone(),
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `app` on `listener` until `shutdown`, then lets requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
