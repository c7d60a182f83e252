//! Wiring alerting into `ondol run`: its own store connection, the engine
//! task, the outbox delivery task, the MQTT publisher (an in-process link
//! of the embedded broker or a client of the external one), the webhook
//! with its secret from the environment, and the bridge from what ingest
//! committed to alerting's input (alerting does not know ingest).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ondol_alerting::{Delivery, Engine, ExternalBroker, Input, MqttOut, OutageSource, Webhook};
use ondol_broker::Router;
use ondol_ingest::{BrokerTarget, Committed, IngestStats, RosterIndex};
use ondol_model::condition::{OutageCause, SystemOutage};
use ondol_model::{Clock, SystemClock};
use ondol_store::Store;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Batches of committed readings waiting for the engine.
const INPUT_CAPACITY: usize = 256;

/// Alerting while it runs.
#[derive(Debug)]
pub struct Running {
    /// Where ingest hands over what it committed.
    pub committed: mpsc::Sender<Committed>,
    /// Where outages of our own parts are reported.
    pub outages: mpsc::Sender<Input>,
    engine: JoinHandle<Result<(), ondol_alerting::AlertingError>>,
    bridge: JoinHandle<()>,
    delivery: JoinHandle<Result<(), ondol_alerting::AlertingError>>,
    delivery_stop: CancellationToken,
    engine_stop: CancellationToken,
}

/// Starts alerting, or returns `None` when `alerting.enabled` is false.
/// `roster` is the signal that the store's roster changed (the binary's
/// credential and roster follower publishes it); alerting then reloads the
/// roster and applies it.
pub async fn start(
    config: &Config,
    router: Option<&Router>,
    roster: watch::Receiver<Arc<RosterIndex>>,
) -> anyhow::Result<Option<Running>> {
    if !config.alerting.enabled {
        tracing::warn!("alerting is disabled (alerting.enabled = false): nobody is alerted");
        return Ok(None);
    }
    let alerting = config.alerting.clone();
    let webhook = if alerting.webhook_url.is_empty() {
        None
    } else {
        let secret = std::env::var(&alerting.webhook_secret_env).with_context(|| {
            format!(
                "alerting.webhook_url is set, but the environment variable {} (alerting.webhook_secret_env) holding its secret is not",
                alerting.webhook_secret_env
            )
        })?;
        Some(Webhook::new(
            &alerting.webhook_url,
            secret.as_bytes(),
            alerting.webhook_timeout,
        )?)
    };
    let database = config.storage.database_path();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let wake = Arc::new(Notify::new());
    let engine = tokio::task::spawn_blocking({
        let (database, alerting, clock, wake) = (
            database.clone(),
            alerting.clone(),
            clock.clone(),
            wake.clone(),
        );
        let webhook = webhook.is_some();
        move || -> anyhow::Result<Engine> {
            let store = Store::open(&database).context("alerting cannot open the store")?;
            Engine::start(store, alerting, clock, webhook, wake)
                .context("alerting cannot rebuild its state from the store")
        }
    })
    .await??;

    let delivery_stop = CancellationToken::new();
    let mqtt = match (&config.ingest.broker, router) {
        (BrokerTarget::Embedded, Some(router)) => {
            let router = router.clone();
            let link = tokio::task::spawn_blocking(move || router.link("ondol-alerts"))
                .await?
                .context("alerting cannot open a link to the embedded broker")?;
            Some(MqttOut::embedded(link.tx, link.rx, delivery_stop.clone()))
        }
        (BrokerTarget::External { host, port, tls }, _) => {
            // Ingest's credentials and TLS settings: one identity towards
            // the broker, so one ACL entry covers receipts and alerts.
            let broker = ExternalBroker {
                host: host.clone(),
                port: *port,
                client_id: format!("{}-alerts", config.ingest.client_id),
                credentials: crate::server::broker_credentials(config)?
                    .map(|c| (c.username, c.password)),
                tls: if *tls {
                    Some(Arc::new(crate::server::broker_tls(config)?))
                } else {
                    None
                },
            };
            Some(MqttOut::external(broker, delivery_stop.clone()))
        }
        (BrokerTarget::Embedded, None) => None,
    };
    let delivery_store = Store::open(&database).context("alerting cannot open the store")?;
    let delivery = Delivery::new(
        delivery_store,
        mqtt,
        webhook,
        &alerting,
        clock.clone(),
        wake,
    );
    let delivery = tokio::spawn(delivery.run(delivery_stop.clone()));

    let (inputs, input_rx) = mpsc::channel(INPUT_CAPACITY);
    // Stopped once the bridge is done (ingest has stopped); it applies
    // everything already queued first.
    let engine_stop = CancellationToken::new();
    let engine = tokio::spawn(ondol_alerting::run(
        engine,
        clock,
        input_rx,
        engine_stop.clone(),
        alerting.stall_after,
    ));
    tokio::spawn(follow_roster(
        database.clone(),
        roster,
        inputs.clone(),
        engine_stop.clone(),
    ));
    let (committed, mut committed_rx) = mpsc::channel::<Committed>(INPUT_CAPACITY);
    let bridge = tokio::spawn({
        let inputs = inputs.clone();
        async move {
            while let Some(news) = committed_rx.recv().await {
                let input = Input::Committed {
                    readings: news.readings,
                    statuses: news.statuses,
                };
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Some(Running {
        committed,
        outages: inputs,
        engine,
        bridge,
        delivery,
        delivery_stop,
        engine_stop,
    }))
}

/// Hands the store's roster to the engine each time `roster` says it
/// changed, until `stop`.
async fn follow_roster(
    database: PathBuf,
    mut roster: watch::Receiver<Arc<RosterIndex>>,
    inputs: mpsc::Sender<Input>,
    stop: CancellationToken,
) {
    // The engine loaded the roster itself when it started.
    roster.mark_unchanged();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = roster.changed() => if changed.is_err() { return },
        }
        let database = database.clone();
        let loaded =
            tokio::task::spawn_blocking(move || Store::open(&database)?.load_roster()).await;
        match loaded {
            Ok(Ok(loaded)) => {
                if inputs.send(Input::Roster(Arc::new(loaded))).await.is_err() {
                    return;
                }
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "alerting cannot reload the changed roster; it keeps the previous one until the next change");
            }
            Err(_) => return,
        }
    }
}

