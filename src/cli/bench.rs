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
use crate::runner::{Runner, RunnerConfig};
use crate::sandbox::{
    Interrupt, JobInput, LimitOverrides, NoEvents, RunEnd, Sandbox, SandboxConfig,
};
use crate::store::driver::JobStore;
use crate::store::sqlite::{Options, SqliteStore};
use crate::store::{NewJob, Store};

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
    /// Also measure the cost of fuel metering: the sandbox-only run again
    /// with fuel counting off (e.g. with `--plugin primes`).
    #[arg(long)]
    fuel_overhead: bool,
    /// Jobs queued one at a time into an idle runner to measure pickup
    /// latency (0 to skip).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pickup: usize,
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

/// Jobs per transaction when bench queues.
const QUEUE_CHUNK: usize = 10_000;

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
    // In transactions of QUEUE_CHUNK jobs, so the bench's own memory does
    // not grow with --jobs (the runner's is what it measures).
    let queue_n = |store: &mut Store, job: &NewJob, n: usize| -> Result<(), Error> {
        let chunk = vec![job.clone(); n.min(QUEUE_CHUNK)];
        let mut left = n;
        while left > 0 {
            let k = left.min(QUEUE_CHUNK);
            store.queue_many(&chunk[..k])?;
            left -= k;
        }
        Ok(())
    };
    if args.delayed > 0 {
        let mut later = template.clone();
        later.start_after = Some(Utc::now() + TimeDelta::days(1));
        queue_n(&mut store, &later, args.delayed)?;
        writeln!(out, "queued {} jobs due tomorrow", args.delayed)?;
    }
    let t = Instant::now();
    queue_n(&mut store, &template, args.jobs)?;
    let queue_time = t.elapsed();
    writeln!(
        out,
        "queue:        {} jobs in {:.2} s = {:.0} jobs/s (transactions of {QUEUE_CHUNK})",
        args.jobs,
        queue_time.as_secs_f64(),
        rate(args.jobs, queue_time)
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .enable_all()
        .build()?;

    // 2. The sandbox alone.
    let input = JobInput {
        id: 0,
        co_id: 1,
        job_type: job_type.clone(),
        mode: None,
        params: params.clone().unwrap_or_else(|| "{}".to_string()),
        retry_count: 0,
        requeued_from: None,
    };
    let (bound_time, bound_failures) =
        runtime.block_on(sandbox_only(&sandbox, &plugin, &input, args.jobs, workers));
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

    if args.fuel_overhead {
        let mut c = SandboxConfig::new(&plugins_dir);
        c.max_instances = u32::try_from(workers * 2).unwrap_or(u32::MAX).max(8);
        c.consume_fuel = false;
        let unmetered = Arc::new(Sandbox::new(c)?);
        let p = unmetered.plugin(&job_type)?;
        let (t, _) = runtime.block_on(sandbox_only(&unmetered, &p, &input, args.jobs, workers));
        writeln!(
            out,
            "fuel off:     {} runs in {:.2} s = {:.0} jobs/s; fuel metering costs {:.2}x",
            args.jobs,
            t.as_secs_f64(),
            rate(args.jobs, t),
            bound_time.as_secs_f64() / t.as_secs_f64().max(1e-9)
        )?;
    }

    // 3. End to end, through the real runner.
    let mut config = RunnerConfig::new(workers);
    config.once = true;
    config.runner_id = "bench".to_string();
    drop(store);
    let runner = Runner::new(config, runner_store(&db_path)?, Arc::clone(&sandbox));
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
    // The runner's own peak, before the latency read-back below.
    let drain_rss = peak_rss_mib();
    let store = Store::open(&db_path)?;
    let (mut to_start, mut to_finish, ok) = store.latencies(&job_type)?;
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
    if args.pickup > 0 {
        let lat = runtime.block_on(pickup(&db_path, &sandbox, &job_type, args.pickup))?;
        writeln!(
            out,
            "pickup:       {} jobs queued one at a time into an idle runner: queue→start p50 {:.1} ms  p99 {:.1} ms",
            lat.len(),
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.99) * 1e3
        )?;
    }
    if let Some(rss) = drain_rss {
        writeln!(
            out,
            "peak RSS:     {rss:.1} MiB (the whole process, up to the end of the drain)"
        )?;
    }
    Ok(())
}

/// The SQLite file `db` as a runner uses it.
fn runner_store(db: &Path) -> Result<Arc<dyn JobStore>, Error> {
    Ok(Arc::new(SqliteStore::open_with(db, Options::runner())?))
}

/// Run `input` `n` times on `workers` concurrent tasks with no database:
/// (elapsed, runs that did not end OK).
async fn sandbox_only(
    sandbox: &Arc<Sandbox>,
    plugin: &Arc<crate::sandbox::LoadedPlugin>,
    input: &JobInput,
    n: usize,
    workers: usize,
) -> (Duration, usize) {
    let limits = sandbox.limits_for(plugin, &LimitOverrides::default());
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let count = n / workers + usize::from(w < n % workers);
        let sandbox = Arc::clone(sandbox);
        let plugin = Arc::clone(plugin);
        let input = input.clone();
        tasks.spawn(async move {
            let interrupt = Interrupt::new();
            let mut failures = 0usize;
            for _ in 0..count {
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
}

/// Start an idle runner on `db`, queue `n` jobs one at a time from another
/// connection (as another process would), and return each job's
/// queue→start latency in seconds, from the row's own times.
async fn pickup(
    db: &Path,
    sandbox: &Arc<Sandbox>,
    job_type: &str,
    n: usize,
) -> Result<Vec<f64>, Error> {
    let mut config = RunnerConfig::new(1);
    config.runner_id = "bench-pickup".to_string();
    let runner = Runner::new(config, runner_store(db)?, Arc::clone(sandbox));
    let (stop, signals) = tokio::sync::mpsc::unbounded_channel();
    let daemon = tokio::spawn({
        let runner = Arc::clone(&runner);
        async move { runner.run(signals).await }
    });
    let db = db.to_path_buf();
    let job_type = job_type.to_string();
    let latencies = tokio::task::spawn_blocking(move || -> Result<Vec<f64>, Error> {
        let mut store = Store::open(&db)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            // Let the runner go idle between jobs.
            std::thread::sleep(Duration::from_millis(100));
            let id = store.queue(&NewJob::new(1, job_type.clone()))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let job = store.require(id)?;
                if job.status.is_terminal() {
                    if let (Some(q), Some(s)) = (
                        parse_time(job.queue_time.as_deref()),
                        parse_time(job.start_time.as_deref()),
                    ) {
                        out.push((s - q).as_seconds_f64());
                    }
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Input(format!("job {id} was not run within 30 s")));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::Input(format!("pickup measurement failed: {e}")))?;
    let _ = stop.send(());
    let _ = daemon.await;
    let mut latencies = latencies?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}
