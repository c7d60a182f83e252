//! `GET /overview`: a supervisor's region at a glance (open alerts by tier
//! and age, escalations nobody has acknowledged, residents Ondol cannot
//! see, devices with low battery, each resident's recent alerts and their
//! outcomes), computed from the status board's reads and one history query.
//!
//! For supervisors (their region, or everyone without one) and admins
//! (everyone). Caseworkers get 403: the overview is for whoever oversees
//! their work, and their own residents are on `/alerts` and `/residents`.

use std::collections::BTreeMap;

use axum::Json;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use ondol_model::alert::{AlertStatus, Cause, Rule, Severity};
use ondol_model::roster::StaffRole;
use ondol_store::alerts::AlertRow;
use ondol_store::api_rows::severity_rank;

use crate::auth::Scope;
use crate::context::{Audited, Ctx};
use crate::error::{ApiError, ErrorBody};
use crate::routes::alerts::{Alert, alert_json, names_in_scope, timestamp, visible};
use crate::routes::residents::{Board, DeviceStatus, LOW_BATTERY_PCT, ResidentStatus};

/// How far back the per-resident alert history reaches.
pub const HISTORY_DAYS: u32 = 30;

/// The age bands of open alerts, as upper bounds in seconds: under 15 min
/// (the default acknowledgement timeout, before any escalation), under an
/// hour, under a day; anything older falls in the last band.
const AGE_BANDS: [i64; 3] = [15 * 60, 3600, 24 * 3600];

/// A region at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// The caller's region; null when the caller sees every region
    /// (admins, supervisors without a region).
    pub region: Option<String>,
    /// The server's time the figures refer to.
    #[schema(format = DateTime)]
    pub generated_at: String,
    /// Residents in the caller's scope.
    pub residents: u32,
    pub open_alerts: OpenAlerts,
    /// Open alerts escalated to supervisors that nobody has acknowledged
    /// yet, most severe first, then the oldest.
    pub escalations_waiting: Vec<Alert>,
    /// Residents Ondol cannot see, longest silent first.
    pub unseen_residents: Vec<UnseenResident>,
    /// The threshold of `low_battery`, in percent (inclusive).
    pub low_battery_pct: u8,
    /// Devices bound to a resident in scope whose last reported battery is
    /// at or below `low_battery_pct`, emptiest first.
    pub low_battery: Vec<LowBatteryDevice>,
    /// How many days back `history` reaches.
    pub history_days: u32,
    /// Every resident in scope with their recent alerts and outcomes: those
    /// with the most severe open alert first, then the most alerts.
    pub history: Vec<ResidentHistory>,
}

/// Open and acknowledged alerts the caller sees, system alerts included.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAlerts {
    pub total: u32,
    /// Not yet acknowledged.
    pub unacknowledged: u32,
    /// Of `total`, alerts about no resident (system outages).
    pub system: u32,
    /// One entry per tier, most severe first, empty tiers included.
    pub by_tier: Vec<TierCount>,
}

/// The open alerts of one tier, by how long they have been open.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct TierCount {
    /// critical, danger, alarm, caution or low.
    pub severity: String,
    pub total: u32,
    pub unacknowledged: u32,
    /// Open for less than 15 minutes.
    pub under_15_min: u32,
    /// 15 minutes to an hour.
    pub under_1_h: u32,
    /// An hour to a day.
    pub under_24_h: u32,
    /// A day or longer.
    pub older: u32,
}

/// A resident Ondol cannot see: it cannot tell whether they are well.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnseenResident {
    pub id: String,
    pub name: String,
    pub caseworker: Option<String>,
    /// Whether today is in an away period (rules paused).
    pub away: bool,
    /// Why, one or more of: `no_data_alert` (an open alert with cause
    /// `no_data`), `all_devices_offline` (every device bound to them has an
    /// open `device_offline` alert), `no_devices` (none is bound to them).
    pub reasons: Vec<String>,
    /// The last time anything arrived from any of their devices.
    #[schema(format = DateTime)]
    pub last_heard_at: Option<String>,
}

/// A device whose battery needs changing.
#[derive(Debug, Serialize, ToSchema)]
pub struct LowBatteryDevice {
    pub resident_id: String,
    pub resident_name: String,
    #[serde(flatten)]
    pub device: DeviceStatus,
}

/// One resident's alerts over the last `history_days`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentHistory {
    pub id: String,
    pub name: String,
    pub caseworker: Option<String>,
    /// Open and acknowledged alerts now, whenever they opened.
    pub open_alerts: u32,
    /// The highest severity among them.
    pub highest_severity: Option<String>,
    /// Alerts opened within the window.
    pub alerts: u32,
    /// Of those, how many are resolved, by outcome (resident_ok,
    /// needed_help, ..., cleared_by_resident); outcomes that did not occur
    /// are left out.
    pub outcomes: BTreeMap<String, u32>,
    #[schema(format = DateTime)]
    pub last_alert_at: Option<String>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `alerts` (open and acknowledged) counted by tier and age at `now`.
