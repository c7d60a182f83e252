//! `ondol run --demo`: a demo that is alive the minute it starts.
//!
//! Before anything runs, every resident gets a week of synthetic history
//! ([`crate::backfill::fill`]: check-ins, vitals, activity and alerts with
//! their handling), so the board and the charts are full. A restart on the
//! same data directory resumes each resident's history after their last
//! stored reading, so nothing is written twice.
//!
//! Then the simulated fleet runs in real time from now, with a few cues on
//! top of its ordinary days ([`Stage`]), chosen among the simulated homes:
//!
//! - one resident presses the help button [`HELP_AFTER`] the start;
//! - one resident without a button forgets today's check-in: their
//!   window is moved to end [`CHECKIN_DEADLINE_AFTER`] the start, and every
//!   device of theirs sends a reading right away, so alerting decides the
//!   deadline at once instead of holding it through the grace period after
//!   a start (missing-data alerts are held unless every device of the
//!   resident sends live data);
//! - another resident's wearable reports a fall [`FALL_AFTER`] the start.
//!
//! Staff whose token variable is unset get a generated token, printed at
//! start with the dashboard's address ([`banner`]). The device
//! [`HANDS_ON_DEVICE`] is left to the reader of the README: the fleet never
//! connects as it and the history has nothing from it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::{SignedDuration, Timestamp};
use ondol_model::roster::{CheckinPlan, CheckinWindow, DeviceKind, Roster, StaffRole};
use ondol_model::{CheckinValue, ReadingType, ReadingValue, ResidentId};
use ondol_sim::{Cue, SimDevice, SimHome};

use anyhow::Context;
use ondol_model::wire::DecodeLimits;
use ondol_store::Store;

use crate::backfill::{self, Fill};
use crate::credentials::DemoToken;

/// The device of the demo roster that the README's device example
/// publishes as; nothing simulated uses it.
pub const HANDS_ON_DEVICE: &str = "try-0001";
/// How much history the demo starts with.
pub const HISTORY: SignedDuration = SignedDuration::from_hours(7 * 24);
/// When the help button is pressed, after the fleet starts.
pub const HELP_AFTER: Duration = Duration::from_secs(20);
/// When the forgetful resident's check-in window ends, after the stage is
/// set (before the history is written and alerting starts).
pub const CHECKIN_DEADLINE_AFTER: SignedDuration = SignedDuration::from_secs(40);
/// When the forgetful resident's devices send their first live reading.
const LIVE_AFTER: Duration = Duration::from_secs(2);
/// When a wearable reports a fall, after the fleet starts.
pub const FALL_AFTER: Duration = Duration::from_secs(10 * 60);
/// How long the moved check-in window is (it opened this morning).
const WINDOW_LENGTH: SignedDuration = SignedDuration::from_hours(2);

/// The roster without [`HANDS_ON_DEVICE`]: what the fleet and the history
/// play.
pub fn simulated(roster: &Roster) -> Roster {
    let mut roster = roster.clone();
    roster.devices.retain(|d| d.id.as_str() != HANDS_ON_DEVICE);
    roster
}

/// The live part of the demo: the roster with the forgetful resident's
/// window moved, and the fleet's cues.
#[derive(Debug, Clone)]
pub struct Stage {
    pub roster: Roster,
    /// The resident who forgets today's check-in, and their local date.
    pub forgets: Option<(ResidentId, Date)>,
    pub cues: Vec<Cue>,
    /// What is going to happen, in plain sentences (for the banner).
    pub story: Vec<String>,
}

