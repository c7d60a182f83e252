//! Who may connect to the embedded broker and what each identity may do
//! (DESIGN §2). Pure rules over a snapshot; [`guard`](crate::guard) applies
//! them to every packet of every connection.
//!
//! The snapshot ([`AccessList`]) is built by the binary from the store and
//! the staff tokens, and swapped through a [`Gate`] whenever the store
//! changes, so a revoked or rotated device is refused on its next packet
//! without a restart. Password verification is injected ([`VerifySecret`]):
//! this crate never sees how device secrets are hashed.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ondol_model::id::check_id;
use ondol_model::roster::StaffRole;
use tokio::sync::watch;

/// Checks a presented device secret against its stored hash. May be slow
/// (Argon2): the broker calls it on a blocking thread.
pub type VerifySecret = Arc<dyn Fn(&StoredSecret, &str) -> bool + Send + Sync>;

/// A device's stored credential: an opaque hash (PHC string). `Debug` and
/// `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret(Arc<str>);

impl StoredSecret {
    pub fn new(hash: impl Into<Arc<str>>) -> Self {
        Self(hash.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredSecret(<hash>)")
    }
}

/// A staff member's bearer token, compared in constant time. `Debug` never
/// shows it.
#[derive(Clone)]
pub struct StaffToken(Arc<str>);

impl StaffToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for StaffToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaffToken(<redacted>)")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the store says about one device.
#[derive(Debug, Clone)]
pub struct DeviceAccess {
    /// `None`: the device has no credential yet and cannot connect (unless
    /// anonymous connections are allowed).
    pub secret: Option<StoredSecret>,
    /// Revoked devices are refused and disconnected.
    pub revoked: bool,
}

/// What the roster says about one staff member.
#[derive(Debug, Clone)]
pub struct StaffAccess {
    pub role: StaffRole,
    /// `None`: the token variable is not set; the member cannot connect.
    pub token: Option<StaffToken>,
}

/// Everything the broker needs to decide, at one moment.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    pub devices: HashMap<String, DeviceAccess>,
    pub staff: HashMap<String, StaffAccess>,
    /// Demo only: clients without credentials act as the device named by
    /// their client id.
    pub allow_anonymous: bool,
    /// Remote ingest workers: their username and password, if configured.
    pub ingest_worker: Option<(String, StaffToken)>,
}

/// Who a connection speaks as, decided at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A device, admitted with the credential `secret` (or anonymously,
    /// `None`); it stays connected only while that credential is current.
    Device {
        id: String,
        secret: Option<StoredSecret>,
    },
    /// A caseworker or supervisor app.
    Staff { id: String, role: StaffRole },
    /// A remote ingest worker (any client id; several share the username).
    IngestWorker { client_id: String },
}

impl Identity {
    pub fn client_label(&self) -> &str {
        match self {
            Identity::Device { id, .. } | Identity::Staff { id, .. } => id,
            Identity::IngestWorker { client_id } => client_id,
        }
    }
}

/// Why a CONNECT was refused (logged and counted, never with the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No username/password and anonymous connections are off.
    MissingCredentials,
    /// The username is not the client id (devices) or its prefix (staff).
    ClientIdMismatch,
    /// No such device or staff member, or it cannot connect over MQTT.
    UnknownIdentity,
    Revoked,
    WrongSecret,
    /// The Will names a topic this identity may not publish to.
    WillNotAllowed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingCredentials => "missing_credentials",
            Refusal::ClientIdMismatch => "client_id_mismatch",
            Refusal::UnknownIdentity => "unknown_identity",
            Refusal::Revoked => "revoked",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::WillNotAllowed => "will_not_allowed",
        }
    }
}

/// What to verify before admitting a connection.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Admit as is (anonymous demo mode).
    Admit(Identity),
    /// Admit if the password matches the device's stored secret.
    VerifyDevice(Identity, StoredSecret),
    /// Admit if the password matches the token (a staff member's, or the
    /// ingest workers' password).
    VerifyStaff(Identity, StaffToken),
}

