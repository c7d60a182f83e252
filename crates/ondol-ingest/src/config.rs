//! `[ingest]`: where readings come from and how they are batched and judged.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The ingest worker's settings. Defaults match `config/ondol.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// `"embedded"` (the in-process broker) or `"mqtt://host:port"`.
    pub broker: BrokerTarget,
    /// Client id towards an external broker; stable so the broker keeps our
    /// session (and queued messages) across reconnects.
    pub client_id: String,
    /// Messages received but not yet judged. When full, reading from the
    /// broker pauses.
    pub queue_capacity: usize,
    /// A batch is committed when it holds this many readings...
    pub batch_max_readings: usize,
    /// ...or when its oldest message has waited this long. Batches that
    /// queue up while a commit runs are merged, up to `batch_max_readings`.
    #[serde(with = "ondol_model::serde_duration")]
    pub batch_max_delay: Duration,
    /// Larger reading messages are refused with `payload_too_large`.
    pub max_payload_bytes: usize,
    /// Messages with more readings are refused with `payload_too_large`.
    pub max_readings_per_message: usize,
    /// Readings further ahead of the receive time are `timestamp_in_future`.
    #[serde(with = "ondol_model::serde_duration")]
    pub max_future_skew: Duration,
    /// Readings older than this are `timestamp_too_old`.
    #[serde(with = "ondol_model::serde_duration")]
    pub max_age: Duration,
    /// Reading messages one device may send per minute, sustained; more are
    /// refused with `rate_limited` (a token bucket per device).
    pub device_max_messages_per_minute: f64,
    /// Messages one device may send at once after a quiet spell (its
    /// backlog after a reconnect).
    pub device_max_burst_messages: f64,
    /// How often the worker logs its counters.
    #[serde(with = "ondol_model::serde_duration")]
    pub stats_interval: Duration,
    /// With an external broker: the shared-subscription group
    /// (`$share/<group>/...`) several workers join to split the devices;
    /// empty = a plain subscription (one worker).
    pub share_group: String,
    /// With an external broker: the username; empty = none. The password
    /// is read from the environment variable named by `password_env`.
    pub username: String,
    pub password_env: String,
    /// With `mqtts://`: the CA certificate(s) (PEM) the broker's certificate
    /// must chain to, and optionally our client certificate and key (PEM).
    pub tls_ca_file: String,
    pub tls_client_cert_file: String,
    pub tls_client_key_file: String,
    /// Raise `system_outage` when no message at all has arrived for this
    /// long while the roster has active devices; `0s` = off.
    #[serde(with = "ondol_model::serde_duration")]
    pub watchdog_silence: Duration,
    /// Raise `system_outage` (`ingest_stalled`) while a message received
    /// longer ago than this is not yet committed and handed on: alerting
    /// must not decide deadlines on data stuck in our pipeline.
    #[serde(with = "ondol_model::serde_duration")]
    pub stall_after: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            broker: BrokerTarget::Embedded,
            client_id: "ondol-ingest".into(),
            queue_capacity: 20_000,
            batch_max_readings: 2_000,
            batch_max_delay: Duration::from_millis(20),
            max_payload_bytes: 64 * 1024,
            max_readings_per_message: 500,
            max_future_skew: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(30 * 24 * 3600),
            device_max_messages_per_minute: 600.0,
            device_max_burst_messages: 600.0,
            stats_interval: Duration::from_secs(60),
            share_group: String::new(),
            username: String::new(),
            password_env: "ONDOL_INGEST_PASSWORD".into(),
            watchdog_silence: Duration::from_secs(15 * 60),
            stall_after: Duration::from_secs(30),
            tls_ca_file: String::new(),
            tls_client_cert_file: String::new(),
            tls_client_key_file: String::new(),
        }
    }
}

impl IngestConfig {
    /// The decoder's limits from this config.
    pub fn decode_limits(&self) -> ondol_model::wire::DecodeLimits {
        ondol_model::wire::DecodeLimits {
            max_payload_bytes: self.max_payload_bytes,
            max_readings_per_message: self.max_readings_per_message,
            max_future_skew: jiff::SignedDuration::try_from(self.max_future_skew)
                .unwrap_or(jiff::SignedDuration::MAX),
            max_age: jiff::SignedDuration::try_from(self.max_age)
                .unwrap_or(jiff::SignedDuration::MAX),
        }
    }

    /// The per-device rate limit from this config.
    pub fn rate_limit(&self) -> crate::rate_limit::RateLimit {
        crate::rate_limit::RateLimit {
            per_minute: self.device_max_messages_per_minute,
            burst: self.device_max_burst_messages,
        }
    }

