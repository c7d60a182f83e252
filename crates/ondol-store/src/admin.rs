//! Registry changes through the admin API: the same upserts as a roster
//! file import, but they also mark each entry as changed by an admin (so a
//! later file import leaves it alone) and bump the roster version (so
//! running parts that keep the roster in memory reload it).

use jiff::Timestamp;
use rusqlite::{TransactionBehavior, params};

use ondol_model::roster::Roster;

use crate::Store;
use crate::error::StoreError;
use crate::roster_db::{self, AdminChanges};

impl Store {
    /// Adds or replaces the entries of `changes` (a partial roster) as the
    /// admin API's, in one transaction; entries not in it are untouched.
    /// A device's binding in `changes` is laid over its stored ones like an
    /// import's (earlier bindings survive outside its interval).
    pub fn admin_upsert(&mut self, changes: &Roster, at: Timestamp) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting an admin change"))?;
        roster_db::import(&tx, changes, AdminChanges::Overwrite)?;
        let ms = at.as_millisecond();
        let mark = |table: &'static str, id: &str| {
            tx.prepare_cached(&format!(
                "UPDATE {table} SET admin_changed_ms = ?2 WHERE id = ?1"
            ))
            .and_then(|mut stmt| stmt.execute(params![id, ms]))
            .map_err(StoreError::sqlite("marking an admin change"))
        };
        for staff in &changes.staff {
            mark("staff", staff.id.as_str())?;
        }
        for resident in &changes.residents {
            mark("residents", resident.id.as_str())?;
        }
        for device in &changes.devices {
            mark("devices", device.id.as_str())?;
        }
        tx.execute(
            "UPDATE roster_version SET version = version + 1 WHERE id = 1",
            [],
        )
        .map_err(StoreError::sqlite("bumping the roster version"))?;
        tx.commit()
            .map_err(StoreError::sqlite("committing an admin change"))
    }

    /// Goes up with every admin change of the registry.
    pub fn roster_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT version FROM roster_version WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("reading the roster version"))
    }
}
