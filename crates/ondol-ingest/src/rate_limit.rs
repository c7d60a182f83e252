//! Per-device message rate limit: a token bucket per device, refilled by
//! the receive time of each message (so tests drive it with timestamps, not
//! sleeps). A message that finds the bucket empty is refused reading by
//! reading with `rate_limited`, the one temporary refusal: the device
//! resends it later, unchanged.

use std::collections::HashMap;

use jiff::Timestamp;
use ondol_model::DeviceId;

/// How fast one device may send reading messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_minute: f64,
    /// Messages a device may send at once after a quiet spell (e.g. its
    /// backlog after a reconnect).
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// One token bucket per device that has sent something.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<DeviceId, Bucket>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token for `device` at `now`; `false` when it has none left.
    pub fn allow(&mut self, device: &DeviceId, now: Timestamp) -> bool {
        let limit = self.limit;
        let bucket = self.buckets.entry(device.clone()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        // A receive time earlier than the last one (clock step) adds nothing.
        let elapsed = now.duration_since(bucket.at).as_secs_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * limit.per_minute / 60.0).min(limit.burst);
        if now > bucket.at {
            bucket.at = now;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut limiter = RateLimiter::new(RateLimit {
            per_minute: 60.0,
            burst: 3.0,
        });
        let gw = DeviceId::new("gw-1").expect("id");
        let other = DeviceId::new("gw-2").expect("id");
        let t0 = Timestamp::from_second(1_800_000_000).expect("ts");
        assert!((0..3).all(|_| limiter.allow(&gw, t0)));
        assert!(!limiter.allow(&gw, t0));
        // Other devices have their own bucket.
        assert!(limiter.allow(&other, t0));
        // One token a second comes back.
        let t1 = t0 + jiff::SignedDuration::from_millis(1_000);
        assert!(limiter.allow(&gw, t1));
        assert!(!limiter.allow(&gw, t1));
        // Never more than the burst, however long the quiet spell.
        let later = t0 + jiff::SignedDuration::from_hours(1);
        assert_eq!((0..10).filter(|_| limiter.allow(&gw, later)).count(), 3);
        // A clock step backwards gives nothing.
        assert!(!limiter.allow(&gw, t0));
    }
}
