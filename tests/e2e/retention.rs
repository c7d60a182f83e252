//! `[retention]` in a running server: rejections past their retention are
//! deleted by the scheduled pass, logged, and the readings and their
//! rollups are kept.

use serde_json::json;

use crate::support::{TestServer, eventually, ms_ago, ondol_cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_past_their_retention_are_deleted_and_logged_readings_stay() {
    let server = TestServer::start_with(
        "[retention]\nrejections_max_age = \"2s\"\ninterval = \"1s\"\n",
        &["run"],
    )
    .await;
    assert!(
        server
            .log()
            .contains("retention: deleting raw readings and rejections")
    );
    let (ok, printed, _) = ondol_cli(&server, &["config", "print"]);
    assert!(ok);
    assert!(printed.contains("[retention]"), "{printed}");
    assert!(printed.contains("readings_max_age = \"0s\""), "{printed}");
    assert!(printed.contains("rejections_max_age = \"2s\""), "{printed}");
    let mut device = server.device("gw-1").await;
    let receipt = device
        .send(json!({
            "msg_id": "ret-1",
            "readings": [
                {"type": "heart_rate", "value": 72, "ts": ms_ago(1)},
                {"type": "heart_rate", "value": 400, "ts": ms_ago(1)}
            ]
        }))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    assert_eq!(
        receipt["rejected"][0]["reason"], "out_of_range",
        "{receipt}"
    );
    eventually("the rejection is deleted once older than 2 s", || {
        (server.count("SELECT count(*) FROM rejections") == 0).then_some(())
    })
    .await;
    eventually("the deletion is logged", || {
        server
            .log()
            .contains("retention: deleted what is past its retention period")
            .then_some(())
    })
    .await;
    assert_eq!(server.count("SELECT count(*) FROM readings"), 1);
    assert_eq!(server.count("SELECT sum(readings) FROM resident_days"), 1);
}
