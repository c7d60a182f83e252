//! `ondol audit verify|export`: the monthly review of who read or changed
//! residents' data (DESIGN §5). The log itself is written by the HTTP API;
//! its chain and triggers are described in `ondol_store::audit`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use ondol_store::Store;
use ondol_store::audit::AuditRecord;

use crate::cli::open_existing_store;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain; prints its head (keep it with the
    /// review) and exits 1 at the first entry that was changed or removed.
    Verify(AuditStoreArgs),
    /// Export the entries of a range as JSON lines for the review; the last
    /// line names the chain's head at the time of export.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct AuditStoreArgs {
    /// Configuration file layered over the built-in defaults; names the
    /// store (storage.data_dir).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A head kept by an earlier review, `SEQ:HASH`: verify also checks the
    /// chain still passes through it (catches a log cut short or rebuilt).
    #[arg(long, value_name = "SEQ:HASH")]
    expect_head: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// First UTC date (included), e.g. 2026-11-01, or an RFC 3339 instant.
    #[arg(long, value_name = "DATE|INSTANT")]
    from: String,
    /// Last UTC date (included), or an RFC 3339 instant (excluded).
    #[arg(long, value_name = "DATE|INSTANT")]
    to: String,
    /// Output file (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// A range bound: a date means the start of that UTC day (`to`: of the
/// next day, so the date is included); an instant is taken as it is.
fn bound(text: &str, end: bool, flag: &str) -> anyhow::Result<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let date: Date = text.parse().with_context(|| {
        format!("{flag} {text:?} is neither a date (2026-11-01) nor an RFC 3339 instant")
    })?;
    let date = if end {
        date.tomorrow().context("date out of range")?
    } else {
        date
    };
    Ok(date.to_zoned(TimeZone::UTC)?.timestamp())
}

pub fn main(command: AuditCommand) -> ExitCode {
    let config = match &command {
        AuditCommand::Verify(args) => args.config.as_deref(),
        AuditCommand::Export(args) => args.config.as_deref(),
    };
    let store = match open_existing_store(config) {
        Ok((_, store)) => store,
        Err(code) => return code,
    };
    let result = match command {
        AuditCommand::Verify(args) => verify(&store, args.expect_head.as_deref()),
        AuditCommand::Export(args) => export(&store, &args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn verify(store: &Store, expect_head: Option<&str>) -> anyhow::Result<ExitCode> {
    let verification = store.verify_audit()?;
    if let Some(broken) = &verification.broken {
        eprintln!(
            "audit log BROKEN at entry #{}: {} ({} entries before it are intact)",
            broken.seq, broken.reason, verification.entries
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(expected) = expect_head {
        let (seq, hash) = expected
            .split_once(':')
            .and_then(|(seq, hash)| Some((seq.parse::<i64>().ok()?, hash)))
            .context("--expect-head takes SEQ:HASH as printed by an earlier verify")?;
        match store.audit_entry(seq)? {
            Some(entry) if entry.hash == hash => {}
            Some(_) => {
                eprintln!(
                    "audit log BROKEN: entry #{seq} no longer has the hash an earlier review kept"
                );
                return Ok(ExitCode::FAILURE);
            }
            None => {
                eprintln!(
                    "audit log BROKEN: entry #{seq}, kept by an earlier review, is gone (log cut short)"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    match verification.head {
        Some((seq, hash)) => print_out(&format!(
            "audit log intact: {} entries; head {seq}:{hash}\n",
            verification.entries
        )),
        None => print_out("audit log intact: empty\n"),
    }
    Ok(ExitCode::SUCCESS)
}

fn record_json(record: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": record.seq,
        "at": record.at.to_string(),
        "actor": record.actor,
        "role": record.role,
        "action": record.action,
        "residents": record.residents,
        "source": record.source,
        "status": record.status,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    })
}

fn export(store: &Store, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let from = bound(&args.from, false, "--from")?;
    let to = bound(&args.to, true, "--to")?;
    anyhow::ensure!(
        from < to,
        "--from {} is not before --to {}",
        args.from,
        args.to
    );
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut write_error = None;
    let count = store.for_each_audit(from, to, |record| {
        if write_error.is_none()
            && let Err(error) = writeln!(out, "{}", record_json(&record))
        {
            write_error = Some(error);
        }
        Ok(())
    })?;
    if let Some(error) = write_error {
        return Err(error).context("cannot write the export");
    }
    let verification = store.verify_audit()?;
    let trailer = serde_json::json!({
        "export": {
            "from": from.to_string(),
            "to": to.to_string(),
            "entries": count,
            "head_seq": verification.head.as_ref().map(|(seq, _)| seq),
            "head_hash": verification.head.as_ref().map(|(_, hash)| hash),
            "chain_intact": verification.broken.is_none(),
        }
    });
    writeln!(out, "{trailer}").context("cannot write the export")?;
    out.flush().context("cannot write the export")?;
    if let Some(broken) = verification.broken {
        eprintln!(
            "warning: the audit chain is broken at entry #{}: {}",
            broken.seq, broken.reason
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    print!("{text}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dates_are_whole_utc_days_and_instants_pass_through() {
        assert_eq!(
            bound("2026-11-01", false, "--from").unwrap().to_string(),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(
            bound("2026-11-30", true, "--to").unwrap().to_string(),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            bound("2026-11-30T12:00:00+09:00", true, "--to")
                .unwrap()
                .to_string(),
            "2026-11-30T03:00:00Z"
        );
        let error = bound("last month", false, "--from")
            .unwrap_err()
            .to_string();
        assert!(error.contains("--from"), "{error}");
    }
}
