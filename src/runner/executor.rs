//! Running one claimed job: the sandbox run, then its end recorded.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::metrics::{TypeStats, queue_latency};
use super::{CANCEL_PREFIX, LEASE_LOST, Runner, Running, SHUTDOWN, persist};
use crate::job::{self, Outcome, RecordStatus, Retry, SuccessorKind};
use crate::sandbox::{
    ChildJob, FailKind, History, HistoryStatus, HostEvents, Interrupt, JobInput, LogLevel,
    RawLimits, RunEnd,
};
use crate::store::driver::{self, ErrorKind, Successor};
use crate::store::{Finish, Job, JobId, NewChild, NewHistoryRecord, PluginRun, RESULT_MAX_BYTES};

/// Progress of a running job, kept in memory and written by maintenance
/// at a bounded rate.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub percent: u8,
    pub line: Option<String>,
    /// The component the run began with, until it is written.
    pub plugin: Option<PluginRun>,
    pub dirty: bool,
}

/// What the job's host calls and the runner share.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub progress: Mutex<Progress>,
    pub cancel: AtomicBool,
    /// Who asked for the cancel (set with `cancel`).
    pub cancel_by: Mutex<Option<String>>,
    history: Mutex<Vec<NewHistoryRecord>>,
}

impl Shared {
    /// The dirty progress, if any, marking it clean.
    pub fn take_progress(&self) -> Option<(u8, Option<String>, Option<PluginRun>)> {
        let mut p = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if !p.dirty {
            return None;
        }
        p.dirty = false;
        Some((p.percent, p.line.clone(), p.plugin.take()))
    }
}

/// The runner's [`HostEvents`]: nothing here touches the database.
struct Events {
    job: JobId,
    shared: Arc<Shared>,
    /// The runner is shutting down ([`Runner::stopping`]).
    stopping: Arc<AtomicBool>,
}

impl HostEvents for Events {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        let mut p = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        p.percent = percent;
        if summary.is_some() {
            p.line = summary;
        }
        p.dirty = true;
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let job = self.job.0;
        match level {
            LogLevel::Error => tracing::error!(job, "plugin: {message}"),
            LogLevel::Warn => tracing::warn!(job, "plugin: {message}"),
            LogLevel::Info => tracing::info!(job, "plugin: {message}"),
            LogLevel::Debug => tracing::debug!(job, "plugin: {message}"),
            LogLevel::Trace => tracing::trace!(job, "plugin: {message}"),
        }
    }

    fn cancel_requested(&mut self) -> bool {
        self.shared.cancel.load(Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed)
    }

    fn record_history(&mut self, r: History) {
        let status = match r.status {
            HistoryStatus::Ok => RecordStatus::Ok,
            HistoryStatus::Failed => RecordStatus::Failed,
            HistoryStatus::InProgress => RecordStatus::InProgress,
            HistoryStatus::Notice => RecordStatus::Notice,
            HistoryStatus::Queued => RecordStatus::Queued,
        };
        self.shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(NewHistoryRecord {
                co_job_id: self.job,
                record_key: r.key,
                co_person_id: r.co_person_id,
                org_identity_id: r.org_identity_id,
                comment: r.comment,
                status,
            });
    }
}

/// Run `job` (claimed and started by the claim) and record how it ended:
/// the run ([`run_job`]), then [`record`]. Holds `permit` (a worker slot)
/// while the plugin runs, not while the end is written: the next job
/// starts while the database thread records this one. A panic anywhere in
/// here ends the row `X`, "internal error: <the panic>", retried per its
/// policy; the runner goes on.
pub(super) async fn execute(
    runner: Arc<Runner>,
    job: Job,
    stats: Arc<TypeStats>,
    permit: OwnedSemaphorePermit,
) {
    let began = Instant::now();
    let task = CatchPanic(Box::pin(execute_phases(&runner, &job, &stats, permit)));
    if let Err(what) = task.await {
        runner.running().remove(&job.id);
        tracing::error!(job = job.id.0, "internal error in the job's task: {what}");
        let outcome = Outcome::Failed {
            summary: format!("internal error: {what}"),
            retry: Retry::Policy,
        };
        let item = Finish::new(job.id, outcome);
        finish(&runner, &job, &stats, item, began.elapsed()).await;
    }
}

