//! The audit log (DESIGN §5): who read or changed which resident's data,
//! when and from where.
//!
//! Append-only in two ways:
//! - triggers refuse `UPDATE` and `DELETE` on `audit_log`, so no code path
//!   of Ondol (or a careless `sqlite3` session) can change history;
//! - every entry carries the SHA-256 of its content and of the previous
//!   entry's hash (a hash chain), so a change made around the triggers
//!   (editing the file, dropping the triggers) shows in
//!   [`Store::verify_audit`]: the changed entry no longer matches its hash,
//!   or its successor no longer names it.
//!
//! A chain cannot show that its newest entries were cut off, or that
//! someone with write access rebuilt every hash after a change. The head
//! (sequence number and hash) is therefore printed by `ondol audit verify`
//! and written into every export: the monthly review keeps it, and the next
//! review checks the chain still passes through it ([`Store::audit_entry`]).

use jiff::Timestamp;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use crate::Store;
use crate::error::StoreError;
use crate::roster_db::{invalid, timestamp};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One access to record.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    pub at: Timestamp,
    /// The staff id (or `cli:<user>` for local commands).
    pub actor: &'a str,
    /// The actor's role at the time: caseworker, supervisor, evaluator, admin.
    pub role: &'a str,
    /// What was done, e.g. `GET /api/v1/residents/{id}/readings`.
    pub action: &'a str,
    /// Residents whose data was in the answer or was changed (may be empty,
    /// e.g. for a refused request naming no resident in scope).
    pub residents: &'a [&'a str],
    /// Where the request came from (the client address).
    pub source: &'a str,
    /// The answer given (an HTTP status).
    pub status: u16,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub residents: Vec<String>,
    pub source: String,
    pub status: u16,
    pub prev_hash: String,
    pub hash: String,
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// The newest entry's sequence number and hash (`None`: empty log).
    pub head: Option<(i64, String)>,
    /// The first entry that does not fit the chain, if any.
    pub broken: Option<AuditBreak>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    pub seq: i64,
    pub reason: String,
}

/// The hashed content of an entry, as stored.
struct Fields<'a> {
    seq: i64,
    at_ms: i64,
    actor: &'a str,
    role: &'a str,
    action: &'a str,
    /// The JSON array text, exactly as stored.
    residents: &'a str,
    source: &'a str,
    status: u16,
    prev_hash: &'a str,
}

impl Fields<'_> {
    /// SHA-256 over a JSON array of the fields and the previous hash. A JSON
    /// array keeps field boundaries unambiguous (no `"a|b" + "c"` =
    /// `"a" + "b|c"`).
    fn hash(&self) -> String {
        let content = serde_json::json!([
            self.seq,
            self.at_ms,
            self.actor,
            self.role,
            self.action,
            self.residents,
            self.source,
            self.status,
            self.prev_hash
        ]);
        hex::encode(Sha256::digest(content.to_string().as_bytes()))
    }
}

const COLUMNS: &str = "seq, at_ms, actor, role, action, residents, source, status, prev_hash, hash";

/// A row as stored, before parsing: the hash is computed over these texts.
struct RawRecord {
    seq: i64,
    at_ms: i64,
    actor: String,
    role: String,
    action: String,
    residents: String,
    source: String,
    status: u16,
    prev_hash: String,
    hash: String,
}