/// How often the conditions of ingest and the sink are read (a mutex each).
const CONDITION_POLL: Duration = Duration::from_secs(1);

/// Reads one `system_outage` condition.
pub type ConditionSource = Box<dyn Fn() -> Option<SystemOutage> + Send + Sync>;

/// The conditions this process watches: ingest's watchdog (nothing
/// arrives), its connection to an external broker, its commits to the
/// store, its backlog (messages held too long), and the external
/// time-series sink if there is one.
pub fn conditions(
    stats: &Arc<IngestStats>,
    sink: Option<ondol_store::influx::SinkMonitor>,
) -> Vec<ConditionSource> {
    let mut sources: Vec<ConditionSource> = Vec::new();
    for pick in [
        |s: &IngestStats| s.outage.get(),
        |s: &IngestStats| s.broker.get(),
        |s: &IngestStats| s.store.get(),
        |s: &IngestStats| s.stalled.get(),
    ] {
        let stats = stats.clone();
        sources.push(Box::new(move || pick(&stats)));
    }
    if let Some(sink) = sink {
        sources.push(Box::new(move || sink.outage()));
    }
    sources
}

/// Alerting's name for the part a condition is about.
pub fn outage_source(cause: OutageCause) -> OutageSource {
    match cause {
        OutageCause::NoMessages => OutageSource::NoMessages,
        OutageCause::BrokerUnreachable => OutageSource::Broker,
        OutageCause::StoreUnwritable => OutageSource::Store,
        OutageCause::IngestStalled => OutageSource::IngestStalled,
        OutageCause::SinkUnauthorized | OutageCause::SinkUnreachable => OutageSource::Timeseries,
    }
}

