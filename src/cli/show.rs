//! `cojobs show ID`: every column of a job (its parent, the component that
//! ran it and its contract version among them), its structured result,
//! the child jobs its run queued, its history records, its retry chain and
//! its log.

use std::io::Write;

use super::{Error, Global, cell, printable, write_table};
use crate::store::{CHAIN_WINDOW, ChainPage, JOB_COLUMN_NAMES, JobId};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    id: i64,
    /// One JSON object: {"job": ..., "history": [...], "children": [{id,
    /// job_type, status}], "children_more": bool, "chain": [rows around the
    /// job], "chain_total": N, "chain_counts": {status: N}}.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_reader()?;
    let id = JobId(args.id);
    let job = db.require(id)?;
    let history = db.wait(db.history(id))?;
    let chain = db.wait(db.chain_page(id, CHAIN_AROUND))?;
    let mut children = db.wait(db.children(id, None, CHILDREN_SHOWN + 1))?;
    let children_more = children.len() > CHILDREN_SHOWN as usize;
    children.truncate(CHILDREN_SHOWN as usize);
    if args.json {
        let value = serde_json::json!({
            "job": job,
            "history": history,
            "children": children
                .iter()
                .map(|c| serde_json::json!({
                    "id": c.id,
                    "job_type": c.job_type,
                    "status": c.status.code(),
                }))
                .collect::<Vec<_>>(),
            "children_more": children_more,
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
        if matches!(*name, "job_log" | "result") {
            continue;
        }
        writeln!(out, "{name:<width$}  {}", cell(value.as_deref()))?;
    }

    writeln!(out, "\nresult:")?;
    write_result(out, job.result.as_deref())?;

    writeln!(out, "\nchildren:")?;
    if children.is_empty() {
        writeln!(out, "  (none)")?;
    } else {
        let rows: Vec<Vec<String>> = children
            .iter()
            .map(|c| {
                vec![
                    c.id.to_string(),
                    c.status.code().to_string(),
                    c.job_type.clone(),
                    cell(c.finish_summary.as_deref()),
                ]
            })
            .collect();
        write_table(out, &["ID", "STATUS", "TYPE", "SUMMARY"], &rows)?;
        if children_more {
            writeln!(out, "  (only the first {CHILDREN_SHOWN} are shown)")?;
        }
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

/// Child jobs shown.
const CHILDREN_SHOWN: i64 = 50;

/// A stored result, as indented JSON (as stored when it is not JSON).
fn write_result(out: &mut dyn Write, result: Option<&str>) -> Result<(), Error> {
    let Some(text) = result else {
        writeln!(out, "  (none)")?;
        return Ok(());
    };
    let pretty = serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string());
    for line in pretty.lines() {
        writeln!(out, "  {}", printable(line, false))?;
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
