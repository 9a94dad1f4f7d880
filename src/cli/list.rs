//! `cojobs list`: jobs as an aligned table, or one JSON object per line.

use std::io::Write;

use super::{Error, Global, cell, printable, write_table};
use crate::job::JobStatus;
use crate::store::ListFilter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only jobs in this status: Q, GO, OK, X or CX.
    #[arg(long, value_name = "S")]
    status: Option<String>,
    /// Only jobs of this type.
    #[arg(long = "type", value_name = "T")]
    job_type: Option<String>,
    /// Only jobs of this CO.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    co: Option<i64>,
    /// Only jobs this schedule queued.
    #[arg(long, value_name = "NAME")]
    schedule: Option<String>,
    /// At most this many (newest first).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: u32,
    /// One JSON object per line, every column.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let status = args
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|e| Error::Input(e.to_string()))?;
    let db = g.open_reader()?;
    let filter = ListFilter {
        status,
        job_type: args.job_type,
        co_id: args.co,
        schedule: args.schedule,
        limit: Some(i64::from(args.limit)),
    };
    let jobs = db.wait(db.list(&filter, None))?;
    if args.json {
        for job in &jobs {
            serde_json::to_writer(&mut *out, job)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let summary = match j.status {
                JobStatus::Queued => j.register_summary.as_deref(),
                JobStatus::InProgress => j.status_line.as_deref().or(j.start_summary.as_deref()),
                _ => j.finish_summary.as_deref(),
            };
            vec![
                j.id.to_string(),
                j.co_id.to_string(),
                j.job_type.clone(),
                cell(j.job_mode.as_deref()),
                j.status.to_string(),
                j.priority.to_string(),
                j.percent_complete.map_or("-".into(), |p| format!("{p}%")),
                cell(j.max_retry_count.map(|c| c.to_string()).as_deref()),
                cell(j.queue_time.as_deref().map(short_time)),
                cell(j.start_after_time.as_deref().map(short_time)),
                cell(summary),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "ID",
            "CO",
            "TYPE",
            "MODE",
            "STATUS",
            "PRI",
            "PCT",
            "RETRY",
            "QUEUED",
            "START AFTER",
            "SUMMARY",
        ],
        &rows,
    )?;
    // Queued jobs that wait because their type or CO is paused say so.
    if let Some(line) = db.wait(db.throttles())?.paused_line() {
        writeln!(out, "{}", printable(&line, false))?;
    }
    Ok(())
}

/// A stored time without its fraction, for the table.
fn short_time(t: &str) -> &str {
    t.split_once('.').map_or(t, |(s, _)| s)
}