async fn execute_phases(
    runner: &Runner,
    job: &Job,
    stats: &TypeStats,
    permit: OwnedSemaphorePermit,
) {
    let busy = runner.stats.busy();
    stats.started(queue_latency(job));
    // Debug, not info: the end's line says all of it (its `seconds` give
    // the start) and running jobs show in `watch`, `list --status GO` and
    // `serve`; at info it doubled the log's cost per job (issue 15).
    tracing::debug!(job = job.id.0, job_type = %job.job_type, co = job.co_id, "started");
    let shared = Arc::new(Shared::default());
    let interrupt = Interrupt::new();
    runner.running().insert(
        job.id,
        Arc::new(Running {
            shared: Arc::clone(&shared),
            interrupt: interrupt.clone(),
            started: Instant::now(),
            cancel_seen: Mutex::new(None),
        }),
    );
    let started = Instant::now();
    let ran = run_job(runner, job, &shared, &interrupt).await;
    runner.running().remove(&job.id);
    let ran_for = started.elapsed();
    runner.note_run_time(ran_for);
    // A short job's worker takes the next job while this end is written
    // (short jobs are claimed ahead anyway). A slow job's worker is free
    // only once its end is written, so its runner's next claim never
    // makes the rows `GO` outnumber the workers (issue 10, finding 4).
    let worker = (ran_for >= super::START_PROMPTLY).then_some((permit, busy));
    record(runner, (job, stats), &shared, ran, ran_for).await;
    drop(worker);
}

/// What a run left for its row.
struct Ran {
    end: RunEnd,
    fuel_used: u64,
    log: String,
    /// A contract 0.2 run's result and children: stored with an `OK` end.
    result: Option<String>,
    children: Vec<NewChild>,
    /// A `retry-after` failure's delay.
    retry_after: Option<u32>,
    /// The component that ran, when one was loaded.
    plugin: Option<PluginRun>,
}

impl Ran {
    /// A run that ended before the plugin was called.
    fn early(end: RunEnd) -> Ran {
        Ran {
            end,
            fuel_used: 0,
            log: String::new(),
            result: None,
            children: Vec::new(),
            retry_after: None,
            plugin: None,
        }
    }

    /// The row's end as `outcome` says, with what the run left: its log,
    /// and for an `OK` end its result and children (for any other end, the
    /// log says what was not queued).
    fn finish(self, id: JobId, outcome: Outcome, history: Vec<NewHistoryRecord>) -> Finish {
        let mut log = self.log;
        let ok = matches!(outcome, Outcome::Complete { .. });
        if !ok && !self.children.is_empty() {
            log.push_str(&format!(
                "[cojobs] {} child job(s) not queued: the run did not end OK\n",
                self.children.len()
            ));
        }
        let result = self.result.filter(|r| {
            let fits = r.len() <= RESULT_MAX_BYTES;
            if ok && !fits {
                log.push_str(&format!(
                    "[cojobs] the result was not stored: {} bytes once secrets were redacted, \
                     over the limit of {RESULT_MAX_BYTES}\n",
                    r.len()
                ));
            }
            fits
        });
        Finish {
            fuel_used: Some(i64::try_from(self.fuel_used).unwrap_or(i64::MAX)),
            log: Some(log),
            history,
            result,
            children: self.children,
            plugin: self.plugin,
            ..Finish::new(id, outcome)
        }
    }
}

/// What becomes of a row after its run.
enum After {
    /// Back to `Q` (or `CX` if a cancel was requested), with this summary.
    Release(String),
    /// Nothing: the row is no longer ours.
    Drop,
    /// End it so.
    Finish(Outcome),
}

