//! `cojobs queue TYPE ...`: queue a job, print its id alone on stdout.

use std::io::Write;
use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::Value;

use super::{Error, Global, current_user, runtime, time};
use crate::sandbox::SandboxError;
use crate::store::{NewJob, Queued};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job type: the plugin's name, [A-Za-z0-9][A-Za-z0-9_.-]{0,63}.
    #[arg(value_name = "TYPE")]
    job_type: String,
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
    /// The register summary (cut to 256 characters).
    #[arg(long, value_name = "TEXT")]
    summary: Option<String>,
    /// Refuse (exit 3, printing its id) if the same CO, type, mode and
    /// params is already queued or running.
    #[arg(long)]
    unique: bool,
    /// Fuel budget for this job (overrides the runner's default).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    fuel: Option<i64>,
    /// Memory limit in MiB for this job.
    #[arg(long, value_name = "MIB", allow_negative_numbers = true)]
    memory: Option<i64>,
    /// Wall-clock limit in seconds for this job.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    timeout: Option<i64>,
    /// Queue without asking the plugin: for a job type whose plugin is not
    /// installed yet, or mode and params it does not (yet) declare.
    #[arg(long)]
    no_check: bool,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    // Everything the command line itself can get wrong is checked before
    // the database is opened; the store checks the rest (type, params,
    // CO, negative numbers) before writing.
    check_limits(&args)?;
    let delay = args
        .delay
        .as_deref()
        .map(time::parse_duration)
        .transpose()?;
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
                .checked_add_signed(TimeDelta::seconds(secs))
                .ok_or_else(|| Error::Input(format!("delay of {secs} s is too long")))?,
        ),
        None => start_after,
    };
    let mut job = NewJob {
        co_id: args.co,
        job_type: args.job_type,
        job_mode: args.mode,
        job_params: args.params,
        requeue_interval: args.requeue_interval,
        retry_interval: args.retry_interval,
        max_retry: args.max_retry,
        start_after,
        register_summary: args.summary,
        fuel_limit: args.fuel,
        memory_limit_mib: args.memory,
        timeout_secs: args.timeout,
        queued_by: Some(current_user()),
    };
    if !args.no_check {
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

/// Limits the sandbox could not honour (zero, more memory than a job can
/// have), refused as `run` and `exec` refuse them. Negative numbers are
/// left to the store, which refuses them for every numeric field alike.
fn check_limits(args: &Args) -> Result<(), Error> {
    let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    super::run::check_limits(
        unsigned(args.fuel),
        unsigned(args.memory),
        unsigned(args.timeout),
    )
    .map(drop)
}

/// Check the job's mode and params against what its plugin
/// (`<plugins>/<job_type>.wasm`) declares in `describe`, and fill in the
/// defaults of absent parameters. Every refusal is `Error::Input` (exit 2)
/// naming the parameter or mode; a plugin that is missing or broken is
/// refused too, with a hint at `--no-check`.
fn check_params(g: &Global, job: &mut NewJob) -> Result<(), Error> {
    // Params that are not a JSON object: the store's own refusal.
    let params = match &job.job_params {
        Some(text) => crate::store::parse_params(text)?,
        None => serde_json::Map::new(),
    };
    let sandbox = Arc::new(g.sandbox()?);
    let desc = runtime()?
        .block_on(async {
            let plugin = sandbox.plugin_async(&job.job_type).await?;
            sandbox.describe(&plugin).await
        })
        .map_err(|e| match e {
            SandboxError::BadName(e) => Error::Input(e.to_string()),
            e => Error::Input(format!("{e} (use --no-check to queue it anyway)")),
        })?;
    let checked = desc
        .check(job.job_mode.as_deref(), &params)
        .map_err(|e| Error::Input(e.to_string()))?;
    if checked != params {
        job.job_params = Some(Value::Object(checked).to_string());
    }
    Ok(())
}
