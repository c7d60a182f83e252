//! The roster in the store: importing a roster (upsert, never delete) and
//! loading it back as domain types.
//!
//! Import rules, chosen so that re-importing the same file at every start is
//! harmless and a stale file never silences anyone's alerts:
//! - Residents, devices and staff in the roster are inserted or overwritten;
//!   those only in the store are kept (the file is an import path, not the
//!   whole truth: the admin API adds entries too).
//! - A resident's away periods are replaced by the roster's: an away period
//!   suspends alerts, so one that was removed from the file must not linger.
//! - A device's binding from the roster wins over its own interval; stored
//!   bindings outside that interval are kept (cut where they overlap), so the
//!   history of who a device watched before survives a move.
//! - A device's credential hash is never touched by an import.
//! - An entry changed through the admin API since (`admin_changed_ms`) is
//!   not overwritten by a file import: the admin's change wins, the import
//!   names the entries it left alone ([`ImportSummary::kept_admin_changes`]).
//!   Its away periods and bindings stay as the admin left them too.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use rusqlite::{Connection, Transaction, params};

use ondol_model::roster::{
    AwayPeriod, CheckinPlan, CheckinWindow, Device, DeviceBinding, DeviceKind, Resident, Roster,
    Staff, StaffRole,
};
use ondol_model::{DeviceId, StaffId};

use crate::error::StoreError;

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub residents_added: usize,
    /// Already stored; overwritten with the roster's values.
    pub residents_updated: usize,
    /// Stored but absent from the roster: kept.
    pub residents_kept: usize,
    pub devices_added: usize,
    pub devices_updated: usize,
    pub devices_kept: usize,
    pub staff_added: usize,
    pub staff_updated: usize,
    pub staff_kept: usize,
    /// Entries of the roster the admin API changed since (`"resident r-1"`,
    /// `"device gw-1"`, `"staff cw-01"`): left as the admin left them.
    pub kept_admin_changes: Vec<String>,
}

/// Whether an import overwrites entries the admin API changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminChanges {
    /// A roster file: they win over the file.
    Keep,
    /// The admin API itself.
    Overwrite,
}

pub(crate) fn import(
    tx: &Transaction<'_>,
    roster: &Roster,
    admin: AdminChanges,
) -> Result<ImportSummary, StoreError> {
    let mut summary = ImportSummary::default();
    let mut admin_changed = |table: &'static str, kind: &str, id: &str| {
        let changed = admin == AdminChanges::Keep && admin_changed(tx, table, id)?;
        if changed {
            summary.kept_admin_changes.push(format!("{kind} {id}"));
        }
        Ok::<bool, StoreError>(changed)
    };
    let staff: Vec<&Staff> = roster
        .staff
        .iter()
        .filter_map(|s| match admin_changed("staff", "staff", s.id.as_str()) {
            Ok(true) => None,
            Ok(false) => Some(Ok(s)),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    let residents: Vec<&Resident> = roster
        .residents
        .iter()
        .filter_map(
            |r| match admin_changed("residents", "resident", r.id.as_str()) {
                Ok(true) => None,
                Ok(false) => Some(Ok(r)),
                Err(e) => Some(Err(e)),
            },
        )
        .collect::<Result<_, _>>()?;
    let devices: Vec<&Device> = roster
        .devices
        .iter()
        .filter_map(
            |d| match admin_changed("devices", "device", d.id.as_str()) {
                Ok(true) => None,
                Ok(false) => Some(Ok(d)),
                Err(e) => Some(Err(e)),
            },
        )
        .collect::<Result<_, _>>()?;
    // Staff first, then residents, then devices: the order of the foreign keys.
    for staff in staff {
        if exists(tx, "staff", staff.id.as_str())? {
            summary.staff_updated += 1;
        } else {
            summary.staff_added += 1;
        }
        upsert_staff(tx, staff)?;
    }
    for resident in residents {
        if exists(tx, "residents", resident.id.as_str())? {
            summary.residents_updated += 1;
        } else {
            summary.residents_added += 1;
        }
        upsert_resident(tx, resident)?;
    }
    for device in devices {
        if exists(tx, "devices", device.id.as_str())? {
            summary.devices_updated += 1;
        } else {
            summary.devices_added += 1;
        }
        upsert_device(tx, device)?;
    }
    let seen = summary.staff_added + summary.staff_updated;
    summary.staff_kept = count(tx, "staff")?.saturating_sub(seen);
    let seen = summary.residents_added + summary.residents_updated;
    summary.residents_kept = count(tx, "residents")?.saturating_sub(seen);
    let seen = summary.devices_added + summary.devices_updated;
    summary.devices_kept = count(tx, "devices")?.saturating_sub(seen);
    Ok(summary)
}

/// `table` is one of this module's constants, never input.
fn exists(tx: &Transaction<'_>, table: &'static str, id: &str) -> Result<bool, StoreError> {
    tx.prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))
        .and_then(|mut stmt| stmt.exists([id]))
        .map_err(StoreError::sqlite("looking up a roster entry"))
}

