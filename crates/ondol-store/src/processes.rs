//! The processes that share one store: each ingest worker's heartbeat with
//! the conditions it sees, and the lease of the one alerting process.
//!
//! Alerting in its own process cannot read another process's memory; a
//! worker that cannot reach the broker says so here, and a worker that
//! stopped saying anything is known by its old heartbeat.

use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use ondol_model::condition::{OutageCause, SystemOutage};

use crate::Store;
use crate::error::StoreError;

/// Who a process is: its role's name, host and pid, and a random instance
/// tag (a restarted process may get the same pid, a container the same
/// host and pid 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    /// E.g. the ingest worker's client id, or `alerting`.
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub instance: String,
}

impl ProcessId {
    /// This process, under `name`.
    pub fn this(name: &str) -> ProcessId {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        // Unique enough to tell two lives of one pid apart.
        let instance = format!(
            "{:012x}",
            Timestamp::now().as_nanosecond() & 0xffff_ffff_ffff
        );
        ProcessId {
            name: name.to_owned(),
            host,
            pid: std::process::id(),
            instance,
        }
    }

    fn holder(&self) -> String {
        format!("{}#{}", self.name, self.instance)
    }
}

/// An ingest worker as its last heartbeat left it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerBeat {
    pub worker: String,
    pub host: String,
    pub pid: u32,
    pub heartbeat: Timestamp,
    pub conditions: Vec<SystemOutage>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredCondition {
    cause: String,
    since_ms: i64,
    detail: String,
}

/// Whether a process on this host with `pid` is running (Linux: its
/// `/proc` entry exists and is not a zombie, which a killed process stays
/// until its parent reaps it). Elsewhere nothing is known: assumed
/// running, so only the lease's expiry frees it.
fn running_here(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// What [`Store::claim_alerting`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertingClaim {
    /// This process holds it now.
    Held,
    /// Another live process holds it.
    HeldBy {
        holder: String,
        since: Timestamp,
        renewed: Timestamp,
    },
}

