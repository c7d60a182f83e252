//! Where device messages come from, and where receipts go back to.
//!
//! - The embedded broker: an in-process rumqttd link, subscribed before any
//!   device could connect. rumqttd drops what a slow subscriber misses, so
//!   the link is drained on its own thread into ingest's queue.
//! - An external broker: a rumqttc client with a stable id and a persistent
//!   session, reconnecting with jittered exponential backoff (rumqttc itself
//!   retries at once, forever).

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
    External { host: String, port: u16 },
}

impl std::fmt::Debug for SourceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceLink::Embedded { .. } => f.write_str("SourceLink::Embedded"),
            SourceLink::External { host, port } => write!(f, "SourceLink::External({host}:{port})"),
        }
    }
}

/// Publishes receipts; used from the writer's blocking thread.
pub enum ReceiptSink {
    Embedded(LinkTx),
    External {
        client: AsyncClient,
        runtime: tokio::runtime::Handle,
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
            ReceiptSink::External { client, runtime } => runtime
                .block_on(client.publish(topic, QoS::AtLeastOnce, false, payload))
                .map_err(|e| e.to_string()),
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
    shutdown: CancellationToken,
) -> (JoinHandle<()>, ReceiptSink) {
    match link {
        SourceLink::Embedded { tx, rx } => (
            tokio::task::spawn_blocking(move || drain_embedded(rx, inbound, shutdown)),
            ReceiptSink::Embedded(tx),
        ),
        SourceLink::External { host, port } => {
            let mut options = MqttOptions::new(config.client_id.clone(), host, port);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_session(false);
            // Refusing an oversized message is ingest's job (it answers with
            // `payload_too_large`); a client-side limit would drop the
            // connection and get the same message redelivered forever.
            options.set_max_packet_size(16 * 1024 * 1024, 1024 * 1024);
            let (client, eventloop) = AsyncClient::new(options, 10_000);
            let task = tokio::spawn(drain_external(client.clone(), eventloop, inbound, shutdown));
            (
                task,
                ReceiptSink::External {
                    client,
                    runtime: tokio::runtime::Handle::current(),
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

async fn drain_external(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
) {
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
                    topic: publish.topic,
                    payload: publish.payload,
                    received_at: Timestamp::now(),
                };
                if inbound.send(message).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the external broker"
                );
                if !ack.session_present {
                    for filter in [READINGS_FILTER, STATUS_FILTER] {
                        // try_: awaiting here would wait on the loop we are polling.
                        if let Err(error) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                            tracing::error!(error = %error, filter, "cannot subscribe");
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
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
