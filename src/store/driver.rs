//! The store interface: every operation the runner and the CLI need from a
//! job database, behind one object-safe trait ([`JobStore`]), so that the
//! runner and the CLI hold an `Arc<dyn JobStore>` and never know which
//! database is underneath (River's `riverdriver` interface, in Rust).
//!
//! One driver per database implements it: SQLite (the embedded default, one
//! machine) and PostgreSQL ([`super::postgres`]: many runners on many
//! machines). Each driver owns everything database-specific: its SQL, how
//! it learns about new jobs ([`JobStore::wait_for_jobs`]), its clock. What
//! is decided once for all drivers stays out of them: the retry/requeue
//! policy ([`crate::job::successor`]), the validation of a new job
//! ([`super::jobs`]' checks), summary truncation.
//!
//! The trait uses `async-trait` rather than native `async fn` in traits:
//! native ones are not object-safe (no `dyn JobStore`), and writing boxed
//! futures by hand for ~30 methods says the same thing less readably. The
//! cost, one allocation per call, is nothing beside a database round trip.
//!
//! Errors are [`Error`]: classified for the caller (retry a transient one,
//! count a conflict as a lost row, exit 2 on bad input), never a driver's
//! own error type.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Activity, CHAIN_WINDOW, CancelResult, ChainEntry, ChainPage, Co, Finish, GroupCount,
    HistoryRecord, Job, JobId, JobQuery, ListFilter, NewHistoryRecord, NewJob, NewSchedule,
    NewToken, PluginRun, Queued, RunnerRecord, RunnerRow, ScheduleRow, StoreError, Throttles,
    Token,
};
use crate::job::JobStatus;
use crate::throttle::{PauseTarget, TypeLimits};

/// What went wrong in a store operation, by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached, was busy, or the connection was
    /// lost: nothing was written (or the transaction rolled back), and the
    /// same call may succeed later. The runner waits and retries.
    #[error("database unavailable: {0}")]
    Transient(String),
    /// The row is not in the state the operation expects (a late finish
    /// after a cancel or a rescue, a cancel of an ended job): nothing was
    /// written. Holds [`StoreError::NotOurs`] or [`StoreError::AlreadyEnded`].
    #[error(transparent)]
    Conflict(StoreError),
    /// The caller's input was wrong (unknown CO or job, bad params, bad
    /// type, a malformed database URL...): nothing was written. The CLI
    /// exits 2. Usually a [`StoreError`] (see [`Error::input_error`]).
    #[error(transparent)]
    Input(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a failure of the database or of this program.
    #[error("database error: {0}")]
    Other(String),
}

/// [`Error`]'s classes, for matching without the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Transient,
    Conflict,
    Input,
    Other,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Transient(_) => ErrorKind::Transient,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Input(_) => ErrorKind::Input,
            Error::Other(_) => ErrorKind::Other,
        }
    }

    /// True when the caller's input was wrong (the CLI's exit 2).
    pub fn is_input(&self) -> bool {
        self.kind() == ErrorKind::Input
    }

    /// An input error.
    pub fn input(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Input(Box::new(e))
    }

    /// The [`StoreError`] an input error holds, if it is one.
    pub fn input_error(&self) -> Option<&StoreError> {
        match self {
            Error::Input(e) => e.downcast_ref(),
            _ => None,
        }
    }
}