impl RawRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
        Ok(RawRecord {
            seq: row.get(0)?,
            at_ms: row.get(1)?,
            actor: row.get(2)?,
            role: row.get(3)?,
            action: row.get(4)?,
            residents: row.get(5)?,
            source: row.get(6)?,
            status: row.get(7)?,
            prev_hash: row.get(8)?,
            hash: row.get(9)?,
        })
    }

    fn computed_hash(&self) -> String {
        Fields {
            seq: self.seq,
            at_ms: self.at_ms,
            actor: &self.actor,
            role: &self.role,
            action: &self.action,
            residents: &self.residents,
            source: &self.source,
            status: self.status,
            prev_hash: &self.prev_hash,
        }
        .hash()
    }

    fn parse(self) -> Result<AuditRecord, StoreError> {
        let key = self.seq.to_string();
        let residents: Vec<String> = serde_json::from_str(&self.residents)
            .map_err(|e| invalid("audit_log", key.clone(), format!("residents: {e}")))?;
        Ok(AuditRecord {
            seq: self.seq,
            at: timestamp(self.at_ms, "audit_log", || key.clone())?,
            actor: self.actor,
            role: self.role,
            action: self.action,
            residents,
            source: self.source,
            status: self.status,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

impl Store {
    /// Appends `entry` to the chain and returns its sequence number. The
    /// read of the previous hash and the insert run in one exclusive
    /// transaction, so processes sharing the store never fork the chain.
    pub fn append_audit(&mut self, entry: &AuditEntry<'_>) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting an audit append"))?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(StoreError::sqlite("reading the audit chain's head"))?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let at_ms = entry.at.as_millisecond();
        let residents = serde_json::to_string(entry.residents)
            .map_err(|e| invalid("audit_log", seq.to_string(), format!("residents: {e}")))?;
        let hash = Fields {
            seq,
            at_ms,
            actor: entry.actor,
            role: entry.role,
            action: entry.action,
            residents: &residents,
            source: entry.source,
            status: entry.status,
            prev_hash: &prev_hash,
        }
        .hash();
        tx.execute(
            &format!(
                "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                seq,
                at_ms,
                entry.actor,
                entry.role,
                entry.action,
                residents,
                entry.source,
                entry.status,
                prev_hash,
                hash
            ],
        )
        .map_err(StoreError::sqlite("appending an audit entry"))?;
        tx.commit()
            .map_err(StoreError::sqlite("committing an audit entry"))?;
        Ok(seq)
    }

    /// Walks the whole chain from the first entry: every entry's hash must
    /// match its content and name its predecessor's hash, and sequence
    /// numbers must have no gaps. Stops at the first break.
    pub fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq"))
            .map_err(StoreError::sqlite("preparing the audit chain walk"))?;
        let mut rows = stmt
            .query([])
            .map_err(StoreError::sqlite("walking the audit chain"))?;
        let mut verification = AuditVerification {
            entries: 0,
            head: None,
            broken: None,
        };
        let mut expected_prev = GENESIS_HASH.to_owned();
        let mut expected_seq = 1;
        while let Some(row) = rows
            .next()
            .map_err(StoreError::sqlite("walking the audit chain"))?
        {
            let record =
                RawRecord::from_row(row).map_err(StoreError::sqlite("reading an audit entry"))?;
            let reason = if record.seq != expected_seq {
                Some(format!(
                    "entry #{expected_seq} is missing (the next stored entry is #{})",
                    record.seq
                ))
            } else if record.prev_hash != expected_prev {
                Some("does not name the previous entry's hash (an entry before it was changed or removed)".to_owned())
            } else if record.computed_hash() != record.hash {
                Some("content does not match its hash (the entry was changed)".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                verification.broken = Some(AuditBreak {
                    seq: record.seq,
                    reason,
                });
                return Ok(verification);
            }
            verification.entries += 1;
            expected_seq = record.seq + 1;
            expected_prev = record.hash.clone();
            verification.head = Some((record.seq, record.hash));
        }
        Ok(verification)
    }

    /// One entry by sequence number (to check a head kept by an earlier
    /// review is still in the chain).
    pub fn audit_entry(&self, seq: i64) -> Result<Option<AuditRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM audit_log WHERE seq = ?1"),
                [seq],
                RawRecord::from_row,
            )
            .optional()
            .map_err(StoreError::sqlite("reading an audit entry"))?
            .map(RawRecord::parse)
            .transpose()
    }

    /// Calls `each` with every entry at `from <= at < to`, oldest first,
    /// without holding them all in memory (a month can be millions).
    pub fn for_each_audit(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut each: impl FnMut(AuditRecord) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY seq"
            ))
            .map_err(StoreError::sqlite("preparing the audit export"))?;
        let mut rows = stmt
            .query(params![from.as_millisecond(), to.as_millisecond()])
            .map_err(StoreError::sqlite("reading the audit log"))?;
        let mut count = 0;
        while let Some(row) = rows
            .next()
            .map_err(StoreError::sqlite("reading the audit log"))?
        {
            let record =
                RawRecord::from_row(row).map_err(StoreError::sqlite("reading an audit entry"))?;
            each(record.parse()?)?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry<'a>(at: &str, actor: &'a str, residents: &'a [&'a str]) -> AuditEntry<'a> {
        AuditEntry {
            at: at.parse().unwrap(),
            actor,
            role: "caseworker",
            action: "GET /api/v1/residents/{id}",
            residents,
            source: "192.0.2.7:50123",
            status: 200,
        }
    }

    fn filled() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(
            store
                .append_audit(&entry("2026-11-01T09:00:00Z", "cw-01", &["r-0001"]))
                .unwrap(),
            1
        );
        store
            .append_audit(&entry(
                "2026-11-15T09:00:00.500Z",
                "cw-02",
                &["r-0002", "r-0003"],
            ))
            .unwrap();
        store
            .append_audit(&entry("2026-12-01T00:00:00Z", "cw-01", &[]))
            .unwrap();
        store
    }

    #[test]
    fn an_intact_chain_verifies_and_names_its_head() {
        let store = Store::open_in_memory().unwrap();
        let empty = store.verify_audit().unwrap();
        assert_eq!((empty.entries, empty.head, empty.broken), (0, None, None));

        let store = filled();
        let verification = store.verify_audit().unwrap();
        assert_eq!(verification.entries, 3);
        assert_eq!(verification.broken, None);
        let (seq, hash) = verification.head.unwrap();
        assert_eq!(seq, 3);
        assert_eq!(store.audit_entry(3).unwrap().unwrap().hash, hash);
        assert_eq!(
            store.audit_entry(1).unwrap().unwrap().prev_hash,
            GENESIS_HASH
        );
        assert_eq!(
            store.audit_entry(2).unwrap().unwrap().residents,
            vec!["r-0002".to_owned(), "r-0003".to_owned()]
        );
    }

    #[test]
    fn the_log_refuses_updates_and_deletes() {
        let store = filled();
        let update = store
            .conn
            .execute("UPDATE audit_log SET actor = 'cw-09' WHERE seq = 2", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = store
            .conn
            .execute("DELETE FROM audit_log WHERE seq = 3", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        assert_eq!(store.verify_audit().unwrap().broken, None);
    }

    #[test]
    fn a_changed_entry_breaks_the_chain_where_it_was_changed() {
        let store = filled();
        store
            .conn
            .execute_batch(
                "DROP TRIGGER audit_log_no_update; \
                 UPDATE audit_log SET residents = '[\"r-0002\"]' WHERE seq = 2;",
            )
            .unwrap();
        let verification = store.verify_audit().unwrap();
        let broken = verification.broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.reason.contains("changed"), "{}", broken.reason);
        assert_eq!(verification.entries, 1);
    }

    #[test]
    fn a_rehashed_entry_still_breaks_at_its_successor() {
        let store = filled();
        let forged = {
            let r = store.audit_entry(2).unwrap().unwrap();
            Fields {
                seq: 2,
                at_ms: r.at.as_millisecond(),
                actor: "cw-09",
                role: &r.role,
                action: &r.action,
                residents: "[\"r-0002\",\"r-0003\"]",
                source: &r.source,
                status: r.status,
                prev_hash: &r.prev_hash,
            }
            .hash()
        };
        store
            .conn
            .execute_batch("DROP TRIGGER audit_log_no_update;")
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE audit_log SET actor = 'cw-09', hash = ?1 WHERE seq = 2",
                [forged],
            )
            .unwrap();
        assert_eq!(store.verify_audit().unwrap().broken.unwrap().seq, 3);
    }

    #[test]
    fn a_removed_entry_breaks_the_chain() {
        let store = filled();
        store
            .conn
            .execute_batch("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;")
            .unwrap();
        let broken = store.verify_audit().unwrap().broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("#2 is missing"), "{}", broken.reason);
    }

    #[test]
    fn export_reads_a_half_open_range_in_order() {
        let store = filled();
        let mut seen = Vec::new();
        let count = store
            .for_each_audit(
                "2026-11-01T00:00:00Z".parse().unwrap(),
                "2026-12-01T00:00:00Z".parse().unwrap(),
                |record| {
                    seen.push((record.seq, record.actor));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(count, 2);
        assert_eq!(seen, vec![(1, "cw-01".to_owned()), (2, "cw-02".to_owned())]);
    }

    #[test]
    fn appends_from_two_connections_share_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ondol.db");
        let mut a = Store::open(&path).unwrap();
        let mut b = Store::open(&path).unwrap();
        for i in 0..10 {
            let store = if i % 2 == 0 { &mut a } else { &mut b };
            store
                .append_audit(&entry("2026-11-02T10:00:00Z", "cw-01", &["r-0001"]))
                .unwrap();
        }
        let verification = a.verify_audit().unwrap();
        assert_eq!((verification.entries, verification.broken), (10, None));
    }
}