    /// Every problem with this config, as `(key, message)` pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.queue_capacity == 0 {
            problems.push(("queue_capacity", "must be at least 1".to_owned()));
        }
        if !(self.device_max_messages_per_minute.is_finite()
            && self.device_max_messages_per_minute > 0.0)
        {
            problems.push((
                "device_max_messages_per_minute",
                "must be a number above 0".to_owned(),
            ));
        }
        if !(self.device_max_burst_messages.is_finite() && self.device_max_burst_messages >= 1.0) {
            problems.push(("device_max_burst_messages", "must be at least 1".to_owned()));
        }
        if self.stall_after < Duration::from_secs(1) {
            problems.push((
                "stall_after",
                "must be at least 1s (commits take milliseconds, merged batches under load a few seconds; 30s is the default)".to_owned(),
            ));
        }
        if self.batch_max_readings == 0 {
            problems.push(("batch_max_readings", "must be at least 1".to_owned()));
        }
        if self.max_readings_per_message == 0 {
            problems.push(("max_readings_per_message", "must be at least 1".to_owned()));
        }
        if self.max_payload_bytes < 256 {
            problems.push((
                "max_payload_bytes",
                "must be at least 256 bytes; a single reading message is about 100".to_owned(),
            ));
        }
        if self.client_id.is_empty() || self.client_id.contains(['+', '#', '/', '$']) {
            problems.push((
                "client_id",
                "must be non-empty and may not contain + # / $".to_owned(),
            ));
        }
        if self.share_group.contains(['+', '#', '/', '$', ' ']) {
            problems.push((
                "share_group",
                "may not contain + # / $ or spaces; e.g. \"ondol\"".to_owned(),
            ));
        }
        let tls = matches!(self.broker, BrokerTarget::External { tls: true, .. });
        if tls && self.tls_ca_file.is_empty() {
            problems.push((
                "tls_ca_file",
                "an mqtts:// broker needs the CA certificate file (PEM), e.g. /etc/ssl/certs/ca-certificates.crt for a public CA".to_owned(),
            ));
        }
        if self.tls_client_cert_file.is_empty() != self.tls_client_key_file.is_empty() {
            problems.push((
                "tls_client_key_file",
                "tls_client_cert_file and tls_client_key_file go together".to_owned(),
            ));
        }
        problems
    }
}

/// Where ingest reads device messages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTarget {
    /// The broker embedded in this process (an in-process link).
    Embedded,
    /// An external MQTT broker over TCP (`mqtt://`) or TLS (`mqtts://`).
    External { host: String, port: u16, tls: bool },
}

impl BrokerTarget {
    /// Parses `embedded`, `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub fn parse(s: &str) -> Result<BrokerTarget, String> {
        if s == "embedded" {
            return Ok(BrokerTarget::Embedded);
        }
        let (rest, tls, default_port) = if let Some(rest) = s.strip_prefix("mqtt://") {
            (rest, false, 1883)
        } else if let Some(rest) = s.strip_prefix("mqtts://") {
            (rest, true, 8883)
        } else {
            return Err(format!(
                "{s:?} is neither \"embedded\" nor an \"mqtt://host:port\" or \"mqtts://host:port\" URL"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{port:?} in {s:?} is not a port number"))?;
                (host, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?} names no host"));
        }
        Ok(BrokerTarget::External {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerTarget::Embedded => f.write_str("embedded"),
            BrokerTarget::External { host, port, tls } => {
                let scheme = if *tls { "mqtts" } else { "mqtt" };
                write!(f, "{scheme}://{host}:{port}")
            }
        }
    }
}

impl<'de> Deserialize<'de> for BrokerTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BrokerTarget::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_targets_parse() {
        assert_eq!(BrokerTarget::parse("embedded"), Ok(BrokerTarget::Embedded));
        assert_eq!(
            BrokerTarget::parse("mqtt://localhost:1884"),
            Ok(BrokerTarget::External {
                host: "localhost".into(),
                port: 1884,
                tls: false
            })
        );
        assert_eq!(
            BrokerTarget::parse("mqtt://10.0.0.1"),
            Ok(BrokerTarget::External {
                host: "10.0.0.1".into(),
                port: 1883,
                tls: false
            })
        );
        assert_eq!(
            BrokerTarget::parse("mqtts://broker.example"),
            Ok(BrokerTarget::External {
                host: "broker.example".into(),
                port: 8883,
                tls: true
            })
        );
        let needs_ca = IngestConfig {
            broker: BrokerTarget::parse("mqtts://b:8883").expect("valid"),
            ..IngestConfig::default()
        };
        assert_eq!(needs_ca.problems()[0].0, "tls_ca_file");
        assert!(BrokerTarget::parse("tcp://x:1").is_err());
        assert!(BrokerTarget::parse("mqtt://x:port").is_err());
        assert!(BrokerTarget::parse("mqtt://").is_err());
    }

    #[test]
    fn a_share_group_must_be_one_topic_level() {
        let config = IngestConfig {
            share_group: "a/b".into(),
            ..IngestConfig::default()
        };
        assert_eq!(config.problems()[0].0, "share_group");
        assert_eq!(
            crate::source::subscription_filters("ondol"),
            [
                "$share/ondol/ondol/v1/devices/+/readings",
                "$share/ondol/ondol/v1/devices/+/status"
            ]
        );
        assert_eq!(
            crate::source::subscription_filters(""),
            ["ondol/v1/devices/+/readings", "ondol/v1/devices/+/status"]
        );
    }

    #[test]
    fn defaults_have_no_problems() {
        assert!(IngestConfig::default().problems().is_empty());
    }
}
