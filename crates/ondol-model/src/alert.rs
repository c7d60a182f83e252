//! The alerting vocabulary of DESIGN §4: rules, severities, the lifecycle
//! and the outcomes caseworkers record.

use std::fmt;

macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(
    /// The alert rules.
    Rule {
        MissedCheckin => "missed_checkin",
        Inactivity => "inactivity",
        HelpRequest => "help_request",
        DeviceOffline => "device_offline",
        VitalOutOfBand => "vital_out_of_band",
        SystemOutage => "system_outage",
    }
);

impl Rule {
    /// Whether the rule fires because data is missing: such alerts are held
    /// back during our own outages, after a restart and during the grace
    /// period after recovery (DESIGN §4).
    pub fn is_missing_data(self) -> bool {
        matches!(
            self,
            Rule::MissedCheckin | Rule::Inactivity | Rule::DeviceOffline
        )
    }
}

names!(
    /// How urgent an alert is, lowest first.
    Severity {
        Low => "low",
        Caution => "caution",
        Alarm => "alarm",
        Danger => "danger",
        Critical => "critical",
    }
);

names!(
    /// The lifecycle `open → acknowledged → resolved`.
    AlertStatus {
        Open => "open",
        Acknowledged => "acknowledged",
        Resolved => "resolved",
    }
);

names!(
    /// How a resolved alert ended.
    Outcome {
        ResidentOk => "resident_ok",
        NeededHelp => "needed_help",
        EmergencyServices => "emergency_services",
        Hospitalised => "hospitalised",
        FalseAlarmDevice => "false_alarm_device",
        FalseAlarmBehaviour => "false_alarm_behaviour",
        NoContact => "no_contact",
        // The condition ended on its own before anyone acknowledged.
        ClearedByResident => "cleared_by_resident",
    }
);

impl Outcome {
    /// The outcomes staff may choose: all but `cleared_by_resident`, which
    /// only Ondol records.
    pub fn staff_choices() -> impl Iterator<Item = Outcome> {
        Outcome::ALL
            .iter()
            .copied()
            .filter(|o| *o != Outcome::ClearedByResident)
    }

    /// `s` as an outcome staff may choose, or a message saying why not
    /// (for the CLI and the API alike).
    pub fn parse_staff_choice(s: &str) -> Result<Outcome, String> {
        match Outcome::parse(s) {
            Some(Outcome::ClearedByResident) => {
                Err("cleared_by_resident is recorded by Ondol itself, not by staff".into())
            }
            Some(outcome) => Ok(outcome),
            None => Err(format!(
                "unknown outcome {s:?}; one of {}",
                Outcome::staff_choices()
                    .map(Outcome::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

names!(
    /// What happened to an alert, as its notification says (`event`).
    AlertEvent {
        Opened => "opened",
        // A higher inactivity tier on the same alert.
        Raised => "raised",
        // Another help request while one is open.
        Repeated => "repeated",
        // Nobody acknowledged in time: the supervisors are told too.
        Escalated => "escalated",
        // Someone took it: whoever was paged stops worrying about who will.
        Acknowledged => "acknowledged",
        // It is over (its `outcome` says how): the page can be dropped.
        Resolved => "resolved",
    }
);

impl AlertEvent {
    /// Whether this event pages its receivers (rather than telling them
    /// that a page they had is taken or over).
    pub fn pages(self) -> bool {
        matches!(
            self,
            AlertEvent::Opened | AlertEvent::Raised | AlertEvent::Repeated | AlertEvent::Escalated
        )
    }
}

const STAFF_ALERTS_PREFIX: &str = "ondol/v1/caseworkers/";
const STAFF_ALERTS_SUFFIX: &str = "/alerts";

/// Topic of a staff member's alert events (caseworkers and supervisors).
pub fn staff_alerts_topic(staff: &crate::StaffId) -> String {
    format!("{STAFF_ALERTS_PREFIX}{staff}{STAFF_ALERTS_SUFFIX}")
}

/// The staff member whose alert topic `topic` is, if it is one.
pub fn staff_of_alerts_topic(topic: &str) -> Option<crate::StaffId> {
    topic
        .strip_prefix(STAFF_ALERTS_PREFIX)?
        .strip_suffix(STAFF_ALERTS_SUFFIX)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.as_str()), Some(*rule));
        }
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(*outcome));
        }
        assert_eq!(Outcome::ALL.len(), 8);
        assert!(Severity::Critical > Severity::Danger);
        assert_eq!(AlertStatus::parse("closed"), None);
        assert_eq!(Outcome::staff_choices().count(), 7);
        assert_eq!(
            Outcome::parse_staff_choice("no_contact"),
            Ok(Outcome::NoContact)
        );
        assert!(Outcome::parse_staff_choice("cleared_by_resident").is_err());
        assert!(
            Outcome::parse_staff_choice("fine")
                .is_err_and(|message| message.contains("resident_ok"))
        );
        for event in AlertEvent::ALL {
            assert_eq!(AlertEvent::parse(event.as_str()), Some(*event));
        }
        assert!(AlertEvent::Escalated.pages() && !AlertEvent::Resolved.pages());
    }

    #[test]
    fn a_staff_alert_topic_names_its_staff_member() {
        let staff: crate::StaffId = "cw-01".parse().expect("valid");
        let topic = staff_alerts_topic(&staff);
        assert_eq!(staff_of_alerts_topic(&topic), Some(staff));
        assert_eq!(staff_of_alerts_topic("ondol/v1/system/alerts"), None);
        assert_eq!(staff_of_alerts_topic("ondol/v1/caseworkers//alerts"), None);
    }
}
