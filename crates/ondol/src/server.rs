//! `ondol run`: the parts of Ondol this process runs (its roles), started
//! in dependency order and stopped in reverse:
//!
//! 1. store opened and roster imported;
//! 2. with `broker`, the embedded broker's router, and ingest's link to it;
//! 3. with `alerting`, alerting (the store's one alerting lease, the engine
//!    following the store's alerting feed, notification delivery); with
//!    `ingest`, the ingest worker;
//! 4. only then the device listener (a publish nobody is subscribed to would
//!    be acknowledged and dropped by rumqttd);
//! 5. with `--demo`, the simulated fleet.
//!
//! HTTP starts right after step 1 and stops last: the whole API with `api`,
//! otherwise only `/healthz`, `/readyz` (503 until step 4) and `/metrics`.
//!
//! Ingest and alerting meet only through the store: each batch commit
//! writes the alerting feed, whichever process commits it. A process with
//! ingest records its heartbeat and conditions in the store; alerting in a
//! process without ingest follows those.
//!
//! Shutdown (Ctrl-C, SIGTERM): the fleet stops, ingest stops reading, commits
//! its last batch and publishes its receipts, alerting applies the feed and
//! gives up its lease, then HTTP stops; a hard timeout names what is still
//! pending.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ondol_broker::Router;
use ondol_ingest::{BrokerTarget, Credentials, IngestStats, RosterIndex, SourceLink};
use ondol_model::wire::{READINGS_FILTER, STATUS_FILTER};
use ondol_store::processes::ProcessId;
use ondol_store::{InfluxSink, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TimeseriesBackend};
use crate::credentials::{self, AccessSource, StaffTokens, Verifier};
use crate::demo;
use crate::roster;
use crate::simulate;

/// How long ingest may take to drain after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the embedded router is checked for liveness.
const ROUTER_PROBE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Use the demo roster when the configured one is missing, and run the
    /// simulated fleet against the embedded broker.
    pub demo: bool,
    /// Which parts this process runs.
    pub roles: Roles,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            demo: false,
            roles: Roles::of(&[Role::All]),
        }
    }
}

/// One part of Ondol, as named on the command line (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything: the embedded broker (when ingest.broker is "embedded"),
    /// ingest, alerting and the API.
    All,
    /// The embedded MQTT broker; ingest workers elsewhere connect to it as
    /// an external broker (`ingest.broker = "mqtt://host:port"`).
    Broker,
    /// An ingest worker.
    Ingest,
    /// Alerting: rules, escalation, notification delivery (one process per
    /// store).
    Alerting,
    /// The HTTP API and the dashboard.
    Api,
}

/// The parts one process runs; processes with different roles share one
/// store (and one broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The embedded broker, if `ingest.broker` is "embedded" or it was
    /// named on its own.
    pub broker: Option<BrokerRole>,
    pub ingest: bool,
    pub alerting: bool,
    pub api: bool,
}

/// Why the embedded broker runs in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRole {
    /// `all`: it runs when `ingest.broker` is "embedded".
    IfEmbedded,
    /// `broker` named: it runs in any case.
    Named,
}

impl Roles {
    pub fn of(list: &[Role]) -> Roles {
        let mut roles = Roles {
            broker: None,
            ingest: false,
            alerting: false,
            api: false,
        };
        for role in list {
            match role {
                Role::All => {
                    roles.broker = roles.broker.or(Some(BrokerRole::IfEmbedded));
                    roles.ingest = true;
                    roles.alerting = true;
                    roles.api = true;
                }
                Role::Broker => roles.broker = Some(BrokerRole::Named),
                Role::Ingest => roles.ingest = true,
                Role::Alerting => roles.alerting = true,
                Role::Api => roles.api = true,
            }
        }
        roles
    }

    /// Whether the embedded broker runs here with `config`.
    fn runs_broker(&self, config: &Config) -> bool {
        match self.broker {
            Some(BrokerRole::Named) => true,
            Some(BrokerRole::IfEmbedded) => config.ingest.broker == BrokerTarget::Embedded,
            None => false,
        }
    }

    /// `broker,ingest,alerting,api` as far as they run here.
    pub fn describe(&self, config: &Config) -> String {
        let mut names = Vec::new();
        if self.runs_broker(config) {
            names.push("broker");
        }
        for (on, name) in [
            (self.ingest, "ingest"),
            (self.alerting, "alerting"),
            (self.api, "api"),
        ] {
            if on {
                names.push(name);
            }
        }
        names.join(",")
    }
}

