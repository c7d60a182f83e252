//! The embedded MQTT broker: rumqttd's router on its own thread, its TCP
//! listener on another, and in-process links for ingest.
//!
//! Start-up is two-step on purpose ([`Router::start`] then
//! [`Router::listen`]): rumqttd keeps messages only in RAM and drops a publish
//! nobody is subscribed to, so ingest must take its in-process link and
//! subscribe *before* the first device can connect.
//!
//! Every remote connection passes a [`Gate`]: devices and staff apps
//! authenticate at CONNECT and may use only their own topics (DESIGN §2);
//! in-process links (ingest, receipts) bypass it and may read everything.
//!
//! - [`config`]: the `[mqtt]` section of the config file.
//! - [`access`]: who may connect and what each identity may do (pure rules).
//! - [`guard`]: the rules applied to every packet inside rumqttd.
//! - [`tls`]: our own TLS listener in front of rumqttd's plain one.
//! - [`Router`]: the running router; hands out [`LocalLink`]s.
//! - [`Listener`]: the running device listener.

pub mod access;
pub mod config;
pub mod guard;
pub mod tls;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::{ConnectionSettings, LinkType, Notification, RouterConfig, Server, ServerSettings};

pub use access::{AccessList, Gate};
pub use config::{BrokerConfig, TlsConfig};
use guard::Guarded;

/// Why the embedded broker could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// rumqttd's `LinkError` carries whole packets; only its message is kept.
    #[error("in-process link {name:?} to the embedded broker failed: {reason}")]
    Link { name: String, reason: String },
    #[error("link {name:?} did not get a subscription acknowledgement for {filter:?}")]
    Subscribe { name: String, filter: String },
    #[error("cannot listen for devices on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedded broker did not accept connections on {addr} within {waited:?}")]
    NotReady { addr: SocketAddr, waited: Duration },
    #[error("could not start the broker thread: {0}")]
    Thread(#[source] std::io::Error),
}

type LinkFactory = dyn Fn(&str) -> Result<(LinkTx, LinkRx), String> + Send + Sync;

/// The running rumqttd router (its own OS thread, started by rumqttd).
///
/// rumqttd has no shutdown API: the router lives until the process exits,
/// which is fine because ingest drains it before the process ends.
#[derive(Clone)]
pub struct Router {
    config: BrokerConfig,
    // rumqttd does not export the type of the router's sender, so the
    // operations that need it are kept as closures.
    new_link: Arc<LinkFactory>,
    start_server: Arc<dyn Fn(ServerSettings, Gate) -> thread::Result<()> + Send + Sync>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .finish()
    }
}

/// An in-process connection to the router, as rumqttd hands it out.
pub struct LocalLink {
    pub tx: LinkTx,
    pub rx: LinkRx,
}

impl std::fmt::Debug for LocalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLink")
            .field("id", &self.rx.id())
            .finish()
    }
}

