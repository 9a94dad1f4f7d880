//! The SQLite job store: schema, migrations, the `Job` row type and every
//! SQL statement of the program.
//!
//! No other module writes SQL. The user-facing operations (queue, list,
//! show, cancel, prune, COs) are in `jobs.rs`; the runner-facing ones
//! (claim, finish, heartbeat, rescue, release, progress) in `runner.rs`.
//! Every state change names the state it expects in its `WHERE`, so a late
//! finish never overwrites a cancel, and every multi-statement write runs
//! in an immediate transaction (a deferred one that reads and then writes
//! can fail with `SQLITE_BUSY` instead of waiting).
//!
//! Timestamps are UTC text `YYYY-MM-DD HH:MM:SS.fff` ([`format_time`]),
//! which compares as text with each other and with SQLite's
//! `datetime('now')`.

pub mod activity;
pub mod driver;
mod jobs;
mod limits;
pub mod postgres;
mod runner;
mod schedules;
mod schema;
mod serve;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::job::{self, JobStatus};

pub use activity::{Activity, MinuteCount, RunnerRecord, RunnerRow};
pub use jobs::{
    CHAIN_WINDOW, CancelResult, ChainEntry, ChainPage, Co, HistoryRecord, ListFilter,
    NewHistoryRecord, NewJob, Queued,
};
pub use limits::{CoThrottle, Throttles, TypeThrottle};
pub(crate) use runner::child_summary;
pub use runner::{Finish, NewChild, PluginRun};
pub use schedules::{NewSchedule, ScheduleRow};
pub use serve::{GroupCount, JobQuery, NewToken, Role, Token, check_token_name};

/// How long a statement waits for another connection's write lock, unless
/// the store is opened with another wait ([`Store::open_with`]).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait SQLite's busy handler can take (its timeout is an
/// `int` of milliseconds); longer waits are cut to this.
pub const MAX_WAIT: Duration = Duration::from_secs(2_000_000);

/// What a command needs of the database ([`Store::open_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading only (`list`, `show`, `history`, `watch`, `plugins`): no
    /// write lock is taken to open, and a read-only file is fine.
    Read,
    /// Reading and writing: the file is created and migrated if need be.
    Write,
    /// Reading the schema's state (`migrate --status`): as [`Access::Read`],
    /// and a schema that is behind is left as it is.
    Inspect,
}

/// The id of a `cm_co_jobs` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ToSql for JobId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for JobId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(JobId)
    }
}

/// Everything that can go wrong in the store. [`StoreError::is_input`]
/// tells a caller's mistake from a failure of the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database schema version {found} is newer than this cojobs knows ({known}); use a newer cojobs"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("no job {0}")]
    NoJob(JobId),
    #[error("no CO {0} (see `cojobs co list`)")]
    NoCo(i64),
    #[error("a CO named '{0}' already exists")]
    CoExists(String),
    #[error("CO name must not be empty")]
    EmptyCoName,
    #[error(transparent)]
    JobType(#[from] job::InvalidJobType),
    #[error("job params are not valid JSON: {0}")]
    ParamsJson(String),
    #[error("job params must be a JSON object, not {0}")]
    ParamsNotObject(&'static str),
    #[error("{field} must not be negative (got {value})")]
    Negative { field: &'static str, value: i64 },
    #[error("job mode '{0}' is longer than 16 characters")]
    ModeTooLong(String),
    #[error("job {id} already ended ({status})")]
    AlreadyEnded { id: JobId, status: JobStatus },
    #[error("job {id} is not held by runner '{runner_id}' any more (it is {status})")]
    NotOurs {
        id: JobId,
        runner_id: String,
        status: JobStatus,
    },
    #[error("job {id} has unreadable status '{status}'")]
    BadStatus { id: JobId, status: String },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// Another connection held the write lock for longer than this one
    /// waits (`SQLITE_BUSY` / `SQLITE_LOCKED`): transient, worth retrying.
    #[error("database is locked by another connection: {0}")]
    Busy(rusqlite::Error),
    #[error(
        "database {} is at schema version {found} and needs upgrading to {known}, \
         but cannot be written: {source}; run any command that writes (e.g. `cojobs co list`) \
         with write access once", path.display()
    )]
    NeedsUpgrade {
        path: PathBuf,
        found: i64,
        known: i64,
        source: Box<StoreError>,
    },
    /// One job of a [`Store::queue_many`] batch was wrong (0-based index).
    #[error("job {} of the batch: {source}", index + 1)]
    InBatch {
        index: usize,
        source: Box<StoreError>,
    },
    /// The database file was removed or replaced while it was open: every
    /// write would go to a file nobody sees. Not worth retrying.
    #[error("{0}")]
    FileGone(String),
    /// A write failed for a whole batch; each item gets this copy of the
    /// first error's message.
    #[error("database error: {0}")]
    Failed(String),
    #[error("no schedule named '{0}' (see `cojobs schedule list`)")]
    NoSchedule(String),
    #[error("a schedule named '{0}' already exists")]
    ScheduleExists(String),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// The store could not be reached (a runner's database thread is gone,
    /// or a whole batch failed); the message says why.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Only a failed or canceled job can be retried now.
    #[error("job {id} is {status}; only a failed (X) or canceled (CX) job can be retried")]
    NotRetryable { id: JobId, status: JobStatus },
    #[error(transparent)]
    OutOfRange(#[from] crate::bounds::OutOfRange),
    #[error("a live token named '{0}' already exists")]
    TokenExists(String),
    #[error("no live token named '{0}' (see `cojobs token list`)")]
    NoToken(String),
    #[error("token name '{0}' is not [A-Za-z0-9][A-Za-z0-9_.@-]{{0,63}}")]
    BadTokenName(String),
    #[error("role '{0}' is not one of admin, operator, viewer")]
    BadRole(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => StoreError::Busy(e),
            _ => StoreError::Sqlite(e),
        }
    }
}