/// Runs until `shutdown` is cancelled, then stops in order.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let roles = options.roles;
    let runs_broker = roles.runs_broker(&config);
    if roles.ingest && !runs_broker && config.ingest.broker == BrokerTarget::Embedded {
        anyhow::bail!(
            "--role ingest without the broker role reads from an external broker: set ingest.broker to \"mqtt://host:port\" \
             (e.g. the one `ondol run --role broker` serves), or add the broker role (--role broker,ingest)"
        );
    }
    if runs_broker && !roles.ingest && !roles.alerting && !roles.api {
        return run_broker(config, shutdown).await;
    }
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (key storage.data_dir)",
            data_dir.display()
        )
    })?;
    let database = config.storage.database_path();
    let (mut store, sink_monitor) = if roles.ingest {
        open_store(&config, &database)?
    } else {
        let store = Store::open(&database)
            .with_context(|| format!("cannot open the store at {}", database.display()))?;
        (store, None)
    };
    let file_roster = if options.demo && !config.registry.file.exists() {
        tracing::info!("using the built-in demo roster");
        roster::parse(roster::DEMO_REGISTRY, "built-in demo registry")?
    } else {
        roster::read(&config.registry.file)?
    };
    // The demo: its live cues (and the roster change one of them needs),
    // then a week of history before anything runs.
    let demo = if options.demo {
        let homes = simulate::demo_homes(&config.simulator, &file_roster)?;
        Some((
            demo::stage(&file_roster, &homes, jiff::Timestamp::now()),
            homes,
        ))
    } else {
        None
    };
    let file_roster = demo
        .as_ref()
        .map_or(file_roster, |(stage, _)| stage.roster.clone());
    let roster = roster::import(&mut store, &file_roster)?;
    if let Some((stage, _)) = &demo {
        demo::write_history(
            &mut store,
            &roster,
            stage,
            config.simulator.seed,
            &config.ingest.decode_limits(),
        )?;
    }
    let (staff_tokens, demo_tokens) = if options.demo {
        StaffTokens::with_demo_tokens(&roster)
    } else {
        (StaffTokens::default(), Vec::new())
    };
    credentials::check_staff_tokens(&roster, |var| staff_tokens.get(var))?;
    credentials::import_roster_secrets(&mut store, &file_roster, |var| std::env::var(var).ok())?;
    let credential_rows = store
        .device_credentials()
        .context("cannot read device credentials")?;
    // The roster revision the running parts start from: a change after
    // this (the admin API, the CLI) is republished by the follower.
    let roster_revision = store
        .roster_revision()
        .context("cannot read the roster revision")?;
    tracing::info!(
        residents = roster.residents.len(),
        devices = roster.devices.len(),
        staff = roster.staff.len(),
        "roster loaded"
    );
    // Every role answers health checks and metrics; the API only with `api`.
    let http = crate::http::start(&config, &roster, roles.api, staff_tokens.clone()).await?;
    // Credential changes republish the roster through this sender while the
    // server runs.
    let (roster_updates, roster_index) = watch::channel(Arc::new(RosterIndex::new(&roster)));
    let stats = Arc::new(IngestStats::default());

    let router = runs_broker.then(|| Router::start(&config.mqtt));
    let link = match (&config.ingest.broker, &router) {
        _ if !roles.ingest => None,
        (BrokerTarget::Embedded, Some(router)) => {
            let link = tokio::task::spawn_blocking({
                let router = router.clone();
                move || router.subscribed_link("ondol-ingest", &[READINGS_FILTER, STATUS_FILTER])
            })
            .await?
            .context("cannot subscribe ingest to the embedded broker")?;
            Some(SourceLink::Embedded {
                tx: link.tx,
                rx: link.rx,
            })
        }
        (BrokerTarget::External { host, port, tls }, _) => Some(SourceLink::External {
            host: host.clone(),
            port: *port,
            credentials: broker_credentials(&config)?,
            tls: if *tls {
                Some(Arc::new(broker_tls(&config)?))
            } else {
                None
            },
        }),
        (BrokerTarget::Embedded, None) => None,
    };

    let alerting = if roles.alerting {
        crate::alerting::start(&config, router.as_ref(), roster_updates.subscribe()).await?
    } else {
        None
    };
    if let Some(alerting) = &alerting {
        if roles.ingest {
            // This process's ingest and sink conditions become `system_outage`s.
            tokio::spawn(crate::alerting::follow_conditions(
                crate::alerting::conditions(&stats, sink_monitor.clone()),
                alerting.outages.clone(),
                shutdown.clone(),
            ));
        } else {
            // Ingest runs elsewhere: its heartbeats and conditions are in
            // the store.
            tokio::spawn(crate::alerting::follow_workers(
                database.clone(),
                config.alerting.ingest_timeout,
                alerting.outages.clone(),
                shutdown.clone(),
            ));
        }
    }
    // Deletion past the retention periods ([retention]); stops with `shutdown`.
    // Run by the processes with alerting or the API, not by every ingest
    // worker (deleting twice is harmless, but needless work).
    if roles.alerting || roles.api {
        let _retention = crate::retention::spawn(
            config.retention.clone(),
            database.clone(),
            Arc::new(ondol_model::SystemClock),
            shutdown.clone(),
        );
    }

    let ingest_shutdown = CancellationToken::new();
    let mut ingest = match link {
        Some(link) => {
            // Commits feed alerting (wherever it runs) unless it is
            // disabled; only the vitals some band watches need to reach it.
            store.feed_alerting(
                config
                    .alerting
                    .enabled
                    .then(|| config.alerting.watched_vitals()),
            );
            tokio::spawn(crate::alerting::beat_worker(
                database.clone(),
                ProcessId::this(&config.ingest.client_id),
                crate::alerting::conditions(&stats, sink_monitor),
                shutdown.clone(),
            ));
            Some(tokio::spawn(ondol_ingest::run(
                config.ingest.clone(),
                link,
                store,
                roster_index,
                alerting.as_ref().map(|a| a.feed_wake.clone()),
                stats.clone(),
                ingest_shutdown.clone(),
            )))
        }
        None => {
            drop(store);
            None
        }
    };

    let mut device_port = None;
    let mut tls_front = None;
    if router.is_none() {
        // No embedded broker to guard, but ingest and alerting still
        // follow roster changes made while running.
        tokio::spawn(credentials::follow_store(
            AccessSource::new(database.clone(), false, &roster, |_| None),
            None,
            Arc::new(Verifier::default()),
            roster_updates.clone(),
            credentials::Published {
                credentials: credential_rows.clone(),
                revision: roster_revision,
            },
            config.mqtt.access_reload_interval,
            shutdown.clone(),
        ));
    }
    if let Some(router) = &router {
        let allow_anonymous = config.mqtt.allow_anonymous || options.demo;
        let listener = serve_devices(
            &config,
            router,
            DeviceAccess {
                database: database.clone(),
                roster: &roster,
                credential_rows: credential_rows.clone(),
                roster_revision,
                allow_anonymous,
                roster_updates: roster_updates.clone(),
                staff_tokens: staff_tokens.clone(),
            },
            shutdown.clone(),
        )
        .await?;
        device_port = Some(listener.addr.port());
        tokio::spawn(watch_router(
            router.clone(),
            alerting.as_ref().map(|a| a.outages.clone()),
            shutdown.clone(),
        ));
        tls_front = listener.tls;
    }

    let fleet_shutdown = CancellationToken::new();
    let (story, demo) = match demo {
        Some((stage, homes)) => (stage.story, Some((stage.cues, homes))),
        None => (Vec::new(), None),
    };
    let fleet = match (demo, device_port) {
        (Some((cues, homes)), Some(port)) => {
            tracing::warn!(
                "demo mode: a simulated fleet publishes into this instance and devices connect without credentials"
            );
            let sim = simulate::demo_config(&config.simulator, homes, cues, port);
            Some(tokio::spawn(ondol_sim::run(sim, fleet_shutdown.clone())))
        }
        (Some(_), None) => {
            tracing::warn!(
                "--demo runs its fleet only against the embedded broker; no fleet started"
            );
            None
        }
        _ => None,
    };

    http.set_pipeline_running(true);
    tracing::info!(
        mqtt = %router.as_ref().map_or_else(|| "-".to_owned(), |_| config.mqtt.listen.to_string()),
        http = %http.addr,
        mqtt_tls = ?tls_front.as_ref().map(|front| front.addr),
        broker = %config.ingest.broker,
        data_dir = %data_dir.display(),
        role = %roles.describe(&config),
        "ondol ready"
    );
    if options.demo {
        for t in &demo_tokens {
            tracing::warn!(
                staff = %t.staff,
                role = t.role.as_str(),
                variable = %t.variable,
                token = %t.token,
                "demo mode: a bearer token generated for this run (set the variable to choose one)"
            );
        }
        demo::print_banner(http.addr, device_port, &demo_tokens, &story);
    }

    let lease_lost = alerting
        .as_ref()
        .map_or_else(CancellationToken::new, |a| a.lease_lost.clone());
    let early_exit = tokio::select! {
        _ = shutdown.cancelled() => None,
        result = async { ingest.as_mut().expect("checked").await }, if ingest.is_some() => Some(match result {
            Ok(Ok(())) => Err(anyhow::anyhow!("ingest stopped unexpectedly")),
            Ok(Err(error)) => Err(error).context("ingest failed"),
            Err(error) => Err(error).context("ingest task panicked"),
        }),
        _ = lease_lost.cancelled() => Some(Err(anyhow::anyhow!(
            "another process took this store's alerting lease; this process stopped so that no alert is raised twice"
        ))),
    };
    if let Some(result) = early_exit {
        fleet_shutdown.cancel();
        ingest_shutdown.cancel();
        if let Some(alerting) = alerting {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, alerting.stop()).await;
        }
        http.stop().await;
        return result;
    }

    tracing::info!("shutting down: stopping intake, committing the last batch");
    // Not ready any more; still answering until everything drained.
    http.set_pipeline_running(false);
    fleet_shutdown.cancel();
    if let Some(fleet) = fleet {
        match tokio::time::timeout(Duration::from_secs(10), fleet).await {
            Ok(Ok(Ok(report))) => tracing::info!(report = %report, "simulated fleet stopped"),
            Ok(Ok(Err(error))) => tracing::warn!(error = %error, "simulated fleet failed"),
            Ok(Err(error)) => tracing::warn!(error = %error, "simulated fleet panicked"),
            Err(_) => tracing::warn!("simulated fleet did not stop within 10 s"),
        }
    }
    ingest_shutdown.cancel();
    let drained = match ingest {
        Some(ingest) => Some(tokio::time::timeout(DRAIN_TIMEOUT, ingest).await),
        None => None,
    };
    if let Some(alerting) = alerting {
        // Ingest has committed its last batch: alerting applies the feed.
        match tokio::time::timeout(DRAIN_TIMEOUT, alerting.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(
                error = format!("{error:#}"),
                "alerting stopped with an error"
            ),
            Err(_) => tracing::error!(
                "alerting did not stop within {DRAIN_TIMEOUT:?}; undelivered notifications stay in the outbox"
            ),
        }
    }
    http.stop().await;
    match drained {
        None | Some(Ok(Ok(Ok(())))) => {
            tracing::info!(totals = %stats.snapshot(), "ondol stopped cleanly");
            Ok(())
        }
        Some(Ok(Ok(Err(error)))) => Err(error).context("ingest failed while draining"),
        Some(Ok(Err(error))) => Err(error).context("ingest task panicked while draining"),
        Some(Err(_)) => Err(anyhow::anyhow!(
            "ingest did not drain within {DRAIN_TIMEOUT:?}; pending: the batch being committed and its receipts (totals so far: {})",
            stats.snapshot()
        )),
    }
}

