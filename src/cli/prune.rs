//! `cojobs prune --older-than 30d`: delete ended jobs and their history.

use std::io::Write;

use chrono::TimeDelta;

use super::{Error, Global, time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Delete OK, X and CX jobs that ended longer ago than this (s, m, h, d).
    #[arg(long, value_name = "AGE", allow_hyphen_values = true)]
    older_than: String,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let secs = time::parse_duration(&args.older_than)?;
    let db = g.open_store()?;
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX))
        .ok_or_else(|| Error::Input(format!("age '{}' is too long", args.older_than)))?;
    let n = db.wait(db.prune(cutoff))?;
    writeln!(out, "{n}")?;
    Ok(())
}
