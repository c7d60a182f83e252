//! `[alerting]`: the rules' defaults, holding, escalation and delivery.

use std::time::Duration;

use serde::Deserialize;

/// Alerting's settings. Defaults match `config/ondol.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Whether alerting runs at all in `ondol run`.
    pub enabled: bool,
    /// Inactivity tiers: caution, alarm, danger after this long without activity.
    #[serde(with = "ondol_model::serde_duration")]
    pub inactivity_caution: Duration,
    #[serde(with = "ondol_model::serde_duration")]
    pub inactivity_alarm: Duration,
    #[serde(with = "ondol_model::serde_duration")]
    pub inactivity_danger: Duration,
    /// A device silent this long (no reading, no status) is offline.
    #[serde(with = "ondol_model::serde_duration")]
    pub device_silent_after: Duration,
    /// This share of devices going silent within `mass_silence_window` is a
    /// system outage, not many resident problems.
    pub mass_silence_share: f64,
    #[serde(with = "ondol_model::serde_duration")]
    pub mass_silence_window: Duration,
    /// ...and at least this many devices (a share of a tiny roster is noise).
    pub mass_silence_min_devices: usize,
    /// After a start and after an outage ends, alerts caused by missing data
    /// are held this long and then re-evaluated with the data that arrived.
    #[serde(with = "ondol_model::serde_duration")]
    pub grace: Duration,
    /// Alerting running this much later than it meant to (a frozen process,
    /// a starved host), or the wall clock moving this much more or less than
    /// the monotonic clock, is an outage of ours (`stalled`): what came due
    /// in the gap is held for the grace period.
    #[serde(with = "ondol_model::serde_duration")]
    pub stall_after: Duration,
    /// How often alerting looks at the store's feed for what ingest workers
    /// in other processes committed (one in the same process wakes it at
    /// once): the commit-to-alerting lag of a split deployment.
    #[serde(with = "ondol_model::serde_duration")]
    pub feed_poll: Duration,
    /// Alerting in a process without ingest: no ingest worker's heartbeat
    /// in the store for this long is an outage of ours (`ingest_down`).
    #[serde(with = "ondol_model::serde_duration")]
    pub ingest_timeout: Duration,
    /// An open alert nobody acknowledged escalates to the supervisor after this...
    #[serde(with = "ondol_model::serde_duration")]
    pub ack_timeout: Duration,
    /// ...and is repeated this often until acknowledged.
    #[serde(with = "ondol_model::serde_duration")]
    pub repeat_every: Duration,
    /// Webhook for SMS or messenger gateways; empty = no webhook.
    pub webhook_url: String,
    /// Environment variable holding the webhook's HMAC secret.
    pub webhook_secret_env: String,
    #[serde(with = "ondol_model::serde_duration")]
    pub webhook_timeout: Duration,
    /// Failed deliveries are retried with exponential backoff up to this
    /// delay between attempts...
    #[serde(with = "ondol_model::serde_duration")]
    pub retry_max_delay: Duration,
    /// ...and given up (logged as an error) after this long.
    #[serde(with = "ondol_model::serde_duration")]
    pub give_up_after: Duration,
    /// `vital_out_of_band` thresholds; none by default (the rule is off).
    pub vital_bands: Vec<VitalBand>,
}

/// A vital sign's acceptable band, for one resident or for everyone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitalBand {
    /// The resident it applies to; absent = every resident without a band
    /// of their own for this type.
    #[serde(default)]
    pub resident: Option<String>,
    /// heart_rate, spo2, body_temperature, blood_glucose, body_weight, or
    /// blood_pressure (the systolic value), in the canonical unit.
    #[serde(rename = "type")]
    pub reading_type: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Readings outside the band in a row before the alert.
    #[serde(default = "one")]
    pub consecutive: u32,
}

fn one() -> u32 {
    1
}

impl AlertingConfig {
    /// The vital types some band watches: only their readings need to
    /// reach alerting (ingest puts them in the store's alerting feed).
    pub fn watched_vitals(&self) -> std::collections::BTreeSet<ondol_model::ReadingType> {
        self.vital_bands
            .iter()
            .filter_map(|band| vital_type(&band.reading_type))
            .collect()
    }
}

/// The vital types a band may name.
pub(crate) fn vital_type(name: &str) -> Option<ondol_model::ReadingType> {
    use ondol_model::ReadingType as T;
    T::parse(name).filter(|t| {
        matches!(
            t,
            T::HeartRate
                | T::Spo2
                | T::BodyTemperature
                | T::BloodGlucose
                | T::BodyWeight
                | T::BloodPressure
        )
    })
}

