//! The configuration: built-in defaults (`config/ondol.toml`, compiled in),
//! then an optional file, then `ONDOL_<SECTION>__<KEY>` environment variables.
//!
//! Every problem is collected before anything starts, each naming where the
//! value came from, the key and what to do about it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ondol_alerting::AlertingConfig;
use ondol_api::HttpConfig;
use ondol_broker::BrokerConfig;
use ondol_ingest::IngestConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The built-in defaults, also printed by `ondol config print`.
pub const DEFAULTS: &str = include_str!("../../../config/ondol.toml");
const DEFAULTS_NAME: &str = "built-in defaults (config/ondol.toml)";
const ENV_PREFIX: &str = "ONDOL_";

/// The whole effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: BrokerConfig,
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub registry: RegistryConfig,
    pub timeseries: TimeseriesConfig,
    pub log: LogConfig,
    pub simulator: SimulatorConfig,
    pub alerting: AlertingConfig,
    pub http: HttpConfig,
    pub retention: crate::retention::RetentionConfig,
    /// The merged tree, for `config print`.
    pub merged: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

impl StorageConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ondol.db")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeseriesConfig {
    pub backend: TimeseriesBackend,
    /// Used when `backend = "influxdb"`.
    #[serde(default)]
    pub influxdb: ondol_store::InfluxConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeseriesBackend {
    Embedded,
    Influxdb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The simulated fleet of `ondol run --demo` and the defaults of `ondol simulate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    pub homes: usize,
    pub speed: f64,
    #[serde(with = "ondol_model::serde_duration")]
    pub backlog: Duration,
    pub missed_checkin_share: f64,
    pub silent_share: f64,
    pub offline_share: f64,
    pub malformed_rate: f64,
    pub readings_per_message: usize,
    pub seed: u64,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where the offending value came from: a file, an environment variable
    /// or the built-in defaults.
    pub origin: String,
    /// The dotted key, e.g. `ingest.batch_max_delay`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: key \"{}\": {}", self.origin, self.key, self.message)
    }
}

/// Every problem found, in a stable order.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub problems: Vec<ConfigProblem>,
    /// `registry.file` when that section was valid, so `config check` can
    /// still check the roster it names.
    pub registry_file: Option<PathBuf>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the configuration has {} problem(s):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where each key's value came from.
#[derive(Debug, Default)]
struct Origins(BTreeMap<String, String>);

impl Origins {
    /// The origin of `key` or of its closest ancestor.
    fn of(&self, key: &str) -> String {
        let mut probe = key;
        loop {
            if let Some(origin) = self.0.get(probe) {
                return origin.clone();
            }
            match probe.rsplit_once('.') {
                Some((parent, _)) => probe = parent,
                None => return DEFAULTS_NAME.to_owned(),
            }
        }
    }
}

impl Config {
    /// Loads the defaults, `file` (if given) and the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut origins = Origins::default();
        let mut merged = match DEFAULTS.parse::<toml::Table>() {
            Ok(table) => table,
            Err(error) => {
                return Err(ConfigErrors {
                    problems: vec![ConfigProblem {
                        origin: DEFAULTS_NAME.into(),
                        key: "-".into(),
                        message: format!("the built-in defaults do not parse: {error}"),
                    }],
                    registry_file: None,
                });
            }
        };
        if let Some(path) = file {
            let name = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(table) => merge(&mut merged, table, "", &name, &mut origins),
                    Err(error) => problems.push(ConfigProblem {
                        origin: name,
                        key: "-".into(),
                        message: format!("not valid TOML: {}", error.to_string().trim()),
                    }),
                },
                Err(error) => problems.push(ConfigProblem {
                    origin: name,
                    key: "-".into(),
                    message: format!("cannot read the file: {error}; check the --config path"),
                }),
            }
        }
        for (name, value) in env {
            let Some(key) = env_key(&name) else { continue };
            let origin = format!("environment variable {name}");
            set_path(&mut merged, &key, env_value(&value));
            origins.0.insert(key, origin);
        }

        let mqtt = section::<BrokerConfig>(&merged, "mqtt", &origins, &mut problems);
        let ingest = section::<IngestConfig>(&merged, "ingest", &origins, &mut problems);
        let storage = section::<StorageConfig>(&merged, "storage", &origins, &mut problems);
        let registry = section::<RegistryConfig>(&merged, "registry", &origins, &mut problems);
        let timeseries =
            section::<TimeseriesConfig>(&merged, "timeseries", &origins, &mut problems);
        let log = section::<LogConfig>(&merged, "log", &origins, &mut problems);
        let simulator = section::<SimulatorConfig>(&merged, "simulator", &origins, &mut problems);
        let alerting = section::<AlertingConfig>(&merged, "alerting", &origins, &mut problems);
        let http = section::<HttpConfig>(&merged, "http", &origins, &mut problems);
        let retention = section::<crate::retention::RetentionConfig>(
            &merged,
            "retention",
            &origins,
            &mut problems,
        );
        for key in merged.keys() {
            if ![
                "mqtt",
                "ingest",
                "storage",
                "registry",
                "timeseries",
                "log",
                "simulator",
                "alerting",
                "http",
                "retention",
            ]
            .contains(&key.as_str())
            {
                problems.push(ConfigProblem {
                    origin: origins.of(key),
                    key: key.clone(),
                    message: "unknown section; the sections are mqtt, ingest, storage, registry, timeseries, log, simulator, alerting, http and retention".into(),
                });
            }
        }

        let registry_file = registry.as_ref().map(|r| r.file.clone());
        let (
            Some(mqtt),
            Some(ingest),
            Some(storage),
            Some(registry),
            Some(timeseries),
            Some(log),
            Some(simulator),
            Some(alerting),
            Some(http),
            Some(retention),
        ) = (
            mqtt, ingest, storage, registry, timeseries, log, simulator, alerting, http, retention,
        )
        else {
            return Err(ConfigErrors {
                problems,
                registry_file,
            });
        };
        let config = Config {
            mqtt,
            ingest,
            storage,
            registry,
            timeseries,
            log,
            simulator,
            alerting,
            http,
            retention,
            merged,
        };
        problems.extend(config.semantic_problems(&origins));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors {
                problems,
                registry_file: Some(config.registry.file),
            })
        }
    }

    /// Checks that need more than one key or the values' meaning.
    fn semantic_problems(&self, origins: &Origins) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String| {
            out.push(ConfigProblem {
                origin: origins.of(key),
                key: key.to_owned(),
                message,
            });
        };
        for (key, message) in self.ingest.problems() {
            problem(&format!("ingest.{key}"), message);
        }
        for (key, message) in self.alerting.problems() {
            problem(&format!("alerting.{key}"), message);
        }
        for (key, message) in self.http.problems() {
            problem(&format!("http.{key}"), message);
        }
        for (key, message) in self.retention.problems(self.ingest.max_age) {
            problem(&format!("retention.{key}"), message);
        }
        if self.mqtt.max_connections == 0 {
            problem("mqtt.max_connections", "must be at least 1".into());
        }
        if self.mqtt.max_packet_bytes < self.ingest.max_payload_bytes {
            problem(
                "mqtt.max_packet_bytes",
                format!(
                    "is {} but ingest.max_payload_bytes is {}; raise it so oversized messages get a payload_too_large receipt instead of a dropped connection",
                    self.mqtt.max_packet_bytes, self.ingest.max_payload_bytes
                ),
            );
        }
        if self.mqtt.connection_timeout > Duration::from_millis(u64::from(u16::MAX)) {
            problem(
                "mqtt.connection_timeout",
                "must be at most 65s (the broker keeps it in milliseconds as a 16-bit number)"
                    .into(),
            );
        }
        if !self.mqtt.tcp_enabled && !self.mqtt.tls.enabled {
            problem(
                "mqtt.tcp_enabled",
                "is false and mqtt.tls.enabled is false too: devices could not connect; enable one of them".into(),
            );
        }
        if self.mqtt.tls.enabled {
            for (key, path) in [
                ("mqtt.tls.cert_file", &self.mqtt.tls.cert_file),
                ("mqtt.tls.key_file", &self.mqtt.tls.key_file),
            ] {
                if !path.is_file() {
                    problem(key, format!("{} is not a readable file", path.display()));
                }
            }
            if self.mqtt.tcp_enabled && self.mqtt.tls.listen == self.mqtt.listen {
                problem(
                    "mqtt.tls.listen",
                    "is the same address as mqtt.listen; give TLS its own port".into(),
                );
            }
        }
        if self.mqtt.access_reload_interval.is_zero() {
            problem(
                "mqtt.access_reload_interval",
                "must be longer than 0s".into(),
            );
        }
        if self.timeseries.backend == TimeseriesBackend::Influxdb {
            for (key, message) in self.timeseries.influxdb.problems() {
                problem(&format!("timeseries.influxdb.{key}"), message);
            }
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            problem(
                "storage.data_dir",
                "must name a directory, e.g. \"./data\"".into(),
            );
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problem(
                "log.filter",
                format!(
                    "is not a valid filter ({error}); try \"info\" or \"ondol_ingest=debug,info\""
                ),
            );
        }
        let sim = &self.simulator;
        for (key, share) in [
            ("simulator.missed_checkin_share", sim.missed_checkin_share),
            ("simulator.silent_share", sim.silent_share),
            ("simulator.offline_share", sim.offline_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                problem(key, format!("is {share}; must be between 0 and 1"));
            }
        }
        // All garbage would leave nothing to receipt.
        if !(0.0..1.0).contains(&sim.malformed_rate) {
            problem(
                "simulator.malformed_rate",
                format!("is {}; must be at least 0 and below 1", sim.malformed_rate),
            );
        }
        if !(sim.speed.is_finite() && sim.speed >= 1.0) {
            problem(
                "simulator.speed",
                format!("is {}; must be at least 1", sim.speed),
            );
        }
        if sim.readings_per_message == 0 {
            problem(
                "simulator.readings_per_message",
                "must be at least 1".into(),
            );
        }
        out
    }
}

/// Deserializes one section, reporting the failing key and its origin.
fn section<T: DeserializeOwned>(
    merged: &toml::Table,
    name: &str,
    origins: &Origins,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    let value = merged
        .get(name)
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(section) => Some(section),
        Err(error) => {
            let inner = error.path().to_string();
            let key = if inner == "." || inner.is_empty() {
                name.to_owned()
            } else {
                format!("{name}.{inner}")
            };
            // toml appends "in `key`" on a new line; the key is named already.
            let full = error.inner().to_string();
            let mut message = full.lines().next().unwrap_or_default().trim().to_owned();
            if let Some(field) = unknown_field(&message) {
                let key = format!("{name}.{field}");
                problems.push(ConfigProblem {
                    origin: origins.of(&key),
                    key,
                    message: format!("{message}; remove it or fix its spelling"),
                });
                return None;
            }
            message.push_str("; see config/ondol.toml for the expected form");
            problems.push(ConfigProblem {
                origin: origins.of(&key),
                key,
                message,
            });
            None
        }
    }
}

/// The field named by serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Overlays `from` onto `into`, recording where each leaf came from.
fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    origin: &str,
    origins: &mut Origins,
) {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table, &path, origin, origins);
            }
            (_, value) => {
                origins.0.insert(path, origin.to_owned());
                into.insert(key, value);
            }
        }
    }
}

/// `ONDOL_INGEST__BATCH_MAX_DELAY` → `ingest.batch_max_delay`; variables
/// without `__` (tokens, secrets) are not configuration keys.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if !rest.contains("__") {
        return None;
    }
    Some(
        rest.split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Environment values are TOML values when they parse as one (numbers,
/// booleans, quoted strings), plain strings otherwise.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(root: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut table = root;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), value);
            return;
        }
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        table = next;
    }
}

/// Keys whose values are secrets and never printed.
const SECRET_KEY_PARTS: [&str; 4] = ["token", "password", "secret", "key"];

/// The effective configuration as TOML, with secret values redacted.
pub fn redacted(table: &toml::Table) -> toml::Table {
    table
        .iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::Table(inner) => toml::Value::Table(redacted(inner)),
                toml::Value::String(_)
                    if SECRET_KEY_PARTS.iter().any(|p| key.contains(p))
                        && !key.ends_with("_env")
                        && !key.ends_with("_file") =>
                {
                    toml::Value::String("<redacted>".into())
                }
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_match_the_crate_defaults() {
        let config = Config::load(None, Vec::new()).expect("defaults are valid");
        let ingest = IngestConfig::default();
        assert_eq!(config.ingest.batch_max_delay, ingest.batch_max_delay);
        assert_eq!(config.ingest.max_payload_bytes, ingest.max_payload_bytes);
        assert_eq!(config.ingest.max_age, ingest.max_age);
        assert_eq!(config.ingest.max_future_skew, ingest.max_future_skew);
        assert_eq!(config.ingest.queue_capacity, ingest.queue_capacity);
        assert_eq!(
            config.ingest.device_max_messages_per_minute,
            ingest.device_max_messages_per_minute
        );
        assert_eq!(
            config.ingest.device_max_burst_messages,
            ingest.device_max_burst_messages
        );
        assert_eq!(config.ingest.share_group, ingest.share_group);
        assert_eq!(config.ingest.username, ingest.username);
        assert_eq!(config.ingest.password_env, ingest.password_env);
        assert_eq!(config.ingest.watchdog_silence, ingest.watchdog_silence);
        assert_eq!(config.ingest.client_id, ingest.client_id);
        assert_eq!(config.ingest.tls_ca_file, ingest.tls_ca_file);
        assert_eq!(
            config.ingest.tls_client_cert_file,
            ingest.tls_client_cert_file
        );
        assert_eq!(
            config.ingest.tls_client_key_file,
            ingest.tls_client_key_file
        );
        let mqtt = BrokerConfig::default();
        assert_eq!(config.mqtt.listen, mqtt.listen);
        assert_eq!(config.mqtt.max_packet_bytes, mqtt.max_packet_bytes);
        assert_eq!(config.mqtt.connection_timeout, mqtt.connection_timeout);
        assert_eq!(config.mqtt.max_buffered_bytes, mqtt.max_buffered_bytes);
        assert_eq!(config.mqtt.tcp_enabled, mqtt.tcp_enabled);
        assert_eq!(config.mqtt.allow_anonymous, mqtt.allow_anonymous);
        assert_eq!(
            config.mqtt.access_reload_interval,
            mqtt.access_reload_interval
        );
        assert_eq!(config.mqtt.tls.enabled, mqtt.tls.enabled);
        assert_eq!(config.mqtt.tls.listen, mqtt.tls.listen);
        assert_eq!(config.mqtt.tls.cert_file, mqtt.tls.cert_file);
        assert_eq!(config.mqtt.tls.key_file, mqtt.tls.key_file);
        assert_eq!(
            config.mqtt.tls.handshake_timeout,
            mqtt.tls.handshake_timeout
        );
        assert_eq!(
            config.mqtt.tls.reload_check_interval,
            mqtt.tls.reload_check_interval
        );
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
        let alerting = AlertingConfig::default();
        let loaded = &config.alerting;
        assert_eq!(loaded.enabled, alerting.enabled);
        assert_eq!(loaded.inactivity_caution, alerting.inactivity_caution);
        assert_eq!(loaded.inactivity_alarm, alerting.inactivity_alarm);
        assert_eq!(loaded.inactivity_danger, alerting.inactivity_danger);
        assert_eq!(loaded.device_silent_after, alerting.device_silent_after);
        assert_eq!(loaded.mass_silence_share, alerting.mass_silence_share);
        assert_eq!(loaded.mass_silence_window, alerting.mass_silence_window);
        assert_eq!(
            loaded.mass_silence_min_devices,
            alerting.mass_silence_min_devices
        );
        assert_eq!(loaded.grace, alerting.grace);
        assert_eq!(loaded.ack_timeout, alerting.ack_timeout);
        assert_eq!(loaded.repeat_every, alerting.repeat_every);
        assert_eq!(loaded.webhook_url, alerting.webhook_url);
        assert_eq!(loaded.webhook_secret_env, alerting.webhook_secret_env);
        assert_eq!(loaded.webhook_timeout, alerting.webhook_timeout);
        assert_eq!(loaded.retry_max_delay, alerting.retry_max_delay);
        assert_eq!(loaded.give_up_after, alerting.give_up_after);
        assert_eq!(loaded.vital_bands, alerting.vital_bands);
        let http = HttpConfig::default();
        assert_eq!(config.http.listen, http.listen);
        assert_eq!(config.http.request_timeout, http.request_timeout);
        assert_eq!(config.http.max_page_items, http.max_page_items);
        assert_eq!(config.http.audit_repeat_window, http.audit_repeat_window);
        assert_eq!(config.http.store_connections, http.store_connections);
        let influx = ondol_store::InfluxConfig::default();
        let loaded = &config.timeseries.influxdb;
        assert_eq!(
            (&loaded.url, &loaded.org, &loaded.bucket, &loaded.token_env),
            (&influx.url, &influx.org, &influx.bucket, &influx.token_env)
        );
        assert_eq!(loaded.request_timeout, influx.request_timeout);
        assert_eq!(loaded.retry_initial, influx.retry_initial);
        assert_eq!(loaded.retry_max, influx.retry_max);
        assert_eq!(loaded.spool_max_bytes, influx.spool_max_bytes);
        assert_eq!(
            config.retention,
            crate::retention::RetentionConfig::default()
        );
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ondol.toml");
        std::fs::write(
            &file,
            "[mqtt]\nlisten = \"127.0.0.1:1999\"\n[ingest]\nbatch_max_readings = 7\n",
        )
        .expect("write");
        let config = Config::load(
            Some(&file),
            env(&[
                ("ONDOL_MQTT__LISTEN", "127.0.0.1:2883"),
                ("ONDOL_INGEST__MAX_AGE", "2d"),
                ("ONDOL_TOKEN_CW_01", "not a config key"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.mqtt.listen.port(), 2883);
        assert_eq!(config.ingest.batch_max_readings, 7);
        assert_eq!(config.ingest.max_age, Duration::from_secs(2 * 24 * 3600));
    }

    #[test]
    fn every_problem_is_reported_with_origin_and_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("broken.toml");
        std::fs::write(
            &file,
            "[mqtt]\nlisten = \"not an address\"\n[ingest]\nbatch_max_delay = \"soon\"\n[storage]\ndata_dri = \"x\"\n[alerts]\nx = 1\n",
        )
        .expect("write");
        let errors = Config::load(Some(&file), env(&[("ONDOL_SIMULATOR__SPEED", "\"fast\"")]))
            .expect_err("broken");
        let text = errors.to_string();
        let name = file.display().to_string();
        for expected in [
            format!("{name}: key \"mqtt.listen\""),
            format!("{name}: key \"ingest.batch_max_delay\""),
            format!("{name}: key \"storage.data_dri\""),
            format!("{name}: key \"alerts\""),
            "environment variable ONDOL_SIMULATOR__SPEED: key \"simulator.speed\"".to_owned(),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(errors.problems.len(), 5, "{text}");
    }

    #[test]
    fn semantic_problems_name_the_key() {
        let errors = Config::load(
            None,
            env(&[
                ("ONDOL_INGEST__BATCH_MAX_READINGS", "0"),
                ("ONDOL_MQTT__MAX_PACKET_BYTES", "1024"),
                ("ONDOL_TIMESERIES__BACKEND", "influxdb"),
                (
                    "ONDOL_TIMESERIES__INFLUXDB__URL",
                    "http://influx:8086/prefix",
                ),
            ]),
        )
        .expect_err("invalid");
        let keys: Vec<_> = errors.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ingest.batch_max_readings",
                "mqtt.max_packet_bytes",
                "timeseries.influxdb.url"
            ]
        );
    }

    #[test]
    fn file_paths_are_not_secrets() {
        let table: toml::Table = "[tls]\nkey_file = \"/etc/k.pem\"\nprivate_key = \"k\"\n"
            .parse()
            .expect("toml");
        let out = toml::to_string(&redacted(&table)).expect("toml");
        assert!(out.contains("/etc/k.pem"), "{out}");
        assert!(!out.contains("\"k\""), "{out}");
    }

    #[test]
    fn secrets_are_redacted() {
        let table: toml::Table = "[a]\ntoken = \"s3cret\"\ntoken_env = \"ONDOL_T\"\nurl = \"x\"\ntls_client_key_file = \"/etc/k.pem\"\n"
            .parse()
            .expect("toml");
        let out = toml::to_string(&redacted(&table)).expect("toml");
        assert!(!out.contains("s3cret"));
        assert!(out.contains("/etc/k.pem"), "a path to a key is not the key");
        assert!(out.contains("ONDOL_T"));
        assert!(out.contains("url = \"x\""));
    }
}
