//! Talking to `/api/v2/write` through the `influxdb2` crate, and telling its
//! answers apart: written, refused for good (the lines are wrong), refused
//! for our credentials, or a transient failure worth retrying.

use std::sync::Arc;
use std::time::Duration;

use influxdb2::RequestError;
use reqwest011::StatusCode;

/// A tokio runtime owned by the sink. The store's API is synchronous (it
/// runs on ingest's writer thread), so the sink drives its async HTTP client
/// with `block_on`. Dropped without blocking, so dropping a store inside
/// async code is safe.
#[derive(Debug)]
pub(crate) struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    pub(crate) fn new() -> std::io::Result<Arc<OwnedRuntime>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ondol-influx")
            .enable_all()
            .build()?;
        Ok(Arc::new(OwnedRuntime(Some(runtime))))
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        self.0.as_ref().map(|rt| rt.block_on(future))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Why a write did not land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// 400, 413 or 422: the server refuses these lines; sending them again
    /// will not help.
    Refused { status: u16, message: String },
    /// 401 or 403: our token is wrong or lacks write permission. Nothing is
    /// dropped: the lines wait in the spool until an operator fixes it.
    Unauthorized { status: u16 },
    /// Network trouble, a timeout, 429, 5xx: try again later.
    Transient { reason: String },
}

impl WriteFailure {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, WriteFailure::Refused { .. })
    }
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteFailure::Refused { status, message } => {
                write!(f, "refused with HTTP {status}: {message}")
            }
            WriteFailure::Unauthorized { status } => write!(
                f,
                "HTTP {status}: the token is not accepted for writing to this bucket"
            ),
            WriteFailure::Transient { reason } => f.write_str(reason),
        }
    }
}

/// Sorts an HTTP status the server answered with.
pub(crate) fn classify_status(status: u16, text: &str) -> WriteFailure {
    // The server's message may quote our lines; keep it short.
    let message: String = text.chars().take(300).collect();
    match status {
        400 | 413 | 422 => WriteFailure::Refused { status, message },
        401 | 403 => WriteFailure::Unauthorized { status },
        _ => WriteFailure::Transient {
            reason: format!("HTTP {status}: {message}"),
        },
    }
}

/// One InfluxDB write endpoint.
#[derive(Debug, Clone)]
pub(crate) struct HttpWriter {
    client: influxdb2::Client,
    org: String,
    bucket: String,
    runtime: Arc<OwnedRuntime>,
}

impl HttpWriter {
    pub(crate) fn new(
        url: &str,
        org: &str,
        bucket: &str,
        token: &str,
        timeout: Duration,
        runtime: Arc<OwnedRuntime>,
    ) -> Result<HttpWriter, String> {
        // influxdb2 panics on a URL it cannot parse: check first.
        reqwest011::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        // reqwest has no timeout by default: a server that accepts the
        // connection and never answers would stall ingest forever.
        let builder = reqwest011::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        let client = influxdb2::ClientBuilder::with_builder(builder, url, org, token)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpWriter {
            client,
            org: org.to_owned(),
            bucket: bucket.to_owned(),
            runtime,
        })
    }

    /// One POST of `body` (line protocol, nanosecond timestamps).
    pub(crate) fn send(&self, body: Vec<u8>) -> Result<(), WriteFailure> {
        let sent = self.runtime.block_on(self.client.write_line_protocol(
            &self.org,
            &self.bucket,
            body,
        ));
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(RequestError::Http { status, text })) => {
                Err(classify_status(status_code(status), &text))
            }
            Some(Err(error)) => Err(WriteFailure::Transient {
                reason: error.to_string(),
            }),
            None => Err(WriteFailure::Transient {
                reason: "the sink is shutting down".into(),
            }),
        }
    }
}

fn status_code(status: StatusCode) -> u16 {
    status.as_u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_into_refused_unauthorized_and_transient() {
        assert!(matches!(
            classify_status(400, "bad line"),
            WriteFailure::Refused { status: 400, .. }
        ));
        assert!(matches!(
            classify_status(422, ""),
            WriteFailure::Refused { .. }
        ));
        assert!(matches!(
            classify_status(401, ""),
            WriteFailure::Unauthorized { status: 401 }
        ));
        assert!(matches!(
            classify_status(403, ""),
            WriteFailure::Unauthorized { status: 403 }
        ));
        for status in [429, 500, 502, 503, 504] {
            let failure = classify_status(status, "busy");
            assert!(
                matches!(failure, WriteFailure::Transient { .. }),
                "{status}"
            );
            assert!(failure.is_retryable());
        }
        assert!(!classify_status(400, "").is_retryable());
        assert!(classify_status(401, "").is_retryable());
    }
}
