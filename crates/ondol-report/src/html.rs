//! The HTML report: one self-contained file (no scripts, no external
//! resources) with inline SVG charts, the tables and the definitions.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ondol_model::alert::{Outcome, Rule};

use crate::definitions::DEFINITIONS;
use crate::metrics::{ALL_REGIONS, Figures, Report, WHOLE_RANGE};
use crate::output;

const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

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

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.3}"))
}

fn color(i: usize) -> &'static str {
    PALETTE.get(i % PALETTE.len()).copied().unwrap_or("#000")
}

/// A line chart of a ratio (0..=1) over the periods, one line per region;
/// suppressed or undefined points are gaps.
fn ratio_chart(title: &str, periods: &[String], series: &[(String, Vec<Option<f64>>)]) -> String {
    let mut svg = svg_open(title);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    axes(&mut svg, 1.0, "");
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
    for (k, (name, values)) in series.iter().enumerate() {
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
                        r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
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
    svg.push_str("</svg>");
    svg
}

/// A bar chart of non-negative values.
fn bar_chart(title: &str, unit: &str, bars: &[(String, Option<f64>)]) -> String {
    let mut svg = svg_open(title);
    let max = bars
        .iter()
        .filter_map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let top = nice_ceiling(max);
    axes(&mut svg, top, unit);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        if let Some(v) = v {
            let h = plot_h * (v / top).clamp(0.0, 1.0);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                cx - slot * 0.35,
                TOP + plot_h - h,
                slot * 0.7,
                h,
                color(i),
                escape(label),
                format_args!("{v:.3}")
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{cx:.1}" y="{:.1}" font-size="8" text-anchor="middle">{}</text>"#,
            H - BOTTOM + 12.0 + if i % 2 == 1 { 10.0 } else { 0.0 },
            escape(label)
        );
    }
    svg.push_str("</svg>");
    svg
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

fn axes(svg: &mut String, top: f64, unit: &str) {
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
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{r}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" font-size="9" text-anchor="end">{v}{u}</text>"##,
            r = W - RIGHT,
            tx = LEFT - 4.0,
            ty = yy + 3.0,
            v = format_args!("{}", (v * 1000.0).round() / 1000.0),
            u = escape(unit)
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

fn whole<'r>(report: &'r Report, region: &str) -> Option<&'r Figures> {
    report
        .cells
        .iter()
        .find(|c| c.period == WHOLE_RANGE && c.region == region)
        .and_then(|c| c.figures.as_ref())
}

/// The series of one ratio over the periods, per region (all regions first).
fn series(
    report: &Report,
    periods: &[String],
    regions: &[String],
    pick: fn(&Figures) -> Option<f64>,
) -> Vec<(String, Vec<Option<f64>>)> {
    regions
        .iter()
        .map(|region| {
            let values = periods
                .iter()
                .map(|p| {
                    report
                        .cells
                        .iter()
                        .find(|c| &c.period == p && &c.region == region)
                        .and_then(|c| c.figures.as_ref())
                        .and_then(pick)
                })
                .collect();
            (region.clone(), values)
        })
        .collect()
}

