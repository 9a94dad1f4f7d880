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
//!
//! Beside every rate: CPU time and context switches per job
//! ([`measure`]), and at the top the machine (CPU model, cores, load).
//! `--json` prints all of it as one JSON object ([`Report`]) instead, for a
//! script that compares runs.

mod measure;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta, Utc};
use serde::Serialize;

use measure::{Machine, Meter, Phase};

use super::{Error, Global, Target};
use crate::runner::{Runner, RunnerConfig};
use crate::sandbox::{
    Interrupt, JobInput, LimitOverrides, LoadedPlugin, NoEvents, RunEnd, Sandbox, SandboxConfig,
};
use crate::store::NewJob;
use crate::store::driver::JobStore;

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
    /// Keep the database here instead of a scratch one: a SQLite file that
    /// must not exist, or a PostgreSQL connection string whose database
    /// holds no jobs (its rows stay after the bench).
    #[arg(long = "bench-db", value_name = "PATH|URL")]
    bench_db: Option<PathBuf>,
    /// Print every figure as one JSON object (and nothing else) instead of
    /// text.
    #[arg(long)]
    json: bool,
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

/// p50 and p99 of a sorted sample.
#[derive(Debug, Clone, Copy, Serialize)]
struct Percentiles {
    p50: f64,
    p99: f64,
}

impl Percentiles {
    fn of(sorted: &[f64], scale: f64) -> Percentiles {
        Percentiles {
            p50: percentile(sorted, 0.5) * scale,
            p99: percentile(sorted, 0.99) * scale,
        }
    }
}

/// Every figure of one bench run: what `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    job_type: String,
    jobs: usize,
    workers: usize,
    delayed: usize,
    /// "pooling" or "on-demand".
    allocator: &'static str,
    /// "sqlite" or "postgres".
    database: &'static str,
    queue: Option<Phase>,
    sandbox_only: Option<Phase>,
    /// Sandbox-only runs that did not end OK.
    sandbox_only_failures: usize,
    /// `--fuel-overhead`: the sandbox-only runs without fuel metering.
    fuel_off: Option<Phase>,
    /// Sandbox-only time with fuel over without.
    fuel_overhead: Option<f64>,
    end_to_end: Option<Phase>,
    /// End-to-end rate over the sandbox-only rate.
    end_to_end_of_bound: Option<f64>,
    rows_ok: usize,
    queue_to_start_s: Option<Percentiles>,
    queue_to_finish_s: Option<Percentiles>,
    pickup_jobs: usize,
    /// queue→start of jobs queued one at a time into an idle runner.
    pickup_ms: Option<Percentiles>,
    /// The whole process's peak, up to the end of the drain.
    peak_rss_mib: Option<f64>,
}

/// What one bench run measures, checked before anything is written.
struct Plan {
    jobs: usize,
    workers: usize,
    cores: usize,
    params: Option<String>,
    delayed: usize,
    pickup: usize,
    fuel_overhead: bool,
    json: bool,
    plugins_dir: PathBuf,
    job_type: String,
    /// `--bench-db`, or a file in `scratch`.
    db: PathBuf,
    /// Removed when the bench ends (the scratch database, a copied plugin).
    _scratch: tempfile::TempDir,
}

impl Plan {
    fn new(g: &Global, args: Args) -> Result<Plan, Error> {
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
        let db = match args.bench_db {
            Some(p) if matches!(Target::of(&p), Target::Sqlite(_)) && p.exists() => {
                return Err(Error::Input(format!(
                    "{} exists: bench needs a new database",
                    p.display()
                )));
            }
            Some(p) => p,
            None => scratch.path().join("bench.db"),
        };
        Ok(Plan {
            jobs: args.jobs,
            workers,
            cores,
            params,
            delayed: args.delayed,
            pickup: args.pickup,
            fuel_overhead: args.fuel_overhead,
            json: args.json,
            plugins_dir,
            job_type,
            db,
            _scratch: scratch,
        })
    }

