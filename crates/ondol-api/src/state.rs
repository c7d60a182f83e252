//! What every handler shares: the store connection, the token table, the
//! clock and the process's readiness and metrics.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
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
    /// Store connections the API keeps: how many requests use the store at
    /// once (a long report then does not hold up an acknowledgement).
    pub store_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            request_timeout: Duration::from_secs(30),
            max_page_items: 5000,
            audit_repeat_window: Duration::from_secs(300),
            store_connections: 4,
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
        if !(1..=64).contains(&self.store_connections) {
            out.push(("store_connections", "must be between 1 and 64".into()));
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
    /// The API's own connections to the store (at least one): that many
    /// requests use the store at once, so a long report does not hold up
    /// an acknowledgement. SQLite in WAL mode lets them read while ingest
    /// writes; writes (acks, audit entries) take turns inside SQLite.
    pub stores: Vec<Store>,
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
            .field("stores", &self.stores.len())
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
    /// Idle connections; a request takes one on a blocking thread (waiting
    /// while all are in use) and puts it back.
    stores: Mutex<Vec<Store>>,
    returned: Condvar,
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
                stores: Mutex::new(parts.stores),
                returned: Condvar::new(),
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

    /// Runs `work` with one of the store connections on a blocking thread.
    pub async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut lent = state.borrow_store()?;
            match lent.store.as_mut() {
                Some(store) => work(store),
                None => Err(ApiError::internal("taking a store connection", "none lent")),
            }
        })
        .await
        .map_err(|error| ApiError::internal("running a store task", error))?
    }

    /// Takes an idle connection, waiting for one if all are lent.
    fn borrow_store(&self) -> Result<Lent<'_>, ApiError> {
        let poisoned = |_| ApiError::internal("taking a store connection", "a request panicked");
        let mut idle = self.inner.stores.lock().map_err(poisoned)?;
        loop {
            if let Some(store) = idle.pop() {
                return Ok(Lent {
                    inner: &self.inner,
                    store: Some(store),
                });
            }
            idle = self.inner.returned.wait(idle).map_err(poisoned)?;
        }
    }
}

/// A connection lent to one request; goes back to the pool when dropped,
/// even if the request's work panicked.
struct Lent<'a> {
    inner: &'a Inner,
    store: Option<Store>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            self.inner
                .stores
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(store);
            self.inner.returned.notify_one();
        }
    }
}
