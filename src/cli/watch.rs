//! `cojobs watch`: a live view of running jobs and counts by status.
//!
//! On a terminal: a progress bar per running job (percent, status line,
//! elapsed time, type, CO) under a line of counts, refreshed until Ctrl-C.
//! Elsewhere: a plain-text snapshot per refresh (`--once`: one, then exit).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::NaiveDateTime;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Db, Error, Global, printable};
use crate::job::JobStatus;
use crate::store::{Job, JobId, ListFilter};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Refresh this often.
    #[arg(long, value_name = "SECS", default_value_t = 0.5)]
    interval: f64,
    /// Print one snapshot and exit.
    #[arg(long)]
    once: bool,
}

/// The rows the view needs, read in one go.
struct Snapshot {
    counts: Vec<(JobStatus, i64)>,
    running: Vec<Job>,
    /// "paused: job types …; COs …", when something is.
    paused: Option<String>,
}

fn snapshot(db: &Db) -> Result<Snapshot, Error> {
    let running = ListFilter {
        status: Some(JobStatus::InProgress),
        limit: Some(200),
        ..ListFilter::default()
    };
    Ok(Snapshot {
        counts: db.wait(db.counts_by_status())?,
        running: db.wait(db.list(&running, None))?,
        paused: db
            .wait(db.throttles())?
            .paused_line()
            .map(|l| printable(&l, false).into_owned()),
    })
}

fn counts_line(s: &Snapshot) -> String {
    let mut parts = Vec::new();
    for st in JobStatus::ALL {
        let n = s
            .counts
            .iter()
            .find(|(c, _)| *c == st)
            .map_or(0, |(_, n)| *n);
        parts.push(format!("{}={n}", st.code()));
    }
    parts.join("  ")
}

fn elapsed(job: &Job) -> String {
    let Some(start) = job
        .start_time
        .as_deref()
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
    else {
        return "-".to_string();
    };
    let secs = (chrono::Utc::now().naive_utc() - start)
        .num_seconds()
        .max(0);
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The job's line: its type and status line are the plugin's (or any
/// row writer's) text, so [`printable`].
fn label(job: &Job) -> String {
    format!(
        "#{} {} co {} {}",
        job.id,
        printable(&job.job_type, false),
        job.co_id,
        printable(job.status_line.as_deref().unwrap_or(""), false)
    )
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let Some(interval) = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
    else {
        return Err(Error::Input(
            "--interval must be a positive number of seconds".into(),
        ));
    };
    let db = g.open_reader()?;
    if args.once || !std::io::stdout().is_terminal() {
        loop {
            let s = snapshot(&db)?;
            writeln!(out, "{}", counts_line(&s))?;
            if let Some(p) = &s.paused {
                writeln!(out, "{p}")?;
            }
            for job in &s.running {
                writeln!(
                    out,
                    "  {:>3}%  {:>6}  {}",
                    job.percent_complete.unwrap_or(0),
                    elapsed(job),
                    label(job)
                )?;
            }
            out.flush()?;
            if args.once {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    }
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
    let header = multi.add(ProgressBar::new_spinner());
    header.set_style(
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let style = ProgressStyle::with_template("{prefix:>7} [{bar:30}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: HashMap<JobId, ProgressBar> = HashMap::new();
    loop {
        let s = snapshot(&db)?;
        header.set_message(format!(
            "cojobs watch  {}  (Ctrl-C to quit){}",
            counts_line(&s),
            s.paused
                .as_deref()
                .map(|p| format!("\n{p}"))
                .unwrap_or_default()
        ));
        let live: Vec<JobId> = s.running.iter().map(|j| j.id).collect();
        bars.retain(|id, bar| {
            let keep = live.contains(id);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
        for job in &s.running {
            let bar = bars.entry(job.id).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(100));
                b.set_style(style.clone());
                b
            });
            bar.set_position(
                u64::try_from(job.percent_complete.unwrap_or(0).clamp(0, 100)).unwrap_or(0),
            );
            bar.set_prefix(elapsed(job));
            bar.set_message(label(job));
        }
        std::thread::sleep(interval);
    }
}
