//! Delivering the notification outbox: MQTT (the embedded broker's
//! in-process link or an external broker, where a notification counts as
//! delivered on the broker's PUBACK) and a signed webhook, each
//! notification retried with exponential backoff until it is delivered or
//! too old.
//!
//! Delivery is at least once: a crash between handing a notification over
//! and marking it delivered sends it again after the restart, with the same
//! idempotency key (in the body and the `Idempotency-Key` header).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use sha2::Sha256;
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

use ondol_model::Clock;
use ondol_model::backoff::Backoff;
use ondol_store::Store;
use ondol_store::alerts::{Channel, OutboxRow};

use crate::config::AlertingConfig;
use crate::error::AlertingError;

/// The header carrying the body's signature: `sha256=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Ondol-Signature";
/// The header carrying the notification's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Notifications handled per round.
const BATCH: usize = 100;
/// The longest wait between looks at the outbox.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// How alert events reach MQTT.
#[derive(Clone)]
pub enum MqttOut {
    /// The embedded broker's in-process link (QoS 0 into the router; each
    /// subscriber's own QoS applies on the way out).
    Embedded(Arc<Mutex<LinkTx>>),
    /// A client of an external broker (QoS 1, delivered on PUBACK).
    External(ExternalPublisher),
}

impl std::fmt::Debug for MqttOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MqttOut::Embedded(_) => "MqttOut::Embedded",
            MqttOut::External(_) => "MqttOut::External",
        })
    }
}