impl Router {
    /// Starts the router thread. Nothing listens for devices yet.
    pub fn start(config: &BrokerConfig) -> Router {
        let router_tx = rumqttd::Router::new(0, router_config(config)).spawn();
        let link_tx = router_tx.clone();
        let new_link = Arc::new(move |name: &str| {
            let (tx, rx, _connack) = LinkBuilder::new(name, link_tx.clone())
                .clean_session(true)
                .build()
                .map_err(|e| e.to_string())?;
            Ok((tx, rx))
        });
        let start_server = Arc::new(move |settings: ServerSettings, gate: Gate| {
            let router_tx = router_tx.clone();
            let name = settings.name.clone();
            thread::Builder::new()
                .name("mqtt-listener".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            tracing::error!(error = %error, "cannot build the MQTT listener runtime");
                            return;
                        }
                    };
                    let mut server = Server::new(settings, router_tx, Guarded::new(gate));
                    if let Err(error) = runtime.block_on(server.start(LinkType::Remote)) {
                        tracing::error!(listener = %name, error = %error, "MQTT listener stopped");
                    }
                })
                .map(|_| ())
                .map_err(|e| Box::new(e) as Box<dyn std::any::Any + Send>)
        });
        Router {
            config: config.clone(),
            new_link,
            start_server,
        }
    }

    /// Opens an in-process link (blocks until the router accepts it).
    pub fn link(&self, name: &str) -> Result<LocalLink, BrokerError> {
        let (tx, rx) = (self.new_link)(name).map_err(|reason| BrokerError::Link {
            name: name.to_owned(),
            reason,
        })?;
        Ok(LocalLink { tx, rx })
    }

    /// Opens a link and subscribes it to `filters`, returning only once the
    /// router has acknowledged every subscription, so no message published
    /// afterwards can be missed.
    pub fn subscribed_link(&self, name: &str, filters: &[&str]) -> Result<LocalLink, BrokerError> {
        let mut link = self.link(name)?;
        for filter in filters {
            link.tx.subscribe(*filter).map_err(|e| BrokerError::Link {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match link.rx.recv_deadline(deadline) {
                    Ok(Some(Notification::DeviceAck(_))) => break,
                    Ok(Some(Notification::Unschedule)) => {
                        let _ = link.rx.ready();
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(BrokerError::Subscribe {
                            name: name.to_owned(),
                            filter: (*filter).to_owned(),
                        });
                    }
                }
            }
        }
        Ok(link)
    }

    /// Checks the router thread still answers: a publish on a private topic
    /// must come back on a link subscribed to it. rumqttd's router can die
    /// silently, after which every connection fails.
    pub fn probe(&self, timeout: Duration) -> bool {
        const PROBE_TOPIC: &str = "ondol/internal/probe";
        let Ok(mut link) = self.subscribed_link("ondol-probe", &[PROBE_TOPIC]) else {
            return false;
        };
        if link.tx.publish(PROBE_TOPIC, "ping").is_err() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match link.rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(_))) => return true,
                Ok(Some(Notification::Unschedule)) => {
                    let _ = link.rx.ready();
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Starts accepting devices on `mqtt.listen` (or, with plain TCP off,
    /// on a loopback port only the TLS listener uses) and waits until the
    /// port answers. Every connection passes `gate`. Call it after ingest
    /// has subscribed.
    pub fn listen(&self, gate: Gate) -> Result<Listener, BrokerError> {
        let addr = if self.config.tcp_enabled {
            self.config.listen
        } else {
            free_loopback_port().map_err(|source| BrokerError::Bind {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                source,
            })?
        };
        // rumqttd binds inside its own thread and only logs a failure there;
        // binding once here turns "port in use" into a clear start-up error.
        drop(
            std::net::TcpListener::bind(addr)
                .map_err(|source| BrokerError::Bind { addr, source })?,
        );
        let mut settings = server_settings(&self.config, addr);
        if !gate.allows_anonymous() {
            let parallelism = thread::available_parallelism().map_or(2, |n| n.get());
            settings
                .connections
                .set_auth_handler(guard::auth_handler(gate.clone(), parallelism));
        }
        (self.start_server)(settings, gate)
            .map_err(|_| BrokerError::Thread(std::io::Error::other("spawn failed")))?;
        let probe_addr = loopback_for(addr);
        let waited = Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&probe_addr, Duration::from_millis(200)).is_ok() {
                tracing::info!(listen = %addr, "MQTT broker accepting devices");
                return Ok(Listener { addr });
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(BrokerError::NotReady { addr, waited })
    }
}

/// The device listener. It stops with the process.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub addr: SocketAddr,
}

impl Listener {
    /// Where this machine reaches the listener (the TLS listener relays here).
    pub fn loopback(&self) -> SocketAddr {
        loopback_for(self.addr)
    }
}

/// Where to reach a listener bound to `addr` from this machine.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let mut probe = addr;
    if addr.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    probe
}

