//! The HTML report: one self-contained file (no scripts, no external
//! resources) for the people who judge the service.
//!
//! It opens with a summary of the whole range (each headline figure with its
//! trend over the periods and its spread across regions), then inline SVG
//! charts, the figures per period and region in tables split by topic so
//! each fits the page, the residents under pseudonyms, and the definitions.
//! Figures are formatted for people by [`crate::format`]; CSV and JSON keep
//! full precision. Print CSS makes it an A4 document: the summary alone on
//! page one, table headers repeated on every page, no chart or table row cut
//! across pages. Suppressed cells say so and why, never a number.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use jiff::civil::Date;
use ondol_model::alert::{Outcome, Rule};

use crate::definitions::DEFINITIONS;
use crate::format::{self, UNDEFINED};
use crate::metrics::{ALL_REGIONS, Cell, Figures, Granularity, Report, WHOLE_RANGE};

const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;
/// The size of a summary row's sparkline.
const SPARK_W: f64 = 96.0;
const SPARK_H: f64 = 22.0;

const STYLE: &str = "\
*{box-sizing:border-box}
body{font-family:sans-serif;color:#222;max-width:1000px;margin:auto;padding:1em;line-height:1.35}
h1{margin-bottom:.2em}
h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.lead{font-size:1.15em}
.note,.meaning{color:#555;font-size:.85em}
.meaning{display:block;font-weight:normal}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:.4em 0 1.2em}
caption{text-align:left;font-weight:bold;padding:.3em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top}
td{white-space:nowrap}
thead th{background:#f4f4f4;text-align:center;vertical-align:bottom}
th[scope=row],th[scope=rowgroup]{text-align:left;white-space:nowrap}
tbody{border-top:2px solid #999}
td.suppressed{color:#666;text-align:center;font-style:italic;background:repeating-linear-gradient(45deg,#fff,#fff 6px,#f1f1f1 6px,#f1f1f1 12px)}
table.summary{width:100%;font-size:14px}
table.summary th[scope=row]{white-space:normal;width:34%}
table.summary td{vertical-align:middle}
table.summary td.value{font-size:1.35em;font-weight:bold;white-space:nowrap}
table.summary td.trend svg{display:block;margin:2px 0 0 auto}
figure{margin:1em 0}
figure svg{max-width:100%;height:auto}
figcaption{font-weight:bold}
dt{font-weight:bold;margin-top:.5em}
@page{size:A4;margin:14mm 12mm 16mm;@bottom-left{content:\"Ondol utilisation report\";font:8pt sans-serif;color:#666}@bottom-right{content:\"page \" counter(page) \" of \" counter(pages);font:8pt sans-serif;color:#666}}
@media print{
body{max-width:none;padding:0;font-size:10pt}
h2,caption,thead{break-after:avoid}
.scroll{overflow:visible}
table{font-size:7.5pt}
table.summary{font-size:9.5pt}
thead{display:table-header-group}
tr,figure,caption,.keep{break-inside:avoid}
tbody{break-inside:avoid}
section.after-summary,section.tables{break-before:page}
}
";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn color(i: usize) -> &'static str {
    PALETTE.get(i % PALETTE.len()).copied().unwrap_or("#000")
}

/// A rule or outcome name as words: `missed_checkin` → `missed checkin`.
fn words(name: &str) -> String {
    name.replace('_', " ")
}

/// What a withheld cell says instead of a number.
fn suppressed_text(report: &Report) -> String {
    format!("suppressed: fewer than {} residents", report.min_residents)
}

/// The cells of a report by (period, region), with the periods and regions
/// in order.
struct View<'r> {
    report: &'r Report,
    /// Period labels (first days) in order; not the whole range.
    periods: Vec<&'r str>,
    /// Region names in order; not `all`.
    regions: Vec<&'r str>,
    cells: HashMap<(&'r str, &'r str), &'r Cell>,
}

impl<'r> View<'r> {
    fn new(report: &'r Report) -> View<'r> {
        let mut periods = Vec::new();
        let mut regions = BTreeSet::new();
        let mut cells = HashMap::new();
        for cell in &report.cells {
            if cell.period != WHOLE_RANGE && periods.last() != Some(&cell.period.as_str()) {
                periods.push(cell.period.as_str());
            }
            if cell.region != ALL_REGIONS {
                regions.insert(cell.region.as_str());
            }
            cells.insert((cell.period.as_str(), cell.region.as_str()), cell);
        }
        View {
            report,
            periods,
            regions: regions.into_iter().collect(),
            cells,
        }
    }

    fn cell(&self, period: &str, region: &str) -> Option<&'r Cell> {
        self.cells.get(&(period, region)).copied()
    }

    fn figures(&self, period: &str, region: &str) -> Option<&'r Figures> {
        self.cell(period, region).and_then(|c| c.figures.as_ref())
    }

    /// Regions whose whole-range cell is withheld.
    fn suppressed_regions(&self) -> Vec<&'r str> {
        self.regions
            .iter()
            .copied()
            .filter(|r| self.cell(WHOLE_RANGE, r).is_some_and(|c| c.suppressed))
            .collect()
    }

    /// A period as people name it: `2026-01` for a month, `week of
    /// 2026-01-05`, a date for a day; a period clipped by the range says
    /// which days it covers.
    fn period_label(&self, cell: &Cell) -> String {
        if cell.period == WHOLE_RANGE {
            return "whole range".to_string();
        }
        let granularity = self.report.granularity;
        let Ok(start) = cell.period.parse::<Date>() else {
            return cell.period.clone();
        };
        let clipped = cell.from != start || cell.to != granularity.period_end(start);
        match granularity {
            Granularity::Day => cell.period.clone(),
            Granularity::Week if clipped => format!(
                "week of {} ({} to {})",
                cell.period,
                month_day(cell.from),
                month_day(cell.to)
            ),
            Granularity::Week => format!("week of {}", cell.period),
            Granularity::Month if clipped => format!(
                "{} (days {}–{})",
                year_month(start),
                cell.from.day(),
                cell.to.day()
            ),
            Granularity::Month => year_month(start),
        }
    }

    /// A period's short name for chart axes.
    fn short_period(&self, period: &str) -> String {
        match (self.report.granularity, period.parse::<Date>()) {
            (Granularity::Month, Ok(start)) => year_month(start),
            _ => period.to_string(),
        }
    }
}

fn year_month(date: Date) -> String {
    format!("{:04}-{:02}", date.year(), date.month())
}

fn month_day(date: Date) -> String {
    format!("{:02}-{:02}", date.month(), date.day())
}

/// How a summary figure is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    /// A ratio, shown as a percentage.
    Share,
    /// Per 100 resident-days.
    Rate,
    /// Seconds, shown in s, min, h or d.
    Duration,
    /// A mean score (1–5).
    Score,
}

impl Kind {
    fn show(self, value: Option<f64>) -> String {
        match self {
            Kind::Count => match value.filter(|v| v.is_finite() && *v >= 0.0) {
                Some(v) => format::integer(v.round() as u64),
                None => UNDEFINED.to_string(),
            },
            Kind::Share => format::percent(value),
            Kind::Rate => format::decimal(value, 2),
            Kind::Duration => format::duration(value),
            Kind::Score => match value.filter(|v| v.is_finite()) {
                Some(_) => format!("{} of 5", format::decimal(value, 2)),
                None => UNDEFINED.to_string(),
            },
        }
    }
}

/// One headline figure of the summary.
struct Metric {
    label: &'static str,
    /// What it means, in one line (the full definition is at the end).
    meaning: &'static str,
    kind: Kind,
    value: fn(&Figures) -> Option<f64>,
}

/// All alerts, every rule, per 100 resident-days.
fn alerts_per_100(f: &Figures) -> Option<f64> {
    let alerts: u64 = f.alerts.values().sum();
    (f.resident_days_enrolled > 0).then(|| (alerts * 100) as f64 / f.resident_days_enrolled as f64)
}

const SUMMARY: &[Metric] = &[
    Metric {
        label: "Residents enrolled",
        meaning: "Residents with at least one enrolled day (inside enrolment, not away).",
        kind: Kind::Count,
        value: |f| Some(f.residents_enrolled as f64),
    },
    Metric {
        label: "Resident-days enrolled",
        meaning: "Enrolled days, summed over residents: the base of every rate.",
        kind: Kind::Count,
        value: |f| Some(f.resident_days_enrolled as f64),
    },
    Metric {
        label: "Active-day ratio",
        meaning: "Share of enrolled days with at least one accepted reading.",
        kind: Kind::Share,
        value: |f| f.active_day_ratio,
    },
    Metric {
        label: "Data completeness",
        meaning: "Share of enrolled hours with at least one reading.",
        kind: Kind::Share,
        value: |f| f.data_completeness,
    },
    Metric {
        label: "Check-in adherence",
        meaning: "Share of expected daily check-ins done inside their window.",
        kind: Kind::Share,
        value: |f| f.checkin_adherence,
    },
    Metric {
        label: "Alerts per 100 resident-days",
        meaning: "Alerts opened (every rule) per 100 enrolled days.",
        kind: Kind::Rate,
        value: alerts_per_100,
    },
    Metric {
        label: "Median time to acknowledge",
        meaning: "Half of the acknowledged alerts were acknowledged within this time.",
        kind: Kind::Duration,
        value: |f| f.median_seconds_to_ack,
    },
    Metric {
        label: "90th-percentile time to acknowledge",
        meaning: "Nine in ten acknowledged alerts were acknowledged within this time.",
        kind: Kind::Duration,
        value: |f| f.p90_seconds_to_ack.map(|s| s as f64),
    },
    Metric {
        label: "False-alarm share",
        meaning: "Share of resolved alerts closed as a false alarm (device or behaviour).",
        kind: Kind::Share,
        value: |f| f.false_alarm_ratio,
    },
    Metric {
        label: "Satisfaction responses",
        meaning: "Ratings of the service (1–5) received from residents.",
        kind: Kind::Count,
        value: |f| Some(f.satisfaction_responses as f64),
    },
    Metric {
        label: "Satisfaction mean",
        meaning: "The mean of those ratings, on the scale of 1 to 5.",
        kind: Kind::Score,
        value: |f| f.satisfaction_mean,
    },
];

/// A small line over the periods for a summary row: from zero (0 % for
/// shares) at its foot to the highest value (100 % for shares) at its top;
/// undefined or suppressed periods are gaps, the last point is a dot.
fn sparkline(metric: &Metric, labels: &[String], values: &[Option<f64>]) -> String {
    let defined: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v)))
        .collect();
    let (Some(low), Some(high)) = (
        defined.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
        defined.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
    ) else {
        return String::new();
    };
    let top = if metric.kind == Kind::Share {
        1.0
    } else {
        high.1.max(f64::MIN_POSITIVE)
    };
    let label = |i: usize| labels.get(i).map_or("", String::as_str);
    let summary = format!(
        "{}: lowest {} ({}), highest {} ({})",
        metric.label,
        metric.kind.show(Some(low.1)),
        label(low.0),
        metric.kind.show(Some(high.1)),
        label(high.0)
    );
    let n = values.len().max(2) - 1;
    let x = |i: usize| 2.0 + (SPARK_W - 4.0) * i as f64 / n as f64;
    let y = |v: f64| 2.0 + (SPARK_H - 4.0) * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{SPARK_W}" height="{SPARK_H}" viewBox="0 0 {SPARK_W} {SPARK_H}" role="img" aria-label="{s}"><title>{s}</title><line x1="0" y1="{b}" x2="{SPARK_W}" y2="{b}" stroke="#ccc"/>"##,
        s = escape(&summary),
        b = SPARK_H - 2.0
    );
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, svg: &mut String| {
        if run.len() > 1 {
            let _ = write!(
                svg,
                r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
                run.join(" ")
            );
        }
        run.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(v))),
            None => flush(&mut run, &mut svg),
        }
    }
    flush(&mut run, &mut svg);
    if let Some((i, v)) = defined.last() {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="#1f77b4"/>"##,
            x(*i),
            y(*v)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The summary: each headline figure over the whole range and every
/// region, its trend over the periods and its spread across regions.
fn summary(h: &mut String, view: &View<'_>) {
    let report = view.report;
    let whole = view.cell(WHOLE_RANGE, ALL_REGIONS);
    let suppressed = suppressed_text(report);
    h.push_str(r#"<section class="summary"><h2>Summary of the whole range</h2>"#);
    match whole.and_then(|c| c.figures.as_ref()) {
        Some(f) => {
            let _ = write!(
                h,
                r#"<p class="lead">From {} to {}, <strong>{}</strong> residents in {} were enrolled for <strong>{}</strong> resident-days.</p>"#,
                report.from,
                report.to,
                format::integer(f.residents_enrolled),
                match view.regions.len() {
                    1 => "one region".to_string(),
                    n => format!("{n} regions"),
                },
                format::integer(f.resident_days_enrolled),
            );
        }
        None => {
            let _ = write!(
                h,
                r#"<p class="lead">From {} to {}: the report covers fewer than {} residents, so every figure of the whole range is withheld.</p>"#,
                report.from, report.to, report.min_residents
            );
        }
    }
    let period_cells: Vec<&Cell> = view
        .periods
        .iter()
        .filter_map(|p| view.cell(p, ALL_REGIONS))
        .collect();
    let labels: Vec<String> = period_cells.iter().map(|c| view.period_label(c)).collect();
    let granularity = match report.granularity {
        Granularity::Day => "day",
        Granularity::Week => "week",
        Granularity::Month => "month",
    };
    let trend_note = match (labels.first(), labels.last()) {
        (Some(first), Some(last)) if labels.len() > 1 => format!(
            "<strong>Trend</strong>: the first period ({}) → the last ({}), every region; the line shows each {granularity}, from zero at its foot to the highest value (100&nbsp;% for shares) at its top.",
            escape(first),
            escape(last)
        ),
        _ => "<strong>Trend</strong>: the range is a single period, so there is no trend."
            .to_string(),
    };
    let suppressed_regions = view.suppressed_regions();
    let spread_note = format!(
        "<strong>Region spread</strong>: the lowest and the highest region over the whole range{}.",
        if suppressed_regions.is_empty() {
            String::new()
        } else {
            format!(
                ", leaving out {} ({suppressed})",
                escape(&suppressed_regions.join(", "))
            )
        }
    );
    h.push_str(r#"<div class="scroll"><table class="summary"><thead><tr><th>Figure</th><th>Whole range</th><th>Trend: first → last period</th><th>Region spread: lowest – highest</th></tr></thead><tbody>"#);
    for metric in SUMMARY {
        let _ = write!(
            h,
            r#"<tr><th scope="row">{}<span class="meaning">{}</span></th>"#,
            escape(metric.label),
            escape(metric.meaning)
        );
        match whole.and_then(|c| c.figures.as_ref()) {
            Some(f) => {
                let _ = write!(
                    h,
                    r#"<td class="value">{}</td>"#,
                    metric.kind.show((metric.value)(f))
                );
            }
            None => {
                let _ = write!(h, r#"<td class="suppressed">{suppressed}</td>"#);
            }
        }
        // Trend over the periods, every region.
        let values: Vec<Option<f64>> = period_cells
            .iter()
            .map(|c| c.figures.as_ref().and_then(metric.value))
            .collect();
        let show_end = |cell: Option<&&Cell>, value: Option<&Option<f64>>| match cell {
            Some(c) if c.suppressed => "suppressed".to_string(),
            _ => metric.kind.show(value.copied().flatten()),
        };
        if values.len() > 1 {
            let _ = write!(
                h,
                r#"<td class="trend">{} → {}{}</td>"#,
                show_end(period_cells.first(), values.first()),
                show_end(period_cells.last(), values.last()),
                sparkline(metric, &labels, &values)
            );
        } else {
            let _ = write!(h, r#"<td class="trend">{UNDEFINED}</td>"#);
        }
        // Spread across regions, whole range, suppressed regions left out.
        let mut by_region: Vec<(&str, f64)> = view
            .regions
            .iter()
            .filter_map(|r| {
                view.figures(WHOLE_RANGE, r)
                    .and_then(metric.value)
                    .filter(|v| v.is_finite())
                    .map(|v| (*r, v))
            })
            .collect();
        by_region.sort_by(|a, b| a.1.total_cmp(&b.1));
        match (by_region.first(), by_region.last()) {
            (Some(low), Some(high)) if by_region.len() > 1 => {
                let _ = write!(
                    h,
                    r#"<td class="spread">{} – {}<span class="meaning">{} – {}</span></td>"#,
                    metric.kind.show(Some(low.1)),
                    metric.kind.show(Some(high.1)),
                    escape(low.0),
                    escape(high.0)
                );
            }
            (Some(only), _) => {
                let _ = write!(
                    h,
                    r#"<td class="spread">{}<span class="meaning">{} only</span></td>"#,
                    metric.kind.show(Some(only.1)),
                    escape(only.0)
                );
            }
            _ => {
                let _ = write!(h, r#"<td class="spread">{UNDEFINED}</td>"#);
            }
        }
        h.push_str("</tr>");
    }
    let _ = write!(
        h,
        r#"</tbody></table></div><p class="note">{trend_note} {spread_note} A dash (–) is a figure with nothing to measure (no alerts acknowledged, say). Definitions are at the end of the report.</p></section>"#
    );
}

/// A line chart of a ratio (0..=1) over the periods, one line per region;
/// suppressed or undefined points are gaps.
fn ratio_chart(title: &str, periods: &[String], series: &[(String, Vec<Option<f64>>)]) -> String {
    let mut svg = svg_open(title);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    axes(&mut svg, 1.0, |v| format!("{:.0}%", v * 100.0));
    let n = periods.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v.clamp(0.0, 1.0));
    // At most ~8 period labels.
    let step = n.div_ceil(8).max(1);
    for (i, p) in periods.iter().enumerate().step_by(step) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
            x(i),
            H - BOTTOM + 14.0,
            escape(p)
        );
    }
    // The first series (every region together) is drawn last and wider,
    // so the regions' lines do not hide it.
    for (k, (name, values)) in series.iter().enumerate().rev() {
        let width = if k == 0 { 2.5 } else { 1.5 };
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |run: &mut Vec<(f64, f64)>, svg: &mut String| {
            match run.as_slice() {
                [] => {}
                [(px, py)] => {
                    let _ = write!(
                        svg,
                        r#"<circle cx="{px:.1}" cy="{py:.1}" r="2.5" fill="{}"/>"#,
                        color(k)
                    );
                }
                points => {
                    let points: Vec<String> = points
                        .iter()
                        .map(|(px, py)| format!("{px:.1},{py:.1}"))
                        .collect();
                    let _ = write!(
                        svg,
                        r#"<polyline fill="none" stroke="{}" stroke-width="{width}" points="{}"/>"#,
                        color(k),
                        points.join(" ")
                    );
                }
            }
            run.clear();
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => run.push((x(i), y(*v))),
                None => flush(&mut run, &mut svg),
            }
        }
        flush(&mut run, &mut svg);
        legend(&mut svg, k, name);
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A bar chart of non-negative values; `show` formats a bar's value for
/// its tooltip. With `pairs`, bars come in twos (one label per pair, the
/// two colours named in a legend).
fn bar_chart(
    title: &str,
    bars: &[(String, Option<f64>)],
    pairs: Option<[&str; 2]>,
    show: impl Fn(f64) -> String,
) -> String {
    let mut svg = svg_open(title);
    let max = bars
        .iter()
        .filter_map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let top = nice_ceiling(max);
    axes(&mut svg, top, axis_number);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let (fill, name) = match pairs {
            Some(names) => (
                color(i % 2),
                format!("{label} {}", names.get(i % 2).copied().unwrap_or("")),
            ),
            None => (color(i), label.clone()),
        };
        if let Some(v) = v {
            let h = plot_h * (v / top).clamp(0.0, 1.0);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}: {}</title></rect>"#,
                cx - slot * 0.35,
                TOP + plot_h - h,
                slot * 0.7,
                h,
                escape(&name),
                escape(&show(*v))
            );
        }
        let (lx, ly) = match pairs {
            Some(_) if i % 2 == 1 => continue,
            Some(_) => (cx + slot * 0.5, H - BOTTOM + 12.0),
            None => (cx, H - BOTTOM + 12.0 + if i % 2 == 1 { 10.0 } else { 0.0 }),
        };
        let _ = write!(
            svg,
            r#"<text x="{lx:.1}" y="{ly:.1}" font-size="8" text-anchor="middle">{}</text>"#,
            escape(label)
        );
    }
    for (k, name) in pairs.iter().flatten().enumerate() {
        legend(&mut svg, k, name);
    }
    svg.push_str("</svg></figure>");
    svg
}

/// An axis value: at most three decimals, no trailing zeros, thousands
/// grouped (`0.25`, `1,000`).
fn axis_number(v: f64) -> String {
    let rounded = (v * 1000.0).round() / 1000.0;
    let places = (0..=3)
        .find(|p| {
            let scale = 10f64.powi(*p);
            ((rounded * scale).round() - rounded * scale).abs() < 1e-6
        })
        .unwrap_or(3) as usize;
    format::decimal(Some(rounded), places)
}

fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * magnitude {
            return m * magnitude;
        }
    }
    v
}

