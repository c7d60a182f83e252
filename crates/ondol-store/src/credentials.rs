//! Device credentials in the store: only hashes (the binary computes them;
//! this crate never sees a secret), revocation, and provisioning one device.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use ondol_model::roster::DeviceKind;
use ondol_model::{DeviceId, ResidentId};

use crate::{Store, StoreError};

/// One device as the broker's access list needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredentialRow {
    pub id: String,
    /// Argon2id PHC string; `None` until a secret is issued, and after a
    /// revocation.
    pub credential_hash: Option<String>,
    pub revoked: bool,
}

/// What `add_device` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddDevice {
    Added,
    /// A device with this id exists already: nothing changed.
    AlreadyExists,
    /// No resident with this id: nothing changed.
    UnknownResident,
}

impl Store {
    /// Every device's credential state, for the broker's access list.
    pub fn device_credentials(&self) -> Result<Vec<DeviceCredentialRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, credential_hash, revoked_ms IS NOT NULL FROM devices")
            .map_err(StoreError::sqlite("preparing the credential query"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(DeviceCredentialRow {
                    id: row.get(0)?,
                    credential_hash: row.get(1)?,
                    revoked: row.get(2)?,
                })
            })
            .map_err(StoreError::sqlite("loading device credentials"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sqlite("loading device credentials"))
    }

    /// Registers a new device bound to `resident` from `from` on, with its
    /// credential hash, in one transaction.
    pub fn add_device(
        &mut self,
        id: &DeviceId,
        kind: DeviceKind,
        resident: &ResidentId,
        from: Timestamp,
        credential_hash: &str,
    ) -> Result<AddDevice, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting a device registration"))?;
        let exists = |table: &str, key: &str| {
            tx.query_row(
                &format!("SELECT 1 FROM {table} WHERE id = ?1"),
                [key],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(StoreError::sqlite("checking a device registration"))
        };
        if exists("devices", id.as_str())? {
            return Ok(AddDevice::AlreadyExists);
        }
        if !exists("residents", resident.as_str())? {
            return Ok(AddDevice::UnknownResident);
        }
        let now = from.as_millisecond();
        tx.execute(
            "INSERT INTO devices (id, kind, active, credential_hash, credential_changed_ms) \
             VALUES (?1, ?2, 1, ?3, ?4)",
            params![id.as_str(), kind.as_str(), credential_hash, now],
        )
        .map_err(StoreError::sqlite("registering a device"))?;
        tx.execute(
            "INSERT INTO device_bindings (device_id, resident_id, from_ms, until_ms) \
             VALUES (?1, ?2, ?3, NULL)",
            params![id.as_str(), resident.as_str(), now],
        )
        .map_err(StoreError::sqlite("binding a new device"))?;
        tx.commit()
            .map_err(StoreError::sqlite("committing a device registration"))?;
        Ok(AddDevice::Added)
    }

    /// Replaces a device's credential hash (and lifts a revocation).
    /// Returns `false` when there is no such device.
    pub fn set_device_credential(
        &mut self,
        id: &DeviceId,
        credential_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE devices SET credential_hash = ?2, revoked_ms = NULL, \
                 credential_changed_ms = ?3 WHERE id = ?1",
                params![id.as_str(), credential_hash, now.as_millisecond()],
            )
            .map_err(StoreError::sqlite("setting a device credential"))?;
        Ok(changed == 1)
    }

    /// Sets a credential only where none was ever issued (the roster's
    /// `secret_env` import path): never overrides a secret issued or
    /// rotated with the CLI, never lifts a revocation. Returns whether it
    /// was set.
    pub fn set_initial_device_credential(
        &mut self,
        id: &DeviceId,
        credential_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE devices SET credential_hash = ?2, credential_changed_ms = ?3 \
                 WHERE id = ?1 AND credential_hash IS NULL AND revoked_ms IS NULL",
                params![id.as_str(), credential_hash, now.as_millisecond()],
            )
            .map_err(StoreError::sqlite("importing a device credential"))?;
        Ok(changed == 1)
    }

    /// Revokes a device: its hash is dropped, so no secret opens it again
    /// until a new one is issued. Returns `false` when there is no such device.
    pub fn revoke_device(&mut self, id: &DeviceId, now: Timestamp) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE devices SET credential_hash = NULL, \
                 revoked_ms = coalesce(revoked_ms, ?2), credential_changed_ms = ?2 WHERE id = ?1",
                params![id.as_str(), now.as_millisecond()],
            )
            .map_err(StoreError::sqlite("revoking a device"))?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ondol_model::roster::Roster;

    fn store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let roster: Roster = crate::parse_roster(
            r#"
[[residents]]
id = "r-1"
name = "R"
timezone = "Asia/Seoul"
region = "x"
enrolled_from = "2026-01-01"

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"
"#,
            "test",
        )
        .unwrap();
        store.import_roster(&roster).unwrap();
        store
    }

    fn id(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    #[test]
    fn add_rotate_revoke() {
        let mut store = store();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let r1 = ResidentId::new("r-1").unwrap();
        assert_eq!(
            store
                .add_device(&id("bt-9"), DeviceKind::Button, &r1, now, "$h1")
                .unwrap(),
            AddDevice::Added
        );
        assert_eq!(
            store
                .add_device(&id("bt-9"), DeviceKind::Button, &r1, now, "$h2")
                .unwrap(),
            AddDevice::AlreadyExists
        );
        assert_eq!(
            store
                .add_device(
                    &id("bt-8"),
                    DeviceKind::Button,
                    &ResidentId::new("r-404").unwrap(),
                    now,
                    "$h"
                )
                .unwrap(),
            AddDevice::UnknownResident
        );
        let roster = store.load_roster().unwrap();
        let bt9 = roster
            .devices
            .iter()
            .find(|d| d.id.as_str() == "bt-9")
            .unwrap();
        assert_eq!(bt9.bindings.len(), 1);

        let row = |store: &Store, which: &str| {
            store
                .device_credentials()
                .unwrap()
                .into_iter()
                .find(|r| r.id == which)
                .unwrap()
        };
        assert_eq!(row(&store, "bt-9").credential_hash.as_deref(), Some("$h1"));
        assert!(store.revoke_device(&id("bt-9"), now).unwrap());
        let revoked = row(&store, "bt-9");
        assert!(revoked.revoked);
        assert_eq!(revoked.credential_hash, None);
        // The import path neither overrides nor reinstates.
        assert!(
            !store
                .set_initial_device_credential(&id("bt-9"), "$h3", now)
                .unwrap()
        );
        assert!(
            store
                .set_device_credential(&id("bt-9"), "$h4", now)
                .unwrap()
        );
        let back = row(&store, "bt-9");
        assert!(!back.revoked);
        assert_eq!(back.credential_hash.as_deref(), Some("$h4"));
        assert!(
            store
                .set_initial_device_credential(&id("gw-1"), "$h5", now)
                .unwrap()
        );
        assert!(
            !store
                .set_initial_device_credential(&id("gw-1"), "$h6", now)
                .unwrap()
        );
        assert!(!store.revoke_device(&id("nope"), now).unwrap());
    }
}
