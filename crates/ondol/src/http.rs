//! The HTTP API in `ondol run`: its own store connection, the staff token
//! table from the environment, the Prometheus recorder, and a server that
//! stops last (after ingest and alerting have drained), so health checks
//! and caseworkers are answered until the very end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ondol_api::{ApiParts, ApiState, ReadingsBackend, Tokens};
use ondol_model::SystemClock;
use ondol_model::roster::Roster;
use ondol_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TimeseriesBackend};
use crate::credentials::StaffTokens;

/// How long requests in flight may take to finish at shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the recorder drains its histograms.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Histogram buckets in seconds (HTTP answers, batch commits).
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Commit-to-alerting lag buckets in seconds: finer where it should be.
const LAG_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 30.0,
];

/// The running HTTP server.
#[derive(Debug)]
pub struct Http {
    pub addr: SocketAddr,
    /// True while the ingest pipeline runs (`/readyz`).
    pub pipeline_running: Arc<AtomicBool>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

/// The process's Prometheus recorder, installed once.
fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(ondol_alerting::FEED_LAG_SECONDS.to_owned()),
                        &LAG_BUCKETS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    let upkeep = handle.clone();
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
                        loop {
                            tick.tick().await;
                            upkeep.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(error = %error, "no Prometheus recorder: /metrics answers 404");
                    None
                }
            }
        })
        .clone()
}

/// Opens the API's store connections, binds `http.listen` and serves: the
/// whole API with `api`, otherwise only the health checks and metrics.
pub async fn start(
    config: &Config,
    roster: &Roster,
    api: bool,
    staff_tokens: StaffTokens,
) -> anyhow::Result<Http> {
    let tokens = Tokens::from_staff(&roster.staff, |var| staff_tokens.get(var));
    let without_token = roster.staff.len() - tokens.len();
    if api && tokens.is_empty() {
        tracing::warn!(
            "no staff member has a bearer token in the environment (roster token_env): nobody can use the HTTP API"
        );
    } else if api && without_token > 0 {
        tracing::info!(
            staff_without_token = without_token,
            "some staff have no token in the environment and cannot use the HTTP API"
        );
    }
    let database = config.storage.database_path();
    let connections = if api {
        config.http.store_connections
    } else {
        1
    };
    let stores = (0..connections)
        .map(|_| Store::open(&database))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "cannot open the store at {} for the HTTP API",
                database.display()
            )
        })?;
    let readings = match config.timeseries.backend {
        TimeseriesBackend::Embedded => ReadingsBackend::Embedded,
        TimeseriesBackend::Influxdb => ReadingsBackend::Elsewhere(
            "raw readings are kept in InfluxDB (timeseries.backend = \"influxdb\"); query them there"
                .into(),
        ),
    };
    let pseudonym_key = match ondol_report::load_or_create_key(
        std::env::var(ondol_report::pseudonym::KEY_ENV).ok(),
        &config.storage.data_dir,
    ) {
        Ok(key) => Some(key),
        Err(error) => {
            tracing::warn!(error = %error, "no pseudonym key: the report endpoint answers 501");
            None
        }
    };
    let metrics = recorder().map(|handle| {
        let render: ondol_api::MetricsRender = Arc::new(move || handle.render());
        render
    });
    let pipeline_running = Arc::new(AtomicBool::new(false));
    let state = ApiState::new(ApiParts {
        stores,
        tokens,
        token_source: Some(Arc::new(move |staff: &[ondol_model::roster::Staff]| {
            Tokens::from_staff(staff, |var| staff_tokens.get(var))
        })),
        clock: Arc::new(SystemClock),
        readings,
        metrics,
        pipeline_running: pipeline_running.clone(),
        pseudonym_key,
        secret_issuer: Some(Arc::new(|| {
            let secret = crate::credentials::DeviceSecret::generate();
            let hash = crate::credentials::hash_secret(
                secret.expose(),
                crate::credentials::SecretOrigin::Generated,
            )
            .map_err(|error| format!("{error:#}"))?;
            Ok(ondol_api::IssuedSecret {
                secret: secret.expose().to_owned(),
                hash,
            })
        })),
        config: config.http.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {} (key http.listen)",
                config.http.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let app = if api {
        ondol_api::app(state)
    } else {
        ondol_api::ops_app(state)
    };
    let task = tokio::spawn(ondol_api::serve(listener, app, shutdown.clone()));
    Ok(Http {
        addr,
        pipeline_running,
        shutdown,
        task,
    })
}

impl Http {
    pub fn set_pipeline_running(&self, running: bool) {
        self.pipeline_running.store(running, Ordering::Release);
    }

    /// Stops taking connections and waits for requests in flight.
    pub async fn stop(self) {
        self.set_pipeline_running(false);
        self.shutdown.cancel();
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!("HTTP stopped"),
            Ok(Ok(Err(error))) => tracing::error!(error = %error, "HTTP server failed"),
            Ok(Err(error)) => tracing::error!(error = %error, "HTTP server task panicked"),
            Err(_) => tracing::warn!(
                "HTTP requests still running after {STOP_TIMEOUT:?}; stopping without them"
            ),
        }
    }
}
