//! `cojobs show ID`: every column of a job, its history records, its retry
//! chain and its log.

use std::io::Write;

use super::{Error, Global, cell, printable, write_table};
use crate::store::{JOB_COLUMN_NAMES, JobId};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    id: i64,
    /// One JSON object: {"job": ..., "history": [...], "chain": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let store = g.open_store()?;
    let id = JobId(args.id);
    let job = store.require(id)?;
    let history = store.history(id)?;
    let chain = store.retry_chain(id)?;
    if args.json {
        let value = serde_json::json!({ "job": job, "history": history, "chain": chain });
        serde_json::to_writer(&mut *out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    let width = JOB_COLUMN_NAMES.iter().map(|n| n.len()).max().unwrap_or(0);
    for (name, value) in JOB_COLUMN_NAMES.iter().zip(job.column_values()) {
        if *name == "job_log" {
            continue;
        }
        writeln!(out, "{name:<width$}  {}", cell(value.as_deref()))?;
    }

    writeln!(out, "\nhistory records:")?;
    if history.is_empty() {
        writeln!(out, "  (none)")?;
    } else {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|h| {
                vec![
                    h.id.to_string(),
                    cell(h.created.as_deref()),
                    cell(h.status.as_deref()),
                    cell(h.record_key.as_deref()),
                    cell(h.comment.as_deref()),
                ]
            })
            .collect();
        write_table(out, &["ID", "CREATED", "STATUS", "KEY", "COMMENT"], &rows)?;
    }

    writeln!(out, "\nretry chain:")?;
    let rows: Vec<Vec<String>> = chain
        .iter()
        .map(|j| {
            vec![
                if j.id == id {
                    format!("{}*", j.id)
                } else {
                    j.id.to_string()
                },
                cell(j.requeued_from_co_job_id.map(|p| p.to_string()).as_deref()),
                j.status.to_string(),
                cell(j.max_retry_count.map(|c| c.to_string()).as_deref()),
                cell(j.complete_time.as_deref()),
                cell(j.finish_summary.as_deref()),
            ]
        })
        .collect();
    write_table(
        out,
        &["ID", "FROM", "STATUS", "RETRY", "ENDED", "SUMMARY"],
        &rows,
    )?;

    writeln!(out, "\nlog:")?;
    match job.job_log.as_deref() {
        None | Some("") => writeln!(out, "  (none)")?,
        Some(log) => {
            for line in log.lines() {
                writeln!(out, "  {}", printable(line, false))?;
            }
        }
    }
    Ok(())
}