fn svg_open(title: &str) -> String {
    format!(
        r#"<figure><figcaption>{t}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{t}">"#,
        t = escape(title)
    )
}

fn axes(svg: &mut String, top: f64, label: impl Fn(f64) -> String) {
    let plot_h = H - TOP - BOTTOM;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#444"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#444"/>"##,
        b = TOP + plot_h,
        r = W - RIGHT
    );
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let yy = TOP + plot_h * (1.0 - f64::from(k) / 4.0);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{r}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" font-size="9" text-anchor="end">{l}</text>"##,
            r = W - RIGHT,
            tx = LEFT - 4.0,
            ty = yy + 3.0,
            l = escape(&label(v))
        );
    }
}

fn legend(svg: &mut String, k: usize, name: &str) {
    let y = TOP + 14.0 * k as f64;
    let _ = write!(
        svg,
        r#"<rect x="{x}" y="{y:.1}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{ty:.1}" font-size="10">{n}</text>"#,
        x = W - RIGHT + 10.0,
        c = color(k),
        tx = W - RIGHT + 24.0,
        ty = y + 9.0,
        n = escape(name)
    );
}

/// The series of one ratio over the periods, per region (all regions
/// first); a region withheld in every period says so in its name.
fn series(
    view: &View<'_>,
    regions: &[&str],
    pick: fn(&Figures) -> Option<f64>,
) -> Vec<(String, Vec<Option<f64>>)> {
    regions
        .iter()
        .map(|region| {
            let values = view
                .periods
                .iter()
                .map(|p| view.figures(p, region).and_then(pick))
                .collect();
            let withheld = view
                .periods
                .iter()
                .filter_map(|p| view.cell(p, region))
                .all(|c| c.suppressed);
            let name = if withheld {
                format!("{region} (suppressed)")
            } else {
                region.to_string()
            };
            (name, values)
        })
        .collect()
}