/// Starts the TLS listener when `mqtt.tls.enabled`, reloading its
/// certificate on SIGHUP.
async fn start_tls(
    config: &Config,
    upstream: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<Arc<ondol_broker::tls::TlsFront>>> {
    if !config.mqtt.tls.enabled {
        return Ok(None);
    }
    let front = Arc::new(
        ondol_broker::tls::TlsFront::start(&config.mqtt.tls, upstream)
            .await
            .context("cannot start the MQTT TLS listener")?,
    );
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hangup) = signal(SignalKind::hangup()) {
            let front = front.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        received = hangup.recv() => if received.is_none() { return },
                    }
                    if let Err(error) = front.reload() {
                        tracing::error!(error = %error, "SIGHUP: cannot reload the TLS certificate; keeping the previous one");
                    }
                }
            });
        }
    }
    #[cfg(not(unix))]
    let _ = shutdown;
    Ok(Some(front))
}

/// `--role broker`: the embedded broker alone, until shutdown.
async fn run_broker(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    if std::env::var(&config.mqtt.ingest_password_env).is_err() {
        tracing::warn!(
            variable = %config.mqtt.ingest_password_env,
            "no password for remote ingest workers (key mqtt.ingest_password_env): none can connect"
        );
    }
    let database = config.storage.database_path();
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (key storage.data_dir)",
            config.storage.data_dir.display()
        )
    })?;
    let store = Store::open(&database)
        .with_context(|| format!("cannot open the store at {}", database.display()))?;
    let roster_revision = store
        .roster_revision()
        .context("cannot read the roster revision")?;
    let roster = store.load_roster().context("cannot load the roster")?;
    credentials::check_staff_tokens(&roster, |var| StaffTokens::default().get(var))?;
    let credential_rows = store
        .device_credentials()
        .context("cannot read device credentials")?;
    drop(store);
    let (roster_updates, _unused) = watch::channel(Arc::new(RosterIndex::new(&roster)));
    let router = Router::start(&config.mqtt);
    let listener = serve_devices(
        &config,
        &router,
        DeviceAccess {
            database,
            roster: &roster,
            credential_rows,
            roster_revision,
            allow_anonymous: config.mqtt.allow_anonymous,
            roster_updates,
            staff_tokens: StaffTokens::default(),
        },
        shutdown.clone(),
    )
    .await?;
    tokio::spawn(watch_router(router, None, shutdown.clone()));
    let http = crate::http::start(&config, &roster, false, StaffTokens::default()).await?;
    http.set_pipeline_running(true);
    tracing::info!(mqtt = %listener.addr, http = %http.addr, role = "broker", "ondol ready");
    shutdown.cancelled().await;
    http.stop().await;
    // rumqttd keeps messages in RAM only: what ingest workers have not
    // received yet is gone; devices resend what was not receipted.
    tracing::info!("broker stopped");
    Ok(())
}

