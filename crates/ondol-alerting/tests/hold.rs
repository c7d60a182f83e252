//! After a start (or an outage), hold only what our gap can explain: a
//! resident leaves the grace period as soon as every device of theirs sends
//! live data again (a reading measured since the grace began, so what it
//! kept while we could not hear it came first); a resident with a device not
//! heard from live keeps the full grace. Manual clock, real store.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ondol_alerting::{AlertingConfig, OutageSource};
use ondol_model::reading::{ReadingType, ReadingValue};
use support::{Harness, SEOUL, mins, ts};

/// The one resident of [`SEOUL`] (check-in window 06:00–10:00 KST) with a
/// wearable beside the gateway.
fn two_devices() -> String {
    format!("{SEOUL}\n[[devices]]\nid = \"wr-1\"\nresident = \"r-1\"\nkind = \"wearable\"\n")
}

fn grace_30m() -> AlertingConfig {
    AlertingConfig {
        grace: Duration::from_secs(30 * 60),
        device_silent_after: Duration::from_secs(72 * 3600),
        ..AlertingConfig::default()
    }
}

/// Started at 09:58 KST: the check-in deadline (10:00 KST = 01:00Z) comes
/// two minutes into the 30-minute grace.
fn started_before_the_deadline() -> Harness {
    Harness::new(&two_devices(), "2026-11-27T00:58:00Z", grace_30m())
}

/// The gateway and the wearable each send a reading measured now.
fn both_send_live(h: &mut Harness) {
    h.motion("gw-1", h.now());
    h.reading(
        "wr-1",
        h.now(),
        ReadingValue::Number(72.0),
        ReadingType::HeartRate,
    );
}

#[test]
fn a_resident_whose_devices_are_all_back_is_alerted_at_the_deadline() {
    let mut h = started_before_the_deadline();
    // Both devices reconnect and send live readings (measured now).
    both_send_live(&mut h);
    assert!(h.alerts_of("missed_checkin").is_empty());
    h.run_until("2026-11-27T01:05:00Z", mins(1));
    let missed = h.alerts_of("missed_checkin");
    assert_eq!(missed.len(), 1, "not 30 minutes late");
    assert_eq!(missed[0].opened_at, ts("2026-11-27T01:00:00Z"));
}

#[test]
fn a_resident_with_a_device_not_back_is_held_for_the_whole_grace() {
    let mut h = started_before_the_deadline();
    h.motion("gw-1", h.now());
    // The wearable is not heard from at all.
    h.run_until("2026-11-27T01:27:00Z", mins(1));
    assert!(h.alerts_of("missed_checkin").is_empty(), "held");
    h.run_until("2026-11-27T01:30:00Z", mins(1));
    let missed = h.alerts_of("missed_checkin");
    assert_eq!(missed.len(), 1);
    assert_eq!(
        missed[0].opened_at,
        ts("2026-11-27T01:28:00Z"),
        "at the end of the grace"
    );
}

#[test]
fn backlog_alone_does_not_release_a_resident() {
    let mut h = started_before_the_deadline();
    // Both devices resend what they kept, measured before the start; the
    // wearable's check-in from 09:50 KST is still on its way.
    h.motion("gw-1", ts("2026-11-27T00:40:00Z"));
    h.reading(
        "wr-1",
        ts("2026-11-27T00:45:00Z"),
        ReadingValue::Number(70.0),
        ReadingType::HeartRate,
    );
    h.run_until("2026-11-27T01:10:00Z", mins(1));
    assert!(h.alerts_of("missed_checkin").is_empty(), "still held");
    h.checkin("wr-1", ts("2026-11-27T00:50:00Z"));
    h.run_until("2026-11-27T01:40:00Z", mins(1));
    assert!(
        h.alerts_of("missed_checkin").is_empty(),
        "the late check-in arrived inside the grace"
    );
}

#[test]
fn after_an_outage_the_same_rule_applies() {
    let mut h = started_before_the_deadline();
    h.motion("gw-1", h.now());
    h.run_until("2026-11-27T00:59:00Z", mins(1));
    // An outage before the deadline, over just before it.
    h.engine().set_outage(OutageSource::Broker, true).unwrap();
    h.advance(mins(1)); // 01:00Z: the deadline passes while blind
    h.engine().set_outage(OutageSource::Broker, false).unwrap();
    assert!(h.alerts_of("missed_checkin").is_empty());
    // Both devices are back with live data: decided at once.
    h.advance(mins(1));
    both_send_live(&mut h);
    let missed = h.alerts_of("missed_checkin");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].opened_at, ts("2026-11-27T01:01:00Z"));
}
