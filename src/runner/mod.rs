//! The runner daemon: the one place where store and sandbox meet.
//!
//! - The claim loop ([`Runner::run`]) takes due jobs in batches, as many as
//!   there are free workers, and wakes promptly when jobs are queued: it
//!   watches SQLite's `data_version` (which changes when another process
//!   commits) every [`PICKUP_TICK`], and the next due time of delayed jobs.
//! - [`executor`] runs one job in the sandbox and records its end.
//! - [`maintenance`] heartbeats this runner's leases, rescues rows whose
//!   runner died, writes coalesced progress, and turns cancel requests into
//!   a cooperative stop, then an interrupt.
//! - [`db`] owns the one database connection, on its own thread, and
//!   writes finishes that arrive together in one transaction.
//!
//! Shutdown: a first signal stops claiming and lets running jobs finish
//! within the grace period; then (or at a second signal) the rest are
//! interrupted and put back to `Q` as if never started.

mod db;
mod executor;
mod maintenance;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::sandbox::{Interrupt, Sandbox};
use crate::store::{Job, JobId, Store, StoreError};

pub use db::{Db, Rescued};

/// How often an idle runner checks for newly queued jobs.
pub const PICKUP_TICK: Duration = Duration::from_millis(20);
/// Most jobs claimed in one statement.
pub const CLAIM_BATCH: usize = 64;
/// With `--once`, successors (retries, requeues) this run queued that fall
/// due within this long are waited for and run too.
pub const ONCE_FOLLOW_UP: Duration = Duration::from_secs(60);

/// How a runner is set up (`cojobs run` options).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Written on every row this runner claims.
    pub runner_id: String,
    /// Jobs run at once.
    pub workers: usize,
    /// Run what is due, then exit.
    pub once: bool,
    /// How often to look for due jobs even when nothing signals new ones.
    pub poll_interval: Duration,
    /// How long a claimed row stays ours without a heartbeat.
    pub lease: Duration,
    /// How long running jobs may finish after a shutdown signal.
    pub grace: Duration,
    /// Most jobs of one CO running at once in this process.
    pub per_co: Option<usize>,
}

impl RunnerConfig {
    pub fn new(workers: usize) -> Self {
        RunnerConfig {
            runner_id: default_runner_id(),
            workers: workers.max(1),
            once: false,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            per_co: None,
        }
    }
}

/// `<host>-<pid>`: unique among live runners, readable in `start_summary`.
pub fn default_runner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}

/// What a runner did, for its closing log line and for tests.
#[derive(Debug, Default)]
pub struct RunStats {
    pub started: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub canceled: AtomicU64,
    /// Put back to `Q` at shutdown.
    pub released: AtomicU64,
    /// Rows of dead runners this runner rescued.
    pub rescued: AtomicU64,
    /// Results dropped because the row was no longer ours.
    pub lost: AtomicU64,
}

impl RunStats {
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} started, {} ok, {} failed, {} canceled, {} returned to the queue, {} rescued, {} lost",
            g(&self.started),
            g(&self.ok),
            g(&self.failed),
            g(&self.canceled),
            g(&self.released),
            g(&self.rescued),
            g(&self.lost)
        )
    }
}

/// Why the runner stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the database thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A job this runner is running.
struct Running {
    shared: Arc<executor::Shared>,
    interrupt: Interrupt,
    /// When the cancel request was first seen, and by whom.
    cancel_seen: Mutex<Option<(Instant, String)>>,
}

/// The runner. Build with [`Runner::new`], drive with [`Runner::run`].
pub struct Runner {
    config: RunnerConfig,
    db: Db,
    sandbox: Arc<Sandbox>,
    /// Jobs in flight, for maintenance (progress, cancels) and shutdown.
    /// A std mutex: held for map operations only, never across an await.
    running: Mutex<HashMap<JobId, Arc<Running>>>,
    /// Latest due time of a near successor this run queued (`--once`).
    follow_up: Mutex<Option<Instant>>,
    /// A job's end could not be written (the database failed): the claim
    /// loop stops and `run` returns this error, so `cojobs run` exits
    /// non-zero instead of running more jobs whose ends would be lost too.
    fatal: Mutex<Option<StoreError>>,
    pub stats: RunStats,
}

/// Interrupt reasons.
const SHUTDOWN: &str = "shutdown";
const CANCEL_PREFIX: &str = "cancel:";

