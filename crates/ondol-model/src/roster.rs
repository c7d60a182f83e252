//! The roster: who is enrolled, which devices watch them and which staff care
//! for them (DESIGN §3). Names are personal data: they never leave through
//! evaluator outputs and are never logged.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::id::{DeviceId, ResidentId, StaffId};

#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub residents: Vec<Resident>,
    pub devices: Vec<Device>,
    pub staff: Vec<Staff>,
}

#[derive(Debug, Clone)]
pub struct Resident {
    pub id: ResidentId,
    pub name: String,
    /// The IANA name (e.g. `Asia/Seoul`), kept for storage and display.
    pub timezone_name: String,
    /// The resolved zone; local days, check-in windows and DST use it.
    pub timezone: TimeZone,
    pub region: String,
    pub enrolled_from: Date,
    /// Last enrolled day, inclusive.
    pub enrolled_until: Option<Date>,
    pub caseworker: Option<StaffId>,
    pub checkin: CheckinPlan,
    pub away: Vec<AwayPeriod>,
}

/// The daily "I'm OK" expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckinPlan {
    /// `None`: this resident has no daily check-in.
    pub window: Option<CheckinWindow>,
    /// Whether any activity inside the window counts as a check-in.
    pub passive: bool,
}

impl Default for CheckinPlan {
    /// The default plan of DESIGN §4: a 06:00–10:00 window, no passive check-in.
    fn default() -> Self {
        Self {
            window: Some(CheckinWindow {
                start: Time::constant(6, 0, 0, 0),
                end: Time::constant(10, 0, 0, 0),
            }),
            passive: false,
        }
    }
}

/// A local-time window `[start, end)`; `end` is the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckinWindow {
    pub start: Time,
    pub end: Time,
}

impl CheckinWindow {
    pub fn contains(&self, t: Time) -> bool {
        self.start <= t && t < self.end
    }
}

/// Days the resident is away (hospital, family visit); both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwayPeriod {
    pub from: Date,
    pub until: Date,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Gateway,
    Wearable,
    Button,
    Sensor,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 4] = [
        DeviceKind::Gateway,
        DeviceKind::Wearable,
        DeviceKind::Button,
        DeviceKind::Sensor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Gateway => "gateway",
            DeviceKind::Wearable => "wearable",
            DeviceKind::Button => "button",
            DeviceKind::Sensor => "sensor",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: DeviceId,
    pub kind: DeviceKind,
    /// The resident the device is bound to, and since when; a reading is
    /// attributed to the resident its device was bound to at the reading's time.
    pub bindings: Vec<DeviceBinding>,
    /// A revoked device is refused (`device_inactive`).
    pub active: bool,
    /// Environment variable holding the device's broker password (import path).
    pub secret_env: Option<String>,
}

impl Device {
    /// The resident this device was bound to at `at`, if any.
    pub fn resident_at(&self, at: Timestamp) -> Option<&ResidentId> {
        self.bindings
            .iter()
            .find(|b| b.from.is_none_or(|f| f <= at) && b.until.is_none_or(|u| at < u))
            .map(|b| &b.resident)
    }
}

/// A device's binding to a resident over `[from, until)`; open ends are unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBinding {
    pub resident: ResidentId,
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaffRole {
    Caseworker,
    Supervisor,
    Evaluator,
    Admin,
}

impl StaffRole {
    pub const ALL: [StaffRole; 4] = [
        StaffRole::Caseworker,
        StaffRole::Supervisor,
        StaffRole::Evaluator,
        StaffRole::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Caseworker => "caseworker",
            StaffRole::Supervisor => "supervisor",
            StaffRole::Evaluator => "evaluator",
            StaffRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<StaffRole> {
        StaffRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Staff {
    pub id: StaffId,
    pub name: String,
    pub role: StaffRole,
    /// The region a supervisor oversees.
    pub region: Option<String>,
    /// Environment variable holding the staff member's bearer token.
    pub token_env: Option<String>,
}
