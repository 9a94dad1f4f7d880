//! `cojobs bench`: how many jobs a runner moves, end to end, against what
//! the sandbox alone allows — like `pgbench` or `redis-benchmark`, for
//! sizing a deployment.
//!
//! 1. Bulk-queue `--jobs` jobs (and `--delayed` more, due tomorrow) into a
//!    scratch database (or `--db`).
//! 2. The sandbox-only bound: the same plugin run the same number of times
//!    by `--workers` tasks, with no database.
//! 3. End to end: the real runner (`run --once` code path: claim, sandbox,
//!    finish, all durable) drains the queue.
//! 4. Latency from the rows' own times, and the process's peak RSS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta, Utc};

use super::{Error, Global};
use crate::job::JobStatus;
use crate::runner::{Runner, RunnerConfig};
use crate::sandbox::{
    Interrupt, JobInput, LimitOverrides, NoEvents, RunEnd, Sandbox, SandboxConfig,
};
use crate::store::{ListFilter, NewJob, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to queue and drain.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    jobs: usize,
    /// Jobs run at once [default: the number of cores].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// The plugin: a name in --plugins (noop, hello, ...) or a .wasm path.
    #[arg(long, value_name = "NAME|PATH", default_value = "noop")]
    plugin: String,
    /// Also queue this many jobs due tomorrow (they must not slow today's).
    #[arg(long, value_name = "N", default_value_t = 0)]
    delayed: usize,
    /// Parameters for every job (a JSON object).
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// Keep the database here instead of a scratch one (it must not exist).
    #[arg(long = "bench-db", value_name = "PATH")]
    bench_db: Option<PathBuf>,
}

/// Where the plugin is and under which job type.
fn plugin_source(g: &Global, arg: &str, scratch: &Path) -> Result<(PathBuf, String), Error> {
    if arg.ends_with(".wasm") || arg.contains('/') {
        let src = PathBuf::from(arg);
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| crate::job::validate_job_type(s).is_ok())
            .ok_or_else(|| {
                Error::Input(format!(
                    "'{arg}' must be a .wasm file named like a job type"
                ))
            })?
            .to_string();
        let dir = scratch.join("plugins");
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(&src, dir.join(format!("{stem}.wasm")))
            .map_err(|e| Error::Input(format!("cannot read {arg}: {e}")))?;
        Ok((dir, stem))
    } else {
        crate::job::validate_job_type(arg).map_err(|e| Error::Input(e.to_string()))?;
        Ok((g.plugins.clone(), arg.to_string()))
    }
}

