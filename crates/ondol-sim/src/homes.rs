//! Where simulated homes come from: an existing roster (the demo), or a
//! synthetic one of any size (load tests), written out as roster TOML so Ondol
//! can be started with exactly the residents and devices the simulator plays.

use std::collections::HashMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ondol_model::roster::{DeviceKind, Roster};
use ondol_model::{DeviceId, ResidentId};
use rand::Rng;

use crate::seed::{self, Salt};
use crate::{SimDevice, SimHome};

/// The devices bound to each resident now, grouped into homes; see
/// [`homes_from_roster_at`].
pub fn homes_from_roster(roster: &Roster) -> Vec<SimHome> {
    homes_from_roster_at(roster, Timestamp::now())
}

/// The active devices bound to each resident at `at`, grouped into one home
/// per resident, in roster order. Residents without a device are left out
/// (nothing could speak for them), as are devices bound to no one or to a
/// resident missing from the roster.
pub fn homes_from_roster_at(roster: &Roster, at: Timestamp) -> Vec<SimHome> {
    let mut homes: Vec<SimHome> = roster
        .residents
        .iter()
        .map(|r| SimHome {
            resident_id: r.id.clone(),
            timezone: r.timezone.clone(),
            devices: Vec::new(),
        })
        .collect();
    let index: HashMap<&ResidentId, usize> = roster
        .residents
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.id, i))
        .collect();
    for device in roster.devices.iter().filter(|d| d.active) {
        let Some(&home) = device.resident_at(at).and_then(|r| index.get(r)) else {
            continue;
        };
        homes[home].devices.push(SimDevice {
            id: device.id.clone(),
            kind: device.kind,
        });
    }
    homes.retain(|h| !h.devices.is_empty());
    homes
}

/// How many residents one synthetic caseworker looks after.
const RESIDENTS_PER_CASEWORKER: usize = 20;

/// Time zones (and their regions) of synthetic residents, with weights: most
/// in Korea, some in zones with DST so load tests cross DST days.
const ZONES: [(&str, &str, u32); 5] = [
    ("Asia/Seoul", "gangjin", 45),
    ("Asia/Seoul", "haenam", 25),
    ("Asia/Seoul", "wando", 10),
    ("Europe/Lisbon", "lisboa", 10),
    ("America/New_York", "queens", 10),
];

struct SynthResident {
    id: String,
    number: String,
    zone: &'static str,
    region: &'static str,
    caseworker: String,
    devices: Vec<(String, DeviceKind)>,
}

fn width(n: usize) -> usize {
    n.to_string().len().max(4)
}

fn caseworker_id(i: usize) -> String {
    format!("cw-{:02}", i / RESIDENTS_PER_CASEWORKER + 1)
}

/// The one source of both [`synthetic_roster_toml`] and [`synthetic_homes`].
fn synthesize(n: usize, seed: u64) -> Vec<SynthResident> {
    let w = width(n);
    let total_weight: u32 = ZONES.iter().map(|z| z.2).sum();
    (0..n)
        .map(|i| {
            let mut rng = seed::rng(seed, Salt::Synthetic, &[i as u64]);
            let number = format!("{:0w$}", i + 1);
            let mut pick = rng.random_range(0..total_weight);
            let (zone, region, _) = ZONES
                .iter()
                .copied()
                .find(|z| {
                    let hit = pick < z.2;
                    pick = pick.saturating_sub(z.2);
                    hit
                })
                .unwrap_or(ZONES[0]);
            let mut devices = vec![
                (format!("gw-{number}"), DeviceKind::Gateway),
                (format!("bt-{number}"), DeviceKind::Button),
            ];
            if rng.random_bool(0.7) {
                devices.push((format!("wb-{number}"), DeviceKind::Wearable));
            }
            let sensors = match rng.random_range(0..10) {
                0..2 => 0,
                2..7 => 1,
                _ => 2,
            };
            for s in 1..=sensors {
                devices.push((format!("ps-{number}-{s}"), DeviceKind::Sensor));
            }
            SynthResident {
                id: format!("r-{number}"),
                number,
                zone,
                region,
                caseworker: caseworker_id(i),
                devices,
            }
        })
        .collect()
}

/// `ONDOL_TOKEN_CW_01` from `cw-01`.
fn env_name(prefix: &str, id: &str) -> String {
    format!("{prefix}{}", id.to_ascii_uppercase().replace('-', "_"))
}

