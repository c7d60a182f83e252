//! Loading the roster file and importing it into the store.

use std::path::Path;

use anyhow::Context;
use ondol_model::roster::Roster;
use ondol_store::Store;

/// The demo roster, compiled in so `ondol run --demo` works from any directory.
pub const DEMO_REGISTRY: &str = include_str!("../../../config/registry.toml");

/// Reads and checks a roster file; every problem is listed in the error.
pub fn read(path: &Path) -> anyhow::Result<Roster> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the roster file {} (key registry.file); set registry.file or ONDOL_REGISTRY__FILE to its path",
            path.display()
        )
    })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, name: &str) -> anyhow::Result<Roster> {
    ondol_store::roster_file::parse_roster(text, name).map_err(|problems| {
        let mut message = format!("the roster has {} problem(s):", problems.len());
        for problem in problems {
            message.push_str(&format!("\n  - {problem}"));
        }
        anyhow::anyhow!(message)
    })
}

/// Imports `roster` and returns the store's whole roster afterwards (the
/// file adds and updates; it does not delete).
pub fn import(store: &mut Store, roster: &Roster) -> anyhow::Result<Roster> {
    let summary = store
        .import_roster(roster)
        .context("cannot import the roster")?;
    tracing::info!(
        residents_added = summary.residents_added,
        residents_updated = summary.residents_updated,
        residents_kept = summary.residents_kept,
        devices_added = summary.devices_added,
        devices_updated = summary.devices_updated,
        devices_kept = summary.devices_kept,
        staff_added = summary.staff_added,
        staff_updated = summary.staff_updated,
        staff_kept = summary.staff_kept,
        // Entries the admin API changed since: the file left them alone.
        kept_admin_changes = %summary.kept_admin_changes.join(", "),
        "roster imported"
    );
    store.load_roster().context("cannot load the roster back")
}