fn parse_time(t: Option<&str>) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(t?, "%Y-%m-%d %H:%M:%S%.f").ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    if args.jobs == 0 {
        return Err(Error::Input("--jobs must be at least 1".into()));
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = args.workers.unwrap_or(cores);
    if workers == 0 {
        return Err(Error::Input("--workers must be at least 1".into()));
    }
    let params = match &args.params {
        Some(p) => Some(
            serde_json::from_str::<serde_json::Value>(p)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(|| Error::Input("--params must be a JSON object".into()))?
                .to_string(),
        ),
        None => None,
    };
    let scratch = tempfile::Builder::new().prefix("cojobs-bench-").tempdir()?;
    let (plugins_dir, job_type) = plugin_source(g, &args.plugin, scratch.path())?;
    let db_path = match &args.bench_db {
        Some(p) if p.exists() => {
            return Err(Error::Input(format!(
                "{} exists: bench needs a new database",
                p.display()
            )));
        }
        Some(p) => p.clone(),
        None => scratch.path().join("bench.db"),
    };

    let mut sandbox_config = SandboxConfig::new(&plugins_dir);
    sandbox_config.max_instances = u32::try_from(workers * 2).unwrap_or(u32::MAX).max(8);
    let sandbox = Arc::new(Sandbox::new(sandbox_config)?);
    let plugin = sandbox.plugin(&job_type)?;
    writeln!(
        out,
        "cojobs bench: {} jobs of '{job_type}', {workers} workers, {} allocator, db {}",
        args.jobs,
        if sandbox.pooling() {
            "pooling"
        } else {
            "on-demand"
        },
        db_path.display()
    )?;

    // 1. Queue.
    let mut store = Store::open(&db_path)?;
    let mut template = NewJob::new(1, job_type.clone());
    template.job_params = params.clone();
    if args.delayed > 0 {
        let mut later = template.clone();
        later.start_after = Some(Utc::now() + TimeDelta::days(1));
        store.queue_many(&vec![later; args.delayed])?;
        writeln!(out, "queued {} jobs due tomorrow", args.delayed)?;
    }
    let batch = vec![template; args.jobs];
    let t = Instant::now();
    store.queue_many(&batch)?;
    let queue_time = t.elapsed();
    drop(batch);
    writeln!(
        out,
        "queue:        {} jobs in {:.2} s = {:.0} jobs/s (one transaction)",
        args.jobs,
        queue_time.as_secs_f64(),
        rate(args.jobs, queue_time)
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .enable_all()
        .build()?;

    // 2. The sandbox alone.
    let limits = sandbox.limits_for(&plugin, &LimitOverrides::default());
    let job_params = params.unwrap_or_else(|| "{}".to_string());
    let (bound_time, bound_failures) = runtime.block_on(async {
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let n = args.jobs / workers + usize::from(w < args.jobs % workers);
            let sandbox = Arc::clone(&sandbox);
            let plugin = Arc::clone(&plugin);
            let input = JobInput {
                id: 0,
                co_id: 1,
                job_type: job_type.clone(),
                mode: None,
                params: job_params.clone(),
                retry_count: 0,
                requeued_from: None,
            };
            tasks.spawn(async move {
                let interrupt = Interrupt::new();
                let mut failures = 0usize;
                for _ in 0..n {
                    let r = sandbox
                        .run(&plugin, &input, limits, Box::new(NoEvents), &interrupt)
                        .await;
                    failures += usize::from(!matches!(r.end, RunEnd::Ok(_)));
                }
                failures
            });
        }
        let mut failures = 0;
        while let Some(r) = tasks.join_next().await {
            failures += r.unwrap_or(0);
        }
        (t.elapsed(), failures)
    });
    let bound = rate(args.jobs, bound_time);
    writeln!(
        out,
        "sandbox only: {} runs in {:.2} s = {:.0} jobs/s ({:.1} µs per job per worker){}",
        args.jobs,
        bound_time.as_secs_f64(),
        bound,
        bound_time.as_secs_f64() * 1e6 * workers as f64 / args.jobs as f64,
        if bound_failures > 0 {
            format!(", {bound_failures} did not end OK")
        } else {
            String::new()
        }
    )?;

    // 3. End to end, through the real runner.
    let mut config = RunnerConfig::new(workers);
    config.once = true;
    config.runner_id = "bench".to_string();
    let runner = Runner::new(config, store, Arc::clone(&sandbox))?;
    let t = Instant::now();
    runtime.block_on(async {
        let (_keep, rx) = tokio::sync::mpsc::unbounded_channel();
        runner.run(rx).await
    })?;
    let drain_time = t.elapsed();
    let e2e = rate(args.jobs, drain_time);
    writeln!(
        out,
        "end to end:   {} jobs in {:.2} s = {:.0} jobs/s ({:.0}% of the sandbox-only bound)",
        args.jobs,
        drain_time.as_secs_f64(),
        e2e,
        100.0 * e2e / bound
    )?;
    drop(runner);

    // 4. Latency, from the rows.
    let store = Store::open(&db_path)?;
    let done = store.list(&ListFilter {
        status: None,
        job_type: Some(job_type.clone()),
        co_id: None,
        limit: None,
    })?;
    let mut to_start = Vec::with_capacity(done.len());
    let mut to_finish = Vec::with_capacity(done.len());
    let mut ok = 0usize;
    for j in &done {
        if j.status == JobStatus::Complete {
            ok += 1;
        }
        let q = parse_time(j.queue_time.as_deref());
        if let (Some(q), Some(s)) = (q, parse_time(j.start_time.as_deref())) {
            to_start.push((s - q).as_seconds_f64());
        }
        if let (Some(q), Some(c)) = (q, parse_time(j.complete_time.as_deref())) {
            to_finish.push((c - q).as_seconds_f64());
        }
    }
    to_start.sort_by(f64::total_cmp);
    to_finish.sort_by(f64::total_cmp);
    writeln!(out, "rows OK:      {ok} of {}", args.jobs)?;
    writeln!(
        out,
        "queue→start:  p50 {:.3} s  p99 {:.3} s",
        percentile(&to_start, 0.5),
        percentile(&to_start, 0.99)
    )?;
    writeln!(
        out,
        "queue→finish: p50 {:.3} s  p99 {:.3} s",
        percentile(&to_finish, 0.5),
        percentile(&to_finish, 0.99)
    )?;
    if let Some(rss) = peak_rss_mib() {
        writeln!(out, "peak RSS:     {rss:.1} MiB")?;
    }
    Ok(())
}