/// Decide what a run's end means for the row: `retry_after` is a plugin's
/// `retry-after` delay.
fn after(runner: &Runner, shared: &Shared, end: RunEnd, retry_after: Option<u32>) -> After {
    let me = &runner.config.runner_id;
    let outcome = match end {
        RunEnd::Interrupted(reason) if reason == SHUTDOWN => {
            return After::Release(format!(
                "returned to the queue: runner {me} shut down before the job ended"
            ));
        }
        RunEnd::Interrupted(reason) if reason == LEASE_LOST => return After::Drop,
        RunEnd::Interrupted(reason) => Outcome::Canceled {
            summary: format!(
                "canceled by {}",
                reason.strip_prefix(CANCEL_PREFIX).unwrap_or(&reason)
            ),
        },
        // A plugin that stopped at shutdown asking to be retried: back to
        // `Q` as it was, as at the end of the grace period.
        RunEnd::Failed {
            kind: FailKind::Retry,
            message,
        } if runner.stopping.load(Ordering::Relaxed) && cancel_who(shared).is_none() => {
            return After::Release(format!(
                "returned to the queue: runner {me} shut down and the plugin asked to be retried: {message}"
            ));
        }
        other => match (other.outcome(), retry_after) {
            (
                Some(Outcome::Failed {
                    summary,
                    retry: Retry::Policy,
                }),
                Some(secs),
            ) => Outcome::Failed {
                summary,
                retry: Retry::After(i64::from(secs)),
            },
            (Some(outcome), _) => outcome,
            (None, _) => Outcome::Failed {
                summary: "the run ended without an outcome".to_string(),
                retry: Retry::Policy,
            },
        },
    };
    // A cooperative plugin that stopped because it was asked to: the row
    // ends `CX`, whatever the plugin returned.
    After::Finish(match (&outcome, cancel_who(shared)) {
        (Outcome::Canceled { .. }, _) | (_, None) => outcome,
        (_, Some(who)) => Outcome::Canceled {
            summary: format!("canceled by {who}"),
        },
    })
}

/// Write what the run's end means for the row.
async fn record(
    runner: &Runner,
    (job, stats): (&Job, &TypeStats),
    shared: &Shared,
    ran: Ran,
    elapsed: Duration,
) {
    match after(runner, shared, ran.end.clone(), ran.retry_after) {
        After::Release(summary) => runner.release(job, stats, summary).await,
        After::Drop => {
            runner.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                job = job.id.0,
                "run stopped and result dropped: the row is no longer this runner's"
            );
        }
        After::Finish(outcome) => {
            let history = std::mem::take(
                &mut *shared
                    .history
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            let item = ran.finish(job.id, outcome, history);
            finish(runner, job, stats, item, elapsed).await;
        }
    }
}

/// Write a row's end (and its successor); count and log it.
async fn finish(runner: &Runner, job: &Job, stats: &TypeStats, item: Finish, elapsed: Duration) {
    let (id, status, fuel) = (item.id, item.outcome.status(), item.fuel_used);
    let next = job::successor(&job.policy(), &item.outcome);
    let summary = item.outcome.summary().to_string();
    match finish_with_retries(runner, item).await {
        Ok(successor) => {
            let successor = successor.map(|s| s.id);
            let fuel_used = fuel.and_then(|f| u64::try_from(f).ok()).unwrap_or(0);
            stats.finished(status, elapsed, fuel_used);
            if let (Some(s), Some(next)) = (successor, next) {
                let delay = Duration::from_secs(u64::try_from(next.delay_secs).unwrap_or(0));
                runner.note_successor(id, s, next.kind == SuccessorKind::Retry, delay);
            }
            tracing::info!(
                job = id.0,
                job_type = %job.job_type,
                co = job.co_id,
                status = %status,
                seconds = format!("{:.3}", elapsed.as_secs_f64()),
                fuel = fuel.unwrap_or(0),
                successor = successor.map(|s| s.0),
                "{summary}"
            );
        }
        Err(driver::Error::Conflict(e)) => {
            runner.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(job = id.0, "result dropped: {e}");
        }
        Err(e) => {
            // The row stays `GO` and is rescued (failed, retried per its
            // policy) once its lease runs out; this runner must not go on
            // running jobs whose ends it cannot write.
            tracing::error!(
                job = id.0,
                "could not record the job's end: {e}; stopping the runner"
            );
            runner.set_fatal(e);
        }
    }
}

/// A future that turns a panic while polling it into `Err(message)`.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_text(panic.as_ref()))),
        }
    }
}

/// The message of a panic payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// Attempts at writing a job's end, when the database fails other than
/// transiently, before the runner gives up on it (a transient failure, an
/// unreachable server, is waited out for as long as it lasts).
const FINISH_ATTEMPTS: u32 = 3;

