//! The roster as ingest needs it: lookups by device id, and each resident's
//! time zone and check-in plan for the rollup fields computed at ingest.

use std::collections::HashMap;

use ondol_model::roster::{CheckinPlan, Device, Roster};
use ondol_model::{DeviceId, ResidentId};

/// An immutable snapshot; a roster change publishes a new one.
#[derive(Debug, Default)]
pub struct RosterIndex {
    devices: HashMap<DeviceId, Device>,
    residents: HashMap<ResidentId, ResidentLocale>,
}

/// What ingest needs to know about a resident.
#[derive(Debug, Clone)]
pub struct ResidentLocale {
    pub timezone: jiff::tz::TimeZone,
    pub checkin: CheckinPlan,
}

impl RosterIndex {
    pub fn new(roster: &Roster) -> Self {
        Self {
            devices: roster
                .devices
                .iter()
                .map(|d| (d.id.clone(), d.clone()))
                .collect(),
            residents: roster
                .residents
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        ResidentLocale {
                            timezone: r.timezone.clone(),
                            checkin: r.checkin,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    pub fn resident(&self, id: &ResidentId) -> Option<&ResidentLocale> {
        self.residents.get(id)
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Whether any device is active, i.e. expected to be sending.
    pub fn has_active_devices(&self) -> bool {
        self.devices.values().any(|d| d.active)
    }
}
