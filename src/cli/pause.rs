//! `cojobs pause TYPE | --co ID` / `cojobs resume TYPE | --co ID`: queued
//! jobs of a paused job type or CO wait (no runner claims them); running
//! ones finish. Kept in the database, so every runner obeys at its next
//! claim (docs/design.md#limits-and-pause).

use std::io::Write;

use super::{Error, Global, current_user};
use crate::throttle::PauseTarget;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["job_type", "co"])))]
pub struct Args {
    /// The job type to pause or resume.
    #[arg(value_name = "TYPE")]
    job_type: Option<String>,
    /// The CO to pause or resume instead.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    co: Option<i64>,
}

impl Args {
    fn target(self) -> Result<PauseTarget, Error> {
        match (self.job_type, self.co) {
            (Some(t), None) => Ok(PauseTarget::Type(t)),
            (None, Some(co)) => Ok(PauseTarget::Co(co)),
            _ => Err(Error::Input("give a job type or --co ID, not both".into())),
        }
    }
}

/// Pause (`pause` true) or resume the target; says what changed.
pub fn run(g: &Global, args: Args, pause: bool, out: &mut dyn Write) -> Result<(), Error> {
    let target = args.target()?;
    let db = g.open_store()?;
    if pause {
        if db.wait(db.pause(&target, &current_user()))? {
            writeln!(
                out,
                "paused {target}: its queued jobs wait; running ones finish"
            )?;
        } else {
            writeln!(out, "{target} was paused already")?;
        }
    } else if db.wait(db.resume(&target))? {
        writeln!(out, "resumed {target}")?;
    } else {
        writeln!(out, "{target} was not paused")?;
    }
    Ok(())
}