impl AccessList {
    /// Decides who a CONNECT claims to be. Username rules: a device's
    /// username and client id are both its id (so no one can take over
    /// another device's session); a staff app's username is the staff id and
    /// its client id is the staff id or `{staff_id}:{anything}`.
    pub fn admission(&self, client_id: &str, username: Option<&str>) -> Result<Admission, Refusal> {
        let Some(username) = username.filter(|u| !u.is_empty()) else {
            if self.allow_anonymous && check_id(client_id).is_ok() {
                return Ok(Admission::Admit(Identity::Device {
                    id: client_id.to_owned(),
                    secret: None,
                }));
            }
            return Err(Refusal::MissingCredentials);
        };
        if let Some((worker, password)) = &self.ingest_worker
            && worker == username
        {
            return Ok(Admission::VerifyStaff(
                Identity::IngestWorker {
                    client_id: client_id.to_owned(),
                },
                password.clone(),
            ));
        }
        if let Some(device) = self.devices.get(username) {
            if client_id != username {
                return Err(Refusal::ClientIdMismatch);
            }
            if device.revoked {
                return Err(Refusal::Revoked);
            }
            let Some(secret) = device.secret.clone() else {
                return Err(Refusal::UnknownIdentity);
            };
            return Ok(Admission::VerifyDevice(
                Identity::Device {
                    id: username.to_owned(),
                    secret: Some(secret.clone()),
                },
                secret,
            ));
        }
        if let Some(staff) = self.staff.get(username) {
            let own = client_id == username
                || client_id
                    .strip_prefix(username)
                    .is_some_and(|rest| rest.starts_with(':'));
            if !own {
                return Err(Refusal::ClientIdMismatch);
            }
            if !matches!(staff.role, StaffRole::Caseworker | StaffRole::Supervisor) {
                return Err(Refusal::UnknownIdentity);
            }
            let Some(token) = staff.token.clone() else {
                return Err(Refusal::UnknownIdentity);
            };
            return Ok(Admission::VerifyStaff(
                Identity::Staff {
                    id: username.to_owned(),
                    role: staff.role,
                },
                token,
            ));
        }
        if self.allow_anonymous && client_id == username && check_id(client_id).is_ok() {
            return Ok(Admission::Admit(Identity::Device {
                id: client_id.to_owned(),
                secret: None,
            }));
        }
        Err(Refusal::UnknownIdentity)
    }

    /// Whether a connection admitted as `identity` may go on: the device is
    /// not revoked and its secret has not been rotated since; the staff
    /// member is still on the roster with the same role.
    /// Whether `name` signs in with a token: a staff member or the ingest
    /// workers' username.
    pub fn is_token_user(&self, name: &str) -> bool {
        self.staff.contains_key(name)
            || self
                .ingest_worker
                .as_ref()
                .is_some_and(|(worker, _)| worker == name)
    }

    pub fn is_current(&self, identity: &Identity) -> bool {
        match identity {
            Identity::Device { id, secret } => match self.devices.get(id) {
                Some(device) => !device.revoked && (secret.is_none() || device.secret == *secret),
                // Anonymous demo devices need not be registered.
                None => secret.is_none() && self.allow_anonymous,
            },
            Identity::IngestWorker { .. } => self.ingest_worker.is_some(),
            Identity::Staff { id, role } => self
                .staff
                .get(id)
                .is_some_and(|s| s.role == *role && s.token.is_some()),
        }
    }
}

/// Checks a staff password (the token) against an admission.
pub(crate) fn staff_token_matches(token: &StaffToken, presented: &str) -> bool {
    token.matches(presented)
}

/// May `identity` publish to `topic` (its Will included)?
pub fn may_publish(identity: &Identity, topic: &str) -> bool {
    match identity {
        Identity::Device { id, .. } => {
            let Some(rest) = topic
                .strip_prefix(ondol_model::wire::TOPIC_PREFIX)
                .and_then(|r| r.strip_prefix(id.as_str()))
            else {
                return false;
            };
            rest == "/readings" || rest == "/status"
        }
        Identity::Staff { .. } => false,
        Identity::IngestWorker { .. } => topic
            .strip_prefix(ondol_model::wire::TOPIC_PREFIX)
            .and_then(|r| r.strip_suffix("/receipts"))
            .is_some_and(|id| ondol_model::id::check_id(id).is_ok()),
    }
}

/// May `identity` subscribe to `filter`? Exact topics only: no wildcard
/// filter is ever granted to a remote client.
pub fn may_subscribe(identity: &Identity, filter: &str) -> bool {
    match identity {
        Identity::Device { id, .. } => {
            filter
                .strip_prefix(ondol_model::wire::TOPIC_PREFIX)
                .and_then(|r| r.strip_prefix(id.as_str()))
                == Some("/receipts")
        }
        Identity::Staff { id, role } => {
            let own = filter
                .strip_prefix("ondol/v1/caseworkers/")
                .and_then(|r| r.strip_prefix(id.as_str()))
                == Some("/alerts");
            own || (*role == StaffRole::Supervisor
                && filter == ondol_model::wire::SYSTEM_ALERTS_TOPIC)
        }
        Identity::IngestWorker { .. } => {
            // The two ingest filters, alone or in a shared-subscription group.
            let plain = match filter.strip_prefix("$share/") {
                Some(rest) => match rest.split_once('/') {
                    Some((group, plain)) if ondol_model::id::check_id(group).is_ok() => plain,
                    _ => return false,
                },
                None => filter,
            };
            plain == ondol_model::wire::READINGS_FILTER || plain == ondol_model::wire::STATUS_FILTER
        }
    }
}

