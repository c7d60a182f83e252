//! `GET /alerts`, `GET /alerts/{id}`, `POST /alerts/{id}/ack|resolve`.
//!
//! Acknowledging and resolving go through the same store functions as
//! `ondol alerts ack|resolve`, with the caller's staff id as the actor: the
//! alerting engine reads the alert back before it escalates, so an
//! acknowledgement here stops escalation at once.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use ondol_model::alert::{Outcome, Rule};
use ondol_model::roster::Roster;
use ondol_store::Store;
use ondol_store::alerts::{AlertRow, CommandRefused, Transition};
use ondol_store::api_rows::{AlertList, AlertPosition, AlertsQuery, alert_position};

use crate::auth::{Principal, Scope};
use crate::context::{Audited, Ctx};
use crate::cursor;
use crate::error::{ApiError, ErrorBody};

/// An alert as the dashboard shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Alert {
    pub id: i64,
    /// missed_checkin, inactivity, help_request, device_offline,
    /// vital_out_of_band or system_outage.
    pub rule: String,
    /// low, caution, alarm, danger or critical (the dashboard's tier).
    pub severity: String,
    /// Why it fired, e.g. `no_checkin`, `no_data`.
    pub cause: String,
    /// What happened, for people (a system alert: which part of Ondol
    /// stopped and for how long); null for most alerts.
    pub detail: Option<String>,
    /// open, acknowledged or resolved.
    pub status: String,
    pub resident_id: Option<String>,
    pub resident_name: Option<String>,
    pub device_id: Option<String>,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub opened_at: String,
    /// Seconds from opening until now, or until resolution.
    pub open_seconds: i64,
    pub escalations: u32,
    #[schema(format = DateTime)]
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub outcome: Option<String>,
}

/// An alert with its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: Alert,
    /// Every change, oldest first.
    pub transitions: Vec<AlertTransition>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertTransition {
    #[schema(format = DateTime)]
    pub at: String,
    /// A staff id, or `system`.
    pub actor: String,
    /// opened, raised, repeated, escalated, acknowledged, resolved.
    pub event: String,
    pub status: String,
    pub outcome: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<Alert>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsParams {
    /// active (open and acknowledged, the default), open, acknowledged or resolved.
    #[param(pattern = "^(active|open|acknowledged|resolved)$")]
    pub status: Option<String>,
    /// Only this resident's alerts.
    pub resident: Option<String>,
    /// Only this rule's alerts.
    pub rule: Option<String>,
    /// Page size, 1 to the server's maximum (default 50; larger is lowered).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AckBody {
    /// Kept with the transition.
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResolveBody {
    /// resident_ok, needed_help, emergency_services, hospitalised,
    /// false_alarm_device, false_alarm_behaviour or no_contact.
    pub outcome: String,
    pub note: Option<String>,
}

/// Longest note kept with a transition.
const MAX_NOTE_CHARS: usize = 2000;

pub(crate) fn timestamp(t: Timestamp) -> String {
    t.to_string()
}

/// The JSON of `row`, with the resident's name from `names`.
pub(crate) fn alert_json(row: &AlertRow, names: &HashMap<String, String>, now: Timestamp) -> Alert {
    let until = row.resolved_at.unwrap_or(now);
    Alert {
        id: row.id,
        rule: row.rule.as_str().to_owned(),
        severity: row.severity.as_str().to_owned(),
        cause: row.cause.to_string(),
        detail: row.detail.clone(),
        status: row.status.as_str().to_owned(),
        resident_id: row.resident_id.as_ref().map(ToString::to_string),
        resident_name: row
            .resident_id
            .as_ref()
            .and_then(|r| names.get(r.as_str()).cloned()),
        device_id: row.device_id.as_ref().map(ToString::to_string),
        opened_at: timestamp(row.opened_at),
        open_seconds: (until.as_second() - row.opened_at.as_second()).max(0),
        escalations: row.escalations,
        acknowledged_at: row.acked_at.map(timestamp),
        acknowledged_by: row.acked_by.clone(),
        resolved_at: row.resolved_at.map(timestamp),
        resolved_by: row.resolved_by.clone(),
        outcome: row.outcome.map(|o| o.as_str().to_owned()),
    }
}

fn transition_json(t: &Transition) -> AlertTransition {
    AlertTransition {
        at: timestamp(t.at),
        actor: t.actor.clone(),
        event: t.event.clone(),
        status: t.status.as_str().to_owned(),
        outcome: t.outcome.map(|o| o.as_str().to_owned()),
        note: t.note.clone(),
    }
}

/// Resident id → name, for the residents in scope.
pub(crate) fn names_in_scope(roster: &Roster, scope: &Scope) -> HashMap<String, String> {
    scope
        .residents(roster)
        .into_iter()
        .map(|r| (r.id.to_string(), r.name.clone()))
        .collect()
}

/// Whether the caller may see `alert`.
pub(crate) fn visible(alert: &AlertRow, scope: &Scope, names: &HashMap<String, String>) -> bool {
    match &alert.resident_id {
        Some(resident) => names.contains_key(resident.as_str()),
        None => scope.sees_system_alerts(),
    }
}

fn load_roster(store: &Store) -> Result<Roster, ApiError> {
    store
        .load_roster()
        .map_err(ApiError::store("reading the roster"))
}

/// The alert `id` if the caller may see it, else "no such alert".
fn alert_in_scope(
    store: &Store,
    principal: &Principal,
    id: i64,
) -> Result<(AlertRow, HashMap<String, String>), ApiError> {
    let scope = principal.resident_scope()?;
    let roster = load_roster(store)?;
    let names = names_in_scope(&roster, &scope);
    let alert = store
        .alert(id)
        .map_err(ApiError::store("reading an alert"))?
        .filter(|a| visible(a, &scope, &names))
        .ok_or_else(ApiError::no_alert)?;
    Ok((alert, names))
}

fn residents_of(alert: &AlertRow) -> Vec<String> {
    alert.resident_id.iter().map(ToString::to_string).collect()
}

fn path_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::BadRequest("the alert id must be an integer".into()))
}

