//! The SQLite driver behind the store interface ([`super::driver::JobStore`]).
//!
//! The SQL itself lives in the [`Store`] type (`src/store/jobs.rs`,
//! `runner.rs`, `schema.rs`); this file adapts it to the interface.
//! rusqlite's `Connection` is not `Sync` and every call blocks, so a
//! [`SqliteStore`] owns one connection on a thread of its own and each
//! operation travels there as a closure: the async runtime never blocks.
//! New jobs are noticed by polling SQLite's `data_version`, which changes
//! when another connection commits ([`PICKUP_TICK`]).
//!
//! The runner still drives its own connection thread (`src/runner/db.rs`,
//! with group commit and the busy-database rule); moving it behind this
//! driver is the next step of issue 11 (docs/design.md, "The store
//! interface").

use std::path::Path;
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::driver::{
    Claim, Error, JobStore, Latencies, Progress, Released, Rescued, Result, SchemaStatus,
    Successor, Wake,
};
use super::{
    CancelResult, Co, Finish, HistoryRecord, Job, JobId, ListFilter, NewHistoryRecord, NewJob,
    NewSchedule, Queued, ScheduleRow, Store, StoreError,
};
use crate::job::JobStatus;

/// How often [`JobStore::wait_for_jobs`] looks at `data_version`.
pub const PICKUP_TICK: Duration = Duration::from_millis(20);

/// An operation to run on the connection's thread.
type Call = Box<dyn FnOnce(&mut Store) + Send>;

/// A SQLite database file behind the store interface.
#[derive(Debug)]
pub struct SqliteStore {
    calls: mpsc::Sender<Call>,
    /// `data_version` when [`JobStore::wait_for_jobs`] last returned.
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

impl SqliteStore {
    /// Open (create and migrate if need be) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let store = Store::open(path)?;
        let (calls, rx) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("cojobs-sqlite".into())
            .spawn(move || {
                let mut store = store;
                while let Ok(call) = rx.recv() {
                    call(&mut store);
                }
            })
            .map_err(|e| Error::Other(format!("cannot start the SQLite thread: {e}")))?;
        Ok(SqliteStore {
            calls,
            seen: Mutex::new(None),
        })
    }

