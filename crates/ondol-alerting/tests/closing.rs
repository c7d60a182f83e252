//! Whoever was paged hears the end (DESIGN §4): when an alert is taken
//! (acknowledged) or over (resolved by staff, cleared by the resident, a
//! system alert ending), every receiver that was sent any event of it gets
//! one closing event, on each channel it was sent on, exactly once across
//! restarts. Manual clock, real store, MQTT and webhook rows of the outbox.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ondol_alerting::{AlertingConfig, OutageSource};
use ondol_model::alert::{AlertStatus, Outcome};
use serde_json::Value;
use support::{Harness, SEOUL, config, mins, ts};

fn quiet_devices() -> AlertingConfig {
    AlertingConfig {
        device_silent_after: Duration::from_secs(72 * 3600),
        ..config()
    }
}

/// (recipient on this channel, event) → how many, for one alert.
fn events(h: &Harness, channel: &str, alert: i64) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for (target, payload) in h.outbox(channel) {
        if payload["alert"]["id"] != alert {
            continue;
        }
        let event = payload["event"].as_str().unwrap().to_owned();
        *seen.entry((target, event)).or_insert(0) += 1;
    }
    seen
}

fn keys(h: &Harness, alert: i64) -> Vec<String> {
    h.outbox("mqtt")
        .into_iter()
        .chain(h.outbox("webhook"))
        .filter(|(_, p)| p["alert"]["id"] == alert)
        .map(|(_, p)| p["idempotency_key"].as_str().unwrap().to_owned())
        .collect()
}

fn count(pairs: &[(&str, &str, usize)]) -> BTreeMap<(String, String), usize> {
    pairs
        .iter()
        .map(|(to, event, n)| (((*to).to_owned(), (*event).to_owned()), *n))
        .collect()
}

const CW: &str = "ondol/v1/caseworkers/cw-1/alerts";
const SUP: &str = "ondol/v1/caseworkers/sup-1/alerts";

#[test]
fn a_cleared_alert_tells_every_receiver_of_its_pages_once_across_a_restart() {
    let mut h = Harness::with_webhook(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.at("2026-11-27T01:00:00Z"); // 10:00 KST: missed check-in, to the caseworker
    h.at("2026-11-27T01:15:00Z"); // escalated: the supervisor too
    let id = h.alerts_of("missed_checkin")[0].id;
    // The resident checks in late: cleared before anyone acknowledged.
    h.clock.set(ts("2026-11-27T01:20:00Z"));
    h.checkin("gw-1", ts("2026-11-27T01:20:00Z"));
    let alert = h.db.alert(id).unwrap().unwrap();
    assert_eq!(alert.outcome, Some(Outcome::ClearedByResident));

    let expected_mqtt = count(&[
        (CW, "opened", 1),
        (CW, "escalated", 1),
        (CW, "resolved", 1),
        (SUP, "escalated", 1),
        (SUP, "resolved", 1),
    ]);
    let expected_webhook = count(&[
        ("cw-1", "opened", 1),
        ("cw-1", "escalated", 1),
        ("cw-1", "resolved", 1),
        ("sup-1", "escalated", 1),
        ("sup-1", "resolved", 1),
    ]);
    assert_eq!(events(&h, "mqtt", id), expected_mqtt);
    assert_eq!(events(&h, "webhook", id), expected_webhook);
    let closing = h
        .outbox("mqtt")
        .into_iter()
        .find(|(t, p)| t == SUP && p["event"] == "resolved")
        .unwrap()
        .1;
    assert_eq!(closing["to"], "sup-1");
    assert_eq!(closing["alert"]["status"], "resolved");
    assert_eq!(closing["alert"]["outcome"], "cleared_by_resident");

    // A restart, more time, the same check-in resent: nothing new.
    h.start();
    h.checkin("gw-1", ts("2026-11-27T01:20:00Z"));
    h.run_until("2026-11-27T03:00:00Z", mins(5));
    assert_eq!(events(&h, "mqtt", id), expected_mqtt);
    assert_eq!(events(&h, "webhook", id), expected_webhook);
    let keys = keys(&h, id);
    let unique: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len() / 2,
        "one key per event and recipient, shared by both channels"
    );
}

