//! Every rule and semantic of DESIGN §4 against a real store, driven with a
//! manual clock: no sleeps, no wall-clock time.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ondol_alerting::{AlertingConfig, OutageSource};
use ondol_model::alert::{AlertStatus, Outcome, Severity};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use support::{Harness, SEOUL, config, hours, mins, ts};

/// Devices that stay "heard" for the length of a test.
fn quiet_devices() -> AlertingConfig {
    AlertingConfig {
        device_silent_after: Duration::from_secs(72 * 3600),
        ..config()
    }
}

#[test]
fn missed_checkin_in_seoul_fires_at_the_local_deadline_and_notifies_the_caseworker() {
    // 21:00 KST on the 26th: the 27th's 06:00-10:00 window is the first.
    let mut h = Harness::new(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.motion("gw-1", ts("2026-11-26T23:30:00Z")); // 08:30 KST: activity, not a check-in
    h.at("2026-11-27T00:59:59Z");
    assert!(h.alerts().is_empty());
    h.at("2026-11-27T01:00:00Z"); // 10:00 KST
    let alerts = h.alerts_of("missed_checkin");
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.status, AlertStatus::Open);
    assert_eq!(alert.cause.to_string(), "no_checkin");
    assert_eq!(alert.local_date.unwrap().to_string(), "2026-11-27");
    let sent = h.outbox("mqtt");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "ondol/v1/caseworkers/cw-1/alerts");
    assert_eq!(sent[0].1["event"], "opened");
    assert_eq!(sent[0].1["alert"]["rule"], "missed_checkin");
    assert_eq!(sent[0].1["alert"]["resident_id"], "r-1");
    // The rollup counts it.
    let day =
        h.db.resident_day(&h.resident("r-1"), jiff::civil::date(2026, 11, 27))
            .unwrap()
            .unwrap();
    assert_eq!(day.readings, 1);
}

#[test]
fn deadlines_follow_daylight_saving_time() {
    let roster = r#"
[[residents]]
id = "r-ny"
name = "Smith"
timezone = "America/New_York"
region = "east"
enrolled_from = "2026-01-01"
caseworker = "cw-1"
checkin = { window = "01:00-02:30" }

[[devices]]
id = "gw-ny"
resident = "r-ny"
kind = "gateway"

[[staff]]
id = "cw-1"
name = "Park"
role = "caseworker"
"#;
    // 7 March, 12:00 EST. On 8 March clocks skip 02:00-03:00: 02:30 does not
    // exist and the deadline is 03:30 EDT = 07:30Z (it would be 07:30Z in
    // EST too, but the next day's is 06:30Z, one hour earlier in UTC).
    let mut h = Harness::new(roster, "2026-03-07T17:00:00Z", quiet_devices());
    h.at("2026-03-08T07:29:59Z");
    assert!(h.alerts_of("missed_checkin").is_empty());
    h.at("2026-03-08T07:30:00Z");
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    // Acknowledge and resolve it, so the next day can open its own.
    let id = h.alerts_of("missed_checkin")[0].id;
    h.db.resolve_alert(id, "cw-1", Outcome::ResidentOk, h.now(), None)
        .unwrap()
        .unwrap();
    h.at("2026-03-09T06:29:59Z");
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    h.at("2026-03-09T06:30:00Z"); // 02:30 EDT
    let alerts = h.alerts_of("missed_checkin");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1].local_date.unwrap().to_string(), "2026-03-09");
}

