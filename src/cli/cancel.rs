//! `cojobs cancel ID`: a queued job ends `CX` at once; a running one gets a
//! stop request its runner acts on.

use std::io::Write;

use super::{Error, Global, current_user};
use crate::store::{CancelResult, JobId};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    id: i64,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_store()?;
    let id = JobId(args.id);
    match db.wait(db.cancel(id, &current_user()))? {
        CancelResult::Canceled => writeln!(out, "job {id} canceled")?,
        CancelResult::StopRequested => writeln!(
            out,
            "job {id} is running: asked its runner to stop it (it will end CX)"
        )?,
    }
    Ok(())
}
