//! The status board (`GET /residents`), one resident, and a resident's
//! readings.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use ondol_model::alert::Severity;
use ondol_model::roster::{Resident, Roster};
use ondol_model::{ReadingType, ReadingValue, ResidentId};
use ondol_store::alerts::AlertRow;
use ondol_store::{DeviceStateRow, ReadingCursor, ReadingsQuery, ResidentActivityRow, Store};

use crate::auth::{Principal, Scope};
use crate::context::{Audited, Ctx};
use crate::cursor;
use crate::error::{ApiError, ErrorBody};
use crate::routes::alerts::timestamp;
use crate::state::ReadingsBackend;

/// One resident on the status board.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentStatus {
    pub id: String,
    pub name: String,
    pub region: String,
    /// IANA time zone.
    pub timezone: String,
    pub caseworker: Option<String>,
    /// Whether today (in the resident's time zone) is in an away period.
    pub away: bool,
    #[schema(format = DateTime)]
    pub last_activity_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_checkin_at: Option<String>,
    /// Open and acknowledged alerts.
    pub open_alerts: u32,
    /// The highest severity among them.
    pub highest_severity: Option<String>,
    /// The devices bound to the resident now.
    pub devices: Vec<DeviceStatus>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceStatus {
    pub id: String,
    /// gateway, wearable, button or sensor.
    pub kind: String,
    /// From the device's last status message; null before the first.
    pub online: Option<bool>,
    /// The last time anything (a reading or a status) arrived from it.
    #[schema(format = DateTime)]
    pub last_seen_at: Option<String>,
    pub battery_pct: Option<u8>,
    /// Whether `battery_pct` is at or below the low-battery threshold
    /// (20 %); false while unknown.
    pub battery_low: bool,
}

/// A battery at or below this share is low: the board marks it and the
/// supervisor's overview lists the device. Devices report their charge in
/// their status messages; at 20 % a typical wearable or button has a few
/// days left, time enough for a caseworker's visit to change it.
pub const LOW_BATTERY_PCT: u8 = 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentList {
    pub items: Vec<ResidentStatus>,
}

/// One reading. Numeric readings carry `value`, blood pressure `systolic`
/// and `diastolic`, checkin, door and fall `text`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingItem {
    #[schema(format = DateTime)]
    pub at: String,
    pub device_id: String,
    #[serde(rename = "type")]
    pub reading_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systolic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diastolic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The canonical unit (UCUM), null for unitless types.
    pub unit: Option<String>,
    pub sensor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingPage {
    /// Oldest first.
    pub items: Vec<ReadingItem>,
    pub next_cursor: Option<String>,
}

/// Everything the board (and the supervisor's overview) needs, read once
/// per request.
pub(crate) struct Board {
    pub(crate) roster: Roster,
    activity: HashMap<String, ResidentActivityRow>,
    devices: HashMap<String, DeviceStateRow>,
    /// Open and acknowledged alerts, of everyone (system alerts too).
    pub(crate) alerts: Vec<AlertRow>,
}

impl Board {
    pub(crate) fn load(store: &Store) -> Result<Board, ApiError> {
        Ok(Board {
            roster: store
                .load_roster()
                .map_err(ApiError::store("reading the roster"))?,
            activity: store
                .all_resident_activity()
                .map_err(ApiError::store("reading resident activity"))?
                .into_iter()
                .map(|a| (a.resident_id.to_string(), a))
                .collect(),
            devices: store
                .all_device_states()
                .map_err(ApiError::store("reading device states"))?
                .into_iter()
                .map(|d| (d.device_id.to_string(), d))
                .collect(),
            alerts: store
                .unresolved_alerts()
                .map_err(ApiError::store("reading open alerts"))?,
        })
    }

    pub(crate) fn status(&self, resident: &Resident, now: Timestamp) -> ResidentStatus {
        let today = now.to_zoned(resident.timezone.clone()).date();
        let activity = self.activity.get(resident.id.as_str());
        let open: Vec<&AlertRow> = self
            .alerts
            .iter()
            .filter(|a| a.resident_id.as_ref() == Some(&resident.id))
            .collect();
        let devices = self
            .roster
            .devices
            .iter()
            .filter(|d| d.active && d.resident_at(now) == Some(&resident.id))
            .map(|d| {
                let state = self.devices.get(d.id.as_str());
                let seen = state.and_then(|s| s.last_seen_at.max(s.last_status_at));
                DeviceStatus {
                    id: d.id.to_string(),
                    kind: d.kind.as_str().to_owned(),
                    online: state.and_then(|s| s.online),
                    last_seen_at: seen.map(timestamp),
                    battery_pct: state.and_then(|s| s.battery_pct),
                    battery_low: state
                        .and_then(|s| s.battery_pct)
                        .is_some_and(|pct| pct <= LOW_BATTERY_PCT),
                }
            })
            .collect();
        ResidentStatus {
            id: resident.id.to_string(),
            name: resident.name.clone(),
            region: resident.region.clone(),
            timezone: resident.timezone_name.clone(),
            caseworker: resident.caseworker.as_ref().map(ToString::to_string),
            away: resident
                .away
                .iter()
                .any(|a| a.from <= today && today <= a.until),
            last_activity_at: activity.and_then(|a| a.last_activity_at).map(timestamp),
            last_checkin_at: activity.and_then(|a| a.last_checkin_at).map(timestamp),
            open_alerts: u32::try_from(open.len()).unwrap_or(u32::MAX),
            highest_severity: open
                .iter()
                .map(|a| a.severity)
                .max()
                .map(|s| s.as_str().to_owned()),
            devices,
        }
    }
}

