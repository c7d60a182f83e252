//! Wiring alerting into `ondol run`: the store's one-alerting lease, its
//! own store connection, the engine task (following the store's alerting
//! feed, whichever process committed), the outbox delivery task, the MQTT
//! publisher (an in-process link of the embedded broker or a client of the
//! external one), the webhook with its secret from the environment, and
//! our own outages: this process's conditions in memory, other ingest
//! workers' from their heartbeats in the store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ondol_alerting::{
    Delivery, Engine, ExternalBroker, FeedWatch, Input, MqttOut, OutageSource, Webhook,
};
use ondol_broker::Router;
use ondol_ingest::{BrokerTarget, IngestStats, RosterIndex};
use ondol_model::condition::{OutageCause, SystemOutage};
use ondol_model::{Clock, SystemClock};
use ondol_store::Store;
use ondol_store::processes::{AlertingClaim, ProcessId};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Outages and roster changes waiting for the engine.
const INPUT_CAPACITY: usize = 256;
/// How long the alerting lease lasts without renewal; renewed every third.
const LEASE: Duration = Duration::from_secs(15);
/// How often a process waiting for the lease asks again.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// Alerting while it runs.
#[derive(Debug)]
pub struct Running {
    /// Notified by an ingest writer in this process after each commit.
    pub feed_wake: Arc<Notify>,
    /// Where outages of our own parts are reported.
    pub outages: mpsc::Sender<Input>,
    /// Cancelled if another process took the alerting lease (this one
    /// must stop: two would raise the same alerts).
    pub lease_lost: CancellationToken,
    engine: JoinHandle<Result<(), ondol_alerting::AlertingError>>,
    delivery: JoinHandle<Result<(), ondol_alerting::AlertingError>>,
    lease: JoinHandle<()>,
    delivery_stop: CancellationToken,
    engine_stop: CancellationToken,
    me: ProcessId,
    database: PathBuf,
}

/// Starts alerting, or returns `None` when `alerting.enabled` is false.
/// `roster` is the signal that the store's roster changed (the binary's
/// credential and roster follower publishes it); alerting then reloads the
/// roster and applies it. Refuses to start while another live process
/// holds the store's alerting lease.
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
    let me = ProcessId::this("alerting");
    claim_lease(&database, &me).await?;
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
        (BrokerTarget::Embedded, None) => {
            tracing::warn!(
                "alerting runs without the embedded broker and ingest.broker names no external one: staff alert apps get nothing over MQTT (set ingest.broker to the devices' broker)"
            );
            None
        }
    };
    let delivery_store = Store::open(&database).context("alerting cannot open the store")?;
    let delivery = Delivery::new(
        delivery_store,
        mqtt,
        webhook,
        &alerting,
        clock.clone(),
        wake.clone(),
    );
    let delivery = tokio::spawn(delivery.run(delivery_stop.clone()));

    let (inputs, input_rx) = mpsc::channel(INPUT_CAPACITY);
    let engine_stop = CancellationToken::new();
    let feed_wake = Arc::new(Notify::new());
    let engine = tokio::spawn(ondol_alerting::run(
        engine,
        clock,
        input_rx,
        engine_stop.clone(),
        alerting.stall_after,
        FeedWatch {
            wake: feed_wake.clone(),
            poll: alerting.feed_poll,
        },
    ));
    tokio::spawn(follow_roster(
        database.clone(),
        roster,
        inputs.clone(),
        engine_stop.clone(),
    ));
    let lease_lost = CancellationToken::new();
    let lease = tokio::spawn(keep_lease(
        database.clone(),
        me.clone(),
        lease_lost.clone(),
        engine_stop.clone(),
    ));
    Ok(Some(Running {
        feed_wake,
        outages: inputs,
        lease_lost,
        engine,
        delivery,
        lease,
        delivery_stop,
        engine_stop,
        me,
        database,
    }))
}

