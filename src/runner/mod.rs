//! The runner daemon: the one place where store and sandbox meet.
//!
//! - The claim loop ([`Runner::run`]) takes due jobs in batches: for its
//!   free workers, plus as many ahead as its workers start promptly at the
//!   measured run time of recent jobs ([`START_PROMPTLY`]); it wakes
//!   promptly when jobs are queued ([`JobStore::wait_for_jobs`]: SQLite's
//!   `data_version` polling, PostgreSQL's `LISTEN/NOTIFY`), and at the next
//!   due time of delayed jobs. The next claim is sent while the workers
//!   still have jobs in hand, so its round trip overlaps their work.
//! - The claim writes the claimed jobs' start itself (no separate start
//!   write per job): the loop claims only jobs it starts at once, on free
//!   workers, or within [`START_PROMPTLY`] while jobs are short.
//! - [`executor`] runs a job in the sandbox and records its end. Whatever goes wrong in a job's task, a panic
//!   included, ends the row `X` "internal error: …".
//! - [`maintenance`] heartbeats this runner's leases (and stops any run
//!   whose row is no longer this runner's), rescues rows whose runner died,
//!   writes coalesced progress, and turns cancel requests into a
//!   cooperative stop, then an interrupt.
//! - [`metrics`] counts what the runner does (atomics only on the job
//!   path) and serves it as Prometheus text (`cojobs run --metrics`).
//! - The runner records itself in the store (`JobStore::record_runner`)
//!   when it starts and at every heartbeat, and removes its row at a clean
//!   exit, so `cojobs serve` can list the live runners.
//! - The store is an `Arc<dyn JobStore>` and nothing else: what is
//!   database-specific (SQLite's connection thread and group commit, its
//!   busy-database rule, PostgreSQL's pool and listener) is the driver's.
//!   A database that is unreachable for a while (a PostgreSQL restart) is
//!   waited out: transient errors are retried with warnings ([`persist`]),
//!   never a reason to exit nor to lose a job's end.
//!
//! Shutdown: a first signal stops claiming, makes every running plugin's
//! `cancel-requested` true and lets running jobs finish within the grace
//! period; then (or at a second signal) the rest are interrupted and put
//! back to `Q` as if never started (or end `CX` if a cancel was requested).
//!
//! `--once` ([`RunnerConfig::once`]) runs what was due when it started,
//! plus the retries of those jobs falling due within [`ONCE_FOLLOW_UP`],
//! each chain at most [`ONCE_MAX_RETRIES`] times, never a requeued copy:
//! so it ends whatever the jobs' policies.

mod executor;
mod maintenance;
pub mod metrics;

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::sandbox::{Interrupt, Sandbox};
use crate::store::driver::{self, Claim, ErrorKind, JobStore, Released, Rescued};
use crate::store::{Job, JobId, RunnerRecord};
use crate::throttle::TypeLimits;
pub use metrics::RunStats;
use metrics::TypeStats;

/// Most jobs claimed in one statement.
pub const CLAIM_BATCH: usize = 64;
/// A claimed job should start within about this long. The runner claims
/// for its free workers, and ahead of them only as many jobs as its workers
/// get through in this time at the average run time of recent jobs: many
/// when jobs take microseconds (a batch per statement is what makes the
/// runner fast), none when they take seconds (a row claimed ahead would
/// wait that long, looking taken, while another runner idles). No
/// measurement yet, or a job running longer than this: none ahead.
pub const START_PROMPTLY: Duration = Duration::from_millis(100);
/// A claimed job no worker started within this long goes back to the queue
/// (for another runner, or this one once a worker is free): the jobs
/// running turned out slower than the run times it was claimed for.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(1);
/// How often an idle runner looks again while due rows are held back by a
/// limit or a pause.
pub const HELD_BACK_POLL: Duration = Duration::from_millis(250);
/// With `--once`, retries of the jobs this run ended that fall due within
/// this long are waited for and run too.
pub const ONCE_FOLLOW_UP: Duration = Duration::from_secs(60);
/// With `--once`, a job's retry chain is followed at most this many times.
pub const ONCE_MAX_RETRIES: u32 = 5;