impl StoreError {
    /// True when the database was locked by another connection for longer
    /// than this one waits: nothing was written, and trying again later
    /// can succeed.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Busy(_) => true,
            StoreError::InBatch { source, .. } => source.is_busy(),
            StoreError::Open { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// True when the caller's input was wrong (bad type, params, CO, id...),
    /// false when the store itself failed.
    pub fn is_input(&self) -> bool {
        if let StoreError::InBatch { source, .. } = self {
            return source.is_input();
        }
        matches!(
            self,
            StoreError::NoJob(_)
                | StoreError::NoCo(_)
                | StoreError::CoExists(_)
                | StoreError::EmptyCoName
                | StoreError::JobType(_)
                | StoreError::ParamsJson(_)
                | StoreError::ParamsNotObject(_)
                | StoreError::Negative { .. }
                | StoreError::ModeTooLong(_)
                | StoreError::AlreadyEnded { .. }
                | StoreError::NotRetryable { .. }
                | StoreError::TokenExists(_)
                | StoreError::NoToken(_)
                | StoreError::BadTokenName(_)
                | StoreError::BadRole(_)
                | StoreError::NoSchedule(_)
                | StoreError::ScheduleExists(_)
                | StoreError::Schedule(_)
                | StoreError::OutOfRange(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Format a time the way every timestamp column holds it:
/// `YYYY-MM-DD HH:MM:SS.fff`, UTC. Times past `9999-12-31 23:59:59` (or
/// before year 0) are clamped to it: a year of five digits would be
/// written `+10000-...` and sort before `2026-...` as text.
pub fn format_time(t: DateTime<Utc>) -> String {
    // 0000-01-01 00:00:00 and 9999-12-31 23:59:59, UTC.
    let first =
        DateTime::<Utc>::from_timestamp(-62_167_219_200, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let last =
        DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    t.clamp(first, last)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// Where "now" comes from. Tests swap it to move time without sleeping.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A connection to the job store. One per thread: `Store` is `Send`, not
/// `Sync`; open another for another thread (SQLite in WAL mode lets many
/// readers and one writer share the file, and each write waits up to
/// [`BUSY_TIMEOUT`] for the lock).
pub struct Store {
    conn: Connection,
    clock: Clock,
    /// The database file as opened: its path and (device, inode), to
    /// notice when it is removed or replaced under an open connection.
    file: Option<(PathBuf, (u64, u64))>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating and migrating if need be) the database at `path`
    /// for reading and writing, waiting up to [`BUSY_TIMEOUT`] for locks.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, Access::Write, BUSY_TIMEOUT)
    }

    /// Open the database at `path` for `access`; every statement waits up
    /// to `wait` (capped at [`MAX_WAIT`]) for another connection's lock.
    ///
    /// The schema version is read without a transaction, so opening a
    /// database that is up to date takes no lock at all: a reader works
    /// while another connection holds the write lock, and on a file it may
    /// not write. Only a database that is missing or behind is migrated
    /// (in one immediate transaction); for [`Access::Read`] on a file that
    /// cannot be written that is [`StoreError::NeedsUpgrade`].
    pub fn open_with(path: impl AsRef<Path>, access: Access, wait: Duration) -> Result<Store> {
        let path = path.as_ref();
        // A file that does not exist yet is created, which is a write.
        let access = if path.exists() { access } else { Access::Write };
        let mut conn = connect(path, access, wait)?;
        if access != Access::Inspect && schema::is_behind(&conn)? {
            schema::migrate(&mut conn).map_err(|e| match (access, e) {
                (Access::Read, e) if !e.is_busy() => StoreError::NeedsUpgrade {
                    path: path.to_path_buf(),
                    found: schema::version(&conn).unwrap_or(0),
                    known: schema::known(),
                    source: Box::new(e),
                },
                (_, e) => e,
            })?;
        }
        let file = file_identity(path).map(|id| (path.to_path_buf(), id));
        Ok(Store {
            conn,
            clock: Arc::new(Utc::now),
            file,
        })
    }

    /// Check that the database file this store opened is still there, the
    /// same file. An open SQLite connection keeps working on a file that was
    /// deleted (or whose directory was removed or renamed, or that was
    /// replaced): every write would then land in a file nobody can see. A
    /// long-running process (the runner) calls this before its writes and
    /// stops when it fails.
    pub fn check_file(&self) -> Result<()> {
        let Some((path, id)) = &self.file else {
            return Ok(());
        };
        match file_identity(path) {
            Some(now) if now == *id => Ok(()),
            Some(_) => Err(StoreError::FileGone(format!(
                "database file {} was replaced by another file while it was open",
                path.display()
            ))),
            None => Err(StoreError::FileGone(format!(
                "database file {} was removed (or its directory was) while it was open",
                path.display()
            ))),
        }
    }

    /// Wait up to `wait` (capped at [`MAX_WAIT`]) for another connection's
    /// lock in every later statement.
    pub fn set_wait(&mut self, wait: Duration) -> Result<()> {
        self.conn.busy_timeout(wait.min(MAX_WAIT))?;
        Ok(())
    }

    /// Replace the clock (tests: move time without sleeping).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The store's "now".
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn now_text(&self) -> String {
        format_time(self.now())
    }

    /// SQLite's `PRAGMA data_version`: it changes whenever another
    /// connection commits to the database, so a runner can notice newly
    /// queued jobs without running its claim query.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// The newest schema version this cojobs knows.
    pub fn known_version() -> i64 {
        schema::known()
    }
}

/// One `cm_co_jobs` row: the seed's columns, then cojobs' own.
/// Timestamps are kept as the text the row holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub co_id: i64,
    pub job_type: String,
    pub job_type_fk: Option<i64>,
    pub job_mode: Option<String>,
    pub job_params: Option<String>,
    pub requeue_interval: Option<i64>,
    pub retry_interval: Option<i64>,
    pub max_retry: Option<i64>,
    pub max_retry_count: Option<i64>,
    pub requeued_from_co_job_id: Option<JobId>,
    #[serde(serialize_with = "ser_status")]
    pub status: JobStatus,
    pub register_summary: Option<String>,
    pub start_summary: Option<String>,
    pub finish_summary: Option<String>,
    pub queue_time: Option<String>,
    pub start_after_time: Option<String>,
    pub start_time: Option<String>,
    pub complete_time: Option<String>,
    pub percent_complete: Option<i64>,
    pub runner_id: Option<String>,
    pub lease_expires_at: Option<String>,
    pub fuel_limit: Option<i64>,
    pub memory_limit_mib: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub fuel_used: Option<i64>,
    pub job_log: Option<String>,
    pub cancel_requested_by: Option<String>,
    pub cancel_requested_at: Option<String>,
    pub queued_by: Option<String>,
    pub status_line: Option<String>,
    /// Who retried this ended row by hand (`serve`'s retry now).
    pub retried_by: Option<String>,
    /// The schedule that queued this row, and the tick it was queued for
    /// (`docs/design.md#schedules`); NULL for other rows.
    pub schedule_name: Option<String>,
    pub schedule_tick: Option<String>,
    /// `fixed` (or NULL) or `exponential` ([`job::Backoff`]).
    pub backoff: Option<String>,
    /// The longest exponential retry delay, seconds (NULL = an hour).
    pub backoff_max: Option<i64>,
    /// The structured result (JSON text) a contract 0.2 plugin returned,
    /// at most [`RESULT_MAX_BYTES`]; NULL when it set none.
    pub result: Option<String>,
    /// The job whose run queued this one (`queue-job`), committed with
    /// that job's `OK` end; NULL for other rows.
    pub parent_co_job_id: Option<JobId>,
    /// The SHA-256 (hex) of the component that ran this row, recorded when
    /// its run starts, and the contract version it implements (`0.2.0`).
    pub plugin_sha256: Option<String>,
    pub plugin_contract: Option<String>,
    /// 1 to 9, a smaller number runs first within its CO
    /// ([`crate::bounds::PRIORITY`]; 5 unless set).
    pub priority: i64,
}

/// Most bytes of a row's `result`: a longer one is not stored (the
/// sandbox refuses it already; see `sandbox::MAX_RESULT_BYTES`).
pub const RESULT_MAX_BYTES: usize = 64 * 1024;

fn ser_status<S: serde::Serializer>(st: &JobStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(st.code())
}

/// The column list [`Job::from_row`] reads, in its order.
pub(crate) const JOB_COLUMNS: &str = "id, co_id, job_type, job_type_fk, job_mode, job_params, \
    requeue_interval, retry_interval, max_retry, max_retry_count, requeued_from_co_job_id, \
    status, register_summary, start_summary, finish_summary, queue_time, start_after_time, \
    start_time, complete_time, percent_complete, runner_id, lease_expires_at, fuel_limit, \
    memory_limit_mib, timeout_secs, fuel_used, job_log, cancel_requested_by, \
    cancel_requested_at, queued_by, status_line, retried_by, schedule_name, schedule_tick, backoff, \
    backoff_max, result, parent_co_job_id, plugin_sha256, plugin_contract, priority";

/// The names of the columns of [`JOB_COLUMNS`], for display.
pub const JOB_COLUMN_NAMES: [&str; 41] = [
    "id",
    "co_id",
    "job_type",
    "job_type_fk",
    "job_mode",
    "job_params",
    "requeue_interval",
    "retry_interval",
    "max_retry",
    "max_retry_count",
    "requeued_from_co_job_id",
    "status",
    "register_summary",
    "start_summary",
    "finish_summary",
    "queue_time",
    "start_after_time",
    "start_time",
    "complete_time",
    "percent_complete",
    "runner_id",
    "lease_expires_at",
    "fuel_limit",
    "memory_limit_mib",
    "timeout_secs",
    "fuel_used",
    "job_log",
    "cancel_requested_by",
    "cancel_requested_at",
    "queued_by",
    "status_line",
    "retried_by",
    "schedule_name",
    "schedule_tick",
    "backoff",
    "backoff_max",
    "result",
    "parent_co_job_id",
    "plugin_sha256",
    "plugin_contract",
    "priority",
];

impl Job {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
        let status: String = r.get(11)?;
        let status = status.parse::<JobStatus>().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(11, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(Job {
            id: r.get(0)?,
            co_id: r.get(1)?,
            job_type: r.get(2)?,
            job_type_fk: r.get(3)?,
            job_mode: r.get(4)?,
            job_params: r.get(5)?,
            requeue_interval: r.get(6)?,
            retry_interval: r.get(7)?,
            max_retry: r.get(8)?,
            max_retry_count: r.get(9)?,
            requeued_from_co_job_id: r.get(10)?,
            status,
            register_summary: r.get(12)?,
            start_summary: r.get(13)?,
            finish_summary: r.get(14)?,
            queue_time: r.get(15)?,
            start_after_time: r.get(16)?,
            start_time: r.get(17)?,
            complete_time: r.get(18)?,
            percent_complete: r.get(19)?,
            runner_id: r.get(20)?,
            lease_expires_at: r.get(21)?,
            fuel_limit: r.get(22)?,
            memory_limit_mib: r.get(23)?,
            timeout_secs: r.get(24)?,
            fuel_used: r.get(25)?,
            job_log: r.get(26)?,
            cancel_requested_by: r.get(27)?,
            cancel_requested_at: r.get(28)?,
            queued_by: r.get(29)?,
            status_line: r.get(30)?,
            retried_by: r.get(31)?,
            schedule_name: r.get(32)?,
            schedule_tick: r.get(33)?,
            backoff: r.get(34)?,
            backoff_max: r.get(35)?,
            result: r.get(36)?,
            parent_co_job_id: r.get(37)?,
            plugin_sha256: r.get(38)?,
            plugin_contract: r.get(39)?,
            priority: r.get(40)?,
        })
    }

    /// The row's parameters as a JSON object; NULL (and empty text) is `{}`.
    /// A plain-SQL row may hold anything, so this can fail; the runner
    /// should end such a row `X` with the message.
    pub fn params(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        match self.job_params.as_deref().map(str::trim) {
            None | Some("") => Ok(serde_json::Map::new()),
            Some(text) => parse_params(text),
        }
    }

    /// The row's retry/requeue policy.
    pub fn policy(&self) -> job::Policy {
        job::Policy {
            requeue_interval: self.requeue_interval,
            retry_interval: self.retry_interval,
            max_retry: self.max_retry,
            max_retry_count: self.max_retry_count.unwrap_or(0),
            backoff: job::Backoff::from_column(self.backoff.as_deref()),
            backoff_max: self.backoff_max,
            id: self.id.0,
        }
    }

    /// The row's column values as display text, in [`JOB_COLUMN_NAMES`]
    /// order (NULL as `None`).
    pub fn column_values(&self) -> Vec<Option<String>> {
        fn s<T: ToString>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(ToString::to_string)
        }
        vec![
            Some(self.id.to_string()),
            Some(self.co_id.to_string()),
            Some(self.job_type.clone()),
            s(&self.job_type_fk),
            s(&self.job_mode),
            s(&self.job_params),
            s(&self.requeue_interval),
            s(&self.retry_interval),
            s(&self.max_retry),
            s(&self.max_retry_count),
            s(&self.requeued_from_co_job_id),
            Some(self.status.to_string()),
            s(&self.register_summary),
            s(&self.start_summary),
            s(&self.finish_summary),
            s(&self.queue_time),
            s(&self.start_after_time),
            s(&self.start_time),
            s(&self.complete_time),
            s(&self.percent_complete),
            s(&self.runner_id),
            s(&self.lease_expires_at),
            s(&self.fuel_limit),
            s(&self.memory_limit_mib),
            s(&self.timeout_secs),
            s(&self.fuel_used),
            s(&self.job_log),
            s(&self.cancel_requested_by),
            s(&self.cancel_requested_at),
            s(&self.queued_by),
            s(&self.status_line),
            s(&self.retried_by),
            s(&self.schedule_name),
            s(&self.schedule_tick),
            s(&self.backoff),
            s(&self.backoff_max),
            s(&self.result),
            s(&self.parent_co_job_id),
            s(&self.plugin_sha256),
            s(&self.plugin_contract),
            Some(self.priority.to_string()),
        ]
    }
}

/// Parse job params text, which must be a JSON object.
pub fn parse_params(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StoreError::ParamsJson(e.to_string()))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(StoreError::ParamsNotObject(json_kind(&other))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Map "no row" to `None`.
fn optional<T>(r: rusqlite::Result<T>) -> Result<Option<T>> {
    Ok(r.optional()?)
}

/// (device, inode) of `path`, if it exists.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A configured connection to `path` whose schema version can be read.
///
/// A reader of a WAL database needs its `-shm` file; when none exists and
/// none can be created (a read-only file in a directory the user may not
/// write) SQLite cannot open it. No `-wal` file then means no connection
/// has the database open, so a reader opens it as an immutable snapshot.
fn connect(path: &Path, access: Access, wait: Duration) -> Result<Connection> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    // Setting up is part of opening: its errors name the file.
    let as_open = |e| match e {
        StoreError::Sqlite(source) | StoreError::Busy(source) => open_err(source),
        e => e,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    let readable = configure(&conn, access, wait)
        .and_then(|()| schema::version(&conn))
        .map_err(as_open);
    match readable {
        Ok(_) => Ok(conn),
        Err(e) if access != Access::Write && !e.is_busy() && !wal_file(path).exists() => {
            let uri = format!("file:{}?immutable=1", uri_path(path));
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_URI
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(uri, flags).map_err(open_err)?;
            configure(&conn, access, wait).map_err(as_open)?;
            Ok(conn)
        }
        Err(e) => Err(e),
    }
}

/// Per-connection settings: the busy timeout, WAL (set by writers; it
/// persists in the file), foreign keys, synchronous=NORMAL.
fn configure(conn: &Connection, access: Access, wait: Duration) -> Result<()> {
    conn.busy_timeout(wait.min(MAX_WAIT))?;
    if access == Access::Write {
        // journal_mode returns a row.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    }
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The `-wal` file SQLite keeps next to `path`.
fn wal_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

/// `path` for a `file:` URI: `%`, `?` and `#` percent-encoded.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}
