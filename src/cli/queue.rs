//! `cojobs queue TYPE ...`: queue a job, print its id alone on stdout.

use std::io::Write;
use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::Value;

use super::{Error, Global, current_user, runtime, time};
use crate::bounds;
use crate::sandbox::SandboxError;
use crate::store::{NewJob, Queued};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job type: the plugin's name, [A-Za-z0-9][A-Za-z0-9_.-]{0,63}.
    #[arg(value_name = "TYPE", required_unless_present = "from")]
    job_type: Option<String>,
    /// Queue every job of a JSON Lines file instead (one object per line:
    /// "type" and optional "params", "mode", "co", "retry_interval",
    /// "max_retry", "requeue_interval", "delay", "start_after", "summary",
    /// "fuel", "memory", "timeout", "backoff", "backoff_max"), in one
    /// transaction: all or nothing.
    /// Prints the new ids, one per line.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = [
        "job_type", "params", "mode", "retry_interval", "max_retry", "requeue_interval",
        "delay", "start_after", "summary", "unique", "fuel", "memory", "timeout",
        "backoff_max"
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
    let mut store = g.open_store()?;
    let start_after = match delay {
        Some(secs) => Some(
            store
                .now()
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
        match store.queue_unique(&job)? {
            Queued::New(id) => writeln!(out, "{id}")?,
            Queued::Existing(id, _) => {
                writeln!(out, "{id}")?;
                return Err(Error::Duplicate(id));
            }
        }
    } else {
        let id = store.queue(&job)?;
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

/// The first number of a `queue --from` line outside its range.
fn check_line_numbers(line: &Line) -> Result<(), bounds::OutOfRange> {
    for (bound, value) in [
        (bounds::FUEL, line.fuel),
        (bounds::MEMORY_MIB, line.memory),
        (bounds::TIMEOUT_SECS, line.timeout),
        (bounds::RETRY_INTERVAL, line.retry_interval),
        (bounds::MAX_RETRY, line.max_retry),
        (bounds::REQUEUE_INTERVAL, line.requeue_interval),
        (bounds::DELAY, line.delay),
        (bounds::BACKOFF_MAX, line.backoff_max),
    ] {
        bound.check_opt(value)?;
    }
    Ok(())
}

/// Check the job's mode and params against what its plugin
/// (`<plugins>/<job_type>.wasm`) declares in `describe`, and fill in the
/// defaults of absent parameters. Every refusal is `Error::Input` (exit 2)
/// naming the parameter or mode; a plugin that is missing or broken is
/// refused too, with a hint at `--no-check`.
pub(super) fn check_params(g: &Global, job: &mut NewJob) -> Result<(), Error> {
    check_many(g, std::slice::from_mut(job)).map_err(|(_, e)| e)
}

/// One line of a `queue --from` file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    job_type: String,
    params: Option<Value>,
    mode: Option<String>,
    co: Option<i64>,
    retry_interval: Option<i64>,
    max_retry: Option<i64>,
    requeue_interval: Option<i64>,
    /// Seconds from now.
    delay: Option<i64>,
    start_after: Option<String>,
    summary: Option<String>,
    fuel: Option<i64>,
    memory: Option<i64>,
    timeout: Option<i64>,
    backoff: Option<String>,
    backoff_max: Option<i64>,
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
        let line: Line = serde_json::from_str(raw).map_err(|e| at(e.to_string()))?;
        check_line_numbers(&line).map_err(|e| at(e.to_string()))?;
        let params = match line.params {
            None => None,
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(other) => return Err(at(format!("params must be a JSON object, not {other}"))),
        };
        let start_after = match (line.delay, line.start_after) {
            (Some(_), Some(_)) => return Err(at("give delay or start_after, not both".into())),
            (Some(secs), None) => Some(
                now.checked_add_signed(TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX))
                    .ok_or_else(|| at(format!("delay of {secs} s is too long")))?,
            ),
            (None, Some(t)) => Some(time::parse_time(&t).map_err(|e| at(e.to_string()))?),
            (None, None) => None,
        };
        let backoff = line
            .backoff
            .as_deref()
            .map(str::parse::<crate::job::Backoff>)
            .transpose()
            .map_err(|e| at(e.to_string()))?;
        jobs.push(NewJob {
            co_id: line.co.unwrap_or(1),
            job_type: line.job_type,
            job_mode: line.mode,
            job_params: params,
            requeue_interval: line.requeue_interval,
            retry_interval: line.retry_interval,
            max_retry: line.max_retry,
            start_after,
            register_summary: line.summary,
            fuel_limit: line.fuel,
            memory_limit_mib: line.memory,
            timeout_secs: line.timeout,
            queued_by: Some(who.clone()),
            backoff,
            backoff_max: line.backoff_max,
        });
        line_numbers.push(n);
    }
    if !no_check {
        check_many(g, &mut jobs).map_err(|(i, e)| {
            Error::Input(format!("{}:{}: {e}", path.display(), line_numbers[i]))
        })?;
    }
    let mut store = g.open_store()?;
    let ids = store.queue_many(&jobs).map_err(|e| match e {
        crate::store::StoreError::InBatch { index, source } => {
            if source.is_input() {
                Error::Input(format!(
                    "{}:{}: {source}",
                    path.display(),
                    line_numbers[index]
                ))
            } else {
                Error::Store(*source)
            }
        }
        e => Error::Store(e),
    })?;
    let mut buf = String::with_capacity(ids.len() * 8);
    for id in ids {
        buf.push_str(&id.to_string());
        buf.push('\n');
    }
    out.write_all(buf.as_bytes())?;
    Ok(())
}

/// [`check_params`] for many jobs, describing each plugin once. The error
/// carries the index of the first job that does not fit.
///
/// Params that are not a JSON object get the store's own refusal.
fn check_many(g: &Global, jobs: &mut [NewJob]) -> Result<(), (usize, Error)> {
    super::run::init_tracing("warn");
    let sandbox = Arc::new(g.sandbox().map_err(|e| (0, e))?);
    let rt = runtime().map_err(|e| (0, e))?;
    let mut descriptions = std::collections::HashMap::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        if !descriptions.contains_key(&job.job_type) {
            let desc = rt
                .block_on(async {
                    let plugin = sandbox.plugin_async(&job.job_type).await?;
                    sandbox.describe(&plugin).await
                })
                .map_err(|e| {
                    (
                        i,
                        match e {
                            SandboxError::BadName(e) => Error::Input(e.to_string()),
                            e => Error::Input(format!("{e} (use --no-check to queue it anyway)")),
                        },
                    )
                })?;
            descriptions.insert(job.job_type.clone(), desc);
        }
        let desc = &descriptions[&job.job_type];
        let params = match &job.job_params {
            Some(text) => crate::store::parse_params(text).map_err(|e| (i, Error::from(e)))?,
            None => serde_json::Map::new(),
        };
        let checked = desc
            .check(job.job_mode.as_deref(), &params)
            .map_err(|e| (i, Error::Input(e.to_string())))?;
        if checked != params {
            job.job_params = Some(Value::Object(checked).to_string());
        }
    }
    Ok(())
}