/// How a runner is set up (`cojobs run` options).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Written on every row this runner claims.
    pub runner_id: String,
    /// Jobs run at once.
    pub workers: usize,
    /// Run what is due, then exit (see [`ONCE_FOLLOW_UP`]).
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
    format!("{}-{}", hostname(), std::process::id())
}

/// This machine's name (`localhost` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Why the runner stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] driver::Error),
}

/// A job this runner is running.
struct Running {
    shared: Arc<executor::Shared>,
    interrupt: Interrupt,
    /// When its run began (a long run stops claiming ahead).
    started: Instant,
    /// When the cancel request was first seen, and by whom.
    cancel_seen: Mutex<Option<(Instant, String)>>,
}

/// `--once` bookkeeping: what is due at start, and the retries to follow.
#[derive(Debug)]
struct Once {
    /// Only rows due by the time the run started are claimed.
    due_by: DateTime<Utc>,
    /// Retries this run will claim when due: (row, when due).
    follow_ups: Vec<(JobId, Instant)>,
    /// How many retries of its chain this run followed to reach a row.
    hops: HashMap<JobId, u32>,
}

/// The runner. Build with [`Runner::new`], drive with [`Runner::run`].
pub struct Runner {
    config: RunnerConfig,
    store: Arc<dyn JobStore>,
    sandbox: Arc<Sandbox>,
    /// Jobs in flight, for maintenance (progress, cancels, leases) and
    /// shutdown. A std mutex: held for map operations only, never across
    /// an await.
    running: Mutex<HashMap<JobId, Arc<Running>>>,
    /// Set at the first shutdown signal: every running plugin's
    /// `cancel-requested` reads it, so a cooperative plugin can stop (and
    /// return `retry`) before the grace period ends.
    stopping: Arc<AtomicBool>,
    /// Moving average of recent plugin run times, µs ([`UNMEASURED`] until
    /// a job ends): how far ahead the claim loop may claim.
    run_time_us: AtomicU64,
    /// `--once` only.
    once: Option<Mutex<Once>>,
    /// A job's end could not be written (the database failed): the claim
    /// loop stops and `run` returns this error, so `cojobs run` exits
    /// non-zero instead of running more jobs whose ends would be lost too.
    fatal: Mutex<Option<driver::Error>>,
    /// The side-file limits (`concurrency`, `rate`) this runner last copied
    /// to the database, by job type: written again only when a side file
    /// changes ([`maintenance::sync_type_limits`]). Held for map
    /// operations only, never across an await.
    type_limits: Mutex<HashMap<String, TypeLimits>>,
    /// This machine's name, for the runner's row.
    host: String,
    pub stats: RunStats,
}

/// Interrupt reasons.
const SHUTDOWN: &str = "shutdown";
const LEASE_LOST: &str = "lease lost";
const CANCEL_PREFIX: &str = "cancel:";
/// [`Runner::run_time_us`] before any job ended.
const UNMEASURED: u64 = u64::MAX;

/// The claim loop's own state.
struct Loop {
    /// One permit per worker: a job holds one while its plugin runs.
    slots: Arc<Semaphore>,
    /// The job tasks; "all done" at shutdown is this set empty.
    tasks: JoinSet<()>,
    /// Claimed (and started) jobs waiting for a worker, in claim order,
    /// with their type's counters and when they were claimed.
    ready: VecDeque<(Job, Arc<TypeStats>, Instant)>,
    signals: mpsc::UnboundedReceiver<()>,
    signals_open: bool,
    /// A shutdown signal arrived.
    signaled: bool,
    /// When the last "cannot claim" warning was logged, while the
    /// database cannot be reached.
    outage_warned: Option<Instant>,
    /// The claim in flight, if any: it runs while the workers work through
    /// the jobs in hand ([`Runner::start_claim`]).
    claiming: Option<Claiming>,
    /// The last claim found fewer due jobs than it asked for: claim again
    /// only after a worker frees up or the idle wait ends.
    exhausted: bool,
}

