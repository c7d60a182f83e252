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
//! - [`notification`]: who receives an alert event (the JSON is the
//!   store's, [`ondol_store::alert_events`]).
//! - [`pacemaker`]: knowing when alerting itself was not running (a frozen
//!   process, a starved host, a clock jump), so our own gap pages nobody.
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
pub mod pacemaker;
pub mod schedule;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ondol_model::Clock;
use ondol_store::{NewReading, StatusUpdate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::AlertingConfig;
pub use delivery::{Delivery, ExternalBroker, MqttOut, Webhook};
pub use engine::{Engine, EngineStats, OutageSource, RosterChanges};
pub use error::AlertingError;
pub use pacemaker::{Pacemaker, Stall};

/// What alerting is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// Readings ingest stored for the first time, and device statuses.
    Committed {
        readings: Vec<NewReading>,
        statuses: Vec<StatusUpdate>,
    },
    /// One of our own parts stopped or started answering; `detail` is what
    /// the part that noticed says (for the system alert).
    Outage {
        source: OutageSource,
        down: bool,
        detail: Option<String>,
    },
    /// The roster as it is now in the store (it changed while running).
    Roster(Arc<ondol_model::roster::Roster>),
}

/// The longest sleep between turns (deadlines are re-read after it); the
/// pacemaker measures lateness against it.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Inputs taken in one turn at most (four times the binary's input queue):
/// a turn that takes this many decides no deadline, since more data may be
/// waiting; the next turn comes at once.
const MAX_INPUTS_PER_TURN: usize = 1024;

/// Runs the engine: applies inputs as they come and fires deadlines when
/// they are due. Returns when `inputs` closes (after applying everything
/// queued) or `shutdown` is cancelled; the engine's work is in the store
/// after every turn, so stopping loses nothing.
///
/// Each turn takes everything already queued, so deadlines are decided
/// after the data that was committed before them ([`turn`]).
pub async fn run(
    engine: Engine,
    clock: Arc<dyn Clock>,
    mut inputs: mpsc::Receiver<Input>,
    shutdown: CancellationToken,
    stall_after: Duration,
) -> Result<(), AlertingError> {
    let mut engine = engine;
    let mut pacemaker = Pacemaker::new(stall_after);
    // The monotonic clock's origin; `Instant` is what a frozen process or a
    // wall clock jump cannot fool.
    let origin = Instant::now();
    let stats = engine.stats();
    tracing::info!(
        residents = stats.residents,
        devices = stats.devices,
        deadlines = stats.timers,
        held = stats.parked,
        "alerting running"
    );
    loop {
        let wait = engine
            .next_deadline()
            .map(|at| Duration::try_from(at.duration_since(clock.now())).unwrap_or_default())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        pacemaker.promise(origin.elapsed() + wait);
        let first = tokio::select! {
            biased;
            input = inputs.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => None,
        };
        let mut batch: Vec<Input> = first.into_iter().collect();
        while batch.len() < MAX_INPUTS_PER_TURN {
            match inputs.try_recv() {
                Ok(input) => batch.push(input),
                Err(_) => break,
            }
        }
        let more_waiting = batch.len() == MAX_INPUTS_PER_TURN;
        (engine, pacemaker) = tokio::task::spawn_blocking(move || {
            let mono = || origin.elapsed();
            if more_waiting {
                take_inputs(&mut engine, &mut pacemaker, batch, &mono);
            } else {
                turn(&mut engine, &mut pacemaker, batch, &mono);
            }
            (engine, pacemaker)
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

/// One turn of the engine, in the order that keeps our own gaps from
/// paging anyone: every input that is waiting, then whether we were stalled
/// since the last turn, and only then the deadlines that are due, at the
/// wall time the stall check saw. `mono` reads the monotonic clock; the
/// turn marks itself running when it starts and ends, so a freeze in the
/// middle of a turn is found before the next deadline is decided. Errors
/// are logged, never fatal: the store has the readings, and a failed
/// deadline is retried.
pub fn turn(
    engine: &mut Engine,
    pacemaker: &mut Pacemaker,
    inputs: Vec<Input>,
    mono: &dyn Fn() -> Duration,
) {
    take_inputs(engine, pacemaker, inputs, mono);
    // Wall time first: a freeze between the two reads is a clock jump.
    let now = engine.now();
    if let Some(stall) = pacemaker.beat(now, mono())
        && let Err(error) = engine.stalled(&stall)
    {
        tracing::error!(error = %error, "alerting could not record its own stall");
    }
    if let Err(error) = engine.tick_at(now) {
        tracing::error!(error = %error, "alerting could not evaluate a deadline; retrying shortly");
    }
    pacemaker.mark(engine.now(), mono());
}

/// Applies the waiting inputs, marking the pacemaker before and after.
fn take_inputs(
    engine: &mut Engine,
    pacemaker: &mut Pacemaker,
    inputs: Vec<Input>,
    mono: &dyn Fn() -> Duration,
) {
    pacemaker.mark(engine.now(), mono());
    for input in inputs {
        let result = match input {
            Input::Committed { readings, statuses } => engine
                .on_statuses(&statuses)
                .and_then(|()| engine.on_readings(&readings)),
            Input::Outage {
                source,
                down,
                detail,
            } => engine.set_outage_because(source, down, detail.as_deref()),
            Input::Roster(roster) => engine.apply_roster(&roster).map(|_| ()),
        };
        if let Err(error) = result {
            tracing::error!(error = %error, "alerting could not apply new data");
        }
    }
    pacemaker.mark(engine.now(), mono());
}