impl MqttOut {
    /// Uses an in-process link of the embedded broker. Its receive half is
    /// drained on a thread of its own until `shutdown` (rumqttd stops
    /// serving a link whose notifications nobody reads).
    pub fn embedded(tx: LinkTx, mut rx: LinkRx, shutdown: CancellationToken) -> MqttOut {
        let spawned = std::thread::Builder::new()
            .name("alerts-link".into())
            .spawn(move || {
                while !shutdown.is_cancelled() {
                    match rx.recv_deadline(Instant::now() + Duration::from_millis(200)) {
                        Ok(Some(Notification::Unschedule)) => {
                            let _ = rx.ready();
                        }
                        Ok(_) | Err(rumqttd::local::LinkError::RecvTimeout(_)) => {}
                        Err(error) => {
                            tracing::error!(error = %error, "the alert link to the embedded broker failed");
                            return;
                        }
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(error = %error, "cannot start the alert link thread");
        }
        MqttOut::Embedded(Arc::new(Mutex::new(tx)))
    }

    /// Connects to an external broker (TCP, or TLS with `tls`), reconnecting
    /// with jittered backoff. A notification counts as delivered only when
    /// the broker's PUBACK for it arrives (see [`ExternalPublisher`]).
    pub fn external(broker: ExternalBroker, shutdown: CancellationToken) -> MqttOut {
        MqttOut::External(ExternalPublisher::start(broker, shutdown))
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self {
            MqttOut::Embedded(tx) => {
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || {
                    tx.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .publish(topic, payload)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
            MqttOut::External(publisher) => publisher.publish(topic, payload).await,
        }
    }
}

/// Where and how to reach an external broker.
#[derive(Clone)]
pub struct ExternalBroker {
    pub host: String,
    pub port: u16,
    /// Stable, and distinct from ingest's.
    pub client_id: String,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// `Some` for `mqtts://`: the same TLS client settings ingest uses.
    pub tls: Option<Arc<rumqttc::tokio_rustls::rustls::ClientConfig>>,
}

impl std::fmt::Debug for ExternalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("ExternalBroker")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a published notification may wait for its PUBACK before the
/// attempt counts as failed (and is retried with backoff).
const PUBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A notification handed to the client, waiting for its PUBACK.
struct Inflight {
    /// The packet id the client gave it, once it went out.
    pkid: Option<u16>,
    acked: oneshot::Sender<()>,
}

/// Alert notifications to an external broker, each counted delivered only
/// once the broker acknowledged it (PUBACK, QoS 1).
///
/// - While disconnected, an attempt fails at once: nothing waits in the
///   client's memory, the durable outbox retries it later.
/// - One notification is in flight at a time (the outbox delivers in
///   order), so the PUBACK is matched by the packet id the client assigned.
/// - Clean session: a publish lost with a connection is not resent by the
///   client after the reconnect (the outbox already retries it), so a
///   receiver does not get it twice for that reason. Delivery stays at
///   least once: a PUBACK lost on the way back means a resend, which
///   receivers drop by its idempotency key.
#[derive(Clone)]
pub struct ExternalPublisher {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    inflight: Arc<Mutex<Option<Inflight>>>,
}

impl std::fmt::Debug for ExternalPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalPublisher")
            .field("connected", &*self.connected.borrow())
            .finish_non_exhaustive()
    }
}

impl ExternalPublisher {
    fn start(broker: ExternalBroker, shutdown: CancellationToken) -> ExternalPublisher {
        let mut options = MqttOptions::new(&broker.client_id, &broker.host, broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        if let Some((username, password)) = &broker.credentials {
            options.set_credentials(username, password);
        }
        if let Some(tls) = &broker.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let (connected_tx, connected) = watch::channel(false);
        let inflight: Arc<Mutex<Option<Inflight>>> = Arc::default();
        let task_inflight = inflight.clone();
        let task_client = client.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = task_client.try_disconnect();
                        return;
                    }
                    event = eventloop.poll() => event,
                };
                let lock = || task_inflight.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff.reset();
                        connected_tx.send_replace(true);
                        tracing::info!("alert publisher connected to the external broker");
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(inflight) = lock().as_mut()
                            && inflight.pkid.is_none()
                        {
                            inflight.pkid = Some(pkid);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let mut inflight = lock();
                        if inflight.as_ref().is_some_and(|i| i.pkid == Some(ack.pkid))
                            && let Some(done) = inflight.take()
                        {
                            let _ = done.acked.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        connected_tx.send_replace(false);
                        // Its waiter learns the connection is gone.
                        lock().take();
                        let wait = backoff.next_delay(rand::random::<f64>());
                        tracing::warn!(error = %error, retry_in = ?wait, "alert publisher cannot reach the external broker");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        });
        ExternalPublisher {
            client,
            connected,
            inflight,
        }
    }

    /// Publishes one notification (QoS 1) and waits for the broker's PUBACK.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        if !*self.connected.borrow() {
            return Err("the external broker is not connected".into());
        }
        let (acked, puback) = oneshot::channel();
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Inflight { pkid: None, acked });
        if let Err(error) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            self.inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            return Err(error.to_string());
        }
        match tokio::time::timeout(PUBACK_TIMEOUT, puback).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the connection to the broker was lost before its PUBACK".into()),
            Err(_) => {
                self.inflight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Err(format!(
                    "no PUBACK from the broker within {PUBACK_TIMEOUT:?}"
                ))
            }
        }
    }
}

/// A webhook for SMS or messenger gateways.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `sha256=<hex HMAC-SHA256 of body>` for the signature header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(url: &str, secret: &[u8], timeout: Duration) -> Result<Webhook, AlertingError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| AlertingError::Task {
                task: "webhook client",
                reason: e.to_string(),
            })?;
        Ok(Webhook {
            client,
            url: url.to_owned(),
            secret: Arc::from(secret),
        })
    }

    async fn post(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, signature(&self.secret, &body))
            .header(IDEMPOTENCY_HEADER, key)
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {status}"))
        }
    }
}

/// Delivers the outbox.
#[derive(Debug)]
pub struct Delivery {
    store: Arc<Mutex<Store>>,
    mqtt: Option<MqttOut>,
    webhook: Option<Webhook>,
    clock: Arc<dyn Clock>,
    retry_max_delay: Duration,
    give_up_after: Duration,
    wake: Arc<Notify>,
}

