//! `ondol-bench`: drives real MQTT devices (QoS 1, receipts on) against a
//! real `ondol` it starts itself (or one already running) and reports
//! accepted readings per second, publish-to-receipt latency, the server's
//! CPU and peak memory, and how many readings were lost or stored twice.
//!
//! Modes run one after the other in the same invocation so their ratios are
//! fair on a noisy machine: the embedded broker, and Mosquitto as an
//! external broker in front of the same ingest (when installed).
//!
//! - [`server`]: the ondol (and Mosquitto) under test, and its /proc figures.
//! - [`load`]: the device fleet.
//! - [`report`]: the result of a run, as a table and as JSON.

mod load;
mod report;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::load::LoadSpec;
use crate::report::RunResult;
use crate::server::{BrokerMode, ServerUnderTest};

/// Benchmark Ondol end to end over real MQTT/TCP.
#[derive(Debug, Parser)]
#[command(name = "ondol-bench", version)]
struct Args {
    /// Concurrent device connections.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Target readings per second over all devices; 0 = as fast as receipts allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Readings per message.
    #[arg(long, default_value_t = 1)]
    readings_per_message: usize,
    /// Unreceipted messages a device may have in flight (flat-out mode).
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// Measured time per mode (after the warm-up).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before measuring starts.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Soak: sample the server's resident memory this often during the
    /// measured window (into the table and the JSON), e.g. `--soak 30s`.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    soak: Option<Duration>,
    /// Modes to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "embedded")]
    modes: Vec<BrokerMode>,
    /// The ondol binary to start (default: `ondol` next to this binary).
    #[arg(long)]
    ondol: Option<PathBuf>,
    /// Benchmark an already running Ondol at HOST:PORT instead of starting
    /// one (its roster must know the bench devices: see --write-roster).
    /// Server CPU, memory and the loss check are then not measured.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// Write the roster of the bench devices to FILE and exit.
    #[arg(long, value_name = "FILE")]
    write_roster: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-report.json")]
    json: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ondol_model::serde_duration::parse(s)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        args.readings_per_message > 0,
        "--readings-per-message must be at least 1"
    );
    if let Some(path) = &args.write_roster {
        std::fs::write(path, load::roster_toml(args.devices))
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let spec = LoadSpec {
        devices: args.devices,
        rate: args.rate,
        readings_per_message: args.readings_per_message,
        window: args.window.max(1),
        duration: args.duration,
        warmup: args.warmup,
        sample_every: args.soak.filter(|every| !every.is_zero()),
    };
    let mut results: Vec<RunResult> = Vec::new();
    for mode in &args.modes {
        eprintln!(
            "== {mode:?}: {} devices, {}",
            spec.devices,
            spec.describe_rate()
        );
        let result = runtime.block_on(run_mode(&args, &spec, *mode))?;
        eprintln!("{}", report::table(std::slice::from_ref(&result)));
        results.push(result);
    }
    print_out(&report::table(&results));
    std::fs::write(&args.json, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    eprintln!("JSON report written to {}", args.json.display());
    if results.iter().any(|r| r.lost > 0 || r.stored_twice > 0) {
        anyhow::bail!("readings were lost or stored twice");
    }
    Ok(())
}

async fn run_mode(args: &Args, spec: &LoadSpec, mode: BrokerMode) -> anyhow::Result<RunResult> {
    if let Some(target) = &args.target {
        let (host, port) = target
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
            .context("--target must be HOST:PORT")?;
        let outcome = load::run(&host, port, spec, None).await?;
        return Ok(RunResult::new(mode, spec, &outcome, None, None));
    }
    let ondol = match &args.ondol {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the bench binary")?
            .join("ondol"),
    };
    let mut server = ServerUnderTest::start(&ondol, mode, &load::roster_toml(spec.devices)).await?;
    let outcome = load::run("127.0.0.1", server.device_port(), spec, Some(&server)).await?;
    let usage = outcome.server_usage;
    // Alerting takes the last rows within its poll; then read its lag.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let lag = server.alerting_lag().await;
    let stored = server.stop_and_count_readings().await?;
    let mut result = RunResult::new(mode, spec, &outcome, usage, Some(stored));
    result.alerting_lag = lag;
    Ok(result)
}

#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    println!("{text}");
}
