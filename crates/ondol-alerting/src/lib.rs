//! Alerting (DESIGN §4): every enrolled resident watched from the roster,
//! missed check-ins, inactivity, help requests and silent devices reaching
//! the right caseworker, our own outages reaching only supervisors.
//!
//! ```text
//! any ingest ──▶ store: alerting feed ──▶ Engine ──▶ store: alerts,
//! conditions, broker probe ──▶ Input ───▶ (timers)    transitions,
//! roster changes ────────────▶                         outbox ──▶ Delivery ──▶ MQTT, webhook
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
//! Alerting never depends on ingest: it learns what was committed from the
//! store's alerting feed, whichever process committed it (an in-process
//! wake-up only makes it look sooner). Time comes from an injected
//! [`Clock`], so every rule is tested with a manual clock.

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
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use config::AlertingConfig;
pub use delivery::{Delivery, ExternalBroker, MqttOut, Webhook};
pub use engine::{Engine, EngineStats, FeedProgress, OutageSource, RosterChanges};
pub use error::AlertingError;
pub use pacemaker::{Pacemaker, Stall};

/// What alerting is told.
#[derive(Debug, Clone)]
pub enum Input {
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

/// Alerting feed rows applied in one turn at most; likewise, a turn that
/// reaches it decides no deadline.
pub const FEED_ROWS_PER_TURN: usize = 512;

/// Commit-to-alerting lag of each feed row applied (seconds).
pub const FEED_LAG_SECONDS: &str = "ondol_alerting_feed_lag_seconds";

/// How the runner learns of new feed rows: `wake` when a writer in this
/// process committed, and a look every `poll` for the other processes'.
#[derive(Debug, Clone)]
pub struct FeedWatch {
    pub wake: Arc<Notify>,
    pub poll: Duration,
}

/// Runs the engine: applies inputs and the store's alerting feed as they
/// come, and fires deadlines when they are due. Returns when `inputs`
/// closes or `shutdown` is cancelled, after applying what the feed holds
/// then; the engine's work is in the store after every turn, so stopping
/// loses nothing.
///
/// Each turn takes everything already waiting, so deadlines are decided
/// after the data that was committed before them ([`turn`]).
pub async fn run(
    engine: Engine,
    clock: Arc<dyn Clock>,
    mut inputs: mpsc::Receiver<Input>,
    shutdown: CancellationToken,
    stall_after: Duration,
    feed: FeedWatch,
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
    // The feed may hold what was committed while alerting was down.
    let mut next = Next::Now;
    loop {
        let wait = match next {
            Next::Now => Duration::ZERO,
            Next::Retry => FEED_RETRY,
            Next::Deadline => engine
                .next_deadline()
                .map(|at| Duration::try_from(at.duration_since(clock.now())).unwrap_or_default())
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP)
                .min(feed.poll),
        };
        pacemaker.promise(origin.elapsed() + wait);
        let first = tokio::select! {
            biased;
            input = inputs.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
            _ = shutdown.cancelled() => break,
            _ = feed.wake.notified() => None,
            _ = tokio::time::sleep(wait) => None,
        };
        let mut batch: Vec<Input> = first.into_iter().collect();
        while batch.len() < MAX_INPUTS_PER_TURN {
            match inputs.try_recv() {
                Ok(input) => batch.push(input),
                Err(_) => break,
            }
        }
        (engine, pacemaker, next) = tokio::task::spawn_blocking(move || {
            let next = turn(&mut engine, &mut pacemaker, batch, &|| origin.elapsed());
            (engine, pacemaker, next)
        })
        .await
        .map_err(|e| AlertingError::Task {
            task: "engine",
            reason: e.to_string(),
        })?;
    }
    // What was committed before the stop: the last batch of an ingest in
    // this process is in the feed by now.
    tokio::task::spawn_blocking(move || {
        while let Ok(progress) = engine.follow_feed(FEED_ROWS_PER_TURN) {
            record_lags(&progress);
            if !progress.more {
                break;
            }
        }
    })
    .await
    .map_err(|e| AlertingError::Task {
        task: "engine",
        reason: e.to_string(),
    })?;
    tracing::info!("alerting stopped");
    Ok(())
}

/// When the runner's next turn comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At once: more inputs or feed rows are waiting.
    Now,
    /// Shortly: the feed could not be read.
    Retry,
    /// At the next deadline, a wake-up, or the feed's poll.
    Deadline,
}

/// How long after a failed feed read the next turn comes.
const FEED_RETRY: Duration = Duration::from_secs(1);

/// One turn of the engine, in the order that keeps our own gaps from
/// paging anyone: every input that is waiting and what the feed holds,
/// then whether we were stalled since the last turn, and only then the
/// deadlines that are due, at the wall time the stall check saw. `mono`
/// reads the monotonic clock; the turn marks itself running when it starts
/// and ends, so a freeze in the middle of a turn is found before the next
/// deadline is decided. A turn that found more waiting than it takes, or
/// could not read the feed, decides no deadline: it would decide on
/// missing data. Errors are logged, never fatal: the store has the
/// readings, and a failed deadline is retried.
pub fn turn(
    engine: &mut Engine,
    pacemaker: &mut Pacemaker,
    inputs: Vec<Input>,
    mono: &dyn Fn() -> Duration,
) -> Next {
    let inputs_full = inputs.len() >= MAX_INPUTS_PER_TURN;
    take_inputs(engine, pacemaker, inputs, mono);
    let feed = match engine.follow_feed(FEED_ROWS_PER_TURN) {
        Ok(progress) => {
            record_lags(&progress);
            if progress.more {
                Next::Now
            } else {
                Next::Deadline
            }
        }
        Err(error) => {
            tracing::error!(error = %error, "alerting cannot read what was committed; deadlines wait until it can");
            Next::Retry
        }
    };
    pacemaker.mark(engine.now(), mono());
    if inputs_full {
        return Next::Now;
    }
    if feed != Next::Deadline {
        return feed;
    }
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
    Next::Deadline
}

fn record_lags(progress: &FeedProgress) {
    for lag in &progress.lags {
        metrics::histogram!(FEED_LAG_SECONDS).record(lag.as_secs_f64());
    }
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
