//! The SQLite driver behind the store interface ([`super::driver::JobStore`]).
//!
//! The SQL itself lives in the [`Store`] type (`src/store/jobs.rs`,
//! `runner.rs`, `schema.rs`); this file adapts it to the interface. One
//! connection lives on a thread of its own ([`writer`]): each operation
//! travels there as a message, the runner's starts and finishes that arrive
//! together are written in one transaction (group commit), and a busy
//! database is waited out as the owner says ([`Patience`]). New jobs are
//! noticed by polling SQLite's `data_version`, which changes when another
//! connection commits ([`PICKUP_TICK`]).

mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::driver::{
    Claim, Error, JobStore, Latencies, Progress, Released, Rescued, Result, SchemaStatus,
    Successor, Wake,
};
use super::{
    Access, Activity, BUSY_TIMEOUT, CancelResult, ChainPage, Co, Finish, GroupCount, HistoryRecord,
    Job, JobId, JobQuery, ListFilter, NewHistoryRecord, NewJob, NewSchedule, NewToken, Queued,
    RunnerRecord, RunnerRow, ScheduleRow, Store, StoreError, Throttles, Token,
};
use crate::job::JobStatus;
use crate::throttle::{PauseTarget, TypeLimits};
pub use writer::Patience;
use writer::{Msg, patiently};

/// How often [`JobStore::wait_for_jobs`] looks at `data_version`.
pub const PICKUP_TICK: Duration = Duration::from_millis(20);

/// How a [`SqliteStore`] opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Read only, or read and write (a missing file is created either way).
    pub access: Access,
    /// How long one statement waits for another connection's lock.
    pub wait: Duration,
    /// What a lock held past `wait` means ([`Patience`]).
    pub patience: Patience,
}

impl Options {
    /// A command's: read and write, give up after `wait`.
    pub fn command(access: Access, wait: Duration) -> Options {
        Options {
            access,
            wait,
            patience: Patience::GiveUp,
        }
    }

    /// A runner's: read and write, wait out any lock.
    pub fn runner() -> Options {
        Options {
            access: Access::Write,
            wait: writer::BUSY_SLICE,
            patience: Patience::Wait,
        }
    }
}

/// A SQLite database file behind the store interface.
#[derive(Debug)]
pub struct SqliteStore {
    calls: mpsc::Sender<Msg>,
    /// The file and how it was opened, for the "locked" message.
    path: PathBuf,
    opts: Options,
    /// `data_version` when [`JobStore::wait_for_jobs`] last returned (or
    /// when the store was opened).
    seen: Mutex<Option<i64>>,
}

fn gone() -> Error {
    Error::Transient("the SQLite connection's thread stopped".to_string())
}

/// A stored time (`YYYY-MM-DD HH:MM:SS[.fff]`, UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Classify `e`; a lock held past a command's wait says so plainly.
fn classify(e: StoreError, path: &Path, opts: Options) -> Error {
    if e.is_busy() && opts.patience == Patience::GiveUp {
        return Error::Transient(format!(
            "database {} was locked by another process for {} s; nothing was done \
             (try again, or wait longer with --wait SECS)",
            path.display(),
            opts.wait.as_secs()
        ));
    }
    Error::from(e)
}

