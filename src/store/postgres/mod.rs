//! The PostgreSQL driver: many runners on many machines share one queue.
//!
//! - Client: tokio-postgres behind a deadpool-postgres pool. deadpool over
//!   bb8 because it is the pool tokio-postgres users reach for first, it
//!   keeps a prepared-statement cache per connection (`prepare_cached`: a
//!   claim or finish is parsed once per connection, not once per call), and
//!   it checks a connection when it is handed out again, so a server
//!   restart costs one failed call per dead connection, not a stuck pool.
//! - TLS: rustls with the ring provider ([`tls`]), libpq's `sslmode`s.
//! - Schema and migrations: [`schema`]; every statement: [`runner`] (claim,
//!   finish, heartbeat, rescue...) and [`jobs`] (queue, list, cancel...).
//! - New jobs: `LISTEN/NOTIFY` with a polling fallback ([`notify`]).
//! - Time: every "now" is the database's (`now()` in UTC), never a
//!   runner's, so runners on hosts with skewed clocks agree on leases.

mod activity;
mod group;
mod jobs;
mod limits;
mod notify;
mod runner;
mod schedules;
mod schema;
mod serve;
pub mod tls;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::driver::{
    Claim, Error, JobStore, Latencies, Progress, Released, Rescued, Result, SchemaStatus,
    Successor, Wake,
};
use super::{
    Activity, CancelResult, ChainPage, Co, Finish, GroupCount, HistoryRecord, Job, JobId, JobQuery,
    ListFilter, NewHistoryRecord, NewJob, NewSchedule, NewToken, Queued, RunnerRecord, RunnerRow,
    ScheduleRow, Throttles, Token, format_time,
};
use crate::job::JobStatus;
use crate::throttle::{PauseTarget, TypeLimits};

pub use tls::{ConnectOptions, SslMode, is_postgres_url};

/// The database's "now", as the UTC `timestamp without time zone` every
/// timestamp column holds.
pub(crate) const NOW: &str = "(now() AT TIME ZONE 'UTC')";

/// A row's due time (the claim indexes' expression): a plain-SQL row with
/// neither time is due at once.
pub(crate) const DUE: &str = "coalesce(start_after_time, queue_time, '-infinity'::timestamp)";

/// Connections in the pool unless told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// `s` as PostgreSQL can store it. PostgreSQL refuses a NUL character in
/// `text` (SQLite keeps it): every plugin-provided text (finish and release
/// summaries, the log, the status line, history keys and comments, the
/// result) has each NUL **escaped** as the two characters `\0` before it
/// is written, and before it is cut to a column's length
/// (docs/design.md#nul-in-postgresql-text).
pub(crate) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// [`pg_text`], then cut to a summary column's length.
pub(crate) fn pg_summary(s: &str) -> String {
    crate::job::truncate_summary(&pg_text(s))
}

/// How long a call waits for a pooled connection before failing as
/// transient.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The job store on a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// `host:port/dbname` (never the password), for messages.
    target: String,
    notify: notify::Notifier,
    /// Job ends, committed in groups.
    ends: group::GroupCommit,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect to the database `url` names (`postgres://`, `postgresql://`
    /// or libpq's `key=value` form), check that it answers, and migrate it
    /// to the newest schema (the same auto-migrate on first use as SQLite).
    pub async fn connect(url: &str) -> Result<PgStore> {
        Self::connect_with(url, DEFAULT_POOL_SIZE).await
    }

    /// [`PgStore::connect`] with at most `pool_size` connections (plus the
    /// listener's own, once [`JobStore::wait_for_jobs`] is first called).
    pub async fn connect_with(url: &str, pool_size: usize) -> Result<PgStore> {
        let store = Self::connect_unmigrated(url, pool_size).await?;
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        Ok(store)
    }

    /// [`PgStore::connect_with`] without migrating (`cojobs migrate
    /// --status`): the connection is checked, the schema left as it is.
    pub async fn connect_unmigrated(url: &str, pool_size: usize) -> Result<PgStore> {
        let opts = ConnectOptions::parse(url).map_err(Error::input)?;
        let target = opts.target();
        let tls = opts.tls()?;
        let mut config = opts.config;
        // This driver notifies runners itself, rate-limited: the insert
        // trigger stays quiet for its statements (see schema.rs). JIT off
        // (unless the URL's own options turn it on): the claim's plan is
        // estimated expensive, and compiling it took ~1.5 s per claim while
        // running it takes milliseconds (docs/performance.md).
        let options = match config.get_options() {
            Some(o) => format!("-c jit=off {o} -c cojobs.quiet=on"),
            None => "-c jit=off -c cojobs.quiet=on".to_string(),
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("cojobs");
        }
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Other(format!("cannot build the connection pool: {e}")))?;
        let store = PgStore {
            notify: notify::Notifier::new(pool.clone(), config, tls),
            ends: group::GroupCommit::spawn(pool.clone(), target.clone()),
            pool,
            target,
        };
        drop(store.client().await?);
        Ok(store)
    }

    /// A pooled connection. Failing to get one names the server.
    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| self.pool_error(e))
    }

    fn pool_error(&self, e: deadpool_postgres::PoolError) -> Error {
        pool_error(&self.target, e)
    }

    /// The plan and cost of a claim of `max` rows as it would run now
    /// (`EXPLAIN ANALYZE`, rolled back): for the test that keeps the claim
    /// flat at a million rows, and for a person asking why a claim is slow.
    pub async fn explain_claim(&self, max: usize) -> Result<String> {
        runner::explain_claim(&mut self.client().await?, max).await
    }

    /// The database's now (UTC).
    pub async fn db_now(&self) -> Result<DateTime<Utc>> {
        let client = self.client().await?;
        let row = client
            .query_one(&format!("SELECT {NOW}"), &[])
            .await
            .map_err(map_err)?;
        Ok(row.get::<_, NaiveDateTime>(0).and_utc())
    }
}

