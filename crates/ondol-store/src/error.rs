//! The store's one error type. Callers retry what is transient (a locked
//! database, a full or flaky disk) and give up on what is not (a violated
//! constraint, a schema this code does not know, a corrupt file), so every
//! variant says which it is through [`StoreError::is_retryable`].

use std::path::PathBuf;

use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "the database {path} has schema version {found}, but this version of Ondol knows only up to {known}; \
         run a newer Ondol or restore a backup made by this version"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("cannot migrate the database {path} to schema version {version}: {source}")]
    Migration {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },

    /// A statement failed; `during` says what the store was doing.
    #[error("database error while {during}: {source}")]
    Sqlite {
        during: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// The time-series sink failed (for an external sink: its server).
    #[error("time-series sink failed: {detail}")]
    Sink { detail: String, retryable: bool },

    /// A stored value cannot be turned back into a domain value: the file was
    /// edited by hand or written by an incompatible version.
    #[error("invalid stored value in {table} (row {key}): {detail}")]
    InvalidRow {
        table: &'static str,
        key: String,
        detail: String,
    },
}

impl StoreError {
    /// Whether the same operation may succeed if tried again later: the
    /// database was busy or locked by another connection, or the disk failed
    /// or filled up. Constraint violations, schema problems and corruption
    /// are permanent: retrying them only delays the dead letter.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::CreateDir { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::AlreadyExists
            ),
            StoreError::Open { source, .. }
            | StoreError::Migration { source, .. }
            | StoreError::Sqlite { source, .. } => sqlite_is_retryable(source),
            StoreError::Sink { retryable, .. } => *retryable,
            StoreError::SchemaTooNew { .. } | StoreError::InvalidRow { .. } => false,
        }
    }

    pub(crate) fn sqlite(during: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { during, source }
    }
}

fn sqlite_is_retryable(error: &rusqlite::Error) -> bool {
    match error.sqlite_error_code() {
        Some(code) => matches!(
            code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::SchemaChanged
        ),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> StoreError {
        StoreError::Sqlite {
            during: "testing",
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        }
    }

    #[test]
    fn transient_failures_are_retryable_and_permanent_ones_are_not() {
        assert!(failure(rusqlite::ffi::SQLITE_BUSY).is_retryable());
        assert!(failure(rusqlite::ffi::SQLITE_LOCKED).is_retryable());
        assert!(failure(rusqlite::ffi::SQLITE_IOERR).is_retryable());
        assert!(failure(rusqlite::ffi::SQLITE_FULL).is_retryable());
        assert!(!failure(rusqlite::ffi::SQLITE_CONSTRAINT).is_retryable());
        assert!(!failure(rusqlite::ffi::SQLITE_CORRUPT).is_retryable());
        assert!(!failure(rusqlite::ffi::SQLITE_NOTADB).is_retryable());
        assert!(
            !StoreError::SchemaTooNew {
                path: "x".into(),
                found: 9,
                known: 1
            }
            .is_retryable()
        );
    }
}