impl SqliteStore {
    /// Open (create and migrate if need be) the database file at `path`
    /// for reading and writing, as a command does (with the default wait).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, Options::command(Access::Write, BUSY_TIMEOUT))
    }

    /// Open the database file at `path` as `opts` say.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<SqliteStore> {
        let path = path.as_ref();
        let fail = |e| classify(e, path, opts);
        let store = Store::open_with(path, opts.access, opts.wait).map_err(fail)?;
        let version = store.data_version().map_err(fail)?;
        let calls = writer::spawn(store, opts.patience)
            .map_err(|e| Error::Other(format!("cannot start the SQLite thread: {e}")))?;
        Ok(SqliteStore {
            calls,
            path: path.to_path_buf(),
            opts,
            seen: Mutex::new(Some(version)),
        })
    }

    /// Run `op` on the connection's thread (again while the database is
    /// busy, for a runner: `what` names it in the warnings) and wait for
    /// its answer.
    async fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        mut op: impl FnMut(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let patience = self.opts.patience;
        let call: writer::Call = Box::new(move |s| {
            let r = match s {
                Ok(s) => patiently(patience, what, || op(s)),
                Err(msg) => Err(StoreError::FileGone(msg.to_string())),
            };
            let _ = reply.send(r);
        });
        self.calls.send(Msg::Call(call)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(|e| self.error(e))
    }

    fn error(&self, e: StoreError) -> Error {
        classify(e, &self.path, self.opts)
    }

    /// Send a group-committed write and wait for its answer.
    async fn send<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> Msg,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.calls.send(make(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(|e| self.error(e))
    }

    /// The successor `id` with the time it falls due.
    fn successor(s: &Store, id: JobId) -> Result<Successor, StoreError> {
        let due = s
            .get(id)?
            .and_then(|j| j.start_after_time.as_deref().and_then(parse_time))
            .unwrap_or_else(|| s.now());
        Ok(Successor { id, due })
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    fn driver(&self) -> &'static str {
        "sqlite"
    }

    async fn claim(&self, c: &Claim) -> Result<Vec<Job>> {
        let c = c.clone();
        self.call("claim jobs", move |s| s.claim_capped(&c)).await
    }

    async fn claim_one(&self, c: &Claim, id: JobId) -> Result<Option<Job>> {
        let c = c.clone();
        self.call("claim a job", move |s| s.claim_one(&c, id)).await
    }

    /// Group-committed with whatever starts and finishes are waiting.
    async fn start(
        &self,
        runner_id: &str,
        started: &[(JobId, DateTime<Utc>)],
    ) -> Result<Vec<JobId>> {
        let ids: Vec<JobId> = started.iter().map(|(id, _)| *id).collect();
        let runner_id = runner_id.to_string();
        let asked = ids.clone();
        let done = self
            .send(|reply| Msg::Start {
                runner_id,
                ids: asked,
                reply,
            })
            .await?;
        Ok(ids
            .into_iter()
            .zip(done)
            .filter_map(|(id, ok)| ok.then_some(id))
            .collect())
    }

    /// Group-committed with whatever starts and finishes are waiting.
    async fn finish(
        &self,
        runner_id: &str,
        items: &[Finish],
    ) -> Result<Vec<Result<Option<Successor>>>> {
        let runner_id = runner_id.to_string();
        let items = items.to_vec();
        let results = self
            .send(|reply| Msg::Finish {
                runner_id,
                items,
                reply,
            })
            .await?;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            out.push(match r {
                Ok(Some(id)) => self
                    .call("read a successor", move |s| Self::successor(s, id))
                    .await
                    .map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(self.error(e)),
            });
        }
        Ok(out)
    }

    async fn heartbeat(&self, runner_id: &str, lease: Duration) -> Result<Vec<JobId>> {
        let runner_id = runner_id.to_string();
        self.call("renew leases (heartbeat)", move |s| {
            s.heartbeat(&runner_id, lease)
        })
        .await
    }

    async fn rescue(&self) -> Result<Vec<Rescued>> {
        self.call("rescue expired leases", |s| {
            let mut out = Vec::new();
            for (id, successor) in s.rescue_expired()? {
                let status = s.require(id)?.status;
                if status == JobStatus::Queued {
                    out.push(Rescued::Requeued(id));
                    continue;
                }
                let successor = successor.map(|n| Self::successor(s, n)).transpose()?;
                out.push(Rescued::Ended {
                    id,
                    status,
                    successor,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn release(&self, runner_id: &str, id: JobId, summary: &str) -> Result<Released> {
        let runner_id = runner_id.to_string();
        let summary = summary.to_string();
        let status = self
            .call("return a job to the queue", move |s| {
                s.release(id, &runner_id, &summary)
            })
            .await?;
        Ok(match status {
            JobStatus::Canceled => Released::Canceled,
            _ => Released::Queued,
        })
    }

    async fn progress(&self, runner_id: &str, updates: &[Progress]) -> Result<()> {
        let runner_id = runner_id.to_string();
        let updates = updates.to_vec();
        self.call("record progress", move |s| {
            for u in &updates {
                s.set_progress(u.id, &runner_id, u.percent, u.status_line.as_deref())?;
                if let Some(plugin) = &u.plugin {
                    s.set_plugin(u.id, &runner_id, plugin)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn cancel_requests(&self, runner_id: &str) -> Result<Vec<(JobId, String)>> {
        let runner_id = runner_id.to_string();
        self.call("read cancel requests", move |s| {
            s.cancel_requests(&runner_id)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Duration>> {
        self.call("read the next due time", |s| {
            let now = s.now();
            Ok(s.next_due()?.map(|text| {
                parse_time(&text)
                    .and_then(|t| (t - now).to_std().ok())
                    .unwrap_or(Duration::ZERO)
            }))
        })
        .await
    }

    /// Polls `data_version` every [`PICKUP_TICK`]; it changes when another
    /// connection commits (this store's own commits do not change it).
    async fn wait_for_jobs(&self, timeout: Duration) -> Result<Wake> {
        let deadline = Instant::now() + timeout.min(Duration::from_secs(86_400));
        loop {
            let version = self.call("poll for new jobs", |s| s.data_version()).await?;
            let changed = {
                let mut seen = self.seen();
                let changed = seen.is_some_and(|old| old != version);
                *seen = Some(version);
                changed
            };
            if changed {
                return Ok(Wake::NewJobs);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Wake::Timeout);
            }
            tokio::time::sleep(PICKUP_TICK.min(deadline - now)).await;
        }
    }

    async fn queue(&self, job: &NewJob) -> Result<JobId> {
        let job = job.clone();
        self.call("queue a job", move |s| s.queue(&job)).await
    }

    async fn queue_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        let jobs = jobs.to_vec();
        self.call("queue jobs", move |s| s.queue_many(&jobs)).await
    }

    async fn queue_unique(&self, job: &NewJob) -> Result<Queued> {
        let job = job.clone();
        self.call("queue a job", move |s| s.queue_unique(&job))
            .await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>> {
        self.call("read a job", move |s| s.get(id)).await
    }

    async fn list(&self, filter: &ListFilter, before: Option<JobId>) -> Result<Vec<Job>> {
        let filter = filter.clone();
        self.call("list jobs", move |s| s.list_before(&filter, before))
            .await
    }

    async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>> {
        self.call("read history", move |s| s.history(id)).await
    }

    async fn add_history(&self, rec: &NewHistoryRecord) -> Result<i64> {
        let rec = rec.clone();
        self.call("add history", move |s| s.add_history(&rec)).await
    }

    async fn children(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>> {
        self.call("read a job's children", move |s| {
            s.children(id, after, limit)
        })
        .await
    }

    async fn retry_chain(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>> {
        let take = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
        self.call("read a retry chain", move |s| {
            Ok(s.retry_chain(id)?
                .into_iter()
                .filter(|j| after.is_none_or(|a| j.id > a))
                .take(take)
                .collect())
        })
        .await
    }

    /// Walks the chain reading (id, status) only; loads the page's rows.
    async fn chain_page(&self, id: JobId, around: usize) -> Result<ChainPage> {
        self.call("read a retry chain", move |s| s.chain_page(id, around))
            .await
    }

    async fn cancel(&self, id: JobId, who: &str) -> Result<CancelResult> {
        let who = who.to_string();
        let r = self.call("cancel a job", move |s| s.cancel(id, &who)).await;
        match r {
            // An ended row is a conflict, as the interface says.
            Err(Error::Input(e)) => match e.downcast::<StoreError>() {
                Ok(e) if matches!(*e, StoreError::AlreadyEnded { .. }) => Err(Error::Conflict(*e)),
                Ok(e) => Err(Error::Input(e)),
                Err(e) => Err(Error::Input(e)),
            },
            r => r,
        }
    }

    async fn prune(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let n = self
            .call("prune jobs", move |s| s.prune(older_than))
            .await?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn counts_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        self.call("count jobs", |s| s.counts_by_status()).await
    }

    async fn latencies(&self, job_type: &str) -> Result<Latencies> {
        let job_type = job_type.to_string();
        let (to_start, to_finish, ok) = self
            .call("read latencies", move |s| s.latencies(&job_type))
            .await?;
        Ok(Latencies {
            to_start,
            to_finish,
            ok,
        })
    }

    async fn add_co(&self, name: &str, description: Option<&str>) -> Result<i64> {
        let name = name.to_string();
        let description = description.map(str::to_string);
        self.call("add a CO", move |s| s.add_co(&name, description.as_deref()))
            .await
    }

    async fn list_cos(&self) -> Result<Vec<Co>> {
        self.call("list COs", |s| s.list_cos()).await
    }

    /// Opening migrated the file already (append-only, on `user_version`).
    async fn migrate(&self) -> Result<SchemaStatus> {
        self.schema_status().await
    }

    async fn schema_status(&self) -> Result<SchemaStatus> {
        let version = self
            .call("read the schema version", |s| s.schema_version())
            .await?;
        Ok(SchemaStatus {
            version,
            latest: Store::known_version(),
            applied: Vec::new(),
        })
    }

    // ---- `cojobs serve` ----

    async fn search(&self, q: &JobQuery) -> Result<Vec<Job>> {
        let q = q.clone();
        self.call("search jobs", move |s| s.search(&q)).await
    }

    async fn count_groups(&self, co_id: Option<i64>) -> Result<Vec<GroupCount>> {
        self.call("count jobs", move |s| s.count_groups(co_id))
            .await
    }

    async fn retry_now(&self, id: JobId, who: &str) -> Result<JobId> {
        let who = who.to_string();
        self.call("retry a job", move |s| s.retry_now(id, &who))
            .await
    }

    async fn add_token(&self, t: &NewToken) -> Result<i64> {
        let t = t.clone();
        self.call("add a token", move |s| s.add_token(&t)).await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        self.call("list tokens", |s| s.list_tokens()).await
    }

    async fn revoke_token(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.call("revoke a token", move |s| s.revoke_token(&name))
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let hash = hash.to_string();
        self.call("look up a token", move |s| s.token_by_hash(&hash))
            .await
    }

    async fn add_schedule(&self, s: &NewSchedule) -> Result<i64> {
        let s = s.clone();
        self.call("add a schedule", move |st| st.add_schedule(&s))
            .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.call("list schedules", |st| st.schedules()).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        let name = name.to_string();
        self.call("read a schedule", move |st| st.schedule(&name))
            .await
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()> {
        let name = name.to_string();
        self.call("pause or resume a schedule", move |st| {
            st.set_schedule_paused(&name, paused)
        })
        .await
    }

    async fn remove_schedule(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.call("remove a schedule", move |st| st.remove_schedule(&name))
            .await
    }

    async fn enqueue_due_ticks(&self) -> Result<Vec<JobId>> {
        self.call("queue due schedule ticks", |st| st.enqueue_due_ticks())
            .await
    }

    async fn set_type_limits(&self, job_type: &str, limits: &TypeLimits) -> Result<()> {
        let (job_type, limits) = (job_type.to_string(), *limits);
        self.call("record a job type's limits", move |st| {
            st.set_type_limits(&job_type, &limits)
        })
        .await
    }

    async fn set_co_max_running(&self, co_id: i64, max: Option<i64>) -> Result<()> {
        self.call("set a CO's most running jobs", move |st| {
            st.set_co_max_running(co_id, max)
        })
        .await
    }

    async fn pause(&self, target: &PauseTarget, who: &str) -> Result<bool> {
        let (target, who) = (target.clone(), who.to_string());
        self.call("pause", move |st| st.pause(&target, &who)).await
    }

    async fn resume(&self, target: &PauseTarget) -> Result<bool> {
        let target = target.clone();
        self.call("resume", move |st| st.resume(&target)).await
    }

    async fn throttles(&self) -> Result<Throttles> {
        self.call("read limits and pauses", |st| st.throttles())
            .await
    }

    // ---- runners and recent activity ----

    async fn record_runner(&self, r: &RunnerRecord) -> Result<()> {
        let r = r.clone();
        self.call("record this runner", move |s| s.record_runner(&r))
            .await
    }

    async fn remove_runner(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.call("remove this runner's row", move |s| s.remove_runner(&id))
            .await
    }

    async fn list_runners(&self) -> Result<Vec<RunnerRow>> {
        self.call("list runners", |s| s.list_runners()).await
    }

    async fn activity(&self, co_id: Option<i64>, minutes: i64) -> Result<Activity> {
        self.call("read recent activity", move |s| s.activity(co_id, minutes))
            .await
    }
}
