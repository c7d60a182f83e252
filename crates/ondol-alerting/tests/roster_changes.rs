//! The roster changing while alerting runs (the admin API writes the
//! store's roster tables; the binary hands the new roster to the engine):
//! new residents get a defined first deadline, removed ones stop being
//! watched, a new away period suspends the rules at once, a reassignment
//! sends later notifications to the new caseworker. Manual clock.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ondol_alerting::AlertingConfig;
use ondol_model::alert::AlertStatus;
use ondol_store::parse_roster;
use support::{Harness, config, hours, mins, ts};

const STAFF: &str = r#"
[[staff]]
id = "cw-1"
name = "Park"
role = "caseworker"

[[staff]]
id = "cw-2"
name = "Choi"
role = "caseworker"

[[staff]]
id = "sup-1"
name = "Lee"
role = "supervisor"
region = "gangjin"
"#;

fn resident(id: &str, caseworker: &str, extra: &str) -> String {
    format!(
        "[[residents]]\nid = \"{id}\"\nname = \"R\"\ntimezone = \"Asia/Seoul\"\nregion = \"gangjin\"\n\
         enrolled_from = \"2026-01-01\"\ncaseworker = \"{caseworker}\"\n{extra}\n\
         [[devices]]\nid = \"gw-{id}\"\nresident = \"{id}\"\nkind = \"gateway\"\n"
    )
}

fn roster(residents: &[String]) -> String {
    format!("{STAFF}{}", residents.concat())
}

/// Devices that stay "heard" for the length of a test.
fn quiet() -> AlertingConfig {
    AlertingConfig {
        device_silent_after: Duration::from_secs(72 * 3600),
        ..config()
    }
}

fn alerts_of(h: &Harness, resident: &str, rule: &str) -> Vec<ondol_store::alerts::AlertRow> {
    h.alerts_of(rule)
        .into_iter()
        .filter(|a| {
            a.resident_id
                .as_ref()
                .is_some_and(|r| r.as_str() == resident)
        })
        .collect()
}

#[test]
fn a_resident_enrolled_mid_window_is_first_expected_at_the_next_whole_window() {
    let one = resident("r-1", "cw-1", "");
    // 05:00 KST on 27 Nov.
    let mut h = Harness::new(
        &roster(std::slice::from_ref(&one)),
        "2026-11-26T20:00:00Z",
        quiet(),
    );
    h.motion("gw-r-1", h.now());
    // Enrolled at 08:00 KST, inside today's 06:00-10:00 window.
    h.at("2026-11-26T23:00:00Z");
    let changes = h.change_roster(&roster(&[one, resident("r-2", "cw-1", "")]));
    assert_eq!((changes.residents_added, changes.devices_added), (1, 1));
    h.motion("gw-r-2", h.now());
    h.at("2026-11-27T01:00:00Z"); // 10:00 KST
    assert_eq!(alerts_of(&h, "r-1", "missed_checkin").len(), 1);
    assert!(
        alerts_of(&h, "r-2", "missed_checkin").is_empty(),
        "today's window was already open at enrolment"
    );
    // A restart does not bring today back.
    h.start();
    h.at("2026-11-27T02:00:00Z");
    assert!(alerts_of(&h, "r-2", "missed_checkin").is_empty());
    // The next day's window is expected.
    h.motion("gw-r-2", ts("2026-11-27T12:00:00Z"));
    h.at("2026-11-28T00:59:59Z");
    assert!(alerts_of(&h, "r-2", "missed_checkin").is_empty());
    h.at("2026-11-28T01:00:00Z");
    let missed = alerts_of(&h, "r-2", "missed_checkin");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].local_date.unwrap().to_string(), "2026-11-28");
}

#[test]
fn a_resident_enrolled_before_the_window_is_expected_that_day_and_inactivity_counts_from_enrolment()
{
    let one = resident("r-1", "cw-1", "");
    let mut h = Harness::new(
        &roster(std::slice::from_ref(&one)),
        "2026-11-26T12:00:00Z",
        quiet(),
    );
    // 22:00 KST on the 26th: the 27th's window is whole.
    h.at("2026-11-26T13:00:00Z");
    h.change_roster(&roster(&[one, resident("r-2", "cw-1", "")]));
    // Nothing from r-2 at all: inactivity counts from enrolment (8 h ->
    // 21:00Z), then the 27th's deadline.
    h.at("2026-11-26T20:59:59Z");
    assert!(alerts_of(&h, "r-2", "inactivity").is_empty());
    h.at("2026-11-26T21:00:00Z");
    assert_eq!(alerts_of(&h, "r-2", "inactivity").len(), 1);
    h.at("2026-11-27T01:00:00Z");
    assert_eq!(alerts_of(&h, "r-2", "missed_checkin").len(), 1);
}

