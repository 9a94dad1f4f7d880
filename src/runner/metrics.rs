//! What a runner counts, and its Prometheus metrics (`cojobs run
//! --metrics ADDR`): jobs started and finished by type and outcome, run
//! times and queue latencies (histograms), fuel used, claims, rescues,
//! jobs returned to the queue or lost, workers busy.
//!
//! Counting costs the runner next to nothing: every number is a relaxed
//! atomic. The per-type counters sit in a map behind a lock, but a job
//! never looks itself up: the claim loop looks up the types of a whole
//! claimed batch under one read lock ([`RunStats::for_jobs`]) and hands
//! each job its [`TypeStats`]. The text is written at each scrape
//! (`crate::prom`), from the atomics, by the scrape's own task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::Runner;
use crate::job::JobStatus;
use crate::prom::{self, Histogram, LATENCY_BUCKETS, RUN_TIME_BUCKETS, label};
use crate::store::Job;

/// The outcomes of `cojobs_jobs_finished_total`, the terminal statuses.
const OUTCOMES: [(JobStatus, &str); 3] = [
    (JobStatus::Complete, "ok"),
    (JobStatus::Failed, "failed"),
    (JobStatus::Canceled, "canceled"),
];

/// What one job type's runs did in this runner.
#[derive(Debug)]
pub struct TypeStats {
    started: AtomicU64,
    /// By [`OUTCOMES`]' order.
    finished: [AtomicU64; 3],
    fuel: AtomicU64,
    run_time: Histogram,
    queue_latency: Histogram,
}

impl TypeStats {
    fn new() -> TypeStats {
        TypeStats {
            started: AtomicU64::new(0),
            finished: Default::default(),
            fuel: AtomicU64::new(0),
            run_time: Histogram::new(RUN_TIME_BUCKETS),
            queue_latency: Histogram::new(LATENCY_BUCKETS),
        }
    }

