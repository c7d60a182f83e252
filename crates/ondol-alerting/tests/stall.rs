//! A stall of our own never pages caseworkers (DESIGN §4): a frozen
//! process, a starved host or a wall clock jump is an outage of ours. The
//! runner's turn ([`ondol_alerting::turn`]) is driven here as the service
//! drives it, with a manual wall clock and a monotonic clock passed in.
//!
//! The scenario of the bug report, shortened: five residents whose devices
//! send motion every 5 s, tiers of 60/120/180 s, a grace of 60 s; the
//! process does not run for four minutes while the devices buffer; a sixth
//! resident's device stopped for good just before. Whatever order the
//! buffered data and the turns come in after the thaw, nobody who was
//! sending is paged, supervisors get one `system_outage` (`stalled`), and the
//! resident whose device really stopped is alerted after the grace with
//! cause `no_data`.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ondol_alerting::{AlertingConfig, Input, Pacemaker};
use ondol_model::alert::{AlertStatus, Rule};
use ondol_model::reading::{ReadingType, ReadingValue};
use proptest::prelude::*;
use support::{Harness, ts};

const START: &str = "2026-11-27T00:00:00Z";
/// Residents whose devices keep sending (r-1 … r-5); r-6's device stops.
const SENDING: usize = 5;
/// Seconds between two motions of a sending device.
const EVERY: i64 = 5;
/// The freeze: from t = 300 s to t = 540 s, longer than every tier.
const FROZEN_AT: i64 = 300;
const THAWED_AT: i64 = 540;
/// r-6's last motion, shortly before the freeze: its deadlines come in it.
const STOPPED_AT: i64 = 290;
/// The grace after the thaw ends here.
const GRACE_END: i64 = THAWED_AT + 60;

fn roster() -> String {
    let mut toml = String::new();
    for i in 1..=SENDING + 1 {
        toml.push_str(&format!(
            r#"
[[residents]]
id = "r-{i}"
name = "Resident {i}"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-1"
checkin = {{ window = "none" }}

[[devices]]
id = "gw-{i}"
resident = "r-{i}"
kind = "gateway"
"#
        ));
    }
    toml.push_str(
        r#"
[[staff]]
id = "cw-1"
name = "Park"
role = "caseworker"

[[staff]]
id = "sup-1"
name = "Lee"
role = "supervisor"
region = "gangjin"
"#,
    );
    toml
}

fn config() -> AlertingConfig {
    AlertingConfig {
        inactivity_caution: Duration::from_secs(60),
        inactivity_alarm: Duration::from_secs(120),
        inactivity_danger: Duration::from_secs(180),
        device_silent_after: Duration::from_secs(30),
        mass_silence_window: Duration::from_secs(30),
        grace: Duration::from_secs(60),
        stall_after: Duration::from_secs(10),
        ..AlertingConfig::default()
    }
}

fn at(second: i64) -> Timestamp {
    ts(START) + SignedDuration::from_secs(second)
}

fn mono(second: i64) -> Duration {
    Duration::from_secs(u64::try_from(second).unwrap())
}

/// The service, with the wall clock at `t` seconds after [`START`].
struct Service {
    h: Harness,
    pacemaker: Pacemaker,
    /// Committed, not yet taken by a turn (the runner's input queue).
    queue: Vec<Input>,
}

impl Service {
    fn start() -> Service {
        let mut h = Harness::new(&roster(), START, config());
        let mut pacemaker = Pacemaker::new(config().stall_after);
        h.turn(&mut pacemaker, Vec::new(), mono(0));
        Service {
            h,
            pacemaker,
            queue: Vec::new(),
        }
    }

    fn set(&mut self, t: i64) {
        self.h.clock.set(at(t));
    }

    /// A motion measured at `measured` (seconds), received and committed now.
    fn motion(&mut self, resident: usize, measured: i64) {
        let device = format!("gw-{resident}");
        self.h.commit(
            &device,
            at(measured),
            ReadingValue::Motion(true),
            ReadingType::Motion,
        );
    }

    /// A turn at wall time now, monotonic time `mono_now`, promising the
    /// next within `EVERY` seconds (the runner promises its next wake-up).
    fn turn(&mut self, mono_now: Duration) {
        let inputs = std::mem::take(&mut self.queue);
        self.h.turn(&mut self.pacemaker, inputs, mono_now);
        self.pacemaker.promise(mono_now + mono(EVERY));
    }

