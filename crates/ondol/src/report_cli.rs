//! `ondol report utilisation`: the evaluator report of DESIGN §6 from the
//! store's day rollups, written as CSV, JSON or a
//! self-contained HTML page. Residents appear only under
//! keyed pseudonyms (`ONDOL_PSEUDONYM_KEY`, else `<data_dir>/pseudonym.key`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use jiff::civil::Date;
use ondol_report::{Granularity, Report, html, output, pseudonym};
use ondol_store::Store;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Utilisation per period and region and for the whole range: enrolment,
    /// active days, data completeness, check-in adherence, alerts, response
    /// times, outcomes, satisfaction (definitions: docs/REPORTS.md).
    Utilisation(UtilisationArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GranularityArg {
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ByArg {
    Region,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Json,
    /// One self-contained page with charts, tables and the definitions.
    Html,
}

#[derive(Debug, Args)]
pub struct UtilisationArgs {
    /// Configuration file layered over the built-in defaults; names the
    /// store (storage.data_dir).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// First local date of the range (included), e.g. 2025-01-01.
    #[arg(long, value_name = "DATE")]
    from: Date,
    /// Last local date of the range (included).
    #[arg(long, value_name = "DATE")]
    to: Date,
    /// Period of the rows; weeks are ISO weeks (Monday to Sunday).
    #[arg(long, value_enum, default_value = "month")]
    granularity: GranularityArg,
    /// Breakdown of each period (besides the row over all regions).
    #[arg(long, value_enum, default_value = "region")]
    by: ByArg,
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatArg,
    /// Output file. With csv, the per-resident table goes next to it as
    /// `<name>.residents.csv`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn main(command: ReportCommand) -> ExitCode {
    let ReportCommand::Utilisation(args) = command;
    let config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("error: {errors}");
            return ExitCode::from(2);
        }
    };
    match utilisation(&config, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn utilisation(config: &Config, args: &UtilisationArgs) -> anyhow::Result<()> {
    let ByArg::Region = args.by;
    let granularity = match args.granularity {
        GranularityArg::Day => Granularity::Day,
        GranularityArg::Week => Granularity::Week,
        GranularityArg::Month => Granularity::Month,
    };
    let database = config.storage.database_path();
    anyhow::ensure!(
        database.exists(),
        "no store at {} (storage.data_dir); has `ondol run` been started?",
        database.display()
    );
    let store = Store::open(&database).context("cannot open the store")?;
    let key = pseudonym::load_or_create_key(
        std::env::var(pseudonym::KEY_ENV).ok(),
        &config.storage.data_dir,
    )?;
    let report = ondol_report::utilisation(&store, args.from, args.to, granularity, &key)?;
    write(&report, args.format, &args.out)?;
    eprintln!(
        "wrote {} rows ({} suppressed) and {} residents to {}",
        report.cells.len(),
        report.cells.iter().filter(|c| c.suppressed).count(),
        report.residents.len(),
        args.out.display()
    );
    Ok(())
}

fn write(report: &Report, format: FormatArg, out: &Path) -> anyhow::Result<()> {
    let put = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    match format {
        FormatArg::Json => put(out, output::json(report)?),
        FormatArg::Html => put(out, html::render(report)),
        FormatArg::Csv => {
            put(out, output::cells_csv(report))?;
            put(&residents_path(out), output::residents_csv(report))
        }
    }
}

/// `report.csv` → `report.residents.csv`.
fn residents_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    out.with_file_name(format!("{stem}.residents.csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_table_goes_next_to_the_csv() {
        assert_eq!(
            residents_path(Path::new("/tmp/x/report.csv")),
            Path::new("/tmp/x/report.residents.csv")
        );
        assert_eq!(
            residents_path(Path::new("out")),
            Path::new("out.residents.csv")
        );
    }
}