fn charts(h: &mut String, view: &View<'_>) {
    let mut regions = vec![ALL_REGIONS];
    regions.extend(view.regions.iter().copied());
    let periods: Vec<String> = view.periods.iter().map(|p| view.short_period(p)).collect();
    h.push_str("<h2>Charts</h2>");
    for (title, pick) in [
        (
            "Active-day ratio per period",
            (|f| f.active_day_ratio) as fn(&Figures) -> Option<f64>,
        ),
        ("Check-in adherence per period", |f| f.checkin_adherence),
        ("Data completeness per period", |f| f.data_completeness),
    ] {
        h.push_str(&ratio_chart(title, &periods, &series(view, &regions, pick)));
    }
    match view.figures(WHOLE_RANGE, ALL_REGIONS) {
        Some(f) => {
            let rules: Vec<(String, Option<f64>)> = Rule::ALL
                .iter()
                .map(|r| {
                    (
                        words(r.as_str()),
                        f.alerts_per_100_resident_days
                            .get(r.as_str())
                            .copied()
                            .flatten(),
                    )
                })
                .collect();
            h.push_str(&bar_chart(
                "Alerts per 100 resident-days by rule (whole range, all regions)",
                &rules,
                None,
                |v| format::decimal(Some(v), 2),
            ));
            let outcomes: Vec<(String, Option<f64>)> = Outcome::ALL
                .iter()
                .map(|o| {
                    (
                        words(o.as_str()),
                        f.outcomes.get(o.as_str()).map(|n| *n as f64),
                    )
                })
                .collect();
            h.push_str(&bar_chart(
                &format!(
                    "Outcomes of resolved alerts (whole range, all regions); false-alarm share {}",
                    format::percent(f.false_alarm_ratio)
                ),
                &outcomes,
                None,
                |v| format::integer(v.round() as u64),
            ));
        }
        None => h.push_str(&format!(
            "<p>The whole-range figures are {}: no alert charts.</p>",
            suppressed_text(view.report)
        )),
    }
    // Regions withheld over the whole range have no bars, and say so.
    let withheld = view.suppressed_regions();
    let ack: Vec<(String, Option<f64>)> = regions
        .iter()
        .filter(|region| !withheld.contains(region))
        .flat_map(|region| {
            let f = view.figures(WHOLE_RANGE, region);
            [
                (
                    region.to_string(),
                    f.and_then(|f| f.median_seconds_to_ack).map(|s| s / 60.0),
                ),
                (
                    region.to_string(),
                    f.and_then(|f| f.p90_seconds_to_ack.map(|s| s as f64 / 60.0)),
                ),
            ]
        })
        .collect();
    let mut title = "Minutes to acknowledge an alert, per region (whole range)".to_string();
    if !withheld.is_empty() {
        let _ = write!(
            title,
            "; no bars for {} ({})",
            withheld.join(", "),
            suppressed_text(view.report)
        );
    }
    h.push_str(&bar_chart(
        &title,
        &ack,
        Some(["median", "90th percentile"]),
        |minutes| format::duration(Some(minutes * 60.0)),
    ));
}

