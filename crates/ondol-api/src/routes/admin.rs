//! `/api/v1/admin/...`: the registry (residents, devices, staff, caseworker
//! assignments, away periods), admins only. Changes are persisted in the
//! store through `Store::admin_upsert`: a later roster file import leaves
//! the changed entries alone, and the roster version goes up so the broker's
//! access list and ingest's device index reload (within
//! `mqtt.access_reload_interval`). Nothing is deleted here: a resident
//! leaves through `enrolled_until`, a device through `active: false`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ondol_model::roster::{
    AwayPeriod, CheckinPlan, CheckinWindow, Device, DeviceBinding, DeviceKind, Resident, Roster,
    Staff, StaffRole,
};
use ondol_model::{DeviceId, ResidentId, StaffId};
use ondol_store::Store;

use crate::auth::Principal;
use crate::context::{Audited, Ctx};
use crate::error::{ApiError, ErrorBody};
use crate::routes::alerts::timestamp;

/// A resident as the registry holds them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminResident {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub region: String,
    /// YYYY-MM-DD.
    pub enrolled_from: String,
    pub enrolled_until: Option<String>,
    pub caseworker: Option<String>,
    pub checkin: CheckinBody,
    pub away: Vec<AwayBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinBody {
    /// Local "HH:MM-HH:MM", or "none" for no daily check-in.
    pub window: String,
    /// Whether any activity inside the window counts as a check-in.
    #[serde(default)]
    pub passive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwayBody {
    /// First day away, YYYY-MM-DD.
    pub from: String,
    /// Last day away (included), YYYY-MM-DD.
    pub until: String,
    pub reason: Option<String>,
}

/// A resident to create or replace (`PUT /admin/residents/{id}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResidentBody {
    pub name: String,
    /// IANA time zone, e.g. Asia/Seoul.
    pub timezone: String,
    pub region: String,
    pub enrolled_from: String,
    pub enrolled_until: Option<String>,
    /// A staff id with the caseworker role.
    pub caseworker: Option<String>,
    /// Default: 06:00-10:00, not passive.
    pub checkin: Option<CheckinBody>,
    /// Default: none (replaces the stored ones).
    #[serde(default)]
    pub away: Vec<AwayBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentBody {
    /// A staff id with the caseworker role, or null for none.
    pub caseworker: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwayListBody {
    /// Replaces the resident's away periods.
    pub periods: Vec<AwayBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminResidentList {
    pub items: Vec<AdminResident>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminDevice {
    pub id: String,
    /// gateway, wearable, button or sensor.
    pub kind: String,
    pub active: bool,
    /// The resident it is bound to now.
    pub resident: Option<String>,
    pub bindings: Vec<BindingOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BindingOut {
    pub resident: String,
    pub from: Option<String>,
    pub until: Option<String>,
}

/// A device to create or change (`PUT /admin/devices/{id}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    pub kind: String,
    /// The resident it watches from now on (earlier readings stay with the
    /// resident it watched then).
    pub resident: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminDeviceList {
    pub items: Vec<AdminDevice>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminStaff {
    pub id: String,
    pub name: String,
    pub role: String,
    pub region: Option<String>,
    /// The environment variable holding the bearer token (never the token).
    pub token_env: Option<String>,
}

/// A staff member to create or change (`PUT /admin/staff/{id}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffBody {
    pub name: String,
    /// caseworker, supervisor, evaluator or admin.
    pub role: String,
    /// Supervisors: the region overseen (null = all).
    pub region: Option<String>,
    /// The environment variable of `ondol run` holding the bearer token.
    pub token_env: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminStaffList {
    pub items: Vec<AdminStaff>,
}

fn admin(principal: &Principal) -> Result<(), ApiError> {
    principal.require(&[StaffRole::Admin])
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(message.into())
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() {
            unprocessable(format!("the body does not fit: {error}"))
        } else {
            ApiError::BadRequest(format!("the body is not JSON: {error}"))
        }
    })
}

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::BadRequest("invalid id in the path".into()))
}

fn date(key: &str, text: &str) -> Result<Date, ApiError> {
    text.parse()
        .map_err(|_| unprocessable(format!("{key} must be a date such as 2026-01-31")))
}

fn non_empty(key: &str, text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(unprocessable(format!("{key} must be 1 to 200 characters")));
    }
    Ok(text.to_owned())
}

fn load(store: &Store) -> Result<Roster, ApiError> {
    store
        .load_roster()
        .map_err(ApiError::store("reading the roster"))
}

fn resident_json(r: &Resident) -> AdminResident {
    AdminResident {
        id: r.id.to_string(),
        name: r.name.clone(),
        timezone: r.timezone_name.clone(),
        region: r.region.clone(),
        enrolled_from: r.enrolled_from.to_string(),
        enrolled_until: r.enrolled_until.map(|d| d.to_string()),
        caseworker: r.caseworker.as_ref().map(ToString::to_string),
        checkin: CheckinBody {
            window: r.checkin.window.map_or_else(
                || "none".to_owned(),
                |w| format!("{}-{}", w.start.strftime("%H:%M"), w.end.strftime("%H:%M")),
            ),
            passive: r.checkin.passive,
        },
        away: r
            .away
            .iter()
            .map(|a| AwayBody {
                from: a.from.to_string(),
                until: a.until.to_string(),
                reason: a.reason.clone(),
            })
            .collect(),
    }
}

fn device_json(d: &Device, now: Timestamp) -> AdminDevice {
    AdminDevice {
        id: d.id.to_string(),
        kind: d.kind.as_str().to_owned(),
        active: d.active,
        resident: d.resident_at(now).map(ToString::to_string),
        bindings: d
            .bindings
            .iter()
            .map(|b| BindingOut {
                resident: b.resident.to_string(),
                from: b.from.map(timestamp),
                until: b.until.map(timestamp),
            })
            .collect(),
    }
}

fn staff_json(s: &Staff) -> AdminStaff {
    AdminStaff {
        id: s.id.to_string(),
        name: s.name.clone(),
        role: s.role.as_str().to_owned(),
        region: s.region.clone(),
        token_env: s.token_env.clone(),
    }
}

fn checkin_plan(body: Option<&CheckinBody>) -> Result<CheckinPlan, ApiError> {
    let Some(body) = body else {
        return Ok(CheckinPlan::default());
    };
    if body.window.trim() == "none" {
        return Ok(CheckinPlan {
            window: None,
            passive: body.passive,
        });
    }
    let bad =
        || unprocessable("checkin.window must be \"HH:MM-HH:MM\" (start before end) or \"none\"");
    let (start, end) = body.window.split_once('-').ok_or_else(bad)?;
    let start: Time = start.trim().parse().map_err(|_| bad())?;
    let end: Time = end.trim().parse().map_err(|_| bad())?;
    if start >= end {
        return Err(bad());
    }
    Ok(CheckinPlan {
        window: Some(CheckinWindow { start, end }),
        passive: body.passive,
    })
}

fn away_periods(periods: &[AwayBody]) -> Result<Vec<AwayPeriod>, ApiError> {
    periods
        .iter()
        .map(|p| {
            let from = date("away.from", &p.from)?;
            let until = date("away.until", &p.until)?;
            if from > until {
                return Err(unprocessable("an away period's from is after its until"));
            }
            Ok(AwayPeriod {
                from,
                until,
                reason: p.reason.clone(),
            })
        })
        .collect()
}

/// The caseworker named, if they are a caseworker on the roster.
fn caseworker(roster: &Roster, id: Option<&str>) -> Result<Option<StaffId>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    roster
        .staff
        .iter()
        .find(|s| s.id.as_str() == id && s.role == StaffRole::Caseworker)
        .map(|s| Some(s.id.clone()))
        .ok_or_else(|| unprocessable(format!("{id:?} is not a caseworker on the roster")))
}