    fn target(&self) -> Target<'_> {
        Target::of(&self.db)
    }

    /// The sandbox the bench and its runner share.
    fn sandbox(&self, consume_fuel: bool) -> Result<Arc<Sandbox>, Error> {
        let mut config = SandboxConfig::new(&self.plugins_dir);
        config.max_instances = u32::try_from(self.workers.saturating_mul(2))
            .unwrap_or(u32::MAX)
            .max(8);
        config.consume_fuel = consume_fuel;
        Ok(Arc::new(Sandbox::new(config)?))
    }

    fn input(&self) -> JobInput {
        JobInput {
            id: 0,
            co_id: 1,
            job_type: self.job_type.clone(),
            mode: None,
            params: self.params.clone().unwrap_or_else(|| "{}".to_string()),
            retry_count: 0,
            requeued_from: None,
        }
    }

    fn template(&self) -> NewJob {
        let mut job = NewJob::new(1, self.job_type.clone());
        job.job_params = self.params.clone();
        job
    }
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let plan = Plan::new(g, args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.cores.max(2))
        .enable_all()
        .build()?;
    if plan.json {
        let report = runtime.block_on(bench(&plan, &mut std::io::sink()))?;
        serde_json::to_writer(&mut *out, &report).map_err(std::io::Error::other)?;
        writeln!(out)?;
        Ok(())
    } else {
        runtime.block_on(bench(&plan, out)).map(drop)
    }
}

/// The four phases, each printing its lines to `out` and filling its part
/// of the report.
async fn bench(plan: &Plan, out: &mut dyn Write) -> Result<Report, Error> {
    let sandbox = plan.sandbox(true)?;
    let plugin = sandbox.plugin(&plan.job_type)?;
    let mut report = Report::new(plan, &sandbox);
    let db_name = match plan.target() {
        Target::Sqlite(path) => path.display().to_string(),
        // A connection string may hold a password: never printed.
        Target::Postgres(_) => "postgres (--bench-db)".to_string(),
    };
    writeln!(
        out,
        "cojobs bench: {} jobs of '{}', {} workers, {} allocator, db {db_name}",
        plan.jobs, plan.job_type, plan.workers, report.allocator,
    )?;
    writeln!(out, "{}", report.machine.line())?;
    let store = plan.target().runner_store().await?;
    require_empty(store.as_ref()).await?;
    queue_phase(plan, store.as_ref(), &mut report, out).await?;
    sandbox_phase(plan, &sandbox, &plugin, &mut report, out).await?;
    drain_phase(plan, &store, &sandbox, &mut report, out).await?;
    // The runner's own peak, before the latency read-back below.
    report.peak_rss_mib = peak_rss_mib();
    latency_phase(plan, store.as_ref(), &sandbox, &mut report, out).await?;
    if let Some(rss) = report.peak_rss_mib {
        writeln!(
            out,
            "peak RSS:     {rss:.1} MiB (the whole process, up to the end of the drain)"
        )?;
    }
    Ok(report)
}

impl Report {
    /// The run's settings, before any figure.
    fn new(plan: &Plan, sandbox: &Sandbox) -> Report {
        Report {
            machine: Machine::now(plan.cores),
            job_type: plan.job_type.clone(),
            jobs: plan.jobs,
            workers: plan.workers,
            delayed: plan.delayed,
            allocator: if sandbox.pooling() {
                "pooling"
            } else {
                "on-demand"
            },
            database: match plan.target() {
                Target::Sqlite(_) => "sqlite",
                Target::Postgres(_) => "postgres",
            },
            queue: None,
            sandbox_only: None,
            sandbox_only_failures: 0,
            fuel_off: None,
            fuel_overhead: None,
            end_to_end: None,
            end_to_end_of_bound: None,
            rows_ok: 0,
            queue_to_start_s: None,
            queue_to_finish_s: None,
            pickup_jobs: 0,
            pickup_ms: None,
            peak_rss_mib: None,
        }
    }
}

/// A bench counts every row of its job type: it refuses a database that
/// already holds jobs (a PostgreSQL one is not created by the bench).
async fn require_empty(store: &dyn JobStore) -> Result<(), Error> {
    let rows: i64 = store.counts_by_status().await?.iter().map(|(_, n)| n).sum();
    if rows > 0 {
        return Err(Error::Input(format!(
            "the bench database holds {rows} jobs already: bench needs an empty one"
        )));
    }
    Ok(())
}

