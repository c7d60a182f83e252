//! Why a reading or a message was refused. The same codes appear on receipts,
//! in the rejection store and as a metric label, so they are a public contract
//! (DESIGN §2): add codes deliberately, never rename one.

use std::fmt;

/// A rejection reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    MalformedPayload,
    PayloadTooLarge,
    UnknownDevice,
    DeviceInactive,
    UnknownType,
    MissingField,
    InvalidUnit,
    OutOfRange,
    Inconsistent,
    TimestampInFuture,
    TimestampTooOld,
    RateLimited,
}

impl ReasonCode {
    /// Every code, in documentation order.
    pub const ALL: [ReasonCode; 12] = [
        ReasonCode::MalformedPayload,
        ReasonCode::PayloadTooLarge,
        ReasonCode::UnknownDevice,
        ReasonCode::DeviceInactive,
        ReasonCode::UnknownType,
        ReasonCode::MissingField,
        ReasonCode::InvalidUnit,
        ReasonCode::OutOfRange,
        ReasonCode::Inconsistent,
        ReasonCode::TimestampInFuture,
        ReasonCode::TimestampTooOld,
        ReasonCode::RateLimited,
    ];

    /// The wire spelling, e.g. `out_of_range`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::MalformedPayload => "malformed_payload",
            ReasonCode::PayloadTooLarge => "payload_too_large",
            ReasonCode::UnknownDevice => "unknown_device",
            ReasonCode::DeviceInactive => "device_inactive",
            ReasonCode::UnknownType => "unknown_type",
            ReasonCode::MissingField => "missing_field",
            ReasonCode::InvalidUnit => "invalid_unit",
            ReasonCode::OutOfRange => "out_of_range",
            ReasonCode::Inconsistent => "inconsistent",
            ReasonCode::TimestampInFuture => "timestamp_in_future",
            ReasonCode::TimestampTooOld => "timestamp_too_old",
            ReasonCode::RateLimited => "rate_limited",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal with a human-readable detail for the device maker, e.g.
/// `heart_rate 400 /min is outside 20..250`. The detail never echoes more than
/// a short excerpt of what the device sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: ReasonCode,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_spelling() {
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ReasonCode::parse("duplicate"), None);
    }
}
