//! `cojobs queue TYPE ...`: queue a job, print its id alone on stdout.

use std::io::Write;

use chrono::TimeDelta;

use super::{Error, Global, current_user, runtime, time};
use crate::bounds;
use crate::store::{NewJob, Queued};
use crate::submit::{CheckError, JobSpec, check_against_plugins};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job type: the plugin's name, [A-Za-z0-9][A-Za-z0-9_.-]{0,63}.
    #[arg(value_name = "TYPE", required_unless_present = "from")]
    job_type: Option<String>,
    /// Queue every job of a JSON Lines file instead (one object per line:
    /// "type" and optional "params", "mode", "co", "retry_interval",
    /// "max_retry", "requeue_interval", "delay", "start_after", "summary",
    /// "fuel", "memory", "timeout", "backoff", "backoff_max", "priority"), in one
    /// transaction: all or nothing.
    /// Prints the new ids, one per line.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = [
        "job_type", "params", "mode", "retry_interval", "max_retry", "requeue_interval",
        "delay", "start_after", "summary", "unique", "fuel", "memory", "timeout",
        "backoff_max", "priority"
    ])]
    from: Option<std::path::PathBuf>,
    /// What the job is and how it retries (shared with `schedule add`).
    #[command(flatten)]
    job: JobArgs,
    /// Start no sooner than this long from now (seconds, or 10m, 2h, 1d).
    #[arg(
        long,
        value_name = "S",
        conflicts_with = "start_after",
        allow_hyphen_values = true
    )]
    delay: Option<String>,
    /// Start no sooner than this time: RFC 3339 or 'YYYY-MM-DD HH:MM:SS' (UTC).
    #[arg(long, value_name = "TIME")]
    start_after: Option<String>,
    /// Refuse (exit 3, printing its id) if the same CO, type, mode and
    /// params is already queued or running.
    #[arg(long)]
    unique: bool,
}

/// What a job is, who owns it, how it retries and its limits: the options
/// `queue` and `schedule add` share.
#[derive(Debug, clap::Args)]
pub(super) struct JobArgs {
    /// Parameters for the plugin, a JSON object.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// The job mode (passed to the plugin), up to 16 characters.
    #[arg(long, value_name = "M")]
    mode: Option<String>,
    /// The CO that owns the job.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    co: i64,
    /// On failure, queue a retry this many seconds later.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    retry_interval: Option<i64>,
    /// Most retries (unset = no limit, 0 = never).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_retry: Option<i64>,
    /// On success, queue a fresh copy this many seconds later.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    requeue_interval: Option<i64>,
    /// The register summary (cut to 256 characters).
    #[arg(long, value_name = "TEXT")]
    summary: Option<String>,
    /// How retry delays grow: fixed (every retry waits --retry-interval)
    /// or exponential (doubling from --retry-interval, full jitter).
    #[arg(long, value_name = "B", default_value = "fixed")]
    backoff: String,
    /// The longest exponential retry delay (default 3600 s).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    backoff_max: Option<i64>,
    /// 1 to 9: within its CO a smaller number runs first [default: 5].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i64>,
    // Limits of this job (override the plugin's side file and the runner's).
    #[command(flatten)]
    limits: super::run::LimitArgs,
    /// Queue without asking the plugin: for a job type whose plugin is not
    /// installed yet, or mode and params it does not (yet) declare.
    #[arg(long)]
    pub(super) no_check: bool,
}

impl JobArgs {
    /// Every number in its range ([`crate::bounds`]): exit 2 naming the
    /// option and its range.
    pub(super) fn check(&self) -> Result<(), Error> {
        self.limits.check()?;
        for (bound, value) in [
            (bounds::RETRY_INTERVAL, self.retry_interval),
            (bounds::MAX_RETRY, self.max_retry),
            (bounds::REQUEUE_INTERVAL, self.requeue_interval),
            (bounds::BACKOFF_MAX, self.backoff_max),
            (bounds::PRIORITY, self.priority),
        ] {
            super::run::check_option(bound, value)?;
        }
        self.backoff()?;
        Ok(())
    }

    fn backoff(&self) -> Result<crate::job::Backoff, Error> {
        self.backoff
            .parse()
            .map_err(|e: crate::job::UnknownBackoff| Error::Input(e.to_string()))
    }