/// Sets the stage at `now` for the simulated `homes` of `roster`.
pub fn stage(roster: &Roster, homes: &[SimHome], now: Timestamp) -> Stage {
    let mut roster = roster.clone();
    let mut cues = Vec::new();
    let mut story = Vec::new();

    let forgetful = forget_checkin(&mut roster, homes, now);
    if let Some((home, today, end)) = &forgetful {
        cues.push(Cue::SkipCheckin {
            resident: home.resident_id.clone(),
            date: *today,
        });
        for device in &home.devices {
            let (reading_type, value) = match device.kind {
                DeviceKind::Gateway => {
                    (ReadingType::AmbientTemperature, ReadingValue::Number(21.5))
                }
                DeviceKind::Wearable => (ReadingType::HeartRate, ReadingValue::Number(74.0)),
                DeviceKind::Sensor => (ReadingType::Motion, ReadingValue::Motion(true)),
                // Never chosen: a button sends check-ins only.
                DeviceKind::Button => continue,
            };
            cues.push(Cue::Send {
                device: device.id.clone(),
                after: LIVE_AFTER,
                reading_type,
                value,
            });
        }
        story.push(format!(
            "{} forgets today's check-in (window until {end} local time): a missed_checkin alert about {} s after the start (on the day's first start)",
            name(&roster, &home.resident_id),
            CHECKIN_DEADLINE_AFTER.as_secs()
        ));
    }
    let forgetful = forgetful.map(|(home, today, _)| (home.resident_id.clone(), today));
    let mut busy: Vec<&ResidentId> = forgetful.iter().map(|(id, _)| id).collect();
    let mut pick = |kind: DeviceKind| {
        let (home, device) = homes
            .iter()
            .filter(|h| !busy.contains(&&h.resident_id))
            .find_map(|h| device_of(h, kind).map(|d| (h, d)))?;
        busy.push(&home.resident_id);
        Some((home, device))
    };
    if let Some((home, button)) = pick(DeviceKind::Button) {
        cues.push(Cue::Send {
            device: button.id.clone(),
            after: HELP_AFTER,
            reading_type: ReadingType::Checkin,
            value: ReadingValue::Checkin(CheckinValue::Help),
        });
        story.push(format!(
            "{} presses the help button {} s after the start: a help_request alert",
            name(&roster, &home.resident_id),
            HELP_AFTER.as_secs()
        ));
    }
    if let Some((home, wearable)) = pick(DeviceKind::Wearable) {
        cues.push(Cue::Send {
            device: wearable.id.clone(),
            after: FALL_AFTER,
            reading_type: ReadingType::Fall,
            value: ReadingValue::Fall,
        });
        story.push(format!(
            "{}'s watch reports a fall {} min after the start: a help_request alert",
            name(&roster, &home.resident_id),
            FALL_AFTER.as_secs() / 60
        ));
    }
    Stage {
        roster,
        forgets: forgetful,
        cues,
        story,
    }
}

/// Picks the first simulated home without a button (its devices can all
/// send live data) whose resident has a check-in plan today, and moves
/// their window to end [`CHECKIN_DEADLINE_AFTER`] `now`, local time.
/// Returns the home, the resident's local date and the window's end.
fn forget_checkin<'h>(
    roster: &mut Roster,
    homes: &'h [SimHome],
    now: Timestamp,
) -> Option<(&'h SimHome, Date, Time)> {
    // Whole seconds: the roster keeps local times.
    let deadline = now
        .checked_add(CHECKIN_DEADLINE_AFTER)
        .and_then(|t| t.round(jiff::Unit::Second))
        .ok()?;
    for home in homes
        .iter()
        .filter(|h| device_of(h, DeviceKind::Button).is_none())
    {
        let Some(resident) = roster
            .residents
            .iter_mut()
            .find(|r| r.id == home.resident_id)
        else {
            continue;
        };
        let today = now.to_zoned(resident.timezone.clone()).date();
        let end = deadline.to_zoned(resident.timezone.clone());
        // The window must end today, on a day the rules apply.
        if end.date() != today
            || !ondol_report::metrics::enrolled_on(resident, today)
            || resident.checkin.window.is_none()
        {
            continue;
        }
        let end = end.time();
        let start = end
            .checked_sub(WINDOW_LENGTH)
            .ok()
            .filter(|start| *start < end)
            .unwrap_or(Time::midnight());
        resident.checkin = CheckinPlan {
            window: Some(CheckinWindow { start, end }),
            passive: false,
        };
        return Some((home, today, end));
    }
    None
}