/// Tells alerting when a condition is raised or cleared, until `shutdown`.
/// Conditions are idempotent flags owned by the parts that detect them;
/// reading them here keeps ingest and the sink unaware of alerting.
pub async fn follow_conditions(
    sources: Vec<ConditionSource>,
    outages: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let mut current: Vec<Option<OutageSource>> = vec![None; sources.len()];
    loop {
        for (source, was) in sources.iter().zip(current.iter_mut()) {
            let outage = source();
            let now = outage.as_ref().map(|outage| outage_source(outage.cause));
            if now == *was {
                continue;
            }
            let detail = outage.map(|outage| outage.detail);
            let changes = [
                was.map(|s| (s, false, None)),
                now.map(|s| (s, true, detail)),
            ];
            for (source, down, detail) in changes.into_iter().flatten() {
                let input = Input::Outage {
                    source,
                    down,
                    detail,
                };
                if outages.send(input).await.is_err() {
                    return;
                }
            }
            *was = now;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CONDITION_POLL) => {}
        }
    }
}

/// Reports the embedded broker's liveness to alerting.
pub fn broker_outage(down: bool) -> Input {
    Input::Outage {
        source: OutageSource::Broker,
        down,
        detail: down
            .then(|| "the embedded MQTT broker does not answer its liveness probe".to_owned()),
    }
}

impl Running {
    /// Call after ingest has stopped (its `committed` sender is gone):
    /// the engine applies what is queued, then the outbox gets a last round.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Running {
            committed,
            outages,
            engine,
            bridge,
            delivery,
            delivery_stop,
            engine_stop,
        } = self;
        drop(committed);
        drop(outages);
        let _ = bridge.await;
        engine_stop.cancel();
        let engine_result = engine.await;
        delivery_stop.cancel();
        let delivery_result = delivery.await;
        engine_result
            .context("the alerting engine panicked")?
            .context("alerting failed")?;
        delivery_result
            .context("alert delivery panicked")?
            .context("alert delivery failed")?;
        tracing::info!(
            "alerting stopped; its state and undelivered notifications are in the store"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(inputs: &mut mpsc::Receiver<Input>) -> (OutageSource, bool) {
        match tokio::time::timeout(Duration::from_secs(30), inputs.recv()).await {
            Ok(Some(Input::Outage { source, down, .. })) => (source, down),
            other => panic!("expected an outage input, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn raised_and_cleared_conditions_reach_alerting_once_each() {
        let stats = Arc::new(IngestStats::default());
        let now = jiff::Timestamp::now();
        stats
            .broker
            .raise(OutageCause::BrokerUnreachable, now, "test");
        let (tx, mut inputs) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow_conditions(
            conditions(&stats, None),
            tx,
            shutdown.clone(),
        ));
        assert_eq!(next(&mut inputs).await, (OutageSource::Broker, true));
        stats.store.raise(OutageCause::StoreUnwritable, now, "test");
        assert_eq!(next(&mut inputs).await, (OutageSource::Store, true));
        stats.broker.clear();
        assert_eq!(next(&mut inputs).await, (OutageSource::Broker, false));
        shutdown.cancel();
        task.await.expect("the follower stops");
        // Nothing else was sent: the store's condition was reported once.
        assert!(inputs.try_recv().is_err());
    }

    #[test]
    fn every_cause_has_an_alerting_source_and_only_the_sink_hides_nothing() {
        for (cause, source) in [
            (OutageCause::NoMessages, OutageSource::NoMessages),
            (OutageCause::BrokerUnreachable, OutageSource::Broker),
            (OutageCause::StoreUnwritable, OutageSource::Store),
            (OutageCause::IngestStalled, OutageSource::IngestStalled),
            (OutageCause::SinkUnreachable, OutageSource::Timeseries),
            (OutageCause::SinkUnauthorized, OutageSource::Timeseries),
        ] {
            assert_eq!(outage_source(cause), source);
            assert_eq!(source.hides_residents(), source != OutageSource::Timeseries);
        }
    }
}