/// The ring of every subscription nothing below names: in practice each
/// device's receipts (`ondol/v1/devices/{id}/receipts`), one per device.
///
/// Upstream rumqttd keeps every filter's log up to `segment bytes × count`
/// whether it was read or not; our vendored copy frees what a filter's sole
/// subscriber has read and acknowledged (vendor/rumqttd/PATCHES.md, 7), so
/// this ring is the bound for a device that stops reading, not what every
/// device costs. rumqttd counts 4 bytes plus
/// topic plus payload per message, while each entry really costs its
/// 128-byte log record and the topic's and payload's allocations too:
/// about three times as much. 1 KiB × 7 keeps each device under ~8 KiB
/// counted, about 30 KB real (measured with heaptrack: 1,000 full rings,
/// 29 MB), for good; 64 KiB × 2 allowed ~380 KB.
///
/// What it guarantees: besides the segment being filled, the six full
/// segments before it are always kept (the oldest is dropped only when a
/// new one starts), so a device never loses any of its newest 6 KiB of
/// receipts: some 60 one-reading receipts, or 26 that carry a rejection
/// detail (a `rate_limited` receipt to a bench device counts 232 bytes).
/// That is what counts: ingest publishes all receipts of a committed
/// batch at once, and the router appends them all before it forwards any,
/// so a device's receipts from one batch must fit in its ring. A device
/// with more messages in flight, or that falls further behind its own
/// receipts, loses the oldest ones and, after its receipt timeout, resends
/// those messages: duplicates, never loss (docs/DEVICES.md, section 8,
/// asks for at most 20 in flight, the bench's window).
///
/// Why not smaller: with 2 KiB × 3, flat out with the per-device rate
/// limit on, devices lost 176–197 receipts in 20 s. Nine 232-byte
/// receipts fill a 2 KiB segment and only two full segments survive a
/// rollover: 18, fewer than the 20 a device had outstanding.
const SMALL_SEGMENT_BYTES: usize = 1024;
/// Segments of [`SMALL_SEGMENT_BYTES`] per small ring; see there.
const SMALL_SEGMENT_COUNT: usize = 7;

/// Staff apps' alert topics get a larger ring than receipts: there are few
/// staff (so little memory), their alerts come in bursts (a region's
/// outage), and an app does not resend anything, so an alert dropped here
/// is only seen on the dashboard. 64 KiB × 2 holds about 100 alert events.
const STAFF_ALERTS_SEGMENT: rumqttd::SegmentConfig = rumqttd::SegmentConfig {
    max_segment_size: 64 * 1024,
    max_segment_count: 2,
};

/// Filters whose subscriptions get [`STAFF_ALERTS_SEGMENT`] (rumqttd
/// matches each new subscription's filter against these as topic filters).
const STAFF_ALERTS_FILTERS: [&str; 2] = [
    "ondol/v1/caseworkers/+/alerts",
    ondol_model::wire::SYSTEM_ALERTS_TOPIC,
];