#[test]
fn staff_acknowledging_and_resolving_tell_whoever_was_paged() {
    let mut h = Harness::new(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.at("2026-11-27T01:00:00Z");
    let id = h.alerts_of("missed_checkin")[0].id;
    h.at("2026-11-27T01:15:00Z");
    // The caseworker acknowledges (as the API and the CLI do): the
    // supervisor who was paged learns that someone has it.
    h.db.acknowledge_alert(id, "cw-1", h.now(), None)
        .unwrap()
        .unwrap();
    h.db.resolve_alert(id, "cw-1", Outcome::ResidentOk, h.now() + mins(20), None)
        .unwrap()
        .unwrap();
    // Refused twice over: no second closing event.
    assert!(
        h.db.resolve_alert(id, "sup-1", Outcome::NoContact, h.now() + mins(30), None)
            .unwrap()
            .is_err()
    );
    assert_eq!(
        events(&h, "mqtt", id),
        count(&[
            (CW, "opened", 1),
            (CW, "escalated", 1),
            (CW, "acknowledged", 1),
            (CW, "resolved", 1),
            (SUP, "escalated", 1),
            (SUP, "acknowledged", 1),
            (SUP, "resolved", 1),
        ])
    );
}

#[test]
fn the_end_of_a_system_outage_reaches_the_system_topic() {
    let mut h = Harness::new(SEOUL, "2026-11-26T20:00:00Z", quiet_devices());
    h.engine().set_outage(OutageSource::Broker, true).unwrap();
    h.advance(mins(10));
    h.engine().set_outage(OutageSource::Broker, false).unwrap();
    h.advance(mins(1));
    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].status, AlertStatus::Resolved);
    let sent: Vec<(String, Value)> = h.outbox("mqtt");
    let on_system: Vec<&str> = sent
        .iter()
        .filter(|(t, _)| t == "ondol/v1/system/alerts")
        .map(|(_, p)| p["event"].as_str().unwrap())
        .collect();
    assert_eq!(on_system, ["opened", "resolved"]);
}

/// The end never overtakes the page: while an alert's `opened` event to a
/// target fails and waits for its retry, its `resolved` event to the same
/// target waits behind it; other alerts' events are not held up.
#[test]
fn a_closing_event_waits_for_the_failing_page_it_closes() {
    let mut h = Harness::new(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.at("2026-11-27T01:00:00Z");
    let id = h.alerts_of("missed_checkin")[0].id;
    let now = h.now();
    // Events due at `at`: (alert id, event).
    let due = |h: &Harness, at| -> Vec<(i64, String)> {
        h.db.due_notifications(at, 100)
            .unwrap()
            .into_iter()
            .map(|row| {
                let event: Value = serde_json::from_slice(&row.payload).unwrap();
                (
                    row.alert_id.unwrap(),
                    event["event"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let opened =
        h.db.due_notifications(now, 100)
            .unwrap()
            .into_iter()
            .find(|row| row.alert_id == Some(id))
            .unwrap();
    // The caseworker's gateway is down: the attempt fails, retried in 5 min.
    h.db.notification_failed(opened.id, now, "unreachable", Some(now + mins(5)))
        .unwrap();
    h.clock.set(ts("2026-11-27T01:01:00Z"));
    h.checkin("gw-1", ts("2026-11-27T01:01:00Z"));
    assert_eq!(
        h.db.alert(id).unwrap().unwrap().status,
        AlertStatus::Resolved
    );
    let soon = h.now() + mins(1);
    assert!(
        due(&h, soon).iter().all(|(alert, _)| *alert != id),
        "resolved must not go out before opened: {:?}",
        due(&h, soon)
    );
    assert!(
        !due(&h, soon).is_empty(),
        "another alert's events are not held up"
    );
    let retry = now + mins(5);
    let mine = |h: &Harness| -> Vec<String> {
        due(h, retry)
            .into_iter()
            .filter(|(alert, _)| *alert == id)
            .map(|(_, event)| event)
            .collect()
    };
    assert_eq!(mine(&h), ["opened"]);
    h.db.notification_delivered(opened.id, retry).unwrap();
    assert_eq!(mine(&h), ["resolved"]);
}