/// Who may connect to the embedded broker, and where that is kept.
struct DeviceAccess<'a> {
    database: std::path::PathBuf,
    roster: &'a ondol_model::roster::Roster,
    credential_rows: Vec<ondol_store::DeviceCredentialRow>,
    /// The roster revision `roster` and `credential_rows` were read at.
    roster_revision: i64,
    allow_anonymous: bool,
    roster_updates: watch::Sender<Arc<RosterIndex>>,
    /// Staff apps sign in to the broker with their API token.
    staff_tokens: StaffTokens,
}

/// Opens the embedded broker to devices: the access gate (following
/// credential changes in the store), the plain listener and, when
/// configured, the TLS front.
async fn serve_devices(
    config: &Config,
    router: &Router,
    access: DeviceAccess<'_>,
    shutdown: CancellationToken,
) -> anyhow::Result<DeviceListener> {
    if access.allow_anonymous {
        tracing::warn!(
            "ANONYMOUS MQTT CONNECTIONS ARE ALLOWED (demo mode or mqtt.allow_anonymous): any client can speak as any device by choosing its client id. Never run this way with real residents."
        );
    }
    let staff_tokens = access.staff_tokens;
    let source = AccessSource::new(
        access.database,
        access.allow_anonymous,
        access.roster,
        |var| staff_tokens.get(var),
    )
    .with_ingest_worker(
        &config.mqtt.ingest_username,
        &config.mqtt.ingest_password_env,
        |var| std::env::var(var).ok(),
    );
    let verifier = Arc::new(Verifier::default());
    let gate = ondol_broker::Gate::new(
        source.build(access.roster, &access.credential_rows),
        verifier.clone().into_broker_check(),
    );
    tokio::spawn(credentials::follow_store(
        source,
        Some(gate.clone()),
        verifier,
        access.roster_updates,
        credentials::Published {
            credentials: access.credential_rows,
            revision: access.roster_revision,
        },
        config.mqtt.access_reload_interval,
        shutdown.clone(),
    ));
    let listener = tokio::task::spawn_blocking({
        let router = router.clone();
        move || router.listen(gate)
    })
    .await?
    .context("cannot start the embedded MQTT broker (key mqtt.listen)")?;
    let tls = start_tls(config, listener.loopback(), shutdown).await?;
    Ok(DeviceListener {
        addr: listener.addr,
        tls,
    })
}