fn save(store: &mut Store, changes: Roster, now: Timestamp) -> Result<(), ApiError> {
    store
        .admin_upsert(&changes, now)
        .map_err(ApiError::store("saving an admin change"))
}

fn stored_resident(store: &Store, id: &str) -> Result<Resident, ApiError> {
    load(store)?
        .residents
        .into_iter()
        .find(|r| r.id.as_str() == id)
        .ok_or_else(ApiError::no_resident)
}

/// Every resident of the registry.
#[utoipa::path(get, path = "/api/v1/admin/residents",
    responses(
        (status = 200, description = "The residents", body = AdminResidentList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn residents(ctx: Ctx) -> Result<Json<AdminResidentList>, ApiError> {
    ctx.audited(None, |store, principal, _| {
        admin(principal)?;
        let roster = load(store)?;
        let shown = roster.residents.iter().map(|r| r.id.to_string()).collect();
        let items = roster.residents.iter().map(resident_json).collect();
        Ok(Audited::new(AdminResidentList { items }, shown))
    })
    .await
    .map(Json)
}

/// Create or replace a resident.
#[utoipa::path(put, path = "/api/v1/admin/residents/{id}",
    params(("id" = String, Path, description = "Resident id")),
    request_body = ResidentBody,
    responses(
        (status = 200, description = "The resident as stored", body = AdminResident),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 422, description = "Invalid values", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn put_resident(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<AdminResident>, ApiError> {
    let attempted = id.as_ref().ok().map(|Path(id)| id.clone());
    ctx.audited(attempted, move |store, principal, now| {
        admin(principal)?;
        let id = path_id(id)?;
        let body: ResidentBody = body(&bytes)?;
        let resident_id =
            ResidentId::new(id.clone()).map_err(|e| unprocessable(format!("resident id: {e}")))?;
        let timezone = TimeZone::get(&body.timezone)
            .map_err(|_| unprocessable(format!("{:?} is not an IANA time zone", body.timezone)))?;
        let roster = load(store)?;
        let enrolled_from = date("enrolled_from", &body.enrolled_from)?;
        let enrolled_until = body
            .enrolled_until
            .as_deref()
            .map(|d| date("enrolled_until", d))
            .transpose()?;
        if enrolled_until.is_some_and(|u| u < enrolled_from) {
            return Err(unprocessable("enrolled_until is before enrolled_from"));
        }
        let resident = Resident {
            id: resident_id,
            name: non_empty("name", &body.name)?,
            timezone_name: body.timezone.clone(),
            timezone,
            region: non_empty("region", &body.region)?,
            enrolled_from,
            enrolled_until,
            caseworker: caseworker(&roster, body.caseworker.as_deref())?,
            checkin: checkin_plan(body.checkin.as_ref())?,
            away: away_periods(&body.away)?,
        };
        save(
            store,
            Roster {
                residents: vec![resident],
                ..Roster::default()
            },
            now,
        )?;
        let stored = stored_resident(store, &id)?;
        Ok(Audited::new(resident_json(&stored), vec![id]))
    })
    .await
    .map(Json)
}

/// Assign a caseworker to a resident (or none).
#[utoipa::path(put, path = "/api/v1/admin/residents/{id}/caseworker",
    params(("id" = String, Path, description = "Resident id")),
    request_body = AssignmentBody,
    responses(
        (status = 200, description = "The resident as stored", body = AdminResident),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such resident", body = ErrorBody),
        (status = 422, description = "Not a caseworker", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn put_assignment(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<AdminResident>, ApiError> {
    change_resident(ctx, id, bytes, |store, resident, body: AssignmentBody| {
        resident.caseworker = caseworker(&load(store)?, body.caseworker.as_deref())?;
        Ok(())
    })
    .await
}

/// Replace a resident's away periods (their alert rules are suspended then).
#[utoipa::path(put, path = "/api/v1/admin/residents/{id}/away",
    params(("id" = String, Path, description = "Resident id")),
    request_body = AwayListBody,
    responses(
        (status = 200, description = "The resident as stored", body = AdminResident),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such resident", body = ErrorBody),
        (status = 422, description = "Invalid periods", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn put_away(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<AdminResident>, ApiError> {
    change_resident(ctx, id, bytes, |_, resident, body: AwayListBody| {
        resident.away = away_periods(&body.periods)?;
        Ok(())
    })
    .await
}

/// One change of a stored resident by an admin: the resident is read, the
/// body applied by `apply`, the result saved and answered as stored.
async fn change_resident<B: serde::de::DeserializeOwned + Send + 'static>(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
    apply: impl FnOnce(&Store, &mut Resident, B) -> Result<(), ApiError> + Send + 'static,
) -> Result<Json<AdminResident>, ApiError> {
    let attempted = id.as_ref().ok().map(|Path(id)| id.clone());
    ctx.audited(attempted, move |store, principal, now| {
        admin(principal)?;
        let id = path_id(id)?;
        let mut resident = stored_resident(store, &id)?;
        apply(store, &mut resident, body(&bytes)?)?;
        save(
            store,
            Roster {
                residents: vec![resident],
                ..Roster::default()
            },
            now,
        )?;
        let stored = stored_resident(store, &id)?;
        Ok(Audited::new(resident_json(&stored), vec![id]))
    })
    .await
    .map(Json)
}

/// Every device with its bindings.
#[utoipa::path(get, path = "/api/v1/admin/devices",
    responses(
        (status = 200, description = "The devices", body = AdminDeviceList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn devices(ctx: Ctx) -> Result<Json<AdminDeviceList>, ApiError> {
    ctx.audited(None, |store, principal, now| {
        admin(principal)?;
        let roster = load(store)?;
        let items = roster.devices.iter().map(|d| device_json(d, now)).collect();
        Ok(Audited::new(AdminDeviceList { items }, Vec::new()))
    })
    .await
    .map(Json)
}

/// Create a device or change its kind, activation or resident (from now on).
#[utoipa::path(put, path = "/api/v1/admin/devices/{id}",
    params(("id" = String, Path, description = "Device id")),
    request_body = DeviceBody,
    responses(
        (status = 200, description = "The device as stored", body = AdminDevice),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 422, description = "Invalid values", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn put_device(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<AdminDevice>, ApiError> {
    ctx.audited(None, move |store, principal, now| {
        admin(principal)?;
        let id = path_id(id)?;
        let body: DeviceBody = body(&bytes)?;
        let device_id =
            DeviceId::new(id.clone()).map_err(|e| unprocessable(format!("device id: {e}")))?;
        let kind = DeviceKind::parse(&body.kind)
            .ok_or_else(|| unprocessable("kind must be gateway, wearable, button or sensor"))?;
        let roster = load(store)?;
        let resident = roster
            .residents
            .iter()
            .find(|r| r.id.as_str() == body.resident)
            .ok_or_else(|| unprocessable(format!("no resident {:?}", body.resident)))?
            .id
            .clone();
        let existing = roster.devices.iter().find(|d| d.id == device_id);
        let rebind = existing.and_then(|d| d.resident_at(now)) != Some(&resident);
        let device = Device {
            id: device_id.clone(),
            kind,
            // A binding from now on; earlier ones are kept before it. A new
            // device watches its resident from the start.
            bindings: if !rebind {
                Vec::new()
            } else {
                vec![DeviceBinding {
                    resident: resident.clone(),
                    from: existing.map(|_| now),
                    until: None,
                }]
            },
            active: body.active,
            secret_env: existing.and_then(|d| d.secret_env.clone()),
        };
        save(
            store,
            Roster {
                devices: vec![device],
                ..Roster::default()
            },
            now,
        )?;
        let stored = load(store)?
            .devices
            .into_iter()
            .find(|d| d.id == device_id)
            .ok_or_else(|| ApiError::internal("reading a device back", "it is gone"))?;
        Ok(Audited::new(
            device_json(&stored, now),
            vec![resident.to_string()],
        ))
    })
    .await
    .map(Json)
}

/// A device's new secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedDeviceSecret {
    pub device_id: String,
    /// 256 random bits as 64 hex digits: the device's MQTT password. Ondol
    /// keeps only its Argon2id hash; it is never shown again.
    pub secret: String,
}

/// Issue a device a new secret, as `ondol device rotate-secret` does: the
/// old one stops working at once, a revoked device is reinstated.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/secret",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, description = "The new secret (shown once; not cached)", body = IssuedDeviceSecret),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such device", body = ErrorBody),
        (status = 501, description = "This process cannot issue secrets", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn post_device_secret(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let issuer = ctx.state().secret_issuer().cloned();
    ctx.audited(None, move |store, principal, now| {
        admin(principal)?;
        let id = path_id(id)?;
        let device_id =
            DeviceId::new(id).map_err(|_| ApiError::NotFound("no such device".into()))?;
        let issuer = issuer.ok_or_else(|| {
            ApiError::NotImplemented("this process cannot issue device secrets".into())
        })?;
        let issued =
            issuer().map_err(|error| ApiError::internal("issuing a device secret", error))?;
        let known = store
            .set_device_credential(&device_id, &issued.hash, now)
            .map_err(ApiError::store("storing a device credential"))?;
        if !known {
            return Err(ApiError::NotFound("no such device".into()));
        }
        let resident = load(store)?
            .devices
            .iter()
            .find(|d| d.id == device_id)
            .and_then(|d| d.resident_at(now))
            .map(|r| r.to_string());
        let answer = (
            // A secret must not linger in a cache on the way.
            [(header::CACHE_CONTROL, "no-store")],
            Json(IssuedDeviceSecret {
                device_id: device_id.to_string(),
                secret: issued.secret,
            }),
        )
            .into_response();
        Ok(Audited::new(answer, resident.into_iter().collect()))
    })
    .await
}

/// Every staff member (token variables, never tokens).
#[utoipa::path(get, path = "/api/v1/admin/staff",
    responses(
        (status = 200, description = "The staff", body = AdminStaffList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn staff(ctx: Ctx) -> Result<Json<AdminStaffList>, ApiError> {
    ctx.audited(None, |store, principal, _| {
        admin(principal)?;
        let items = load(store)?.staff.iter().map(staff_json).collect();
        Ok(Audited::new(AdminStaffList { items }, Vec::new()))
    })
    .await
    .map(Json)
}

/// Create or change a staff member. Their token is read from `token_env`
/// in the environment of `ondol run`, now.
#[utoipa::path(put, path = "/api/v1/admin/staff/{id}",
    params(("id" = String, Path, description = "Staff id")),
    request_body = StaffBody,
    responses(
        (status = 200, description = "The staff member as stored", body = AdminStaff),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 409, description = "An admin cannot remove their own admin role", body = ErrorBody),
        (status = 422, description = "Invalid values", body = ErrorBody),
    ),
    security(("bearer" = [])), tag = "admin")]
pub async fn put_staff(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<AdminStaff>, ApiError> {
    let state = ctx.state().clone();
    let (answer, staff) = ctx
        .audited(None, move |store, principal, now| {
            admin(principal)?;
            let id = path_id(id)?;
            let body: StaffBody = body(&bytes)?;
            let staff_id =
                StaffId::new(id.clone()).map_err(|e| unprocessable(format!("staff id: {e}")))?;
            let role = StaffRole::parse(&body.role).ok_or_else(|| {
                unprocessable("role must be caseworker, supervisor, evaluator or admin")
            })?;
            if staff_id == principal.id && role != StaffRole::Admin {
                return Err(ApiError::Conflict(
                    "an admin cannot take their own admin role away".into(),
                ));
            }
            let roster = load(store)?;
            if role != StaffRole::Caseworker
                && roster
                    .residents
                    .iter()
                    .any(|r| r.caseworker.as_ref() == Some(&staff_id))
            {
                return Err(ApiError::Conflict(
                    "residents are assigned to this caseworker; reassign them first".into(),
                ));
            }
            let member = Staff {
                id: staff_id.clone(),
                name: non_empty("name", &body.name)?,
                role,
                region: body
                    .region
                    .as_deref()
                    .map(|r| non_empty("region", r))
                    .transpose()?,
                token_env: body
                    .token_env
                    .as_deref()
                    .map(|t| non_empty("token_env", t))
                    .transpose()?,
            };
            save(
                store,
                Roster {
                    staff: vec![member],
                    ..Roster::default()
                },
                now,
            )?;
            let all = load(store)?.staff;
            let stored = all
                .iter()
                .find(|s| s.id == staff_id)
                .map(staff_json)
                .ok_or_else(|| ApiError::internal("reading a staff member back", "gone"))?;
            Ok(Audited::new((stored, all), Vec::new()))
        })
        .await?;
    state.refresh_tokens(&staff);
    Ok(Json(answer))
}
