//! `ondol simulate` and the fleet of `ondol run --demo`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use ondol_model::roster::Roster;
use ondol_sim::{Cue, SimConfig, SimHome};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SimulatorConfig};
use crate::roster;

/// Simulated homes publish readings like real devices (check-ins, motion,
/// vitals, going offline and resending), with their ids taken from the
/// roster so an Ondol with the same roster accepts them.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimulateArgs {
    /// `backfill`: write years of history straight into the store instead.
    #[command(subcommand)]
    pub action: Option<SimulateAction>,
    /// Configuration file (for the [simulator] defaults and registry.file).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The broker to publish to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// Homes to simulate (default: simulator.homes; 0 = every resident).
    #[arg(long)]
    pub homes: Option<usize>,
    /// Simulated time runs this many times faster until it reaches the present.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Use N synthetic homes (ids r-s000001…) instead of the roster file; the
    /// broker side must know them: see --write-roster.
    #[arg(long)]
    pub synthetic: bool,
    /// Write the roster of the synthetic homes to FILE and exit.
    #[arg(long, value_name = "FILE", requires = "synthetic")]
    pub write_roster: Option<PathBuf>,
    /// Share of messages that are garbage.
    #[arg(long)]
    pub malformed_rate: Option<f64>,
    /// Readings per message.
    #[arg(long)]
    pub readings_per_message: Option<usize>,
    /// Stop after this long (e.g. "10m"); default: until Ctrl-C.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<SignedDuration>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SimulateAction {
    /// Write realistic synthetic history (residents, readings, check-ins,
    /// alerts with their handling, away periods, satisfaction scores)
    /// straight into a new store, through the same code paths as ingest and
    /// alerting; for demos, tests and benchmarks of the evaluator reports.
    Backfill(crate::backfill::BackfillArgs),
}

/// `ondol simulate`.
pub async fn run(
    config: Config,
    args: SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sim_defaults = &config.simulator;
    let homes_wanted = args.homes.unwrap_or(sim_defaults.homes);
    if let Some(path) = &args.write_roster {
        let text = ondol_sim::synthetic_roster_toml(homes_wanted.max(1), sim_defaults.seed);
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(file = %path.display(), homes = homes_wanted.max(1), "synthetic roster written");
        return Ok(());
    }
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--broker {:?} is not HOST:PORT", args.broker))?;
    let (homes, passwords) = if args.synthetic {
        (
            ondol_sim::synthetic_homes(homes_wanted.max(1), sim_defaults.seed),
            Default::default(),
        )
    } else {
        let roster = roster::read(&config.registry.file)?;
        (
            pick_homes(&roster, homes_wanted)?,
            device_passwords(&roster, |var| std::env::var(var).ok()),
        )
    };
    let mut sim = sim_config(sim_defaults, homes, host, port);
    sim.device_passwords = passwords;
    if let Some(speed) = args.speed {
        anyhow::ensure!(speed >= 1.0, "--speed must be at least 1");
        sim.speed = speed;
    }
    if let Some(rate) = args.malformed_rate {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "--malformed-rate must be between 0 and 1"
        );
        sim.malformed_rate = rate;
    }
    if let Some(n) = args.readings_per_message {
        anyhow::ensure!(n >= 1, "--readings-per-message must be at least 1");
        sim.readings_per_message = n;
    }
    if let Some(limit) = args.duration {
        let limit =
            std::time::Duration::try_from(limit).context("--duration must not be negative")?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.cancel();
        });
    }
    tracing::info!(homes = sim.homes.len(), broker = %args.broker, speed = sim.speed, "simulating");
    let report = ondol_sim::run(sim, shutdown)
        .await
        .context("the simulation failed")?;
    tracing::info!(report = %report, "simulation finished");
    Ok(())
}

/// The homes `ondol run --demo` simulates: `simulator.homes` of the
/// roster's, without the device left to the README's reader.
pub fn demo_homes(defaults: &SimulatorConfig, roster: &Roster) -> anyhow::Result<Vec<SimHome>> {
    pick_homes(&crate::demo::simulated(roster), defaults.homes)
}

/// The fleet of `ondol run --demo`, against the embedded broker on `port`:
/// the homes live from now (their history is in the store already), with
/// the demo's cues on top.
pub fn demo_config(
    defaults: &SimulatorConfig,
    homes: Vec<SimHome>,
    cues: Vec<Cue>,
    port: u16,
) -> SimConfig {
    SimConfig {
        start: Timestamp::now(),
        cues,
        ..sim_config(defaults, homes, "127.0.0.1".into(), port)
    }
}

/// Device secrets from the variables the roster names (`secret_env`), so a
/// simulated fleet can authenticate like the real devices.
fn device_passwords(
    roster: &Roster,
    env: impl Fn(&str) -> Option<String>,
) -> std::collections::HashMap<ondol_model::DeviceId, ondol_sim::DevicePassword> {
    roster
        .devices
        .iter()
        .filter_map(|d| {
            let secret = env(d.secret_env.as_deref()?)?;
            Some((d.id.clone(), ondol_sim::DevicePassword::new(secret)))
        })
        .collect()
}

fn pick_homes(roster: &Roster, wanted: usize) -> anyhow::Result<Vec<SimHome>> {
    let mut homes = ondol_sim::homes_from_roster(roster);
    anyhow::ensure!(
        !homes.is_empty(),
        "the roster has no resident with a device to simulate"
    );
    if wanted > homes.len() {
        anyhow::bail!(
            "{wanted} homes asked for but the roster has {}; use --synthetic (with --write-roster for the server) for load tests",
            homes.len()
        );
    }
    if wanted > 0 {
        homes.truncate(wanted);
    }
    Ok(homes)
}

fn sim_config(
    defaults: &SimulatorConfig,
    homes: Vec<SimHome>,
    host: String,
    port: u16,
) -> SimConfig {
    let backlog = SignedDuration::try_from(defaults.backlog).unwrap_or(SignedDuration::ZERO);
    SimConfig {
        broker_host: host,
        broker_port: port,
        homes,
        speed: defaults.speed,
        start: Timestamp::now()
            .checked_sub(backlog)
            .unwrap_or_else(|_| Timestamp::now()),
        seed: defaults.seed,
        missed_checkin_share: defaults.missed_checkin_share,
        silent_share: defaults.silent_share,
        offline_share: defaults.offline_share,
        malformed_rate: defaults.malformed_rate,
        readings_per_message: defaults.readings_per_message,
        ..SimConfig::default()
    }
}