/// Counters of refused connections and closed ones.
#[derive(Debug, Default)]
pub struct AccessStats {
    pub refused_connects: AtomicU64,
    pub denied_publishes: AtomicU64,
    pub denied_subscribes: AtomicU64,
    pub revoked_disconnects: AtomicU64,
}

/// A snapshot of [`AccessStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccessCounts {
    pub refused_connects: u64,
    pub denied_publishes: u64,
    pub denied_subscribes: u64,
    pub revoked_disconnects: u64,
}

impl AccessStats {
    pub fn snapshot(&self) -> AccessCounts {
        AccessCounts {
            refused_connects: self.refused_connects.load(Ordering::Relaxed),
            denied_publishes: self.denied_publishes.load(Ordering::Relaxed),
            denied_subscribes: self.denied_subscribes.load(Ordering::Relaxed),
            revoked_disconnects: self.revoked_disconnects.load(Ordering::Relaxed),
        }
    }
}

/// The broker's door: the current [`AccessList`], the injected secret
/// check and the counters. Cheap to clone; every connection holds one.
#[derive(Clone)]
pub struct Gate {
    list: watch::Receiver<Arc<AccessList>>,
    updates: Arc<watch::Sender<Arc<AccessList>>>,
    pub(crate) verify: VerifySecret,
    pub stats: Arc<AccessStats>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Gate {
    pub fn new(list: AccessList, verify: VerifySecret) -> Gate {
        let (updates, rx) = watch::channel(Arc::new(list));
        Gate {
            list: rx,
            updates: Arc::new(updates),
            verify,
            stats: Arc::new(AccessStats::default()),
        }
    }

    /// Replaces the access list; every connection checks the new one on its
    /// next packet.
    pub fn update(&self, list: AccessList) {
        self.updates.send_replace(Arc::new(list));
    }

    pub fn current(&self) -> Arc<AccessList> {
        self.list.borrow().clone()
    }

    pub fn allows_anonymous(&self) -> bool {
        self.list.borrow().allow_anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> AccessList {
        let mut list = AccessList::default();
        list.devices.insert(
            "gw-1".into(),
            DeviceAccess {
                secret: Some(StoredSecret::new("h1")),
                revoked: false,
            },
        );
        list.devices.insert(
            "gw-2".into(),
            DeviceAccess {
                secret: Some(StoredSecret::new("h2")),
                revoked: true,
            },
        );
        list.staff.insert(
            "cw-1".into(),
            StaffAccess {
                role: StaffRole::Caseworker,
                token: Some(StaffToken::new("t")),
            },
        );
        list.staff.insert(
            "sv-1".into(),
            StaffAccess {
                role: StaffRole::Supervisor,
                token: Some(StaffToken::new("t")),
            },
        );
        list
    }

    fn device(id: &str) -> Identity {
        Identity::Device {
            id: id.into(),
            secret: Some(StoredSecret::new("h1")),
        }
    }

    #[test]
    fn devices_must_use_their_id_as_client_id_and_username() {
        let list = list();
        assert!(matches!(
            list.admission("gw-1", Some("gw-1")),
            Ok(Admission::VerifyDevice(..))
        ));
        assert_eq!(
            list.admission("gw-2x", Some("gw-1")).err(),
            Some(Refusal::ClientIdMismatch)
        );
        assert_eq!(
            list.admission("gw-2", Some("gw-2")).err(),
            Some(Refusal::Revoked)
        );
        assert_eq!(
            list.admission("gw-1", None).err(),
            Some(Refusal::MissingCredentials)
        );
        assert_eq!(
            list.admission("x", Some("nobody")).err(),
            Some(Refusal::UnknownIdentity)
        );
    }

    #[test]
    fn staff_client_ids_are_their_id_or_prefixed_by_it() {
        let list = list();
        assert!(list.admission("cw-1", Some("cw-1")).is_ok());
        assert!(list.admission("cw-1:phone", Some("cw-1")).is_ok());
        assert_eq!(
            list.admission("cw-10", Some("cw-1")).err(),
            Some(Refusal::ClientIdMismatch)
        );
    }

    #[test]
    fn anonymous_only_when_allowed() {
        let mut list = list();
        list.allow_anonymous = true;
        assert!(matches!(
            list.admission("gw-9", None),
            Ok(Admission::Admit(Identity::Device { secret: None, .. }))
        ));
        assert!(list.admission("bad/id", None).is_err());
    }

    #[test]
    fn rotation_and_revocation_end_a_connection() {
        let mut list = list();
        let identity = device("gw-1");
        assert!(list.is_current(&identity));
        list.devices.get_mut("gw-1").expect("gw-1").secret = Some(StoredSecret::new("h9"));
        assert!(!list.is_current(&identity));
        list.devices.get_mut("gw-1").expect("gw-1").secret = Some(StoredSecret::new("h1"));
        list.devices.get_mut("gw-1").expect("gw-1").revoked = true;
        assert!(!list.is_current(&identity));
    }

    #[test]
    fn devices_publish_and_subscribe_only_under_their_own_id() {
        let me = device("gw-1");
        assert!(may_publish(&me, "ondol/v1/devices/gw-1/readings"));
        assert!(may_publish(&me, "ondol/v1/devices/gw-1/status"));
        assert!(!may_publish(&me, "ondol/v1/devices/gw-1/receipts"));
        assert!(!may_publish(&me, "ondol/v1/devices/gw-10/readings"));
        assert!(!may_publish(&me, "ondol/v1/devices/gw-2/readings"));
        assert!(!may_publish(&me, "ondol/v1/devices/+/readings"));
        assert!(may_subscribe(&me, "ondol/v1/devices/gw-1/receipts"));
        for filter in [
            "#",
            "ondol/#",
            "ondol/v1/devices/+/receipts",
            "ondol/v1/devices/gw-2/receipts",
            "ondol/v1/devices/gw-1/readings",
            "ondol/v1/caseworkers/cw-1/alerts",
            "ondol/v1/system/alerts",
        ] {
            assert!(!may_subscribe(&me, filter), "{filter}");
        }
    }

    #[test]
    fn staff_read_only_their_alerts_and_supervisors_the_system_topic() {
        let cw = Identity::Staff {
            id: "cw-1".into(),
            role: StaffRole::Caseworker,
        };
        let sv = Identity::Staff {
            id: "sv-1".into(),
            role: StaffRole::Supervisor,
        };
        assert!(may_subscribe(&cw, "ondol/v1/caseworkers/cw-1/alerts"));
        assert!(!may_subscribe(&cw, "ondol/v1/caseworkers/cw-2/alerts"));
        assert!(!may_subscribe(&cw, "ondol/v1/caseworkers/+/alerts"));
        assert!(!may_subscribe(&cw, "ondol/v1/system/alerts"));
        assert!(may_subscribe(&sv, "ondol/v1/system/alerts"));
        assert!(may_subscribe(&sv, "ondol/v1/caseworkers/sv-1/alerts"));
        assert!(!may_publish(&cw, "ondol/v1/caseworkers/cw-1/alerts"));
        assert!(!may_publish(&sv, "ondol/v1/devices/gw-1/readings"));
    }

    #[test]
    fn ingest_workers_read_all_readings_and_answer_with_receipts_only() {
        let list = AccessList {
            ingest_worker: Some(("ondol-ingest".into(), StaffToken::new("pw"))),
            ..AccessList::default()
        };
        let Ok(Admission::VerifyStaff(worker, token)) =
            list.admission("worker-1", Some("ondol-ingest"))
        else {
            panic!("the worker username asks for its password");
        };
        assert!(staff_token_matches(&token, "pw"));
        assert!(!staff_token_matches(&token, "guess"));
        assert!(list.is_current(&worker));
        assert!(may_subscribe(&worker, "ondol/v1/devices/+/readings"));
        assert!(may_subscribe(
            &worker,
            "$share/ondol/ondol/v1/devices/+/status"
        ));
        assert!(!may_subscribe(&worker, "#"));
        assert!(!may_subscribe(&worker, "ondol/v1/caseworkers/cw-1/alerts"));
        assert!(!may_subscribe(
            &worker,
            "$share/a/b/ondol/v1/devices/+/readings"
        ));
        assert!(may_publish(&worker, "ondol/v1/devices/gw-1/receipts"));
        assert!(!may_publish(&worker, "ondol/v1/devices/gw-1/readings"));
        assert!(!may_publish(&worker, "ondol/v1/devices/+/receipts"));
        assert!(!may_publish(&worker, "ondol/v1/caseworkers/cw-1/alerts"));
        let without = AccessList::default();
        assert!(
            !without.is_current(&worker),
            "no password configured: no workers"
        );
    }
}