    /// Runs normally (both clocks together) from `from` to `to` seconds,
    /// the sending residents' devices publishing every `EVERY` seconds and
    /// r-6's until [`STOPPED_AT`].
    fn run(&mut self, from: i64, to: i64) {
        let mut t = from;
        while t <= to {
            self.set(t);
            for r in 1..=SENDING {
                self.motion(r, t);
            }
            if t <= STOPPED_AT {
                self.motion(SENDING + 1, t);
            }
            self.turn(mono(t));
            t += EVERY;
        }
    }

    fn resident_alerts(&self) -> Vec<(String, String, String)> {
        self.h
            .alerts()
            .into_iter()
            .filter(|a| a.rule != Rule::SystemOutage)
            .map(|a| {
                (
                    a.subject.to_string(),
                    a.rule.as_str().to_owned(),
                    a.cause.to_string(),
                )
            })
            .collect()
    }
}

/// Up to the freeze: past the start-up grace, everyone sending, r-6 stopped
/// at 290 s; the motions of t = 300 s are committed but no turn took them
/// before the process froze.
fn until_the_freeze() -> Service {
    let mut s = Service::start();
    s.run(EVERY, FROZEN_AT - EVERY);
    s.set(FROZEN_AT);
    for r in 1..=SENDING {
        s.motion(r, FROZEN_AT);
    }
    assert!(s.resident_alerts().is_empty(), "{:?}", s.resident_alerts());
    s
}

/// After the grace: what must be true whatever happened in between.
fn assert_only_our_outage_and_the_really_silent_resident(s: &mut Service) {
    s.run(GRACE_END, GRACE_END + 120);
    let alerts = s.resident_alerts();
    assert_eq!(
        alerts,
        [
            ("resident:r-6".into(), "inactivity".into(), "no_data".into()),
            (
                "device:gw-6".into(),
                "device_offline".into(),
                "silent".into()
            ),
        ],
        "only the resident whose device stopped is alerted"
    );
    let inactivity = s.h.alerts_of("inactivity");
    assert!(
        inactivity[0].opened_at >= at(GRACE_END),
        "after the grace, not in the thaw: {}",
        inactivity[0].opened_at
    );
    let system = s.h.alerts_of("system_outage");
    assert_eq!(system.len(), 1, "{system:?}");
    assert_eq!(system[0].cause.to_string(), "stalled");
    assert_eq!(
        system[0].status,
        AlertStatus::Resolved,
        "closed after the grace"
    );
    // Nothing about r-1 … r-5 ever reached a caseworker's topic.
    let paged: Vec<String> =
        s.h.outbox("mqtt")
            .into_iter()
            .filter_map(|(_, event)| event["alert"]["resident_id"].as_str().map(str::to_owned))
            .filter(|resident| resident != "r-6")
            .collect();
    assert!(paged.is_empty(), "paged about {paged:?}");
}

#[test]
fn a_frozen_process_pages_no_resident_and_raises_one_stalled_outage() {
    let mut s = until_the_freeze();
    // SIGSTOP for four minutes: both clocks move on; the devices buffer.
    s.set(THAWED_AT);
    s.turn(mono(THAWED_AT));
    assert!(
        s.resident_alerts().is_empty(),
        "nothing decided on the stale state: {:?}",
        s.resident_alerts()
    );
    let system = s.h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].cause.to_string(), "stalled");
    let detail = system[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("did not run for 4m"), "{detail}");
    // The buffered motions arrive, then the devices go on live.
    for measured in (FROZEN_AT + EVERY..THAWED_AT).step_by(5) {
        for r in 1..=SENDING {
            s.motion(r, measured);
        }
    }
    s.run(THAWED_AT + EVERY, GRACE_END - EVERY);
    assert_only_our_outage_and_the_really_silent_resident(&mut s);
}

