//! Identifiers: `[A-Za-z0-9_-]{1,64}` (DESIGN §2), checked once at the boundary
//! so the rest of the code can put them in topics, SQL and logs without care.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is {len} characters long; at most 64 are allowed")]
    TooLong { len: usize },
    #[error("identifier contains {found:?}; only letters, digits, '_' and '-' are allowed")]
    InvalidChar { found: char },
}

/// Checks the identifier grammar shared by devices, residents and staff.
pub fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(found) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(IdError::InvalidChar { found });
    }
    if s.len() > 64 {
        return Err(IdError::TooLong { len: s.len() });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A device: gateway, wearable, button or sensor. Also its MQTT client id.
    DeviceId
);
id_type!(
    /// A resident enrolled in the service.
    ResidentId
);
id_type!(
    /// A staff member: caseworker, supervisor, evaluator or admin.
    StaffId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_grammar() {
        assert!(DeviceId::new("gw-0001").is_ok());
        assert!(DeviceId::new("A_b-9").is_ok());
        assert!(DeviceId::new("x".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(DeviceId::new(""), Err(IdError::Empty));
        assert_eq!(
            DeviceId::new("x".repeat(65)),
            Err(IdError::TooLong { len: 65 })
        );
        assert_eq!(
            DeviceId::new("a/b"),
            Err(IdError::InvalidChar { found: '/' })
        );
        assert_eq!(
            DeviceId::new("a+"),
            Err(IdError::InvalidChar { found: '+' })
        );
        assert_eq!(
            DeviceId::new("dé"),
            Err(IdError::InvalidChar { found: 'é' })
        );
    }
}
