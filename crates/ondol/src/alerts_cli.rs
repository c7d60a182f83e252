//! `ondol alerts list|ack|resolve`: alerts worked from the command line
//! (besides the HTTP API and the dashboard). The commands write to the same
//! store as a running `ondol run`; its escalation timer reads the alert
//! again before escalating, so an acknowledgement here stops escalation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use ondol_model::alert::Outcome;
use ondol_store::Store;
use ondol_store::alerts::{AlertRow, CommandRefused};

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Configuration file layered over the built-in defaults; names the
    /// store (storage.data_dir).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// List alerts: the open and acknowledged ones, or with --all the latest of every status.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Include resolved alerts.
        #[arg(long)]
        all: bool,
        /// At most this many (newest first) with --all.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an open alert: you are on it, escalation stops.
    Ack {
        #[command(flatten)]
        store: StoreArgs,
        /// The alert id (from `ondol alerts list`).
        id: i64,
        /// Your staff id.
        #[arg(long, value_name = "STAFF_ID")]
        by: String,
        /// A note kept with the transition.
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve an open or acknowledged alert with its outcome.
    Resolve {
        #[command(flatten)]
        store: StoreArgs,
        id: i64,
        /// resident_ok, needed_help, emergency_services, hospitalised,
        /// false_alarm_device, false_alarm_behaviour or no_contact.
        #[arg(long, value_parser = parse_outcome)]
        outcome: Outcome,
        #[arg(long, value_name = "STAFF_ID")]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
}

fn parse_outcome(s: &str) -> Result<Outcome, String> {
    Outcome::parse_staff_choice(s)
}

pub fn main(args: AlertsArgs) -> ExitCode {
    let store_args = match &args.command {
        AlertsCommand::List { store, .. }
        | AlertsCommand::Ack { store, .. }
        | AlertsCommand::Resolve { store, .. } => store,
    };
    let mut store = match crate::cli::open_existing_store(store_args.config.as_deref()) {
        Ok((_, store)) => store,
        Err(code) => return code,
    };
    match run(&mut store, args.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(store: &mut Store, command: AlertsCommand) -> Result<ExitCode, ondol_store::StoreError> {
    match command {
        AlertsCommand::List {
            all, limit, json, ..
        } => {
            let alerts = if all {
                store.recent_alerts(limit)?
            } else {
                store.unresolved_alerts()?
            };
            let mut out = String::new();
            if !json {
                out.push_str("ID     STATUS        RULE               SEVERITY  CAUSE         RESIDENT  DEVICE    OPENED                ESC\n");
            }
            for alert in &alerts {
                if json {
                    out.push_str(&alert_json(alert).to_string());
                } else {
                    out.push_str(&format!(
                        "{:<6} {:<13} {:<18} {:<9} {:<13} {:<9} {:<9} {:<21} {}",
                        alert.id,
                        alert.status.as_str(),
                        alert.rule.as_str(),
                        alert.severity.as_str(),
                        alert.cause,
                        alert.resident_id.as_ref().map_or("-", |r| r.as_str()),
                        alert.device_id.as_ref().map_or("-", |d| d.as_str()),
                        alert.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        alert.escalations
                    ));
                }
                out.push('\n');
            }
            print_out(&out);
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Ack { id, by, note, .. } => {
            if !store.staff_exists(&by)? {
                eprintln!("error: no staff member {by:?} on the roster (--by)");
                return Ok(ExitCode::from(2));
            }
            let result = store.acknowledge_alert(id, &by, Timestamp::now(), note.as_deref())?;
            Ok(report(id, result, "acknowledged", &by))
        }
        AlertsCommand::Resolve {
            id,
            outcome,
            by,
            note,
            ..
        } => {
            if !store.staff_exists(&by)? {
                eprintln!("error: no staff member {by:?} on the roster (--by)");
                return Ok(ExitCode::from(2));
            }
            let result =
                store.resolve_alert(id, &by, outcome, Timestamp::now(), note.as_deref())?;
            Ok(report(id, result, &format!("resolved ({outcome})"), &by))
        }
    }
}

fn report(id: i64, result: Result<AlertRow, CommandRefused>, done: &str, by: &str) -> ExitCode {
    match result {
        Ok(_) => {
            print_out(&format!("alert {id} {done} by {by}\n"));
            ExitCode::SUCCESS
        }
        Err(CommandRefused::NotFound) => {
            eprintln!("error: no alert {id}");
            ExitCode::FAILURE
        }
        Err(CommandRefused::Status(status)) => {
            eprintln!("error: alert {id} is {status}; nothing changed");
            ExitCode::FAILURE
        }
    }
}

fn alert_json(alert: &AlertRow) -> serde_json::Value {
    serde_json::json!({
        "id": alert.id,
        "rule": alert.rule.as_str(),
        "status": alert.status.as_str(),
        "severity": alert.severity.as_str(),
        "cause": alert.cause,
        "resident_id": alert.resident_id.as_ref().map(|r| r.as_str()),
        "device_id": alert.device_id.as_ref().map(|d| d.as_str()),
        "local_date": alert.local_date.map(|d| d.to_string()),
        "opened_at": alert.opened_at.to_string(),
        "acked_at": alert.acked_at.map(|t| t.to_string()),
        "acked_by": alert.acked_by,
        "resolved_at": alert.resolved_at.map(|t| t.to_string()),
        "resolved_by": alert.resolved_by,
        "outcome": alert.outcome.map(|o| o.as_str()),
        "escalations": alert.escalations,
    })
}

#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    print!("{text}");
}