#[test]
fn a_wall_clock_jump_past_every_tier_pages_no_resident() {
    let mut s = until_the_freeze();
    // The wall clock jumps four minutes while one second passes (the last
    // turn was at 295 s).
    s.set(THAWED_AT);
    s.turn(mono(FROZEN_AT - EVERY + 1));
    assert!(s.resident_alerts().is_empty(), "{:?}", s.resident_alerts());
    let system = s.h.alerts_of("system_outage");
    assert_eq!(system.len(), 1);
    assert!(
        system[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("jumped forward by 4m")),
        "{:?}",
        system[0].detail
    );
    // From here both clocks move together again (offset by the jump).
    let offset = THAWED_AT - (FROZEN_AT - EVERY + 1);
    let mut t = THAWED_AT + EVERY;
    while t < GRACE_END {
        s.set(t);
        for r in 1..=SENDING {
            s.motion(r, t);
        }
        s.turn(mono(t - offset));
        t += EVERY;
    }
    // Continue on the same monotonic offset past the grace.
    while t <= GRACE_END + 120 {
        s.set(t);
        for r in 1..=SENDING {
            s.motion(r, t);
        }
        s.turn(mono(t - offset));
        t += EVERY;
    }
    let alerts = s.resident_alerts();
    assert!(
        alerts.iter().all(|(subject, _, _)| subject.ends_with("-6")),
        "{alerts:?}"
    );
    assert_eq!(s.h.alerts_of("system_outage").len(), 1);
}

/// Data before deadlines: a deadline that is due when a turn runs (on
/// time, no stall) is decided after the input that was committed before it.
#[test]
fn input_committed_before_a_due_deadline_is_applied_first() {
    let mut s = Service::start();
    s.run(EVERY, 200);
    // r-1's caution deadline is 60 s after its last motion (200 s); the
    // last turn was at 255 s; the motion at 259 s is committed, and the next
    // turn runs at 262 s, 2 s after the deadline (not a stall): it must see
    // the motion before deciding the deadline.
    let mut t = 205;
    while t < 260 {
        s.set(t);
        for r in 2..=SENDING {
            s.motion(r, t);
        }
        s.turn(mono(t));
        t += EVERY;
    }
    s.set(259);
    s.motion(1, 259);
    s.set(262);
    for r in 2..=SENDING {
        s.motion(r, 262);
    }
    s.turn(mono(262));
    assert!(
        s.h.alerts_of("inactivity")
            .iter()
            .all(|a| a.subject.to_string() != "resident:r-1"),
        "{:?}",
        s.h.alerts_of("inactivity")
    );
    assert!(s.h.alerts_of("system_outage").is_empty(), "no stall here");
}

/// What becomes ready when, after the thaw: for each buffered motion (and
/// the motions committed just before the freeze) the step (5 s each) at
/// which it is committed, and for each step whether a turn runs then.
#[derive(Debug, Clone)]
struct Thaw {
    /// Step of each buffered motion, by (resident, measured second).
    arrivals: Vec<usize>,
    /// Whether the pre-freeze motions are taken by the first turn (else by
    /// a later one: they were still queued).
    turns: Vec<bool>,
}

/// Steps from the thaw to just before the grace ends.
const STEPS: usize = ((GRACE_END - THAWED_AT) / EVERY) as usize;

fn thaws() -> impl Strategy<Value = Thaw> {
    let buffered = SENDING * ((THAWED_AT - FROZEN_AT - EVERY) / EVERY) as usize;
    (
        proptest::collection::vec(0..STEPS - 1, buffered),
        proptest::collection::vec(any::<bool>(), STEPS),
    )
        .prop_map(|(arrivals, turns)| Thaw { arrivals, turns })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The outcome of a thaw does not depend on the order in which the
    /// buffered data and the turns come.
    #[test]
    fn every_interleaving_of_late_data_and_due_deadlines_gives_the_same_result(thaw in thaws()) {
        let mut s = until_the_freeze();
        let mut buffered: BTreeMap<usize, Vec<(usize, i64)>> = BTreeMap::new();
        let mut i = 0;
        for measured in (FROZEN_AT + EVERY..THAWED_AT).step_by(5) {
            for r in 1..=SENDING {
                buffered.entry(thaw.arrivals[i]).or_default().push((r, measured));
                i += 1;
            }
        }
        for step in 0..STEPS {
            let t = THAWED_AT + EVERY * step as i64;
            s.set(t);
            for (r, measured) in buffered.remove(&step).unwrap_or_default() {
                s.motion(r, measured);
            }
            if step > 0 {
                for r in 1..=SENDING {
                    s.motion(r, t);
                }
            }
            // The last step before the grace ends always turns.
            if thaw.turns[step] || step == STEPS - 1 {
                s.turn(mono(t));
            }
        }
        assert_only_our_outage_and_the_really_silent_resident(&mut s);
    }
}
