//! Where device messages come from, and where receipts go back to.
//!
//! - The embedded broker: an in-process rumqttd link, subscribed before any
//!   device could connect. rumqttd drops what a slow subscriber misses, so
//!   the link is drained on its own thread into ingest's queue.
//! - An external broker: a rumqttc client (MQTT 5, falling back to 3.1.1 when
//!   the broker does not speak 5; TCP or TLS) with a stable id and
//!   a persistent session, reconnecting with jittered exponential backoff
//!   (rumqttc itself retries at once, forever), optionally in a shared
//!   subscription group so several workers split the devices.
//!
//! # Manual acks (external broker)
//!
//! The client acks nothing by itself. Each message carries an [`AckToken`]
//! through the pipeline; the writer acks a batch's messages, in receive
//! order, only after the batch has committed and its receipts are out. The
//! acks go through the client's request channel from the writer's thread,
//! never from the task polling the event loop. A worker killed before its
//! commit leaves the messages unacked in the broker's persistent session,
//! which delivers them again when the worker (or another member of its
//! share group) comes back; storage is idempotent, so a redelivery of what
//! was in fact stored is a counted duplicate.
//!
//! Packet ids belong to one connection: every (re)connect starts a new
//! epoch, and acks owed for an older epoch are dropped, relying on the
//! broker's redelivery. (An ack already in the client's queue when the
//! connection drops is sent on the new connection; MQTT brokers resend
//! unacked messages with their old packet ids, so it acks the message it was
//! meant for.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ondol_model::backoff::Backoff;
use ondol_model::wire::{READINGS_FILTER, STATUS_FILTER};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;
use crate::judge::Inbound;
use crate::telemetry::{self, IngestStats};
use ondol_model::condition::OutageCause;

/// How ingest reaches the broker.
pub enum SourceLink {
    /// The embedded broker's in-process link, already subscribed to the
    /// readings and status filters.
    Embedded { tx: LinkTx, rx: LinkRx },
    /// An external broker at this address.
    External {
        host: String,
        port: u16,
        credentials: Option<Credentials>,
        /// `Some` for `mqtts://` (see [`tls_client_config`]).
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// A TLS client configuration from PEM bytes: the CA certificate(s) the
/// broker must chain to and, for client authentication, our certificate
/// chain and private key. Uses rustls with the ring provider.
pub fn tls_client_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("the CA file is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a CA certificate is not usable: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA file holds no certificate".into());
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the client certificate file is not PEM: {e}"))?;
            if chain.is_empty() {
                return Err("the client certificate file holds no certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| format!("the client key file holds no usable private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not fit: {e}"))
        }
    }
}

/// Username and password towards an external broker.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Acknowledges one message to the external broker once it is committed.
#[derive(Debug, Clone)]
pub struct AckToken {
    /// The connection the message arrived on.
    epoch: u64,
    publish: AckPublish,
}

impl std::fmt::Debug for SourceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceLink::Embedded { .. } => f.write_str("SourceLink::Embedded"),
            SourceLink::External { host, port, .. } => {
                write!(f, "SourceLink::External({host}:{port})")
            }
        }
    }
}

/// Publishes receipts; used from the writer's blocking thread.
pub enum ReceiptSink {
    Embedded(LinkTx),
    External {
        /// The current client (its protocol can change once, at the first
        /// connection: MQTT 5 or the 3.1.1 fallback).
        client: Arc<RwLock<MqttClient>>,
        runtime: tokio::runtime::Handle,
        /// The current connection's epoch (see [`AckToken`]).
        epoch: Arc<AtomicU64>,
    },
}

impl std::fmt::Debug for ReceiptSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReceiptSink::Embedded(_) => "ReceiptSink::Embedded",
            ReceiptSink::External { .. } => "ReceiptSink::External",
        })
    }
}

impl ReceiptSink {
    /// Publishes one receipt (QoS 1 to the device: the device's own
    /// subscription sets the QoS on the embedded broker).
    pub fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self {
            ReceiptSink::Embedded(tx) => tx
                .publish(topic, payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            ReceiptSink::External {
                client, runtime, ..
            } => {
                let client = current(client);
                runtime.block_on(client.publish(topic, payload))
            }
        }
    }