impl Runner {
    pub fn new(
        config: RunnerConfig,
        store: Store,
        sandbox: Arc<Sandbox>,
    ) -> Result<Arc<Self>, RunnerError> {
        let db = Db::start(store, config.runner_id.clone(), config.lease)?;
        Ok(Arc::new(Runner {
            config,
            db,
            sandbox,
            running: Mutex::new(HashMap::new()),
            follow_up: Mutex::new(None),
            fatal: Mutex::new(None),
            stats: RunStats::default(),
        }))
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<Running>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn interrupt_all(&self, reason: &str) {
        for r in self.running().values() {
            r.interrupt.fire(reason);
        }
    }

    /// Run until `signals` delivers a shutdown signal (or, with `once`,
    /// until nothing is due or running). A second signal interrupts the
    /// running jobs at once.
    pub async fn run(
        self: &Arc<Self>,
        mut signals: mpsc::UnboundedReceiver<()>,
    ) -> Result<(), RunnerError> {
        let slots = Arc::new(Semaphore::new(self.config.workers));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let maintenance = tokio::spawn(maintenance::run(Arc::clone(self), stop_rx));
        // Jobs left `GO` by a runner that died are rescued before we start.
        if let Ok(rescued) = self.db.rescue().await {
            self.note_rescued(&rescued);
        }
        let mut version = self.db.data_version().await?;
        let mut signaled = false;
        let mut signals_open = true;
        // Claimed jobs waiting for a free worker: claiming a batch at a time
        // costs a fraction of claiming one job per free slot.
        let mut ready: VecDeque<Job> = VecDeque::new();
        let prefetch = (self.config.workers * 16).clamp(16, CLAIM_BATCH);
        let result = loop {
            while tasks.try_join_next().is_some() {}
            if let Some(e) = self.take_fatal() {
                break Err(e.into());
            }
            let mut exhausted = false;
            if ready.len() < self.config.workers.min(prefetch) {
                let want = prefetch - ready.len();
                match self.db.claim(want, self.config.per_co).await {
                    Ok(jobs) => {
                        exhausted = jobs.len() < want;
                        ready.extend(jobs);
                    }
                    Err(e) => break Err(e.into()),
                }
            }
            while !ready.is_empty() {
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    break;
                };
                if let Some(job) = ready.pop_front() {
                    self.stats.started.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(executor::execute(Arc::clone(self), job, permit));
                }
            }
            if !ready.is_empty() || !exhausted {
                // Work in hand: wait for a worker to free up (a job's plugin
                // returned; its end may still be being written), or a signal.
                tokio::select! {
                    s = signals.recv(), if signals_open => match s {
                        Some(()) => { signaled = true; }
                        None => signals_open = false,
                    },
                    permit = Arc::clone(&slots).acquire_owned() => {
                        if let (Ok(permit), Some(job)) = (permit, ready.pop_front()) {
                            self.stats.started.fetch_add(1, Ordering::Relaxed);
                            tasks.spawn(executor::execute(Arc::clone(self), job, permit));
                        }
                    }
                }
                if signaled {
                    break Ok(());
                }
                if let Some(e) = self.take_fatal() {
                    break Err(e.into());
                }
                continue;
            }
            let wake_at = match self.idle_deadline(tasks.is_empty()).await {
                Ok(Some(t)) => t,
                Ok(None) => break Ok(()), // --once and nothing left
                Err(e) => break Err(e.into()),
            };
            // Wait for: a free slot, a newly queued job, the next due time,
            // the poll interval, or a signal.
            let woke = loop {
                tokio::select! {
                    s = signals.recv(), if signals_open => match s {
                        Some(()) => { signaled = true; break false; }
                        None => signals_open = false,
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => break true,
                    _ = tokio::time::sleep(PICKUP_TICK) => {
                        if Instant::now() >= wake_at { break true; }
                        match self.db.data_version().await {
                            Ok(v) if v != version => { version = v; break true; }
                            Ok(_) => {}
                            Err(e) => tracing::warn!("cannot poll the database: {e}"),
                        }
                    }
                }
            };
            if !woke {
                break Ok(());
            }
        };
        if signaled {
            tracing::info!(
                "signal received: claiming no more jobs; {} running get {:?} to finish",
                tasks.len(),
                self.config.grace
            );
        }
        // Claimed but never started: back to the queue, untouched.
        for job in ready.drain(..) {
            let summary = format!(
                "returned to the queue: runner {} stopped before the job started",
                self.config.runner_id
            );
            if let Err(e) = self.db.release(job.id, summary).await {
                tracing::warn!(job = job.id.0, "could not return the job to the queue: {e}");
            }
        }
        if signaled {
            self.drain(&mut tasks, &mut signals).await;
        } else {
            while tasks.join_next().await.is_some() {}
        }
        let _ = stop_tx.send(true);
        let _ = maintenance.await;
        tracing::info!(
            "runner {} stopped: {}",
            self.config.runner_id,
            self.stats.line()
        );
        result
    }

    /// After a shutdown signal: let running jobs finish within the grace
    /// period, then interrupt them (a second signal does so at once).
    async fn drain(&self, tasks: &mut JoinSet<()>, signals: &mut mpsc::UnboundedReceiver<()>) {
        let grace = tokio::time::sleep(self.config.grace);
        tokio::pin!(grace);
        let mut interrupted = false;
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = &mut grace, if !interrupted => {
                    tracing::warn!("grace period over: returning {} running jobs to the queue", tasks.len());
                    self.interrupt_all(SHUTDOWN);
                    interrupted = true;
                }
                Some(_) = signals.recv(), if !interrupted => {
                    tracing::warn!("second signal: returning {} running jobs to the queue now", tasks.len());
                    self.interrupt_all(SHUTDOWN);
                    interrupted = true;
                }
            }
        }
    }

    /// Record a store failure that must stop the runner (the first wins).
    fn set_fatal(&self, e: StoreError) {
        let mut f = self.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        f.get_or_insert(e);
    }

    fn take_fatal(&self) -> Option<StoreError> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// When to look for due jobs again; `None` means `--once` is done.
    async fn idle_deadline(&self, idle: bool) -> Result<Option<Instant>, StoreError> {
        let now = Instant::now();
        let mut wake = now + self.config.poll_interval;
        let next_due = self.db.next_due().await?;
        let due_in = next_due.as_deref().map(until_due);
        if let Some(d) = due_in {
            wake = wake.min(now + d);
        }
        if self.config.once && idle {
            let follow_up = *self
                .follow_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due_now = due_in.is_some_and(|d| d.is_zero());
            let waiting_for_follow_up = follow_up.is_some_and(|f| f > now);
            if !due_now && !waiting_for_follow_up {
                return Ok(None);
            }
            if let Some(f) = follow_up.filter(|f| *f > now) {
                wake = wake.min(f);
            }
        }
        Ok(Some(wake))
    }

    /// Count rows rescued from dead runners, and remember their retries
    /// (for `--once`, which runs them like its own successors).
    fn note_rescued(&self, rescued: &[Rescued]) {
        self.stats
            .rescued
            .fetch_add(rescued.len() as u64, Ordering::Relaxed);
        for r in rescued {
            if let Some((_, due)) = &r.successor {
                self.note_due_in(due.as_deref().map_or(Duration::ZERO, until_due));
            }
        }
    }

    /// Remember a successor due `delay_secs` from now (for `--once`).
    fn note_successor(&self, delay_secs: i64) {
        let Ok(secs) = u64::try_from(delay_secs) else {
            return;
        };
        self.note_due_in(Duration::from_secs(secs));
    }

    /// Remember a successor due `delay` from now (for `--once`).
    fn note_due_in(&self, delay: Duration) {
        if delay <= ONCE_FOLLOW_UP {
            let due = Instant::now() + delay;
            let mut f = self
                .follow_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *f = Some(f.map_or(due, |old| old.max(due)));
        }
    }
}

/// How long until a stored due time (`YYYY-MM-DD HH:MM:SS[.fff]`, UTC);
/// zero if past or unreadable.
fn until_due(text: &str) -> Duration {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .and_then(|t| (t.and_utc() - Utc::now()).to_std().ok())
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times() {
        assert_eq!(until_due("2000-01-01 00:00:00"), Duration::ZERO);
        assert_eq!(until_due(""), Duration::ZERO);
        let later = (Utc::now() + chrono::TimeDelta::seconds(100))
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string();
        assert!(until_due(&later) > Duration::from_secs(90));
    }
}