/// The caller's alerts, most urgent first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    params(AlertsParams),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no alerts", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "alerts"
)]
pub async fn list(
    ctx: Ctx,
    params: Result<Query<AlertsParams>, QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    let max = ctx.state().config().max_page_items;
    ctx.audited(None, move |store, principal, now| {
        let scope = principal.resident_scope()?;
        let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let list = match params.status.as_deref() {
            None | Some("active") => AlertList::Active,
            Some("open") => AlertList::Open,
            Some("acknowledged") => AlertList::Acknowledged,
            Some("resolved") => AlertList::Resolved,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "status {other:?} is not one of active, open, acknowledged, resolved"
                )));
            }
        };
        let rule = params
            .rule
            .as_deref()
            .map(|r| {
                Rule::parse(r).ok_or_else(|| ApiError::BadRequest(format!("unknown rule {r:?}")))
            })
            .transpose()?;
        let limit = cursor::limit(params.limit, 50, max)?;
        let after = params
            .cursor
            .as_deref()
            .map(cursor::decode::<AlertPosition>)
            .transpose()?;
        let roster = load_roster(store)?;
        let names = names_in_scope(&roster, &scope);
        let residents: Vec<String> = match &params.resident {
            // A resident outside the scope yields nothing, like one that
            // does not exist.
            Some(resident) => names
                .contains_key(resident)
                .then(|| resident.clone())
                .into_iter()
                .collect(),
            None => names.keys().cloned().collect(),
        };
        let all_residents = matches!(scope, Scope::All) && params.resident.is_none();
        let mut rows = store
            .alerts_page(&AlertsQuery {
                list,
                residents: (!all_residents).then_some(residents.as_slice()),
                unattributed: scope.sees_system_alerts() && params.resident.is_none(),
                rule,
                after,
                limit,
            })
            .map_err(ApiError::store("listing alerts"))?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .and_then(|last| cursor::encode(&alert_position(list, last)))
        } else {
            None
        };
        let mut shown: Vec<String> = rows.iter().flat_map(residents_of).collect();
        shown.sort();
        shown.dedup();
        let items = rows
            .iter()
            .map(|row| alert_json(row, &names, now))
            .collect();
        Ok(Audited::new(AlertPage { items, next_cursor }, shown))
    })
    .await
    .map(Json)
}

