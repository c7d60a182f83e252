//! The effects of a decision: alerts raised, updated and cleared in the
//! store with their notifications, and who receives them.

use super::*;

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn raise(
        &mut self,
        r: u32,
        rule: Rule,
        episode: String,
        severity: Severity,
        cause: Cause,
        device: Option<&DeviceId>,
        now: Timestamp,
    ) -> Result<Raised, AlertingError> {
        let Some(state) = self.residents.get(r as usize) else {
            return Err(AlertingError::Internal("resident index out of range"));
        };
        let resident = &state.resident;
        let subject = match (rule, device) {
            (Rule::DeviceOffline, Some(device)) => device_subject(device),
            _ => resident_subject(&resident.id),
        };
        let new = NewAlert {
            rule,
            subject,
            resident_id: Some(resident.id.clone()),
            device_id: device.cloned(),
            episode,
            severity,
            cause,
            detail: None,
            local_date: Some(schedule::local_date(now, &resident.timezone)),
            opened_at: now,
            next_escalation_at: Some(after(now, self.config.ack_timeout)),
        };
        let audience = self.first_audience(resident);
        let webhook = self.webhook;
        let raised = self.store.raise_alert(&new, |row| {
            notification::for_alert(row, AlertEvent::Opened, &audience, webhook)
        })?;
        if let Raised::New(row) = &raised {
            tracing::warn!(alert = row.id, rule = %rule, severity = %severity, cause = %cause, resident = %resident.id, "alert opened");
            self.schedule(Timer::Escalate(row.id), row.next_escalation_at);
            self.outbox.notify_one();
        }
        Ok(raised)
    }

    pub(super) fn update(
        &mut self,
        alert: &AlertRow,
        event: AlertEvent,
        severity: Option<Severity>,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<(), AlertingError> {
        let audience = match alert.resident_id.as_ref().and_then(|id| self.state_of(id)) {
            Some(state) => self.first_audience(&state.resident),
            None => Audience::System,
        };
        let webhook = self.webhook;
        let update = AlertUpdate {
            event,
            severity,
            escalated: false,
            next_escalation_at: None,
            note,
        };
        if self
            .store
            .update_alert(alert.id, &update, now, |row| {
                notification::for_alert(row, event, &audience, webhook)
            })?
            .is_some()
        {
            tracing::warn!(alert = alert.id, rule = %alert.rule, event = %event, "alert updated");
            self.outbox.notify_one();
        }
        Ok(())
    }

    /// The condition ended before anyone acknowledged.
    pub(super) fn clear(&mut self, alert: &AlertRow, now: Timestamp) -> Result<(), AlertingError> {
        if let Ok(row) = self.store.resolve_alert(
            alert.id,
            SYSTEM_ACTOR,
            Outcome::ClearedByResident,
            now,
            None,
        )? {
            tracing::info!(alert = row.id, rule = %row.rule, "alert cleared: the condition ended before anyone acknowledged");
            self.schedule(Timer::Escalate(row.id), None);
        }
        Ok(())
    }

    pub(super) fn resolve_if_open(&mut self, id: i64, now: Timestamp) -> Result<(), AlertingError> {
        if let Some(alert) = self.store.alert(id)?
            && alert.status == AlertStatus::Open
        {
            self.clear(&alert, now)?;
        }
        Ok(())
    }

    /// Who hears of a resident's alert first: the caseworker, or the
    /// supervisors when the resident has none.
    pub(super) fn first_audience(&self, resident: &Resident) -> Audience {
        match &resident.caseworker {
            Some(cw) => Audience::Staff(vec![cw.clone()]),
            None => Audience::Staff(self.supervisors_of(&resident.region)),
        }
    }

    /// A resident's state, also after they left the roster (their open
    /// alerts still go to the staff who were responsible).
    pub(super) fn state_of(&self, id: &ResidentId) -> Option<&ResidentState> {
        self.resident_index
            .get(id)
            .or_else(|| self.removed_index.get(id))
            .and_then(|&r| self.residents.get(r as usize))
    }

    pub(super) fn escalation_audience(&self, alert: &AlertRow) -> Audience {
        let Some(state) = alert.resident_id.as_ref().and_then(|id| self.state_of(id)) else {
            return Audience::System;
        };
        let mut to = self.supervisors_of(&state.resident.region);
        if let Some(cw) = &state.resident.caseworker
            && !to.contains(cw)
        {
            to.push(cw.clone());
        }
        Audience::Staff(to)
    }

    pub(super) fn supervisors_of(&self, region: &str) -> Vec<StaffId> {
        self.supervisors
            .iter()
            .filter(|(r, _)| r.as_deref().is_none_or(|r| r == region))
            .map(|(_, id)| id.clone())
            .collect()
    }
}
