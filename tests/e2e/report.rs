//! `ondol report utilisation` against a real server's store: readings sent
//! over MQTT show up in the report, under pseudonyms only. And the HTML
//! report as decision makers get it: a backfilled history printed to PDF by
//! Debian's headless Chromium, read back with poppler's `pdftotext`.
//!
//! The PDF test needs `chromium` and `pdftotext`/`pdfinfo` (Debian's
//! `chromium` and `poppler-utils`). When one is missing it says what to
//! install and passes without running, unless `ONDOL_REQUIRE_SERVICES=1`
//! (set by `.ci/run`), which makes it fail. The HTML and the PDF are kept
//! in `<target dir>/e2e-artifacts/`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::services::find_server;
use crate::support::{TestServer, artifacts_dir, binary, ms_ago, ondol_with_config};

fn roster() -> String {
    let mut text = String::new();
    for i in 1..=6 {
        text.push_str(&format!(
            "[[residents]]\nid = \"rep-{i}\"\nname = \"Reporting Person {i}\"\ntimezone = \"Europe/Lisbon\"\nregion = \"alentejo\"\nenrolled_from = \"2026-01-01\"\n\n[[devices]]\nid = \"rep-gw-{i}\"\nresident = \"rep-{i}\"\nkind = \"gateway\"\n\n"
        ));
    }
    text
}

fn report(server: &TestServer, format: &str, out: &Path, key: Option<&str>) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let (from, to) = (
        today.yesterday().unwrap().to_string(),
        today.tomorrow().unwrap().to_string(),
    );
    let mut command = Command::new(binary());
    command
        .args(["report", "utilisation", "--from", &from, "--to", &to])
        .args(["--granularity", "day", "--by", "region", "--format", format])
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(&server.config_path)
        .env_remove("ONDOL_PSEUDONYM_KEY");
    if let Some(key) = key {
        command.env("ONDOL_PSEUDONYM_KEY", key);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_stored_readings_under_pseudonyms_only() {
    let server = TestServer::start_custom(&roster(), "", &["run"]).await;
    let mut device = server.device("rep-gw-1").await;
    let receipt = device
        .send(json!({
            "msg_id": "rep-m-1",
            "readings": [{"type": "heart_rate", "value": 72, "ts": ms_ago(1)}]
        }))
        .await;
    assert_eq!(receipt["accepted"], 1, "{receipt}");

    let out = server.dir.path().join("report.json");
    let text = report(&server, "json", &out, None);
    let json: Value = serde_json::from_str(&text).unwrap();
    let whole = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["period"] == "all" && c["region"] == "all")
        .unwrap();
    assert_eq!(whole["suppressed"], false);
    // Six residents enrolled on each of the three days.
    assert_eq!(whole["figures"]["residents_enrolled"], 6);
    assert_eq!(whole["figures"]["resident_days_enrolled"], 18);
    assert_eq!(whole["figures"]["active_days"], 1);
    let pseudonyms: Vec<Value> = json["residents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pseudonym"].clone())
        .collect();
    assert_eq!(pseudonyms.len(), 6);

    // The key file was created owner-only in the data dir.
    let key_file = server.dir.path().join("data/pseudonym.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let csv_out = server.dir.path().join("report.csv");
    let csv = report(&server, "csv", &csv_out, None);
    let residents_csv =
        std::fs::read_to_string(server.dir.path().join("report.residents.csv")).unwrap();
    let page = report(
        &server,
        "html",
        &server.dir.path().join("report.html"),
        None,
    );
    assert!(page.contains("<svg "), "{page}");
    for text in [&text, &csv, &residents_csv, &page] {
        for i in 1..=6 {
            assert!(!text.contains(&format!("rep-{i}")), "id rep-{i} leaked");
            assert!(!text.contains(&format!("Reporting Person {i}")));
        }
    }
    // Same key, same pseudonyms; another key, other pseudonyms.
    for p in &pseudonyms {
        assert!(residents_csv.contains(p.as_str().unwrap()));
    }
    let other = report(
        &server,
        "json",
        &server.dir.path().join("other.json"),
        Some("another deployment's secret key"),
    );
    for p in &pseudonyms {
        assert!(!other.contains(p.as_str().unwrap()));
    }
}