fn open_alerts(alerts: &[&AlertRow], now: Timestamp) -> OpenAlerts {
    let by_tier = Severity::ALL
        .iter()
        .rev()
        .map(|&severity| {
            let mut tier = TierCount {
                severity: severity.as_str().to_owned(),
                ..TierCount::default()
            };
            for alert in alerts.iter().filter(|a| a.severity == severity) {
                tier.total += 1;
                if alert.status == AlertStatus::Open {
                    tier.unacknowledged += 1;
                }
                let age = now.as_second() - alert.opened_at.as_second();
                let band = match AGE_BANDS.iter().position(|&limit| age < limit) {
                    Some(0) => &mut tier.under_15_min,
                    Some(1) => &mut tier.under_1_h,
                    Some(_) => &mut tier.under_24_h,
                    None => &mut tier.older,
                };
                *band += 1;
            }
            tier
        })
        .collect();
    OpenAlerts {
        total: count(alerts.len()),
        unacknowledged: count(
            alerts
                .iter()
                .filter(|a| a.status == AlertStatus::Open)
                .count(),
        ),
        system: count(alerts.iter().filter(|a| a.resident_id.is_none()).count()),
        by_tier,
    }
}

/// Why Ondol cannot see the resident of `status`, if it cannot.
fn unseen_reasons(status: &ResidentStatus, open: &[&AlertRow]) -> Vec<String> {
    let mine = |a: &&&AlertRow| a.resident_id.as_ref().map(|r| r.as_str()) == Some(&status.id);
    let mut reasons = Vec::new();
    if open.iter().filter(mine).any(|a| a.cause == Cause::NoData) {
        reasons.push("no_data_alert".to_owned());
    }
    if status.devices.is_empty() {
        reasons.push("no_devices".to_owned());
    } else if status.devices.iter().all(|d| {
        open.iter().any(|a| {
            a.rule == Rule::DeviceOffline && a.device_id.as_ref().map(|i| i.as_str()) == Some(&d.id)
        })
    }) {
        reasons.push("all_devices_offline".to_owned());
    }
    reasons
}

fn history(status: &ResidentStatus, recent: &[AlertRow]) -> ResidentHistory {
    let recent: Vec<&AlertRow> = recent
        .iter()
        .filter(|a| a.resident_id.as_ref().map(|r| r.as_str()) == Some(&status.id))
        .collect();
    let mut outcomes = BTreeMap::new();
    for outcome in recent.iter().filter_map(|a| a.outcome) {
        *outcomes.entry(outcome.as_str().to_owned()).or_insert(0) += 1;
    }
    ResidentHistory {
        id: status.id.clone(),
        name: status.name.clone(),
        caseworker: status.caseworker.clone(),
        open_alerts: status.open_alerts,
        highest_severity: status.highest_severity.clone(),
        alerts: count(recent.len()),
        outcomes,
        // Newest first: the first is the latest.
        last_alert_at: recent.first().map(|a| timestamp(a.opened_at)),
    }
}