/// The embedded broker's device-facing listeners.
struct DeviceListener {
    addr: std::net::SocketAddr,
    tls: Option<Arc<ondol_broker::tls::TlsFront>>,
}

/// Username and password towards an external broker, if configured.
pub(crate) fn broker_credentials(config: &Config) -> anyhow::Result<Option<Credentials>> {
    let ingest = &config.ingest;
    if ingest.username.is_empty() {
        return Ok(None);
    }
    let password = std::env::var(&ingest.password_env).with_context(|| {
        format!(
            "ingest.username is set but the password variable {} is not (key ingest.password_env)",
            ingest.password_env
        )
    })?;
    Ok(Some(Credentials {
        username: ingest.username.clone(),
        password,
    }))
}

/// The TLS client configuration for an `mqtts://` broker, from the PEM
/// files named by `ingest.tls_*`.
pub(crate) fn broker_tls(config: &Config) -> anyhow::Result<rustls::ClientConfig> {
    let ingest = &config.ingest;
    let read = |key: &str, path: &str| {
        std::fs::read(path).with_context(|| format!("cannot read {path} (key ingest.{key})"))
    };
    let ca = read("tls_ca_file", &ingest.tls_ca_file)?;
    let client = if ingest.tls_client_cert_file.is_empty() {
        None
    } else {
        Some((
            read("tls_client_cert_file", &ingest.tls_client_cert_file)?,
            read("tls_client_key_file", &ingest.tls_client_key_file)?,
        ))
    };
    ondol_ingest::source::tls_client_config(
        &ca,
        client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )
    .map_err(|e| anyhow::anyhow!("ingest TLS (keys ingest.tls_*): {e}"))
}