    /// Acks committed messages in the order given (their receive order).
    /// Returns how many acks were dropped because their connection is gone.
    pub fn ack(&mut self, tokens: Vec<AckToken>) -> usize {
        let ReceiptSink::External {
            client,
            runtime,
            epoch,
        } = self
        else {
            return 0;
        };
        let client = current(client);
        let mut dropped = 0;
        for token in tokens {
            if token.epoch != epoch.load(Ordering::SeqCst) {
                dropped += 1;
                continue;
            }
            // Waits only for room in the client's request queue, which the
            // event loop task drains; never awaited on that task itself.
            if let Err(error) = runtime.block_on(client.ack(&token.publish)) {
                tracing::warn!(error = %error, "cannot ack a committed message; the broker will redeliver it");
                dropped += 1;
            }
        }
        dropped
    }
}

fn current(client: &RwLock<MqttClient>) -> MqttClient {
    client.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The MQTT protocol versions ingest speaks to an external broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V5,
    V311,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::V5 => "5",
            Protocol::V311 => "3.1.1",
        }
    }
}

/// A client of either protocol version.
#[derive(Clone)]
pub enum MqttClient {
    V311(AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl std::fmt::Debug for MqttClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MqttClient::V311(_) => "MqttClient::V311",
            MqttClient::V5(_) => "MqttClient::V5",
        })
    }
}