fn name(roster: &Roster, id: &ResidentId) -> String {
    roster
        .residents
        .iter()
        .find(|r| r.id == *id)
        .map_or_else(|| id.to_string(), |r| format!("{} ({id})", r.name))
}

/// Writes each resident's history until now: [`HISTORY`] of it, or, for
/// a resident with stored readings, from just after the last of them (so a
/// restart adds only the time the demo was not running). `roster` is the
/// store's, with the stage's changes.
pub fn write_history(
    store: &mut Store,
    roster: &Roster,
    stage: &Stage,
    seed: u64,
    limits: &DecodeLimits,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let until = Timestamp::now();
    let default_from = until.checked_sub(HISTORY).unwrap_or(until);
    let from = store
        .all_resident_activity()
        .context("cannot read the residents' last readings")?
        .into_iter()
        .filter_map(|row| {
            let after = row
                .last_reading_at?
                .checked_add(SignedDuration::from_millis(1))
                .ok()?;
            Some((row.resident_id, after.max(default_from)))
        })
        .collect();
    let fill = Fill {
        roster: simulated(roster),
        seed,
        from,
        default_from,
        until,
        forgets_checkin: stage.forgets.clone(),
    };
    let summary =
        backfill::fill(store, &fill, limits).context("cannot write the demo's history")?;
    tracing::info!(
        residents = summary.residents,
        readings = summary.readings_new,
        alerts = summary.alerts_new,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "demo history written"
    );
    Ok(())
}

/// Prints [`banner`] on standard output: for the person who started the
/// demo, apart from the log on standard error.
#[allow(clippy::print_stdout)]
pub fn print_banner(
    http: SocketAddr,
    mqtt_port: Option<u16>,
    tokens: &[DemoToken],
    story: &[String],
) {
    print!("{}", banner(http, mqtt_port, tokens, story));
}

/// What the start prints for people: where to look, how to sign in, what
/// is about to happen. `tokens` are the generated ones (none when every
/// variable was set).
pub fn banner(
    http: SocketAddr,
    mqtt_port: Option<u16>,
    tokens: &[DemoToken],
    story: &[String],
) -> String {
    let host = if http.ip().is_unspecified() {
        format!("localhost:{}", http.port())
    } else {
        http.to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "== Ondol demo (synthetic residents and data) ==");
    let _ = writeln!(out, "Dashboard and API: http://{host}/");
    if tokens.is_empty() {
        let _ = writeln!(
            out,
            "Sign in with the tokens in your ONDOL_TOKEN_* variables."
        );
    } else {
        let _ = writeln!(
            out,
            "Sign in with a token generated for this run (set ONDOL_TOKEN_* to choose your own):"
        );
        for t in tokens {
            let _ = writeln!(
                out,
                "  {:<6} {:<11} {:<24} {}",
                t.staff,
                t.role.as_str(),
                t.name,
                t.token
            );
        }
        if let Some(cw) = tokens.iter().find(|t| t.role == StaffRole::Caseworker) {
            let _ = writeln!(
                out,
                "  curl -H \"Authorization: Bearer {}\" http://{host}/api/v1/alerts",
                cw.token
            );
        }
    }
    let _ = writeln!(
        out,
        "History: the last 7 days of every resident; the simulated homes run live from now:"
    );
    for line in story {
        let _ = writeln!(out, "  - {line}");
    }
    if let Some(port) = mqtt_port {
        let _ = writeln!(
            out,
            "Devices: MQTT on port {port}; publish as {HANDS_ON_DEVICE} (README: Send a reading as a device)."
        );
    }
    out
}