/// A roster TOML (the shape of DESIGN §3) with `n` synthetic residents, their
/// devices and the staff who care for them: one caseworker per 20 residents,
/// one supervisor per region, an evaluator and an admin. Names are obviously
/// synthetic. The devices are exactly those of [`synthetic_homes`] with the
/// same `n` and `seed`.
pub fn synthetic_roster_toml(n: usize, seed: u64) -> String {
    let residents = synthesize(n, seed);
    let mut out = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        out,
        "# Synthetic roster: {n} residents, seed {seed}. Generated by ondol-sim for load tests.\n"
    );
    for r in &residents {
        let _ = writeln!(
            out,
            "[[residents]]\nid = \"{}\"\nname = \"Synthetic Resident {}\"\ntimezone = \"{}\"\n\
             region = \"{}\"\nenrolled_from = \"2024-01-01\"\ncaseworker = \"{}\"\n",
            r.id, r.number, r.zone, r.region, r.caseworker
        );
    }
    for r in &residents {
        for (id, kind) in &r.devices {
            let _ = writeln!(
                out,
                "[[devices]]\nid = \"{id}\"\nresident = \"{}\"\nkind = \"{}\"\n",
                r.id,
                kind.as_str()
            );
        }
    }
    let mut caseworkers: Vec<&str> = residents.iter().map(|r| r.caseworker.as_str()).collect();
    caseworkers.dedup();
    for cw in caseworkers {
        let _ = writeln!(
            out,
            "[[staff]]\nid = \"{cw}\"\nname = \"Synthetic Caseworker {}\"\nrole = \"caseworker\"\n\
             token_env = \"{}\"\n",
            cw.strip_prefix("cw-").unwrap_or(cw),
            env_name("ONDOL_TOKEN_", cw)
        );
    }
    let mut regions: Vec<&str> = residents.iter().map(|r| r.region).collect();
    regions.sort_unstable();
    regions.dedup();
    for region in regions {
        let id = format!("sv-{region}");
        let _ = writeln!(
            out,
            "[[staff]]\nid = \"{id}\"\nname = \"Synthetic Supervisor {region}\"\nrole = \"supervisor\"\n\
             region = \"{region}\"\ntoken_env = \"{}\"\n",
            env_name("ONDOL_TOKEN_", &id)
        );
    }
    for (id, role) in [("ev-01", "evaluator"), ("ad-01", "admin")] {
        let _ = writeln!(
            out,
            "[[staff]]\nid = \"{id}\"\nname = \"Synthetic {role}\"\nrole = \"{role}\"\ntoken_env = \"{}\"\n",
            env_name("ONDOL_TOKEN_", id)
        );
    }
    out
}

