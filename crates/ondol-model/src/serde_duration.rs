//! Durations in config files as human strings (`"250ms"`, `"15m"`,
//! `"1h 30m"`, `"30d"`, or ISO 8601 `"PT15M"`), for
//! `#[serde(with = "ondol_model::serde_duration")]`. A day is 24 hours here:
//! config durations are spans of elapsed time, not calendar days.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};
use serde::{Deserialize, Deserializer};

/// Parses a duration as written in a config file.
pub fn parse(text: &str) -> Result<Duration, String> {
    let span: Span = text.parse().map_err(|e| {
        format!("{text:?} is not a duration like \"20ms\", \"15m\" or \"30d\" ({e})")
    })?;
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| {
            format!("{text:?} is not a fixed length of time ({e}); use days or smaller units")
        })?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative; durations must not be"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_and_iso_forms_parse() {
        assert_eq!(parse("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("PT15M"), Ok(Duration::from_secs(900)));
        assert!(parse("soon").is_err());
        assert!(parse("-5m").is_err());
        assert!(parse("1 month").is_err());
    }
}
