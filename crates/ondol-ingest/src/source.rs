//! Where device messages come from, and where receipts go back to.
//!
//! - The embedded broker: an in-process rumqttd link, subscribed before any
//!   device could connect. rumqttd drops what a slow subscriber misses, so
//!   the link is drained on its own thread into ingest's queue.
//! - An external broker: a rumqttc client (MQTT 3.1.1, TCP or TLS) with a stable id and
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ondol_model::backoff::Backoff;
use ondol_model::wire::{READINGS_FILTER, STATUS_FILTER};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;
use crate::judge::Inbound;

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
    publish: rumqttc::Publish,
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
        client: AsyncClient,
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
            } => runtime
                .block_on(client.publish(topic, QoS::AtLeastOnce, false, payload))
                .map_err(|e| e.to_string()),
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

/// Starts reading from the broker into `inbound`. The returned task ends
/// when `shutdown` is cancelled (or the link dies), dropping `inbound`,
/// which lets the rest of the pipeline drain.
pub(crate) fn start(
    config: &IngestConfig,
    link: SourceLink,
    inbound: mpsc::Sender<Inbound>,
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
            let mut options = MqttOptions::new(config.client_id.clone(), host, port);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_session(false);
            options.set_manual_acks(true);
            if let Some(credentials) = credentials {
                options.set_credentials(credentials.username, credentials.password);
            }
            if let Some(tls) = tls {
                options.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(tls),
                ));
            }
            // Refusing an oversized message is ingest's job (it answers with
            // `payload_too_large`); a client-side limit would drop the
            // connection and get the same message redelivered forever.
            options.set_max_packet_size(16 * 1024 * 1024, 1024 * 1024);
            let (client, eventloop) = AsyncClient::new(options, 10_000);
            let epoch = Arc::new(AtomicU64::new(0));
            let filters = subscription_filters(&config.share_group);
            let task = tokio::spawn(drain_external(
                client.clone(),
                eventloop,
                filters,
                epoch.clone(),
                inbound,
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

async fn drain_external(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    filters: Vec<String>,
    epoch: Arc<AtomicU64>,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
) {
    let mut awaiting_suback = 0usize;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = client.try_disconnect();
                return;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = Inbound {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    received_at: Timestamp::now(),
                    ack: Some(AckToken {
                        epoch: epoch.load(Ordering::SeqCst),
                        publish,
                    }),
                };
                if inbound.send(message).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                // A new connection: acks owed for the old one are void.
                epoch.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the external broker"
                );
                if ack.session_present {
                    tracing::info!(filters = ?filters, "ingest receiving from the external broker (session kept)");
                } else {
                    awaiting_suback = 0;
                    for filter in &filters {
                        // try_: awaiting here would wait on the loop we are polling.
                        match client.try_subscribe(filter, QoS::AtLeastOnce) {
                            Ok(()) => awaiting_suback += 1,
                            Err(error) => {
                                tracing::error!(error = %error, filter, "cannot subscribe");
                            }
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let refused = suback
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure));
                if refused {
                    tracing::error!(filters = ?filters, "the external broker refused a subscription; check its ACL");
                }
                awaiting_suback = awaiting_suback.saturating_sub(1);
                if awaiting_suback == 0 && !refused {
                    tracing::info!(filters = ?filters, "ingest receiving from the external broker");
                }
            }
            Ok(_) => {}
            Err(error) => {
                epoch.fetch_add(1, Ordering::SeqCst);
                let wait = backoff.next_delay(rand::random::<f64>());
                tracing::warn!(error = %error, retry_in = ?wait, "external broker connection failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