/// Displays a tokio-postgres error with the server's own message, detail
/// and hint, or the I/O cause.
pub(crate) struct PgError<'a>(pub &'a tokio_postgres::Error);

impl fmt::Display for PgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(f, "{}", db.message())?;
            if let Some(detail) = db.detail() {
                write!(f, " ({detail})")?;
            }
            if let Some(hint) = db.hint() {
                write!(f, "; hint: {hint}")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Whether an error means "try again later": the connection is gone, the
/// server is starting or stopping, or the transaction lost a race.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        // No SQLSTATE: a closed connection or an I/O error is transient; a
        // TLS handshake refused (an untrusted certificate), an
        // authentication or configuration error is not.
        if e.is_closed() {
            return true;
        }
        let text = e.to_string();
        if [
            "error performing TLS handshake",
            "authentication error",
            "invalid configuration",
        ]
        .iter()
        .any(|p| text.starts_with(p))
        {
            return false;
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if s.is::<std::io::Error>() {
                return true;
            }
            source = s.source();
        }
        return false;
    };
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::LOCK_NOT_AVAILABLE,
        ]
        .contains(code)
}

/// Classify a tokio-postgres error of a statement.
pub(crate) fn map_err(e: tokio_postgres::Error) -> Error {
    if is_transient(&e) {
        Error::Transient(PgError(&e).to_string())
    } else {
        Error::Other(PgError(&e).to_string())
    }
}

/// Classify an error of opening a connection, naming the server: an
/// unreachable or restarting server is transient; a wrong password, a
/// missing database or a refused role is not (waiting will not fix it).
/// Why no pooled connection to `target` could be had.
fn pool_error(target: &str, e: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => connect_error(target, &e),
        PoolError::Timeout(_) => Error::Transient(format!(
            "no free connection to {target} within {POOL_WAIT:?}"
        )),
        other => Error::Transient(format!("PostgreSQL at {target}: {other}")),
    }
}

fn connect_error(target: &str, e: &tokio_postgres::Error) -> Error {
    let msg = format!("cannot connect to PostgreSQL at {target}: {}", PgError(e));
    if is_transient(e) {
        Error::Transient(msg)
    } else {
        Error::Other(msg)
    }
}

/// How many columns [`job_columns`] selects: a statement that returns more
/// after them reads the next one at this index.
pub(crate) const JOB_COLUMN_COUNT: usize = 41;

