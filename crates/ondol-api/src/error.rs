//! The one error type of the API and how it becomes a response: 4xx carry
//! their message, 5xx bodies are opaque and the details go to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use ondol_store::StoreError;

/// Why a request was not answered with data.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (query parameters, path, JSON syntax).
    #[error("{0}")]
    BadRequest(String),
    /// No bearer token, or one that belongs to nobody.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The caller's role may not use this endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// Does not exist, or is outside the caller's scope (never told apart).
    #[error("{0}")]
    NotFound(String),
    /// The target is not in a state the request applies to.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but semantically invalid (e.g. an unknown outcome).
    #[error("{0}")]
    Unprocessable(String),
    /// This deployment cannot answer it (e.g. raw readings kept in InfluxDB).
    #[error("{0}")]
    NotImplemented(String),
    /// Our failure: logged with its detail, answered opaquely.
    #[error("internal error while {during}: {detail}")]
    Internal {
        during: &'static str,
        detail: String,
    },
}

/// `{"error":{"code":"not_found","message":"..."}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// bad_request, unauthorized, forbidden, not_found, conflict,
    /// unprocessable, not_implemented or internal.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Internal { .. } => "internal",
        }
    }

    /// Maps a store failure during `during` to an opaque 500.
    pub fn store(during: &'static str) -> impl FnOnce(StoreError) -> ApiError {
        move |error| ApiError::Internal {
            during,
            detail: error.to_string(),
        }
    }

    pub fn internal(during: &'static str, detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal {
            during,
            detail: detail.to_string(),
        }
    }

    /// The resident answer for "missing or not yours".
    pub fn no_resident() -> ApiError {
        ApiError::NotFound("no such resident".into())
    }

    pub fn no_alert() -> ApiError {
        ApiError::NotFound("no such alert".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal { during, detail } => {
                tracing::error!(during = %during, error = %detail, "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
