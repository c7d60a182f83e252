//! The audit entry of one request on resident data (who, in which role,
//! what, which residents, from where, with which answer), appended to the
//! store's hash-chained audit log (`ondol_store::audit`).

use jiff::Timestamp;

use ondol_store::Store;
use ondol_store::audit::AuditEntry;

use crate::error::ApiError;

/// The actor of requests without a valid token.
pub const ANONYMOUS: &str = "anonymous";

/// One request's audit entry, owned until it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAudit {
    pub at: Timestamp,
    /// The staff id, or [`ANONYMOUS`].
    pub actor: String,
    /// The caller's role, `none` when unauthenticated.
    pub role: String,
    /// Method and matched route, e.g. `GET /api/v1/residents/{id}`.
    pub action: String,
    /// Residents whose data was in the answer or changed; for a refused
    /// request, the resident it asked for.
    pub residents: Vec<String>,
    /// The client's address.
    pub source: String,
    /// The answer's HTTP status.
    pub status: u16,
}

/// Appends `record` to the store's audit log.
pub fn append(store: &mut Store, record: &RequestAudit) -> Result<(), ApiError> {
    let residents: Vec<&str> = record.residents.iter().map(String::as_str).collect();
    store
        .append_audit(&AuditEntry {
            at: record.at,
            actor: &record.actor,
            role: &record.role,
            action: &record.action,
            residents: &residents,
            source: &record.source,
            status: record.status,
        })
        .map_err(ApiError::store("appending to the audit log"))?;
    Ok(())
}

/// `GET /api/v1/alerts/:id` (axum's route syntax) → `GET /api/v1/alerts/{id}`
/// (OpenAPI's, as the audit log and the review read it).
pub fn action(method: &str, route: &str) -> String {
    let route: Vec<String> = route
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect();
    format!("{method} {}", route.join("/"))
}
