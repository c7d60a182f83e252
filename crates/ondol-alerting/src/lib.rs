//! Alerting (DESIGN §4): every enrolled resident watched from the roster,
//! missed check-ins, inactivity, help requests and silent devices reaching
//! the right caseworker, our own outages reaching only supervisors.
//!
//! ```text
//! ingest ──(binary bridges Committed)──▶ Input ──▶ Engine ──▶ store: alerts,
//! conditions, broker probe ─────────────▶        (timers)     transitions,
//! roster changes ───────────────────────▶
//!                                                              outbox ──▶ Delivery ──▶ MQTT, webhook
//! ```
//!
//! - [`config`]: the `[alerting]` section.
//! - [`engine`]: the rules, the deadline set, holding and escalation.
//! - [`schedule`]: local days, check-in windows, enrolment and away periods
//!   in each resident's time zone (DST-correct).
//! - [`notification`]: the alert event JSON and who receives it.
//! - [`delivery`]: the outbox delivered over MQTT and a signed webhook.
//!
//! Alerting never depends on ingest: the binary turns what ingest committed
//! into [`Input`]s. Time comes from an injected [`Clock`], so every rule is
//! tested with a manual clock.

pub mod config;
pub mod delivery;
pub mod engine;
mod error;
pub mod notification;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use ondol_model::Clock;
use ondol_store::{NewReading, StatusUpdate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::AlertingConfig;
pub use delivery::{Delivery, ExternalBroker, MqttOut, Webhook};
pub use engine::{Engine, EngineStats, OutageSource, RosterChanges};
pub use error::AlertingError;

/// What alerting is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// Readings ingest stored for the first time, and device statuses.
    Committed {
        readings: Vec<NewReading>,
        statuses: Vec<StatusUpdate>,
    },
    /// One of our own parts stopped or started answering.
    Outage { source: OutageSource, down: bool },
    /// The roster as it is now in the store (it changed while running).
    Roster(Arc<ondol_model::roster::Roster>),
}

/// The longest sleep between ticks (deadlines are re-read after it).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs the engine: applies inputs as they come and fires deadlines when
/// they are due. Returns when `inputs` closes (after applying everything
/// queued) or `shutdown` is cancelled; the engine's work is in the store
/// after every step, so stopping loses nothing.
pub async fn run(
    engine: Engine,
    clock: Arc<dyn Clock>,
    mut inputs: mpsc::Receiver<Input>,
    shutdown: CancellationToken,
) -> Result<(), AlertingError> {
    let mut engine = engine;
    tracing::info!(stats = ?engine.stats(), "alerting running");
    loop {
        let wait = engine
            .next_deadline()
            .map(|at| Duration::try_from(at.duration_since(clock.now())).unwrap_or_default())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        let input = tokio::select! {
            biased;
            input = inputs.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => None,
        };
        engine = tokio::task::spawn_blocking(move || {
            step(&mut engine, input);
            engine
        })
        .await
        .map_err(|e| AlertingError::Task {
            task: "engine",
            reason: e.to_string(),
        })?;
    }
    tracing::info!("alerting stopped");
    Ok(())
}

/// Applies one input (if any), then fires what is due. Errors are logged,
/// never fatal: the store has the readings, and a failed deadline is retried.
fn step(engine: &mut Engine, input: Option<Input>) {
    let result = match input {
        Some(Input::Committed { readings, statuses }) => engine
            .on_statuses(&statuses)
            .and_then(|()| engine.on_readings(&readings)),
        Some(Input::Outage { source, down }) => engine.set_outage(source, down),
        Some(Input::Roster(roster)) => engine.apply_roster(&roster).map(|_| ()),
        None => Ok(()),
    };
    if let Err(error) = result {
        tracing::error!(error = %error, "alerting could not apply new data");
    }
    if let Err(error) = engine.tick() {
        tracing::error!(error = %error, "alerting could not evaluate a deadline; retrying shortly");
    }
}