/// Takes the store's alerting lease for `me`. While another process holds
/// it, waits for as long as a lease lasts (a restart right after a crash
/// on another host finds the dead holder's lease still fresh), then says
/// who holds it.
async fn claim_lease(database: &std::path::Path, me: &ProcessId) -> anyhow::Result<()> {
    let waited = std::time::Instant::now();
    loop {
        let (db, who) = (database.to_path_buf(), me.clone());
        let claim = tokio::task::spawn_blocking(move || {
            Store::open(&db)?.claim_alerting(&who, jiff::Timestamp::now(), LEASE)
        })
        .await?
        .context("alerting cannot claim its lease in the store")?;
        let (holder, since, renewed) = match claim {
            AlertingClaim::Held => return Ok(()),
            AlertingClaim::HeldBy {
                holder,
                since,
                renewed,
            } => (holder, since, renewed),
        };
        if waited.elapsed() > LEASE + LEASE_CHECK {
            anyhow::bail!(
                "another alerting process runs against this store: {holder}, since {since} (lease renewed {renewed}). \
                 Only one alerting process per store may run: stop this one, or stop that one first"
            );
        }
        if waited.elapsed() < LEASE_CHECK {
            tracing::warn!(holder = %holder, "another process holds the alerting lease; waiting up to {} s for it to end", LEASE.as_secs());
        }
        tokio::time::sleep(LEASE_CHECK).await;
    }
}

/// Renews the lease until `stop`; cancels `lost` if another process took it.
async fn keep_lease(
    database: PathBuf,
    me: ProcessId,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let mut store = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LEASE / 3) => {}
        }
        let (db, who, held) = (database.clone(), me.clone(), store.take());
        let renewed = tokio::task::spawn_blocking(move || {
            let store = match held {
                Some(store) => store,
                None => Store::open(&db)?,
            };
            let renewed = store.renew_alerting(&who, jiff::Timestamp::now());
            renewed.map(|held| (held, store))
        })
        .await;
        match renewed {
            Ok(Ok((true, kept))) => store = Some(kept),
            Ok(Ok((false, _))) => {
                tracing::error!(
                    "another process took the alerting lease (this one was frozen or cut off for longer than {} s): this process stops alerting",
                    LEASE.as_secs()
                );
                lost.cancel();
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot renew the alerting lease; retrying")
            }
            Err(_) => return,
        }
    }
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
            let now = outage
                .as_ref()
                .map(|outage| OutageSource::from(outage.cause));
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

/// How often an ingest worker records its heartbeat and conditions.
const WORKER_BEAT: Duration = Duration::from_secs(1);

/// Gauge every ingest worker exports: how long the oldest alerting feed
/// row has waited (0 when none waits). Alerting takes rows within a
/// second; a growing age means no alerting process runs, which nobody
/// else can page about.
pub const FEED_OLDEST_AGE: &str = "ondol_alerting_feed_oldest_age_seconds";

/// Records this ingest worker's heartbeat and conditions in the store
/// every second until `shutdown`, for alerting in another process, and
/// exports [`FEED_OLDEST_AGE`]. A
/// failed write is logged once per run of failures: a worker that cannot
/// write its heartbeat cannot commit readings either, and alerting sees
/// the heartbeat age.
pub async fn beat_worker(
    database: PathBuf,
    me: ProcessId,
    sources: Vec<ConditionSource>,
    shutdown: CancellationToken,
) {
    let sources = Arc::new(sources);
    let mut store: Option<Store> = None;
    let mut failing = false;
    loop {
        let (db, who, held, sources) =
            (database.clone(), me.clone(), store.take(), sources.clone());
        let beat = tokio::task::spawn_blocking(move || {
            let store = match held {
                Some(store) => store,
                None => Store::open(&db)?,
            };
            let conditions: Vec<SystemOutage> =
                sources.iter().filter_map(|source| source()).collect();
            let now = jiff::Timestamp::now();
            store.beat_ingest_worker(&who, now, &conditions)?;
            let waited = store.feed_oldest()?.map_or(0.0, |oldest| {
                now.duration_since(oldest).as_secs_f64().max(0.0)
            });
            metrics::gauge!(FEED_OLDEST_AGE).set(waited);
            Ok::<_, ondol_store::StoreError>(store)
        })
        .await;
        match beat {
            Ok(Ok(kept)) => {
                store = Some(kept);
                failing = false;
            }
            Ok(Err(error)) if !failing => {
                failing = true;
                tracing::warn!(error = %error, "cannot record this ingest worker's heartbeat in the store");
            }
            Ok(Err(_)) => {}
            Err(_) => return,
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WORKER_BEAT) => {}
        }
    }
}

