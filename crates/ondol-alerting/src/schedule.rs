//! Local days, check-in deadlines, enrolment and away periods in the
//! resident's own time zone. Pure functions: the engine asks, these answer.
//!
//! A local time that does not exist (the hour skipped when clocks go
//! forward) is moved forward by the gap, and one that happens twice (clocks
//! go back) is the earlier of the two (jiff's "compatible" rule, as RFC 5545
//! does), so every day has exactly one deadline.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use ondol_model::roster::Resident;

/// The instant of local `date` at `time` in `tz`.
pub fn local_instant(date: Date, time: Time, tz: &TimeZone) -> Option<Timestamp> {
    date.to_datetime(time)
        .to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp())
}

/// The local date of `at` in `tz`.
pub fn local_date(at: Timestamp, tz: &TimeZone) -> Date {
    at.to_zoned(tz.clone()).date()
}

/// The start of local `date` (its first instant).
pub fn start_of(date: Date, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_zoned(date.to_datetime(Time::midnight()))
        .ok()
        .and_then(|z| z.start_of_day().ok())
        .map(|z| z.timestamp())
}

pub fn enrolled_on(resident: &Resident, date: Date) -> bool {
    resident.enrolled_from <= date && resident.enrolled_until.is_none_or(|until| date <= until)
}

pub fn away_on(resident: &Resident, date: Date) -> bool {
    resident
        .away
        .iter()
        .any(|a| a.from <= date && date <= a.until)
}

/// When the away period covering `date` ends (the start of the day after it).
pub fn away_ends(resident: &Resident, date: Date) -> Option<Timestamp> {
    resident
        .away
        .iter()
        .filter(|a| a.from <= date && date <= a.until)
        .map(|a| a.until)
        .max()
        .and_then(|until| until.tomorrow().ok())
        .and_then(|day| start_of(day, &resident.timezone))
}

/// The latest end of an away period at or before `now`: silence before it
/// does not count towards inactivity.
pub fn last_away_end(resident: &Resident, now: Timestamp) -> Option<Timestamp> {
    resident
        .away
        .iter()
        .filter_map(|a| {
            a.until
                .tomorrow()
                .ok()
                .and_then(|day| start_of(day, &resident.timezone))
        })
        .filter(|end| *end <= now)
        .max()
}

/// The first instant of enrolment.
pub fn enrolment_start(resident: &Resident) -> Option<Timestamp> {
    start_of(resident.enrolled_from, &resident.timezone)
}

/// The check-in window of `date` as instants `[start, deadline)`, if the
/// plan has one.
pub fn checkin_window(resident: &Resident, date: Date) -> Option<(Timestamp, Timestamp)> {
    let window = resident.checkin.window?;
    let start = local_instant(date, window.start, &resident.timezone)?;
    let end = local_instant(date, window.end, &resident.timezone)?;
    (start < end).then_some((start, end))
}

/// The next check-in deadline to watch: the first enrolled day after
/// `evaluated` whose deadline is after `since` (a resident first watched in
/// the middle of a window is expected that same day: the window is still
/// open for a check-in).
/// Days the resident is away are still returned: the engine skips them
/// when their deadline comes, so an away period added later is honoured.
pub fn next_checkin(
    resident: &Resident,
    since: Timestamp,
    evaluated: Option<Date>,
) -> Option<(Date, Timestamp)> {
    resident.checkin.window?;
    let since_date = local_date(since, &resident.timezone)
        .yesterday()
        .unwrap_or(resident.enrolled_from);
    let mut date = resident.enrolled_from.max(since_date);
    if let Some(done) = evaluated
        && let Ok(next) = done.tomorrow()
    {
        date = date.max(next);
    }
    // A window that ended before `since` is skipped; a few days of
    // look-ahead always find the next one.
    for _ in 0..8 {
        if resident.enrolled_until.is_some_and(|until| date > until) {
            return None;
        }
        if let Some((_, end)) = checkin_window(resident, date)
            && end > since
        {
            return Some((date, end));
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use ondol_model::ResidentId;
    use ondol_model::roster::{CheckinPlan, CheckinWindow};

    fn resident(zone: &str, window: (i8, i8)) -> Resident {
        Resident {
            id: ResidentId::new("r-1").expect("id"),
            name: "x".into(),
            timezone_name: zone.into(),
            timezone: TimeZone::get(zone).expect("zone"),
            region: "r".into(),
            enrolled_from: date(2026, 1, 1),
            enrolled_until: None,
            caseworker: None,
            checkin: CheckinPlan {
                window: Some(CheckinWindow {
                    start: Time::constant(window.0, 0, 0, 0),
                    end: Time::constant(window.1, 30, 0, 0),
                }),
                passive: false,
            },
            away: Vec::new(),
        }
    }

    #[test]
    fn deadlines_in_seoul_are_nine_hours_ahead_of_utc() {
        let r = resident("Asia/Seoul", (6, 9));
        let since: Timestamp = "2026-11-26T00:00:00Z".parse().expect("ts");
        let (day, deadline) = next_checkin(&r, since, None).expect("deadline");
        // 09:00 on 26 Nov in Seoul: the 26th's window is still open until
        // 09:30 KST = 00:30Z, so that is the first deadline.
        assert_eq!(day, date(2026, 11, 26));
        assert_eq!(deadline.to_string(), "2026-11-26T00:30:00Z");
        // From 09:30 KST on, the 27th's.
        let (day, _) = next_checkin(&r, deadline, None).expect("deadline");
        assert_eq!(day, date(2026, 11, 27));
    }

    #[test]
    fn a_window_across_the_spring_gap_ends_at_the_real_local_time() {
        // New York skips 02:00-03:00 on 8 March 2026; a 01:00-02:30 window
        // ends at 03:30 EDT = 07:30Z (the gap moves it forward).
        let r = resident("America/New_York", (1, 2));
        let (start, end) = checkin_window(&r, date(2026, 3, 8)).expect("window");
        assert_eq!(start.to_string(), "2026-03-08T06:00:00Z");
        assert_eq!(end.to_string(), "2026-03-08T07:30:00Z");
        // The next day is back to 02:30 EDT = 06:30Z.
        let (_, end) = checkin_window(&r, date(2026, 3, 9)).expect("window");
        assert_eq!(end.to_string(), "2026-03-09T06:30:00Z");
    }

    #[test]
    fn autumn_fold_takes_the_first_occurrence() {
        // Clocks go back at 02:00 EDT on 1 Nov 2026: 01:30 happens twice.
        let r = resident("America/New_York", (0, 1));
        let (_, end) = checkin_window(&r, date(2026, 11, 1)).expect("window");
        assert_eq!(end.to_string(), "2026-11-01T05:30:00Z");
    }

    #[test]
    fn evaluated_days_and_enrolment_end_bound_the_next_deadline() {
        let mut r = resident("Asia/Seoul", (6, 9));
        let since: Timestamp = "2026-11-20T00:00:00Z".parse().expect("ts");
        let (day, _) = next_checkin(&r, since, Some(date(2026, 11, 27))).expect("deadline");
        assert_eq!(day, date(2026, 11, 28));
        r.enrolled_until = Some(date(2026, 11, 27));
        assert_eq!(next_checkin(&r, since, Some(date(2026, 11, 27))), None);
    }
}
