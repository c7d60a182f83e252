//! `ondol device add|rotate-secret|revoke`: device identities in the store.
//!
//! Each command works on the store named by the configuration, also while
//! `ondol run` is running: the server re-reads credentials every
//! `mqtt.access_reload_interval`, so a new secret or a revocation takes
//! effect on the device's next connection attempt (and a revoked device is
//! disconnected on its next packet) without a restart.
//!
//! A new secret goes to standard output, alone on one line, exactly once;
//! it is never logged and never stored (only its Argon2id hash).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ondol_model::roster::DeviceKind;
use ondol_model::{DeviceId, ResidentId};
use ondol_store::{AddDevice, Store};

use crate::config::Config;
use crate::credentials::{DeviceSecret, SecretOrigin, hash_secret};

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device, bind it to a resident from now on and print its
    /// new secret (once).
    Add(AddArgs),
    /// Issue a new secret (printed once). The old one stops working at once
    /// and a connection made with it is closed; a revoked device is
    /// reinstated.
    RotateSecret(IdArgs),
    /// Revoke a device: it is refused from its next connection attempt and
    /// disconnected if it is connected. `rotate-secret` reinstates it.
    Revoke(IdArgs),
}

impl DeviceCommand {
    pub fn config_file(&self) -> Option<&std::path::Path> {
        match self {
            DeviceCommand::Add(a) => a.config.as_deref(),
            DeviceCommand::RotateSecret(a) | DeviceCommand::Revoke(a) => a.config.as_deref(),
        }
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The device id (also its MQTT client id and username).
    #[arg(long)]
    id: String,
    /// The resident it watches over.
    #[arg(long)]
    resident: String,
    /// gateway, wearable, button or sensor.
    #[arg(long)]
    kind: String,
    /// Configuration file (for storage.data_dir).
    #[arg(long, short, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The device id.
    #[arg(long)]
    id: String,
    /// Configuration file (for storage.data_dir).
    #[arg(long, short, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

/// Runs a device command; errors are printed on standard error.
pub fn run(command: DeviceCommand, config: &Config) -> ExitCode {
    match execute(command, config) {
        Ok(Some(secret)) => {
            print_secret(&secret);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_secret(secret: &DeviceSecret) {
    println!("{}", secret.expose());
}

fn execute(command: DeviceCommand, config: &Config) -> anyhow::Result<Option<DeviceSecret>> {
    let database = config.storage.database_path();
    let open = || {
        Store::open(&database)
            .with_context(|| format!("cannot open the store at {}", database.display()))
    };
    let now = jiff::Timestamp::now();
    match command {
        DeviceCommand::Add(args) => {
            let id = device_id(&args.id)?;
            let resident = ResidentId::new(args.resident.as_str())
                .with_context(|| format!("--resident {:?} is not a valid id", args.resident))?;
            let kind = DeviceKind::parse(&args.kind).with_context(|| {
                format!(
                    "--kind {:?} is not one of gateway, wearable, button, sensor",
                    args.kind
                )
            })?;
            let mut store = open()?;
            let secret = DeviceSecret::generate();
            let hash = hash_secret(secret.expose(), SecretOrigin::Generated)?;
            match store
                .add_device(&id, kind, &resident, now, &hash)
                .context("cannot register the device")?
            {
                AddDevice::Added => {
                    eprintln!(
                        "device {id} added and bound to resident {resident}; its secret follows, shown only this once: configure the device with it now"
                    );
                    Ok(Some(secret))
                }
                AddDevice::AlreadyExists => Err(anyhow::anyhow!(
                    "device {id} already exists; use `ondol device rotate-secret --id {id}` for a new secret"
                )),
                AddDevice::UnknownResident => Err(anyhow::anyhow!(
                    "resident {resident} is not in the store; add it to the roster first"
                )),
            }
        }
        DeviceCommand::RotateSecret(args) => {
            let id = device_id(&args.id)?;
            let mut store = open()?;
            let secret = DeviceSecret::generate();
            let hash = hash_secret(secret.expose(), SecretOrigin::Generated)?;
            if !store
                .set_device_credential(&id, &hash, now)
                .context("cannot store the new secret")?
            {
                anyhow::bail!("no device {id} in the store");
            }
            eprintln!(
                "device {id} has a new secret; the old one no longer works. The new secret follows, shown only this once:"
            );
            Ok(Some(secret))
        }
        DeviceCommand::Revoke(args) => {
            let id = device_id(&args.id)?;
            let mut store = open()?;
            if !store
                .revoke_device(&id, now)
                .context("cannot revoke the device")?
            {
                anyhow::bail!("no device {id} in the store");
            }
            eprintln!(
                "device {id} revoked: it is refused from its next connection attempt and disconnected if connected (within mqtt.access_reload_interval)"
            );
            Ok(None)
        }
    }
}

fn device_id(raw: &str) -> anyhow::Result<DeviceId> {
    DeviceId::new(raw).with_context(|| format!("--id {raw:?} is not a valid device id"))
}
