//! Stable pseudonyms: the first 64 bits of HMAC-SHA256(key, resident id),
//! in hex. The key is the deployment's secret (DESIGN §6): from
//! `ONDOL_PSEUDONYM_KEY`, or a random key file created in the data
//! directory on first use, readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use ondol_model::ResidentId;

use crate::ReportError;

/// The environment variable that overrides the key file.
pub const KEY_ENV: &str = "ONDOL_PSEUDONYM_KEY";
/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "pseudonym.key";
/// Shortest accepted key, in bytes.
const MIN_KEY_LEN: usize = 16;

/// A pseudonym key. Its Debug output never shows the key.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<PseudonymKey, ReportError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_LEN {
            return Err(ReportError::Key(format!(
                "too short: at least {MIN_KEY_LEN} bytes are needed"
            )));
        }
        Ok(PseudonymKey(bytes))
    }

    /// `r-` and 16 hex digits.
    pub fn pseudonym(&self, id: &ResidentId) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            // HMAC takes keys of any length; this branch cannot be reached.
            return String::from("r-invalid-key");
        };
        mac.update(id.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("r-{}", hex::encode(digest.get(..8).unwrap_or_default()))
    }
}

/// The key from `env_value` (the value of [`KEY_ENV`], if set), else from
/// `<data_dir>/pseudonym.key`, created with 32 random bytes (hex) and mode
/// 0600 if it does not exist.
pub fn load_or_create_key(
    env_value: Option<String>,
    data_dir: &Path,
) -> Result<PseudonymKey, ReportError> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        return PseudonymKey::new(value.into_bytes());
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return PseudonymKey::new(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io("cannot read the pseudonym key", path, source)),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|source| io("cannot create", data_dir.to_path_buf(), source))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let text = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|source| io("cannot write the pseudonym key", path.clone(), source))?;
            tracing::info!(path = %path.display(), "created a new pseudonym key");
            PseudonymKey::new(text.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| io("cannot read the pseudonym key", path.clone(), source))?;
            PseudonymKey::new(text.trim().as_bytes().to_vec())
        }
        Err(source) => Err(io("cannot create the pseudonym key", path, source)),
    }
}

fn io(what: &'static str, path: PathBuf, source: std::io::Error) -> ReportError {
    ReportError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(s: &str) -> ResidentId {
        ResidentId::new(s).unwrap()
    }

    #[test]
    fn the_key_file_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_create_key(None, &data).unwrap();
        let path = data.join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create_key(None, &data).unwrap();
        assert_eq!(first.pseudonym(&id("r-1")), again.pseudonym(&id("r-1")));
        // Another deployment (another data dir) gets another key.
        let other = load_or_create_key(None, &dir.path().join("other")).unwrap();
        assert_ne!(first.pseudonym(&id("r-1")), other.pseudonym(&id("r-1")));
    }

    #[test]
    fn the_environment_overrides_the_file_and_short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from_env = load_or_create_key(Some("0123456789abcdef-env".into()), dir.path()).unwrap();
        assert!(!dir.path().join(KEY_FILE).exists());
        let same = PseudonymKey::new(b"0123456789abcdef-env".to_vec()).unwrap();
        assert_eq!(from_env.pseudonym(&id("a")), same.pseudonym(&id("a")));
        assert!(load_or_create_key(Some("short".into()), dir.path()).is_err());
        assert_eq!(format!("{same:?}"), "PseudonymKey(..)");
    }

    #[test]
    fn pseudonyms_have_a_fixed_shape() {
        let key = PseudonymKey::new(vec![1u8; 32]).unwrap();
        let p = key.pseudonym(&id("r-1"));
        assert_eq!(p.len(), 18);
        assert!(p.starts_with("r-") && p[2..].chars().all(|c| c.is_ascii_hexdigit()));
    }
}