    /// Run `op` on the connection's thread and wait for its answer.
    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.calls
            .send(Box::new(move |s: &mut Store| {
                let _ = reply.send(op(s));
            }))
            .map_err(|_| gone())?;
        Ok(answer.await.map_err(|_| gone())??)
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
        self.call(move |s| s.claim_capped(&c)).await
    }

    async fn start(
        &self,
        runner_id: &str,
        started: &[(JobId, DateTime<Utc>)],
    ) -> Result<Vec<JobId>> {
        let runner_id = runner_id.to_string();
        let ids: Vec<JobId> = started.iter().map(|(id, _)| *id).collect();
        self.call(move |s| {
            let (starts, _) = s.record(&runner_id, &ids, &[])?;
            Ok(ids
                .into_iter()
                .zip(starts)
                .filter_map(|(id, ok)| ok.then_some(id))
                .collect())
        })
        .await
    }

    async fn finish(
        &self,
        runner_id: &str,
        items: &[Finish],
    ) -> Result<Vec<Result<Option<Successor>>>> {
        let runner_id = runner_id.to_string();
        let items = items.to_vec();
        self.call(move |s| {
            let results = s.finish_batch(&runner_id, &items)?;
            Ok(results
                .into_iter()
                .map(|r| match r {
                    Ok(Some(id)) => Self::successor(s, id).map(Some).map_err(Error::from),
                    Ok(None) => Ok(None),
                    Err(e) => Err(Error::from(e)),
                })
                .collect())
        })
        .await
    }

    async fn heartbeat(&self, runner_id: &str, lease: Duration) -> Result<Vec<JobId>> {
        let runner_id = runner_id.to_string();
        self.call(move |s| s.heartbeat(&runner_id, lease)).await
    }

    async fn rescue(&self) -> Result<Vec<Rescued>> {
        self.call(|s| {
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
            .call(move |s| s.release(id, &runner_id, &summary))
            .await?;
        Ok(match status {
            JobStatus::Canceled => Released::Canceled,
            _ => Released::Queued,
        })
    }

    async fn progress(&self, runner_id: &str, updates: &[Progress]) -> Result<()> {
        let runner_id = runner_id.to_string();
        let updates = updates.to_vec();
        self.call(move |s| {
            for u in updates {
                s.set_progress(u.id, &runner_id, u.percent, u.status_line.as_deref())?;
            }
            Ok(())
        })
        .await
    }

    async fn cancel_requests(&self, runner_id: &str) -> Result<Vec<(JobId, String)>> {
        let runner_id = runner_id.to_string();
        self.call(move |s| s.cancel_requests(&runner_id)).await
    }

    async fn next_due(&self) -> Result<Option<Duration>> {
        self.call(|s| {
            let now = s.now();
            Ok(s.next_due()?.map(|text| {
                parse_time(&text)
                    .and_then(|t| (t - now).to_std().ok())
                    .unwrap_or(Duration::ZERO)
            }))
        })
        .await
    }

    async fn wait_for_jobs(&self, timeout: Duration) -> Result<Wake> {
        let deadline = Instant::now() + timeout.min(Duration::from_secs(86_400));
        loop {
            let version = self.call(|s| s.data_version()).await?;
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
        self.call(move |s| s.queue(&job)).await
    }

    async fn queue_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        let jobs = jobs.to_vec();
        self.call(move |s| s.queue_many(&jobs)).await
    }

    async fn queue_unique(&self, job: &NewJob) -> Result<Queued> {
        let job = job.clone();
        self.call(move |s| s.queue_unique(&job)).await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>> {
        self.call(move |s| s.get(id)).await
    }

    async fn list(&self, filter: &ListFilter, before: Option<JobId>) -> Result<Vec<Job>> {
        let filter = filter.clone();
        self.call(move |s| s.list_before(&filter, before)).await
    }

    async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>> {
        self.call(move |s| s.history(id)).await
    }

    async fn add_history(&self, rec: &NewHistoryRecord) -> Result<i64> {
        let rec = rec.clone();
        self.call(move |s| s.add_history(&rec)).await
    }

    async fn retry_chain(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>> {
        let take = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
        self.call(move |s| {
            Ok(s.retry_chain(id)?
                .into_iter()
                .filter(|j| after.is_none_or(|a| j.id > a))
                .take(take)
                .collect())
        })
        .await
    }

    async fn cancel(&self, id: JobId, who: &str) -> Result<CancelResult> {
        let who = who.to_string();
        let r = self.call(move |s| s.cancel(id, &who)).await;
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
        let n = self.call(move |s| s.prune(older_than)).await?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn counts_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        self.call(|s| s.counts_by_status()).await
    }

    async fn latencies(&self, job_type: &str) -> Result<Latencies> {
        let job_type = job_type.to_string();
        let (to_start, to_finish, ok) = self.call(move |s| s.latencies(&job_type)).await?;
        Ok(Latencies {
            to_start,
            to_finish,
            ok,
        })
    }

    async fn add_co(&self, name: &str, description: Option<&str>) -> Result<i64> {
        let name = name.to_string();
        let description = description.map(str::to_string);
        self.call(move |s| s.add_co(&name, description.as_deref()))
            .await
    }

    async fn list_cos(&self) -> Result<Vec<Co>> {
        self.call(|s| s.list_cos()).await
    }

    /// Opening migrated the file already (append-only, on `user_version`).
    async fn migrate(&self) -> Result<SchemaStatus> {
        self.schema_status().await
    }

    async fn schema_status(&self) -> Result<SchemaStatus> {
        let version = self.call(|s| s.schema_version()).await?;
        Ok(SchemaStatus {
            version,
            latest: Store::known_version(),
            applied: Vec::new(),
        })
    }

    async fn add_schedule(&self, s: &NewSchedule) -> Result<i64> {
        let s = s.clone();
        self.call(move |st| st.add_schedule(&s)).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.call(|st| st.schedules()).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        let name = name.to_string();
        self.call(move |st| st.schedule(&name)).await
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()> {
        let name = name.to_string();
        self.call(move |st| st.set_schedule_paused(&name, paused))
            .await
    }

    async fn remove_schedule(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.call(move |st| st.remove_schedule(&name)).await
    }

    async fn enqueue_due_ticks(&self) -> Result<Vec<JobId>> {
        self.call(|st| st.enqueue_due_ticks()).await
    }
}
