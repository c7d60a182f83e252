//! Durations in config files as human strings (`"15m"`, `"250ms"`, `"1h 30m"`,
//! or ISO 8601 `"PT15M"`), for `#[serde(with = "ondol_model::serde_duration")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let signed = jiff::SignedDuration::deserialize(d)?;
    Duration::try_from(signed)
        .map_err(|_| serde::de::Error::custom("a duration must not be negative"))
}