/// The store with the configured time-series sink, and a view of the
/// sink's `system_outage` condition when it is an external one.
fn open_store(
    config: &Config,
    database: &std::path::Path,
) -> anyhow::Result<(Store, Option<ondol_store::influx::SinkMonitor>)> {
    let mut monitor = None;
    let opened = match config.timeseries.backend {
        TimeseriesBackend::Embedded => Store::open(database),
        TimeseriesBackend::Influxdb => {
            let influx = &config.timeseries.influxdb;
            let token = std::env::var(&influx.token_env).with_context(|| {
                format!(
                    "the InfluxDB token variable {} is not set (key timeseries.influxdb.token_env); \
                     set it to the API token (any value for a server without authentication)",
                    influx.token_env
                )
            })?;
            // One spool per ingest worker: workers sharing a data dir must
            // not replay (or clean up) each other's files. The client id is
            // unique per worker (the broker requires it).
            let spool = config
                .storage
                .data_dir
                .join("influx-spool")
                .join(&config.ingest.client_id);
            let sink = InfluxSink::open(influx, &token, &spool)
                .context("cannot start the InfluxDB sink (section timeseries.influxdb)")?;
            tracing::info!(url = %influx.url, bucket = %influx.bucket, spool = %spool.display(), "raw readings go to InfluxDB");
            monitor = Some(sink.monitor());
            Store::open_with_sink(database, Box::new(sink))
        }
    };
    let store =
        opened.with_context(|| format!("cannot open the store at {}", database.display()))?;
    Ok((store, monitor))
}

/// rumqttd's router thread can die silently, after which every connection
/// fails; say so loudly.
async fn watch_router(
    router: Router,
    alerting: Option<tokio::sync::mpsc::Sender<ondol_alerting::Input>>,
    shutdown: CancellationToken,
) {
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ROUTER_PROBE_INTERVAL) => {}
        }
        let probe = router.clone();
        let answered = tokio::task::spawn_blocking(move || probe.probe(Duration::from_secs(5)))
            .await
            .unwrap_or(false);
        if !answered {
            tracing::error!(
                "the embedded MQTT router does not answer; devices cannot deliver readings"
            );
        } else if !healthy {
            tracing::info!("the embedded MQTT router answers again");
        }
        if answered != healthy
            && let Some(alerting) = &alerting
        {
            // Our outage: alerting holds resident alerts and tells supervisors.
            let _ = alerting
                .send(crate::alerting::broker_outage(!answered))
                .await;
        }
        healthy = answered;
    }
}
