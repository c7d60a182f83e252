//! Wiring alerting into `ondol run`: its own store connection, the engine
//! task, the outbox delivery task, the MQTT publisher (an in-process link
//! of the embedded broker or a client of the external one), the webhook
//! with its secret from the environment, and the bridge from what ingest
//! committed to alerting's input (alerting does not know ingest).

use std::sync::Arc;

use anyhow::Context;
use ondol_alerting::{Delivery, Engine, Input, MqttOut, OutageSource, Webhook};
use ondol_broker::Router;
use ondol_ingest::{BrokerTarget, Committed};
use ondol_model::{Clock, SystemClock};
use ondol_store::Store;
use tokio::sync::{Notify, mpsc};
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
pub async fn start(config: &Config, router: Option<&Router>) -> anyhow::Result<Option<Running>> {
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
        (
            BrokerTarget::External {
                host,
                port,
                tls: false,
            },
            _,
        ) => Some(MqttOut::external(
            host,
            *port,
            "ondol-alerts",
            delivery_stop.clone(),
        )),
        (BrokerTarget::External { tls: true, .. }, _) => {
            tracing::warn!(
                "alert notifications over an mqtts:// broker are not supported yet: MQTT alert delivery is off; webhooks still deliver"
            );
            None
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

/// Reports the embedded broker's liveness to alerting.
pub fn broker_outage(down: bool) -> Input {
    Input::Outage {
        source: OutageSource::Broker,
        down,
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