/// A received publish of either protocol version, kept to ack it.
#[derive(Debug, Clone)]
enum AckPublish {
    V311(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

impl MqttClient {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self {
            MqttClient::V311(c) => c
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string()),
            MqttClient::V5(c) => c
                .publish(topic, V5QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn ack(&self, publish: &AckPublish) -> Result<(), String> {
        match (self, publish) {
            (MqttClient::V311(c), AckPublish::V311(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (MqttClient::V5(c), AckPublish::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("the message arrived over the other protocol version".into()),
        }
    }

    fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            MqttClient::V311(c) => c
                .try_subscribe(filter, QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            MqttClient::V5(c) => c
                .try_subscribe(filter, V5QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    fn try_disconnect(&self) {
        let _ = match self {
            MqttClient::V311(c) => c.try_disconnect().map_err(|e| e.to_string()),
            MqttClient::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// An event loop of either protocol version.
enum MqttLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What ingest needs to know of an event, whatever the protocol.
// Lives for one loop iteration; boxing the publish would cost an allocation
// per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Happened {
    Publish {
        topic: String,
        payload: bytes::Bytes,
        ack: AckPublish,
    },
    ConnAck {
        session_present: bool,
    },
    SubAck {
        refused: bool,
    },
    Other,
    Failed(String),
}

impl MqttLoop {
    async fn poll(&mut self) -> Happened {
        match self {
            MqttLoop::V311(eventloop) => match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => Happened::Publish {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    ack: AckPublish::V311(publish),
                },
                Ok(Event::Incoming(Packet::ConnAck(ack))) => Happened::ConnAck {
                    session_present: ack.session_present,
                },
                Ok(Event::Incoming(Packet::SubAck(suback))) => Happened::SubAck {
                    refused: suback
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure)),
                },
                Ok(_) => Happened::Other,
                Err(error) => Happened::Failed(error.to_string()),
            },
            MqttLoop::V5(eventloop) => {
                use rumqttc::v5::mqttbytes::v5::{Packet as P5, SubscribeReasonCode as R5};
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(P5::Publish(publish))) => {
                        match String::from_utf8(publish.topic.to_vec()) {
                            Ok(topic) => Happened::Publish {
                                topic,
                                payload: publish.payload.clone(),
                                ack: AckPublish::V5(publish),
                            },
                            // MQTT topics are UTF-8: a broker sending
                            // anything else is broken; not a device message.
                            Err(_) => Happened::Other,
                        }
                    }
                    Ok(rumqttc::v5::Event::Incoming(P5::ConnAck(ack))) => Happened::ConnAck {
                        session_present: ack.session_present,
                    },
                    Ok(rumqttc::v5::Event::Incoming(P5::SubAck(suback))) => Happened::SubAck {
                        refused: suback
                            .return_codes
                            .iter()
                            .any(|code| !matches!(code, R5::Success(_))),
                    },
                    Ok(_) => Happened::Other,
                    Err(error) => Happened::Failed(error.to_string()),
                }
            }
        }
    }
}

/// What a client needs to (re)connect.
#[derive(Clone)]
struct ExternalBroker {
    client_id: String,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Receipts and acks are small packets that devices wait for: send each at
/// once instead of letting Nagle's algorithm hold it for the broker's
/// delayed ACK (tens of milliseconds).
fn no_delay() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network
}

impl ExternalBroker {
    fn transport(&self) -> Option<rumqttc::Transport> {
        self.tls
            .clone()
            .map(|tls| rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)))
    }

    fn connect(&self, protocol: Protocol) -> (MqttClient, MqttLoop) {
        // Refusing an oversized message is ingest's job (it answers with
        // `payload_too_large`); a client-side limit would drop the
        // connection and get the same message redelivered forever.
        const MAX_IN: usize = 16 * 1024 * 1024;
        match protocol {
            Protocol::V311 => {
                let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
                options.set_keep_alive(Duration::from_secs(30));
                options.set_clean_session(false);
                options.set_manual_acks(true);
                options.set_max_packet_size(MAX_IN, 1024 * 1024);
                if let Some(c) = &self.credentials {
                    options.set_credentials(&c.username, &c.password);
                }
                if let Some(transport) = self.transport() {
                    options.set_transport(transport);
                }
                let (client, mut eventloop) = AsyncClient::new(options, 10_000);
                eventloop.set_network_options(no_delay());
                (
                    MqttClient::V311(client),
                    MqttLoop::V311(Box::new(eventloop)),
                )
            }
            Protocol::V5 => {
                let mut options =
                    rumqttc::v5::MqttOptions::new(&self.client_id, &self.host, self.port);
                options.set_keep_alive(Duration::from_secs(30));
                options.set_clean_start(false);
                // MQTT 5 ends a session when the connection closes unless
                // told otherwise: keep it (and its queued messages) like a
                // 3.1.1 persistent session.
                options.set_session_expiry_interval(Some(u32::MAX));
                options.set_manual_acks(true);
                options.set_max_packet_size(u32::try_from(MAX_IN).ok());
                if let Some(c) = &self.credentials {
                    options.set_credentials(&c.username, &c.password);
                }
                if let Some(transport) = self.transport() {
                    options.set_transport(transport);
                }
                options.set_network_options(no_delay());
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, 10_000);
                (MqttClient::V5(client), MqttLoop::V5(Box::new(eventloop)))
            }
        }
    }
}

/// Starts reading from the broker into `inbound`. The returned task ends
/// when `shutdown` is cancelled (or the link dies), dropping `inbound`,
/// which lets the rest of the pipeline drain.
pub(crate) fn start(
    config: &IngestConfig,
    link: SourceLink,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> (JoinHandle<()>, ReceiptSink) {
    match link {
        SourceLink::Embedded { tx, rx } => (
            tokio::task::spawn_blocking(move || drain_embedded(rx, inbound, shutdown)),
            ReceiptSink::Embedded(tx),
        ),
        SourceLink::External {
            host,
            port,
            credentials,
            tls,
        } => {
            let broker = ExternalBroker {
                client_id: config.client_id.clone(),
                host,
                port,
                credentials,
                tls,
            };
            let (client, eventloop) = broker.connect(Protocol::V5);
            let client = Arc::new(RwLock::new(client));
            let epoch = Arc::new(AtomicU64::new(0));
            let filters = subscription_filters(&config.share_group);
            let task = tokio::spawn(drain_external(
                broker,
                client.clone(),
                eventloop,
                filters,
                epoch.clone(),
                inbound,
                stats,
                shutdown,
            ));
            (
                task,
                ReceiptSink::External {
                    client,
                    runtime: tokio::runtime::Handle::current(),
                    epoch,
                },
            )
        }
    }
}

fn drain_embedded(mut rx: LinkRx, inbound: mpsc::Sender<Inbound>, shutdown: CancellationToken) {
    const POLL: Duration = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match rx.recv_deadline(Instant::now() + POLL) {
            Ok(Some(Notification::Forward(forward))) => {
                let Ok(topic) = String::from_utf8(forward.publish.topic.to_vec()) else {
                    continue;
                };
                let message = Inbound {
                    topic,
                    payload: forward.publish.payload,
                    received_at: Timestamp::now(),
                    ack: None,
                };
                if inbound.blocking_send(message).is_err() {
                    return;
                }
            }
            // Without this the router stops delivering to the link.
            Ok(Some(Notification::Unschedule)) => {
                let _ = rx.ready();
            }
            Ok(_) => {}
            Err(rumqttd::local::LinkError::RecvTimeout(_)) => {}
            Err(error) => {
                tracing::error!(error = %error, "the embedded broker link failed; ingest stops reading");
                return;
            }
        }
    }
}

/// The readings and status filters, in a shared subscription group when
/// `share_group` is not empty.
pub fn subscription_filters(share_group: &str) -> Vec<String> {
    [READINGS_FILTER, STATUS_FILTER]
        .into_iter()
        .map(|filter| {
            if share_group.is_empty() {
                filter.to_owned()
            } else {
                format!("$share/{share_group}/{filter}")
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn drain_external(
    broker: ExternalBroker,
    shared_client: Arc<RwLock<MqttClient>>,
    mut eventloop: MqttLoop,
    filters: Vec<String>,
    epoch: Arc<AtomicU64>,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) {
    // A dropped connection that the next attempt restores is a blip; the
    // broker is unreachable (a `system_outage`) once an attempt to
    // (re)connect fails as well.
    const FAILURES_BEFORE_OUTAGE: u32 = 2;
    let mut failures = 0u32;
    let mut protocol = Protocol::V5;
    // Until a first CONNACK, a failed attempt tries the other protocol
    // version next (a 3.1.1-only broker closes an MQTT 5 CONNECT); after
    // it, the version that worked is kept.
    let mut settled = false;
    let mut awaiting_suback = 0usize;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let client = current(&shared_client);
        let happened = tokio::select! {
            _ = shutdown.cancelled() => {
                client.try_disconnect();
                return;
            }
            happened = eventloop.poll() => happened,
        };
        match happened {
            Happened::Publish {
                topic,
                payload,
                ack,
            } => {
                let message = Inbound {
                    topic,
                    payload,
                    received_at: Timestamp::now(),
                    ack: Some(AckToken {
                        epoch: epoch.load(Ordering::SeqCst),
                        publish: ack,
                    }),
                };
                if inbound.send(message).await.is_err() {
                    return;
                }
            }
            Happened::ConnAck { session_present } => {
                backoff.reset();
                settled = true;
                failures = 0;
                telemetry::clear_condition(&stats.broker, OutageCause::BrokerUnreachable);
                // A new connection: acks owed for the old one are void.
                epoch.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    session_present,
                    protocol = protocol.as_str(),
                    "connected to the external broker"
                );
                if session_present {
                    tracing::info!(filters = ?filters, "ingest receiving from the external broker (session kept)");
                } else {
                    awaiting_suback = 0;
                    for filter in &filters {
                        // try_: awaiting here would wait on the loop we are polling.
                        match client.try_subscribe(filter) {
                            Ok(()) => awaiting_suback += 1,
                            Err(error) => {
                                tracing::error!(error = %error, filter, "cannot subscribe");
                            }
                        }
                    }
                }
            }
            Happened::SubAck { refused } => {
                if refused {
                    tracing::error!(filters = ?filters, "the external broker refused a subscription; check its ACL");
                }
                awaiting_suback = awaiting_suback.saturating_sub(1);
                if awaiting_suback == 0 && !refused {
                    tracing::info!(filters = ?filters, protocol = protocol.as_str(), "ingest receiving from the external broker");
                }
            }
            Happened::Other => {}
            Happened::Failed(error) => {
                epoch.fetch_add(1, Ordering::SeqCst);
                failures = failures.saturating_add(1);
                if failures >= FAILURES_BEFORE_OUTAGE {
                    telemetry::raise_condition(
                        &stats.broker,
                        OutageCause::BrokerUnreachable,
                        "ingest cannot connect to the external broker",
                    );
                }
                let wait = backoff.next_delay(rand::random::<f64>());
                tracing::warn!(error = %error, protocol = protocol.as_str(), retry_in = ?wait, "external broker connection failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                if !settled {
                    protocol = match protocol {
                        Protocol::V5 => Protocol::V311,
                        Protocol::V311 => Protocol::V5,
                    };
                    tracing::info!(
                        protocol = protocol.as_str(),
                        "trying the other MQTT protocol version"
                    );
                    let (client, next) = broker.connect(protocol);
                    *shared_client.write().unwrap_or_else(|p| p.into_inner()) = client;
                    eventloop = next;
                }
            }
        }
    }
}
