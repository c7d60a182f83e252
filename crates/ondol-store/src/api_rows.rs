//! Queries the HTTP API needs beyond the alerting and ingest ones: the
//! caller's staff row, pages of alerts in a caller's scope and the alerts
//! behind a supervisor's overview.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use ondol_model::StaffId;
use ondol_model::alert::{Rule, Severity};
use ondol_model::roster::{Staff, StaffRole};

use crate::Store;
use crate::alerts::{AlertRow, alerts_where};
use crate::error::StoreError;
use crate::roster_db::invalid;

/// Which alerts a list shows, by status, and in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertList {
    /// Open and acknowledged, most urgent first: severity descending, then
    /// the oldest first.
    Active,
    /// Open only, in the order of `Active`.
    Open,
    /// Acknowledged only, in the order of `Active`.
    Acknowledged,
    /// Resolved, most recently resolved first.
    Resolved,
}

/// A page request for alerts.
#[derive(Debug, Clone)]
pub struct AlertsQuery<'a> {
    pub list: AlertList,
    /// Only alerts of these residents; `None` = of any resident.
    pub residents: Option<&'a [String]>,
    /// Whether alerts about no resident (system outages) are included.
    pub unattributed: bool,
    pub rule: Option<Rule>,
    /// Continue after this position (from [`alert_position`]).
    pub after: Option<AlertPosition>,
    pub limit: usize,
}

/// An alert's place in the sort order of its list: three integers compared
/// in order (the last is unique per alert).
pub type AlertPosition = (i64, i64, i64);

/// 0 (low) to 4 (critical).
pub fn severity_rank(severity: Severity) -> i64 {
    Severity::ALL
        .iter()
        .position(|s| *s == severity)
        .and_then(|p| i64::try_from(p).ok())
        .unwrap_or(0)
}

/// The position of `alert` in `list`, for the cursor of the next page.
pub fn alert_position(list: AlertList, alert: &AlertRow) -> AlertPosition {
    match list {
        AlertList::Resolved => (
            -alert.resolved_at.map_or(0, |t| t.as_millisecond()),
            -alert.id,
            0,
        ),
        _ => (
            -severity_rank(alert.severity),
            alert.opened_at.as_millisecond(),
            alert.id,
        ),
    }
}

const RANK: &str = "(CASE severity WHEN 'low' THEN 0 WHEN 'caution' THEN 1 WHEN 'alarm' THEN 2 \
                    WHEN 'danger' THEN 3 ELSE 4 END)";

impl Store {
    /// A staff member as the roster in the store has them now.
    pub fn staff_member(&self, id: &StaffId) -> Result<Option<Staff>, StoreError> {
        let row = self
            .conn
            .prepare_cached("SELECT name, role, region, token_env FROM staff WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([id.as_str()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()
            })
            .map_err(StoreError::sqlite("reading a staff member"))?;
        let Some((name, role, region, token_env)) = row else {
            return Ok(None);
        };
        let role = StaffRole::parse(&role)
            .ok_or_else(|| invalid("staff", id.to_string(), format!("role {role:?}")))?;
        Ok(Some(Staff {
            id: id.clone(),
            name,
            role,
            region,
            token_env,
        }))
    }

    /// One page of alerts (`limit + 1` are read to tell whether another
    /// page follows: the caller trims). Uses `alerts_by_status`.
    pub fn alerts_page(&self, query: &AlertsQuery<'_>) -> Result<Vec<AlertRow>, StoreError> {
        let (status, key) = match query.list {
            AlertList::Active => (
                "status IN ('open', 'acknowledged')",
                format!("-{RANK}, opened_ms, id"),
            ),
            AlertList::Open => ("status = 'open'", format!("-{RANK}, opened_ms, id")),
            AlertList::Acknowledged => {
                ("status = 'acknowledged'", format!("-{RANK}, opened_ms, id"))
            }
            // (0 + 0): a literal 0 in ORDER BY would name a column.
            AlertList::Resolved => (
                "status = 'resolved'",
                "-resolved_ms, -id, (0 + 0)".to_owned(),
            ),
        };
        let residents = query
            .residents
            .map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into()));
        let condition = format!(
            "{status} \
             AND (?1 IS NULL OR rule = ?1) \
             AND ((resident_id IS NULL AND ?2) \
                  OR (resident_id IS NOT NULL AND (?3 IS NULL OR resident_id IN (SELECT value FROM json_each(?3))))) \
             AND (?4 IS NULL OR ({key}) > (?4, ?5, ?6)) \
             ORDER BY {key} LIMIT ?7"
        );
        let after = query.after;
        alerts_where(
            &self.conn,
            &condition,
            params![
                query.rule.map(Rule::as_str),
                query.unattributed,
                residents,
                after.map(|a| a.0),
                after.map(|a| a.1),
                after.map(|a| a.2),
                i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX),
            ],
        )
    }

    /// Every alert about these residents (about any resident when `None`)
    /// opened at or after `since`, newest first: the alert history of a
    /// supervisor's overview. Two statements, so that each seeks its index
    /// (`alerts_by_resident` per resident, `alerts_by_status` by time)
    /// instead of scanning every alert.
    pub fn resident_alerts_since(
        &self,
        residents: Option<&[String]>,
        since: Timestamp,
    ) -> Result<Vec<AlertRow>, StoreError> {
        const ORDER: &str = "ORDER BY opened_ms DESC, id DESC";
        match residents {
            Some(residents) => alerts_where(
                &self.conn,
                &format!(
                    "resident_id IN (SELECT value FROM json_each(?2)) AND opened_ms >= ?1 {ORDER}"
                ),
                params![
                    since.as_millisecond(),
                    serde_json::to_string(residents).unwrap_or_else(|_| "[]".into())
                ],
            ),
            None => alerts_where(
                &self.conn,
                &format!("resident_id IS NOT NULL AND opened_ms >= ?1 {ORDER}"),
                params![since.as_millisecond()],
            ),
        }
    }
}