/// The `cm_co_jobs` columns [`job_from_row`] reads, in its order, each
/// qualified by `alias` and cast to the type the row struct holds (the
/// seed's integers may be `integer` in a COmanage database).
pub(crate) fn job_columns(alias: &str) -> String {
    const COLS: [(&str, &str); JOB_COLUMN_COUNT] = [
        ("id", "::int8"),
        ("co_id", "::int8"),
        ("job_type", "::text"),
        ("job_type_fk", "::int8"),
        ("job_mode", "::text"),
        ("job_params", "::text"),
        ("requeue_interval", "::int8"),
        ("retry_interval", "::int8"),
        ("max_retry", "::int8"),
        ("max_retry_count", "::int8"),
        ("requeued_from_co_job_id", "::int8"),
        ("status", "::text"),
        ("register_summary", "::text"),
        ("start_summary", "::text"),
        ("finish_summary", "::text"),
        ("queue_time", ""),
        ("start_after_time", ""),
        ("start_time", ""),
        ("complete_time", ""),
        ("percent_complete", "::int8"),
        ("runner_id", "::text"),
        ("lease_expires_at", ""),
        ("fuel_limit", "::int8"),
        ("memory_limit_mib", "::int8"),
        ("timeout_secs", "::int8"),
        ("fuel_used", "::int8"),
        ("job_log", "::text"),
        ("cancel_requested_by", "::text"),
        ("cancel_requested_at", ""),
        ("queued_by", "::text"),
        ("status_line", "::text"),
        ("retried_by", "::text"),
        ("schedule_name", "::text"),
        ("schedule_tick", ""),
        ("backoff", "::text"),
        ("backoff_max", "::int8"),
        ("result", "::text"),
        ("parent_co_job_id", "::int8"),
        ("plugin_sha256", "::text"),
        ("plugin_contract", "::text"),
        ("priority", "::int8"),
    ];
    COLS.iter()
        .map(|(c, cast)| format!("{alias}.{c}{cast}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored timestamp as the text the `Job` row type holds.
fn time_text(row: &Row, idx: usize) -> Result<Option<String>> {
    let t: Option<NaiveDateTime> = row.try_get(idx).map_err(map_err)?;
    Ok(t.map(|t| format_time(t.and_utc())))
}

/// Read a row selected with [`job_columns`] (from column `base` on).
pub(crate) fn job_from_row(row: &Row) -> Result<Job> {
    let g = |e: tokio_postgres::Error| map_err(e);
    let id = JobId(row.try_get(0).map_err(g)?);
    let status: String = row.try_get(11).map_err(g)?;
    let status = status
        .parse::<JobStatus>()
        .map_err(|_| Error::Other(format!("job {id} has unreadable status '{status}'")))?;
    Ok(Job {
        id,
        co_id: row.try_get(1).map_err(g)?,
        job_type: row.try_get(2).map_err(g)?,
        job_type_fk: row.try_get(3).map_err(g)?,
        job_mode: row.try_get(4).map_err(g)?,
        job_params: row.try_get(5).map_err(g)?,
        requeue_interval: row.try_get(6).map_err(g)?,
        retry_interval: row.try_get(7).map_err(g)?,
        max_retry: row.try_get(8).map_err(g)?,
        max_retry_count: row.try_get(9).map_err(g)?,
        requeued_from_co_job_id: row.try_get::<_, Option<i64>>(10).map_err(g)?.map(JobId),
        status,
        register_summary: row.try_get(12).map_err(g)?,
        start_summary: row.try_get(13).map_err(g)?,
        finish_summary: row.try_get(14).map_err(g)?,
        queue_time: time_text(row, 15)?,
        start_after_time: time_text(row, 16)?,
        start_time: time_text(row, 17)?,
        complete_time: time_text(row, 18)?,
        percent_complete: row.try_get(19).map_err(g)?,
        runner_id: row.try_get(20).map_err(g)?,
        lease_expires_at: time_text(row, 21)?,
        fuel_limit: row.try_get(22).map_err(g)?,
        memory_limit_mib: row.try_get(23).map_err(g)?,
        timeout_secs: row.try_get(24).map_err(g)?,
        fuel_used: row.try_get(25).map_err(g)?,
        job_log: row.try_get(26).map_err(g)?,
        cancel_requested_by: row.try_get(27).map_err(g)?,
        cancel_requested_at: time_text(row, 28)?,
        queued_by: row.try_get(29).map_err(g)?,
        status_line: row.try_get(30).map_err(g)?,
        retried_by: row.try_get(31).map_err(g)?,
        schedule_name: row.try_get(32).map_err(g)?,
        schedule_tick: time_text(row, 33)?,
        backoff: row.try_get(34).map_err(g)?,
        backoff_max: row.try_get(35).map_err(g)?,
        result: row.try_get(36).map_err(g)?,
        parent_co_job_id: row.try_get::<_, Option<i64>>(37).map_err(g)?.map(JobId),
        plugin_sha256: row.try_get(38).map_err(g)?,
        plugin_contract: row.try_get(39).map_err(g)?,
        priority: row.try_get(40).map_err(g)?,
    })
}

/// Seconds as PostgreSQL takes them in `make_interval(secs => ...)`,
/// capped at 100 years so that no input overflows an interval or a
/// timestamp.
pub(crate) fn interval_secs(d: Duration) -> f64 {
    const CAP: f64 = 100.0 * 365.0 * 86_400.0;
    d.as_secs_f64().min(CAP)
}

#[async_trait]
impl JobStore for PgStore {
    fn driver(&self) -> &'static str {
        "postgres"
    }

    async fn claim(&self, c: &Claim) -> Result<Vec<Job>> {
        runner::claim(&mut self.client().await?, c).await
    }

    async fn claim_one(&self, c: &Claim, id: JobId) -> Result<Option<Job>> {
        runner::claim_one(&mut self.client().await?, c, id).await
    }

    async fn start(
        &self,
        runner_id: &str,
        started: &[(JobId, DateTime<Utc>)],
    ) -> Result<Vec<JobId>> {
        runner::start(&self.client().await?, runner_id, started).await
    }

    async fn finish(
        &self,
        runner_id: &str,
        items: &[Finish],
    ) -> Result<Vec<Result<Option<Successor>>>> {
        let results = self.ends.finish(runner_id, items).await?;
        if results.iter().any(|r| matches!(r, Ok(Some(_)))) {
            self.notify.job_queued().await;
        }
        Ok(results)
    }

    async fn heartbeat(&self, runner_id: &str, lease: Duration) -> Result<Vec<JobId>> {
        runner::heartbeat(&self.client().await?, runner_id, lease).await
    }

    async fn rescue(&self) -> Result<Vec<Rescued>> {
        let rescued = runner::rescue(&mut self.client().await?).await?;
        if !rescued.is_empty() {
            self.notify.job_queued().await;
        }
        Ok(rescued)
    }

    async fn release(&self, runner_id: &str, id: JobId, summary: &str) -> Result<Released> {
        let released = runner::release(&mut self.client().await?, runner_id, id, summary).await?;
        if released == Released::Queued {
            self.notify.job_queued().await;
        }
        Ok(released)
    }

    async fn progress(&self, runner_id: &str, updates: &[Progress]) -> Result<()> {
        runner::progress(&self.client().await?, runner_id, updates).await
    }

    async fn cancel_requests(&self, runner_id: &str) -> Result<Vec<(JobId, String)>> {
        runner::cancel_requests(&self.client().await?, runner_id).await
    }

    async fn next_due(&self) -> Result<Option<Duration>> {
        runner::next_due(&self.client().await?).await
    }

    async fn wait_for_jobs(&self, timeout: Duration) -> Result<Wake> {
        Ok(self.notify.wait(timeout).await)
    }

    async fn queue(&self, job: &NewJob) -> Result<JobId> {
        let id = jobs::queue(&self.client().await?, job).await?;
        self.notify.job_queued().await;
        Ok(id)
    }

    async fn queue_many(&self, new: &[NewJob]) -> Result<Vec<JobId>> {
        let ids = jobs::queue_many(&mut self.client().await?, new).await?;
        if !ids.is_empty() {
            self.notify.job_queued().await;
        }
        Ok(ids)
    }

    async fn queue_unique(&self, job: &NewJob) -> Result<Queued> {
        let queued = jobs::queue_unique(&mut self.client().await?, job).await?;
        if matches!(queued, Queued::New(_)) {
            self.notify.job_queued().await;
        }
        Ok(queued)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>> {
        jobs::get(&self.client().await?, id).await
    }

    async fn list(&self, filter: &ListFilter, before: Option<JobId>) -> Result<Vec<Job>> {
        jobs::list(&self.client().await?, filter, before).await
    }

    async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>> {
        jobs::history(&self.client().await?, id).await
    }

    async fn add_history(&self, rec: &NewHistoryRecord) -> Result<i64> {
        jobs::add_history(&self.client().await?, rec).await
    }

    async fn children(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>> {
        jobs::children(&self.client().await?, id, after, limit).await
    }

    async fn retry_chain(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>> {
        jobs::retry_chain(&self.client().await?, id, after, limit).await
    }

    async fn chain_page(&self, id: JobId, around: usize) -> Result<ChainPage> {
        jobs::chain_page(&self.client().await?, id, around).await
    }

    async fn cancel(&self, id: JobId, who: &str) -> Result<CancelResult> {
        jobs::cancel(&mut self.client().await?, id, who).await
    }

    async fn prune(&self, older_than: DateTime<Utc>) -> Result<u64> {
        jobs::prune(&mut self.client().await?, older_than).await
    }

    async fn counts_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        jobs::counts_by_status(&self.client().await?).await
    }

    async fn latencies(&self, job_type: &str) -> Result<Latencies> {
        jobs::latencies(&self.client().await?, job_type).await
    }

    async fn add_co(&self, name: &str, description: Option<&str>) -> Result<i64> {
        jobs::add_co(&mut self.client().await?, name, description).await
    }

    async fn list_cos(&self) -> Result<Vec<Co>> {
        jobs::list_cos(&self.client().await?).await
    }

    async fn migrate(&self) -> Result<SchemaStatus> {
        schema::migrate(&mut self.client().await?).await
    }

    async fn schema_status(&self) -> Result<SchemaStatus> {
        schema::status(&self.client().await?).await
    }

    // ---- `cojobs serve` ----

    async fn search(&self, q: &JobQuery) -> Result<Vec<Job>> {
        serve::search(&self.client().await?, q).await
    }

    async fn count_groups(&self, co_id: Option<i64>) -> Result<Vec<GroupCount>> {
        serve::count_groups(&self.client().await?, co_id).await
    }

    async fn retry_now(&self, id: JobId, who: &str) -> Result<JobId> {
        let new = serve::retry_now(&mut self.client().await?, id, who).await?;
        self.notify.job_queued().await;
        Ok(new)
    }

    async fn add_token(&self, t: &NewToken) -> Result<i64> {
        serve::add_token(&mut self.client().await?, t).await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        serve::list_tokens(&self.client().await?).await
    }

    async fn revoke_token(&self, name: &str) -> Result<()> {
        serve::revoke_token(&self.client().await?, name).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        serve::token_by_hash(&self.client().await?, hash).await
    }

    async fn add_schedule(&self, s: &NewSchedule) -> Result<i64> {
        schedules::add(&mut self.client().await?, s).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        schedules::list(&self.client().await?, None).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        Ok(schedules::list(&self.client().await?, Some(name))
            .await?
            .into_iter()
            .next())
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()> {
        schedules::set_paused(&self.client().await?, name, paused).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<()> {
        schedules::remove(&self.client().await?, name).await
    }

    async fn enqueue_due_ticks(&self) -> Result<Vec<JobId>> {
        let ids = schedules::enqueue_due_ticks(&mut self.client().await?).await?;
        if !ids.is_empty() {
            self.notify.job_queued().await;
        }
        Ok(ids)
    }

    async fn set_type_limits(&self, job_type: &str, limits: &TypeLimits) -> Result<()> {
        limits::set_type_limits(&self.client().await?, job_type, limits).await
    }

    async fn set_co_max_running(&self, co_id: i64, max: Option<i64>) -> Result<()> {
        limits::set_co_max_running(&self.client().await?, co_id, max).await
    }

    async fn pause(&self, target: &PauseTarget, who: &str) -> Result<bool> {
        limits::pause(&self.client().await?, target, who).await
    }

    async fn resume(&self, target: &PauseTarget) -> Result<bool> {
        let resumed = limits::resume(&self.client().await?, target).await?;
        if resumed {
            // Its queued rows are claimable again: wake idle runners.
            self.notify.job_queued().await;
        }
        Ok(resumed)
    }

    async fn throttles(&self) -> Result<Throttles> {
        limits::throttles(&self.client().await?).await
    }

    // ---- runners and recent activity ----

    async fn record_runner(&self, r: &RunnerRecord) -> Result<()> {
        activity::record_runner(&mut self.client().await?, r).await
    }

    async fn remove_runner(&self, id: &str) -> Result<()> {
        activity::remove_runner(&self.client().await?, id).await
    }

    async fn list_runners(&self) -> Result<Vec<RunnerRow>> {
        activity::list_runners(&self.client().await?).await
    }

    async fn activity(&self, co_id: Option<i64>, minutes: i64) -> Result<Activity> {
        activity::activity(&self.client().await?, co_id, minutes).await
    }
}
