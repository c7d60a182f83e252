//! The `ondol` binary: the only composition root. It reads the config file,
//! environment and command line, and wires the crates together.
//!
//! - [`alerting`]: alerting's tasks and the bridge from ingest.
//! - [`alerts_cli`]: `ondol alerts list|ack|resolve`.
//! - [`audit_cli`]: `ondol audit verify|export`.
//! - [`cli`]: commands and their `--help`.
//! - [`config`]: layered configuration and its validation.
//! - [`http`]: the HTTP API's start-up and shutdown in `ondol run`.
//! - [`roster`]: loading the roster file into the store.
//! - [`server`]: `ondol run`: start-up and ordered shutdown.
//! - [`simulate`]: `ondol simulate` and the `--demo` fleet.
//! - [`backfill`]: `ondol simulate backfill`: synthetic history in the store.
//! - [`retention`]: deleting raw readings and rejections past their retention.
//! - [`logging`]: tracing setup.
//! - [`credentials`]: device secrets (Argon2id), the broker's access list
//!   and where staff tokens come from.
//! - [`demo`]: `ondol run --demo`: its history, live cues and sign-in.
//! - [`device_cli`]: `ondol device add|rotate-secret|revoke`.
//! - [`report_cli`]: `ondol report utilisation`.

pub mod alerting;
pub mod alerts_cli;
pub mod audit_cli;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod device_cli;
pub mod http;
pub mod logging;
pub mod report_cli;
pub mod retention;
pub mod roster;
pub mod server;
pub mod simulate;

/// Entry point of the binary (and of the end-to-end tests' copy of it).
pub fn main() -> std::process::ExitCode {
    cli::main()
}