/// The resident `id` if it exists and is in the caller's scope.
pub(crate) fn resident_in_scope<'r>(
    roster: &'r Roster,
    scope: &Scope,
    id: &str,
) -> Result<&'r Resident, ApiError> {
    roster
        .residents
        .iter()
        .find(|r| r.id.as_str() == id && scope.covers(r))
        .ok_or_else(ApiError::no_resident)
}

pub(crate) fn path_resident(id: Result<Path<String>, PathRejection>) -> Option<String> {
    id.ok().map(|Path(id)| id)
}

/// The caller's residents, most urgent first (highest open alert severity,
/// then name).
#[utoipa::path(
    get,
    path = "/api/v1/residents",
    responses(
        (status = 200, description = "The status board", body = ResidentList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no resident data", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "residents"
)]
pub async fn list(ctx: Ctx) -> Result<Json<ResidentList>, ApiError> {
    ctx.audited(None, |store, principal, now| {
        let scope = principal.resident_scope()?;
        let board = Board::load(store)?;
        let mut items: Vec<ResidentStatus> = scope
            .residents(&board.roster)
            .into_iter()
            .map(|r| board.status(r, now))
            .collect();
        let rank = |s: &ResidentStatus| {
            s.highest_severity
                .as_deref()
                .and_then(Severity::parse)
                .map(ondol_store::api_rows::severity_rank)
                .unwrap_or(-1)
        };
        items.sort_by(|a, b| rank(b).cmp(&rank(a)).then_with(|| a.name.cmp(&b.name)));
        let shown = items.iter().map(|s| s.id.clone()).collect();
        Ok(Audited::new(ResidentList { items }, shown))
    })
    .await
    .map(Json)
}

/// One resident's status.
#[utoipa::path(
    get,
    path = "/api/v1/residents/{id}",
    params(("id" = String, Path, description = "Resident id")),
    responses(
        (status = 200, description = "The resident's status", body = ResidentStatus),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no resident data", body = ErrorBody),
        (status = 404, description = "No such resident in the caller's scope", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "residents"
)]
pub async fn get(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ResidentStatus>, ApiError> {
    let id = path_resident(id);
    ctx.audited(id.clone(), move |store, principal, now| {
        let scope = principal.resident_scope()?;
        let id = id.ok_or_else(ApiError::no_resident)?;
        let board = Board::load(store)?;
        let resident = resident_in_scope(&board.roster, &scope, &id)?;
        let status = board.status(resident, now);
        Ok(Audited::new(status, vec![id]))
    })
    .await
    .map(Json)
}

/// The parsed query of the readings endpoint (and of the FHIR export).
pub(crate) struct ReadingsParams {
    pub(crate) types: Vec<ReadingType>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    limit: Option<i64>,
    cursor: Option<String>,
}

impl ReadingsParams {
    /// `from <= ts < to`: `to` defaults to now, `from` to 7 days before `to`.
    pub(crate) fn range(&self, now: Timestamp) -> Result<(Timestamp, Timestamp), ApiError> {
        let to = self.to.unwrap_or(now);
        let from = match self.from {
            Some(from) => from,
            None => to
                .checked_sub(SignedDuration::from_hours(7 * 24))
                .unwrap_or(Timestamp::MIN),
        };
        if from > to {
            return Err(ApiError::BadRequest("from is after to".into()));
        }
        Ok((from, to))
    }
}

fn readings_params(pairs: Vec<(String, String)>) -> Result<ReadingsParams, ApiError> {
    let mut out = ReadingsParams {
        types: Vec::new(),
        from: None,
        to: None,
        limit: None,
        cursor: None,
    };
    let time = |key: &str, value: &str| {
        value.parse::<Timestamp>().map_err(|_| {
            ApiError::BadRequest(format!(
                "{key} must be an RFC 3339 time such as 2026-11-27T01:00:00Z"
            ))
        })
    };
    for (key, value) in pairs {
        match key.as_str() {
            "type" => {
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let t = ReadingType::parse(name).ok_or_else(|| {
                        ApiError::BadRequest(format!("unknown reading type {name:?}"))
                    })?;
                    if !out.types.contains(&t) {
                        out.types.push(t);
                    }
                }
            }
            "from" => out.from = Some(time("from", &value)?),
            "to" => out.to = Some(time("to", &value)?),
            "limit" => {
                out.limit =
                    Some(value.parse().map_err(|_| {
                        ApiError::BadRequest("limit must be a whole number".into())
                    })?);
            }
            "cursor" => out.cursor = Some(value),
            // Unknown parameters are ignored, as the other endpoints do.
            _ => {}
        }
    }
    Ok(out)
}