impl Store {
    /// Records that ingest worker `me` is alive and sees `conditions`.
    pub fn beat_ingest_worker(
        &self,
        me: &ProcessId,
        now: Timestamp,
        conditions: &[SystemOutage],
    ) -> Result<(), StoreError> {
        let stored: Vec<StoredCondition> = conditions
            .iter()
            .map(|c| StoredCondition {
                cause: c.cause.as_str().to_owned(),
                since_ms: c.since.as_millisecond(),
                detail: c.detail.clone(),
            })
            .collect();
        let json = serde_json::to_string(&stored).map_err(|error| StoreError::InvalidRow {
            table: "ingest_workers",
            key: me.name.clone(),
            detail: error.to_string(),
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO ingest_workers (worker, host, pid, heartbeat_ms, conditions) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (worker) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                   heartbeat_ms = excluded.heartbeat_ms, conditions = excluded.conditions",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    me.name,
                    me.host,
                    me.pid,
                    now.as_millisecond(),
                    json
                ])
            })
            .map_err(StoreError::sqlite("recording an ingest worker's heartbeat"))?;
        Ok(())
    }

    /// Every ingest worker that ever beat, newest heartbeat first.
    /// Conditions this version does not know are left out.
    pub fn ingest_workers(&self) -> Result<Vec<WorkerBeat>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker, host, pid, heartbeat_ms, conditions FROM ingest_workers \
                 ORDER BY heartbeat_ms DESC",
            )
            .map_err(StoreError::sqlite("reading ingest workers"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u32>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .map_err(StoreError::sqlite("reading ingest workers"))?;
        let mut workers = Vec::new();
        for row in rows {
            let (worker, host, pid, heartbeat_ms, json) =
                row.map_err(StoreError::sqlite("reading ingest workers"))?;
            let invalid = |detail: String| StoreError::InvalidRow {
                table: "ingest_workers",
                key: worker.clone(),
                detail,
            };
            let heartbeat =
                Timestamp::from_millisecond(heartbeat_ms).map_err(|e| invalid(e.to_string()))?;
            let stored: Vec<StoredCondition> =
                serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
            let conditions = stored
                .into_iter()
                .filter_map(|c| {
                    Some(SystemOutage {
                        cause: OutageCause::parse(&c.cause)?,
                        since: Timestamp::from_millisecond(c.since_ms).ok()?,
                        detail: c.detail,
                    })
                })
                .collect();
            workers.push(WorkerBeat {
                worker,
                host,
                pid,
                heartbeat,
                conditions,
            });
        }
        Ok(workers)
    }

    /// Takes the store's one alerting role for `me` unless another live
    /// process holds it: one whose lease was renewed within `lease`, and,
    /// on this host, whose pid still runs (so a restart after kill -9 need
    /// not wait for the lease).
    pub fn claim_alerting(
        &mut self,
        me: &ProcessId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<AlertingClaim, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting to claim alerting"))?;
        let current = tx
            .query_row(
                "SELECT holder, host, pid, since_ms, renewed_ms FROM alerting_holder WHERE id = 1",
                [],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(StoreError::sqlite("reading the alerting holder"))?;
        if let Some((holder, host, pid, since_ms, renewed_ms)) = current {
            let renewed = Timestamp::from_millisecond(renewed_ms).unwrap_or(Timestamp::UNIX_EPOCH);
            let fresh = now.duration_since(renewed)
                < jiff::SignedDuration::try_from(lease).unwrap_or_default();
            let dead_here = host == me.host && (pid == me.pid || !running_here(pid));
            if holder != me.holder() && fresh && !dead_here {
                return Ok(AlertingClaim::HeldBy {
                    holder: format!(
                        "{} (pid {pid} on {host})",
                        holder.split('#').next().unwrap_or(&holder)
                    ),
                    since: Timestamp::from_millisecond(since_ms).unwrap_or(Timestamp::UNIX_EPOCH),
                    renewed,
                });
            }
        }
        tx.execute(
            "INSERT INTO alerting_holder (id, holder, host, pid, since_ms, renewed_ms) \
             VALUES (1, ?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, host = excluded.host, \
               pid = excluded.pid, since_ms = excluded.since_ms, renewed_ms = excluded.renewed_ms",
            params![me.holder(), me.host, me.pid, now.as_millisecond()],
        )
        .map_err(StoreError::sqlite("claiming alerting"))?;
        tx.commit()
            .map_err(StoreError::sqlite("claiming alerting"))?;
        Ok(AlertingClaim::Held)
    }

    /// Renews `me`'s alerting lease; `false` if another process has taken
    /// it meanwhile (this one must stop alerting).
    pub fn renew_alerting(&self, me: &ProcessId, now: Timestamp) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE alerting_holder SET renewed_ms = ?2 WHERE id = 1 AND holder = ?1",
                params![me.holder(), now.as_millisecond()],
            )
            .map_err(StoreError::sqlite("renewing the alerting lease"))?;
        Ok(changed == 1)
    }

    /// Gives the alerting role up at a clean stop, so the next process
    /// need not wait for the lease.
    pub fn release_alerting(&self, me: &ProcessId) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM alerting_holder WHERE id = 1 AND holder = ?1",
                [me.holder()],
            )
            .map_err(StoreError::sqlite("releasing the alerting lease"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tests::{at, temp_store};

    fn elsewhere(name: &str) -> ProcessId {
        ProcessId {
            name: name.to_owned(),
            host: "other-host".to_owned(),
            pid: 4242,
            instance: "b".to_owned(),
        }
    }

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn one_alerting_process_per_store_until_its_lease_expires() {
        let (_dir, mut store) = temp_store();
        let first = elsewhere("alerting");
        let mut second = ProcessId::this("alerting");
        assert_eq!(
            store.claim_alerting(&first, at(0), LEASE).unwrap(),
            AlertingClaim::Held
        );
        // Another process while the lease is fresh: refused, naming the holder.
        match store.claim_alerting(&second, at(10), LEASE).unwrap() {
            AlertingClaim::HeldBy { holder, .. } => {
                assert_eq!(holder, "alerting (pid 4242 on other-host)");
            }
            other => panic!("{other:?}"),
        }
        assert!(store.renew_alerting(&first, at(10)).unwrap());
        assert!(matches!(
            store.claim_alerting(&second, at(20), LEASE).unwrap(),
            AlertingClaim::HeldBy { .. }
        ));
        // The holder stops renewing (its host died): taken after the lease.
        assert_eq!(
            store.claim_alerting(&second, at(26), LEASE).unwrap(),
            AlertingClaim::Held
        );
        // The old holder, back from a freeze, learns it lost the lease.
        assert!(!store.renew_alerting(&first, at(27)).unwrap());
        // A clean stop frees it at once.
        store.release_alerting(&second).unwrap();
        assert_eq!(
            store.claim_alerting(&first, at(28), LEASE).unwrap(),
            AlertingClaim::Held
        );
        // On the holder's own host, a holder whose pid is gone is dead.
        let mut dead = ProcessId::this("alerting");
        dead.pid = u32::MAX - 1;
        dead.instance = "dead".to_owned();
        store.release_alerting(&first).unwrap();
        assert_eq!(
            store.claim_alerting(&dead, at(30), LEASE).unwrap(),
            AlertingClaim::Held
        );
        second.instance = "restarted".to_owned();
        assert_eq!(
            store.claim_alerting(&second, at(31), LEASE).unwrap(),
            AlertingClaim::Held
        );
    }

    #[test]
    fn worker_heartbeats_carry_their_conditions() {
        let (_dir, store) = temp_store();
        let worker = elsewhere("worker-a");
        let outage = SystemOutage {
            cause: OutageCause::BrokerUnreachable,
            since: at(1),
            detail: "cannot reach the broker".to_owned(),
        };
        store
            .beat_ingest_worker(&worker, at(2), std::slice::from_ref(&outage))
            .unwrap();
        store
            .beat_ingest_worker(&elsewhere("worker-b"), at(1), &[])
            .unwrap();
        let workers = store.ingest_workers().unwrap();
        assert_eq!(workers.len(), 2);
        assert_eq!(workers[0].worker, "worker-a");
        assert_eq!(workers[0].heartbeat, at(2));
        assert_eq!(workers[0].conditions, vec![outage]);
        store.beat_ingest_worker(&worker, at(3), &[]).unwrap();
        assert!(store.ingest_workers().unwrap()[0].conditions.is_empty());
    }
}
