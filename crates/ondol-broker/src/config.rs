//! `[mqtt]`: the embedded broker's listener and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The embedded broker's settings. Defaults match `config/ondol.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Where devices connect with plain MQTT 3.1.1 over TCP (when
    /// `tcp_enabled`).
    pub listen: SocketAddr,
    /// Plain TCP on `listen`: for a trusted local gateway network. Off, the
    /// broker is reachable only through the TLS listener.
    pub tcp_enabled: bool,
    /// Demo only: clients without credentials are admitted as the device
    /// named by their client id (topic rules still apply). Logged loudly.
    pub allow_anonymous: bool,
    /// The MQTT username remote ingest workers (`ondol run --role ingest`
    /// against this broker) sign in with; they may read every device's
    /// readings and status and publish receipts.
    pub ingest_username: String,
    /// Environment variable holding their password; unset means no remote
    /// ingest worker can connect.
    pub ingest_password_env: String,
    /// How often device credentials and revocations are re-read from the
    /// store; a revoked device is refused on its next packet after that.
    #[serde(with = "ondol_model::serde_duration")]
    pub access_reload_interval: Duration,
    /// Most simultaneous device connections.
    pub max_connections: usize,
    /// Largest MQTT packet accepted; a larger one closes the connection.
    /// Keep it above `ingest.max_payload_bytes` so an oversized reading
    /// message still gets a `payload_too_large` receipt.
    pub max_packet_bytes: usize,
    /// Unacknowledged QoS 1 messages per connection.
    pub max_inflight: usize,
    /// How long a new TCP connection may take to send CONNECT.
    #[serde(with = "ondol_model::serde_duration")]
    pub connection_timeout: Duration,
    /// RAM the broker may use to buffer messages ingest has not read yet,
    /// per subscription.
    pub max_buffered_bytes: usize,
    /// MQTT over TLS.
    pub tls: TlsConfig,
}

/// `[mqtt.tls]`: our own TLS listener in front of the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first) and PEM private key. Re-read on
    /// SIGHUP and when either file changes.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// A client that has not finished its TLS handshake by then is dropped;
    /// handshakes run concurrently, so a slow one delays no one else.
    #[serde(with = "ondol_model::serde_duration")]
    pub handshake_timeout: Duration,
    /// How often the certificate files are checked for changes.
    #[serde(with = "ondol_model::serde_duration")]
    pub reload_check_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            cert_file: PathBuf::from("tls/server.crt"),
            key_file: PathBuf::from("tls/server.key"),
            handshake_timeout: Duration::from_secs(10),
            reload_check_interval: Duration::from_secs(30),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            tcp_enabled: true,
            allow_anonymous: false,
            ingest_username: "ondol-ingest".into(),
            ingest_password_env: "ONDOL_MQTT_INGEST_PASSWORD".into(),
            access_reload_interval: Duration::from_secs(1),
            max_connections: 20_000,
            max_packet_bytes: 256 * 1024,
            max_inflight: 100,
            connection_timeout: Duration::from_secs(10),
            max_buffered_bytes: 64 * 1024 * 1024,
            tls: TlsConfig::default(),
        }
    }
}