    /// A run began, after waiting `latency` since it was due.
    pub fn started(&self, latency: Duration) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.queue_latency.observe(latency);
    }

    /// A row ended `status` (its end written) after the plugin ran
    /// `run_time` and used `fuel`.
    pub fn finished(&self, status: JobStatus, run_time: Duration, fuel: u64) {
        self.count_end(status);
        self.run_time.observe(run_time);
        let _ = self
            .fuel
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_add(fuel))
            });
    }

    /// A row ended `CX` without its run ending (canceled while it was
    /// being returned to the queue).
    pub fn canceled_unrun(&self) {
        self.count_end(JobStatus::Canceled);
    }

    fn count_end(&self, status: JobStatus) {
        if let Some(n) = self.finished_slot(status) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn finished_as(&self, status: JobStatus) -> u64 {
        self.finished_slot(status)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// The counter of rows that ended `status`.
    fn finished_slot(&self, status: JobStatus) -> Option<&AtomicU64> {
        let i = OUTCOMES.iter().position(|(s, _)| *s == status)?;
        self.finished.get(i)
    }
}

/// What a runner did, for its metrics, its closing log line and tests.
#[derive(Debug)]
pub struct RunStats {
    /// Put back to `Q` at shutdown or when no worker was free.
    pub released: AtomicU64,
    /// Rows of dead runners this runner rescued.
    pub rescued: AtomicU64,
    /// Results dropped because the row was no longer ours.
    pub lost: AtomicU64,
    /// Claim statements run, and the rows they claimed.
    pub claims: AtomicU64,
    pub claimed: AtomicU64,
    /// Workers running a plugin now.
    busy: AtomicU64,
    /// Per job type; only the claim loop adds entries.
    types: RwLock<HashMap<String, Arc<TypeStats>>>,
}

impl Default for RunStats {
    fn default() -> Self {
        RunStats {
            released: AtomicU64::new(0),
            rescued: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            types: RwLock::new(HashMap::new()),
        }
    }
}

/// A worker counted busy until dropped.
pub struct Busy<'a>(&'a AtomicU64);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RunStats {
    /// The counters of each job's type, in order: one read lock for the
    /// batch (a write lock only for a type seen for the first time).
    pub fn for_jobs(&self, jobs: &[Job]) -> Vec<Arc<TypeStats>> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut missing = Vec::new();
        {
            let types = self.types.read().unwrap_or_else(PoisonError::into_inner);
            for (i, j) in jobs.iter().enumerate() {
                match types.get(&j.job_type) {
                    Some(t) => out.push(Arc::clone(t)),
                    None => {
                        missing.push(i);
                        out.push(Arc::new(TypeStats::new()));
                    }
                }
            }
        }
        if !missing.is_empty() {
            let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
            for i in missing {
                if let (Some(j), Some(slot)) = (jobs.get(i), out.get_mut(i)) {
                    *slot = Arc::clone(
                        types
                            .entry(j.job_type.clone())
                            .or_insert_with(|| Arc::new(TypeStats::new())),
                    );
                }
            }
        }
        out
    }

    /// One worker busy until the guard drops.
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(&self.busy)
    }

    fn each_type(&self) -> Vec<(String, Arc<TypeStats>)> {
        let types = self.types.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = types
            .iter()
            .map(|(k, t)| (k.clone(), Arc::clone(t)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn total(&self, f: impl Fn(&TypeStats) -> u64) -> u64 {
        self.each_type()
            .iter()
            .fold(0u64, |n, (_, t)| n.saturating_add(f(t)))
    }

    /// The closing log line.
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} started, {} ok, {} failed, {} canceled, {} returned to the queue, {} rescued, {} lost",
            self.total(|t| t.started.load(Ordering::Relaxed)),
            self.total(|t| t.finished_as(JobStatus::Complete)),
            self.total(|t| t.finished_as(JobStatus::Failed)),
            self.total(|t| t.finished_as(JobStatus::Canceled)),
            g(&self.released),
            g(&self.rescued),
            g(&self.lost)
        )
    }

    /// The metrics text of a runner named `runner_id` with `workers`.
    pub fn render(&self, runner_id: &str, workers: usize) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauges: [(&str, &str, u64); 2] = [
            (
                "cojobs_runner_workers",
                "Jobs this runner runs at once.",
                workers as u64,
            ),
            (
                "cojobs_runner_workers_busy",
                "Workers running a plugin now.",
                g(&self.busy),
            ),
        ];
        prom::header(&mut out, "cojobs_runner_info", "gauge", "This runner's id.");
        out.push_str(&format!(
            "cojobs_runner_info{{runner=\"{}\"}} 1\n",
            label(runner_id)
        ));
        for (name, help, v) in gauges {
            prom::header(&mut out, name, "gauge", help);
            out.push_str(&format!("{name} {v}\n"));
        }
        let counters: [(&str, &str, u64); 5] = [
            (
                "cojobs_claims_total",
                "Claim statements run.",
                g(&self.claims),
            ),
            (
                "cojobs_jobs_claimed_total",
                "Rows claimed.",
                g(&self.claimed),
            ),
            (
                "cojobs_jobs_rescued_total",
                "Rows of dead runners rescued by this runner.",
                g(&self.rescued),
            ),
            (
                "cojobs_jobs_returned_total",
                "Rows put back to the queue (shutdown, no worker free).",
                g(&self.released),
            ),
            (
                "cojobs_jobs_lost_total",
                "Results dropped: the row was no longer this runner's.",
                g(&self.lost),
            ),
        ];
        for (name, help, v) in counters {
            prom::header(&mut out, name, "counter", help);
            out.push_str(&format!("{name} {v}\n"));
        }
        self.render_types(&mut out);
        out
    }

    fn render_types(&self, out: &mut String) {
        let types = self.each_type();
        prom::header(
            out,
            "cojobs_jobs_started_total",
            "counter",
            "Runs begun, by job type.",
        );
        for (name, t) in &types {
            out.push_str(&format!(
                "cojobs_jobs_started_total{{type=\"{}\"}} {}\n",
                label(name),
                t.started.load(Ordering::Relaxed)
            ));
        }
        prom::header(
            out,
            "cojobs_jobs_finished_total",
            "counter",
            "Rows ended, by job type and outcome.",
        );
        for (name, t) in &types {
            for (i, (_, outcome)) in OUTCOMES.iter().enumerate() {
                out.push_str(&format!(
                    "cojobs_jobs_finished_total{{type=\"{}\",outcome=\"{outcome}\"}} {}\n",
                    label(name),
                    t.finished[i].load(Ordering::Relaxed)
                ));
            }
        }
        prom::header(
            out,
            "cojobs_fuel_used_total",
            "counter",
            "Fuel the plugins consumed, by job type.",
        );
        for (name, t) in &types {
            out.push_str(&format!(
                "cojobs_fuel_used_total{{type=\"{}\"}} {}\n",
                label(name),
                t.fuel.load(Ordering::Relaxed)
            ));
        }
        prom::header(
            out,
            "cojobs_job_run_seconds",
            "histogram",
            "Plugin run times, by job type.",
        );
        for (name, t) in &types {
            t.run_time.render(
                out,
                "cojobs_job_run_seconds",
                &format!("type=\"{}\"", label(name)),
            );
        }
        prom::header(
            out,
            "cojobs_job_queue_latency_seconds",
            "histogram",
            "From when a job was due to when its run began, by job type.",
        );
        for (name, t) in &types {
            t.queue_latency.render(
                out,
                "cojobs_job_queue_latency_seconds",
                &format!("type=\"{}\"", label(name)),
            );
        }
    }
}

/// How long `job` waited: from when it was due (`start_after_time`, else
/// `queue_time`) to its start as the claim wrote it, both on the
/// database's clock; zero when a time cannot be read.
pub fn queue_latency(job: &Job) -> Duration {
    let read = |t: Option<&str>| {
        t.and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
            .map(|t| t.and_utc())
    };
    let due = read(job.start_after_time.as_deref()).or_else(|| read(job.queue_time.as_deref()));
    let start: Option<DateTime<Utc>> = read(job.start_time.as_deref());
    match (due, start) {
        (Some(due), Some(start)) => (start - due).to_std().unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    }
}

/// Serve `GET /metrics` of `runner` on `listener` until the task is
/// dropped; anything else is 404.
pub async fn serve(listener: tokio::net::TcpListener, runner: Arc<Runner>) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let runner = Arc::clone(&runner);
            async move { text(&runner) }
        }),
    );
    axum::serve(listener, app).await
}

fn text(runner: &Runner) -> Response {
    let mut r = runner
        .stats
        .render(&runner.config.runner_id, runner.config.workers)
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prom::CONTENT_TYPE),
    );
    r
}