/// Whether the admin API changed this entry (`table` is a constant).
fn admin_changed(tx: &Transaction<'_>, table: &'static str, id: &str) -> Result<bool, StoreError> {
    tx.prepare_cached(&format!(
        "SELECT 1 FROM {table} WHERE id = ?1 AND admin_changed_ms IS NOT NULL"
    ))
    .and_then(|mut stmt| stmt.exists([id]))
    .map_err(StoreError::sqlite("looking up a roster entry"))
}

fn count(tx: &Transaction<'_>, table: &'static str) -> Result<usize, StoreError> {
    tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get::<_, usize>(0)
    })
    .map_err(StoreError::sqlite("counting roster entries"))
}

fn upsert_staff(tx: &Transaction<'_>, staff: &Staff) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO staff (id, name, role, region, token_env) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, \
           region = excluded.region, token_env = excluded.token_env",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            staff.id.as_str(),
            staff.name,
            staff.role.as_str(),
            staff.region,
            staff.token_env
        ])
    })
    .map_err(StoreError::sqlite("importing a staff member"))?;
    Ok(())
}

fn upsert_resident(tx: &Transaction<'_>, resident: &Resident) -> Result<(), StoreError> {
    let window = resident.checkin.window;
    tx.prepare_cached(
        "INSERT INTO residents (id, name, timezone, region, enrolled_from, enrolled_until, \
           caseworker, checkin_start, checkin_end, checkin_passive) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone, \
           region = excluded.region, enrolled_from = excluded.enrolled_from, \
           enrolled_until = excluded.enrolled_until, caseworker = excluded.caseworker, \
           checkin_start = excluded.checkin_start, checkin_end = excluded.checkin_end, \
           checkin_passive = excluded.checkin_passive",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            resident.id.as_str(),
            resident.name,
            resident.timezone_name,
            resident.region,
            resident.enrolled_from.to_string(),
            resident.enrolled_until.map(|d| d.to_string()),
            resident.caseworker.as_ref().map(StaffId::as_str),
            window.map(|w| w.start.to_string()),
            window.map(|w| w.end.to_string()),
            resident.checkin.passive,
        ])
    })
    .map_err(StoreError::sqlite("importing a resident"))?;

    tx.prepare_cached("DELETE FROM away_periods WHERE resident_id = ?1")
        .and_then(|mut stmt| stmt.execute([resident.id.as_str()]))
        .map_err(StoreError::sqlite("replacing away periods"))?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO away_periods (resident_id, from_date, until_date, reason) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(StoreError::sqlite("preparing the away period insert"))?;
    for away in &resident.away {
        insert
            .execute(params![
                resident.id.as_str(),
                away.from.to_string(),
                away.until.to_string(),
                away.reason
            ])
            .map_err(StoreError::sqlite("importing an away period"))?;
    }
    Ok(())
}

fn upsert_device(tx: &Transaction<'_>, device: &Device) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO devices (id, kind, active, secret_env) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, active = excluded.active, \
           secret_env = excluded.secret_env",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            device.id.as_str(),
            device.kind.as_str(),
            device.active,
            device.secret_env
        ])
    })
    .map_err(StoreError::sqlite("importing a device"))?;

    let mut bindings = bindings_of(tx, &device.id)?;
    for binding in &device.bindings {
        bindings = overlay_binding(&bindings, binding);
    }
    tx.prepare_cached("DELETE FROM device_bindings WHERE device_id = ?1")
        .and_then(|mut stmt| stmt.execute([device.id.as_str()]))
        .map_err(StoreError::sqlite("replacing device bindings"))?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO device_bindings (device_id, resident_id, from_ms, until_ms) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(StoreError::sqlite("preparing the binding insert"))?;
    for binding in &bindings {
        insert
            .execute(params![
                device.id.as_str(),
                binding.resident.as_str(),
                binding.from.map(Timestamp::as_millisecond),
                binding.until.map(Timestamp::as_millisecond),
            ])
            .map_err(StoreError::sqlite("importing a device binding"))?;
    }
    Ok(())
}