impl Delivery {
    /// `store` is a connection of its own (the engine has another).
    pub fn new(
        store: Store,
        mqtt: Option<MqttOut>,
        webhook: Option<Webhook>,
        config: &AlertingConfig,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
    ) -> Delivery {
        Delivery {
            store: Arc::new(Mutex::new(store)),
            mqtt,
            webhook,
            clock,
            retry_max_delay: config.retry_max_delay,
            give_up_after: config.give_up_after,
            wake,
        }
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ondol_store::StoreError> + Send + 'static,
    ) -> Result<T, AlertingError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .map_err(|e| AlertingError::Task {
            task: "outbox store",
            reason: e.to_string(),
        })?
        .map_err(AlertingError::from)
    }

    /// One round: tries every notification that is due. Returns how many
    /// were tried.
    pub async fn deliver_due(&self) -> Result<usize, AlertingError> {
        let now = self.clock.now();
        let due = self
            .with_store(move |store| store.due_notifications(now, BATCH))
            .await?;
        let count = due.len();
        for row in due {
            let result = self.deliver(&row).await;
            let now = self.clock.now();
            let id = row.id;
            match result {
                Ok(()) => {
                    self.with_store(move |store| store.notification_delivered(id, now))
                        .await?;
                }
                Err(error) => {
                    let retry_at = self.retry_at(&row, now);
                    if retry_at.is_none() {
                        tracing::error!(notification = id, alert = ?row.alert_id, channel = row.channel.as_str(), attempts = row.attempts + 1, error = %error, "giving up on a notification; an operator must follow it up");
                    } else {
                        tracing::warn!(notification = id, channel = row.channel.as_str(), attempts = row.attempts + 1, error = %error, "notification not delivered; will retry");
                    }
                    self.with_store(move |store| {
                        store.notification_failed(id, now, &error, retry_at)
                    })
                    .await?;
                }
            }
        }
        Ok(count)
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<(), String> {
        match row.channel {
            Channel::Mqtt => match &self.mqtt {
                Some(mqtt) => mqtt.publish(row.target.clone(), row.payload.clone()).await,
                None => Err("no MQTT publisher configured".into()),
            },
            Channel::Webhook => match &self.webhook {
                Some(webhook) => {
                    let key = row.key.strip_suffix(":webhook").unwrap_or(&row.key);
                    webhook.post(key, row.payload.clone()).await
                }
                None => Err("no webhook configured (alerting.webhook_url)".into()),
            },
        }
    }

    /// The next attempt after a failure, or `None` to give up.
    fn retry_at(&self, row: &OutboxRow, now: Timestamp) -> Option<Timestamp> {
        let age = now.duration_since(row.created_at);
        if age >= SignedDuration::try_from(self.give_up_after).unwrap_or(SignedDuration::MAX) {
            return None;
        }
        let mut backoff = Backoff::new(Duration::from_secs(1), self.retry_max_delay);
        for _ in 0..row.attempts {
            backoff.next_delay(1.0);
        }
        // Full jitter, but never less than half the ceiling.
        let delay = backoff.next_delay(0.5 + rand::random::<f64>() / 2.0);
        let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
        Some(now.saturating_add(delay).unwrap_or(Timestamp::MAX))
    }

    /// Delivers until `shutdown`, then makes one last round.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AlertingError> {
        loop {
            let tried = match self.deliver_due().await {
                Ok(tried) => tried,
                Err(error) => {
                    tracing::error!(error = %error, "cannot read the notification outbox");
                    0
                }
            };
            if tried >= BATCH {
                continue;
            }
            let next = self
                .with_store(|store| store.next_notification_at())
                .await
                .unwrap_or(None);
            let wait = next
                .map(|at| {
                    // Overdue (negative) means now.
                    Duration::try_from(at.duration_since(self.clock.now())).unwrap_or_default()
                })
                .unwrap_or(MAX_IDLE)
                .min(MAX_IDLE);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = self.deliver_due().await;
                    return Ok(());
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
