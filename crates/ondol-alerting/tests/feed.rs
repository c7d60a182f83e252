//! Alerting learns what was committed from the store's alerting feed,
//! whoever committed it: exactly once across restarts, and what was
//! committed while alerting was down is applied when it is back. The
//! harness commits through its own connection, as an ingest worker in
//! another process would.

#![allow(clippy::unwrap_used)]

mod support;

use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use support::{Harness, SEOUL, config, ts};

const START: &str = "2026-11-27T03:00:00Z";

fn help(h: &mut Harness) -> bool {
    let at = h.now();
    h.commit(
        "gw-1",
        at,
        ReadingValue::Checkin(CheckinValue::Help),
        ReadingType::Checkin,
    )
}

#[test]
fn a_help_press_committed_elsewhere_is_raised_once_even_if_alerting_restarts_before_finishing_it() {
    let mut h = Harness::new(SEOUL, START, config());
    assert!(help(&mut h));
    // Applied, then alerting dies before removing the row from the feed.
    let take = h.db.take_feed(usize::MAX).unwrap();
    assert_eq!(take.len(), 1);
    for row in &take.rows {
        h.engine().on_readings(&row.facts.readings).unwrap();
    }
    assert_eq!(h.alerts_of("help_request").len(), 1);
    let told = h.db.notifications(1000).unwrap().len();
    h.start();
    h.follow();
    // The row was applied again: the same episode, nothing new, nobody
    // told again.
    assert_eq!(h.alerts_of("help_request").len(), 1);
    assert_eq!(h.db.notifications(1000).unwrap().len(), told);
    assert_eq!(h.db.feed_backlog().unwrap(), 0);
}

#[test]
fn what_was_committed_while_alerting_was_down_is_applied_when_it_is_back() {
    let mut h = Harness::new(SEOUL, START, config());
    h.stop();
    h.clock.set(ts("2026-11-27T03:05:00Z"));
    assert!(help(&mut h));
    h.start();
    assert!(
        h.alerts_of("help_request").is_empty(),
        "the start rebuilds state; the feed is applied by the first turn"
    );
    h.follow();
    let raised = h.alerts_of("help_request");
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].opened_at, ts("2026-11-27T03:05:00Z"));
}

#[test]
fn a_resend_is_not_told_twice() {
    let mut h = Harness::new(SEOUL, START, config());
    assert!(help(&mut h));
    h.follow();
    let told = h.db.notifications(1000).unwrap().len();
    assert!(told > 0);
    // The device resends the press it already got a receipt for.
    let at = ts(START);
    assert!(!h.commit(
        "gw-1",
        at,
        ReadingValue::Checkin(CheckinValue::Help),
        ReadingType::Checkin,
    ));
    h.follow();
    assert_eq!(h.alerts_of("help_request").len(), 1);
    assert_eq!(
        h.db.notifications(1000).unwrap().len(),
        told,
        "nobody was told of the resend"
    );
}

#[test]
fn a_new_residents_first_help_press_is_raised_before_the_roster_news_arrives() {
    let mut h = Harness::new(SEOUL, START, config());
    // An admin enrols a resident with a button; ingest knows at once,
    // alerting has not heard yet.
    let enrolled = format!(
        "{SEOUL}\n[[residents]]\nid = \"r-9\"\nname = \"New\"\ntimezone = \"Asia/Seoul\"\nregion = \"gangjin\"\nenrolled_from = \"2026-01-01\"\ncaseworker = \"cw-1\"\n\n[[devices]]\nid = \"bt-9\"\nresident = \"r-9\"\nkind = \"button\"\n"
    );
    let roster = ondol_store::parse_roster(&enrolled, "enrolled").unwrap();
    h.db.import_roster(&roster).unwrap();
    h.roster = roster;
    let at = h.now();
    assert!(h.commit(
        "bt-9",
        at,
        ReadingValue::Checkin(CheckinValue::Help),
        ReadingType::Checkin,
    ));
    h.follow();
    let raised = h.alerts_of("help_request");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].subject.to_string(), "resident:r-9");
}
