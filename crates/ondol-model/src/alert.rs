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

/// Topic of a staff member's alert events (caseworkers and supervisors).
pub fn staff_alerts_topic(staff: &crate::StaffId) -> String {
    format!("ondol/v1/caseworkers/{staff}/alerts")
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
    }
}
