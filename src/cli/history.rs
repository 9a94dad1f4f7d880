//! `cojobs history ID`: the `cm_co_job_history_records` of a job.

use std::io::Write;

use super::{Error, Global, cell, write_table};
use crate::store::JobId;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    id: i64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_reader()?;
    let id = JobId(args.id);
    db.require(id)?;
    let records = db.wait(db.history(id))?;
    if args.json {
        for r in &records {
            serde_json::to_writer(&mut *out, r)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|h| {
            vec![
                h.id.to_string(),
                cell(h.created.as_deref()),
                cell(h.status.as_deref()),
                cell(h.co_person_id.map(|p| p.to_string()).as_deref()),
                cell(h.org_identity_id.map(|p| p.to_string()).as_deref()),
                cell(h.record_key.as_deref()),
                cell(h.comment.as_deref()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "ID",
            "CREATED",
            "STATUS",
            "PERSON",
            "ORG IDENTITY",
            "KEY",
            "COMMENT",
        ],
        &rows,
    )?;
    Ok(())
}
