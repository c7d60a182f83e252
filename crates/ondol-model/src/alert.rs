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

/// Why Ondol itself cannot see (or keep) what devices send: the source of
/// one of our own outages, and the cause of its `system_outage` alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutageSource {
    /// The MQTT broker does not answer (the embedded router's probe, or
    /// ingest cannot reconnect to the external broker).
    Broker,
    /// A large share of devices went silent together.
    MassSilence,
    /// No device message at all arrived for a while (ingest's watchdog).
    NoMessages,
    /// The operational store refuses ingest's commits.
    Store,
    /// The external time-series sink (InfluxDB) refuses or does not answer;
    /// readings are spooled on disk and still reach alerting.
    Timeseries,
    /// Alerting itself did not run (a frozen process, a starved host, a
    /// wall clock jump). Momentary: it ends as it is found, and the grace
    /// period holds what came due in the gap.
    Stalled,
    /// Ingest holds messages older than `ingest.stall_after` (a stuck
    /// commit, a locked store): alerting would decide on stale data.
    IngestStalled,
    /// No ingest worker has been heard from (alerting in its own process
    /// reads their heartbeats in the store): nothing devices send is
    /// being committed.
    IngestDown,
}

impl OutageSource {
    pub const ALL: [OutageSource; 8] = [
        OutageSource::Broker,
        OutageSource::MassSilence,
        OutageSource::NoMessages,
        OutageSource::Store,
        OutageSource::Timeseries,
        OutageSource::Stalled,
        OutageSource::IngestStalled,
        OutageSource::IngestDown,
    ];

    /// The `system_outage` alert's cause.
    pub fn as_str(self) -> &'static str {
        match self {
            OutageSource::Broker => "broker_unreachable",
            OutageSource::MassSilence => "mass_silence",
            OutageSource::NoMessages => "no_messages",
            OutageSource::Store => "store_unwritable",
            OutageSource::Timeseries => "timeseries_unreachable",
            OutageSource::Stalled => "stalled",
            OutageSource::IngestStalled => "ingest_stalled",
            OutageSource::IngestDown => "ingest_down",
        }
    }

    pub fn parse(s: &str) -> Option<OutageSource> {
        OutageSource::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether this outage hides residents from alerting, so that alerts
    /// caused by missing data must be held. A time-series sink outage does
    /// not: readings are still committed to the store (and spooled for the
    /// sink), so alerting sees everything and holding would only delay
    /// real alerts. Supervisors are told either way.
    pub fn hides_residents(self) -> bool {
        !matches!(self, OutageSource::Timeseries)
    }
}

/// Alerting's name for the part a condition of ingest or the sink is about.
impl From<crate::condition::OutageCause> for OutageSource {
    fn from(cause: crate::condition::OutageCause) -> OutageSource {
        use crate::condition::OutageCause;
        match cause {
            OutageCause::NoMessages => OutageSource::NoMessages,
            OutageCause::BrokerUnreachable => OutageSource::Broker,
            OutageCause::StoreUnwritable => OutageSource::Store,
            OutageCause::IngestStalled => OutageSource::IngestStalled,
            OutageCause::SinkUnauthorized | OutageCause::SinkUnreachable => {
                OutageSource::Timeseries
            }
        }
    }
}

/// What an alert is about: a resident, a device (`device_offline`), or
/// Ondol itself (`system_outage`). Stored as `resident:<id>`,
/// `device:<id>` or `system`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Resident(crate::ResidentId),
    Device(crate::DeviceId),
    System,
}

impl Subject {
    pub fn parse(s: &str) -> Option<Subject> {
        if s == "system" {
            return Some(Subject::System);
        }
        if let Some(id) = s.strip_prefix("resident:") {
            return id.parse().ok().map(Subject::Resident);
        }
        s.strip_prefix("device:")?.parse().ok().map(Subject::Device)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Resident(id) => write!(f, "resident:{id}"),
            Subject::Device(id) => write!(f, "device:{id}"),
            Subject::System => f.write_str("system"),
        }
    }
}

