//! Roster changes reach a running alerting engine: a resident enrolled by
//! writing the store's roster tables (as the admin API does) is watched
//! without a restart, and their alert goes to the caseworker assigned.

use std::time::Duration;

use crate::support::{TestServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_enrolled_while_running_is_watched_at_once() {
    // Short inactivity tiers: a resident nothing is heard from alerts
    // seconds after being watched.
    let server = TestServer::start_with(
        "[alerting]\ngrace = \"0s\"\ninactivity_caution = \"3s\"\ninactivity_alarm = \"1h\"\ninactivity_danger = \"2h\"\ndevice_silent_after = \"1h\"\n",
        &["run"],
    )
    .await;
    let db = rusqlite::Connection::open(server.database_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO residents (id, name, timezone, region, enrolled_from, caseworker, checkin_start, checkin_end) \
         VALUES ('r-new', 'Test Resident New', 'Asia/Seoul', 'gangjin', '2026-01-01', 'cw-1', NULL, NULL)",
        [],
    )
    .unwrap();
    eventually("alerting to follow the change", || {
        server
            .log()
            .lines()
            .any(|l| {
                l.contains("alerting follows a roster change") && l.contains("residents_added=1")
            })
            .then_some(())
    })
    .await;
    let (cause, topic): (String, String) = eventually("the new resident's inactivity alert", || {
        server
            .db()
            .query_row(
                "SELECT a.cause, o.target FROM alerts a JOIN notification_outbox o ON o.alert_id = a.id \
                 WHERE a.resident_id = 'r-new' AND a.rule = 'inactivity' AND o.channel = 'mqtt'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok()
    })
    .await;
    // No device: Ondol cannot see the resident at all.
    assert_eq!(cause, "no_data");
    assert_eq!(topic, "ondol/v1/caseworkers/cw-1/alerts");
}