/// The homes of [`synthetic_roster_toml`] with the same `n` and `seed`.
pub fn synthetic_homes(n: usize, seed: u64) -> Vec<SimHome> {
    synthesize(n, seed)
        .into_iter()
        .filter_map(|r| {
            // Every id built above matches the grammar; a failure here would be
            // a bug in `synthesize`, so such a home is skipped, not a panic.
            let resident_id = ResidentId::new(r.id).ok()?;
            let timezone = TimeZone::get(r.zone).ok()?;
            let devices = r
                .devices
                .into_iter()
                .filter_map(|(id, kind)| {
                    Some(SimDevice {
                        id: DeviceId::new(id).ok()?,
                        kind,
                    })
                })
                .collect();
            Some(SimHome {
                resident_id,
                timezone,
                devices,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ondol_model::roster::{CheckinPlan, Device, DeviceBinding, Resident};

    fn resident(id: &str, zone: &str) -> Resident {
        Resident {
            id: ResidentId::new(id).expect("id"),
            name: "Test Person".into(),
            timezone_name: zone.into(),
            timezone: TimeZone::get(zone).expect("zone"),
            region: "test".into(),
            enrolled_from: jiff::civil::date(2026, 1, 1),
            enrolled_until: None,
            caseworker: None,
            checkin: CheckinPlan::default(),
            away: Vec::new(),
        }
    }

    fn device(
        id: &str,
        kind: DeviceKind,
        bindings: &[(&str, Option<i64>, Option<i64>)],
        active: bool,
    ) -> Device {
        Device {
            id: DeviceId::new(id).expect("id"),
            kind,
            bindings: bindings
                .iter()
                .map(|(r, from, until)| DeviceBinding {
                    resident: ResidentId::new(*r).expect("id"),
                    from: from.map(|s| Timestamp::from_second(s).expect("ts")),
                    until: until.map(|s| Timestamp::from_second(s).expect("ts")),
                })
                .collect(),
            active,
            secret_env: None,
        }
    }

    #[test]
    fn groups_devices_by_their_current_resident() {
        let now = 2_000_000_000;
        let roster = Roster {
            residents: vec![
                resident("r-1", "Asia/Seoul"),
                resident("r-2", "Europe/Lisbon"),
                resident("r-3", "Asia/Seoul"),
            ],
            devices: vec![
                device("gw-1", DeviceKind::Gateway, &[("r-1", None, None)], true),
                device("bt-2", DeviceKind::Button, &[("r-2", None, None)], true),
                // Moved from r-1 to r-2 in the past: now r-2's.
                device(
                    "wb-x",
                    DeviceKind::Wearable,
                    &[("r-1", None, Some(now - 10)), ("r-2", Some(now - 10), None)],
                    true,
                ),
                device("bt-1", DeviceKind::Button, &[("r-1", None, None)], true),
                // Revoked, unbound, bound to an unknown resident: left out.
                device("ps-1", DeviceKind::Sensor, &[("r-1", None, None)], false),
                device(
                    "ps-2",
                    DeviceKind::Sensor,
                    &[("r-2", None, Some(now - 5))],
                    true,
                ),
                device("ps-9", DeviceKind::Sensor, &[("r-9", None, None)], true),
            ],
            staff: Vec::new(),
        };
        let homes = homes_from_roster_at(&roster, Timestamp::from_second(now).expect("ts"));
        let summary: Vec<(String, Vec<String>)> = homes
            .iter()
            .map(|h| {
                (
                    h.resident_id.to_string(),
                    h.devices.iter().map(|d| d.id.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("r-1".to_owned(), vec!["gw-1".to_owned(), "bt-1".to_owned()]),
                ("r-2".to_owned(), vec!["bt-2".to_owned(), "wb-x".to_owned()]),
            ]
        );
        assert_eq!(homes[1].timezone.iana_name(), Some("Europe/Lisbon"));
        assert_eq!(homes[1].devices[1].kind, DeviceKind::Wearable);
    }

    #[test]
    fn synthetic_roster_is_toml_with_valid_ids_matching_the_homes() {
        let n = 123;
        let text = synthetic_roster_toml(n, 7);
        let doc: toml::Table = text.parse().expect("valid TOML");
        let residents = doc["residents"].as_array().expect("residents");
        let devices = doc["devices"].as_array().expect("devices");
        let staff = doc["staff"].as_array().expect("staff");
        assert_eq!(residents.len(), n);

        let homes = synthetic_homes(n, 7);
        assert_eq!(homes.len(), n);
        assert_eq!(
            devices.len(),
            homes.iter().map(|h| h.devices.len()).sum::<usize>()
        );

        let staff_ids: Vec<&str> = staff
            .iter()
            .map(|s| s["id"].as_str().expect("id"))
            .collect();
        for (r, home) in residents.iter().zip(&homes) {
            let id = r["id"].as_str().expect("id");
            assert!(ResidentId::new(id).is_ok());
            assert_eq!(id, home.resident_id.as_str());
            let zone = r["timezone"].as_str().expect("tz");
            assert_eq!(
                TimeZone::get(zone).expect("zone").iana_name(),
                home.timezone.iana_name()
            );
            assert!(staff_ids.contains(&r["caseworker"].as_str().expect("cw")));
            jiff::civil::Date::strptime("%Y-%m-%d", r["enrolled_from"].as_str().expect("date"))
                .expect("a date");
        }
        let mut seen = std::collections::HashSet::new();
        let home_devices = homes
            .iter()
            .flat_map(|h| h.devices.iter().map(move |d| (h, d)));
        for (d, (home, sim)) in devices.iter().zip(home_devices) {
            let id = d["id"].as_str().expect("id");
            assert!(DeviceId::new(id).is_ok());
            assert!(seen.insert(id.to_owned()), "device ids are unique");
            assert_eq!(id, sim.id.as_str());
            assert_eq!(d["resident"].as_str(), Some(home.resident_id.as_str()));
            assert_eq!(
                DeviceKind::parse(d["kind"].as_str().expect("kind")),
                Some(sim.kind)
            );
        }
        for s in staff {
            assert!(ondol_model::StaffId::new(s["id"].as_str().expect("id")).is_ok());
            assert!(
                ondol_model::roster::StaffRole::parse(s["role"].as_str().expect("role")).is_some()
            );
        }
        // Every home has a gateway and a button; the same seed gives the same roster.
        assert!(homes.iter().all(|h| h.devices.len() >= 2));
        assert_eq!(text, synthetic_roster_toml(n, 7));
        assert_ne!(text, synthetic_roster_toml(n, 8));
    }

    #[test]
    fn ids_stay_valid_for_large_fleets() {
        let homes = synthetic_homes(12_345, 1);
        assert_eq!(
            homes.first().map(|h| h.resident_id.as_str()),
            Some("r-00001")
        );
        assert_eq!(
            homes.last().map(|h| h.resident_id.as_str()),
            Some("r-12345")
        );
        assert!(synthetic_roster_toml(0, 1).parse::<toml::Table>().is_ok());
    }
}