/// Printing a report of a few pages; bounds the run, measures nothing.
const PRINT_PATIENCE: Duration = Duration::from_secs(180);

/// The headline figures the summary names, in its order.
const SUMMARY_FIGURES: [&str; 11] = [
    "Residents enrolled",
    "Resident-days enrolled",
    "Active-day ratio",
    "Data completeness",
    "Check-in adherence",
    "Alerts per 100 resident-days",
    "Median time to acknowledge",
    "acknowledge", // "90th-percentile time to acknowledge" may wrap
    "False-alarm share",
    "Satisfaction responses",
    "Satisfaction mean",
];

/// Runs `ondol` with `args` and `--config`; panics with its stderr if it fails.
fn ondol(config: &Path, args: &[&str]) {
    let (ok, stderr) = ondol_with_config(config, args);
    assert!(ok, "ondol {args:?}: {stderr}");
}

/// Runs a tool to the end within [`PRINT_PATIENCE`]; its stdout.
fn run(program: &Path, args: &[&std::ffi::OsStr]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let deadline = Instant::now() + PRINT_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not finish within {PRINT_PATIENCE:?}: {}",
                program.display(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{} {args:?}: {status}: {}",
        program.display(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    std::fs::read_to_string(&out).unwrap()
}

/// `12345` as the report prints it: `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether `text` holds a number with more than three decimals (a raw
/// float such as `0.9929762654904432`).
fn has_raw_float(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(6).find_map(|w| {
        let [a, dot, b, c, d, e] = w else { return None };
        (a.is_ascii_digit() && *dot == '.' && [b, c, d, e].iter().all(|x| x.is_ascii_digit()))
            .then(|| w.iter().collect())
    })
}

#[test]
fn the_html_report_prints_to_a_readable_pdf_with_the_summary_on_page_one() {
    let chromium = find_server("chromium", "chromium");
    let pdftotext = find_server("pdftotext", "poppler-utils");
    let pdfinfo = find_server("pdfinfo", "poppler-utils");
    let (Some(chromium), Some(pdftotext), Some(pdfinfo)) = (chromium, pdftotext, pdfinfo) else {
        return;
    };
    // Four months of 40 synthetic residents in five regions: 35 % gangjin,
    // 25 % haenam, 15 % wando and jindo, 10 % lisboa, so lisboa's cells are
    // withheld; the range starts mid-month, so the first period is partial.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ondol.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("[storage]\ndata_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    ondol(
        &config,
        &[
            "simulate",
            "backfill",
            "--residents",
            "40",
            "--days",
            "120",
            "--until",
            "2026-04-30",
            "--seed",
            "7",
        ],
    );
    let range = [
        "report",
        "utilisation",
        "--from",
        "2026-01-15",
        "--to",
        "2026-04-30",
        "--granularity",
        "month",
        "--by",
        "region",
    ];
    let json_path = dir.path().join("report.json");
    let html_path = dir.path().join("report.html");
    for (format, path) in [("json", &json_path), ("html", &html_path)] {
        let mut args = range.to_vec();
        let path = path.display().to_string();
        args.extend(["--format", format, "--out", &path]);
        ondol(&config, &args);
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let cells = json["cells"].as_array().unwrap();
    let whole = &cells
        .iter()
        .find(|c| c["period"] == "all" && c["region"] == "all")
        .unwrap()["figures"];
    let lisboa = cells
        .iter()
        .find(|c| c["period"] == "all" && c["region"] == "lisboa")
        .unwrap();
    assert_eq!(
        lisboa["suppressed"], true,
        "the setup needs a withheld region"
    );
    // JSON keeps full precision.
    let ratio = whole["active_day_ratio"].as_f64().unwrap();
    assert!(json.to_string().contains(&ratio.to_string()));

    let pdf = dir.path().join("report.pdf");
    let profile = dir.path().join("chromium-profile");
    let url = format!("file://{}", html_path.display());
    let args: Vec<std::ffi::OsString> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-pdf-header-footer".into(),
        format!("--user-data-dir={}", profile.display()).into(),
        format!("--print-to-pdf={}", pdf.display()).into(),
        url.into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run(&chromium, &args);
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::copy(&html_path, artifacts.join("report.html")).unwrap();
    std::fs::copy(&pdf, artifacts.join("report.pdf")).unwrap();
    let kept = artifacts.join("report.pdf");

    // A sane page count: the summary alone on page one, the charts, four
    // tables of 30 rows, 40 residents and the definitions make 8 A4 pages;
    // a broken print layout (a table cut into slivers, one row per page,
    // everything on one page) lands outside this.
    let info = run(&pdfinfo, &[pdf.as_os_str()]);
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no page count from pdfinfo: {info}"));
    assert!(
        (5..=12).contains(&pages),
        "{pages} pages in {}",
        kept.display()
    );

    let page_text = |page: usize| {
        let n = page.to_string();
        let args = ["-layout", "-f", &n, "-l", &n];
        let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        args.extend([pdf.as_os_str(), std::ffi::OsStr::new("-")]);
        run(&pdftotext, &args)
    };
    let texts: Vec<String> = (1..=pages).map(page_text).collect();

    // Page one: the title and the whole summary, its note below the table
    // included, so the table was not cut; with the figures of the JSON,
    // formatted for people.
    let first = &texts[0];
    for expected in [
        "Ondol utilisation report",
        "Summary of the whole range",
        // Column headers (they may wrap).
        "Whole",
        "Trend",
        "Region spread",
    ]
    .iter()
    .chain(SUMMARY_FIGURES.iter())
    {
        assert!(
            first.contains(expected),
            "page one lacks {expected:?}: {first}"
        );
    }
    assert!(first.contains("Definitions are at the end"), "{first}");
    let figure = |name: &str| whole[name].as_u64().unwrap();
    for number in [
        figure("residents_enrolled"),
        figure("resident_days_enrolled"),
        figure("satisfaction_responses"),
    ] {
        assert!(
            first.contains(&grouped(number)),
            "page one lacks {}: {first}",
            grouped(number)
        );
    }
    assert!(
        figure("resident_days_enrolled") >= 1000,
        "a thousands separator is shown"
    );
    for ratio in ["active_day_ratio", "data_completeness", "checkin_adherence"] {
        let shown = format!("{:.1}%", whole[ratio].as_f64().unwrap() * 100.0);
        assert!(
            first.contains(&shown),
            "page one lacks {ratio} {shown}: {first}"
        );
    }
    assert!(
        first.contains("lisboa (suppressed: fewer than 5 residents)"),
        "{first}"
    );
    assert!(
        !texts[1..]
            .iter()
            .any(|t| t.contains("Summary of the whole range"))
    );

    // Figures for people everywhere: no raw float, no NaN; withheld cells
    // say why; every table's header is repeated on each page it runs onto.
    let all = texts.join("\n");
    assert_eq!(
        has_raw_float(&all),
        None,
        "a raw float in {}",
        kept.display()
    );
    assert!(!all.contains("NaN") && !all.contains("inf"));
    assert!(all.contains("suppressed: fewer than 5 residents"));
    for caption in [
        "Enrolment, use and check-ins",
        "Alerts per 100 resident-days by rule",
        "Response to alerts, and satisfaction",
        "Outcomes of resolved alerts",
        "Residents (pseudonymised, whole range)",
        "Definitions",
    ] {
        assert!(all.contains(caption), "{caption} missing");
    }
    for (i, text) in texts.iter().enumerate() {
        assert!(!text.trim().is_empty(), "page {} is blank", i + 1);
        // A withheld row reads `lisboa  suppressed: fewer than 5 residents`
        // (captions and notes put it in brackets).
        let withheld_row = text
            .lines()
            .any(|l| l.split_whitespace().any(|word| word == "suppressed:"));
        if withheld_row && i > 0 {
            assert!(
                text.contains("Period") && text.contains("Region"),
                "page {} has table rows without the table's header: {text}",
                i + 1
            );
        }
        assert!(
            text.contains(&format!("page {} of {pages}", i + 1)),
            "page {} has no page number: {text}",
            i + 1
        );
    }
    // Pseudonyms only.
    assert!(!all.contains("Backfill Resident"));
}
