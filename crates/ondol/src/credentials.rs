//! Device secrets and the broker's access list.
//!
//! - Secrets are 256 random bits, shown once as 64 hex digits; the store
//!   keeps only an Argon2id hash (PHC string, so the parameters can change
//!   later without invalidating stored hashes).
//! - [`Verifier`] checks a presented secret against a stored hash. After a
//!   successful Argon2 check it remembers a cheap keyed digest of the
//!   secret for that hash, so a reconnect storm after a power cut costs one
//!   Argon2 verification per device per process, not one per attempt.
//! - [`AccessSource`] builds the broker's [`AccessList`] from the store and
//!   the staff tokens in the environment, and republishes it (and the
//!   roster) when the store changes: `ondol device revoke` in another
//!   process takes effect within `mqtt.access_reload_interval`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ondol_broker::access::{DeviceAccess, StaffAccess, StaffToken, StoredSecret, VerifySecret};
use ondol_broker::{AccessList, Gate};
use ondol_ingest::RosterIndex;
use ondol_model::StaffId;
use ondol_model::roster::{Roster, StaffRole};
use ondol_store::{DeviceCredentialRow, Store};
use rand::RngCore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A device secret in clear: exists only between generation and printing.
/// `Debug` never shows it.
pub struct DeviceSecret(String);

impl DeviceSecret {
    /// 256 bits from the operating system's CSPRNG, as 64 hex digits.
    pub fn generate() -> DeviceSecret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        DeviceSecret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
    }
}

/// How much work a stored hash costs to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// 256 random bits from [`DeviceSecret::generate`]: no amount of hashing
    /// work changes the odds of guessing one, so the cost is kept low
    /// (Argon2id, 4 MiB, 1 pass, about 3 ms): after a village-wide power cut
    /// thousands of devices are verified at once on a small machine.
    Generated,
    /// Chosen by a person (a roster `secret_env`): OWASP's setting (19 MiB,
    /// 2 passes), which makes guessing a weak secret from a stolen database
    /// expensive.
    Chosen,
}