impl From<StoreError> for Error {
    /// Classify an error of the SQLite store (the first driver).
    fn from(e: StoreError) -> Error {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e {
            StoreError::NotOurs { .. }
            | StoreError::AlreadyEnded { .. }
            | StoreError::NotRetryable { .. } => Error::Conflict(e),
            StoreError::Unavailable(msg) => Error::Transient(msg),
            StoreError::FileGone(msg) | StoreError::Failed(msg) => Error::Other(msg),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, DatabaseBusy | DatabaseLocked) =>
            {
                Error::Transient(e.to_string())
            }
            e if e.is_input() => Error::input(e),
            e => Error::Other(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What [`JobStore::claim`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Written on every claimed row (`runner_id`); later writes of this
    /// runner name it.
    pub runner_id: String,
    /// Most rows to claim.
    pub max: usize,
    /// How long the claimed rows stay this runner's without a heartbeat,
    /// counted on the database's clock.
    pub lease: Duration,
    /// Most rows of one CO this runner may hold at once (rows it already
    /// holds count), `None` = no cap (`run --per-co`).
    pub per_co: Option<usize>,
    /// Only rows due by then (and by now): `run --once` claims what was
    /// due when it started. `None` = due by now.
    pub due_by: Option<DateTime<Utc>>,
    /// The claimed rows' runs begin now: the claim writes their start
    /// (`start_time`, "started by runner …") itself, so no separate start
    /// write follows. The runner claims so only rows it starts at once or
    /// within [`crate::runner::START_PROMPTLY`]. Otherwise the rows say
    /// "claimed by runner …, not started yet" until [`JobStore::start`].
    pub start: bool,
}

impl Claim {
    /// A claim of up to `max` rows due now, not started, without a cap.
    pub fn new(runner_id: &str, max: usize, lease: Duration) -> Claim {
        Claim {
            runner_id: runner_id.to_string(),
            max,
            lease,
            per_co: None,
            due_by: None,
            start: false,
        }
    }
}

/// A job's end as [`JobStore::finish`] recorded it: the successor (retry
/// or requeue) queued with it, if the policy asked for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Successor {
    pub id: JobId,
    /// When it falls due.
    pub due: DateTime<Utc>,
}

/// One row [`JobStore::rescue`] dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rescued {
    /// Claimed but never started: back to `Q`, as it was, no retry spent.
    Requeued(JobId),
    /// Its run had begun: ended `X` ("runner ... stopped responding"), or
    /// `CX` when a cancel was requested, with the policy's successor.
    Ended {
        id: JobId,
        status: JobStatus,
        successor: Option<Successor>,
    },
}

impl Rescued {
    pub fn id(&self) -> JobId {
        match self {
            Rescued::Requeued(id) | Rescued::Ended { id, .. } => *id,
        }
    }
}

/// What [`JobStore::release`] did with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Back to `Q`, as if never started.
    Queued,
    /// A cancel had been requested: ended `CX` instead.
    Canceled,
}

/// One progress report of a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub id: JobId,
    /// Clamped to 0..=100 by the store.
    pub percent: i64,
    /// The plugin's status line; `None` keeps the previous one.
    pub status_line: Option<String>,
    /// The component the run began with, written once, early in the run
    /// (`plugin_sha256`, `plugin_contract`); `None` keeps what the row has.
    pub plugin: Option<PluginRun>,
}

/// Why [`JobStore::wait_for_jobs`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Jobs may have been queued (or returned to the queue).
    NewJobs,
    /// The timeout passed with no sign of new jobs.
    Timeout,
    /// The driver cannot hear about new jobs right now (its listener is
    /// reconnecting): the caller should look, as if polling.
    Poll,
}

/// The schema's state ([`JobStore::schema_status`], `cojobs migrate --status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration applied to the database.
    pub version: i64,
    /// The newest migration this cojobs knows.
    pub latest: i64,
    /// Applied migrations: (version, name, when), oldest first.
    pub applied: Vec<(i64, String, Option<DateTime<Utc>>)>,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.version == self.latest
    }
}

/// Latencies of ended jobs of one type (`cojobs bench`): seconds from
/// queued to started and from queued to ended, and how many ended `OK`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latencies {
    pub to_start: Vec<f64>,
    pub to_finish: Vec<f64>,
    pub ok: usize,
}

