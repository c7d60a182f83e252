//! Parsing and checking the roster file (DESIGN §3): `[[residents]]`,
//! `[[devices]]` and `[[staff]]` tables.
//!
//! Every problem is reported at once, each naming the file, the line, the
//! entry and the key, and saying how to fix it. To get there the file is read
//! in three passes: the TOML syntax (with recovery, so several syntax errors
//! show together), then each entry on its own (unknown keys are reported with
//! a suggestion and set aside, then the entry is deserialized into a
//! `deny_unknown_fields` struct, so one bad entry does not hide the next),
//! then the checks across entries (unique ids, references).
//!
//! # Keys
//!
//! Residents: `id`, `name`, `timezone` (IANA), `region`, `enrolled_from`,
//! optional `enrolled_until` (the last enrolled day, inclusive),
//! `caseworker` (a staff id with role caseworker), `checkin` and `away`.
//!
//! - `checkin` omitted: the default plan (06:00–10:00, not passive).
//!   `checkin = { window = "07:00-11:00", passive = true }` sets the window
//!   (local `[start, end)`, within one day) and whether any activity inside
//!   it counts as a check-in. `checkin = { window = "none" }`: no daily
//!   check-in at all (`passive` must then be absent or false). A table with
//!   only `passive` keeps the default window.
//! - `away = [{ from = "2026-05-01", until = "2026-05-10", reason = "hospital" }]`:
//!   days away, both ends included, not overlapping; `reason` is optional.
//!
//! Devices: `id`, `resident`, `kind` (gateway, wearable, button, sensor),
//! optional `active` (default true), `secret_env`, and `bound_from` /
//! `bound_until` (RFC 3339 with offset) limiting the binding to the resident.
//!
//! Staff: `id`, `name`, `role` (caseworker, supervisor, evaluator, admin),
//! optional `token_env`, and `region` for supervisors only (a supervisor
//! without one oversees every region).
//!
//! Dates may be written as strings (`"2026-01-01"`) or TOML dates
//! (`2026-01-01`); environment variable names are upper case
//! (`[A-Z_][A-Z0-9_]*`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use ondol_model::id::check_id;
use ondol_model::roster::{
    AwayPeriod, CheckinPlan, CheckinWindow, Device, DeviceBinding, DeviceKind, Resident, Roster,
    Staff, StaffRole,
};
use ondol_model::{DeviceId, ResidentId, StaffId};

/// One thing wrong with a roster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterProblem {
    /// The file name as given to [`parse_roster`].
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, for syntax errors.
    pub column: Option<usize>,
    /// The entry, e.g. `residents[3] (id "r-0004")`.
    pub entry: Option<String>,
    /// The key inside the entry, e.g. `timezone` or `checkin.window`.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for RosterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key \"{key}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

const RESIDENT_KEYS: &[&str] = &[
    "id",
    "name",
    "timezone",
    "region",
    "enrolled_from",
    "enrolled_until",
    "caseworker",
    "checkin",
    "away",
];
const CHECKIN_KEYS: &[&str] = &["window", "passive"];
const AWAY_KEYS: &[&str] = &["from", "until", "reason"];
const DEVICE_KEYS: &[&str] = &[
    "id",
    "resident",
    "kind",
    "active",
    "secret_env",
    "bound_from",
    "bound_until",
];
const STAFF_KEYS: &[&str] = &["id", "name", "role", "region", "token_env"];
const SECTIONS: &[&str] = &["residents", "devices", "staff"];