fn argon2(origin: SecretOrigin) -> Argon2<'static> {
    let (memory_kib, passes) = match origin {
        SecretOrigin::Generated => (4 * 1024, 1),
        SecretOrigin::Chosen => (19 * 1024, 2),
    };
    let params = Params::new(memory_kib, passes, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The Argon2id PHC string of `secret`, with a fresh random salt. The
/// parameters are part of the string, so verification needs no setting.
pub fn hash_secret(secret: &str, origin: SecretOrigin) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("cannot encode a salt: {e}"))?;
    let hash = argon2(origin)
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash a device secret: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `secret` matches the PHC string `hash` (with the parameters
/// stored in it).
pub fn verify_secret(hash: &str, secret: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Checks device secrets for the broker, remembering successes (see the
/// module doc).
pub struct Verifier {
    /// Random per process: the remembered digests are useless elsewhere.
    key: [u8; 16],
    /// Stored hash → keyed digest of the secret that matched it.
    verified: Mutex<HashMap<Arc<str>, [u8; 32]>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Default for Verifier {
    fn default() -> Self {
        let mut key = [0u8; 16];
        rand::rng().fill_bytes(&mut key);
        Verifier {
            key,
            verified: Mutex::new(HashMap::new()),
        }
    }
}

impl Verifier {
    /// A cheap keyed digest (Argon2id at its smallest setting, keyed by the
    /// process's random salt).
    fn digest(&self, secret: &str) -> Option<[u8; 32]> {
        let params = Params::new(8, 1, 1, Some(32)).ok()?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(secret.as_bytes(), &self.key, &mut out)
            .ok()?;
        Some(out)
    }

    pub fn verify(&self, stored: &StoredSecret, secret: &str) -> bool {
        let digest = self.digest(secret);
        let key: Arc<str> = Arc::from(stored.expose());
        if let (Some(digest), Ok(verified)) = (digest, self.verified.lock())
            && verified.get(&key) == Some(&digest)
        {
            return true;
        }
        let ok = verify_secret(stored.expose(), secret);
        if ok && let (Some(digest), Ok(mut verified)) = (digest, self.verified.lock()) {
            verified.insert(key, digest);
        }
        ok
    }

    /// Forgets successes for hashes no longer stored (rotated or revoked),
    /// so the memory stays bounded by the number of devices.
    pub fn forget_except(&self, current: &[DeviceCredentialRow]) {
        let keep: std::collections::HashSet<&str> = current
            .iter()
            .filter_map(|r| r.credential_hash.as_deref())
            .collect();
        if let Ok(mut verified) = self.verified.lock() {
            verified.retain(|hash, _| keep.contains(hash.as_ref()));
        }
    }

    /// The broker's injected check.
    pub fn into_broker_check(self: Arc<Self>) -> VerifySecret {
        Arc::new(move |stored: &StoredSecret, secret: &str| self.verify(stored, secret))
    }
}

/// Where the access list comes from.
#[derive(Debug, Clone)]
pub struct AccessSource {
    pub database: PathBuf,
    pub allow_anonymous: bool,
    /// Staff id → token, read from the environment at start-up.
    pub staff_tokens: HashMap<String, String>,
    /// Remote ingest workers' username and password (from the environment).
    pub ingest_worker: Option<(String, String)>,
}

impl AccessSource {
    /// Reads the staff tokens named by the roster from `env`.
    pub fn new(
        database: PathBuf,
        allow_anonymous: bool,
        roster: &Roster,
        env: impl Fn(&str) -> Option<String>,
    ) -> AccessSource {
        let staff_tokens = roster
            .staff
            .iter()
            .filter_map(|s| {
                let var = s.token_env.as_deref()?;
                let token = env(var).filter(|t| !t.is_empty())?;
                Some((s.id.as_str().to_owned(), token))
            })
            .collect();
        AccessSource {
            database,
            allow_anonymous,
            staff_tokens,
            ingest_worker: None,
        }
    }

    pub fn build(&self, roster: &Roster, devices: &[DeviceCredentialRow]) -> AccessList {
        AccessList {
            devices: devices
                .iter()
                .map(|row| {
                    (
                        row.id.clone(),
                        DeviceAccess {
                            secret: row.credential_hash.clone().map(StoredSecret::new),
                            revoked: row.revoked,
                        },
                    )
                })
                .collect(),
            staff: roster
                .staff
                .iter()
                .map(|s| {
                    (
                        s.id.as_str().to_owned(),
                        StaffAccess {
                            role: s.role,
                            token: self
                                .staff_tokens
                                .get(s.id.as_str())
                                .map(|t| StaffToken::new(t.as_str())),
                        },
                    )
                })
                .collect(),
            allow_anonymous: self.allow_anonymous,
            ingest_worker: self
                .ingest_worker
                .as_ref()
                .map(|(user, password)| (user.clone(), StaffToken::new(password.as_str()))),
        }
    }

    /// Lets remote ingest workers sign in as `username` with the password
    /// in the environment variable `password_env` (if it is set).
    pub fn with_ingest_worker(
        mut self,
        username: &str,
        password_env: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> AccessSource {
        self.ingest_worker = env(password_env)
            .filter(|p| !p.is_empty() && !username.is_empty())
            .map(|password| (username.to_owned(), password));
        self
    }
}

/// Imports device secrets named by the roster's `secret_env` for devices
/// that have no credential yet (an import never overrides a secret issued
/// with the CLI, nor lifts a revocation).
pub fn import_roster_secrets(
    store: &mut Store,
    roster: &Roster,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let without: std::collections::HashSet<String> = store
        .device_credentials()
        .context("cannot read device credentials")?
        .into_iter()
        .filter(|r| r.credential_hash.is_none() && !r.revoked)
        .map(|r| r.id)
        .collect();
    let now = jiff::Timestamp::now();
    for device in &roster.devices {
        let Some(var) = device.secret_env.as_deref() else {
            continue;
        };
        if !without.contains(device.id.as_str()) {
            continue;
        }
        match env(var).filter(|s| !s.is_empty()) {
            Some(secret) => {
                let hash = hash_secret(&secret, SecretOrigin::Chosen)?;
                store
                    .set_initial_device_credential(&device.id, &hash, now)
                    .context("cannot store a device credential")?;
                tracing::info!(device = %device.id, "device secret imported from the environment");
            }
            None => tracing::warn!(
                device = %device.id,
                variable = var,
                "the roster names a secret variable that is not set; the device cannot connect until it is, or until `ondol device rotate-secret` issues one"
            ),
        }
    }
    Ok(())
}

/// The shortest staff bearer token accepted. Tokens open residents' data
/// over HTTP and alert topics over MQTT; 16 random characters resist
/// guessing, a word or a PIN does not.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Where staff bearer tokens come from: the environment variable each
/// roster entry names (`token_env`) and, with `ondol run --demo` only,
/// tokens generated at start for the variables left unset, so a newcomer
/// can sign in with what the start prints. Every reader of staff tokens
/// (the API's token table, the broker's staff apps, the checks) asks here.
#[derive(Clone, Default)]
pub struct StaffTokens {
    /// Variable name → generated token (empty outside the demo).
    generated: Arc<HashMap<String, String>>,
}

/// A token generated for a demo staff member.
#[derive(Debug, Clone)]
pub struct DemoToken {
    pub staff: StaffId,
    pub role: StaffRole,
    pub name: String,
    pub variable: String,
    pub token: String,
}

impl StaffTokens {
    /// The token in `var`: the environment's (empty counts as unset), or
    /// the one generated for it.
    pub fn get(&self, var: &str) -> Option<String> {
        std::env::var(var)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| self.generated.get(var).cloned())
    }

    /// The environment's tokens, and a random one (`demo-` and 40 hex
    /// digits) for each staff member whose variable is unset. For the demo
    /// only: these tokens are printed.
    pub fn with_demo_tokens(roster: &Roster) -> (StaffTokens, Vec<DemoToken>) {
        let mut generated = HashMap::new();
        let mut shown = Vec::new();
        for staff in &roster.staff {
            let Some(var) = staff.token_env.as_deref() else {
                continue;
            };
            if StaffTokens::default().get(var).is_some() || generated.contains_key(var) {
                continue;
            }
            let mut bytes = [0u8; 20];
            rand::rng().fill_bytes(&mut bytes);
            let token = format!(
                "demo-{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            generated.insert(var.to_owned(), token.clone());
            shown.push(DemoToken {
                staff: staff.id.clone(),
                role: staff.role,
                name: staff.name.clone(),
                variable: var.to_owned(),
                token,
            });
        }
        // Caseworkers first: they are whom a newcomer signs in as.
        shown.sort_by_key(|t| StaffRole::ALL.iter().position(|r| *r == t.role));
        (
            StaffTokens {
                generated: Arc::new(generated),
            },
            shown,
        )
    }
}

impl fmt::Debug for StaffTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffTokens")
            .field("generated", &self.generated.len())
            .finish()
    }
}

/// Refuses to start when a staff member's token (from their `token_env`)
/// is too short, or is the same as another member's (a request could not
/// tell them apart, nor could the audit log). Names every such variable,
/// never the token.
pub fn check_staff_tokens(
    roster: &Roster,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut seen: HashMap<String, (&str, &str)> = HashMap::new();
    for staff in &roster.staff {
        let Some(var) = staff.token_env.as_deref() else {
            continue;
        };
        // Empty is unset (docker compose passes `${VAR:-}` as empty).
        let Some(token) = env(var).filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        let token = token.trim().to_owned();
        let chars = token.chars().count();
        if chars < MIN_TOKEN_CHARS {
            problems.push(format!(
                "staff {}: the bearer token in {var} has {chars} characters; use at least \
                 {MIN_TOKEN_CHARS} random ones (e.g. `openssl rand -hex 24`)",
                staff.id
            ));
        }
        if let Some((other, other_var)) = seen.insert(token, (staff.id.as_str(), var)) {
            problems.push(format!(
                "staff {} and {other}: {var} and {other_var} hold the same bearer token; \
                 give each member their own",
                staff.id
            ));
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// What the running parts were started with: the device credentials and the
/// roster revision they were read at. A change made before the follower's
/// first check is still seen.
#[derive(Debug, Clone)]
pub struct Published {
    pub credentials: Vec<DeviceCredentialRow>,
    pub revision: i64,
}

/// Re-reads device credentials and the roster revision every `every`; when
/// either changed, publishes a new access list to the broker and the
/// store's roster to ingest and alerting (so a device added with the CLI,
/// or a resident changed through the admin API, is known without a restart).
pub async fn follow_store(
    source: AccessSource,
    // `None` without an embedded broker: only the roster is republished.
    gate: Option<Gate>,
    verifier: Arc<Verifier>,
    roster_updates: watch::Sender<Arc<RosterIndex>>,
    published: Published,
    every: Duration,
    shutdown: CancellationToken,
) {
    let store = {
        let database = source.database.clone();
        match tokio::task::spawn_blocking(move || Store::open(&database)).await {
            Ok(Ok(store)) => Arc::new(Mutex::new(store)),
            Ok(Err(error)) => {
                tracing::error!(error = %error, "cannot open the store to follow device credentials; revocations need a restart");
                return;
            }
            Err(_) => return,
        }
    };
    let Published {
        credentials: mut last,
        revision,
    } = published;
    last.sort_by(|a, b| a.id.cmp(&b.id));
    // The revision when the roster was last published; any roster change
    // (admin API, CLI, import: residents, away periods, assignments,
    // bindings, staff) moves it, and the roster is republished: the broker,
    // ingest and alerting follow it.
    let mut last_revision = Some(revision);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let reader = store.clone();
        let previous = std::mem::take(&mut last);
        let previous_revision = last_revision.take();
        // The whole roster is loaded only when the credentials or the
        // roster revision changed.
        let read = tokio::task::spawn_blocking(move || {
            let store = reader
                .lock()
                .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
            let mut rows = store.device_credentials()?;
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            let revision = store.roster_revision()?;
            let credentials_changed = rows != previous;
            if !credentials_changed && Some(revision) == previous_revision {
                return anyhow::Ok((rows, revision, None));
            }
            let roster = store.load_roster()?;
            anyhow::Ok((rows, revision, Some((roster, credentials_changed))))
        })
        .await;
        let (rows, revision, roster) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => {
                // `last` is now empty: the next good read republishes all.
                tracing::warn!(error = %error, "cannot re-read device credentials; keeping the current ones");
                continue;
            }
            Err(_) => continue,
        };
        last_revision = Some(revision);
        let Some((roster, credentials_changed)) = roster else {
            last = rows;
            continue;
        };
        if let Some(gate) = &gate {
            gate.update(source.build(&roster, &rows));
        }
        verifier.forget_except(&rows);
        roster_updates.send_replace(Arc::new(RosterIndex::new(&roster)));
        if credentials_changed {
            tracing::info!(
                devices = rows.len(),
                "device credentials changed; access list updated"
            );
        } else {
            tracing::info!(revision, "the roster changed; republished");
        }
        last = rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify_and_never_show() {
        let secret = DeviceSecret::generate();
        assert_eq!(secret.expose().len(), 64);
        assert!(!format!("{secret:?}").contains(secret.expose()));
        let hash = hash_secret(secret.expose(), SecretOrigin::Generated).expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains(secret.expose()));
        assert!(verify_secret(&hash, secret.expose()));
        assert!(!verify_secret(&hash, "wrong"));
        assert!(!verify_secret("not a hash", secret.expose()));
    }

    #[test]
    fn the_verifier_remembers_successes_only_for_the_same_hash() {
        let verifier = Verifier::default();
        let hash =
            StoredSecret::new(hash_secret("s3cret-one", SecretOrigin::Chosen).expect("hash"));
        assert!(!verifier.verify(&hash, "nope"));
        assert!(verifier.verify(&hash, "s3cret-one"));
        assert!(verifier.verify(&hash, "s3cret-one"));
        assert!(!verifier.verify(&hash, "nope"));
        verifier.forget_except(&[]);
        assert!(verifier.verified.lock().expect("lock").is_empty());
        let rotated =
            StoredSecret::new(hash_secret("s3cret-two", SecretOrigin::Generated).expect("hash"));
        assert!(!verifier.verify(&rotated, "s3cret-one"));
        assert!(verifier.verify(&rotated, "s3cret-two"));
    }

    #[test]
    fn short_or_shared_staff_tokens_are_refused_by_name_never_shown() {
        let roster = ondol_store::parse_roster(
            "[[staff]]\nid = \"cw-1\"\nname = \"A\"\nrole = \"caseworker\"\ntoken_env = \"T1\"\n\
             [[staff]]\nid = \"cw-2\"\nname = \"B\"\nrole = \"caseworker\"\ntoken_env = \"T2\"\n\
             [[staff]]\nid = \"cw-3\"\nname = \"C\"\nrole = \"caseworker\"\ntoken_env = \"T3\"\n",
            "test.toml",
        )
        .expect("roster");
        let env = |var: &str| match var {
            "T1" => Some("0123456789abcdef".to_owned()),
            "T2" => Some("secret".to_owned()),
            _ => None,
        };
        let error = check_staff_tokens(&roster, env)
            .expect_err("a 6-character token")
            .to_string();
        assert!(
            error.contains("staff cw-2") && error.contains("T2 has 6 characters"),
            "{error}"
        );
        assert!(
            !error.contains("cw-1") && !error.contains("cw-3"),
            "{error}"
        );
        assert!(!error.contains("secret"), "the token itself is never shown");
        assert!(check_staff_tokens(&roster, |var| env(var).filter(|t| t.len() >= 16)).is_ok());
        let shared = check_staff_tokens(&roster, |_| Some("0123456789abcdef".to_owned()))
            .expect_err("one token for three people")
            .to_string();
        assert!(
            shared.contains("T2 and T1 hold the same bearer token"),
            "{shared}"
        );
        assert!(!shared.contains("0123456789abcdef"), "{shared}");
    }
}