/// A job database. Every state change names the state it expects, so a
/// late write never overwrites a newer one; every multi-row write is one
/// transaction.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// The driver's name (`sqlite`, `postgres`), for logs and messages.
    fn driver(&self) -> &'static str;

    // ---- the runner ----

    /// Claim up to `c.max` due rows (status `Q`, `start_after_time`, or
    /// failing that `queue_time`, not after now; a row with neither is due)
    /// for `c.runner_id` in one atomic step: they become `GO` with a lease
    /// until now + `c.lease`. Within a CO the highest priority (smallest
    /// number) first, then the oldest due; round-robin across COs (the 1st
    /// of every CO, then the 2nd...), in that order. No row of a paused
    /// type or CO, and no more rows of a type or CO than its limits leave
    /// room for ([`JobStore::throttles`]), counted across every runner.
    /// Two runners never get the same row. The rows are claimed, not yet
    /// started ([`JobStore::start`] records that), unless `c.start`.
    async fn claim(&self, c: &Claim) -> Result<Vec<Job>>;

    /// Claim row `id` alone if it is queued and due, under `c`'s lease,
    /// per-CO cap and the limits and pause of its type and CO (`c.max` and
    /// `c.due_by` are not used): a `run --once`
    /// follow-up (a retry of a job this run ended). `None` when it is not
    /// claimable (ended, taken, canceled, not due, or over the cap).
    async fn claim_one(&self, c: &Claim, id: JobId) -> Result<Option<Job>>;

    /// Record that runs of claimed rows began (`start_time`), for rows
    /// still `GO` under `runner_id`. Returns the ids it recorded.
    async fn start(
        &self,
        runner_id: &str,
        started: &[(JobId, DateTime<Utc>)],
    ) -> Result<Vec<JobId>>;

    /// Record how runs ended, each with the successor
    /// [`crate::job::successor`] asks for and its history records, in ONE
    /// transaction; an item whose row is no longer `GO` under `runner_id`
    /// writes nothing and gets [`Error::Conflict`]. One result per item,
    /// in order; the outer error is the transaction's.
    async fn finish(
        &self,
        runner_id: &str,
        items: &[Finish],
    ) -> Result<Vec<Result<Option<Successor>>>>;

    /// Extend the lease of every `GO` row of `runner_id` to now + `lease`
    /// (the database's now). Returns the ids it still holds.
    async fn heartbeat(&self, runner_id: &str, lease: Duration) -> Result<Vec<JobId>>;

    /// Deal with every `GO` row whose lease ran out (on the database's
    /// clock), each only if it is still `GO` under that same expired lease.
    async fn rescue(&self) -> Result<Vec<Rescued>>;

    /// Put a `GO` row of `runner_id` back to `Q` (the shutdown path), with
    /// `summary` in `start_summary`; a row with a cancel request ends `CX`.
    /// [`Error::Conflict`] if the row is no longer this runner's.
    async fn release(&self, runner_id: &str, id: JobId, summary: &str) -> Result<Released>;

    /// Record progress of `GO` rows of `runner_id` (others are skipped).
    async fn progress(&self, runner_id: &str, updates: &[Progress]) -> Result<()>;

    /// The `GO` rows of `runner_id` with a stop request, and who asked.
    async fn cancel_requests(&self, runner_id: &str) -> Result<Vec<(JobId, String)>>;

    /// How long until the earliest queued row is due, on the database's
    /// clock (zero if one is due now); `None` when nothing is queued.
    async fn next_due(&self) -> Result<Option<Duration>>;

    /// Wait until jobs may have been queued, or `timeout`. Returns at once
    /// if a sign of new jobs arrived since the previous call returned.
    async fn wait_for_jobs(&self, timeout: Duration) -> Result<Wake>;

    // ---- the CLI ----

    /// Queue a job; checks everything first and writes nothing on error.
    async fn queue(&self, job: &NewJob) -> Result<JobId>;

    /// Queue many jobs in one transaction: all or nothing; a bad job is
    /// [`StoreError::InBatch`] (as [`Error::Input`]). Ids in input order.
    async fn queue_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>>;

    /// Queue unless a live (`Q`/`GO`) row with the same CO, type, mode and
    /// params (compared as JSON values) exists.
    async fn queue_unique(&self, job: &NewJob) -> Result<Queued>;

    /// One row, or `None`.
    async fn get(&self, id: JobId) -> Result<Option<Job>>;

    /// Rows matching `filter`, newest first, only those older than
    /// `before` when given (the cursor: the last id of the previous page).
    async fn list(&self, filter: &ListFilter, before: Option<JobId>) -> Result<Vec<Job>>;

    /// A job's history records, oldest first.
    async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>>;

    /// Add a history record (key and comment cut to 256 characters).
    async fn add_history(&self, rec: &NewHistoryRecord) -> Result<i64>;

    /// The child jobs `id`'s run queued (`parent_co_job_id = id`), oldest
    /// first: at most `limit` rows after `after`. Empty for an unknown id.
    async fn children(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>>;

    /// The retry/requeue chain `id` belongs to (ancestors, itself,
    /// descendants), oldest first: at most `limit` rows after `after`.
    async fn retry_chain(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>>;

    /// A page of the chain `id` belongs to (`cojobs show`): counts by
    /// status within [`CHAIN_WINDOW`] rows either side of `id`, where `id`
    /// stands, and up to `around` rows either side of it. This default
    /// reads the chain through [`JobStore::retry_chain`], a page at a
    /// time; a driver may walk it more cheaply.
    async fn chain_page(&self, id: JobId, around: usize) -> Result<ChainPage> {
        const PAGE: i64 = 1000;
        let mut chain: Vec<(JobId, String)> = Vec::new();
        let mut rows: Vec<Job> = Vec::new();
        let mut after = None;
        loop {
            let page = self.retry_chain(id, after, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            after = page.last().map(|j| j.id);
            chain.extend(page.iter().map(|j| (j.id, j.status.code().to_string())));
            rows.extend(page);
            let past = chain
                .iter()
                .position(|(m, _)| *m == id)
                .is_some_and(|at| chain.len().saturating_sub(at) > CHAIN_WINDOW.saturating_add(1));
            if !full || past {
                break;
            }
        }
        let Some(at) = chain.iter().position(|(m, _)| *m == id) else {
            return Err(Error::input(StoreError::NoJob(id)));
        };
        // The window either side, plus one row that says the chain goes on.
        let from = at.saturating_sub(CHAIN_WINDOW.saturating_add(1));
        let to = at
            .saturating_add(CHAIN_WINDOW.saturating_add(1))
            .min(chain.len().saturating_sub(1));
        let members = &chain[from..=to];
        let position = at - from;
        let mut page = ChainPage::of_members(members, position, around);
        page.rows = rows[from..=to]
            .iter()
            .skip(page.first)
            .take(around.saturating_mul(2).saturating_add(1))
            .map(ChainEntry::of)
            .collect();
        Ok(page)
    }

    /// Cancel: `Q` ends `CX` at once; `GO` gets a stop request; an ended
    /// row is [`Error::Conflict`]; an unknown one [`Error::Input`].
    async fn cancel(&self, id: JobId, who: &str) -> Result<CancelResult>;

    /// Delete ended rows completed before `older_than`, with their history;
    /// successors keep living, unlinked. Returns how many jobs.
    async fn prune(&self, older_than: DateTime<Utc>) -> Result<u64>;

    /// Rows per status, every status (zeros included).
    async fn counts_by_status(&self) -> Result<Vec<(JobStatus, i64)>>;

    /// Latencies of ended jobs of `job_type`, computed in the database.
    async fn latencies(&self, job_type: &str) -> Result<Latencies>;

    /// Add a CO; returns its id.
    async fn add_co(&self, name: &str, description: Option<&str>) -> Result<i64>;

    /// All COs, by id.
    async fn list_cos(&self) -> Result<Vec<Co>>;

    /// Apply pending migrations (also done on first use); returns the state.
    async fn migrate(&self) -> Result<SchemaStatus>;

    /// The schema's state, changing nothing.
    async fn schema_status(&self) -> Result<SchemaStatus>;

    // ---- `cojobs serve` (issue 12): search, counts, retry now, tokens ----

    /// Rows matching `q`, newest first, at most `q.limit`, without their
    /// logs and results (`job_log` and `result` are `None`:
    /// [`JobStore::get`] has them).
    async fn search(&self, q: &JobQuery) -> Result<Vec<Job>>;

    /// Rows per (CO, type, status), of CO `co_id` or of all.
    async fn count_groups(&self, co_id: Option<i64>) -> Result<Vec<GroupCount>>;

    /// Retry an `X` or `CX` row now, in one transaction: a new `Q` row
    /// copying it (as a policy retry does: [`crate::job::successor`]'s
    /// columns, `max_retry_count` + 1, due at once), linked to it, queued
    /// by `who`; the row retried gets `retried_by` = `who`. Any other
    /// status is [`Error::Conflict`] ([`StoreError::NotRetryable`]); an
    /// unknown row [`Error::Input`].
    async fn retry_now(&self, id: JobId, who: &str) -> Result<JobId>;

    /// Store a token (only the hash of its secret). Its name must be free
    /// among live tokens, its CO must exist ([`Error::Input`]).
    async fn add_token(&self, t: &NewToken) -> Result<i64>;

    /// Every token, live and revoked, by id.
    async fn list_tokens(&self) -> Result<Vec<Token>>;

    /// Revoke the live token named `name` ([`Error::Input`] if none).
    async fn revoke_token(&self, name: &str) -> Result<()>;

    /// The live token whose secret hashes to `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>>;

    // ---- schedules (issue 14, docs/design.md#schedules) ----

    /// Add a schedule, its first tick the first after now (the database's
    /// now). Checks everything first; a bad expression, zone, name or job,
    /// an unknown CO or a name in use is [`Error::Input`], nothing written.
    async fn add_schedule(&self, s: &NewSchedule) -> Result<i64>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleRow>>;

    /// One schedule, or `None`.
    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>>;

    /// Pause a schedule, or resume it from the first tick after now; an
    /// unknown name is [`Error::Input`].
    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()>;

    /// Remove a schedule (its jobs stay); an unknown name is [`Error::Input`].
    async fn remove_schedule(&self, name: &str) -> Result<()>;

    /// The schedule pass every runner makes: queue the due ticks of every
    /// due schedule per its catch-up policy ([`crate::schedule::Schedule::plan`])
    /// and move its `next_tick` on, in one transaction. Each tick is queued
    /// once however many runners call this at once. Returns the new ids.
    async fn enqueue_due_ticks(&self) -> Result<Vec<JobId>>;

    // ---- limits and pause (issue 14, docs/design.md#limits-and-pause) ----

    /// Record `job_type`'s side-file limits (`concurrency`, `rate`), which
    /// every later claim obeys; its pause is kept. A bad type name is
    /// [`Error::Input`].
    async fn set_type_limits(&self, job_type: &str, limits: &TypeLimits) -> Result<()>;

    /// Set, or with `None` clear, the most `GO` rows of CO `co_id`; an
    /// unknown CO or a number out of range is [`Error::Input`].
    async fn set_co_max_running(&self, co_id: i64, max: Option<i64>) -> Result<()>;

    /// Pause `target` (a job type, or a CO that must exist), recording
    /// `who`: claims skip its queued rows; running ones go on. False when
    /// it was paused already (nothing changed).
    async fn pause(&self, target: &PauseTarget, who: &str) -> Result<bool>;

    /// Resume `target`. False when it was not paused.
    async fn resume(&self, target: &PauseTarget) -> Result<bool>;

    /// Every limit and pause recorded.
    async fn throttles(&self) -> Result<Throttles>;

    // ---- runners and recent activity (issue 12) ----

    /// Insert or update runner `r.id`'s row with a heartbeat now (on the
    /// database's clock), keeping its start time; rows whose heartbeat is
    /// older than [`super::activity::FORGET_RUNNER_AFTER`] are deleted.
    async fn record_runner(&self, r: &RunnerRecord) -> Result<()>;

    /// Delete runner `id`'s row (its clean exit); no row is no error.
    async fn remove_runner(&self, id: &str) -> Result<()>;

    /// Every recorded runner, oldest start first, each with the age of its
    /// heartbeat on the database's clock.
    async fn list_runners(&self) -> Result<Vec<RunnerRow>>;

    /// Jobs of CO `co_id` (or all) that ended in each of the last
    /// `minutes` minutes (at most a day), and their queue latencies.
    async fn activity(&self, co_id: Option<i64>, minutes: i64) -> Result<Activity>;
}
