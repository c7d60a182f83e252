//! `ondol audit verify|export` on a real store: an intact chain verifies and
//! exports with its head; an entry changed behind Ondol's back (triggers
//! dropped, row edited with plain SQL) makes `verify` fail and name it; a
//! log cut short fails against a head kept by an earlier review.

use std::path::Path;
use std::process::{Command, Output};

use ondol_store::Store;
use ondol_store::audit::AuditEntry;
use serde_json::Value;

use crate::support::binary;

fn audit(config: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ondol audit")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn audit_verify_and_export_catch_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ondol.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .expect("write config");
    let database = dir.path().join("ondol.db");
    {
        let mut store = Store::open(&database).expect("open store");
        for (at, actor, residents) in [
            ("2026-10-31T23:59:59Z", "cw-01", &["r-0001"][..]),
            ("2026-11-01T00:00:00Z", "cw-01", &["r-0001", "r-0002"][..]),
            ("2026-11-30T23:00:00Z", "sv-01", &["r-0003"][..]),
            ("2026-12-01T00:00:00Z", "cw-02", &[][..]),
        ] {
            store
                .append_audit(&AuditEntry {
                    at: at.parse().expect("instant"),
                    actor,
                    role: "caseworker",
                    action: "GET /api/v1/residents/{id}",
                    residents,
                    source: "192.0.2.1:40000",
                    status: 200,
                })
                .expect("append");
        }
    }

    let verified = audit(&config, &["verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let stdout = text(&verified.stdout);
    assert!(stdout.contains("intact: 4 entries"), "{stdout}");
    let head = stdout.trim().rsplit(' ').next().expect("head").to_owned();
    assert!(head.starts_with("4:"), "{head}");

    let export = audit(
        &config,
        &["export", "--from", "2026-11-01", "--to", "2026-11-30"],
    );
    assert!(export.status.success(), "{}", text(&export.stderr));
    let lines: Vec<Value> = text(&export.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "two entries of November and the trailer");
    assert_eq!(lines[0]["seq"], 2);
    assert_eq!(
        lines[0]["residents"],
        serde_json::json!(["r-0001", "r-0002"])
    );
    assert_eq!(lines[1]["actor"], "sv-01");
    assert_eq!(lines[2]["export"]["entries"], 2);
    assert_eq!(lines[2]["export"]["chain_intact"], true);
    assert_eq!(
        format!(
            "{}:{}",
            lines[2]["export"]["head_seq"],
            lines[2]["export"]["head_hash"].as_str().expect("hash")
        ),
        head
    );

    // Someone hides that sv-01 looked at r-0003.
    rusqlite::Connection::open(&database)
        .expect("open the store")
        .execute_batch(
            "DROP TRIGGER audit_log_no_update; \
             UPDATE audit_log SET residents = '[]' WHERE seq = 3;",
        )
        .expect("tamper");
    let broken = audit(&config, &["verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = text(&broken.stderr);
    assert!(stderr.contains("BROKEN at entry #3"), "{stderr}");

    // Or cuts the log short, after the review kept head 4.
    rusqlite::Connection::open(&database)
        .expect("open the store")
        .execute_batch(
            "UPDATE audit_log SET residents = '[\"r-0003\"]' WHERE seq = 3; \
             DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 4;",
        )
        .expect("cut");
    let plain = audit(&config, &["verify"]);
    assert!(plain.status.success(), "a cut chain is still a chain");
    let anchored = audit(&config, &["verify", "--expect-head", &head]);
    assert_eq!(anchored.status.code(), Some(1));
    assert!(
        text(&anchored.stderr).contains("cut short"),
        "{}",
        text(&anchored.stderr)
    );
}