/// One alert with its transitions.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    params(("id" = i64, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert", body = AlertDetail),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no alerts", body = ErrorBody),
        (status = 404, description = "No such alert in the caller's scope", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "alerts"
)]
pub async fn get(
    ctx: Ctx,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AlertDetail>, ApiError> {
    ctx.audited(None, move |store, principal, now| {
        let id = path_id(id)?;
        let (alert, names) = alert_in_scope(store, principal, id)?;
        let transitions = store
            .alert_transitions(id)
            .map_err(ApiError::store("reading alert transitions"))?;
        Ok(Audited::new(
            AlertDetail {
                alert: alert_json(&alert, &names, now),
                transitions: transitions.iter().map(transition_json).collect(),
            },
            residents_of(&alert),
        ))
    })
    .await
    .map(Json)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            ApiError::Unprocessable(format!("the body does not fit: {error}"))
        } else {
            ApiError::BadRequest(format!("the body is not JSON: {error}"))
        }
    })
}

fn note(note: Option<String>) -> Result<Option<String>, ApiError> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE_CHARS => Err(ApiError::Unprocessable(format!(
            "the note is longer than {MAX_NOTE_CHARS} characters"
        ))),
        Some(n) if n.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn refused(result: Result<AlertRow, CommandRefused>, verb: &str) -> Result<AlertRow, ApiError> {
    result.map_err(|refusal| match refusal {
        CommandRefused::NotFound => ApiError::no_alert(),
        CommandRefused::Status(status) => {
            ApiError::Conflict(format!("the alert is {status}; it cannot be {verb}"))
        }
    })
}

/// Acknowledge an open alert: you are on it, escalation stops.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/ack",
    params(("id" = i64, Path, description = "Alert id")),
    request_body(content = Option<AckBody>, description = "Optional note"),
    responses(
        (status = 200, description = "The alert, now acknowledged", body = Alert),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no alerts", body = ErrorBody),
        (status = 404, description = "No such alert in the caller's scope", body = ErrorBody),
        (status = 409, description = "The alert is not open", body = ErrorBody),
        (status = 422, description = "The body does not fit", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "alerts"
)]
pub async fn ack(
    ctx: Ctx,
    id: Result<Path<i64>, PathRejection>,
    body: Bytes,
) -> Result<Json<Alert>, ApiError> {
    ctx.audited(None, move |store, principal, now| {
        let id = path_id(id)?;
        let (_, names) = alert_in_scope(store, principal, id)?;
        let body: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
            AckBody::default()
        } else {
            parse_body(&body)?
        };
        let note = note(body.note)?;
        let row = store
            .acknowledge_alert(id, principal.id.as_str(), now, note.as_deref())
            .map_err(ApiError::store("acknowledging an alert"))?;
        let row = refused(row, "acknowledged")?;
        Ok(Audited::new(
            alert_json(&row, &names, now),
            residents_of(&row),
        ))
    })
    .await
    .map(Json)
}

/// Resolve an open or acknowledged alert with its outcome.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/resolve",
    params(("id" = i64, Path, description = "Alert id")),
    request_body(content = ResolveBody),
    responses(
        (status = 200, description = "The alert, now resolved", body = Alert),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no alerts", body = ErrorBody),
        (status = 404, description = "No such alert in the caller's scope", body = ErrorBody),
        (status = 409, description = "The alert is already resolved", body = ErrorBody),
        (status = 422, description = "Unknown outcome, or cleared_by_resident", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "alerts"
)]
pub async fn resolve(
    ctx: Ctx,
    id: Result<Path<i64>, PathRejection>,
    body: Bytes,
) -> Result<Json<Alert>, ApiError> {
    ctx.audited(None, move |store, principal, now| {
        let id = path_id(id)?;
        let (_, names) = alert_in_scope(store, principal, id)?;
        let body: ResolveBody = parse_body(&body)?;
        let outcome =
            Outcome::parse_staff_choice(&body.outcome).map_err(ApiError::Unprocessable)?;
        let note = note(body.note)?;
        let row = store
            .resolve_alert(id, principal.id.as_str(), outcome, now, note.as_deref())
            .map_err(ApiError::store("resolving an alert"))?;
        let row = refused(row, "resolved")?;
        Ok(Audited::new(
            alert_json(&row, &names, now),
            residents_of(&row),
        ))
    })
    .await
    .map(Json)
}
