//! A village-wide power cut ends: 5,000 devices, each with its own secret,
//! power up at the same instant holding readings they could not send, and
//! connect with the jittered exponential backoff devices should use (the
//! simulator's). All must be connected within 60 s and every reading they
//! held must end up stored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ondol::credentials::{DeviceSecret, SecretOrigin, hash_secret};
use ondol_sim::{DevicePassword, FleetProgress, SimConfig, SimHome};
use tokio_util::sync::CancellationToken;

use crate::support::{PATIENCE, start_secure};

const DEVICES: usize = 5_000;
const SEED: u64 = 7;

/// The first synthetic homes holding at least [`DEVICES`] devices, and how
/// many homes the roster must have.
fn homes() -> (Vec<SimHome>, usize) {
    let mut n = DEVICES / 2;
    loop {
        let homes = ondol_sim::synthetic_homes(n, SEED);
        let mut picked = Vec::new();
        let mut devices = 0;
        for home in homes {
            if devices >= DEVICES {
                break;
            }
            devices += home.devices.len();
            picked.push(home);
        }
        if devices >= DEVICES {
            return (picked, n);
        }
        n *= 2;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_devices_reconnect_after_a_power_cut() {
    // Both ends of 5,000 connections live on this machine: raise the soft
    // limit on open files as far as the hard limit allows (the server we
    // spawn inherits it), so plain `cargo test` works without `ulimit`.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    assert!(
        limit >= 3 * DEVICES as u64,
        "this test needs at least {} open files; the hard limit allows {limit} (raise it with `ulimit -Hn`)",
        3 * DEVICES
    );
    let (homes, roster_homes) = homes();
    let roster = ondol_sim::synthetic_roster_toml(roster_homes, SEED);
    let server = start_secure(&roster, "", "", &[]).await;

    // Provision every simulated device with its own secret, as `ondol
    // device rotate-secret` would, straight into the store (5,000 CLI runs
    // would only test process start-up). Hashing runs on both cores.
    let ids: Vec<String> = homes
        .iter()
        .flat_map(|h| h.devices.iter().map(|d| d.id.as_str().to_owned()))
        .collect();
    let secrets: Vec<(String, String, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .chunks(ids.len().div_ceil(2))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|id| {
                            let secret = DeviceSecret::generate();
                            let hash = hash_secret(secret.expose(), SecretOrigin::Generated)
                                .expect("hash");
                            (id.clone(), secret.expose().to_owned(), hash)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hashing thread"))
            .collect()
    });
    {
        let mut db = rusqlite::Connection::open(server.database_path()).expect("open store");
        db.busy_timeout(PATIENCE).expect("busy timeout");
        let tx = db.transaction().expect("transaction");
        for (id, _, hash) in &secrets {
            tx.execute(
                "UPDATE devices SET credential_hash = ?2 WHERE id = ?1",
                [id, hash],
            )
            .expect("store a hash");
        }
        tx.commit().expect("commit");
    }
    crate::support::eventually("the server to load the new credentials", || {
        server
            .log()
            .contains("device credentials changed; access list updated")
            .then_some(())
    })
    .await;

    let passwords: HashMap<_, _> = homes
        .iter()
        .flat_map(|h| h.devices.iter())
        .zip(&secrets)
        .map(|(device, (id, secret, _))| {
            assert_eq!(device.id.as_str(), id);
            (device.id.clone(), DevicePassword::new(secret.clone()))
        })
        .collect();
    let device_count = passwords.len() as u64;
    assert!(device_count >= DEVICES as u64);

    // Power returns everywhere at once: no connect ramp. Each device holds
    // the readings of the last 10 minutes (simulated time starts there and
    // catches up at 60×).
    let sim = SimConfig {
        speed: 60.0,
        start: jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10),
        seed: SEED,
        offline_share: 0.0,
        malformed_rate: 0.0,
        connect_ramp: Some(Duration::from_millis(1)),
        summary_interval: Duration::from_secs(5),
        device_passwords: passwords,
        ..SimConfig::new("127.0.0.1", server.mqtt_port, homes)
    };
    let progress = FleetProgress::default();
    let shutdown = CancellationToken::new();
    let fleet = tokio::spawn(ondol_sim::run_observed(
        sim,
        shutdown.clone(),
        progress.clone(),
    ));

    // The bound of the issue: everyone connected within 60 s.
    let started = Instant::now();
    let bound = Duration::from_secs(60);
    while progress.connected() < device_count {
        assert!(
            started.elapsed() < bound,
            "only {} of {device_count} devices connected within {bound:?}; {}",
            progress.connected(),
            progress.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nothing held is lost: every well-formed reading the fleet has sent is
    // stored (storage is idempotent, so the store never holds more).
    let db = server.db();
    let stored = || -> u64 {
        db.query_row("SELECT count(*) FROM readings", [], |row| {
            row.get::<_, i64>(0)
        })
        .expect("count readings") as u64
    };
    let deadline = Instant::now() + 3 * PATIENCE;
    loop {
        let sent = progress.snapshot().readings_sent;
        let now_stored = stored();
        if sent > 0 && now_stored >= sent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now_stored} of {sent} readings stored; {}",
            progress.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let report = fleet.await.expect("fleet task").expect("fleet ran");
    assert_eq!(report.dropped_readings, 0, "{report}");
    assert_eq!(report.rejected, 0, "{report}");
    assert_eq!(report.refused_messages, 0, "{report}");
    assert!(
        !server.log().contains("rate_limited"),
        "no backlog was refused as rate_limited"
    );
}