/// A claim running beside the workers: the jobs, and whether fewer were
/// due than asked for.
type Claiming = Pin<Box<dyn Future<Output = Result<(Vec<Job>, bool), driver::Error>> + Send>>;

impl Loop {
    /// Claimed jobs wait for a worker.
    fn has_work(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Every claimed job not handed to a worker, in claim order.
    fn take_waiting(&mut self) -> Vec<(Job, Arc<TypeStats>)> {
        self.ready.drain(..).map(|(j, t, _)| (j, t)).collect()
    }

    /// When the job that has waited longest for a worker was claimed.
    fn oldest_claim(&self) -> Option<Instant> {
        self.ready.front().map(|(_, _, at)| *at)
    }
}

/// How often a store operation that keeps failing transiently is logged.
const OUTAGE_WARN_EVERY: Duration = Duration::from_secs(10);
/// Longest pause between attempts of a transiently failing operation.
const OUTAGE_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Run `op` until it succeeds or fails other than transiently: a database
/// that cannot be reached for a while (a PostgreSQL restart, a connection
/// dropped) or, for SQLite, a lock past the driver's own patience, is
/// waited out with a warning about every 10 s naming what waits. Every
/// write of the runner names the state it expects, so an attempt whose
/// answer was lost and that is tried again writes nothing twice (it is
/// then a conflict).
pub(crate) async fn persist<T, F>(what: &str, mut op: impl FnMut() -> F) -> Result<T, driver::Error>
where
    F: Future<Output = Result<T, driver::Error>>,
{
    let start = Instant::now();
    let mut last_warning: Option<Instant> = None;
    let mut pause = Duration::from_millis(50);
    loop {
        match op().await {
            Err(e) if e.kind() == ErrorKind::Transient => {
                if last_warning.is_none_or(|w| w.elapsed() >= OUTAGE_WARN_EVERY) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        "cannot {what} ({e}); trying again ({} s so far)",
                        start.elapsed().as_secs()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(OUTAGE_MAX_PAUSE);
            }
            done => {
                if last_warning.is_some() {
                    tracing::info!(
                        "database reachable again: could {what} after {} s",
                        start.elapsed().as_secs()
                    );
                }
                return done;
            }
        }
    }
}

/// `now + d`, or a year from now if that cannot be represented.
fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

impl Runner {
    pub fn new(config: RunnerConfig, store: Arc<dyn JobStore>, sandbox: Arc<Sandbox>) -> Arc<Self> {
        let once = config.once.then(|| {
            Mutex::new(Once {
                due_by: Utc::now(),
                follow_ups: Vec::new(),
                hops: HashMap::new(),
            })
        });
        Arc::new(Runner {
            config,
            store,
            sandbox,
            running: Mutex::new(HashMap::new()),
            stopping: Arc::new(AtomicBool::new(false)),
            run_time_us: AtomicU64::new(UNMEASURED),
            once,
            fatal: Mutex::new(None),
            type_limits: Mutex::new(HashMap::new()),
            host: hostname(),
            stats: RunStats::default(),
        })
    }

    /// A claim of up to `max` rows under this runner's name, lease and
    /// cap, started by the claim itself: the runner claims only jobs it
    /// starts at once or within [`START_PROMPTLY`], so no separate start
    /// write follows.
    fn claim_spec(&self, max: usize) -> Claim {
        Claim {
            per_co: self.config.per_co,
            due_by: self.once().map(|o| o.due_by),
            start: true,
            ..Claim::new(&self.config.runner_id, max, self.config.lease)
        }
    }

