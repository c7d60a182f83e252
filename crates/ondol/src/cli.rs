//! The command line. Every command validates the whole configuration before
//! it starts anything.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::simulate::SimulateArgs;
use crate::{device_cli, logging, roster, server, simulate};

/// Ondol: remote health and safety checks for seniors who live alone.
///
/// Devices publish readings over MQTT; Ondol validates them, keeps them on
/// disk and answers each message with a receipt.
#[derive(Debug, Parser)]
#[command(name = "ondol", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything: the embedded MQTT broker, ingest and the store.
    Run(RunArgs),
    /// Run a simulated fleet of homes against an MQTT broker.
    Simulate(SimulateArgs),
    /// Check or print the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Add devices, rotate their secrets, revoke them.
    #[command(subcommand)]
    Device(device_cli::DeviceCommand),
    /// Work alerts: list, acknowledge, resolve.
    Alerts(crate::alerts_cli::AlertsArgs),
    /// Evaluator reports under pseudonyms (DESIGN §6).
    #[command(subcommand)]
    Report(crate::report_cli::ReportCommand),
    /// Verify or export the audit log of resident data reads and changes.
    #[command(subcommand)]
    Audit(crate::audit_cli::AuditCommand),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Configuration file layered over the built-in defaults
    /// (environment variables ONDOL_<SECTION>__<KEY> override both).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Also run a simulated fleet against the embedded broker (and use the
    /// built-in demo roster if the configured roster file is missing).
    #[arg(long)]
    demo: bool,
    /// The parts this process runs, comma-separated: `broker` (the embedded
    /// MQTT broker), `ingest` (a worker; reading from the external broker
    /// named by ingest.broker unless `broker` runs here too), `alerting`
    /// (one per store), `api` (the HTTP API and dashboard), or `all`.
    /// Processes of different roles share one store; every role serves
    /// /healthz, /readyz and /metrics on http.listen.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    role: Vec<server::Role>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and the roster file; print every problem
    /// and exit non-zero if there is any.
    Check(ConfigArgs),
    /// Print the effective configuration (defaults, file, environment) with
    /// secrets redacted.
    Print(ConfigArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let Some(config) = load(&args.config) else {
                return ExitCode::from(2);
            };
            logging::init(&config.log);
            run_async(|shutdown| {
                server::run(
                    config,
                    server::RunOptions {
                        demo: args.demo,
                        roles: server::Roles::of(&args.role),
                    },
                    shutdown,
                )
            })
        }
        Command::Simulate(SimulateArgs {
            action: Some(crate::simulate::SimulateAction::Backfill(args)),
            ..
        }) => crate::backfill::main(args),
        Command::Simulate(args) => {
            let Some(config) = load(&args.config_args()) else {
                return ExitCode::from(2);
            };
            logging::init(&config.log);
            run_async(|shutdown| simulate::run(config, args, shutdown))
        }
        Command::Device(command) => {
            let args = ConfigArgs {
                config: command.config_file().map(Into::into),
            };
            let Some(config) = load(&args) else {
                return ExitCode::from(2);
            };
            device_cli::run(command, &config)
        }
        Command::Config(ConfigCommand::Check(args)) => check(&args),
        Command::Alerts(args) => crate::alerts_cli::main(args),
        Command::Report(command) => crate::report_cli::main(command),
        Command::Audit(command) => crate::audit_cli::main(command),
        Command::Config(ConfigCommand::Print(args)) => {
            let Some(config) = load(&args) else {
                return ExitCode::from(2);
            };
            match toml::to_string_pretty(&config::redacted(&config.merged)) {
                Ok(text) => {
                    print_out(&text);
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: cannot print the configuration: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

impl SimulateArgs {
    fn config_args(&self) -> ConfigArgs {
        ConfigArgs {
            config: self.config.clone(),
        }
    }
}

fn load(args: &ConfigArgs) -> Option<Config> {
    match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(config) => Some(config),
        Err(errors) => {
            eprint!("error: {errors}");
            None
        }
    }
}

/// `ondol config check`: the configuration, then the roster it names.
fn check(args: &ConfigArgs) -> ExitCode {
    // The roster is checked even when the config has problems, so one run
    // shows everything.
    let (failed, roster_path) = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(config) => (false, Some(config.registry.file)),
        Err(errors) => {
            eprint!("error: {errors}");
            (true, errors.registry_file)
        }
    };
    let mut failed = failed;
    let Some(roster_path) = roster_path else {
        eprintln!("error: the roster was not checked because registry.file is invalid");
        return ExitCode::from(2);
    };
    match roster::read(&roster_path) {
        Ok(roster) => {
            if !failed {
                print_out(&format!(
                    "configuration ok; roster {} ok: {} residents, {} devices, {} staff\n",
                    roster_path.display(),
                    roster.residents.len(),
                    roster.devices.len(),
                    roster.staff.len()
                ));
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    print!("{text}");
}

/// Runs an async command on a multi-threaded runtime, cancelling it on
/// Ctrl-C or SIGTERM.
fn run_async<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        command(shutdown).await
    });
    // Blocking tasks (the broker link reader) notice cancellation on their own.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "stopped with an error");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Loads the configuration and opens the store an `ondol run` created, for
/// the commands that work on it (alerts, audit). Problems are printed; the
/// error is the exit code to end with.
pub(crate) fn open_existing_store(
    config_file: Option<&std::path::Path>,
) -> Result<(Config, ondol_store::Store), ExitCode> {
    let config = match Config::load(config_file, std::env::vars()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("error: {errors}");
            return Err(ExitCode::from(2));
        }
    };
    let database = config.storage.database_path();
    if !database.exists() {
        eprintln!(
            "error: no store at {} (storage.data_dir); has `ondol run` been started?",
            database.display()
        );
        return Err(ExitCode::from(2));
    }
    match ondol_store::Store::open(&database) {
        Ok(store) => Ok((config, store)),
        Err(error) => {
            eprintln!("error: cannot open the store: {error}");
            Err(ExitCode::from(2))
        }
    }
}