/// Write a job's end (with its successor) through the store, which
/// group-commits it with other ends where it can.
async fn finish_with_retries(
    runner: &Runner,
    finish: Finish,
) -> Result<Option<Successor>, driver::Error> {
    let me = &runner.config.runner_id;
    let items = std::slice::from_ref(&finish);
    let mut attempt = 1;
    loop {
        let written = persist("record a job's end", || runner.store.finish(me, items)).await;
        let result = written.and_then(|mut v| {
            v.pop()
                .unwrap_or_else(|| Err(driver::Error::Other("no result for the job's end".into())))
        });
        match result {
            Err(e) if e.kind() == ErrorKind::Other && attempt < FINISH_ATTEMPTS => {
                tracing::warn!(
                    job = finish.id.0,
                    attempt,
                    "writing the job's end failed, trying again: {e}"
                );
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Who asked to cancel this job, if a cancel request reached it.
fn cancel_who(shared: &Shared) -> Option<String> {
    if !shared.cancel.load(Ordering::Relaxed) {
        return None;
    }
    Some(
        shared
            .cancel_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "unknown".to_string()),
    )
}

/// Load the plugin and run the job: what the run left for the row.
async fn run_job(runner: &Runner, job: &Job, shared: &Arc<Shared>, interrupt: &Interrupt) -> Ran {
    let params = match job.params() {
        Ok(m) => serde_json::Value::Object(m).to_string(),
        Err(e) => {
            return Ran::early(RunEnd::Failed {
                kind: crate::sandbox::FailKind::Discard,
                message: format!("invalid job_params: {e}"),
            });
        }
    };
    let plugin = match runner.sandbox.plugin_async(&job.job_type).await {
        Ok(p) => p,
        Err(e) => return Ran::early(RunEnd::load_failed(&e)),
    };
    // A row written by plain SQL may hold any number: clamped, with a
    // warning, never an overflowed clock.
    let overrides = RawLimits {
        fuel: job.fuel_limit,
        memory_mib: job.memory_limit_mib,
        timeout_secs: job.timeout_secs,
    }
    .clamped(format_args!("job {}", job.id.0));
    let limits = runner.sandbox.limits_for(&plugin, &overrides);
    let ran_by = PluginRun {
        sha256: plugin.sha256.clone(),
        contract: plugin.contract().version().to_string(),
    };
    {
        // Which code runs is on the row from the next progress write on,
        // not only once the run ends.
        let mut p = shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        p.plugin = Some(ran_by.clone());
        p.dirty = true;
    }
    let input = JobInput {
        id: job.id.0,
        co_id: job.co_id,
        job_type: job.job_type.clone(),
        mode: job.job_mode.clone(),
        params,
        retry_count: u32::try_from(job.max_retry_count.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
        requeued_from: job.requeued_from_co_job_id.map(|j| j.0),
    };
    let events = Events {
        job: job.id,
        shared: Arc::clone(shared),
        stopping: Arc::clone(&runner.stopping),
    };
    let report = runner
        .sandbox
        .run(&plugin, &input, limits, Box::new(events), interrupt)
        .await;
    Ran {
        end: report.end,
        fuel_used: report.fuel_used,
        log: report.log,
        result: report.result,
        children: report.children.into_iter().map(new_child).collect(),
        retry_after: report.retry_after_secs,
        plugin: Some(ran_by),
    }
}

/// A child job as the store queues it (the sandbox checked it).
fn new_child(c: ChildJob) -> NewChild {
    NewChild {
        job_type: c.job_type,
        job_params: c.params,
        job_mode: c.mode,
        delay_secs: c.delay_secs.map_or(0, i64::from),
        max_retry: c.max_retry.map(i64::from),
        retry_interval: c.retry_interval.map(i64::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10 finding 2: a panic inside a job's task becomes an error the
    /// runner records ("internal error: …"), not a lost task.
    #[test]
    fn a_panic_while_polling_is_caught_with_its_message() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let caught = rt.block_on(CatchPanic(Box::pin(async {
            tokio::task::yield_now().await;
            let n: u64 = std::hint::black_box(u64::MAX);
            if n > 1 {
                panic!("overflow when adding duration to instant");
            }
            n
        })));
        assert_eq!(
            caught,
            Err("overflow when adding duration to instant".to_string())
        );
        let fine = rt.block_on(CatchPanic(Box::pin(async { 7 })));
        assert_eq!(fine, Ok(7));
    }
}