/// Whether a condition counts only when every live worker reports it: a
/// worker that receives nothing, or cannot reach the broker, leaves its
/// share to the others (the broker hands a share group's messages to the
/// members connected). A worker that cannot commit, or holds messages too
/// long, keeps its share stuck: that counts alone.
fn every_worker_must_see(cause: OutageCause) -> bool {
    matches!(
        cause,
        OutageCause::NoMessages | OutageCause::BrokerUnreachable
    )
}

/// Our outages as the ingest workers' heartbeats show them at `now`:
/// their conditions (see [`every_worker_must_see`]), and `ingest_down`
/// when no worker beat within `timeout` (once alerting has itself run
/// that long, so workers starting beside it have time to beat).
pub fn outages_of_workers(
    workers: &[ondol_store::processes::WorkerBeat],
    now: jiff::Timestamp,
    timeout: Duration,
    running_for: Duration,
) -> BTreeMap<OutageSource, String> {
    let fresh = |beat: jiff::Timestamp| {
        Duration::try_from(now.duration_since(beat)).unwrap_or_default() < timeout
    };
    let live: Vec<_> = workers.iter().filter(|w| fresh(w.heartbeat)).collect();
    let mut down = BTreeMap::new();
    for cause in OutageCause::ALL {
        let reports: Vec<(&str, &SystemOutage)> = live
            .iter()
            .filter_map(|w| {
                w.conditions
                    .iter()
                    .find(|c| c.cause == cause)
                    .map(|c| (w.worker.as_str(), c))
            })
            .collect();
        let counts = if every_worker_must_see(cause) {
            !live.is_empty() && reports.len() == live.len()
        } else {
            !reports.is_empty()
        };
        if counts && let Some((worker, condition)) = reports.first() {
            down.insert(
                OutageSource::from(cause),
                format!("{} (ingest worker {worker})", condition.detail),
            );
        }
    }
    if live.is_empty() && running_for >= timeout {
        let detail = match workers.first() {
            Some(last) => format!(
                "no ingest worker has been heard from for {} s: nothing devices send is committed (last heard: {} on {}, at {})",
                timeout.as_secs(),
                last.worker,
                last.host,
                last.heartbeat
            ),
            None => format!(
                "no ingest worker has started against this store in {} s: nothing devices send is committed",
                timeout.as_secs()
            ),
        };
        down.insert(OutageSource::IngestDown, detail);
    }
    down
}