#[test]
fn a_removed_resident_stops_being_watched_but_their_open_alert_stays_and_escalates() {
    let one = resident("r-1", "cw-1", "");
    let two = resident("r-2", "cw-1", "");
    let mut h = Harness::new(
        &roster(&[one, two.clone()]),
        "2026-11-26T20:00:00Z",
        quiet(),
    );
    h.motion("gw-r-1", h.now());
    h.motion("gw-r-2", h.now());
    h.at("2026-11-27T01:00:00Z");
    let open = alerts_of(&h, "r-1", "missed_checkin");
    assert_eq!(open.len(), 1);
    let timers = h.engine().stats().timers;
    // r-1 leaves the roster (the admin API deletes the entry).
    let without = parse_roster(&roster(&[two]), "without r-1").unwrap();
    let changes = h.apply(&without);
    assert_eq!((changes.residents_removed, changes.devices_removed), (1, 1));
    assert!(h.engine().stats().timers < timers);
    // Escalation goes on to the supervisor and the caseworker.
    h.at("2026-11-27T01:15:00Z");
    let alert = h.db.alert(open[0].id).unwrap().unwrap();
    assert_eq!(alert.status, AlertStatus::Open);
    assert_eq!(alert.escalations, 1);
    let escalated: Vec<_> = h
        .outbox("mqtt")
        .into_iter()
        .filter(|(_, e)| e["event"] == "escalated" && e["alert"]["id"] == open[0].id)
        .map(|(topic, _)| topic)
        .collect();
    assert_eq!(
        escalated,
        vec![
            "ondol/v1/caseworkers/sup-1/alerts".to_owned(),
            "ondol/v1/caseworkers/cw-1/alerts".to_owned()
        ]
    );
    // Staff resolve it; nothing new about r-1 ever again.
    h.db.acknowledge_alert(open[0].id, "cw-1", h.now(), None)
        .unwrap()
        .unwrap();
    h.run_until("2026-11-29T02:00:00Z", hours(1));
    assert_eq!(alerts_of(&h, "r-1", "missed_checkin").len(), 1);
    assert!(alerts_of(&h, "r-1", "inactivity").is_empty());
    assert!(alerts_of(&h, "r-1", "device_offline").is_empty());
    // r-2 is still watched.
    assert_eq!(alerts_of(&h, "r-2", "inactivity").len(), 1);
}

#[test]
fn an_enrolment_that_ends_stops_the_timers() {
    let one = resident("r-1", "cw-1", "");
    let mut h = Harness::new(&roster(&[one]), "2026-11-26T20:00:00Z", quiet());
    h.motion("gw-r-1", h.now());
    h.at("2026-11-26T21:00:00Z");
    // Unenrolled as of yesterday.
    h.change_roster(&roster(&[resident(
        "r-1",
        "cw-1",
        "enrolled_until = \"2026-11-26\"",
    )]));
    h.run_until("2026-11-29T02:00:00Z", hours(1));
    assert!(h.alerts().is_empty(), "{:?}", h.alerts());
}

#[test]
fn a_new_away_period_suspends_the_rules_at_once_and_they_resume_after_it() {
    let one = resident("r-1", "cw-1", "");
    let mut h = Harness::new(&roster(&[one]), "2026-11-26T20:00:00Z", quiet());
    h.motion("gw-r-1", h.now());
    // 08:00 KST: the resident goes to hospital today and tomorrow.
    h.at("2026-11-26T23:00:00Z");
    let away = "away = [{ from = \"2026-11-27\", until = \"2026-11-28\", reason = \"hospital\" }]";
    let changes = h.change_roster(&roster(&[resident("r-1", "cw-1", away)]));
    assert_eq!(changes.residents_changed, 1);
    // Deadlines and inactivity tiers pass while away: nothing.
    h.run_until("2026-11-28T20:00:00Z", mins(30));
    assert!(h.alerts().is_empty(), "{:?}", h.alerts());
    // Back on the 29th: its check-in deadline is expected again.
    h.motion("gw-r-1", ts("2026-11-28T23:00:00Z"));
    h.at("2026-11-29T01:00:00Z");
    let missed = h.alerts_of("missed_checkin");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].local_date.unwrap().to_string(), "2026-11-29");
}

