//! Alerting's one error type.

use ondol_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    #[error("alerting could not use the store: {0}")]
    Store(#[from] StoreError),
    #[error("the alerting {task} task failed: {reason}")]
    Task { task: &'static str, reason: String },
    /// A broken invariant of this crate (a bug), reported instead of a panic.
    #[error("internal alerting error: {0}")]
    Internal(&'static str),
}

impl AlertingError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AlertingError::Store(error) => error.is_retryable(),
            AlertingError::Task { .. } | AlertingError::Internal(_) => false,
        }
    }
}