/// For alerting in a process without ingest: follows the ingest workers'
/// heartbeats in the store and tells alerting when an outage of theirs
/// starts or ends, until `shutdown`.
pub async fn follow_workers(
    database: PathBuf,
    timeout: Duration,
    outages: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let started = std::time::Instant::now();
    let mut current: BTreeMap<OutageSource, String> = BTreeMap::new();
    let mut store: Option<Store> = None;
    loop {
        let (db, held) = (database.clone(), store.take());
        let read = tokio::task::spawn_blocking(move || {
            let store = match held {
                Some(store) => store,
                None => Store::open(&db)?,
            };
            store.ingest_workers().map(|workers| (workers, store))
        })
        .await;
        match read {
            Ok(Ok((workers, kept))) => {
                store = Some(kept);
                let now = outages_of_workers(
                    &workers,
                    jiff::Timestamp::now(),
                    timeout,
                    started.elapsed(),
                );
                let ended = current
                    .keys()
                    .filter(|s| !now.contains_key(s))
                    .map(|s| (*s, false, None));
                let began = now
                    .iter()
                    .filter(|(s, _)| !current.contains_key(s))
                    .map(|(s, detail)| (*s, true, Some(detail.clone())));
                for (source, down, detail) in ended.chain(began).collect::<Vec<_>>() {
                    if outages
                        .send(Input::Outage {
                            source,
                            down,
                            detail,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                current = now;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "alerting cannot read the ingest workers' heartbeats; retrying")
            }
            Err(_) => return,
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
    /// Call after ingest has stopped: the engine applies what the feed
    /// holds, the outbox gets a last round, and the lease is given up.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Running {
            feed_wake: _,
            outages,
            lease_lost: _,
            engine,
            delivery,
            lease,
            delivery_stop,
            engine_stop,
            me,
            database,
        } = self;
        drop(outages);
        engine_stop.cancel();
        let engine_result = engine.await;
        delivery_stop.cancel();
        let delivery_result = delivery.await;
        let _ = lease.await;
        let released =
            tokio::task::spawn_blocking(move || Store::open(&database)?.release_alerting(&me))
                .await;
        if let Ok(Err(error)) = released {
            tracing::warn!(error = %error, "cannot give up the alerting lease; the next alerting process waits for it to expire");
        }
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
            assert_eq!(OutageSource::from(cause), source);
            assert_eq!(source.hides_residents(), source != OutageSource::Timeseries);
        }
    }

    fn beat(
        worker: &str,
        age_s: i64,
        causes: &[OutageCause],
    ) -> ondol_store::processes::WorkerBeat {
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        ondol_store::processes::WorkerBeat {
            worker: worker.to_owned(),
            host: "h".to_owned(),
            pid: 1,
            heartbeat: now - jiff::SignedDuration::from_secs(age_s),
            conditions: causes
                .iter()
                .map(|&cause| SystemOutage {
                    cause,
                    since: now,
                    detail: cause.as_str().to_owned(),
                })
                .collect(),
        }
    }

    fn outages(
        workers: &[ondol_store::processes::WorkerBeat],
        running_s: u64,
    ) -> Vec<OutageSource> {
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        outages_of_workers(
            workers,
            now,
            Duration::from_secs(15),
            Duration::from_secs(running_s),
        )
        .into_keys()
        .collect()
    }

    #[test]
    fn a_worker_left_without_messages_or_broker_is_no_outage_while_another_works() {
        let one_blind = [
            beat(
                "a",
                1,
                &[OutageCause::NoMessages, OutageCause::BrokerUnreachable],
            ),
            beat("b", 1, &[]),
        ];
        assert_eq!(outages(&one_blind, 60), vec![]);
        let both_blind = [
            beat("a", 1, &[OutageCause::BrokerUnreachable]),
            beat("b", 2, &[OutageCause::BrokerUnreachable]),
            // Dead for long: not asked.
            beat("c", 600, &[]),
        ];
        assert_eq!(outages(&both_blind, 60), vec![OutageSource::Broker]);
    }

    #[test]
    fn a_worker_whose_share_is_stuck_is_an_outage_alone() {
        let stuck = [
            beat(
                "a",
                1,
                &[OutageCause::StoreUnwritable, OutageCause::IngestStalled],
            ),
            beat("b", 1, &[]),
        ];
        assert_eq!(
            outages(&stuck, 60),
            vec![OutageSource::Store, OutageSource::IngestStalled]
        );
    }

    #[test]
    fn no_worker_heard_from_is_ingest_down_once_alerting_has_run_long_enough() {
        let gone = [beat("a", 16, &[]), beat("b", 40, &[])];
        assert_eq!(outages(&gone, 60), vec![OutageSource::IngestDown]);
        // Just started: workers beside it may not have beaten yet.
        assert_eq!(outages(&gone, 5), vec![]);
        assert_eq!(outages(&[], 60), vec![OutageSource::IngestDown]);
        let detail = outages_of_workers(
            &gone,
            jiff::Timestamp::from_second(1_800_000_000).expect("time"),
            Duration::from_secs(15),
            Duration::from_secs(60),
        );
        assert!(detail[&OutageSource::IngestDown].contains("last heard: a on h"));
    }
}