/// Why an alert was raised (`alert.cause` in DESIGN §4 and docs/ALERTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// `missed_checkin`: no check-in in the window.
    NoCheckin,
    /// `inactivity`: no sign of movement for the tier's time.
    NoActivity,
    /// Either resident rule when every device of the resident is silent:
    /// Ondol cannot see the resident, which is not the resident not moving.
    NoData,
    /// `help_request`: the help button.
    Help,
    /// `help_request`: a detected fall.
    Fall,
    /// `device_offline`: nothing heard from the device.
    Silent,
    /// `device_offline`: its Will said offline.
    WillOffline,
    /// `vital_out_of_band`: above the band.
    VitalHigh(crate::ReadingType),
    /// `vital_out_of_band`: below the band.
    VitalLow(crate::ReadingType),
    /// `system_outage`: one of our own parts.
    Outage(OutageSource),
}

impl Cause {
    /// The reading type of a vital cause.
    pub fn vital(self) -> Option<crate::ReadingType> {
        match self {
            Cause::VitalHigh(kind) | Cause::VitalLow(kind) => Some(kind),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        Some(match s {
            "no_checkin" => Cause::NoCheckin,
            "no_activity" => Cause::NoActivity,
            "no_data" => Cause::NoData,
            "help" => Cause::Help,
            "fall" => Cause::Fall,
            "silent" => Cause::Silent,
            "will_offline" => Cause::WillOffline,
            other => {
                if let Some(kind) = other.strip_suffix("_high") {
                    Cause::VitalHigh(crate::ReadingType::parse(kind)?)
                } else if let Some(kind) = other.strip_suffix("_low") {
                    Cause::VitalLow(crate::ReadingType::parse(kind)?)
                } else {
                    Cause::Outage(OutageSource::parse(other)?)
                }
            }
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::NoCheckin => f.write_str("no_checkin"),
            Cause::NoActivity => f.write_str("no_activity"),
            Cause::NoData => f.write_str("no_data"),
            Cause::Help => f.write_str("help"),
            Cause::Fall => f.write_str("fall"),
            Cause::Silent => f.write_str("silent"),
            Cause::WillOffline => f.write_str("will_offline"),
            Cause::VitalHigh(kind) => write!(f, "{}_high", kind.as_str()),
            Cause::VitalLow(kind) => write!(f, "{}_low", kind.as_str()),
            Cause::Outage(source) => f.write_str(source.as_str()),
        }
    }
}

impl serde::Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl serde::Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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
    fn subjects_and_causes_round_trip_through_their_stored_spelling() {
        let subjects = [
            Subject::Resident("r-1".parse().expect("id")),
            Subject::Device("gw-1".parse().expect("id")),
            Subject::System,
        ];
        for subject in subjects {
            assert_eq!(Subject::parse(&subject.to_string()), Some(subject));
        }
        assert_eq!(
            Subject::parse("resident:r-1")
                .map(|s| s.to_string())
                .as_deref(),
            Some("resident:r-1")
        );
        assert_eq!(Subject::parse("nobody"), None);
        let mut causes = vec![
            Cause::NoCheckin,
            Cause::NoActivity,
            Cause::NoData,
            Cause::Help,
            Cause::Fall,
            Cause::Silent,
            Cause::WillOffline,
        ];
        for kind in crate::ReadingType::ALL {
            causes.push(Cause::VitalHigh(kind));
            causes.push(Cause::VitalLow(kind));
        }
        causes.extend(OutageSource::ALL.map(Cause::Outage));
        for cause in causes {
            assert_eq!(Cause::parse(&cause.to_string()), Some(cause), "{cause}");
        }
        assert_eq!(
            Cause::VitalHigh(crate::ReadingType::HeartRate).to_string(),
            "heart_rate_high"
        );
        assert_eq!(Cause::parse("heart_rate_sideways"), None);
        assert_eq!(
            Cause::Outage(OutageSource::Broker).to_string(),
            "broker_unreachable"
        );
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