/// The caller's region at a glance.
#[utoipa::path(
    get,
    path = "/api/v1/overview",
    responses(
        (status = 200, description = "The overview of the caller's region", body = Overview),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Only supervisors and admins have an overview", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "overview"
)]
pub async fn overview(ctx: Ctx) -> Result<Json<Overview>, ApiError> {
    ctx.audited(None, |store, principal, now| {
        if !matches!(principal.role, StaffRole::Supervisor | StaffRole::Admin) {
            return Err(ApiError::Forbidden(format!(
                "the overview is for supervisors and admins; a {} sees their residents \
                 in /residents and /alerts",
                principal.role.as_str()
            )));
        }
        let scope = principal.resident_scope()?;
        let board = Board::load(store)?;
        let names = names_in_scope(&board.roster, &scope);
        let open: Vec<&AlertRow> = board
            .alerts
            .iter()
            .filter(|a| visible(a, &scope, &names))
            .collect();

        let mut escalated: Vec<&AlertRow> = open
            .iter()
            .copied()
            .filter(|a| a.status == AlertStatus::Open && a.escalations > 0)
            .collect();
        escalated.sort_by_key(|a| (-severity_rank(a.severity), a.opened_at, a.id));

        let statuses: Vec<ResidentStatus> = scope
            .residents(&board.roster)
            .into_iter()
            .map(|r| board.status(r, now))
            .collect();

        let mut unseen: Vec<UnseenResident> = statuses
            .iter()
            .filter_map(|s| {
                let reasons = unseen_reasons(s, &open);
                (!reasons.is_empty()).then(|| UnseenResident {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    caseworker: s.caseworker.clone(),
                    away: s.away,
                    reasons,
                    last_heard_at: s
                        .devices
                        .iter()
                        .filter_map(|d| d.last_seen_at.clone())
                        .max(),
                })
            })
            .collect();
        // RFC 3339 UTC strings of one format sort as times; never heard first.
        unseen.sort_by(|a, b| {
            a.last_heard_at
                .cmp(&b.last_heard_at)
                .then_with(|| a.name.cmp(&b.name))
        });

        let mut low_battery: Vec<LowBatteryDevice> = statuses
            .iter()
            .flat_map(|s| {
                s.devices
                    .iter()
                    .filter(|d| d.battery_low)
                    .map(|d| LowBatteryDevice {
                        resident_id: s.id.clone(),
                        resident_name: s.name.clone(),
                        device: d.clone(),
                    })
            })
            .collect();
        low_battery.sort_by(|a, b| {
            a.device
                .battery_pct
                .cmp(&b.device.battery_pct)
                .then_with(|| a.device.id.cmp(&b.device.id))
        });

        let since = now
            .checked_sub(SignedDuration::from_hours(24 * i64::from(HISTORY_DAYS)))
            .unwrap_or(Timestamp::MIN);
        let ids: Vec<String> = statuses.iter().map(|s| s.id.clone()).collect();
        let recent = store
            .resident_alerts_since(
                (!matches!(scope, Scope::All)).then_some(ids.as_slice()),
                since,
            )
            .map_err(ApiError::store("reading recent alerts"))?;
        let mut history: Vec<ResidentHistory> =
            statuses.iter().map(|s| history(s, &recent)).collect();
        let rank = |h: &ResidentHistory| {
            h.highest_severity
                .as_deref()
                .and_then(Severity::parse)
                .map_or(-1, severity_rank)
        };
        history.sort_by(|a, b| {
            rank(b)
                .cmp(&rank(a))
                .then_with(|| b.alerts.cmp(&a.alerts))
                .then_with(|| a.name.cmp(&b.name))
        });

        let overview = Overview {
            region: match &scope {
                Scope::Region(region) => Some(region.clone()),
                _ => None,
            },
            generated_at: timestamp(now),
            residents: count(statuses.len()),
            open_alerts: open_alerts(&open, now),
            escalations_waiting: escalated
                .iter()
                .map(|a| alert_json(a, &names, now))
                .collect(),
            unseen_residents: unseen,
            low_battery_pct: LOW_BATTERY_PCT,
            low_battery,
            history_days: HISTORY_DAYS,
            history,
        };
        Ok(Audited::new(overview, ids))
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_split_at_15_min_1_h_and_1_day() {
        let now = Timestamp::from_second(1_795_737_600).unwrap_or(Timestamp::UNIX_EPOCH);
        let row = |minutes: i64, status: AlertStatus| AlertRow {
            id: minutes,
            rule: Rule::Inactivity,
            subject: ondol_model::alert::Subject::System,
            resident_id: None,
            device_id: None,
            episode: String::new(),
            severity: Severity::Alarm,
            cause: Cause::NoActivity,
            detail: None,
            status,
            outcome: None,
            local_date: None,
            opened_at: now - SignedDuration::from_mins(minutes),
            updated_at: now,
            acked_at: None,
            acked_by: None,
            resolved_at: None,
            resolved_by: None,
            escalations: 0,
            next_escalation_at: None,
            events: 0,
        };
        let rows = [
            row(0, AlertStatus::Open),
            row(14, AlertStatus::Open),
            row(15, AlertStatus::Acknowledged),
            row(59, AlertStatus::Open),
            row(60, AlertStatus::Open),
            row(24 * 60 - 1, AlertStatus::Acknowledged),
            row(24 * 60, AlertStatus::Open),
        ];
        let refs: Vec<&AlertRow> = rows.iter().collect();
        let counted = open_alerts(&refs, now);
        assert_eq!(
            (counted.total, counted.unacknowledged, counted.system),
            (7, 5, 7)
        );
        let tiers: Vec<&str> = counted
            .by_tier
            .iter()
            .map(|t| t.severity.as_str())
            .collect();
        assert_eq!(tiers, ["critical", "danger", "alarm", "caution", "low"]);
        let alarm = &counted.by_tier[2];
        assert_eq!(
            (
                alarm.under_15_min,
                alarm.under_1_h,
                alarm.under_24_h,
                alarm.older
            ),
            (2, 2, 2, 1)
        );
        assert_eq!((alarm.total, alarm.unacknowledged), (7, 5));
        assert!(
            counted
                .by_tier
                .iter()
                .filter(|t| t.severity != "alarm")
                .all(|t| t.total == 0)
        );
    }
}
