//! Figures as people read them, for the HTML report only: CSV and JSON keep
//! full precision ([`crate::output`]).
//!
//! Every function takes what the report holds (`Option<f64>` for figures
//! that may be undefined) and never prints `NaN`, `inf` or a long float:
//! an undefined or non-finite value is [`UNDEFINED`]. Rounding never claims
//! more than the data says: a ratio below 1 is never shown as 100.0 %, a
//! ratio above 0 never as 0.0 %.

/// What an undefined figure (zero denominator, no values) reads as.
pub const UNDEFINED: &str = "–";

/// A whole number with thousands separators: `12,345`.
pub fn integer(n: u64) -> String {
    group_thousands(&n.to_string())
}

/// A ratio (0..=1) as a percentage with one decimal: `0.99297` → `99.3%`.
/// A ratio below 1 that would round to 100.0 % is `>99.9%`, and one above
/// 0 that would round to 0.0 % is `<0.1%`: neither reads as perfect or nil.
pub fn percent(ratio: Option<f64>) -> String {
    let Some(r) = ratio.filter(|r| r.is_finite()) else {
        return UNDEFINED.to_string();
    };
    let shown = decimal(Some(r * 100.0), 1);
    if r < 1.0 && r > 0.0 && shown == "100.0" {
        return ">99.9%".to_string();
    }
    if r > 0.0 && shown == "0.0" {
        return "<0.1%".to_string();
    }
    if shown == "-0.0" {
        return "0.0%".to_string();
    }
    format!("{shown}%")
}

/// A number with `places` decimals and thousands separators: `1,234.57`.
/// Halves round away from zero, as people round (`6.25` → `6.3`), not to
/// even as `format!` does.
pub fn decimal(value: Option<f64>, places: usize) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) => {
            let scale = 10f64.powi(i32::try_from(places).unwrap_or(i32::MAX));
            let rounded = (v * scale).round() / scale;
            // Beyond what scaling can hold, `format!` rounds on its own.
            let v = if rounded.is_finite() { rounded } else { v };
            let text = format!("{v:.places$}");
            if text.trim_start_matches(['-', '0', '.']).is_empty() {
                // -0.00 is 0.00.
                return text.trim_start_matches('-').to_string();
            }
            group_thousands(&text)
        }
        None => UNDEFINED.to_string(),
    }
}

/// A duration given in seconds: under a minute in seconds (`42 s`), under
/// ten minutes in minutes with one decimal (`4.5 min`), under an hour in
/// whole minutes (`42 min`), under two days in hours with one decimal
/// (`3.5 h`), beyond that in days (`2.3 d`). A value that rounds up to the
/// next unit is shown in it (59.7 min is `1.0 h`, not `60 min`).
pub fn duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return UNDEFINED.to_string();
    };
    if s.round() < 60.0 {
        return format!("{} s", s.round());
    }
    let minutes = s / 60.0;
    if (minutes * 10.0).round() < 100.0 {
        return format!("{} min", decimal(Some(minutes), 1));
    }
    if minutes.round() < 60.0 {
        return format!("{} min", minutes.round());
    }
    let hours = minutes / 60.0;
    if (hours * 10.0).round() < 480.0 {
        return format!("{} h", decimal(Some(hours), 1));
    }
    format!("{} d", decimal(Some(hours / 24.0), 1))
}

