//! `cojobs migrate [--status]`: bring the database's schema up to date
//! (every command also does on first use), or say where it stands.

use std::io::Write;

use super::{Error, Global};
use crate::store::driver::SchemaStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Say which migrations are applied and whether any is pending;
    /// change nothing.
    #[arg(long)]
    status: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    if args.status {
        let db = g.open(crate::store::Access::Inspect)?;
        let status = db.wait(db.schema_status())?;
        return print(out, db.driver(), &status);
    }
    let db = g.open_store()?;
    let status = db.wait(db.migrate())?;
    print(out, db.driver(), &status)
}

fn print(out: &mut dyn Write, driver: &str, s: &SchemaStatus) -> Result<(), Error> {
    let state = if s.is_current() {
        "up to date".to_string()
    } else {
        format!(
            "{} migration(s) pending",
            s.latest.saturating_sub(s.version)
        )
    };
    writeln!(
        out,
        "{driver}: schema version {} of {} ({state})",
        s.version, s.latest
    )?;
    for (version, name, at) in &s.applied {
        let at = at.map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
        writeln!(
            out,
            "  {version:>3}  {at}  {}",
            super::printable(name, false)
        )?;
    }
    Ok(())
}