/// The first device of `kind` in `home`.
fn device_of(home: &SimHome, kind: DeviceKind) -> Option<&SimDevice> {
    home.devices.iter().find(|d| d.kind == kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn demo_roster() -> Roster {
        crate::roster::parse(crate::roster::DEMO_REGISTRY, "demo").unwrap()
    }

    fn homes(roster: &Roster, at: Timestamp) -> Vec<SimHome> {
        ondol_sim::homes_from_roster_at(&simulated(roster), at)
    }

    #[test]
    fn the_hands_on_device_is_in_the_roster_and_never_simulated() {
        let roster = demo_roster();
        let device = roster
            .devices
            .iter()
            .find(|d| d.id.as_str() == HANDS_ON_DEVICE)
            .expect("the README's device is in the demo roster");
        assert!(device.active && device.resident_at(Timestamp::now()).is_some());
        let simulated = homes(&roster, Timestamp::now());
        assert!(
            simulated
                .iter()
                .flat_map(|h| &h.devices)
                .all(|d| d.id.as_str() != HANDS_ON_DEVICE)
        );
    }

    #[test]
    fn the_stage_has_a_forgotten_checkin_a_help_press_and_a_fall() {
        let roster = demo_roster();
        // 11:00 in Seoul.
        let now: Timestamp = "2026-12-08T02:00:00Z".parse().unwrap();
        let homes = homes(&roster, now);
        let stage = stage(&roster, &homes, now);
        let (who, date) = stage.forgets.clone().unwrap();
        assert_eq!(
            who.as_str(),
            "r-0006",
            "the first resident without a button"
        );
        assert_eq!(date, jiff::civil::date(2026, 12, 8));
        let resident = stage.roster.residents.iter().find(|r| r.id == who).unwrap();
        let window = resident.checkin.window.unwrap();
        assert_eq!(window.end, Time::constant(11, 0, 40, 0));
        assert_eq!(window.start, Time::constant(9, 0, 40, 0));
        // Every one of her devices sends live data; nothing else changed.
        let sends: Vec<&Cue> = stage
            .cues
            .iter()
            .filter(|c| matches!(c, Cue::Send { device, .. } if device.as_str().ends_with("0006")))
            .collect();
        assert_eq!(sends.len(), 2, "{:?}", stage.cues);
        assert!(stage.cues.contains(&Cue::SkipCheckin {
            resident: who.clone(),
            date
        }));
        let mut unchanged = roster.clone();
        let mut staged = stage.roster.clone();
        unchanged.residents.retain(|r| r.id != who);
        staged.residents.retain(|r| r.id != who);
        assert_eq!(format!("{unchanged:?}"), format!("{staged:?}"));
        let help = stage.cues.iter().find(|c| {
            matches!(
                c,
                Cue::Send {
                    value: ReadingValue::Checkin(CheckinValue::Help),
                    ..
                }
            )
        });
        assert!(
            matches!(help, Some(Cue::Send { device, after, .. }) if device.as_str() == "bt-0001" && *after == HELP_AFTER),
            "{help:?}"
        );
        assert!(stage.cues.iter().any(|c| matches!(
            c,
            Cue::Send {
                value: ReadingValue::Fall,
                ..
            }
        )));
        assert_eq!(stage.story.len(), 3, "{:?}", stage.story);
    }

    #[test]
    fn near_midnight_in_seoul_the_forgetful_resident_lives_in_lisbon() {
        let roster = demo_roster();
        // 23:59:50 in Seoul: a window 40 s later would end tomorrow.
        let now: Timestamp = "2026-12-08T14:59:50Z".parse().unwrap();
        let stage = stage(&roster, &homes(&roster, now), now);
        let (who, date) = stage.forgets.unwrap();
        assert_eq!(who.as_str(), "r-0017");
        assert_eq!(date, jiff::civil::date(2026, 12, 8));
        let resident = stage.roster.residents.iter().find(|r| r.id == who).unwrap();
        assert_eq!(
            resident.checkin.window.unwrap().end,
            Time::constant(15, 0, 30, 0)
        );
    }

    #[test]
    fn a_fleet_of_homes_with_buttons_only_gets_no_forgotten_checkin() {
        let roster = demo_roster();
        let now = Timestamp::now();
        let two: Vec<SimHome> = homes(&roster, now).into_iter().take(2).collect();
        let stage = stage(&roster, &two, now);
        assert!(stage.forgets.is_none());
        assert_eq!(format!("{:?}", stage.roster), format!("{roster:?}"));
        assert_eq!(stage.story.len(), 2, "{:?}", stage.story);
    }
}