fn router_config(config: &BrokerConfig) -> RouterConfig {
    // Ingest's filters get the large ring: falling behind it loses messages
    // silently (their devices resend, but it is wasteful).
    let segment_count = 8;
    let ingest_segment = ondol_segment(config.max_buffered_bytes / segment_count, segment_count);
    let custom_segment = [
        ondol_model::wire::READINGS_FILTER,
        ondol_model::wire::STATUS_FILTER,
    ]
    .into_iter()
    .map(|filter| (filter.to_owned(), ingest_segment.clone()))
    .chain(
        STAFF_ALERTS_FILTERS
            .into_iter()
            .map(|filter| (filter.to_owned(), STAFF_ALERTS_SEGMENT.clone())),
    )
    .collect();
    RouterConfig {
        // Local links count too (ingest, receipts, probe).
        max_connections: config.max_connections + 16,
        max_outgoing_packet_count: 200,
        // Below 1024 the router thread panics on the first subscribe.
        max_segment_size: SMALL_SEGMENT_BYTES,
        max_segment_count: SMALL_SEGMENT_COUNT,
        custom_segment: Some(custom_segment),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

fn ondol_segment(bytes: usize, count: usize) -> rumqttd::SegmentConfig {
    rumqttd::SegmentConfig {
        max_segment_size: bytes.max(1024 * 1024),
        max_segment_count: count.max(1),
    }
}

/// A loopback address with a port free right now.
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn server_settings(config: &BrokerConfig, listen: SocketAddr) -> ServerSettings {
    ServerSettings {
        name: "devices".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: u16::try_from(config.connection_timeout.as_millis())
                .unwrap_or(u16::MAX),
            max_payload_size: config.max_packet_bytes,
            max_inflight_count: config.max_inflight,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous_gate() -> Gate {
        let list = AccessList {
            allow_anonymous: true,
            ..AccessList::default()
        };
        Gate::new(list, Arc::new(|_, _| false))
    }

    fn test_config() -> BrokerConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            max_connections: 10,
            max_buffered_bytes: 8 * 1024 * 1024,
            ..BrokerConfig::default()
        }
    }

    /// A device publishing over TCP reaches a link subscribed before the
    /// listener opened, and the router answers probes.
    #[test]
    fn a_device_publish_reaches_the_subscribed_link() {
        let config = test_config();
        let router = Router::start(&config);
        let mut link = router
            .subscribed_link("ingest", &["ondol/v1/devices/+/readings"])
            .expect("subscribed");
        let listener = router.listen(anonymous_gate()).expect("listening");
        assert_eq!(listener.addr, config.listen);
        assert!(router.probe(Duration::from_secs(5)));

        let mut options = rumqttc::MqttOptions::new("gw-1", "127.0.0.1", config.listen.port());
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        client
            .publish(
                "ondol/v1/devices/gw-1/readings",
                rumqttc::QoS::AtLeastOnce,
                false,
                b"{}".to_vec(),
            )
            .expect("queued");
        let mut acked = false;
        for event in connection.iter().take(20) {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = event {
                acked = true;
                break;
            }
        }
        assert!(acked, "the broker acknowledged the publish");

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match link.rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(forward))) => {
                    assert_eq!(
                        &forward.publish.topic[..],
                        b"ondol/v1/devices/gw-1/readings"
                    );
                    assert_eq!(&forward.publish.payload[..], b"{}");
                    break;
                }
                Ok(Some(Notification::Unschedule)) => {
                    let _ = link.rx.ready();
                }
                Ok(_) => {}
                Err(error) => panic!("no forward: {error}"),
            }
        }
    }

    /// Connects `id` with `password` and reports the first event: a CONNACK
    /// (`Some(connection)`) or a closed connection (`None`).
    fn connect(
        port: u16,
        id: &str,
        password: &str,
    ) -> Option<(rumqttc::Client, rumqttc::Connection)> {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_credentials(id, password);
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        match connection.iter().next() {
            Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                Some((client, connection))
            }
            _ => None,
        }
    }

    /// Runs the connection until it closes; `true` if it did within 20 events.
    fn closes(connection: &mut rumqttc::Connection) -> bool {
        connection.iter().take(20).any(|event| event.is_err())
    }

    /// The broker asks the injected check, enforces topics on its own, and
    /// follows access-list updates on live connections.
    #[test]
    fn the_gate_authenticates_authorizes_and_follows_updates() {
        use crate::access::{DeviceAccess, StoredSecret};
        let config = test_config();
        let router = Router::start(&config);
        let mut link = router
            .subscribed_link("ingest", &["ondol/v1/devices/+/readings"])
            .expect("subscribed");
        let mut list = AccessList::default();
        list.devices.insert(
            "gw-1".into(),
            DeviceAccess {
                secret: Some(StoredSecret::new("hash-of-s1")),
                revoked: false,
            },
        );
        // The injected check: this crate never knows how secrets are hashed.
        let gate = Gate::new(
            list.clone(),
            Arc::new(|stored: &StoredSecret, presented: &str| {
                stored.expose() == format!("hash-of-{presented}")
            }),
        );
        router.listen(gate.clone()).expect("listening");
        let port = config.listen.port();

        assert!(connect(port, "gw-1", "s2").is_none(), "wrong secret");
        let (client, mut connection) = connect(port, "gw-1", "s1").expect("admitted");
        client
            .publish(
                "ondol/v1/devices/gw-2/readings",
                rumqttc::QoS::AtLeastOnce,
                false,
                b"forged".to_vec(),
            )
            .expect("queued");
        assert!(closes(&mut connection), "publishing as gw-2 closes");
        assert_eq!(gate.stats.snapshot().denied_publishes, 1);

        let (client, mut connection) = connect(port, "gw-1", "s1").expect("admitted");
        client
            .publish(
                "ondol/v1/devices/gw-1/readings",
                rumqttc::QoS::AtLeastOnce,
                false,
                b"own".to_vec(),
            )
            .expect("queued");
        let acked = connection.iter().take(20).any(|event| {
            matches!(
                event,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))
            )
        });
        assert!(acked);
        // Only the device's own publish reached the link, never the forged one.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match link.rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(forward))) => {
                    assert_eq!(&forward.publish.payload[..], b"own");
                    break;
                }
                Ok(Some(Notification::Unschedule)) => {
                    let _ = link.rx.ready();
                }
                Ok(_) => {}
                Err(error) => panic!("no forward: {error}"),
            }
        }

        // Revocation reaches the open connection at its next packet.
        let mut revoked = list.clone();
        if let Some(device) = revoked.devices.get_mut("gw-1") {
            device.revoked = true;
        }
        gate.update(revoked);
        client
            .publish(
                "ondol/v1/devices/gw-1/readings",
                rumqttc::QoS::AtLeastOnce,
                false,
                b"late".to_vec(),
            )
            .expect("queued");
        assert!(closes(&mut connection));
        assert_eq!(gate.stats.snapshot().revoked_disconnects, 1);
        assert!(connect(port, "gw-1", "s1").is_none(), "revoked");
    }

    /// Publishes `count` messages of `payload_bytes` each (numbered in
    /// their first bytes) to `topic` while a subscriber connected as
    /// `client` (with `password`, if any) has subscribed at QoS 1 and then
    /// stopped reading; then lets it read again and returns the numbers it
    /// receives, in order, until the last one published.
    /// Subscribes `client` to `topic` (QoS 1) and waits for the SUBACK.
    fn subscribe_and_wait(
        client: &rumqttc::Client,
        connection: &mut rumqttc::Connection,
        topic: &str,
    ) {
        client
            .subscribe(topic, rumqttc::QoS::AtLeastOnce)
            .expect("queued");
        let subscribed = connection.iter().take(20).any(|event| {
            matches!(
                event,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))
            )
        });
        assert!(subscribed, "the subscription was acknowledged");
    }

    /// Publishes `count` payloads of `payload_bytes` to `topic` through an
    /// in-process link subscribed to `marker`, each starting with its
    /// number in eight digits.
    fn publish_numbered(
        router: &Router,
        marker: &str,
        topic: &str,
        count: usize,
        payload_bytes: usize,
    ) -> LocalLink {
        let mut publisher = router
            .subscribed_link("publisher", &[marker])
            .expect("subscribed");
        for n in 0..count {
            let mut payload = format!("{n:08}").into_bytes();
            payload.resize(payload_bytes, b' ');
            publisher
                .tx
                .publish(topic.to_owned(), payload)
                .expect("published");
        }
        publisher
    }

    fn lagging_subscriber_receives(
        router: &Router,
        port: u16,
        client: (&str, Option<&str>),
        topic: &str,
        count: usize,
        payload_bytes: usize,
    ) -> Vec<usize> {
        const MARKER: &str = "ondol/internal/test-marker";
        let mut options = rumqttc::MqttOptions::new(client.0, "127.0.0.1", port);
        // Long enough that the stalled client is not dropped meanwhile.
        options.set_keep_alive(Duration::from_secs(60));
        if let Some(password) = client.1 {
            options.set_credentials(client.0, password);
        }
        let (subscriber, mut connection) = rumqttc::Client::new(options, 10);
        subscribe_and_wait(&subscriber, &mut connection, topic);

        // The subscriber's event loop is not polled now: it reads nothing
        // and acknowledges nothing, like a device on a stalled link.
        let mut publisher = publish_numbered(router, MARKER, topic, count, payload_bytes);
        // The router handles a link's publishes in order: once the marker
        // comes back, every message above is in the subscription's log.
        publisher.tx.publish(MARKER, "done").expect("published");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match publisher.rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(forward)))
                    if &forward.publish.topic[..] == MARKER.as_bytes() =>
                {
                    break;
                }
                Ok(Some(Notification::Unschedule)) => {
                    let _ = publisher.rx.ready();
                }
                Ok(_) => {}
                Err(error) => panic!("no marker: {error}"),
            }
        }

        let mut received = Vec::new();
        while received.last() != Some(&(count - 1)) {
            match connection.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)))) => {
                    let n = std::str::from_utf8(&publish.payload[..8])
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .expect("numbered payload");
                    received.push(n);
                }
                Ok(Ok(_)) => {}
                other => panic!("subscriber stopped after {received:?}: {other:?}"),
            }
        }
        received
    }

    /// A device that stops reading its receipts keeps at most a few KiB of
    /// them in the broker, for good, yet still gets the newest receipts of a
    /// whole window of messages, in order, once it reads again. Fails if the
    /// device's log is unbounded or as large as it used to be (64 KiB × 2,
    /// which cost up to ~380 KB of RAM per device).
    #[test]
    fn a_lagging_device_keeps_a_small_bounded_receipt_ring() {
        // As large as a `rate_limited` receipt (with its detail) to a bench
        // device: 232 bytes as rumqttd counts them on this topic.
        const RECEIPT_BYTES: usize = 198;
        const WINDOW: usize = 20;
        // rumqttd sends a QoS 1 subscriber up to 100 messages before it
        // waits for acknowledgements (fixed in rumqttd).
        const SENT_BEFORE_STALL: usize = 100;
        let topic = "ondol/v1/devices/gw-1/receipts";
        let config = test_config();
        let router = Router::start(&config);
        router.listen(anonymous_gate()).expect("listening");
        // One past a segment boundary, where a ring holds the fewest
        // messages, both for 1 KiB segments (5 of these each) and for the
        // 2 KiB ones (9 each) once tried: 2,026 = 45 × 45 + 1.
        let count = 2_026;
        let received = lagging_subscriber_receives(
            &router,
            config.listen.port(),
            ("gw-1", None),
            topic,
            count,
            RECEIPT_BYTES,
        );

        assert!(received.windows(2).all(|w| w[0] < w[1]), "in order, once");
        let newest: Vec<usize> = (count - WINDOW..count).collect();
        assert!(
            received.ends_with(&newest),
            "the newest {WINDOW} receipts all arrive: {received:?}"
        );
        // rumqttd counts 4 + topic + payload bytes per message, and each
        // segment may overshoot its size by one message.
        let counted = 4 + topic.len() + RECEIPT_BYTES;
        let kept_at_most = 8 * 1024 / counted + SMALL_SEGMENT_COUNT;
        assert!(
            received.len() <= SENT_BEFORE_STALL + kept_at_most,
            "the broker kept {} receipts for one device, more than 8 KiB",
            received.len() - SENT_BEFORE_STALL.min(received.len())
        );
    }

    /// The broker frees what a device's sole subscription has read, but
    /// not what the device has yet to acknowledge: a device that resumes
    /// its session gets every unacknowledged receipt again, even those
    /// from segments it had read past (vendor/rumqttd/PATCHES.md, 7).
    #[test]
    fn a_resumed_session_gets_its_unacknowledged_receipts_again() {
        const MARKER: &str = "ondol/internal/test-marker";
        let topic = "ondol/v1/devices/gw-1/receipts";
        let count = 30;
        let config = test_config();
        let router = Router::start(&config);
        router.listen(anonymous_gate()).expect("listening");
        let connect = || {
            let mut options = rumqttc::MqttOptions::new("gw-1", "127.0.0.1", config.listen.port());
            options.set_clean_session(false);
            options.set_manual_acks(true);
            rumqttc::Client::new(options, 10)
        };
        let receive = |connection: &mut rumqttc::Connection| {
            let mut received = Vec::new();
            while received.len() < count {
                match connection.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)))) => {
                        received.push(publish.payload[..8].to_vec());
                    }
                    Ok(Ok(_)) => {}
                    other => panic!("stopped after {} receipts: {other:?}", received.len()),
                }
            }
            received
        };

        let (device, mut connection) = connect();
        subscribe_and_wait(&device, &mut connection, topic);
        // 200-byte receipts: five to a 1 KiB segment, six segments.
        let _publisher = publish_numbered(&router, MARKER, topic, count, 200);
        let first = receive(&mut connection);
        // Gone without acknowledging any of them.
        drop(connection);
        drop(device);

        let (_device, mut connection) = connect();
        let again = receive(&mut connection);
        assert_eq!(again, first, "every unacknowledged receipt, from the first");
    }

    /// A staff app's alert topic keeps its larger ring: a burst of 100
    /// alert events all reach an app that was not reading.
    #[test]
    fn a_lagging_staff_app_gets_a_burst_of_alerts() {
        use crate::access::{StaffAccess, StaffToken};
        let mut list = AccessList::default();
        list.staff.insert(
            "cw-1".into(),
            StaffAccess {
                role: ondol_model::roster::StaffRole::Caseworker,
                token: Some(StaffToken::new("t1")),
            },
        );
        let config = test_config();
        let router = Router::start(&config);
        router
            .listen(Gate::new(list, Arc::new(|_, _| false)))
            .expect("listening");
        let count = 300;
        let received = lagging_subscriber_receives(
            &router,
            config.listen.port(),
            ("cw-1", Some("t1")),
            "ondol/v1/caseworkers/cw-1/alerts",
            count,
            500,
        );
        let newest: Vec<usize> = (count - 100..count).collect();
        assert!(received.ends_with(&newest), "{received:?}");
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let config = BrokerConfig {
            listen: taken.local_addr().expect("addr"),
            ..test_config()
        };
        let router = Router::start(&config);
        match router.listen(anonymous_gate()) {
            Err(BrokerError::Bind { addr, .. }) => assert_eq!(addr, config.listen),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }
}
