//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! response types, served at `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{admin, alerts, fhir, ops, overview, reports, residents};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ondol API",
        description = "Remote health and safety checks for seniors who live alone: alerts, the residents' status board and readings, a supervisor's overview of their region, evaluator reports. Bearer tokens per staff member; a resident outside the caller's scope answers 404 exactly like one that does not exist."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::me,
        alerts::list,
        alerts::get,
        alerts::ack,
        alerts::resolve,
        overview::overview,
        residents::list,
        residents::get,
        residents::readings,
        fhir::bundle,
        reports::utilisation,
        admin::residents,
        admin::put_resident,
        admin::put_assignment,
        admin::put_away,
        admin::devices,
        admin::put_device,
        admin::post_device_secret,
        admin::staff,
        admin::put_staff,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        ops::Health,
        ops::Me,
        alerts::Alert,
        alerts::AlertDetail,
        alerts::AlertTransition,
        alerts::AlertPage,
        alerts::AckBody,
        alerts::ResolveBody,
        overview::Overview,
        overview::OpenAlerts,
        overview::TierCount,
        overview::UnseenResident,
        overview::LowBatteryDevice,
        overview::ResidentHistory,
        residents::ResidentStatus,
        residents::DeviceStatus,
        residents::ResidentList,
        residents::ReadingItem,
        residents::ReadingPage,
        admin::AdminResident,
        admin::AdminResidentList,
        admin::CheckinBody,
        admin::AwayBody,
        admin::ResidentBody,
        admin::AssignmentBody,
        admin::AwayListBody,
        admin::AdminDevice,
        admin::IssuedDeviceSecret,
        admin::AdminDeviceList,
        admin::BindingOut,
        admin::DeviceBody,
        admin::AdminStaff,
        admin::AdminStaffList,
        admin::StaffBody,
    )),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