#[test]
fn after_a_reassignment_notifications_go_to_the_new_caseworker() {
    let mut h = Harness::new(
        &roster(&[resident("r-1", "cw-1", "")]),
        "2026-11-26T20:00:00Z",
        quiet(),
    );
    h.motion("gw-r-1", h.now());
    h.at("2026-11-27T00:00:00Z");
    let changes = h.change_roster(&roster(&[resident("r-1", "cw-2", "")]));
    assert_eq!(changes.residents_changed, 1);
    h.at("2026-11-27T01:00:00Z");
    h.at("2026-11-27T01:15:00Z");
    let sent: Vec<(String, String)> = h
        .outbox("mqtt")
        .into_iter()
        .map(|(topic, e)| (e["event"].as_str().unwrap().to_owned(), topic))
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                "opened".to_owned(),
                "ondol/v1/caseworkers/cw-2/alerts".to_owned()
            ),
            (
                "escalated".to_owned(),
                "ondol/v1/caseworkers/sup-1/alerts".to_owned()
            ),
            (
                "escalated".to_owned(),
                "ondol/v1/caseworkers/cw-2/alerts".to_owned()
            ),
        ]
    );
}

#[test]
fn devices_added_and_removed_while_running_are_watched_from_then_and_no_longer() {
    let config = AlertingConfig {
        device_silent_after: Duration::from_secs(30 * 60),
        mass_silence_min_devices: 50,
        ..config()
    };
    let mut h = Harness::new(
        &roster(&[resident("r-1", "cw-1", "checkin = { window = \"none\" }")]),
        "2026-11-27T03:00:00Z",
        config,
    );
    h.motion("gw-r-1", h.now());
    h.at("2026-11-27T03:20:00Z");
    // A wearable is added to r-1; it never sends.
    let mut with_wearable = roster(&[resident("r-1", "cw-1", "checkin = { window = \"none\" }")]);
    with_wearable.push_str("[[devices]]\nid = \"wr-1\"\nresident = \"r-1\"\nkind = \"wearable\"\n");
    let changes = h.change_roster(&with_wearable);
    assert_eq!(changes.devices_added, 1);
    // The gateway keeps reporting.
    h.motion("gw-r-1", ts("2026-11-27T03:40:00Z"));
    h.at("2026-11-27T03:49:59Z");
    h.motion("gw-r-1", ts("2026-11-27T03:49:00Z"));
    // 30 min silence after it was added, plus the 5 min confirmation.
    h.run_until("2026-11-27T03:54:00Z", mins(1));
    assert!(h.alerts_of("device_offline").is_empty());
    h.run_until("2026-11-27T04:00:00Z", mins(1));
    let offline = h.alerts_of("device_offline");
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].device_id.as_ref().unwrap().as_str(), "wr-1");
    // The gateway is taken away (the entry deleted): never reported offline.
    let mut only_wearable = parse_roster(&with_wearable, "x").unwrap();
    only_wearable.devices.retain(|d| d.id.as_str() == "wr-1");
    let changes = h.apply(&only_wearable);
    assert_eq!(changes.devices_removed, 1);
    h.run_until("2026-11-27T08:00:00Z", mins(10));
    assert_eq!(h.alerts_of("device_offline").len(), 1);
}

#[test]
fn a_binding_set_in_advance_takes_effect_at_its_time_without_a_roster_edit() {
    let config = AlertingConfig {
        device_silent_after: Duration::from_secs(30 * 60),
        mass_silence_min_devices: 50,
        ..config()
    };
    // wr-1 is r-1's from 04:00 (delivered then); nobody edits the roster.
    let mut text = roster(&[resident("r-1", "cw-1", "checkin = { window = \"none\" }")]);
    text.push_str(
        "[[devices]]\nid = \"wr-1\"\nresident = \"r-1\"\nkind = \"wearable\"\n\
         bound_from = \"2026-11-27T04:00:00Z\"\n",
    );
    let mut h = Harness::new(&text, "2026-11-27T03:00:00Z", config);
    h.motion("gw-r-1", h.now());
    // The gateway keeps reporting all along.
    let mut at = ts("2026-11-27T03:10:00Z");
    while at <= ts("2026-11-27T05:30:00Z") {
        h.run_until(&at.to_string(), mins(1));
        h.motion("gw-r-1", at);
        at += mins(10);
    }
    // Not watched before 04:00 (not r-1's yet); from 04:00 it is, and its
    // silence is reported after 30 min plus the 5 min confirmation.
    let offline = h.alerts_of("device_offline");
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0].device_id.as_ref().unwrap().as_str(), "wr-1");
    assert!(
        offline[0].opened_at >= ts("2026-11-27T04:35:00Z"),
        "{offline:?}"
    );
    assert_eq!(offline[0].resident_id.as_ref().unwrap().as_str(), "r-1");
}