impl Default for AlertingConfig {
    fn default() -> Self {
        const HOUR: u64 = 3600;
        Self {
            enabled: true,
            inactivity_caution: Duration::from_secs(8 * HOUR),
            inactivity_alarm: Duration::from_secs(12 * HOUR),
            inactivity_danger: Duration::from_secs(24 * HOUR),
            device_silent_after: Duration::from_secs(30 * 60),
            mass_silence_share: 0.2,
            mass_silence_window: Duration::from_secs(5 * 60),
            mass_silence_min_devices: 5,
            grace: Duration::from_secs(30 * 60),
            stall_after: Duration::from_secs(10),
            feed_poll: Duration::from_millis(250),
            ingest_timeout: Duration::from_secs(15),
            ack_timeout: Duration::from_secs(15 * 60),
            repeat_every: Duration::from_secs(15 * 60),
            webhook_url: String::new(),
            webhook_secret_env: "ONDOL_WEBHOOK_SECRET".into(),
            webhook_timeout: Duration::from_secs(10),
            retry_max_delay: Duration::from_secs(5 * 60),
            give_up_after: Duration::from_secs(24 * HOUR),
            vital_bands: Vec::new(),
        }
    }
}

impl AlertingConfig {
    /// Every problem with this config, as `(key, message)` pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(self.inactivity_caution < self.inactivity_alarm
            && self.inactivity_alarm < self.inactivity_danger)
        {
            problems.push((
                "inactivity_alarm",
                "the inactivity tiers must grow: inactivity_caution < inactivity_alarm < inactivity_danger".into(),
            ));
        }
        if self.inactivity_caution.is_zero() {
            problems.push(("inactivity_caution", "must be more than 0".into()));
        }
        if self.stall_after < Duration::from_secs(1) {
            problems.push((
                "stall_after",
                "must be at least 1s (a busy host delays timers by a fraction of a second; 10s is the default)".into(),
            ));
        }
        if self.feed_poll.is_zero() || self.feed_poll > Duration::from_secs(10) {
            problems.push((
                "feed_poll",
                "must be between 1ms and 10s (alerting would learn of help presses from other processes that late; 250ms is the default)".into(),
            ));
        }
        if self.ingest_timeout < Duration::from_secs(3) {
            problems.push((
                "ingest_timeout",
                "must be at least 3s (ingest workers beat every second; 15s is the default)".into(),
            ));
        }
        if self.device_silent_after.is_zero() {
            problems.push(("device_silent_after", "must be more than 0".into()));
        }
        if !(self.mass_silence_share > 0.0 && self.mass_silence_share <= 1.0) {
            problems.push((
                "mass_silence_share",
                format!(
                    "is {}; must be above 0 and at most 1",
                    self.mass_silence_share
                ),
            ));
        }
        if self.ack_timeout.is_zero() {
            problems.push(("ack_timeout", "must be more than 0".into()));
        }
        if self.repeat_every.is_zero() {
            problems.push(("repeat_every", "must be more than 0".into()));
        }
        let http = ["http://", "https://"]
            .iter()
            .any(|scheme| self.webhook_url.starts_with(scheme));
        if !self.webhook_url.is_empty() && !http {
            problems.push((
                "webhook_url",
                format!(
                    "{:?} is not an http:// or https:// URL; leave it empty for no webhook",
                    self.webhook_url
                ),
            ));
        }
        if !self.webhook_url.is_empty() && self.webhook_secret_env.is_empty() {
            problems.push((
                "webhook_secret_env",
                "must name the environment variable holding the webhook secret".into(),
            ));
        }
        for band in &self.vital_bands {
            if vital_type(&band.reading_type).is_none() {
                problems.push((
                    "vital_bands",
                    format!(
                        "type {:?} is not a vital; use heart_rate, spo2, body_temperature, blood_glucose, body_weight or blood_pressure",
                        band.reading_type
                    ),
                ));
            }
            if band.min.is_none() && band.max.is_none() {
                problems.push((
                    "vital_bands",
                    format!("the {} band has neither min nor max", band.reading_type),
                ));
            }
            if let (Some(min), Some(max)) = (band.min, band.max)
                && min.partial_cmp(&max) != Some(std::cmp::Ordering::Less)
            {
                problems.push((
                    "vital_bands",
                    format!(
                        "the {} band has min {min} not below max {max}",
                        band.reading_type
                    ),
                ));
            }
            if band.consecutive == 0 {
                problems.push(("vital_bands", "consecutive must be at least 1".into()));
            }
        }
        problems
    }

    /// The inactivity tiers, shortest first.
    pub(crate) fn tiers(&self) -> [Duration; 3] {
        [
            self.inactivity_caution,
            self.inactivity_alarm,
            self.inactivity_danger,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(AlertingConfig::default().problems().is_empty());
    }

    #[test]
    fn shrinking_tiers_are_refused() {
        let config = AlertingConfig {
            inactivity_alarm: Duration::from_secs(60),
            ..AlertingConfig::default()
        };
        assert_eq!(config.problems()[0].0, "inactivity_alarm");
    }
}
