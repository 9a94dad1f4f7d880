//! `cojobs show ID`: every column of a job, its history records, its retry
//! chain and its log.

use std::io::Write;

use super::{Error, Global, cell, printable, write_table};
use crate::store::{CHAIN_WINDOW, ChainPage, JOB_COLUMN_NAMES, JobId};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    id: i64,
    /// One JSON object: {"job": ..., "history": [...], "chain": [rows
    /// around the job], "chain_total": N, "chain_counts": {status: N}}.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_reader()?;
    let id = JobId(args.id);
    let job = db.require(id)?;
    let history = db.wait(db.history(id))?;
    let chain = db.wait(db.chain_page(id, CHAIN_AROUND))?;
    if args.json {
        let value = serde_json::json!({
            "job": job,
            "history": history,
            "chain": chain.rows,
            "chain_total": chain.total,
            "chain_counts": chain
                .counts
                .iter()
                .map(|(st, n)| (st.code().to_string(), serde_json::Value::from(*n)))
                .collect::<serde_json::Map<_, _>>(),
        });
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
    write_chain(out, id, &chain)?;

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

/// Rows of the retry chain shown either side of the job: a chain can hold
/// tens of thousands of rows (a job requeued every minute for a month).
const CHAIN_AROUND: usize = 10;

/// The chain's counts, then the rows around `id` (marked `*`).
fn write_chain(out: &mut dyn Write, id: JobId, chain: &ChainPage) -> Result<(), Error> {
    let counts: Vec<String> = chain
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(st, n)| format!("{}={n}", st.code()))
        .collect();
    let shown_last = chain.first.saturating_add(chain.rows.len());
    if chain.older_beyond || chain.newer_beyond {
        writeln!(
            out,
            "  (a long chain: {} rows either side of this job are counted{}{})",
            CHAIN_WINDOW,
            if chain.older_beyond {
                "; older rows exist"
            } else {
                ""
            },
            if chain.newer_beyond {
                "; newer rows exist"
            } else {
                ""
            },
        )?;
    }
    writeln!(
        out,
        "  {} rows ({}); this job is row {}; rows {}..{} shown",
        chain.total,
        counts.join(" "),
        chain.position.saturating_add(1),
        chain.first.saturating_add(1),
        shown_last
    )?;
    let rows: Vec<Vec<String>> = chain
        .rows
        .iter()
        .map(|j| {
            vec![
                if j.id == id {
                    format!("{}*", j.id)
                } else {
                    j.id.to_string()
                },
                cell(j.requeued_from_co_job_id.map(|p| p.to_string()).as_deref()),
                j.status.clone(),
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
    Ok(())
}