    /// Write this runner's row (at start and every heartbeat), for `cojobs
    /// serve`'s list of runners. Advisory: a failure is logged, never
    /// fatal.
    async fn record_self(&self) {
        let record = RunnerRecord {
            id: self.config.runner_id.clone(),
            host: self.host.clone(),
            pid: i64::from(std::process::id()),
            workers: i64::try_from(self.config.workers).unwrap_or(i64::MAX),
            running: i64::try_from(self.running().len()).unwrap_or(i64::MAX),
            lease_secs: i64::try_from(self.config.lease.as_secs()).unwrap_or(i64::MAX),
        };
        if let Err(e) = self.store.record_runner(&record).await {
            tracing::warn!("cannot record this runner in the store: {e}");
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<JobId, Arc<Running>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn once(&self) -> Option<MutexGuard<'_, Once>> {
        self.once
            .as_ref()
            .map(|o| o.lock().unwrap_or_else(PoisonError::into_inner))
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
        signals: mpsc::UnboundedReceiver<()>,
    ) -> Result<(), RunnerError> {
        // The side files' limits are in the database before the first claim.
        maintenance::sync_type_limits(self).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let maintenance = tokio::spawn(maintenance::run(Arc::clone(self), stop_rx));
        // Jobs left `GO` by a runner that died are rescued before we start.
        if let Ok(rescued) = self.store.rescue().await {
            self.note_rescued(&rescued);
        }
        self.record_self().await;
        let mut lp = Loop {
            slots: Arc::new(Semaphore::new(self.config.workers)),
            tasks: JoinSet::new(),
            ready: VecDeque::new(),
            signals,
            signals_open: true,
            signaled: false,
            outage_warned: None,
            claiming: None,
            exhausted: false,
        };
        let result = self.claim_loop(&mut lp).await;
        self.shut_down(&mut lp).await;
        let _ = stop_tx.send(true);
        let _ = maintenance.await;
        if let Err(e) = self.store.remove_runner(&self.config.runner_id).await {
            tracing::warn!("cannot remove this runner's row from the store: {e}");
        }
        tracing::info!(
            "runner {} stopped: {}",
            self.config.runner_id,
            self.stats.line()
        );
        result
    }

    /// Claim, dispatch, wait; until a signal, `--once` is done, or a
    /// store failure. The next claim runs while the workers work through
    /// the jobs in hand, so a claim's round trip to the database is not
    /// time the workers wait.
    async fn claim_loop(self: &Arc<Self>, lp: &mut Loop) -> Result<(), RunnerError> {
        loop {
            while lp.tasks.try_join_next().is_some() {}
            if let Some(e) = self.take_fatal() {
                return Err(e.into());
            }
            if lp.claiming.is_none() && !lp.exhausted {
                self.start_claim(lp);
            }
            if lp.claiming.is_some() || lp.has_work() || !lp.exhausted {
                self.wait_for_event(lp).await?;
            } else if self.wait_idle(lp).await {
                lp.exhausted = false;
            } else {
                return Ok(());
            }
            if lp.signaled {
                return Ok(());
            }
        }
    }

    /// The database cannot be reached: warn (about every 10 s), then pause
    /// briefly, or until a signal. Running jobs go on; their ends wait for
    /// the database ([`persist`]).
    async fn outage(&self, lp: &mut Loop, e: &driver::Error) {
        let now = Instant::now();
        let warn = lp
            .outage_warned
            .is_none_or(|w| now.saturating_duration_since(w) >= OUTAGE_WARN_EVERY);
        if warn {
            lp.outage_warned = Some(now);
            tracing::warn!("cannot claim jobs ({e}); waiting for the database");
        }
        tokio::select! {
            s = lp.signals.recv(), if lp.signals_open => match s {
                Some(()) => lp.signaled = true,
                None => lp.signals_open = false,
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }

    /// Start a claim for the free workers plus [`Runner::claim_ahead`],
    /// once the jobs in hand are down to half of that (and at least one
    /// per worker): the claim's answer then arrives while the workers
    /// still have jobs.
    fn start_claim(self: &Arc<Self>, lp: &mut Loop) {
        let limit = lp.slots.available_permits() + self.claim_ahead();
        if lp.ready.len() >= (limit / 2).max(self.config.workers).min(limit) {
            return;
        }
        let want = limit - lp.ready.len();
        let me = Arc::clone(self);
        lp.claiming = Some(Box::pin(async move { me.claim_batch(want).await }));
    }

    /// Claim up to `want` due jobs (`--once`'s follow-ups first). True
    /// beside them when fewer were due.
    async fn claim_batch(&self, want: usize) -> Result<(Vec<Job>, bool), driver::Error> {
        let mut all = self.claim_follow_ups(want).await?;
        let want = want - all.len();
        let jobs = self.store.claim(&self.claim_spec(want)).await?;
        let exhausted = jobs.len() < want;
        all.extend(jobs);
        Ok((all, exhausted))
    }

    /// A claim answered: its jobs wait for workers in `lp.ready`.
    fn take_claimed(&self, lp: &mut Loop, jobs: Vec<Job>, exhausted: bool) {
        if lp.outage_warned.take().is_some() {
            tracing::info!("database reachable again: claiming jobs");
        }
        lp.exhausted = exhausted;
        self.stats.claims.fetch_add(1, Ordering::Relaxed);
        self.stats
            .claimed
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        // One lookup of the types' counters for the batch, none per job.
        let stats = self.stats.for_jobs(&jobs);
        let now = Instant::now();
        lp.ready
            .extend(jobs.into_iter().zip(stats).map(|(j, t)| (j, t, now)));
    }

    /// How many jobs to claim beyond the free workers: see
    /// [`START_PROMPTLY`].
    fn claim_ahead(&self) -> usize {
        let most = self
            .config
            .workers
            .saturating_mul(16)
            .clamp(16, CLAIM_BATCH);
        let avg = self.run_time_us.load(Ordering::Relaxed);
        let prompt = START_PROMPTLY.as_micros() as u64;
        if avg == UNMEASURED || avg >= prompt {
            return 0;
        }
        let long_run = self
            .running()
            .values()
            .any(|r| r.started.elapsed() >= START_PROMPTLY);
        if long_run {
            return 0;
        }
        let per_worker = usize::try_from(prompt / avg.max(1)).unwrap_or(usize::MAX);
        self.config.workers.saturating_mul(per_worker).min(most)
    }

    /// Fold a plugin's run time into [`Runner::run_time_us`] (weight 1/8).
    fn note_run_time(&self, d: Duration) {
        let x = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .min(UNMEASURED - 1);
        let old = self.run_time_us.load(Ordering::Relaxed);
        let new = if old == UNMEASURED {
            x
        } else {
            (old - old / 8).saturating_add(x / 8)
        };
        self.run_time_us.store(new, Ordering::Relaxed);
    }

    /// Start waiting jobs on free workers.
    fn dispatch(self: &Arc<Self>, lp: &mut Loop) {
        while lp.has_work() {
            let Ok(permit) = Arc::clone(&lp.slots).try_acquire_owned() else {
                break;
            };
            self.spawn_next(lp, permit);
        }
    }

    /// Hand the next waiting job to the worker of `permit`.
    fn spawn_next(self: &Arc<Self>, lp: &mut Loop, permit: OwnedSemaphorePermit) {
        if let Some((job, stats, _)) = lp.ready.pop_front() {
            lp.tasks
                .spawn(executor::execute(Arc::clone(self), job, stats, permit));
        }
    }

    /// Wait for what moves the loop on: a worker freeing up (a job's
    /// plugin returned; a short job's end may still be being written), the claim in
    /// flight answering, a signal, or the oldest claimed job having waited
    /// [`HOLD_AT_MOST`]. Only a claim's non-transient failure is an error.
    async fn wait_for_event(self: &Arc<Self>, lp: &mut Loop) -> Result<(), RunnerError> {
        let hold_until = lp
            .oldest_claim()
            .and_then(|at| at.checked_add(HOLD_AT_MOST));
        let held_too_long = async {
            match hold_until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        // With a claim in flight and nothing in hand, a free worker has
        // nothing to start: wait for the claim instead.
        let want_worker = lp.has_work() || lp.claiming.is_none();
        let claimed = async {
            match lp.claiming.as_mut() {
                Some(claim) => claim.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            s = lp.signals.recv(), if lp.signals_open => match s {
                Some(()) => lp.signaled = true,
                None => lp.signals_open = false,
            },
            permit = Arc::clone(&lp.slots).acquire_owned(), if want_worker => {
                lp.exhausted = false;
                if let Ok(permit) = permit {
                    self.spawn_next(lp, permit);
                }
            }
            claimed = claimed => {
                lp.claiming = None;
                match claimed {
                    Ok((jobs, exhausted)) => self.take_claimed(lp, jobs, exhausted),
                    Err(e) if e.kind() == ErrorKind::Transient => self.outage(lp, &e).await,
                    Err(e) => return Err(e.into()),
                }
                self.dispatch(lp);
            }
            () = held_too_long => {
                let summary = format!(
                    "returned to the queue: runner {} had no worker free to start it",
                    self.config.runner_id
                );
                for (job, stats) in lp.take_waiting() {
                    self.release(&job, &stats, summary.clone()).await;
                }
            }
        }
        Ok(())
    }

    /// Nothing to claim: wait for a free slot, a sign of newly queued jobs
    /// ([`JobStore::wait_for_jobs`]), the next due time, the poll interval,
    /// or a signal. False when the loop should end (a signal, or `--once`
    /// is done).
    async fn wait_idle(&self, lp: &mut Loop) -> bool {
        let wake_at = match self.idle_deadline(lp.tasks.is_empty()).await {
            Ok(Some(at)) => at,
            Ok(None) => return false,
            Err(e) => {
                self.outage(lp, &e).await;
                return !lp.signaled;
            }
        };
        let timeout = wake_at.saturating_duration_since(Instant::now());
        tokio::select! {
            s = lp.signals.recv(), if lp.signals_open => match s {
                Some(()) => {
                    lp.signaled = true;
                    return false;
                }
                None => lp.signals_open = false,
            },
            Some(_) = lp.tasks.join_next(), if !lp.tasks.is_empty() => {}
            woke = self.store.wait_for_jobs(timeout) => {
                if let Err(e) = woke {
                    self.outage(lp, &e).await;
                }
            }
        }
        !lp.signaled
    }

    /// The claim loop ended: return claimed jobs that never started, make
    /// `cancel-requested` true for running ones, and (after a signal) give
    /// them the grace period.
    async fn shut_down(&self, lp: &mut Loop) {
        if lp.signaled {
            self.stopping.store(true, Ordering::Relaxed);
            tracing::info!(
                "signal received: claiming no more jobs; {} running get {:?} to finish \
                 (their plugins' cancel-requested is now true)",
                lp.tasks.len(),
                self.config.grace
            );
        }
        // A claim in flight may have taken rows already: wait for its
        // answer, so they go back to the queue now, not after their lease.
        if let Some(claim) = lp.claiming.take() {
            match claim.await {
                Ok((jobs, exhausted)) => self.take_claimed(lp, jobs, exhausted),
                Err(e) => tracing::warn!("the last claim failed at shutdown: {e}"),
            }
        }
        for (job, stats) in lp.take_waiting() {
            let summary = format!(
                "returned to the queue: runner {} stopped before the job started",
                self.config.runner_id
            );
            self.release(&job, &stats, summary).await;
        }
        if lp.signaled {
            self.drain(&mut lp.tasks, &mut lp.signals).await;
        } else {
            while lp.tasks.join_next().await.is_some() {}
        }
    }

    /// Put a row of ours back to `Q` (or `CX`, if a cancel was requested).
    async fn release(&self, job: &Job, stats: &TypeStats, summary: String) {
        let released = persist("return a job to the queue", || {
            self.store.release(&self.config.runner_id, job.id, &summary)
        })
        .await;
        match released {
            Ok(Released::Canceled) => {
                stats.canceled_unrun();
                tracing::info!(job = job.id.0, job_type = %job.job_type, "canceled at shutdown (a cancel was requested)");
            }
            Ok(_) => {
                self.stats.released.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = job.id.0, job_type = %job.job_type, "returned to the queue");
            }
            Err(e) => {
                tracing::warn!(job = job.id.0, "could not return the job to the queue: {e}")
            }
        }
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
    fn set_fatal(&self, e: driver::Error) {
        let mut f = self.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        f.get_or_insert(e);
    }

    fn take_fatal(&self) -> Option<driver::Error> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// When to look for due jobs again; `None` means `--once` is done:
    /// nothing due at its start is left to claim, nothing runs, and no
    /// retry is to be followed.
    async fn idle_deadline(&self, idle: bool) -> Result<Option<Instant>, driver::Error> {
        let mut wake = instant_after(self.config.poll_interval);
        if let Some(due) = self.store.next_due().await? {
            // Due now yet not claimed: its type or CO is paused or at its
            // limit. Look again a little later (a row ending elsewhere makes
            // room without a sign to wake on), not in a tight loop.
            wake = wake.min(instant_after(due.max(HELD_BACK_POLL)));
        }
        if let Some(once) = self.once() {
            let next = once.follow_ups.iter().map(|(_, at)| *at).min();
            match next {
                None if idle => return Ok(None),
                None => {}
                Some(at) => wake = wake.min(at),
            }
        }
        Ok(Some(wake))
    }

    /// `--once`: claim the follow-ups that are due, up to `max`.
    async fn claim_follow_ups(&self, max: usize) -> Result<Vec<Job>, driver::Error> {
        let due: Vec<JobId> = {
            let Some(mut once) = self.once() else {
                return Ok(Vec::new());
            };
            let now = Instant::now();
            let mut due = Vec::new();
            once.follow_ups.retain(|(id, at)| {
                let take = *at <= now && due.len() < max;
                if take {
                    due.push(*id);
                }
                !take
            });
            due
        };
        let mut jobs = Vec::with_capacity(due.len());
        let spec = Claim {
            due_by: None,
            ..self.claim_spec(1)
        };
        for id in due {
            // Gone (canceled, claimed by another runner): nothing to follow.
            if let Some(job) = self.store.claim_one(&spec, id).await? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// Count rows rescued from dead runners, and (`--once`) follow their
    /// retries like its own.
    fn note_rescued(&self, rescued: &[Rescued]) {
        self.stats
            .rescued
            .fetch_add(rescued.len() as u64, Ordering::Relaxed);
        for r in rescued {
            if let Rescued::Ended {
                successor: Some(s), ..
            } = r
            {
                let delay = (s.due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                self.follow_up(s.id, 1, delay);
            }
        }
    }

    /// `--once`: a job this run ended queued `next`, a retry due in `delay`
    /// (or a requeue: `retry` false, never followed).
    fn note_successor(&self, job: JobId, next: JobId, retry: bool, delay: Duration) {
        if !retry {
            return;
        }
        let hops = self
            .once()
            .map_or(0, |o| o.hops.get(&job).copied().unwrap_or(0));
        self.follow_up(next, hops.saturating_add(1), delay);
    }

    /// `--once`: claim `id` when it falls due, if within [`ONCE_FOLLOW_UP`]
    /// and its chain was followed fewer than [`ONCE_MAX_RETRIES`] times.
    fn follow_up(&self, id: JobId, hops: u32, delay: Duration) {
        let Some(mut once) = self.once() else {
            return;
        };
        if delay <= ONCE_FOLLOW_UP && hops <= ONCE_MAX_RETRIES {
            once.follow_ups.push((id, instant_after(delay)));
            once.hops.insert(id, hops);
        }
    }
}