#[test]
fn a_checkin_inside_the_window_prevents_the_alert() {
    let mut h = Harness::new(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.checkin("gw-1", ts("2026-11-26T23:00:00Z")); // 08:00 KST
    h.at("2026-11-27T01:00:00Z");
    h.at("2026-11-27T02:00:00Z");
    assert!(h.alerts_of("missed_checkin").is_empty());
}

#[test]
fn a_late_checkin_clears_the_alert_as_cleared_by_resident() {
    let mut h = Harness::new(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.at("2026-11-27T01:00:00Z");
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    h.clock.set(ts("2026-11-27T01:20:00Z"));
    h.checkin("gw-1", ts("2026-11-27T01:20:00Z")); // 10:20 KST
    let alert = &h.alerts_of("missed_checkin")[0];
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.outcome, Some(Outcome::ClearedByResident));
    assert_eq!(alert.acked_at, None, "nobody acknowledged it");
    let transitions = h.db.alert_transitions(alert.id).unwrap();
    let events: Vec<_> = transitions
        .iter()
        .map(|t| (t.event.as_str(), t.actor.as_str()))
        .collect();
    assert_eq!(events, [("opened", "system"), ("resolved", "system")]);
    // No escalation follows.
    h.advance(hours(2));
    assert!(
        h.outbox("mqtt")
            .iter()
            .all(|(_, p)| p["event"] != "escalated")
    );
}

const NO_WINDOW: &str = r#"
[[residents]]
id = "r-1"
name = "Kim"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"
checkin = { window = "none" }

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"

[[devices]]
id = "wr-1"
resident = "r-1"
kind = "wearable"

[[staff]]
id = "cw-1"
name = "Park"
role = "caseworker"
"#;

#[test]
fn inactivity_tiers_raise_the_same_alert_and_notify_again() {
    let mut h = Harness::new(NO_WINDOW, "2026-11-27T00:00:00Z", quiet_devices());
    let t0 = h.now();
    h.motion("gw-1", t0);
    // Vitals from a wearable are not activity, but keep the device heard.
    h.reading(
        "wr-1",
        t0 + hours(1),
        ReadingValue::Number(70.0),
        ReadingType::HeartRate,
    );
    h.at("2026-11-27T07:59:59Z");
    assert!(h.alerts().is_empty());
    h.at("2026-11-27T08:00:00Z");
    let alerts = h.alerts_of("inactivity");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, Severity::Caution);
    assert_eq!(alerts[0].cause.to_string(), "no_activity");
    h.at("2026-11-27T12:00:00Z");
    h.at("2026-11-28T00:00:00Z");
    let alerts = h.alerts_of("inactivity");
    assert_eq!(alerts.len(), 1, "one open alert per resident and rule");
    assert_eq!(alerts[0].severity, Severity::Danger);
    let events: Vec<String> = h
        .outbox("mqtt")
        .iter()
        .filter(|(_, p)| p["alert"]["rule"] == "inactivity")
        .map(|(_, p)| {
            format!(
                "{}:{}",
                p["event"].as_str().unwrap(),
                p["alert"]["severity"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(events.iter().filter(|e| e.starts_with("opened")).count(), 1);
    assert!(events.contains(&"raised:alarm".to_owned()), "{events:?}");
    assert!(events.contains(&"raised:danger".to_owned()), "{events:?}");
    // Movement ends the condition before anyone acknowledged.
    h.motion("gw-1", h.now());
    assert_eq!(
        h.alerts_of("inactivity")[0].outcome,
        Some(Outcome::ClearedByResident)
    );
}

#[test]
fn when_every_device_is_silent_the_cause_is_no_data() {
    let mut h = Harness::new(NO_WINDOW, "2026-11-27T00:00:00Z", config());
    let t0 = h.now();
    h.motion("gw-1", t0);
    h.reading(
        "wr-1",
        t0,
        ReadingValue::Number(70.0),
        ReadingType::HeartRate,
    );
    h.run_until("2026-11-27T08:00:00Z", mins(10));
    let inactivity = h.alerts_of("inactivity");
    assert_eq!(inactivity.len(), 1);
    assert_eq!(inactivity[0].cause.to_string(), "no_data");
    // Each silent device is its own low-severity device problem.
    let offline = h.alerts_of("device_offline");
    assert_eq!(offline.len(), 2);
    assert!(
        offline
            .iter()
            .all(|a| a.severity == Severity::Low && a.cause.to_string() == "silent")
    );
    // One device coming back clears its own alert only.
    h.reading(
        "wr-1",
        h.now(),
        ReadingValue::Number(71.0),
        ReadingType::HeartRate,
    );
    let offline = h.alerts_of("device_offline");
    let wr = offline
        .iter()
        .find(|a| a.device_id.as_ref().unwrap().as_str() == "wr-1")
        .unwrap();
    let gw = offline
        .iter()
        .find(|a| a.device_id.as_ref().unwrap().as_str() == "gw-1")
        .unwrap();
    assert_eq!(wr.outcome, Some(Outcome::ClearedByResident));
    assert_eq!(gw.status, AlertStatus::Open);
}

#[test]
fn a_will_saying_offline_marks_the_device_offline() {
    let mut h = Harness::new(NO_WINDOW, "2026-11-27T00:00:00Z", config());
    h.status("gw-1", true);
    h.status("wr-1", true);
    h.advance(mins(1));
    h.status("gw-1", false);
    h.advance(mins(5)); // the mass-silence window passes
    let offline = h.alerts_of("device_offline");
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].cause.to_string(), "will_offline");
}

#[test]
fn help_and_fall_alert_at_once_even_while_holding() {
    // Default grace: everything missing-data is held for 30 min after start.
    let mut h = Harness::new(SEOUL, "2026-11-27T00:00:00Z", AlertingConfig::default());
    assert!(h.engine().holding());
    h.reading(
        "gw-1",
        h.now(),
        ReadingValue::Checkin(CheckinValue::Help),
        ReadingType::Checkin,
    );
    let help = h.alerts_of("help_request");
    assert_eq!(help.len(), 1);
    assert_eq!(help[0].severity, Severity::Critical);
    assert_eq!(help[0].cause.to_string(), "help");
    // A fall while it is open notifies again on the same alert.
    h.clock.advance(mins(1));
    h.reading("gw-1", h.now(), ReadingValue::Fall, ReadingType::Fall);
    assert_eq!(h.alerts_of("help_request").len(), 1);
    let events: Vec<_> = h
        .outbox("mqtt")
        .iter()
        .map(|(_, p)| p["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["opened", "repeated"]);
}

#[test]
fn away_periods_suspend_the_rules() {
    let roster = SEOUL.replace(
        "caseworker = \"cw-1\"\n",
        "caseworker = \"cw-1\"\naway = [{ from = \"2026-11-27\", until = \"2026-11-28\", reason = \"hospital\" }]\n",
    );
    let mut h = Harness::new(&roster, "2026-11-26T12:00:00Z", quiet_devices());
    h.motion("gw-1", h.now());
    // Two days away: no check-in, inactivity or device alert.
    h.run_until("2026-11-28T14:59:00Z", hours(1));
    assert!(h.alerts().is_empty(), "{:?}", h.alerts());
    // Back on the 29th (KST): inactivity counts from the end of the away
    // period (00:00 KST = 15:00Z), and the 29th's check-in is expected again.
    h.run_until("2026-11-28T22:59:00Z", mins(30));
    assert!(h.alerts().is_empty(), "{:?}", h.alerts());
    h.at("2026-11-28T23:00:00Z");
    assert_eq!(h.alerts_of("inactivity").len(), 1);
    h.run_until("2026-11-29T01:00:00Z", mins(30));
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    assert_eq!(
        h.alerts_of("missed_checkin")[0]
            .local_date
            .unwrap()
            .to_string(),
        "2026-11-29"
    );
}

#[test]
fn unacknowledged_alerts_escalate_and_repeat_until_acknowledged() {
    let mut h = Harness::new(SEOUL, "2026-11-26T12:00:00Z", quiet_devices());
    h.at("2026-11-27T01:00:00Z");
    let id = h.alerts_of("missed_checkin")[0].id;
    h.at("2026-11-27T01:14:59Z");
    assert_eq!(h.db.alert(id).unwrap().unwrap().escalations, 0);
    h.at("2026-11-27T01:15:00Z");
    let escalated: Vec<_> = h
        .outbox("mqtt")
        .into_iter()
        .filter(|(_, p)| p["event"] == "escalated" && p["alert"]["id"] == id)
        .collect();
    let topics: Vec<_> = escalated.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "ondol/v1/caseworkers/sup-1/alerts",
            "ondol/v1/caseworkers/cw-1/alerts"
        ]
    );
    h.at("2026-11-27T01:30:00Z");
    assert_eq!(h.db.alert(id).unwrap().unwrap().escalations, 2);
    h.db.acknowledge_alert(id, "cw-1", h.now() + mins(1), Some("called her"))
        .unwrap()
        .unwrap();
    h.run_until("2026-11-27T04:00:00Z", mins(5));
    let alert = h.db.alert(id).unwrap().unwrap();
    assert_eq!(alert.escalations, 2, "acknowledging stops escalation");
    assert_eq!(alert.status, AlertStatus::Acknowledged);
    let transitions = h.db.alert_transitions(id).unwrap();
    let ack = transitions
        .iter()
        .find(|t| t.event == "acknowledged")
        .unwrap();
    assert_eq!(ack.actor, "cw-1");
    // Resolving records the outcome and the times in the day rollup.
    h.db.resolve_alert(id, "cw-1", Outcome::ResidentOk, h.now(), None)
        .unwrap()
        .unwrap();
    let alert = h.db.alert(id).unwrap().unwrap();
    assert_eq!(alert.outcome, Some(Outcome::ResidentOk));
}

#[test]
fn restart_in_the_middle_of_a_window_neither_loses_nor_duplicates() {
    let mut grace = quiet_devices();
    grace.grace = Duration::from_secs(30 * 60);
    // 05:00 KST on the 27th: today's window is the first one.
    let mut h = Harness::new(SEOUL, "2026-11-26T20:00:00Z", grace);
    h.at("2026-11-26T22:00:00Z"); // 07:00 KST, inside the window
    h.start(); // restart: 30 min of grace, the deadline is 3 h away
    h.at("2026-11-27T01:00:00Z");
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    let notifications = h.outbox("mqtt").len();
    // Restart after the alert: no second alert, no second notification,
    // and the escalation timer survives.
    h.clock.set(ts("2026-11-27T01:05:00Z"));
    h.start();
    h.at("2026-11-27T01:10:00Z");
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
    assert_eq!(h.outbox("mqtt").len(), notifications);
    h.at("2026-11-27T01:15:00Z");
    assert_eq!(h.alerts_of("missed_checkin")[0].escalations, 1);
}

#[test]
fn a_deadline_passed_while_down_is_held_then_evaluated_with_late_data() {
    let mut grace = quiet_devices();
    grace.grace = Duration::from_secs(30 * 60);
    let mut h = Harness::new(SEOUL, "2026-11-26T20:00:00Z", grace);
    h.at("2026-11-26T21:00:00Z");
    h.engine = None; // down from 06:00 to 11:00 KST
    h.clock.set(ts("2026-11-27T02:00:00Z"));
    h.start();
    h.engine().tick().unwrap();
    assert!(h.alerts().is_empty(), "held after the restart");
    // The device's stored check-in from 09:30 KST arrives late.
    h.clock.set(ts("2026-11-27T02:10:00Z"));
    h.checkin("gw-1", ts("2026-11-27T00:30:00Z"));
    h.at("2026-11-27T02:30:00Z");
    assert!(h.alerts_of("missed_checkin").is_empty());

    // The same without the late check-in: raised once the grace ends.
    let mut grace = quiet_devices();
    grace.grace = Duration::from_secs(30 * 60);
    let mut h = Harness::new(SEOUL, "2026-11-26T20:00:00Z", grace);
    h.at("2026-11-26T21:00:00Z");
    h.engine = None;
    h.clock.set(ts("2026-11-27T02:00:00Z"));
    h.start();
    h.at("2026-11-27T02:29:59Z");
    assert!(h.alerts().is_empty());
    h.at("2026-11-27T02:30:00Z");
    assert_eq!(h.alerts_of("missed_checkin").len(), 1);
}

#[test]
fn a_broker_outage_gives_one_system_alert_and_no_resident_alerts() {
    let config = AlertingConfig {
        grace: Duration::from_secs(30 * 60),
        device_silent_after: Duration::from_secs(3 * 3600),
        ..AlertingConfig::default()
    };
    let mut h = Harness::new(SEOUL, "2026-11-26T20:00:00Z", config);
    h.motion("gw-1", h.now());
    h.run_until("2026-11-26T23:00:00Z", mins(10)); // grace over, 08:00 KST
    h.motion("gw-1", h.now());
    h.engine().set_outage(OutageSource::Broker, true).unwrap();
    h.engine().set_outage(OutageSource::Broker, true).unwrap();
    // The deadline and the device's silence pass during the outage.
    h.run_until("2026-11-27T02:00:00Z", mins(5));
    h.engine().set_outage(OutageSource::Broker, false).unwrap();
    // Late data: the check-in the device kept while it could not publish.
    h.clock.advance(mins(5));
    h.checkin("gw-1", ts("2026-11-27T00:00:00Z"));
    h.run_until("2026-11-27T03:00:00Z", mins(5));
    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].cause.to_string(), "broker_unreachable");
    assert_eq!(
        system[0].status,
        AlertStatus::Resolved,
        "closed when the hold ended"
    );
    let others: Vec<_> = h
        .alerts()
        .into_iter()
        .filter(|a| a.rule.as_str() != "system_outage")
        .collect();
    assert!(others.is_empty(), "{others:?}");
    // One page, to supervisors only, and the news that it is over.
    let sent = h.outbox("mqtt");
    let events: Vec<(&str, &str)> = sent
        .iter()
        .map(|(topic, event)| (topic.as_str(), event["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("ondol/v1/system/alerts", "opened"),
            ("ondol/v1/system/alerts", "resolved")
        ]
    );
}

#[test]
fn two_hundred_residents_going_silent_together_is_one_system_alert() {
    let mut roster =
        String::from("[[staff]]\nid = \"cw-1\"\nname = \"Park\"\nrole = \"caseworker\"\n");
    for i in 0..200 {
        roster.push_str(&format!(
            "[[residents]]\nid = \"r-{i}\"\nname = \"R\"\ntimezone = \"Asia/Seoul\"\nregion = \"g\"\nenrolled_from = \"2026-01-01\"\ncaseworker = \"cw-1\"\n\
             [[devices]]\nid = \"gw-{i}\"\nresident = \"r-{i}\"\nkind = \"gateway\"\n"
        ));
    }
    // 15:00 KST: the next check-in deadline is tomorrow 10:00.
    let mut h = Harness::new(&roster, "2026-11-27T06:00:00Z", config());
    for i in 0..200 {
        // Spread over two minutes, as a fleet reports.
        h.clock
            .set(ts("2026-11-27T06:00:00Z") + jiff::SignedDuration::from_millis(i * 600));
        h.motion(&format!("gw-{i}"), h.now());
    }
    // The whole village loses its connection: every device goes silent.
    h.run_until("2026-11-27T16:00:00Z", mins(1));
    let system = h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].cause.to_string(), "mass_silence");
    assert_eq!(
        h.alerts().len(),
        1,
        "no device or resident alerts: {:?}",
        h.alerts().iter().map(|a| a.rule).collect::<Vec<_>>()
    );
}