/// Puts a `,` between each group of three digits of the integer part of
/// `number` (as printed by Rust: optional `-`, digits, optional fraction).
fn group_thousands(number: &str) -> String {
    let (sign, rest) = match number.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", number),
    };
    let (int, frac) = match rest.find('.') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(number.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_grouped_by_thousands() {
        assert_eq!(integer(0), "0");
        assert_eq!(integer(1), "1");
        assert_eq!(integer(999), "999");
        assert_eq!(integer(1_000), "1,000");
        assert_eq!(integer(61_234), "61,234");
        assert_eq!(integer(1_000_000), "1,000,000");
        assert_eq!(integer(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn percentages_have_one_decimal() {
        assert_eq!(percent(Some(0.0)), "0.0%");
        assert_eq!(percent(Some(1.0)), "100.0%");
        assert_eq!(percent(Some(0.992_976_265_490_443_2)), "99.3%");
        assert_eq!(percent(Some(0.711_012_742_421_06)), "71.1%");
        assert_eq!(percent(Some(0.5)), "50.0%");
        assert_eq!(percent(Some(1.0 / 3.0)), "33.3%");
        assert_eq!(percent(Some(2.0 / 3.0)), "66.7%");
        assert_eq!(percent(Some(0.12345)), "12.3%");
        // 51/816 = 6.25 % exactly: a half rounds up.
        assert_eq!(percent(Some(51.0 / 816.0)), "6.3%");
        assert_eq!(percent(Some(0.0005)), "0.1%");
        // Above 1 (not a ratio the report makes, but printed plainly).
        assert_eq!(percent(Some(12.5)), "1,250.0%");
    }

    #[test]
    fn percentages_near_the_ends_never_claim_all_or_nothing() {
        // 99.95 % and above but below 100 %: not "100.0%".
        assert_eq!(percent(Some(0.9995)), ">99.9%");
        assert_eq!(percent(Some(0.99951)), ">99.9%");
        assert_eq!(percent(Some(0.99999)), ">99.9%");
        assert_eq!(percent(Some(1.0 - f64::EPSILON)), ">99.9%");
        assert_eq!(percent(Some(0.99949)), "99.9%");
        assert_eq!(percent(Some(0.9994)), "99.9%");
        // Above 0 but below 0.05 %: not "0.0%".
        assert_eq!(percent(Some(0.0004)), "<0.1%");
        assert_eq!(percent(Some(f64::MIN_POSITIVE)), "<0.1%");
        assert_eq!(percent(Some(0.0005)), "0.1%");
        assert_eq!(percent(Some(-0.0)), "0.0%");
    }

    #[test]
    fn undefined_and_non_finite_values_are_a_dash() {
        for v in [
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(-f64::INFINITY),
        ] {
            assert_eq!(percent(v), UNDEFINED, "{v:?}");
            assert_eq!(decimal(v, 2), UNDEFINED, "{v:?}");
            assert_eq!(duration(v), UNDEFINED, "{v:?}");
            assert!(!percent(v).contains("NaN") && !percent(v).contains("inf"));
        }
        // A negative duration is not a duration.
        assert_eq!(duration(Some(-1.0)), UNDEFINED);
    }

    #[test]
    fn decimals_are_rounded_and_grouped() {
        assert_eq!(decimal(Some(0.0), 2), "0.00");
        assert_eq!(decimal(Some(1.0), 1), "1.0");
        // Halves (exact in binary) away from zero, not to even.
        assert_eq!(decimal(Some(4.25), 1), "4.3");
        assert_eq!(decimal(Some(0.125), 2), "0.13");
        assert_eq!(decimal(Some(-4.25), 1), "-4.3");
        assert_eq!(decimal(Some(4.24), 1), "4.2");
        assert_eq!(decimal(Some(4.26), 1), "4.3");
        // Too large to scale: still a plain number.
        let huge = decimal(Some(f64::MAX), 1);
        assert!(
            huge.starts_with("179,769,313,") && huge.ends_with(".0"),
            "{huge}"
        );
        assert_eq!(decimal(Some(1234.567), 2), "1,234.57");
        assert_eq!(decimal(Some(-1234.5), 1), "-1,234.5");
        assert_eq!(decimal(Some(-0.001), 2), "0.00");
        assert_eq!(decimal(Some(3.0), 0), "3");
    }

    #[test]
    fn durations_are_in_seconds_minutes_hours_or_days() {
        assert_eq!(duration(Some(0.0)), "0 s");
        assert_eq!(duration(Some(1.0)), "1 s");
        assert_eq!(duration(Some(42.4)), "42 s");
        assert_eq!(duration(Some(59.4)), "59 s");
        // 59.6 s rounds to a minute.
        assert_eq!(duration(Some(59.6)), "1.0 min");
        assert_eq!(duration(Some(90.0)), "1.5 min");
        assert_eq!(duration(Some(270.0)), "4.5 min");
        assert_eq!(duration(Some(596.0)), "9.9 min");
        // 9.95 min and up: whole minutes.
        assert_eq!(duration(Some(597.0)), "10 min");
        assert_eq!(duration(Some(2_520.0)), "42 min");
        // 59.7 min rounds to an hour: hours.
        assert_eq!(duration(Some(3_582.0)), "1.0 h");
        assert_eq!(duration(Some(3_600.0)), "1.0 h");
        assert_eq!(duration(Some(12_600.0)), "3.5 h");
        assert_eq!(duration(Some(47.9 * 3_600.0)), "47.9 h");
        assert_eq!(duration(Some(48.0 * 3_600.0)), "2.0 d");
        assert_eq!(duration(Some(2_000.0 * 86_400.0)), "2,000.0 d");
    }
}
