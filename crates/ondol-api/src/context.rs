//! The one place every authenticated request passes through: it finds the
//! caller, runs the handler's work on the store and, for resident data,
//! writes the audit entry, refused requests included.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::header;
use axum::http::request::Parts;
use jiff::Timestamp;

use ondol_store::Store;

use crate::audit::{self, RequestAudit};
use crate::auth::{Principal, bearer};
use crate::error::ApiError;
use crate::state::ApiState;

/// The request as far as authentication and auditing need it.
#[derive(Debug)]
pub struct Ctx {
    state: ApiState,
    token: Option<String>,
    /// Method and matched route, e.g. `GET /api/v1/residents/{id}`.
    action: String,
    /// The client's address (the peer; no proxy headers are trusted).
    source: String,
}

#[axum::async_trait]
impl FromRequestParts<ApiState> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Ctx, Infallible> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        Ok(Ctx {
            state: state.clone(),
            token: bearer(header).map(str::to_owned),
            action: audit::action(parts.method.as_str(), &route),
            source,
        })
    }
}

/// A handler's answer on resident data with the residents it showed or
/// changed (for the audit log).
#[derive(Debug)]
pub struct Audited<T> {
    pub value: T,
    pub residents: Vec<String>,
}

impl<T> Audited<T> {
    pub fn new(value: T, residents: Vec<String>) -> Audited<T> {
        Audited { value, residents }
    }
}

impl Ctx {
    pub fn state(&self) -> &ApiState {
        &self.state
    }

    /// Authenticates and runs `work`; for endpoints that show no resident
    /// data (`/me`).
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&mut Store, &Principal, Timestamp) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let Ctx { state, token, .. } = self;
        let now = state.clock().now();
        let owner = token.as_deref().and_then(|t| state.token_owner(t));
        state
            .with_store(move |store| {
                let principal = authenticate(store, owner)?;
                work(store, &principal, now)
            })
            .await
    }

    /// Like [`run`](Self::run) for resident data: whatever the outcome
    /// (allowed, refused, failed), one audit entry is appended before the
    /// answer leaves. `attempted` names the resident a refused request
    /// asked for, so the review sees attempts too. If the entry cannot be
    /// written, the answer is a 500: no resident data without its audit.
    pub async fn audited<T: Send + 'static>(
        self,
        attempted: Option<String>,
        work: impl FnOnce(&mut Store, &Principal, Timestamp) -> Result<Audited<T>, ApiError>
        + Send
        + 'static,
    ) -> Result<T, ApiError> {
        let Ctx {
            state,
            token,
            action,
            source,
        } = self;
        let now = state.clock().now();
        let owner = token.as_deref().and_then(|t| state.token_owner(t));
        state
            .with_store(move |store| {
                let (actor, role, outcome) = match authenticate(store, owner) {
                    Ok(principal) => {
                        let outcome = work(store, &principal, now);
                        (
                            principal.id.to_string(),
                            principal.role.as_str().to_owned(),
                            outcome,
                        )
                    }
                    Err(error) => (audit::ANONYMOUS.to_owned(), "none".to_owned(), Err(error)),
                };
                let (status, residents) = match &outcome {
                    Ok(answer) => (200, answer.residents.clone()),
                    Err(error) => (error.status().as_u16(), attempted.into_iter().collect()),
                };
                audit::append(
                    store,
                    &RequestAudit {
                        at: now,
                        actor,
                        role,
                        action,
                        residents,
                        source,
                        status,
                    },
                )?;
                outcome.map(|answer| answer.value)
            })
            .await
    }
}

/// The caller named by the token's owner, as the store describes them now.
fn authenticate(
    store: &mut Store,
    owner: Option<ondol_model::StaffId>,
) -> Result<Principal, ApiError> {
    let owner = owner.ok_or(ApiError::Unauthorized)?;
    let staff = store
        .staff_member(&owner)
        .map_err(ApiError::store("looking up the caller"))?
        // A token of someone no longer on the roster opens nothing.
        .ok_or(ApiError::Unauthorized)?;
    Ok(Principal::from_staff(&staff))
}
