//! Helpers that write rejection details. Details go back to devices on
//! receipts and into the rejection store, so they are short, never echo more
//! than [`EXCERPT_CHARS`] characters of device input, and escape whatever they
//! do echo (no control characters reach a log line or a dashboard).

use serde_json::Value;

/// The most characters of device input a detail quotes.
pub(crate) const EXCERPT_CHARS: usize = 40;

/// A quoted, escaped excerpt of device input, cut after [`EXCERPT_CHARS`]
/// characters of its escaped form (so escapes cannot make it longer).
pub(crate) fn excerpt(s: &str) -> String {
    let mut escaped = s.escape_debug();
    let head: String = escaped.by_ref().take(EXCERPT_CHARS).collect();
    let more = if escaped.next().is_some() { "…" } else { "" };
    format!("\"{head}\"{more}")
}

/// A number as a person would write it: `400`, not `400.0`; at most four
/// decimals (converted values such as 48.888… °C would otherwise be noise);
/// scientific notation for magnitudes that would print as a wall of digits.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "a non-finite number".to_owned();
    }
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-3..1e9).contains(&magnitude) {
        return format!("{v:e}");
    }
    let fixed = format!("{v:.4}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// What kind of JSON value a device sent, for "must be a number, not …".
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_without_noise() {
        assert_eq!(num(400.0), "400");
        assert_eq!(num(37.5), "37.5");
        assert_eq!(num(-30.0), "-30");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(48.888_888_888_888_886), "48.8889");
        assert_eq!(num(1e300), "1e300");
        assert_eq!(num(1.5e-7), "1.5e-7");
        assert_eq!(num(f64::NAN), "a non-finite number");
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("ajar"), "\"ajar\"");
        assert_eq!(excerpt("a\u{1b}[2J"), "\"a\\u{1b}[2J\"");
        assert_eq!(excerpt("say \"hi\""), "\"say \\\"hi\\\"\"");
        let long = "é".repeat(100);
        assert_eq!(
            excerpt(&long),
            format!("\"{}\"…", "é".repeat(EXCERPT_CHARS))
        );
        let exact = "x".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact), format!("\"{exact}\""));
        let controls = "\u{1b}".repeat(100);
        assert!(excerpt(&controls).chars().count() <= EXCERPT_CHARS + 3);
    }
}