/// The spelling of "no daily check-in" in `checkin.window`.
pub const NO_CHECKIN_WINDOW: &str = "none";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResident {
    id: Spanned<String>,
    name: Spanned<String>,
    timezone: Spanned<String>,
    region: Spanned<String>,
    enrolled_from: Spanned<DateText>,
    enrolled_until: Option<Spanned<DateText>>,
    caseworker: Option<Spanned<String>>,
    checkin: Option<Spanned<RawCheckin>>,
    away: Option<Vec<Spanned<RawAway>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckin {
    window: Option<Spanned<String>>,
    passive: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAway {
    from: Spanned<DateText>,
    until: Spanned<DateText>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: Spanned<String>,
    resident: Spanned<String>,
    kind: Spanned<String>,
    active: Option<bool>,
    secret_env: Option<Spanned<String>>,
    bound_from: Option<Spanned<DateText>>,
    bound_until: Option<Spanned<DateText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaff {
    id: Spanned<String>,
    name: Spanned<String>,
    role: Spanned<String>,
    region: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
}

/// A date or date-time written either as a string or as a TOML date-time
/// literal; kept as text and parsed with jiff.
#[derive(Debug, Clone)]
struct DateText(String);

impl<'de> Deserialize<'de> for DateText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DateText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date such as \"2026-01-01\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateText, E> {
                Ok(DateText(v.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<DateText, A::Error> {
                // toml hands its date-time literals over as a private map.
                let datetime = toml::value::Datetime::deserialize(MapAccessDeserializer::new(map))?;
                Ok(DateText(datetime.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses and checks a roster file. `file` names it in problems.
pub fn parse_roster(text: &str, file: &str) -> Result<Roster, Vec<RosterProblem>> {
    let mut cx = Checker {
        file,
        text,
        problems: Vec::new(),
    };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        cx.syntax_errors(syntax_errors);
        return Err(cx.problems);
    }

    let mut sections: HashMap<&'static str, Vec<Entry<'_>>> = HashMap::new();
    for (key, value) in document.into_inner() {
        let Some(section) = SECTIONS
            .iter()
            .copied()
            .find(|s| *s == key.get_ref().as_ref())
        else {
            let hint = did_you_mean(key.get_ref(), SECTIONS);
            cx.push(
                key.span(),
                None,
                None,
                format!(
                    "unknown top-level key \"{}\"{hint}; a roster has [[residents]], [[devices]] and [[staff]] entries",
                    key.get_ref()
                ),
            );
            continue;
        };
        sections.insert(section, cx.entries(section, value));
    }
    let mut take = |section: &str| sections.remove(section).unwrap_or_default();
    let (residents, devices, staff) = (take("residents"), take("devices"), take("staff"));

    // Ids as written, even of entries that fail later, so one broken entry
    // does not cause "unknown resident" problems elsewhere.
    let resident_ids: BTreeSet<String> = residents.iter().filter_map(|e| e.id.clone()).collect();
    let staff_ids: BTreeSet<String> = staff.iter().filter_map(|e| e.id.clone()).collect();

    let staff = cx.staff(staff);
    let residents = cx.residents(residents, &staff, &staff_ids);
    let devices = cx.devices(devices, &resident_ids);
    cx.supervisor_regions(&staff, &residents);

    if !cx.problems.is_empty() {
        // In file order (stable: problems on one line keep their order).
        cx.problems.sort_by_key(|p| p.line);
        return Err(cx.problems);
    }
    Ok(Roster {
        residents: residents.into_iter().flatten().collect(),
        devices: devices.into_iter().flatten().collect(),
        staff: staff.into_iter().filter_map(|s| s.staff).collect(),
    })
}

/// One `[[section]]` table, before deserialization.
struct Entry<'i> {
    section: &'static str,
    index: usize,
    /// The `id` as written, if it is a string.
    id: Option<String>,
    span: Range<usize>,
    table: DeTable<'i>,
}

impl Entry<'_> {
    fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("{}[{}] (id \"{id}\")", self.section, self.index),
            None => format!("{}[{}]", self.section, self.index),
        }
    }
}

/// A staff entry that parsed far enough to be referenced.
struct StaffSeen {
    label: String,
    id: String,
    /// `None` when the role itself was invalid (already reported).
    role: Option<StaffRole>,
    region: Option<Spanned<String>>,
    staff: Option<Staff>,
}

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<RosterProblem>,
}

impl<'a> Checker<'a> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn push(
        &mut self,
        span: Range<usize>,
        entry: Option<String>,
        key: Option<&str>,
        message: String,
    ) {
        let (line, _) = self.line_col(span.start);
        self.problems.push(RosterProblem {
            file: self.file.to_owned(),
            line: Some(line),
            column: None,
            entry,
            key: key.map(str::to_owned),
            message,
        });
    }

    fn syntax_errors(&mut self, mut errors: Vec<toml::de::Error>) {
        errors.sort_by_key(|e| e.span().map_or(0, |s| s.start));
        // Recovery can report one mistake several times on the same line.
        let mut lines_seen = BTreeSet::new();
        for error in errors {
            let (line, column) = match error.span() {
                Some(span) => {
                    let (l, c) = self.line_col(span.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            if !lines_seen.insert(line) {
                continue;
            }
            self.problems.push(RosterProblem {
                file: self.file.to_owned(),
                line,
                column,
                entry: None,
                key: None,
                message: format!("not valid TOML: {}", error.message()),
            });
        }
    }

    /// The tables of one `[[section]]` array.
    fn entries<'i>(
        &mut self,
        section: &'static str,
        value: Spanned<DeValue<'i>>,
    ) -> Vec<Entry<'i>> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.push(
                span,
                None,
                Some(section),
                format!("must be an array of tables: write each entry as a [[{section}]] table"),
            );
            return Vec::new();
        };
        let mut entries = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let span = item.span();
            let DeValue::Table(table) = item.into_inner() else {
                self.push(
                    span,
                    Some(format!("{section}[{index}]")),
                    None,
                    format!("must be a table: write each entry as a [[{section}]] table"),
                );
                continue;
            };
            let id = match table.get("id").map(Spanned::get_ref) {
                Some(DeValue::String(id)) => Some(id.to_string()),
                _ => None,
            };
            entries.push(Entry {
                section,
                index,
                id,
                span,
                table,
            });
        }
        entries
    }

    /// Reports and removes keys not in `known`; `prefix` is the path of the
    /// table inside the entry (`""` or e.g. `"checkin."`).
    fn unknown_keys(
        &mut self,
        table: &mut DeTable<'_>,
        known: &[&str],
        label: &str,
        prefix: &str,
        what: &str,
    ) {
        let mut unknown = Vec::new();
        for key in table.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                unknown.push((key.get_ref().to_string(), key.span()));
            }
        }
        for (key, span) in &unknown {
            let hint = did_you_mean(key, known);
            self.push(
                span.clone(),
                Some(label.to_owned()),
                Some(&format!("{prefix}{key}")),
                format!(
                    "unknown key{hint}; the keys of {what} are {}",
                    known.join(", ")
                ),
            );
        }
        for (key, _) in &unknown {
            table.remove(key.as_str());
        }
    }

    /// Sets aside unknown keys (nested tables too) and deserializes the entry.
    fn deserialize<T: for<'de> Deserialize<'de>>(
        &mut self,
        mut entry: Entry<'_>,
        known: &[&str],
        what: &str,
    ) -> Option<T> {
        let label = entry.label();
        self.unknown_keys(&mut entry.table, known, &label, "", what);
        if let Some(value) = entry.table.get_mut("checkin")
            && let DeValue::Table(checkin) = value.get_mut()
        {
            self.unknown_keys(checkin, CHECKIN_KEYS, &label, "checkin.", "a check-in plan");
        }
        if let Some(value) = entry.table.get_mut("away")
            && let DeValue::Array(periods) = value.get_mut()
        {
            for (i, period) in periods.iter_mut().enumerate() {
                if let DeValue::Table(period) = period.get_mut() {
                    let prefix = format!("away[{i}].");
                    self.unknown_keys(period, AWAY_KEYS, &label, &prefix, "an away period");
                }
            }
        }
        // Which key a deserialization error belongs to, by its span.
        let key_spans: Vec<(String, Range<usize>)> = entry
            .table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect();
        let value = Spanned::new(entry.span.clone(), DeValue::Table(entry.table));
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(raw) => Some(raw),
            Err(error) => {
                let span = error.span().unwrap_or(entry.span.clone());
                let key = key_spans
                    .iter()
                    .find(|(_, s)| s.start <= span.start && span.end <= s.end)
                    .map(|(k, _)| k.as_str());
                let message = error.message();
                let fix = if message.starts_with("missing field") {
                    "; add it"
                } else {
                    ""
                };
                self.push(span, Some(label), key, format!("{message}{fix}"));
                None
            }
        }
    }

    fn check_id<T: std::str::FromStr<Err = ondol_model::IdError>>(
        &mut self,
        value: &Spanned<String>,
        label: &str,
        key: &str,
    ) -> Option<T> {
        match value.get_ref().parse() {
            Ok(id) => Some(id),
            Err(error) => {
                self.push(
                    value.span(),
                    Some(label.to_owned()),
                    Some(key),
                    format!("invalid id \"{}\": {error}", value.get_ref()),
                );
                None
            }
        }
    }

    /// Reports the second and later uses of each id.
    fn duplicates<'e>(
        &mut self,
        section: &str,
        ids: impl Iterator<Item = (&'e Spanned<String>, String)>,
    ) {
        let mut first: HashMap<&str, String> = HashMap::new();
        for (id, label) in ids {
            if let Some(earlier) = first.get(id.get_ref().as_str()) {
                self.push(
                    id.span(),
                    Some(label),
                    Some("id"),
                    format!(
                        "duplicate id \"{}\": {earlier} already uses it; give each entry of [[{section}]] its own id",
                        id.get_ref()
                    ),
                );
            } else {
                first.insert(id.get_ref().as_str(), label);
            }
        }
    }

    fn non_empty(
        &mut self,
        value: &Spanned<String>,
        label: &str,
        key: &str,
        what: &str,
    ) -> Option<String> {
        if value.get_ref().trim().is_empty() {
            self.push(
                value.span(),
                Some(label.to_owned()),
                Some(key),
                format!("{key} is empty; give {what}"),
            );
            return None;
        }
        Some(value.get_ref().clone())
    }

    fn region(&mut self, value: &Spanned<String>, label: &str) -> Option<String> {
        match check_id(value.get_ref()) {
            Ok(()) => Some(value.get_ref().clone()),
            Err(error) => {
                self.push(
                    value.span(),
                    Some(label.to_owned()),
                    Some("region"),
                    format!(
                        "invalid region \"{}\": {error}; regions are short labels such as \"gangjin\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn env_name(&mut self, value: &Spanned<String>, label: &str, key: &str) -> Option<String> {
        let name = value.get_ref();
        let mut chars = name.chars();
        let looks_right = chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if looks_right {
            return Some(name.clone());
        }
        self.push(
            value.span(),
            Some(label.to_owned()),
            Some(key),
            format!(
                "\"{name}\" is not an environment variable name; use upper-case letters, digits and '_', \
                 not starting with a digit, e.g. \"{}\"",
                if key == "token_env" {
                    "ONDOL_TOKEN_CW_01"
                } else {
                    "ONDOL_DEVICE_GW_0001"
                }
            ),
        );
        None
    }

    /// Reports an environment variable named by more than one entry: two
    /// people (or devices) sharing one secret could not be told apart.
    fn shared_env<'e>(
        &mut self,
        key: &str,
        uses: impl Iterator<Item = (&'e Spanned<String>, String)>,
    ) {
        let mut first: HashMap<&str, String> = HashMap::new();
        for (name, label) in uses {
            if let Some(earlier) = first.get(name.get_ref().as_str()) {
                self.push(
                    name.span(),
                    Some(label),
                    Some(key),
                    format!(
                        "{earlier} already uses \"{}\"; each entry needs its own secret, so give it its own variable",
                        name.get_ref()
                    ),
                );
            } else {
                first.insert(name.get_ref().as_str(), label);
            }
        }
    }

    fn date(&mut self, value: &Spanned<DateText>, label: &str, key: &str) -> Option<Date> {
        let text = &value.get_ref().0;
        let detail = match text.parse::<Date>() {
            // Exactly YYYY-MM-DD: jiff also reads longer forms.
            Ok(date) if text.len() == 10 => return Some(date),
            Ok(_) => String::new(),
            Err(error) => format!(": {error}"),
        };
        self.push(
            value.span(),
            Some(label.to_owned()),
            Some(key),
            format!("invalid date \"{text}\"{detail}; write a date as \"YYYY-MM-DD\", e.g. \"2026-01-01\""),
        );
        None
    }

    fn timestamp(
        &mut self,
        value: &Spanned<DateText>,
        label: &str,
        key: &str,
    ) -> Option<Timestamp> {
        match value.get_ref().0.parse::<Timestamp>() {
            Ok(ts) => Some(ts),
            Err(error) => {
                self.push(
                    value.span(),
                    Some(label.to_owned()),
                    Some(key),
                    format!(
                        "invalid time \"{}\": {error}; write an RFC 3339 time with its offset, e.g. \"2026-03-01T09:00:00+09:00\"",
                        value.get_ref().0
                    ),
                );
                None
            }
        }
    }

    fn timezone(&mut self, value: &Spanned<String>, label: &str) -> Option<(String, TimeZone)> {
        let name = value.get_ref();
        match TimeZone::get(name) {
            Ok(tz) => Some((tz.iana_name().unwrap_or(name).to_owned(), tz)),
            Err(_) => {
                let names: Vec<String> = jiff::tz::db()
                    .available()
                    .map(|n| n.as_str().to_owned())
                    .collect();
                let example = closest(name, names.iter().map(String::as_str))
                    .unwrap_or("Asia/Seoul")
                    .to_owned();
                self.push(
                    value.span(),
                    Some(label.to_owned()),
                    Some("timezone"),
                    format!("unknown time zone \"{name}\"; use an IANA name such as \"{example}\""),
                );
                None
            }
        }
    }

    fn checkin(&mut self, raw: Option<&Spanned<RawCheckin>>, label: &str) -> Option<CheckinPlan> {
        let Some(raw) = raw else {
            return Some(CheckinPlan::default());
        };
        let raw = raw.get_ref();
        let passive = raw.passive.as_ref().is_some_and(|p| *p.get_ref());
        let window = match &raw.window {
            None => CheckinPlan::default().window,
            Some(text) if text.get_ref().trim() == NO_CHECKIN_WINDOW => {
                if passive && let Some(p) = &raw.passive {
                    self.push(
                        p.span(),
                        Some(label.to_owned()),
                        Some("checkin.passive"),
                        format!(
                            "passive check-in needs a window, but the window is \"{NO_CHECKIN_WINDOW}\"; \
                             set a window such as \"06:00-10:00\" or remove passive"
                        ),
                    );
                    return None;
                }
                None
            }
            Some(text) => Some(self.window(text, label)?),
        };
        Some(CheckinPlan { window, passive })
    }

    fn window(&mut self, text: &Spanned<String>, label: &str) -> Option<CheckinWindow> {
        let parsed = text
            .get_ref()
            .split_once('-')
            .and_then(|(start, end)| Some((parse_hhmm(start.trim())?, parse_hhmm(end.trim())?)));
        let Some((start, end)) = parsed else {
            self.push(
                text.span(),
                Some(label.to_owned()),
                Some("checkin.window"),
                format!(
                    "invalid check-in window \"{}\"; write \"HH:MM-HH:MM\" in the resident's local time, \
                     e.g. \"06:00-10:00\", or \"{NO_CHECKIN_WINDOW}\" for no daily check-in",
                    text.get_ref()
                ),
            );
            return None;
        };
        if start >= end {
            self.push(
                text.span(),
                Some(label.to_owned()),
                Some("checkin.window"),
                format!(
                    "check-in window \"{}\" does not start before it ends; a window lies within one day, \
                     e.g. \"06:00-10:00\"",
                    text.get_ref()
                ),
            );
            return None;
        }
        Some(CheckinWindow { start, end })
    }

    fn away(
        &mut self,
        raw: Option<&Vec<Spanned<RawAway>>>,
        label: &str,
    ) -> Option<Vec<AwayPeriod>> {
        let mut periods: Vec<(usize, AwayPeriod)> = Vec::new();
        let mut ok = true;
        for (i, raw) in raw.into_iter().flatten().enumerate() {
            let raw_ref = raw.get_ref();
            let from = self.date(&raw_ref.from, label, &format!("away[{i}].from"));
            let until = self.date(&raw_ref.until, label, &format!("away[{i}].until"));
            let (Some(from), Some(until)) = (from, until) else {
                ok = false;
                continue;
            };
            if until < from {
                self.push(
                    raw_ref.until.span(),
                    Some(label.to_owned()),
                    Some(&format!("away[{i}].until")),
                    format!("until {until} is before from {from}; both ends are included, so a one-day absence has from = until"),
                );
                ok = false;
                continue;
            }
            if let Some((j, other)) = periods
                .iter()
                .find(|(_, p)| p.from <= until && from <= p.until)
            {
                self.push(
                    raw.span(),
                    Some(label.to_owned()),
                    Some(&format!("away[{i}]")),
                    format!(
                        "overlaps away[{j}] ({} to {}); merge the two periods",
                        other.from, other.until
                    ),
                );
                ok = false;
                continue;
            }
            periods.push((
                i,
                AwayPeriod {
                    from,
                    until,
                    reason: raw_ref.reason.clone(),
                },
            ));
        }
        ok.then(|| {
            let mut periods: Vec<AwayPeriod> = periods.into_iter().map(|(_, p)| p).collect();
            periods.sort_by_key(|p| p.from);
            periods
        })
    }

    fn staff(&mut self, entries: Vec<Entry<'_>>) -> Vec<StaffSeen> {
        let mut seen = Vec::new();
        let mut raws = Vec::new();
        for entry in entries {
            let label = entry.label();
            if let Some(raw) = self.deserialize::<RawStaff>(entry, STAFF_KEYS, "a staff member") {
                raws.push((label, raw));
            }
        }
        self.duplicates("staff", raws.iter().map(|(l, r)| (&r.id, l.clone())));
        self.shared_env(
            "token_env",
            raws.iter()
                .filter_map(|(l, r)| r.token_env.as_ref().map(|t| (t, l.clone()))),
        );
        for (label, raw) in raws {
            let id = self.check_id::<StaffId>(&raw.id, &label, "id");
            let name = self.non_empty(&raw.name, &label, "name", "the staff member's name");
            let role = StaffRole::parse(raw.role.get_ref());
            if role.is_none() {
                self.push(
                    raw.role.span(),
                    Some(label.clone()),
                    Some("role"),
                    format!(
                        "unknown role \"{}\"; use one of {}",
                        raw.role.get_ref(),
                        StaffRole::ALL.map(StaffRole::as_str).join(", ")
                    ),
                );
            }
            let mut region_ok = true;
            let region = match (&raw.region, role) {
                (Some(region), Some(StaffRole::Supervisor)) => {
                    let checked = self.region(region, &label);
                    region_ok = checked.is_some();
                    checked
                }
                (Some(region), Some(other)) => {
                    self.push(
                        region.span(),
                        Some(label.clone()),
                        Some("region"),
                        format!(
                            "only supervisors have a region, and this staff member's role is {}; remove the key \
                             (a caseworker's residents are those that name them as caseworker)",
                            other.as_str()
                        ),
                    );
                    region_ok = false;
                    None
                }
                _ => None,
            };
            let token_env = match &raw.token_env {
                Some(t) => self.env_name(t, &label, "token_env").map(Some),
                None => Some(None),
            };
            let staff = match (id, name, role, region_ok, token_env) {
                (Some(id), Some(name), Some(role), true, Some(token_env)) => Some(Staff {
                    id,
                    name,
                    role,
                    region,
                    token_env,
                }),
                _ => None,
            };
            seen.push(StaffSeen {
                label,
                id: raw.id.get_ref().clone(),
                role,
                region: raw.region.filter(|_| role == Some(StaffRole::Supervisor)),
                staff,
            });
        }
        seen
    }

    fn residents(
        &mut self,
        entries: Vec<Entry<'_>>,
        staff: &[StaffSeen],
        staff_ids: &BTreeSet<String>,
    ) -> Vec<Option<Resident>> {
        let mut raws = Vec::new();
        for entry in entries {
            let label = entry.label();
            if let Some(raw) = self.deserialize::<RawResident>(entry, RESIDENT_KEYS, "a resident") {
                raws.push((label, raw));
            }
        }
        self.duplicates("residents", raws.iter().map(|(l, r)| (&r.id, l.clone())));
        let mut out = Vec::new();
        for (label, raw) in raws {
            let id = self.check_id::<ResidentId>(&raw.id, &label, "id");
            let name = self.non_empty(&raw.name, &label, "name", "the resident's display name");
            let timezone = self.timezone(&raw.timezone, &label);
            let region = self.region(&raw.region, &label);
            let from = self.date(&raw.enrolled_from, &label, "enrolled_from");
            let until = match &raw.enrolled_until {
                Some(until) => self.date(until, &label, "enrolled_until").map(Some),
                None => Some(None),
            };
            let mut dates_ok = true;
            if let (Some(from), Some(Some(until)), Some(raw_until)) =
                (from, until, &raw.enrolled_until)
                && until < from
            {
                self.push(
                    raw_until.span(),
                    Some(label.clone()),
                    Some("enrolled_until"),
                    format!(
                        "enrolled_until {until} is before enrolled_from {from}; enrolled_until is the last \
                         enrolled day (inclusive), so it cannot be earlier"
                    ),
                );
                dates_ok = false;
            }
            let caseworker = match &raw.caseworker {
                Some(cw) => self.caseworker(cw, &label, staff, staff_ids).map(Some),
                None => Some(None),
            };
            let checkin = self.checkin(raw.checkin.as_ref(), &label);
            let away = self.away(raw.away.as_ref(), &label);
            out.push(
                match (
                    id, name, timezone, region, from, until, caseworker, checkin, away,
                ) {
                    (
                        Some(id),
                        Some(name),
                        Some((timezone_name, timezone)),
                        Some(region),
                        Some(enrolled_from),
                        Some(enrolled_until),
                        Some(caseworker),
                        Some(checkin),
                        Some(away),
                    ) if dates_ok => Some(Resident {
                        id,
                        name,
                        timezone_name,
                        timezone,
                        region,
                        enrolled_from,
                        enrolled_until,
                        caseworker,
                        checkin,
                        away,
                    }),
                    _ => None,
                },
            );
        }
        out
    }

    fn caseworker(
        &mut self,
        value: &Spanned<String>,
        label: &str,
        staff: &[StaffSeen],
        staff_ids: &BTreeSet<String>,
    ) -> Option<StaffId> {
        let id = self.check_id::<StaffId>(value, label, "caseworker")?;
        let problem = match staff.iter().find(|s| s.id == id.as_str()) {
            // The staff entry exists but is broken; its problem is reported.
            None if staff_ids.contains(id.as_str()) => return Some(id),
            None => format!(
                "caseworker \"{id}\" is not in the roster; add a [[staff]] entry with that id and \
                 role = \"caseworker\", or fix the id"
            ),
            Some(member) => match member.role {
                Some(StaffRole::Caseworker) | None => return Some(id),
                Some(role) => format!(
                    "{} has role {}, not caseworker; assign a staff member with role = \"caseworker\"",
                    member.label,
                    role.as_str()
                ),
            },
        };
        self.push(
            value.span(),
            Some(label.to_owned()),
            Some("caseworker"),
            problem,
        );
        None
    }

    fn devices(
        &mut self,
        entries: Vec<Entry<'_>>,
        residents: &BTreeSet<String>,
    ) -> Vec<Option<Device>> {
        let mut raws = Vec::new();
        for entry in entries {
            let label = entry.label();
            if let Some(raw) = self.deserialize::<RawDevice>(entry, DEVICE_KEYS, "a device") {
                raws.push((label, raw));
            }
        }
        self.duplicates("devices", raws.iter().map(|(l, r)| (&r.id, l.clone())));
        self.shared_env(
            "secret_env",
            raws.iter()
                .filter_map(|(l, r)| r.secret_env.as_ref().map(|t| (t, l.clone()))),
        );
        let mut out = Vec::new();
        for (label, raw) in raws {
            let id = self.check_id::<DeviceId>(&raw.id, &label, "id");
            let mut resident = self.check_id::<ResidentId>(&raw.resident, &label, "resident");
            if let Some(r) = &resident
                && !residents.contains(r.as_str())
            {
                self.push(
                    raw.resident.span(),
                    Some(label.clone()),
                    Some("resident"),
                    format!(
                        "resident \"{r}\" is not in the roster; add a [[residents]] entry with that id, or fix the id"
                    ),
                );
                resident = None;
            }
            let kind = DeviceKind::parse(raw.kind.get_ref());
            if kind.is_none() {
                self.push(
                    raw.kind.span(),
                    Some(label.clone()),
                    Some("kind"),
                    format!(
                        "unknown kind \"{}\"; use one of {}",
                        raw.kind.get_ref(),
                        DeviceKind::ALL.map(DeviceKind::as_str).join(", ")
                    ),
                );
            }
            let secret_env = match &raw.secret_env {
                Some(s) => self.env_name(s, &label, "secret_env").map(Some),
                None => Some(None),
            };
            let from = match &raw.bound_from {
                Some(v) => self.timestamp(v, &label, "bound_from").map(Some),
                None => Some(None),
            };
            let until = match &raw.bound_until {
                Some(v) => self.timestamp(v, &label, "bound_until").map(Some),
                None => Some(None),
            };
            let mut order_ok = true;
            if let (Some(Some(from)), Some(Some(until)), Some(raw_until)) =
                (from, until, &raw.bound_until)
                && until <= from
            {
                self.push(
                    raw_until.span(),
                    Some(label.clone()),
                    Some("bound_until"),
                    format!("bound_until {until} is not after bound_from {from}; the binding holds from bound_from up to (not including) bound_until"),
                );
                order_ok = false;
            }
            out.push(match (id, resident, kind, secret_env, from, until) {
                (
                    Some(id),
                    Some(resident),
                    Some(kind),
                    Some(secret_env),
                    Some(from),
                    Some(until),
                ) if order_ok => Some(Device {
                    id,
                    kind,
                    bindings: vec![DeviceBinding {
                        resident,
                        from,
                        until,
                    }],
                    active: raw.active.unwrap_or(true),
                    secret_env,
                }),
                _ => None,
            });
        }
        out
    }

    /// A supervisor's region must be one some resident lives in: a typo
    /// would leave the supervisor overseeing nobody.
    fn supervisor_regions(&mut self, staff: &[StaffSeen], residents: &[Option<Resident>]) {
        let regions: BTreeSet<&str> = residents
            .iter()
            .flatten()
            .map(|r| r.region.as_str())
            .collect();
        if residents.iter().any(Option::is_none) {
            // Some resident failed to parse; its region is unknown, so do not
            // guess (its problem is already reported).
            return;
        }
        for member in staff {
            let Some(region) = &member.region else {
                continue;
            };
            if member.staff.is_some() && !regions.contains(region.get_ref().as_str()) {
                let known: Vec<&str> = regions.iter().copied().collect();
                self.push(
                    region.span(),
                    Some(member.label.clone()),
                    Some("region"),
                    format!(
                        "no resident is in region \"{}\"; use one of the residents' regions: {}",
                        region.get_ref(),
                        if known.is_empty() {
                            "(none yet)".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }
}

/// `HH:MM` with two-digit hours 00–23 and minutes 00–59.
fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    Time::new(h, m, 0, 0).ok()
}

/// `"; did you mean \"x\"?"` when a known name is close, else `""`.
fn did_you_mean(word: &str, known: &[&str]) -> String {
    closest(word, known.iter().copied())
        .map(|k| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

/// The candidate nearest to `word` by edit distance, if near enough to be a
/// plausible typo (case is ignored).
fn closest<'k>(word: &str, candidates: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FILE: &str = "config/registry.toml";

    /// A valid roster to break one piece at a time.
    const GOOD: &str = r#"
[[residents]]
id = "r-0001"
name = "Kim Young-ja"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-01"
checkin = { window = "06:00-10:00", passive = false }

[[devices]]
id = "gw-0001"
resident = "r-0001"
kind = "gateway"
secret_env = "ONDOL_DEVICE_GW_0001"

[[staff]]
id = "cw-01"
name = "Park Ji-hoon"
role = "caseworker"
token_env = "ONDOL_TOKEN_CW_01"
"#;

    fn problems(text: &str) -> Vec<String> {
        match parse_roster(text, FILE) {
            Ok(roster) => panic!("expected problems, got {roster:#?}"),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    /// The single problem of `text`, which must contain every `needle`.
    fn one_problem(text: &str, needles: &[&str]) {
        let found = problems(text);
        assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
        for needle in needles {
            assert!(found[0].contains(needle), "{:?} lacks {needle:?}", found[0]);
        }
    }

    fn with(extra: &str) -> String {
        format!("{GOOD}\n{extra}")
    }

    fn replaced(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from:?} not in GOOD");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn the_documented_shape_parses() {
        let roster = parse_roster(GOOD, FILE).unwrap();
        assert_eq!(roster.residents.len(), 1);
        let r = &roster.residents[0];
        assert_eq!(r.id.as_str(), "r-0001");
        assert_eq!(r.timezone_name, "Asia/Seoul");
        assert_eq!(r.enrolled_from, jiff::civil::date(2026, 1, 1));
        assert_eq!(r.checkin, CheckinPlan::default());
        assert_eq!(r.caseworker.as_ref().map(StaffId::as_str), Some("cw-01"));
        let d = &roster.devices[0];
        assert_eq!(d.kind, DeviceKind::Gateway);
        assert!(d.active);
        assert_eq!(d.bindings.len(), 1);
        assert_eq!(d.bindings[0].from, None);
        assert_eq!(d.secret_env.as_deref(), Some("ONDOL_DEVICE_GW_0001"));
        assert_eq!(roster.staff[0].role, StaffRole::Caseworker);
    }

    #[test]
    fn the_demo_registry_parses() {
        let roster = match parse_roster(include_str!("../../../config/registry.toml"), FILE) {
            Ok(roster) => roster,
            Err(problems) => panic!("demo registry: {problems:#?}"),
        };
        assert_eq!(roster.residents.len(), 20);
        let regions: BTreeSet<&str> = roster.residents.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(regions, BTreeSet::from(["alentejo", "gangjin"]));
        assert!(roster.residents.iter().any(|r| r.checkin.passive));
        assert!(roster.residents.iter().any(|r| !r.away.is_empty()));
        assert!(roster.residents.iter().any(|r| r.checkin.window.is_none()));
        assert!(
            roster.residents.iter().all(|r| roster
                .devices
                .iter()
                .any(|d| d.kind == DeviceKind::Gateway
                    && d.bindings.iter().any(|b| b.resident == r.id)))
        );
        for role in StaffRole::ALL {
            assert!(roster.staff.iter().any(|s| s.role == role), "no {role:?}");
        }
        let caseworkers = roster
            .staff
            .iter()
            .filter(|s| s.role == StaffRole::Caseworker);
        assert_eq!(caseworkers.count(), 3);
    }

    #[test]
    fn optional_forms_parse() {
        let text = r#"
[[residents]]
id = "r-1"
name = "A"
timezone = "europe/lisbon"
region = "alentejo"
enrolled_from = 2026-03-02
enrolled_until = "2026-03-02"
checkin = { window = "none" }
away = [
  { from = "2026-03-02", until = "2026-03-02" },
  { from = 2026-01-01, until = "2026-01-31", reason = "family visit" },
]

[[residents]]
id = "r-2"
name = "B"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
checkin = { passive = true }

[[devices]]
id = "wr-1"
resident = "r-1"
kind = "wearable"
active = false
bound_from = 2026-06-01T00:00:00+01:00
bound_until = "2026-07-01T00:00:00Z"

[[staff]]
id = "sv-01"
name = "S"
role = "supervisor"
region = "alentejo"

[[staff]]
id = "sv-00"
name = "All regions"
role = "supervisor"
"#;
        let roster = parse_roster(text, FILE).unwrap();
        let r1 = &roster.residents[0];
        assert_eq!(r1.timezone_name, "Europe/Lisbon", "canonical spelling");
        assert_eq!(r1.checkin.window, None);
        assert_eq!(r1.enrolled_until, Some(jiff::civil::date(2026, 3, 2)));
        assert_eq!(r1.away.len(), 2);
        assert_eq!(r1.away[0].from, jiff::civil::date(2026, 1, 1), "sorted");
        assert_eq!(r1.away[0].reason.as_deref(), Some("family visit"));
        let r2 = &roster.residents[1];
        assert!(r2.checkin.passive);
        assert_eq!(r2.checkin.window, CheckinPlan::default().window);
        let d = &roster.devices[0];
        assert!(!d.active);
        assert_eq!(
            d.bindings[0].from,
            Some("2026-05-31T23:00:00Z".parse().unwrap())
        );
        assert_eq!(
            d.bindings[0].until,
            Some("2026-07-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(roster.staff[0].region.as_deref(), Some("alentejo"));
        assert_eq!(roster.staff[1].region, None);
    }

    #[test]
    fn the_documented_example_message() {
        one_problem(
            &replaced("Asia/Seoul", "Asia/Seol"),
            &[
                "config/registry.toml:",
                "residents[0] (id \"r-0001\"): key \"timezone\": unknown time zone \"Asia/Seol\"; \
                 use an IANA name such as \"Asia/Seoul\"",
            ],
        );
    }

    #[test]
    fn problems_name_the_line() {
        let found = problems(&replaced("Asia/Seoul", "Mars/Olympus"));
        let line = GOOD.lines().position(|l| l.contains("timezone")).unwrap() + 1;
        assert!(
            found[0].starts_with(&format!("{FILE}:{line}: ")),
            "{found:?}"
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let found = problems("[[residents]]\nid = \"r-1\"\nname = Kim\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with(&format!("{FILE}:3:8: not valid TOML")),
            "{found:?}"
        );
        let found = problems("[[residents]]\nid = \"r-1\"\nid = \"r-2\"\n");
        assert!(found[0].contains(":3:"), "{found:?}");
    }

    #[test]
    fn unknown_keys_are_reported_with_a_suggestion() {
        one_problem(
            &replaced("timezone = ", "timezon = \"x\"\ntimezone = "),
            &[
                "key \"timezon\": unknown key (did you mean \"timezone\"?)",
                "the keys of a resident are",
            ],
        );
        one_problem(
            &replaced("passive = false", "pasive = false"),
            &["key \"checkin.pasive\"", "did you mean \"passive\""],
        );
        one_problem(
            &with("[[resident]]\nid = \"r-2\""),
            &[
                "unknown top-level key \"resident\"",
                "did you mean \"residents\"",
            ],
        );
        one_problem(
            &replaced("kind = \"gateway\"", "kind = \"gateway\"\ncolour = \"red\""),
            &["devices[0]", "key \"colour\"", "unknown key"],
        );
        one_problem(
            &replaced("token_env = ", "email = \"x@example.org\"\ntoken_env = "),
            &["staff[0]", "key \"email\""],
        );
    }

    #[test]
    fn structural_problems_name_the_key() {
        one_problem(
            &replaced("name = \"Kim Young-ja\"", "name = 5"),
            &["residents[0]", "key \"name\"", "invalid type"],
        );
        one_problem(
            &replaced("name = \"Kim Young-ja\"\n", ""),
            &[
                "residents[0] (id \"r-0001\")",
                "missing field `name`; add it",
            ],
        );
        one_problem(
            &replaced("passive = false", "passive = \"no\""),
            &["key \"checkin\"", "invalid type"],
        );
        one_problem(
            "residents = 5\n",
            &["key \"residents\"", "must be an array of tables"],
        );
        one_problem("residents = [5]\n", &["residents[0]", "must be a table"]);
    }

    #[test]
    fn ids_must_be_valid_and_unique() {
        let found = problems(&replaced("id = \"r-0001\"", "id = \"r 0001\""));
        assert!(
            found[0].contains("key \"id\": invalid id \"r 0001\""),
            "{found:#?}"
        );
        // The device names "r-0001", which is now in no entry.
        assert!(
            found[1].contains("resident \"r-0001\" is not in the roster"),
            "{found:#?}"
        );
        assert_eq!(found.len(), 2);
        let dup = with(
            "[[residents]]\nid = \"r-0001\"\nname = \"B\"\ntimezone = \"Asia/Seoul\"\nregion = \"gangjin\"\nenrolled_from = \"2026-01-01\"\n\
             [[devices]]\nid = \"gw-0001\"\nresident = \"r-0001\"\nkind = \"button\"\n\
             [[staff]]\nid = \"cw-01\"\nname = \"C\"\nrole = \"admin\"\n",
        );
        let found = problems(&dup);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found.iter().any(|p| p.contains(
            "residents[1] (id \"r-0001\"): key \"id\": duplicate id \"r-0001\": residents[0]"
        )));
        assert!(
            found
                .iter()
                .any(|p| p.contains("devices[1]") && p.contains("duplicate id"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("staff[1]") && p.contains("duplicate id"))
        );
    }

    #[test]
    fn dates_are_checked() {
        one_problem(
            &replaced("2026-01-01", "2026-02-30"),
            &[
                "key \"enrolled_from\"",
                "invalid date \"2026-02-30\"",
                "YYYY-MM-DD",
            ],
        );
        one_problem(&replaced("2026-01-01", "01/01/2026"), &["invalid date"]);
        one_problem(
            &replaced(
                "enrolled_from = \"2026-01-01\"",
                "enrolled_from = \"2026-01-01\"\nenrolled_until = \"2025-12-31\"",
            ),
            &["key \"enrolled_until\"", "before enrolled_from"],
        );
        one_problem(
            &replaced("enrolled_from = \"2026-01-01\"", "enrolled_from = 5"),
            &["key \"enrolled_from\"", "a date such as"],
        );
    }

    #[test]
    fn checkin_windows_are_checked() {
        one_problem(
            &replaced("06:00-10:00", "6-10"),
            &[
                "key \"checkin.window\"",
                "invalid check-in window \"6-10\"",
                "HH:MM-HH:MM",
            ],
        );
        one_problem(
            &replaced("06:00-10:00", "25:00-26:00"),
            &["invalid check-in window"],
        );
        one_problem(
            &replaced("06:00-10:00", "22:00-02:00"),
            &["does not start before it ends"],
        );
        one_problem(
            &replaced("06:00-10:00", "10:00-10:00"),
            &["does not start before it ends"],
        );
        one_problem(
            &replaced(
                "window = \"06:00-10:00\", passive = false",
                "window = \"none\", passive = true",
            ),
            &["key \"checkin.passive\"", "passive check-in needs a window"],
        );
    }

    #[test]
    fn away_periods_are_checked() {
        let away = |list: &str| {
            replaced(
                "caseworker = \"cw-01\"",
                &format!("caseworker = \"cw-01\"\naway = [{list}]"),
            )
        };
        one_problem(
            &away("{ from = \"2026-05-10\", until = \"2026-05-01\" }"),
            &["key \"away[0].until\"", "is before from"],
        );
        one_problem(
            &away("{ from = \"2026-05-32\", until = \"2026-06-01\" }"),
            &["key \"away[0].from\"", "invalid date"],
        );
        one_problem(
            &away(
                "{ from = \"2026-05-01\", until = \"2026-05-10\" }, { from = \"2026-05-10\", until = \"2026-05-12\" }",
            ),
            &["key \"away[1]\"", "overlaps away[0]"],
        );
        let found = problems(&away("{ from = \"2026-05-01\", to = \"2026-05-10\" }"));
        assert!(
            found[0].contains("key \"away[0].to\": unknown key"),
            "{found:#?}"
        );
        assert!(found[1].contains("missing field `until`"), "{found:#?}");
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn references_kinds_and_roles_are_checked() {
        one_problem(
            &replaced("resident = \"r-0001\"", "resident = \"r-0099\""),
            &[
                "devices[0]",
                "key \"resident\"",
                "resident \"r-0099\" is not in the roster",
            ],
        );
        one_problem(
            &replaced("kind = \"gateway\"", "kind = \"watch\""),
            &[
                "key \"kind\"",
                "unknown kind \"watch\"",
                "gateway, wearable, button, sensor",
            ],
        );
        one_problem(
            &replaced("role = \"caseworker\"", "role = \"nurse\""),
            &[
                "key \"role\"",
                "unknown role \"nurse\"",
                "caseworker, supervisor, evaluator, admin",
            ],
        );
        one_problem(
            &replaced("caseworker = \"cw-01\"", "caseworker = \"cw-09\""),
            &[
                "key \"caseworker\"",
                "caseworker \"cw-09\" is not in the roster",
            ],
        );
        one_problem(
            &replaced("role = \"caseworker\"", "role = \"evaluator\""),
            &[
                "residents[0]",
                "key \"caseworker\"",
                "staff[0] (id \"cw-01\") has role evaluator, not caseworker",
            ],
        );
    }

    #[test]
    fn regions_are_checked() {
        one_problem(
            &replaced("region = \"gangjin\"", "region = \"강진\""),
            &["key \"region\"", "invalid region"],
        );
        one_problem(
            &replaced(
                "role = \"caseworker\"",
                "role = \"caseworker\"\nregion = \"gangjin\"",
            ),
            &[
                "staff[0]",
                "key \"region\"",
                "only supervisors have a region",
            ],
        );
        one_problem(
            &with(
                "[[staff]]\nid = \"sv-01\"\nname = \"S\"\nrole = \"supervisor\"\nregion = \"gangjn\"\n",
            ),
            &["staff[1]", "no resident is in region \"gangjn\"", "gangjin"],
        );
    }

    #[test]
    fn environment_variable_names_are_checked() {
        one_problem(
            &replaced("ONDOL_TOKEN_CW_01", "ondol-token"),
            &["key \"token_env\"", "not an environment variable name"],
        );
        one_problem(
            &replaced("ONDOL_DEVICE_GW_0001", "1SECRET"),
            &["key \"secret_env\"", "not an environment variable name"],
        );
        one_problem(
            &with(
                "[[staff]]\nid = \"ad-01\"\nname = \"A\"\nrole = \"admin\"\ntoken_env = \"ONDOL_TOKEN_CW_01\"\n",
            ),
            &[
                "staff[1]",
                "key \"token_env\"",
                "staff[0] (id \"cw-01\") already uses",
            ],
        );
    }

    #[test]
    fn binding_times_are_checked() {
        let bound =
            |keys: &str| replaced("kind = \"gateway\"", &format!("kind = \"gateway\"\n{keys}"));
        one_problem(
            &bound("bound_from = \"2026-06-01T00:00:00\""),
            &["key \"bound_from\"", "RFC 3339"],
        );
        one_problem(
            &bound("bound_from = \"2026-06-01T00:00:00Z\"\nbound_until = \"2026-05-01T00:00:00Z\""),
            &["key \"bound_until\"", "is not after bound_from"],
        );
    }

    #[test]
    fn empty_names_are_refused() {
        one_problem(
            &replaced("name = \"Kim Young-ja\"", "name = \" \""),
            &["key \"name\"", "name is empty"],
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[[residents]]
id = "r-0001"
name = "Kim Young-ja"
timezone = "Asia/Seol"
region = "gangjin"
enrolled_from = "2026-13-01"
caseworker = "cw-99"
checkin = { window = "10:00-06:00" }
colour = "blue"

[[residents]]
id = "r-0002"
name = 7
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"

[[devices]]
id = "gw-0001"
resident = "r-0404"
kind = "toaster"

[[devices]]
id = "gw-0002"
resident = "r-0002"
kind = "gateway"

[[staff]]
id = "cw-01"
name = "Park Ji-hoon"
role = "janitor"
token_env = "lower"
"#;
        let found = problems(text);
        let expect = [
            "residents[0] (id \"r-0001\"): key \"colour\"",
            "residents[0] (id \"r-0001\"): key \"timezone\"",
            "residents[0] (id \"r-0001\"): key \"enrolled_from\"",
            "residents[0] (id \"r-0001\"): key \"caseworker\"",
            "residents[0] (id \"r-0001\"): key \"checkin.window\"",
            "residents[1] (id \"r-0002\"): key \"name\"",
            "devices[0] (id \"gw-0001\"): key \"resident\"",
            "devices[0] (id \"gw-0001\"): key \"kind\"",
            "staff[0] (id \"cw-01\"): key \"role\"",
            "staff[0] (id \"cw-01\"): key \"token_env\"",
        ];
        for needle in expect {
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "missing {needle:?} in {found:#?}"
            );
        }
        // Nothing else: the device of the broken resident r-0002 is not
        // reported as pointing at an unknown resident.
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn an_empty_file_is_an_empty_roster() {
        let roster = parse_roster("# nothing yet\n", FILE).unwrap();
        assert!(
            roster.residents.is_empty() && roster.devices.is_empty() && roster.staff.is_empty()
        );
    }

    #[test]
    fn suggestions_are_close_matches_only() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("timezon", RESIDENT_KEYS.iter().copied()),
            Some("timezone")
        );
        assert_eq!(closest("xyz", RESIDENT_KEYS.iter().copied()), None);
        assert_eq!(
            did_you_mean("resident", SECTIONS),
            " (did you mean \"residents\"?)"
        );
    }
}