/// A column of a per period × region table.
struct Column {
    head: String,
    show: Box<dyn Fn(&Figures) -> String>,
}

fn column(head: &str, show: impl Fn(&Figures) -> String + 'static) -> Column {
    Column {
        head: head.to_string(),
        show: Box::new(show),
    }
}

/// One table of the figures per period and region: a `tbody` per period
/// (the whole range first), the period named once; a withheld cell is one
/// marked span saying why.
fn figures_table(h: &mut String, view: &View<'_>, caption: &str, columns: &[Column]) {
    let _ = write!(
        h,
        r#"<div class="scroll"><table class="figures"><caption>{}</caption><thead><tr><th scope="col">Period</th><th scope="col">Region</th>"#,
        escape(caption)
    );
    for c in columns {
        let _ = write!(h, r#"<th scope="col">{}</th>"#, escape(&c.head));
    }
    h.push_str("</tr></thead>");
    let suppressed = suppressed_text(view.report);
    let cells = &view.report.cells;
    let mut start = 0;
    while let Some(first) = cells.get(start) {
        let end = cells
            .iter()
            .skip(start)
            .position(|c| c.period != first.period)
            .map_or(cells.len(), |n| start + n);
        let group = cells.get(start..end).unwrap_or_default();
        h.push_str("<tbody>");
        for (i, cell) in group.iter().enumerate() {
            h.push_str("<tr>");
            if i == 0 {
                let _ = write!(
                    h,
                    r#"<th scope="rowgroup" rowspan="{}">{}</th>"#,
                    group.len(),
                    escape(&view.period_label(cell))
                );
            }
            let _ = write!(h, r#"<th scope="row">{}</th>"#, escape(&cell.region));
            match &cell.figures {
                Some(f) => {
                    for c in columns {
                        let _ = write!(h, "<td>{}</td>", escape(&(c.show)(f)));
                    }
                }
                None => {
                    let _ = write!(
                        h,
                        r#"<td class="suppressed" colspan="{}">{suppressed}</td>"#,
                        columns.len()
                    );
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody>");
        start = end;
    }
    h.push_str("</table></div>");
}

fn tables(h: &mut String, view: &View<'_>) {
    h.push_str(r#"<section class="tables"><h2>Figures per period and region</h2>"#);
    let _ = write!(
        h,
        r#"<p class="note">Four tables, one per topic. Each starts with the whole range, then each period; within each, every region together (all), then each region. CSV and JSON exports hold every figure at full precision.</p>"#
    );
    figures_table(
        h,
        view,
        "Enrolment, use and check-ins",
        &[
            column("Residents", |f| format::integer(f.residents_enrolled)),
            column("Resident-days", |f| {
                format::integer(f.resident_days_enrolled)
            }),
            column("Active days", |f| format::integer(f.active_days)),
            column("Active-day ratio", |f| format::percent(f.active_day_ratio)),
            column("Hours with data", |f| format::integer(f.hours_with_data)),
            column("Data completeness", |f| {
                format::percent(f.data_completeness)
            }),
            column("Check-ins expected", |f| {
                format::integer(f.checkins_expected)
            }),
            column("Check-ins done", |f| format::integer(f.checkins_done)),
            column("Check-in adherence", |f| {
                format::percent(f.checkin_adherence)
            }),
        ],
    );
    let mut rules: Vec<Column> = Rule::ALL
        .iter()
        .map(|rule| {
            let name = rule.as_str();
            column(&words(name), move |f| {
                format!(
                    "{} ({})",
                    format::decimal(
                        f.alerts_per_100_resident_days.get(name).copied().flatten(),
                        2
                    ),
                    format::integer(f.alerts.get(name).copied().unwrap_or(0))
                )
            })
        })
        .collect();
    rules.push(column("every rule", |f| {
        format!(
            "{} ({})",
            format::decimal(alerts_per_100(f), 2),
            format::integer(f.alerts.values().sum())
        )
    }));
    figures_table(
        h,
        view,
        "Alerts per 100 resident-days by rule (number of alerts in brackets)",
        &rules,
    );
    figures_table(
        h,
        view,
        "Response to alerts, and satisfaction",
        &[
            column("Alerts resolved", |f| format::integer(f.resolved)),
            column("Median to acknowledge", |f| {
                format::duration(f.median_seconds_to_ack)
            }),
            column("90th pct. to acknowledge", |f| {
                format::duration(f.p90_seconds_to_ack.map(|s| s as f64))
            }),
            column("Median to resolve", |f| {
                format::duration(f.median_seconds_to_resolve)
            }),
            column("False-alarm share", |f| {
                format::percent(f.false_alarm_ratio)
            }),
            column("Satisfaction responses", |f| {
                format::integer(f.satisfaction_responses)
            }),
            column("Satisfaction mean (1–5)", |f| {
                format::decimal(f.satisfaction_mean, 2)
            }),
        ],
    );
    let outcomes: Vec<Column> = Outcome::ALL
        .iter()
        .map(|outcome| {
            let name = outcome.as_str();
            column(&words(name), move |f| {
                format::integer(f.outcomes.get(name).copied().unwrap_or(0))
            })
        })
        .collect();
    figures_table(h, view, "Outcomes of resolved alerts", &outcomes);
    h.push_str("</section>");
}

fn residents(h: &mut String, report: &Report) {
    h.push_str(r#"<h2>Residents (pseudonymised, whole range)</h2>"#);
    if report.residents_suppressed {
        let _ = write!(
            h,
            "<p><em>suppressed</em>: the report covers fewer than {} residents.</p>",
            report.min_residents
        );
        return;
    }
    h.push_str(r#"<div class="scroll"><table class="residents"><thead><tr><th scope="col">Pseudonym</th><th scope="col">Resident-days</th><th scope="col">Active-day ratio</th><th scope="col">Data completeness</th><th scope="col">Check-in adherence</th><th scope="col">Alerts</th><th scope="col">Satisfaction responses</th></tr></thead><tbody>"#);
    for r in &report.residents {
        let _ = write!(
            h,
            r#"<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&r.pseudonym),
            format::integer(r.resident_days_enrolled),
            format::percent(r.active_day_ratio),
            format::percent(r.data_completeness),
            format::percent(r.checkin_adherence),
            format::integer(r.alerts),
            format::integer(r.satisfaction_responses)
        );
    }
    h.push_str("</tbody></table></div>");
}

pub fn render(report: &Report) -> String {
    let view = View::new(report);
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Ondol utilisation {from} – {to}</title><style>{STYLE}</style></head><body>"#,
        from = report.from,
        to = report.to
    );
    let _ = write!(
        h,
        "<header><h1>Ondol utilisation report</h1><p>Local dates {} to {} (both included), by {} and region. Cells describing fewer than {} residents are suppressed and marked as such, never shown as zero. Residents appear only under pseudonyms.</p></header>",
        report.from,
        report.to,
        match report.granularity {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        },
        report.min_residents
    );
    summary(&mut h, &view);
    h.push_str(r#"<section class="after-summary">"#);
    charts(&mut h, &view);
    tables(&mut h, &view);
    residents(&mut h, report);
    h.push_str("<h2>Definitions</h2><dl>");
    for (term, text) in DEFINITIONS {
        let _ = write!(
            h,
            r#"<div class="keep"><dt>{}</dt><dd>{}</dd></div>"#,
            escape(term),
            escape(text)
        );
    }
    h.push_str("</dl></section></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn bar_heights_scale_to_a_round_ceiling() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
    }

    #[test]
    fn axis_numbers_drop_trailing_zeros() {
        assert_eq!(axis_number(0.0), "0");
        assert_eq!(axis_number(1.25), "1.25");
        assert_eq!(axis_number(2.5), "2.5");
        assert_eq!(axis_number(0.0125), "0.013");
        assert_eq!(axis_number(5000.0), "5,000");
    }
}