pub fn render(report: &Report) -> String {
    let periods: Vec<String> = report
        .cells
        .iter()
        .filter(|c| c.period != WHOLE_RANGE)
        .map(|c| c.period.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut regions = vec![ALL_REGIONS.to_string()];
    regions.extend(
        report
            .cells
            .iter()
            .filter(|c| c.region != ALL_REGIONS)
            .map(|c| c.region.clone())
            .collect::<BTreeSet<_>>(),
    );

    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Ondol utilisation {from} – {to}</title><style>body{{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}}table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}th{{background:#f4f4f4}}td.s{{color:#999;text-align:center}}figure{{margin:1em 0}}figcaption{{font-weight:bold}}dt{{font-weight:bold;margin-top:.5em}}</style></head><body>"#,
        from = report.from,
        to = report.to
    );
    let _ = write!(
        h,
        "<h1>Ondol utilisation report</h1><p>Local dates {} to {} (both included), by {:?} and region. Cells describing fewer than {} residents are suppressed and shown as <em>suppressed</em>. Residents appear only under pseudonyms.</p>",
        report.from, report.to, report.granularity, report.min_residents
    );

    h.push_str("<h2>Charts</h2>");
    h.push_str(&ratio_chart(
        "Active-day ratio per period",
        &periods,
        &series(report, &periods, &regions, |f| f.active_day_ratio),
    ));
    h.push_str(&ratio_chart(
        "Check-in adherence per period",
        &periods,
        &series(report, &periods, &regions, |f| f.checkin_adherence),
    ));
    h.push_str(&ratio_chart(
        "Data completeness per period",
        &periods,
        &series(report, &periods, &regions, |f| f.data_completeness),
    ));
    match whole(report, ALL_REGIONS) {
        Some(f) => {
            let rules: Vec<(String, Option<f64>)> = Rule::ALL
                .iter()
                .map(|r| {
                    (
                        r.to_string(),
                        f.alerts_per_100_resident_days
                            .get(r.as_str())
                            .copied()
                            .flatten(),
                    )
                })
                .collect();
            h.push_str(&bar_chart(
                "Alerts per 100 resident-days by rule (whole range, all regions)",
                "",
                &rules,
            ));
            let outcomes: Vec<(String, Option<f64>)> = Outcome::ALL
                .iter()
                .map(|o| (o.to_string(), f.outcomes.get(o.as_str()).map(|n| *n as f64)))
                .collect();
            h.push_str(&bar_chart(
                &format!(
                    "Outcomes of resolved alerts (whole range, all regions); false-alarm share {}",
                    fmt_opt(f.false_alarm_ratio)
                ),
                "",
                &outcomes,
            ));
        }
        None => h.push_str("<p>The whole-range figures are suppressed: no alert charts.</p>"),
    }
    let ack: Vec<(String, Option<f64>)> = regions
        .iter()
        .flat_map(|region| {
            let f = whole(report, region);
            [
                (
                    format!("{region} median"),
                    f.and_then(|f| f.median_seconds_to_ack),
                ),
                (
                    format!("{region} p90"),
                    f.and_then(|f| f.p90_seconds_to_ack.map(|s| s as f64)),
                ),
            ]
        })
        .collect();
    h.push_str(&bar_chart(
        "Seconds to acknowledge: median and 90th percentile per region (whole range)",
        "s",
        &ack,
    ));

    h.push_str("<h2>Figures per period and region</h2>");
    table(&mut h, &output::cells_csv(report), true);
    h.push_str("<h2>Residents (pseudonymised, whole range)</h2>");
    if report.residents_suppressed {
        let _ = write!(
            h,
            "<p><em>suppressed</em>: the report covers fewer than {} residents.</p>",
            report.min_residents
        );
    } else {
        table(&mut h, &output::residents_csv(report), false);
    }

    h.push_str("<h2>Definitions</h2><dl>");
    for (term, text) in DEFINITIONS {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(text));
    }
    h.push_str("</dl></body></html>\n");
    h
}

/// Renders CSV produced by [`output`] (no quoted commas in its numbers;
/// regions are quoted if needed) as an HTML table.
fn table(h: &mut String, csv: &str, marks_suppressed: bool) {
    h.push_str("<table>");
    for (i, line) in csv.lines().enumerate() {
        let fields = split_csv(line);
        let suppressed = marks_suppressed && fields.get(4).is_some_and(|f| f == "true");
        h.push_str("<tr>");
        for (j, f) in fields.iter().enumerate() {
            if i == 0 {
                let _ = write!(h, "<th>{}</th>", escape(f));
            } else if suppressed && j == 5 {
                let _ = write!(
                    h,
                    r#"<td class="s" colspan="{}">suppressed (fewer than 5 residents)</td>"#,
                    fields.len() - 5
                );
                break;
            } else {
                let _ = write!(h, "<td>{}</td>", escape(f));
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_csv_splitting() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            split_csv(r#"a,"b,""c""",,d"#),
            vec!["a", r#"b,"c""#, "", "d"]
        );
    }

    #[test]
    fn bar_heights_scale_to_a_round_ceiling() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
    }
}