/// The checks every request for a resident's readings makes, in order: a
/// role that may see resident data, a resident in scope (404 otherwise,
/// like a missing one), valid parameters, readings kept here. Answers the
/// resident id and the parsed parameters.
pub(crate) fn readings_request(
    store: &Store,
    principal: &Principal,
    id: Option<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    backend: ReadingsBackend,
) -> Result<(String, ReadingsParams), ApiError> {
    let scope = principal.resident_scope()?;
    let id = id.ok_or_else(ApiError::no_resident)?;
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let params = readings_params(pairs)?;
    let roster = store
        .load_roster()
        .map_err(ApiError::store("reading the roster"))?;
    resident_in_scope(&roster, &scope, &id)?;
    if let ReadingsBackend::Elsewhere(why) = backend {
        return Err(ApiError::NotImplemented(why));
    }
    Ok((id, params))
}

/// How the JSON carries a stored value.
fn reading_item(stored: &ondol_store::StoredReading) -> ReadingItem {
    let reading = &stored.reading;
    let (mut value, mut systolic, mut diastolic, mut text) = (None, None, None, None);
    match reading.value {
        ReadingValue::Number(n) => value = Some(n),
        ReadingValue::BloodPressure {
            systolic: s,
            diastolic: d,
        } => {
            systolic = Some(s);
            diastolic = Some(d);
        }
        ReadingValue::Motion(moved) => value = Some(if moved { 1.0 } else { 0.0 }),
        ReadingValue::Score(score) => value = Some(f64::from(score)),
        ReadingValue::Door(ondol_model::DoorState::Open) => text = Some("open".to_owned()),
        ReadingValue::Door(ondol_model::DoorState::Closed) => text = Some("closed".to_owned()),
        ReadingValue::Checkin(ondol_model::CheckinValue::Ok) => text = Some("ok".to_owned()),
        ReadingValue::Checkin(ondol_model::CheckinValue::Help) => text = Some("help".to_owned()),
        ReadingValue::Fall => text = Some("true".to_owned()),
    }
    ReadingItem {
        at: timestamp(reading.ts),
        device_id: stored.device_id.to_string(),
        reading_type: reading.reading_type.as_str().to_owned(),
        value,
        systolic,
        diastolic,
        text,
        unit: reading.reading_type.canonical_unit().map(str::to_owned),
        sensor: reading.sensor.clone(),
    }
}

/// The readings the resident's devices sent, by type and time range.
#[utoipa::path(
    get,
    path = "/api/v1/residents/{id}/readings",
    params(
        ("id" = String, Path, description = "Resident id"),
        ("type" = Option<String>, Query, description = "Reading types, comma-separated or repeated (default: all)"),
        ("from" = Option<String>, Query, description = "RFC 3339; default 7 days before `to`"),
        ("to" = Option<String>, Query, description = "RFC 3339, exclusive; default now"),
        ("limit" = Option<i64>, Query, description = "Page size (default 1000)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of readings, oldest first", body = ReadingPage),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Evaluators see no resident data", body = ErrorBody),
        (status = 404, description = "No such resident in the caller's scope", body = ErrorBody),
        (status = 501, description = "Raw readings are kept in InfluxDB", body = ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "residents"
)]
pub async fn readings(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ReadingPage>, ApiError> {
    let id = path_resident(id);
    let backend = ctx.state().readings().clone();
    let max = ctx.state().config().max_page_items;
    ctx.audited(id.clone(), move |store, principal, now| {
        let (id, params) = readings_request(store, principal, id, query, backend)?;
        let (from, to) = params.range(now)?;
        let limit = cursor::limit(params.limit, 1000, max)?;
        let after = params
            .cursor
            .as_deref()
            .map(cursor::decode::<(i64, String, String, String)>)
            .transpose()?
            .map(|(ts_ms, device_id, reading_type, sensor)| ReadingCursor {
                ts_ms,
                device_id,
                reading_type,
                sensor,
            });
        let resident = ResidentId::new(id.clone()).map_err(|_| ApiError::no_resident())?;
        let page = store
            .readings_for_resident(&ReadingsQuery {
                resident: &resident,
                types: &params.types,
                from,
                to,
                after: after.as_ref(),
                limit,
            })
            .map_err(ApiError::store("reading a resident's readings"))?;
        let next_cursor = page
            .next
            .and_then(|c| cursor::encode(&(c.ts_ms, c.device_id, c.reading_type, c.sensor)));
        let items = page.items.iter().map(reading_item).collect();
        Ok(Audited::new(ReadingPage { items, next_cursor }, vec![id]))
    })
    .await
    .map(Json)
}
