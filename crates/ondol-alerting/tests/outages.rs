//! `system_outage` from each of our own parts (DESIGN §4): one system alert
//! to supervisors per outage, resident alerts caused by missing data held
//! during it and for the grace period after, then re-evaluated with the data
//! that arrived late. Manual clock, real store.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ondol_alerting::{AlertingConfig, OutageSource};
use ondol_model::alert::AlertStatus;
use support::{Harness, SEOUL, mins, ts};

/// A 30-minute grace period; devices stay "heard" for the whole test.
fn with_grace() -> AlertingConfig {
    AlertingConfig {
        grace: Duration::from_secs(30 * 60),
        device_silent_after: Duration::from_secs(72 * 3600),
        ..AlertingConfig::default()
    }
}

/// Starts at 05:00 KST on 27 Nov and runs past the start-up grace (06:00
/// KST); the check-in deadline is 10:00 KST = 01:00Z.
fn running() -> Harness {
    let mut h = Harness::new(SEOUL, "2026-11-26T20:00:00Z", with_grace());
    h.motion("gw-1", h.now());
    h.run_until("2026-11-26T21:00:00Z", mins(10));
    assert!(!h.engine().holding());
    h
}

fn resident_alerts(h: &Harness) -> Vec<String> {
    h.alerts()
        .into_iter()
        .filter(|a| a.rule.as_str() != "system_outage")
        .map(|a| a.rule.as_str().to_owned())
        .collect()
}

#[test]
fn overlapping_and_flapping_outages_of_several_parts_are_one_system_alert() {
    let mut h = running();
    // The store refuses commits at 09:30 KST; later nothing arrives either.
    h.at("2026-11-27T00:30:00Z");
    h.engine().set_outage(OutageSource::Store, true).unwrap();
    h.run_until("2026-11-27T00:50:00Z", mins(5));
    h.engine()
        .set_outage(OutageSource::NoMessages, true)
        .unwrap();
    // The check-in deadline (10:00 KST) passes while we are blind.
    h.run_until("2026-11-27T01:30:00Z", mins(5));
    assert!(h.engine().holding());
    h.engine().set_outage(OutageSource::Store, false).unwrap();
    assert!(h.engine().holding(), "still blind: nothing arrives");
    h.engine()
        .set_outage(OutageSource::NoMessages, false)
        .unwrap();
    // A flap inside the grace period: the same outage, no new alert.
    h.advance(mins(10));
    h.engine().set_outage(OutageSource::Store, true).unwrap();
    h.advance(mins(1));
    h.engine().set_outage(OutageSource::Store, false).unwrap();
    h.run_until("2026-11-27T03:00:00Z", mins(5));

    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1, "{system:?}");
    assert_eq!(system[0].cause.to_string(), "store_unwritable");
    assert_eq!(system[0].status, AlertStatus::Resolved);
    let sent = h.outbox("mqtt");
    let to_system: Vec<_> = sent
        .iter()
        .filter(|(topic, event)| topic == "ondol/v1/system/alerts" && event["event"] == "opened")
        .collect();
    assert_eq!(to_system.len(), 1, "one system page: {sent:?}");
    assert_eq!(to_system[0].1["alert"]["rule"], "system_outage");
    let ended: Vec<_> = sent
        .iter()
        .filter(|(topic, event)| topic == "ondol/v1/system/alerts" && event["event"] == "resolved")
        .collect();
    assert_eq!(ended.len(), 1, "whoever was paged hears the end: {sent:?}");
    // Nothing came late: the missed check-in is raised, but only once the
    // grace after the last outage (the flap, over at 01:41Z) is over.
    let missed = h.alerts_of("missed_checkin");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].opened_at, ts("2026-11-27T02:11:00Z"));
}

#[test]
fn a_checkin_that_arrives_late_after_a_broker_outage_prevents_the_alert() {
    let mut h = running();
    h.at("2026-11-27T00:00:00Z"); // 09:00 KST
    h.engine().set_outage(OutageSource::Broker, true).unwrap();
    // The resident checks in at 09:30 KST; the device keeps the message.
    h.run_until("2026-11-27T02:00:00Z", mins(5));
    assert!(h.alerts_of("missed_checkin").is_empty(), "held while down");
    h.engine().set_outage(OutageSource::Broker, false).unwrap();
    h.advance(mins(2));
    h.checkin("gw-1", ts("2026-11-27T00:30:00Z"));
    h.run_until("2026-11-27T03:30:00Z", mins(5));
    assert_eq!(resident_alerts(&h), Vec::<String>::new());
    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].cause.to_string(), "broker_unreachable");
    assert_eq!(system[0].status, AlertStatus::Resolved);
}

#[test]
fn a_timeseries_outage_tells_supervisors_but_holds_no_resident_alert() {
    let mut h = running();
    h.at("2026-11-27T00:00:00Z");
    h.engine()
        .set_outage(OutageSource::Timeseries, true)
        .unwrap();
    assert!(
        !h.engine().holding(),
        "readings still reach alerting through the store"
    );
    // No check-in: the alert comes at the deadline, on time.
    h.at("2026-11-27T01:00:00Z");
    let missed = h.alerts_of("missed_checkin");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].opened_at, ts("2026-11-27T01:00:00Z"));
    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].cause.to_string(), "timeseries_unreachable");
    assert_eq!(system[0].status, AlertStatus::Open);
    // It ends: nothing was held, so no grace; the system alert closes.
    h.engine()
        .set_outage(OutageSource::Timeseries, false)
        .unwrap();
    h.engine().tick().unwrap();
    assert!(!h.engine().holding());
    assert_eq!(
        h.alerts_of("system_outage")[0].status,
        AlertStatus::Resolved
    );
}

#[test]
fn a_blinding_outage_during_a_timeseries_outage_still_holds_and_one_alert_covers_both() {
    let mut h = running();
    h.at("2026-11-27T00:00:00Z");
    h.engine()
        .set_outage(OutageSource::Timeseries, true)
        .unwrap();
    h.engine().set_outage(OutageSource::Broker, true).unwrap();
    h.run_until("2026-11-27T01:30:00Z", mins(5));
    assert!(h.alerts_of("missed_checkin").is_empty(), "held");
    h.engine().set_outage(OutageSource::Broker, false).unwrap();
    // Grace over, the sink still down: held deadlines are evaluated, the
    // system alert stays open.
    h.run_until("2026-11-27T02:10:00Z", mins(5));
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].status, AlertStatus::Open);
    h.engine()
        .set_outage(OutageSource::Timeseries, false)
        .unwrap();
    h.engine().tick().unwrap();
    assert_eq!(
        h.alerts_of("system_outage")[0].status,
        AlertStatus::Resolved
    );
}