#[test]
fn vitals_out_of_band_alert_after_n_readings_in_a_row() {
    use ondol_alerting::config::VitalBand;
    let mut config = quiet_devices();
    config.vital_bands = vec![
        VitalBand {
            resident: None,
            reading_type: "heart_rate".into(),
            min: Some(40.0),
            max: Some(120.0),
            consecutive: 3,
        },
        // This resident's own band wins over everyone's.
        VitalBand {
            resident: Some("r-1".into()),
            reading_type: "heart_rate".into(),
            min: Some(45.0),
            max: Some(110.0),
            consecutive: 2,
        },
    ];
    let mut h = Harness::new(SEOUL, "2026-11-27T00:00:00Z", config);
    let hr = |h: &mut Harness, bpm: f64| {
        h.clock.advance(mins(1));
        h.reading(
            "gw-1",
            h.now(),
            ReadingValue::Number(bpm),
            ReadingType::HeartRate,
        );
    };
    hr(&mut h, 115.0);
    hr(&mut h, 80.0); // in band: the run starts again
    hr(&mut h, 115.0);
    assert!(h.alerts_of("vital_out_of_band").is_empty());
    hr(&mut h, 118.0);
    let alerts = h.alerts_of("vital_out_of_band");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].cause.to_string(), "heart_rate_high");
    assert_eq!(alerts[0].severity, Severity::Alarm);
    // Back in band before anyone acknowledged.
    hr(&mut h, 72.0);
    assert_eq!(
        h.alerts_of("vital_out_of_band")[0].outcome,
        Some(Outcome::ClearedByResident)
    );
}
