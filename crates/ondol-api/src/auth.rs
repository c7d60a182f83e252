//! Bearer tokens, the caller they name, and what that caller may see.
//!
//! Tokens are never stored or compared as text: the table keeps their
//! SHA-256 digests and a presented token's digest is compared with every
//! entry in constant time, so neither the comparison nor the position of a
//! match tells an attacker anything. Tokens are never logged.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use ondol_model::StaffId;
use ondol_model::roster::{Resident, Roster, Staff, StaffRole};

use crate::error::ApiError;

/// Which staff member each bearer token belongs to.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], StaffId)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("staff", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// A table from (staff id, token) pairs; empty tokens are skipped.
    pub fn new(pairs: impl IntoIterator<Item = (StaffId, String)>) -> Tokens {
        let entries = pairs
            .into_iter()
            .filter(|(_, token)| !token.trim().is_empty())
            .map(|(id, token)| (digest(token.trim()), id))
            .collect();
        Tokens { entries }
    }

    /// Each staff member's token from the environment variable the roster
    /// names (`token_env`); staff without one cannot use the API.
    pub fn from_staff(staff: &[Staff], env: impl Fn(&str) -> Option<String>) -> Tokens {
        Tokens::new(staff.iter().filter_map(|member| {
            let var = member.token_env.as_deref()?;
            Some((member.id.clone(), env(var)?))
        }))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The staff member whose token this is. Every entry is compared, in
    /// constant time, whether or not an earlier one matched.
    pub fn lookup(&self, presented: &str) -> Option<&StaffId> {
        let presented = digest(presented);
        let mut found = None;
        for (known, id) in &self.entries {
            if bool::from(known.ct_eq(&presented)) {
                found = Some(id);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token from an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The authenticated caller, as the roster in the store describes them now
/// (a role or region changed by an admin applies to the next request).
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: StaffId,
    pub name: String,
    pub role: StaffRole,
    pub region: Option<String>,
}

impl Principal {
    pub fn from_staff(staff: &Staff) -> Principal {
        Principal {
            id: staff.id.clone(),
            name: staff.name.clone(),
            role: staff.role,
            region: staff.region.clone(),
        }
    }

    /// Which residents' data the caller may see; evaluators see none.
    pub fn resident_scope(&self) -> Result<Scope, ApiError> {
        match self.role {
            StaffRole::Caseworker => Ok(Scope::Caseworker(self.id.clone())),
            StaffRole::Supervisor => Ok(match &self.region {
                Some(region) => Scope::Region(region.clone()),
                None => Scope::All,
            }),
            StaffRole::Admin => Ok(Scope::All),
            StaffRole::Evaluator => Err(ApiError::Forbidden(
                "evaluators see pseudonymised reports only, never resident data".into(),
            )),
        }
    }

    pub fn require(&self, roles: &[StaffRole]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not use this endpoint",
                self.role.as_str()
            )))
        }
    }
}

/// The residents a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The residents assigned to this caseworker.
    Caseworker(StaffId),
    /// The residents of one region (a supervisor's).
    Region(String),
    /// Everyone (admins, supervisors without a region).
    All,
}

impl Scope {
    pub fn covers(&self, resident: &Resident) -> bool {
        match self {
            Scope::Caseworker(id) => resident.caseworker.as_ref() == Some(id),
            Scope::Region(region) => &resident.region == region,
            Scope::All => true,
        }
    }

    /// Whether alerts about no resident (system outages) are shown: they go
    /// to supervisors, so supervisors and admins see them.
    pub fn sees_system_alerts(&self) -> bool {
        !matches!(self, Scope::Caseworker(_))
    }

    /// The ids of the residents of `roster` in scope.
    pub fn residents<'r>(&self, roster: &'r Roster) -> Vec<&'r Resident> {
        roster.residents.iter().filter(|r| self.covers(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StaffId {
        StaffId::new(s).expect("id")
    }

    #[test]
    fn tokens_find_their_owner_and_nothing_else() {
        let tokens = Tokens::new([
            (id("cw-01"), "alpha-token".to_owned()),
            (id("cw-02"), "beta-token".to_owned()),
            (id("cw-03"), "  ".to_owned()),
        ]);
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.lookup("alpha-token"), Some(&id("cw-01")));
        assert_eq!(tokens.lookup("beta-token"), Some(&id("cw-02")));
        assert_eq!(tokens.lookup("alpha-toke"), None);
        assert_eq!(tokens.lookup(""), None);
        assert!(!format!("{tokens:?}").contains("alpha"));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
