//! What every handler shares: the store connection, the token table, the
//! clock and the process's readiness and metrics.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;

use ondol_model::Clock;
use ondol_report::PseudonymKey;
use ondol_store::Store;

use crate::auth::Tokens;
use crate::error::ApiError;

/// `[http]` of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the API and the dashboard listen.
    pub listen: SocketAddr,
    /// A request not answered within this time gets 408.
    #[serde(with = "ondol_model::serde_duration")]
    pub request_timeout: Duration,
    /// Most items one page of a list may hold (`limit`).
    pub max_page_items: usize,
    /// An identical read (same person, request, residents, answer and
    /// address) repeated within this window is audited once; `0s` audits
    /// every request. Changes are always audited.
    #[serde(with = "ondol_model::serde_duration")]
    pub audit_repeat_window: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            request_timeout: Duration::from_secs(30),
            max_page_items: 5000,
            audit_repeat_window: Duration::from_secs(300),
        }
    }
}

impl HttpConfig {
    /// Problems of values serde accepts but the API cannot use: (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.request_timeout.is_zero() {
            out.push(("request_timeout", "must be longer than 0s".into()));
        }
        if self.max_page_items == 0 {
            out.push(("max_page_items", "must be at least 1".into()));
        }
        out
    }
}

/// Where raw readings can be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadingsBackend {
    /// The embedded sink (SQLite): `GET /residents/{id}/readings` answers.
    Embedded,
    /// Raw readings live elsewhere (InfluxDB); the endpoint answers 501
    /// with this explanation.
    Elsewhere(String),
}

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Builds the token table for the given staff (the binary reads each one's
/// `token_env` from its environment); called again when an admin changes
/// staff.
pub type TokenSource = Arc<dyn Fn(&[ondol_model::roster::Staff]) -> Tokens + Send + Sync>;

/// A device secret just issued: the secret in clear (answered once, never
/// stored or logged) and the hash the store keeps.
pub struct IssuedSecret {
    pub secret: String,
    pub hash: String,
}

impl fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedSecret(<redacted>)")
    }
}

/// Issues a new device secret (the binary's CSPRNG and Argon2id, the same
/// as `ondol device rotate-secret`); an error says why it could not.
pub type SecretIssuer = Arc<dyn Fn() -> Result<IssuedSecret, String> + Send + Sync>;

/// Everything the API is built from.
pub struct ApiParts {
    /// The API's own connection to the store.
    pub store: Store,
    pub tokens: Tokens,
    /// `None`: staff changes through the admin API reach the token table
    /// only at the next start.
    pub token_source: Option<TokenSource>,
    pub clock: Arc<dyn Clock>,
    pub readings: ReadingsBackend,
    /// `None`: `/metrics` answers 404 (no recorder installed).
    pub metrics: Option<MetricsRender>,
    /// Set by the binary while the ingest pipeline runs (`/readyz`).
    pub pipeline_running: Arc<AtomicBool>,
    /// For evaluator reports; `None`: the report endpoint answers 501.
    pub pseudonym_key: Option<PseudonymKey>,
    /// For `POST /admin/devices/{id}/secret`; `None`: it answers 501.
    pub secret_issuer: Option<SecretIssuer>,
    pub config: HttpConfig,
}

impl fmt::Debug for ApiParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiParts")
            .field("store", &self.store)
            .field("tokens", &self.tokens)
            .field("readings", &self.readings)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    /// One connection, used on blocking threads one request at a time.
    /// SQLite in WAL mode lets it read while ingest writes.
    store: Mutex<Store>,
    tokens: RwLock<Tokens>,
    token_source: Option<TokenSource>,
    clock: Arc<dyn Clock>,
    readings: ReadingsBackend,
    metrics: Option<MetricsRender>,
    pipeline_running: Arc<AtomicBool>,
    pseudonym_key: Option<PseudonymKey>,
    secret_issuer: Option<SecretIssuer>,
    config: HttpConfig,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("readings", &self.inner.readings)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(parts: ApiParts) -> ApiState {
        ApiState {
            inner: Arc::new(Inner {
                store: Mutex::new(parts.store),
                tokens: RwLock::new(parts.tokens),
                token_source: parts.token_source,
                clock: parts.clock,
                readings: parts.readings,
                metrics: parts.metrics,
                pipeline_running: parts.pipeline_running,
                pseudonym_key: parts.pseudonym_key,
                secret_issuer: parts.secret_issuer,
                config: parts.config,
            }),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    pub fn readings(&self) -> &ReadingsBackend {
        &self.inner.readings
    }

    pub fn metrics(&self) -> Option<&MetricsRender> {
        self.inner.metrics.as_ref()
    }

    pub fn pseudonym_key(&self) -> Option<&PseudonymKey> {
        self.inner.pseudonym_key.as_ref()
    }

    pub fn secret_issuer(&self) -> Option<&SecretIssuer> {
        self.inner.secret_issuer.as_ref()
    }

    pub fn pipeline_running(&self) -> bool {
        self.inner.pipeline_running.load(Ordering::Acquire)
    }

    /// The staff id a bearer token belongs to.
    pub fn token_owner(&self, token: &str) -> Option<ondol_model::StaffId> {
        let tokens = self
            .inner
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.lookup(token).cloned()
    }

    /// Replaces the token table (e.g. after staff changed).
    pub fn set_tokens(&self, tokens: Tokens) {
        let mut current = self
            .inner
            .tokens
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = tokens;
    }

    /// Rebuilds the token table after staff changed.
    pub fn refresh_tokens(&self, staff: &[ondol_model::roster::Staff]) {
        if let Some(source) = &self.inner.token_source {
            self.set_tokens(source(staff));
        }
    }

    /// Runs `work` with the store on a blocking thread.
    pub async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = state
                .inner
                .store
                .lock()
                .map_err(|_| ApiError::internal("locking the store", "a request panicked"))?;
            work(&mut store)
        })
        .await
        .map_err(|error| ApiError::internal("running a store task", error))?
    }
}
