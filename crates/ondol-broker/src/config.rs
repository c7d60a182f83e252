//! `[mqtt]`: the embedded broker's listener and limits.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// The embedded broker's settings. Defaults match `config/ondol.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Where devices connect (plain MQTT 3.1.1 over TCP).
    pub listen: SocketAddr,
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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_connections: 20_000,
            max_packet_bytes: 256 * 1024,
            max_inflight: 100,
            connection_timeout: Duration::from_secs(10),
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}