/// Lays `new` over `stored`: `new` holds over its whole interval; stored
/// bindings keep only their parts outside it. The result is sorted by start
/// (unbounded start first).
pub(crate) fn overlay_binding(stored: &[DeviceBinding], new: &DeviceBinding) -> Vec<DeviceBinding> {
    let mut out = Vec::with_capacity(stored.len() + 2);
    for old in stored {
        // The part of `old` before `new` starts.
        if let Some(new_from) = new.from
            && old.from.is_none_or(|f| f < new_from)
        {
            let until = old.until.map_or(new_from, |u| u.min(new_from));
            out.push(DeviceBinding {
                resident: old.resident.clone(),
                from: old.from,
                until: Some(until),
            });
        }
        // The part of `old` after `new` ends.
        if let Some(new_until) = new.until
            && old.until.is_none_or(|u| u > new_until)
        {
            let from = old.from.map_or(new_until, |f| f.max(new_until));
            out.push(DeviceBinding {
                resident: old.resident.clone(),
                from: Some(from),
                until: old.until,
            });
        }
    }
    out.push(new.clone());
    out.sort_by_key(|b| b.from);
    out
}

fn bindings_of(conn: &Connection, device: &DeviceId) -> Result<Vec<DeviceBinding>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT resident_id, from_ms, until_ms FROM device_bindings \
             WHERE device_id = ?1 ORDER BY from_ms",
        )
        .map_err(StoreError::sqlite("preparing the binding query"))?;
    let rows = stmt
        .query_map([device.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(StoreError::sqlite("reading device bindings"))?;
    let key = || device.to_string();
    let table = "device_bindings";
    rows.map(|row| {
        let (resident, from, until) = row.map_err(StoreError::sqlite("reading device bindings"))?;
        Ok(DeviceBinding {
            resident: parse_id(&resident, table, key)?,
            from: from.map(|ms| timestamp(ms, table, key)).transpose()?,
            until: until.map(|ms| timestamp(ms, table, key)).transpose()?,
        })
    })
    .collect()
}

pub(crate) fn load(conn: &Connection) -> Result<Roster, StoreError> {
    let mut roster = Roster::default();

    let mut stmt = conn
        .prepare_cached("SELECT id, name, role, region, token_env FROM staff ORDER BY id")
        .map_err(StoreError::sqlite("preparing the staff query"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(StoreError::sqlite("loading staff"))?;
    for row in rows {
        let (id, name, role, region, token_env) =
            row.map_err(StoreError::sqlite("loading staff"))?;
        let key = || id.clone();
        roster.staff.push(Staff {
            id: parse_id(&id, "staff", key)?,
            name,
            role: StaffRole::parse(&role)
                .ok_or_else(|| invalid("staff", key(), format!("unknown role {role:?}")))?,
            region,
            token_env,
        });
    }

    let mut away_stmt = conn
        .prepare_cached(
            "SELECT from_date, until_date, reason FROM away_periods \
             WHERE resident_id = ?1 ORDER BY from_date",
        )
        .map_err(StoreError::sqlite("preparing the away period query"))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, name, timezone, region, enrolled_from, enrolled_until, caseworker, \
               checkin_start, checkin_end, checkin_passive \
             FROM residents ORDER BY id",
        )
        .map_err(StoreError::sqlite("preparing the resident query"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok(ResidentRow {
                id: row.get(0)?,
                name: row.get(1)?,
                timezone: row.get(2)?,
                region: row.get(3)?,
                enrolled_from: row.get(4)?,
                enrolled_until: row.get(5)?,
                caseworker: row.get(6)?,
                checkin_start: row.get(7)?,
                checkin_end: row.get(8)?,
                checkin_passive: row.get(9)?,
            })
        })
        .map_err(StoreError::sqlite("loading residents"))?;
    for row in rows {
        let row = row.map_err(StoreError::sqlite("loading residents"))?;
        let key = || row.id.clone();
        let table = "residents";
        let timezone = TimeZone::get(&row.timezone)
            .map_err(|e| invalid(table, key(), format!("time zone {:?}: {e}", row.timezone)))?;
        let window = match (&row.checkin_start, &row.checkin_end) {
            (Some(start), Some(end)) => Some(CheckinWindow {
                start: parse_time(start, table, key)?,
                end: parse_time(end, table, key)?,
            }),
            _ => None,
        };
        let away = away_stmt
            .query_map([&row.id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(StoreError::sqlite("loading away periods"))?
            .map(|r| {
                let (from, until, reason) =
                    r.map_err(StoreError::sqlite("loading away periods"))?;
                Ok(AwayPeriod {
                    from: parse_date(&from, "away_periods", key)?,
                    until: parse_date(&until, "away_periods", key)?,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        roster.residents.push(Resident {
            id: parse_id(&row.id, table, key)?,
            name: row.name.clone(),
            timezone_name: row.timezone.clone(),
            timezone,
            region: row.region.clone(),
            enrolled_from: parse_date(&row.enrolled_from, table, key)?,
            enrolled_until: row
                .enrolled_until
                .as_deref()
                .map(|d| parse_date(d, table, key))
                .transpose()?,
            caseworker: row
                .caseworker
                .as_deref()
                .map(|c| parse_id(c, table, key))
                .transpose()?,
            checkin: CheckinPlan {
                window,
                passive: row.checkin_passive,
            },
            away,
        });
    }

    let mut stmt = conn
        .prepare_cached("SELECT id, kind, active, secret_env FROM devices ORDER BY id")
        .map_err(StoreError::sqlite("preparing the device query"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(StoreError::sqlite("loading devices"))?;
    for row in rows {
        let (id, kind, active, secret_env) = row.map_err(StoreError::sqlite("loading devices"))?;
        let key = || id.clone();
        let id: DeviceId = parse_id(&id, "devices", key)?;
        roster.devices.push(Device {
            bindings: bindings_of(conn, &id)?,
            id,
            kind: DeviceKind::parse(&kind)
                .ok_or_else(|| invalid("devices", key(), format!("unknown kind {kind:?}")))?,
            active,
            secret_env,
        });
    }
    Ok(roster)
}

struct ResidentRow {
    id: String,
    name: String,
    timezone: String,
    region: String,
    enrolled_from: String,
    enrolled_until: Option<String>,
    caseworker: Option<String>,
    checkin_start: Option<String>,
    checkin_end: Option<String>,
    checkin_passive: bool,
}

pub(crate) fn invalid(table: &'static str, key: String, detail: String) -> StoreError {
    StoreError::InvalidRow { table, key, detail }
}

pub(crate) fn parse_id<T: std::str::FromStr<Err = ondol_model::IdError>>(
    s: &str,
    table: &'static str,
    key: impl Fn() -> String,
) -> Result<T, StoreError> {
    s.parse()
        .map_err(|e| invalid(table, key(), format!("id {s:?}: {e}")))
}

pub(crate) fn parse_date(
    s: &str,
    table: &'static str,
    key: impl Fn() -> String,
) -> Result<Date, StoreError> {
    s.parse()
        .map_err(|e| invalid(table, key(), format!("date {s:?}: {e}")))
}

fn parse_time(s: &str, table: &'static str, key: impl Fn() -> String) -> Result<Time, StoreError> {
    s.parse()
        .map_err(|e| invalid(table, key(), format!("time {s:?}: {e}")))
}

pub(crate) fn timestamp(
    ms: i64,
    table: &'static str,
    key: impl Fn() -> String,
) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms)
        .map_err(|e| invalid(table, key(), format!("timestamp {ms} ms: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ondol_model::ResidentId;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn binding(resident: &str, from: Option<i64>, until: Option<i64>) -> DeviceBinding {
        DeviceBinding {
            resident: ResidentId::new(resident).expect("valid id"),
            from: from.map(ts),
            until: until.map(ts),
        }
    }

    #[test]
    fn reimporting_the_same_binding_changes_nothing() {
        let b = binding("r-1", Some(100), None);
        let once = overlay_binding(&[], &b);
        assert_eq!(once, vec![b.clone()]);
        assert_eq!(overlay_binding(&once, &b), once);
        let open = binding("r-1", None, None);
        assert_eq!(
            overlay_binding(std::slice::from_ref(&open), &open),
            vec![open]
        );
    }

    #[test]
    fn a_move_keeps_the_history_before_it() {
        let old = binding("r-1", None, None);
        let moved = binding("r-2", Some(1000), None);
        assert_eq!(
            overlay_binding(&[old], &moved),
            vec![binding("r-1", None, Some(1000)), moved]
        );
    }

    #[test]
    fn a_bounded_binding_splits_an_open_one() {
        let old = binding("r-1", Some(0), None);
        let loan = binding("r-2", Some(100), Some(200));
        assert_eq!(
            overlay_binding(&[old], &loan),
            vec![
                binding("r-1", Some(0), Some(100)),
                loan,
                binding("r-1", Some(200), None)
            ]
        );
    }

    #[test]
    fn an_unbounded_binding_replaces_everything() {
        let stored = [
            binding("r-1", None, Some(50)),
            binding("r-2", Some(50), None),
        ];
        let new = binding("r-3", None, None);
        assert_eq!(overlay_binding(&stored, &new), vec![new]);
    }
}
