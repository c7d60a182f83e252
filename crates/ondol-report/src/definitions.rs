//! The metric definitions, printed in the HTML report and mirrored in
//! docs/REPORTS.md.

/// (metric, definition), in report order.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "local date",
        "Days are local dates in each resident's own time zone; a range includes both ends. A week is an ISO week (Monday to Sunday), labelled by its Monday; a month by its first day. Periods are clipped to the range.",
    ),
    (
        "enrolled day",
        "A day inside the resident's enrolment (first and last day included) and outside every away period. Only enrolled days count in any figure: readings, check-ins and alerts on other days are left out.",
    ),
    (
        "residents_enrolled",
        "Distinct residents with at least one enrolled day in the cell.",
    ),
    (
        "resident_days_enrolled",
        "Enrolled days, summed over residents.",
    ),
    (
        "active_day_ratio",
        "Enrolled days with at least one accepted reading ÷ resident_days_enrolled.",
    ),
    (
        "data_completeness",
        "Local hours with at least one reading (0–24 per day) ÷ (24 × resident_days_enrolled). A 23-hour day at a daylight-saving change can reach at most 23/24.",
    ),
    (
        "checkin_adherence",
        "Enrolled days with an ok check-in inside the window (or passive activity, if the plan allows it) ÷ enrolled days whose plan has a window. Late check-ins do not count.",
    ),
    (
        "alerts_per_100_resident_days",
        "Per rule: alerts opened on enrolled days (on the resident's local date at opening) × 100 ÷ resident_days_enrolled.",
    ),
    (
        "median_seconds_to_ack, p90_seconds_to_ack",
        "Over the cell's alerts that were acknowledged: seconds from opening to acknowledgement. The median of an even count is the mean of the two middle values; p90 is the nearest-rank value (the ⌈0.9·n⌉-th smallest).",
    ),
    (
        "median_seconds_to_resolve",
        "Over the cell's resolved alerts: seconds from opening to resolution.",
    ),
    (
        "resolved, outcomes",
        "Resolved alerts, and their count per outcome.",
    ),
    (
        "false_alarm_ratio",
        "(false_alarm_device + false_alarm_behaviour) ÷ resolved alerts.",
    ),
    (
        "satisfaction_responses, satisfaction_mean",
        "Satisfaction scores (1–5) received on enrolled days, and their mean.",
    ),
    (
        "suppressed",
        "A cell describing fewer than 5 residents is withheld: every figure is empty, never zero. An empty ratio elsewhere means its denominator is zero.",
    ),
    (
        "pseudonym",
        "r- and the first 16 hex digits of HMAC-SHA256(deployment key, resident id). Stable for one key; unlinkable without it.",
    ),
];
