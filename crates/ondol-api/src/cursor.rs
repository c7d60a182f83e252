//! Opaque page cursors: the position after which the next page starts,
//! as hex-encoded JSON. Clients pass them back unchanged.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub fn encode<T: Serialize>(position: &T) -> Option<String> {
    serde_json::to_vec(position)
        .ok()
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    let invalid = || ApiError::BadRequest("cursor is not one this API handed out".into());
    if !cursor.len().is_multiple_of(2) || cursor.len() > 2048 {
        return Err(invalid());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// The page size from `limit`: default when absent, 1..=max.
pub fn limit(requested: Option<i64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(default.min(max)),
        Some(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(max).min(max)),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit is {n}; it must be between 1 and {max}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_bad_request() {
        let cursor = encode(&(-3i64, 17i64, 42i64)).expect("encodes");
        assert_eq!(
            decode::<(i64, i64, i64)>(&cursor).expect("decodes"),
            (-3, 17, 42)
        );
        for bad in ["zz", "abc", "00", ""] {
            assert!(matches!(
                decode::<(i64, i64, i64)>(bad),
                Err(ApiError::BadRequest(_))
            ));
        }
    }
}
