//! The operator's commands: `ondol config check` and `ondol config print`.

use std::process::Command;

use crate::support::binary;

#[test]
fn config_check_prints_every_problem_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("roster.toml");
    std::fs::write(
        &roster,
        r#"
[[residents]]
id = "r-1"
name = "A"
timezone = "Asia/Seol"
region = "x"
enrolled_from = "2026-01-01"

[[devices]]
id = "gw/1"
resident = "r-404"
kind = "toaster"
"#,
    )
    .unwrap();
    let config = dir.path().join("ondol.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nlisten = \"nowhere\"\n[ingest]\nbatch_max_readings = 0\nbatch_max_delay = \"soon\"\n[registry]\nfile = {roster:?}\n"
        ),
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let config_name = config.display().to_string();
    let roster_name = roster.display().to_string();
    for expected in [
        format!("{config_name}: key \"mqtt.listen\""),
        format!("{config_name}: key \"ingest.batch_max_delay\""),
        format!("{roster_name}:5: residents[0] (id \"r-1\"): key \"timezone\""),
        format!("{roster_name}:10: devices[0] (id \"gw/1\"): key \"id\""),
        format!("{roster_name}:11: devices[0] (id \"gw/1\"): key \"resident\""),
        format!("{roster_name}:12: devices[0] (id \"gw/1\"): key \"kind\""),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn config_check_accepts_the_shipped_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(binary())
        .args(["config", "check"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration ok"));
}

#[test]
fn config_print_shows_the_effective_configuration() {
    let output = Command::new(binary())
        .args(["config", "print"])
        .env("ONDOL_MQTT__LISTEN", "127.0.0.1:2883")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("listen = \"127.0.0.1:2883\""), "{stdout}");
    assert!(stdout.contains("[ingest]"));
}

#[test]
fn the_production_example_turns_plain_tcp_off_and_needs_its_certificate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The example's certificate paths do not exist here: check says so.
    let output = Command::new(binary())
        .args(["config", "check", "--config", "config/production.toml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("key \"mqtt.tls.cert_file\""), "{stderr}");
    let text = std::fs::read_to_string(root.join("config/production.toml")).unwrap();
    assert!(text.contains("tcp_enabled = false"));
}

#[test]
fn ondol_run_refuses_a_guessable_staff_token_and_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("roster.toml");
    std::fs::write(
        &roster,
        "[[staff]]\nid = \"cw-1\"\nname = \"A\"\nrole = \"caseworker\"\ntoken_env = \"ONDOL_TOKEN_E2E_SHORT\"\n",
    )
    .unwrap();
    let config = dir.path().join("ondol.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[registry]\nfile = {roster:?}\n",
            crate::support::free_port(),
            dir.path().join("data"),
        ),
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("ONDOL_TOKEN_E2E_SHORT", "letmein")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("staff cw-1: the bearer token in ONDOL_TOKEN_E2E_SHORT has 7 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("letmein"), "the token is never shown");
}

/// Logs sent to a file (a journal, a log collector) are plain lines with
/// structured fields: no terminal colour codes, no Rust debug dumps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_escape_codes_or_debug_dumps() {
    let mut server = crate::support::TestServer::start().await;
    assert!(server.terminate().await.success());
    let log = server.log();
    assert!(log.contains("roster imported"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in the log file:\n{log}"
    );
    for dump in ["ImportSummary {", "EngineStats {", "RosterChanges {"] {
        assert!(
            !log.contains(dump),
            "a debug dump ({dump}) in the log:\n{log}"
        );
    }
}