/// 1. Queue `--delayed` jobs due tomorrow, then `--jobs` due now, in
///    transactions of [`QUEUE_CHUNK`] so the bench's own memory does not
///    grow with `--jobs` (the runner's is what it measures).
async fn queue_phase(
    plan: &Plan,
    store: &dyn JobStore,
    report: &mut Report,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let template = plan.template();
    if plan.delayed > 0 {
        let mut later = template.clone();
        later.start_after = Some(Utc::now() + TimeDelta::days(1));
        queue_n(store, &later, plan.delayed).await?;
        writeln!(out, "queued {} jobs due tomorrow", plan.delayed)?;
    }
    let meter = Meter::start();
    queue_n(store, &template, plan.jobs).await?;
    let q = meter.stop(plan.jobs, 1);
    writeln!(
        out,
        "queue:        {} jobs in {:.2} s = {:.0} jobs/s (transactions of {QUEUE_CHUNK})",
        plan.jobs, q.seconds, q.jobs_per_s
    )?;
    writeln!(out, "{}", q.cost_line())?;
    report.queue = Some(q);
    Ok(())
}

async fn queue_n(store: &dyn JobStore, job: &NewJob, n: usize) -> Result<(), Error> {
    let chunk = vec![job.clone(); n.min(QUEUE_CHUNK)];
    let mut left = n;
    while left > 0 {
        let k = left.min(QUEUE_CHUNK);
        store.queue_many(&chunk[..k]).await?;
        left -= k;
    }
    Ok(())
}

/// 2. The sandbox alone: the bound end to end is measured against (and,
///    with `--fuel-overhead`, the same without fuel metering).
async fn sandbox_phase(
    plan: &Plan,
    sandbox: &Arc<Sandbox>,
    plugin: &Arc<LoadedPlugin>,
    report: &mut Report,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let input = plan.input();
    let meter = Meter::start();
    let failures = sandbox_only(sandbox, plugin, &input, plan.jobs, plan.workers).await;
    let bound = meter.stop(plan.jobs, plan.workers);
    writeln!(
        out,
        "sandbox only: {} runs in {:.2} s = {:.0} jobs/s ({:.1} µs per job per worker){}",
        plan.jobs,
        bound.seconds,
        bound.jobs_per_s,
        bound.us_per_job_per_worker,
        if failures > 0 {
            format!(", {failures} did not end OK")
        } else {
            String::new()
        }
    )?;
    writeln!(out, "{}", bound.cost_line())?;
    report.sandbox_only = Some(bound);
    report.sandbox_only_failures = failures;
    if plan.fuel_overhead {
        let unmetered = plan.sandbox(false)?;
        let p = unmetered.plugin(&plan.job_type)?;
        let meter = Meter::start();
        sandbox_only(&unmetered, &p, &input, plan.jobs, plan.workers).await;
        let off = meter.stop(plan.jobs, plan.workers);
        let overhead = bound.seconds / off.seconds.max(1e-9);
        writeln!(
            out,
            "fuel off:     {} runs in {:.2} s = {:.0} jobs/s; fuel metering costs {overhead:.2}x",
            plan.jobs, off.seconds, off.jobs_per_s,
        )?;
        writeln!(out, "{}", off.cost_line())?;
        report.fuel_off = Some(off);
        report.fuel_overhead = Some(overhead);
    }
    Ok(())
}