    /// The job these options describe, of type `job_type`, due at once.
    pub(super) fn new_job(&self, job_type: String) -> NewJob {
        let backoff = self
            .backoff()
            .ok()
            .filter(|b| *b != crate::job::Backoff::Fixed);
        NewJob {
            co_id: self.co,
            job_type,
            job_mode: self.mode.clone(),
            job_params: self.params.clone(),
            requeue_interval: self.requeue_interval,
            retry_interval: self.retry_interval,
            max_retry: self.max_retry,
            start_after: None,
            register_summary: self.summary.clone(),
            fuel_limit: self.limits.fuel,
            memory_limit_mib: self.limits.memory,
            timeout_secs: self.limits.timeout,
            queued_by: Some(current_user()),
            backoff,
            backoff_max: self.backoff_max,
            priority: self.priority,
        }
    }
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    // Everything the command line itself can get wrong is checked before
    // the database is opened; the store checks the rest (type, params,
    // CO, negative numbers) before writing.
    if let Some(path) = &args.from {
        return queue_file(g, path, args.job.no_check, out);
    }
    let delay = args
        .delay
        .as_deref()
        .map(time::parse_duration)
        .transpose()?;
    check_numbers(&args, delay)?;
    let start_after = args
        .start_after
        .as_deref()
        .map(time::parse_time)
        .transpose()?;
    let db = g.open_store()?;
    let start_after = match delay {
        Some(secs) => Some(
            chrono::Utc::now()
                .checked_add_signed(TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX))
                .ok_or_else(|| Error::Input(format!("delay of {secs} s is too long")))?,
        ),
        None => start_after,
    };
    let mut job = args.job.new_job(args.job_type.unwrap_or_default());
    job.start_after = start_after;
    if !args.job.no_check {
        check_params(g, &mut job)?;
    }
    if args.unique {
        match db.wait(db.queue_unique(&job))? {
            Queued::New(id) => writeln!(out, "{id}")?,
            Queued::Existing(id, _) => {
                writeln!(out, "{id}")?;
                return Err(Error::Duplicate(id));
            }
        }
    } else {
        let id = db.wait(db.queue(&job))?;
        writeln!(out, "{id}")?;
    }
    Ok(())
}

/// Every number of the command line in its range ([`crate::bounds`]):
/// exit 2 naming the option and its range. (Negative numbers are refused
/// here too, before the store would refuse them.)
fn check_numbers(args: &Args, delay: Option<i64>) -> Result<(), Error> {
    args.job.check()?;
    super::run::check_option(bounds::DELAY, delay).map(|_| ())
}

/// Check the job's mode and params against what its plugin
/// (`<plugins>/<job_type>.wasm`) declares in `describe`, and fill in the
/// defaults of absent parameters. Every refusal is `Error::Input` (exit 2)
/// naming the parameter or mode; a plugin that is missing or broken is
/// refused too, with a hint at `--no-check`.
pub(super) fn check_params(g: &Global, job: &mut NewJob) -> Result<(), Error> {
    check_many(g, std::slice::from_mut(job)).map_err(|(_, e)| e)
}

/// `queue --from FILE.jsonl`: parse and check every line, then queue all
/// in one transaction. Any bad line: exit 2 naming it, nothing written,
/// no lock taken.
fn queue_file(
    g: &Global,
    path: &std::path::Path,
    no_check: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    // Every line is read and checked before the database is opened; the
    // write lock is then held for the inserts alone (issue 10, finding 1).
    let now = chrono::Utc::now();
    let who = current_user();
    let mut jobs = Vec::new();
    let mut line_numbers = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = |msg: String| Error::Input(format!("{}:{n}: {msg}", path.display()));
        let line: JobSpec = serde_json::from_str(raw).map_err(|e| at(e.to_string()))?;
        jobs.push(line.into_new_job(now, &who).map_err(at)?);
        line_numbers.push(n);
    }
    if !no_check {
        check_many(g, &mut jobs).map_err(|(i, e)| {
            Error::Input(format!("{}:{}: {e}", path.display(), line_numbers[i]))
        })?;
    }
    let db = g.open_store()?;
    let ids = db
        .rt
        .block_on(db.queue_many(&jobs))
        .map_err(|e| match e.input_error() {
            Some(crate::store::StoreError::InBatch { index, source }) => Error::Input(format!(
                "{}:{}: {source}",
                path.display(),
                line_numbers.get(*index).copied().unwrap_or(0)
            )),
            _ => Error::Db(e),
        })?;
    let mut buf = String::with_capacity(ids.len() * 8);
    for id in ids {
        buf.push_str(&id.to_string());
        buf.push('\n');
    }
    out.write_all(buf.as_bytes())?;
    Ok(())
}

/// [`check_params`] for many jobs, describing each plugin once
/// ([`crate::submit::check_against_plugins`], which `serve` uses too). The
/// error carries the index of the first job that does not fit.
fn check_many(g: &Global, jobs: &mut [NewJob]) -> Result<(), (usize, Error)> {
    super::run::init_tracing("warn");
    let sandbox = std::sync::Arc::new(g.sandbox().map_err(|e| (0, e))?);
    let rt = runtime().map_err(|e| (0, e))?;
    rt.block_on(check_against_plugins(&sandbox, jobs))
        .map_err(|(i, e)| {
            (
                i,
                match e {
                    CheckError::Plugin(e) => {
                        Error::Input(format!("{e} (use --no-check to queue it anyway)"))
                    }
                    CheckError::Store(e) => Error::from(e),
                    e => Error::Input(e.to_string()),
                },
            )
        })
}