/// 3. End to end: the real runner (`run --once`: claim, sandbox, finish,
///    all durable) drains the queue.
async fn drain_phase(
    plan: &Plan,
    store: &Arc<dyn JobStore>,
    sandbox: &Arc<Sandbox>,
    report: &mut Report,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut config = RunnerConfig::new(plan.workers);
    config.once = true;
    config.runner_id = "bench".to_string();
    let runner = Runner::new(config, Arc::clone(store), Arc::clone(sandbox));
    let meter = Meter::start();
    let (_keep, rx) = tokio::sync::mpsc::unbounded_channel();
    runner.run(rx).await?;
    let e2e = meter.stop(plan.jobs, plan.workers);
    let of_bound = report
        .sandbox_only
        .map(|b| e2e.jobs_per_s / b.jobs_per_s.max(1e-9));
    writeln!(
        out,
        "end to end:   {} jobs in {:.2} s = {:.0} jobs/s ({:.0}% of the sandbox-only bound)",
        plan.jobs,
        e2e.seconds,
        e2e.jobs_per_s,
        100.0 * of_bound.unwrap_or(0.0)
    )?;
    writeln!(out, "{}", e2e.cost_line())?;
    report.end_to_end = Some(e2e);
    report.end_to_end_of_bound = of_bound;
    Ok(())
}

/// 4. Latency, from the rows' own times; then pickup into an idle runner.
async fn latency_phase(
    plan: &Plan,
    store: &dyn JobStore,
    sandbox: &Arc<Sandbox>,
    report: &mut Report,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut l = store.latencies(&plan.job_type).await?;
    l.to_start.sort_by(f64::total_cmp);
    l.to_finish.sort_by(f64::total_cmp);
    let (start, finish) = (
        Percentiles::of(&l.to_start, 1.0),
        Percentiles::of(&l.to_finish, 1.0),
    );
    writeln!(out, "rows OK:      {} of {}", l.ok, plan.jobs)?;
    writeln!(
        out,
        "queue→start:  p50 {:.3} s  p99 {:.3} s",
        start.p50, start.p99
    )?;
    writeln!(
        out,
        "queue→finish: p50 {:.3} s  p99 {:.3} s",
        finish.p50, finish.p99
    )?;
    report.rows_ok = l.ok;
    report.queue_to_start_s = Some(start);
    report.queue_to_finish_s = Some(finish);
    if plan.pickup > 0 {
        let lat = pickup(plan, sandbox).await?;
        let p = Percentiles::of(&lat, 1e3);
        writeln!(
            out,
            "pickup:       {} jobs queued one at a time into an idle runner: queue→start p50 {:.1} ms  p99 {:.1} ms",
            lat.len(),
            p.p50,
            p.p99
        )?;
        report.pickup_jobs = lat.len();
        report.pickup_ms = Some(p);
    }
    Ok(())
}

/// Run `input` `n` times on `workers` concurrent tasks with no database:
/// the number of runs that did not end OK.
async fn sandbox_only(
    sandbox: &Arc<Sandbox>,
    plugin: &Arc<LoadedPlugin>,
    input: &JobInput,
    n: usize,
    workers: usize,
) -> usize {
    let limits = sandbox.limits_for(plugin, &LimitOverrides::default());
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
    failures
}

/// Start an idle runner, queue `plan.pickup` jobs one at a time through
/// another connection (as another process would), and return each job's
/// queue→start latency in seconds, from the row's own times, sorted.
async fn pickup(plan: &Plan, sandbox: &Arc<Sandbox>) -> Result<Vec<f64>, Error> {
    let mut config = RunnerConfig::new(1);
    config.runner_id = "bench-pickup".to_string();
    let runner = Runner::new(
        config,
        plan.target().runner_store().await?,
        Arc::clone(sandbox),
    );
    let (stop, signals) = tokio::sync::mpsc::unbounded_channel();
    let daemon = tokio::spawn({
        let runner = Arc::clone(&runner);
        async move { runner.run(signals).await }
    });
    let queuer = plan.target().runner_store().await?;
    let latencies = pickup_each(queuer.as_ref(), &plan.job_type, plan.pickup).await;
    let _ = stop.send(());
    let _ = daemon.await;
    let mut latencies = latencies?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

async fn pickup_each(store: &dyn JobStore, job_type: &str, n: usize) -> Result<Vec<f64>, Error> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // Let the runner go idle between jobs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = store.queue(&NewJob::new(1, job_type.to_string())).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = store
                .get(id)
                .await?
                .ok_or(crate::store::StoreError::NoJob(id))?;
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
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(out)
}
