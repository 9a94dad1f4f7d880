//! User-facing operations: queue, read, list, cancel, prune, history, COs.

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use super::{JOB_COLUMNS, Job, JobId, Result, Store, StoreError, format_time, optional};
use crate::job::{self, JobStatus, RecordStatus};

/// A job to queue. Build with [`NewJob::new`] and set what you need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewJob {
    pub co_id: i64,
    pub job_type: String,
    pub job_mode: Option<String>,
    /// JSON text; must be an object. `None` stores NULL (= `{}`).
    pub job_params: Option<String>,
    pub requeue_interval: Option<i64>,
    pub retry_interval: Option<i64>,
    pub max_retry: Option<i64>,
    /// When it becomes due; `None` = at once.
    pub start_after: Option<DateTime<Utc>>,
    /// Cut to 256 characters.
    pub register_summary: Option<String>,
    pub fuel_limit: Option<i64>,
    pub memory_limit_mib: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub queued_by: Option<String>,
    /// How retries back off; `None` stores NULL (= fixed).
    pub backoff: Option<job::Backoff>,
    /// The longest exponential retry delay, seconds; `None` = an hour.
    pub backoff_max: Option<i64>,
    /// 1 to 9, smaller runs first; `None` = [`crate::bounds::DEFAULT_PRIORITY`].
    pub priority: Option<i64>,
}

impl NewJob {
    pub fn new(co_id: i64, job_type: impl Into<String>) -> NewJob {
        NewJob {
            co_id,
            job_type: job_type.into(),
            ..NewJob::default()
        }
    }
}

/// What [`Store::queue_unique`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// A new row.
    New(JobId),
    /// A live (`Q` or `GO`) row with the same co, type, mode and params
    /// already exists; nothing was written.
    Existing(JobId, JobStatus),
}

/// Which rows [`Store::list`] returns (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    pub co_id: Option<i64>,
    /// Only the rows this schedule queued.
    pub schedule: Option<String>,
    /// `None` = all.
    pub limit: Option<i64>,
}

/// A page of a retry/requeue chain ([`Store::chain_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPage {
    /// Rows of the chain read: all of it, or [`CHAIN_WINDOW`] (+1) either
    /// side of the job when it is longer.
    pub total: usize,
    /// The chain goes on past the rows read, towards older / newer rows.
    pub older_beyond: bool,
    pub newer_beyond: bool,
    /// Rows read in each status (every status, zeros too).
    pub counts: Vec<(JobStatus, i64)>,
    /// Where the job asked about stands in the chain (0 = oldest).
    pub position: usize,
    /// The chain position of `rows[0]`.
    pub first: usize,
    /// The rows around the job, oldest first.
    pub rows: Vec<ChainEntry>,
}

/// How far either side of a job [`Store::chain_page`] walks its chain: a
/// chain can hold tens of thousands of rows (a job requeued every minute
/// for a month), and walking all of them costs a row read each.
pub const CHAIN_WINDOW: usize = 1000;

/// One row of a [`ChainPage`]: what the chain table shows, no log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainEntry {
    pub id: JobId,
    pub requeued_from_co_job_id: Option<JobId>,
    pub status: String,
    pub max_retry_count: Option<i64>,
    pub complete_time: Option<String>,
    pub finish_summary: Option<String>,
}

impl ChainEntry {
    /// The chain table's columns of `job`.
    pub fn of(job: &Job) -> ChainEntry {
        ChainEntry {
            id: job.id,
            requeued_from_co_job_id: job.requeued_from_co_job_id,
            status: job.status.code().to_string(),
            max_retry_count: job.max_retry_count,
            complete_time: job.complete_time.clone(),
            finish_summary: job.finish_summary.clone(),
        }
    }
}

impl ChainPage {
    /// A page over `members` (the chain's (id, status), oldest first, read
    /// up to one row past [`CHAIN_WINDOW`] either side of the job at
    /// `position`), without its rows: `first` says which to show, up to
    /// `around` either side.
    pub fn of_members(members: &[(JobId, String)], position: usize, around: usize) -> ChainPage {
        let older_beyond = position > CHAIN_WINDOW;
        let newer_beyond = members.len().saturating_sub(position) > CHAIN_WINDOW.saturating_add(1);
        let mut counts: Vec<(JobStatus, i64)> = JobStatus::ALL.iter().map(|&s| (s, 0)).collect();
        for (_, status) in members {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| s.code() == status.as_str()) {
                slot.1 = slot.1.saturating_add(1);
            }
        }
        ChainPage {
            older_beyond,
            newer_beyond,
            total: members.len(),
            counts,
            position,
            first: position.saturating_sub(around),
            rows: Vec::new(),
        }
    }
}

/// The `SELECT` of [`Store::list`] for `filter`, and its values: only the
/// filters given appear in the `WHERE`.
pub(super) fn list_sql(
    filter: &ListFilter,
    before: Option<JobId>,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds = Vec::new();
    let mut values = Vec::new();
    if let Some(before) = before {
        values.push(Value::Integer(before.0));
        conds.push(format!("id < ?{}", values.len()));
    }
    if let Some(status) = filter.status {
        values.push(Value::Text(status.code().to_string()));
        conds.push(format!("status = ?{}", values.len()));
    }
    if let Some(job_type) = &filter.job_type {
        values.push(Value::Text(job_type.clone()));
        conds.push(format!("job_type = ?{}", values.len()));
    }
    if let Some(co_id) = filter.co_id {
        values.push(Value::Integer(co_id));
        conds.push(format!("co_id = ?{}", values.len()));
    }
    if let Some(name) = &filter.schedule {
        values.push(Value::Text(name.clone()));
        conds.push(format!("schedule_name = ?{}", values.len()));
    }
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    values.push(Value::Integer(filter.limit.unwrap_or(-1)));
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM cm_co_jobs {where_}ORDER BY id DESC LIMIT ?{}",
        values.len()
    );
    (sql, values)
}

/// The rows of a chain within `?2` steps of `?1` (and at most `?2 + 1`
/// each way, however the chain branches) as (id, status), oldest first
/// ([`Store::chain_page`]): up through `requeued_from_co_job_id` by primary
/// key, down by `cm_co_jobs_requeued_from`.
pub(super) const CHAIN_MEMBERS_SQL: &str = "WITH RECURSIVE \
       up(id, parent, n) AS ( \
         SELECT id, requeued_from_co_job_id, 0 FROM cm_co_jobs WHERE id = ?1 \
         UNION ALL \
         SELECT j.id, j.requeued_from_co_job_id, up.n + 1 FROM cm_co_jobs j JOIN up ON j.id = up.parent \
         WHERE up.n < ?2 LIMIT ?2 + 1), \
       down(id, n) AS ( \
         SELECT ?1, 0 \
         UNION ALL \
         SELECT j.id, down.n + 1 FROM cm_co_jobs j JOIN down ON j.requeued_from_co_job_id = down.id \
         WHERE down.n < ?2 LIMIT ?2 + 1) \
     SELECT id, status FROM cm_co_jobs \
     WHERE id IN (SELECT id FROM down UNION SELECT id FROM up) ORDER BY id";

/// What [`Store::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// The row was `Q`, or `GO` but not started yet, and is now `CX`.
    Canceled,
    /// The row is `GO`: its runner was asked to stop and will end it `CX`.
    StopRequested,
}

/// A `cm_co_job_history_records` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRecord {
    pub id: i64,
    pub co_job_id: JobId,
    pub record_key: Option<String>,
    pub co_person_id: Option<i64>,
    pub org_identity_id: Option<i64>,
    pub comment: Option<String>,
    pub status: Option<String>,
    pub created: Option<String>,
    pub modified: Option<String>,
}

/// A history record to add (the plugin's `record-history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHistoryRecord {
    pub co_job_id: JobId,
    pub record_key: Option<String>,
    pub co_person_id: Option<i64>,
    pub org_identity_id: Option<i64>,
    pub comment: String,
    pub status: RecordStatus,
}

/// A `cm_cos` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Co {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub created: Option<String>,
}

/// The validated, normalised form of a [`NewJob`] (shared by the drivers).
pub(super) struct Checked {
    pub(super) params: Option<String>,
    pub(super) params_value: serde_json::Map<String, serde_json::Value>,
    pub(super) summary: Option<String>,
}

/// Check a [`NewJob`] and normalise it; every driver calls this before
/// writing anything.
pub(super) fn check(job: &NewJob) -> Result<Checked> {
    job::validate_job_type(&job.job_type)?;
    if let Some(mode) = &job.job_mode
        && mode.chars().count() > 16
    {
        return Err(StoreError::ModeTooLong(mode.clone()));
    }
    for (field, value) in [
        ("requeue interval", job.requeue_interval),
        ("retry interval", job.retry_interval),
        ("max retry", job.max_retry),
        ("fuel limit", job.fuel_limit),
        ("memory limit", job.memory_limit_mib),
        ("timeout", job.timeout_secs),
        ("backoff max", job.backoff_max),
    ] {
        if let Some(value) = value
            && value < 0
        {
            return Err(StoreError::Negative { field, value });
        }
    }
    crate::bounds::PRIORITY.check_opt(job.priority)?;
    let (params, params_value) = match &job.job_params {
        None => (None, serde_json::Map::new()),
        Some(text) => {
            let map = super::parse_params(text)?;
            // Stored normalised (sorted keys, no spaces) so --unique
            // compares like with like.
            let norm = serde_json::Value::Object(map.clone()).to_string();
            (Some(norm), map)
        }
    };
    Ok(Checked {
        params,
        params_value,
        summary: job.register_summary.as_deref().map(job::truncate_summary),
    })
}

impl Store {
    /// Queue a job. Checks everything first and writes nothing on error.
    pub fn queue(&mut self, job: &NewJob) -> Result<JobId> {
        let checked = check(job)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = format_time((self.clock)());
        let id = insert_job(&tx, job, &checked, &now)?;
        tx.commit()?;
        Ok(id)
    }

    /// Queue many jobs in one transaction: all or nothing. Every job is
    /// checked before anything is written; on error nothing is written and
    /// [`StoreError::InBatch`] says which job (0-based) was wrong.
    pub fn queue_many(&mut self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        let in_batch = |index: usize, e: StoreError| StoreError::InBatch {
            index,
            source: Box::new(e),
        };
        let checked: Vec<Checked> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| check(j).map_err(|e| in_batch(i, e)))
            .collect::<Result<_>>()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = format_time((self.clock)());
        let mut ids = Vec::with_capacity(jobs.len());
        let mut known_cos = std::collections::HashSet::new();
        for (i, (job, checked)) in jobs.iter().zip(&checked).enumerate() {
            if known_cos.insert(job.co_id) {
                require_co(&tx, job.co_id).map_err(|e| in_batch(i, e))?;
            }
            ids.push(insert_row(&tx, job, checked, &now).map_err(|e| in_batch(i, e))?);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Per ended job of `job_type`: seconds from queued to started and from
    /// queued to completed (for `cojobs bench`), computed in SQL so that a
    /// million rows cost no memory here.
    pub fn latencies(&self, job_type: &str) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT (julianday(start_time) - julianday(queue_time)) * 86400.0, \
                    (julianday(complete_time) - julianday(queue_time)) * 86400.0, status = 'OK' \
             FROM cm_co_jobs WHERE job_type = ?1 AND status IN ('OK', 'X', 'CX')",
        )?;
        let mut to_start = Vec::new();
        let mut to_finish = Vec::new();
        let mut ok = 0;
        let rows = stmt.query_map([job_type], |r| {
            Ok((
                r.get::<_, Option<f64>>(0)?,
                r.get::<_, Option<f64>>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        for row in rows {
            let (s, f, is_ok) = row?;
            to_start.extend(s);
            to_finish.extend(f);
            ok += usize::from(is_ok);
        }
        Ok((to_start, to_finish, ok))
    }

    /// Queue a job unless a live (`Q` or `GO`) row with the same co, type,
    /// mode and params exists (the seed's non-concurrent mode). Params are
    /// compared as JSON values, so key order and spacing do not matter.
    pub fn queue_unique(&mut self, job: &NewJob) -> Result<Queued> {
        let checked = check(job)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "SELECT id, status, job_params FROM cm_co_jobs INDEXED BY cm_co_jobs_live \
                 WHERE status IN ('Q', 'GO') AND co_id = ?1 AND job_type = ?2 \
                   AND job_mode IS ?3 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![job.co_id, job.job_type, job.job_mode], |r| {
                Ok((
                    r.get::<_, JobId>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            for row in rows {
                let (id, status, params) = row?;
                let same = match params.as_deref().map(str::trim) {
                    None | Some("") => checked.params_value.is_empty(),
                    Some(text) => super::parse_params(text)
                        .map(|m| m == checked.params_value)
                        .unwrap_or(false),
                };
                if same {
                    let status = status
                        .parse()
                        .map_err(|_| StoreError::BadStatus { id, status })?;
                    return Ok(Queued::Existing(id, status));
                }
            }
        }
        let now = format_time((self.clock)());
        let id = insert_job(&tx, job, &checked, &now)?;
        tx.commit()?;
        Ok(Queued::New(id))
    }

    /// One row, or `None`.
    pub fn get(&self, id: JobId) -> Result<Option<Job>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM cm_co_jobs WHERE id = ?1"
        ))?;
        optional(stmt.query_row([id], Job::from_row))
    }

    /// One row, or [`StoreError::NoJob`].
    pub fn require(&self, id: JobId) -> Result<Job> {
        self.get(id)?.ok_or(StoreError::NoJob(id))
    }

    /// Rows matching `filter`, newest first. The `WHERE` names only the
    /// filters given, so each one can use its index (`cm_co_jobs_status`,
    /// `cm_co_jobs_type`, `cm_co_jobs_co`); a `(?1 IS NULL OR status = ?1)`
    /// form would scan the whole table.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Job>> {
        self.list_before(filter, None)
    }

    /// [`Store::list`] from a cursor: only rows older than `before`.
    pub fn list_before(&self, filter: &ListFilter, before: Option<JobId>) -> Result<Vec<Job>> {
        let (sql, values) = list_sql(filter, before);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), Job::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The history records of a job, oldest first.
    pub fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, co_job_id, record_key, co_person_id, org_identity_id, comment, \
                    status, created, modified \
             FROM cm_co_job_history_records WHERE co_job_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(HistoryRecord {
                id: r.get(0)?,
                co_job_id: r.get(1)?,
                record_key: r.get(2)?,
                co_person_id: r.get(3)?,
                org_identity_id: r.get(4)?,
                comment: r.get(5)?,
                status: r.get(6)?,
                created: r.get(7)?,
                modified: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Add a history record; key and comment are cut to 256 characters.
    pub fn add_history(&mut self, rec: &NewHistoryRecord) -> Result<i64> {
        let now = self.now_text();
        insert_history(&self.conn, &now, rec)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The child jobs `id`'s run queued, oldest first: at most `limit`
    /// after `after`.
    pub fn children(&self, id: JobId, after: Option<JobId>, limit: i64) -> Result<Vec<Job>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM cm_co_jobs \
             WHERE parent_co_job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![id, after.map_or(i64::MIN, |a| a.0), limit.max(0)],
            Job::from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The retry/requeue chain `id` belongs to: its ancestors through
    /// `requeued_from_co_job_id`, itself and its descendants, oldest first.
    /// Loads every row of the chain with its log: for small chains (tests);
    /// `show` uses [`Store::chain_page`].
    pub fn retry_chain(&self, id: JobId) -> Result<Vec<Job>> {
        let page = self.chain_page(id, usize::MAX)?;
        page.rows
            .iter()
            .map(|entry| self.require(entry.id))
            .collect()
    }

    /// A page of the chain `id` belongs to: how many rows it has in each
    /// status (within [`CHAIN_WINDOW`] rows either side of `id`), where
    /// `id` stands among them, and up to `around` rows either side of `id`
    /// (without their logs). The walk reads two columns per row; only the
    /// page's rows are read in full, so a job requeued every minute for a
    /// month (43,000 rows) shows at once.
    pub fn chain_page(&self, id: JobId, around: usize) -> Result<ChainPage> {
        let members = self.chain_members(id)?;
        let position = members.iter().position(|(m, _)| *m == id).unwrap_or(0);
        let mut page = ChainPage::of_members(&members, position, around);
        let first = page.first;
        let last = position
            .saturating_add(around)
            .min(members.len().saturating_sub(1));
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, requeued_from_co_job_id, status, max_retry_count, complete_time, \
                    finish_summary FROM cm_co_jobs WHERE id = ?1",
        )?;
        let mut rows = Vec::new();
        for (member, _) in members.get(first..=last).unwrap_or_default() {
            let entry = optional(stmt.query_row([member], |r| {
                Ok(ChainEntry {
                    id: r.get(0)?,
                    requeued_from_co_job_id: r.get(1)?,
                    status: r.get(2)?,
                    max_retry_count: r.get(3)?,
                    complete_time: r.get(4)?,
                    finish_summary: r.get(5)?,
                })
            }))?;
            rows.extend(entry);
        }
        page.rows = rows;
        Ok(page)
    }

    /// Every row of `id`'s chain as (id, status), oldest first.
    fn chain_members(&self, id: JobId) -> Result<Vec<(JobId, String)>> {
        let mut stmt = self.conn.prepare_cached(CHAIN_MEMBERS_SQL)?;
        // One row past the window tells whether the chain goes on.
        let window = i64::try_from(CHAIN_WINDOW.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![id, window], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Cancel a job: `Q` ends `CX` at once ("canceled by <who>"), and so
    /// does a `GO` row its runner claimed but has not started (no
    /// `start_time`: the runner records the start, refused for a row that
    /// is no longer its, before the plugin runs, so such a job never runs);
    /// a started `GO` row gets a stop request its runner acts on; an ended
    /// row is an error.
    pub fn cancel(&mut self, id: JobId, who: &str) -> Result<CancelResult> {
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, bool)> = optional(tx.query_row(
            "SELECT status, start_time IS NOT NULL FROM cm_co_jobs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ))?;
        let (status, started) = row.ok_or(StoreError::NoJob(id))?;
        let status: JobStatus = status
            .parse()
            .map_err(|_| StoreError::BadStatus { id, status })?;
        let ends_now = status == JobStatus::Queued || (status == JobStatus::InProgress && !started);
        let result = match status {
            _ if ends_now => {
                tx.execute(
                    "UPDATE cm_co_jobs SET status = 'CX', complete_time = ?2, finish_summary = ?3, \
                        cancel_requested_by = ?4, cancel_requested_at = ?2, lease_expires_at = NULL \
                     WHERE id = ?1 AND (status = 'Q' OR (status = 'GO' AND start_time IS NULL))",
                    params![
                        id,
                        now,
                        job::truncate_summary(&format!("canceled by {who}")),
                        who
                    ],
                )?;
                CancelResult::Canceled
            }
            JobStatus::InProgress => {
                tx.execute(
                    "UPDATE cm_co_jobs SET cancel_requested_by = coalesce(cancel_requested_by, ?2), \
                        cancel_requested_at = coalesce(cancel_requested_at, ?3) \
                     WHERE id = ?1 AND status = 'GO'",
                    params![id, who, now],
                )?;
                CancelResult::StopRequested
            }
            ended => return Err(StoreError::AlreadyEnded { id, status: ended }),
        };
        tx.commit()?;
        Ok(result)
    }

    /// Delete ended rows (`OK`, `X`, `CX`) whose `complete_time` is before
    /// `older_than`, with their history records. Returns how many jobs.
    /// A successor of a pruned row keeps living; its link becomes NULL.
    pub fn prune(&mut self, older_than: DateTime<Utc>) -> Result<usize> {
        let cutoff = format_time(older_than);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM cm_co_job_history_records WHERE co_job_id IN ( \
               SELECT id FROM cm_co_jobs WHERE status IN ('OK', 'X', 'CX') AND complete_time < ?1)",
            [&cutoff],
        )?;
        let n = tx.execute(
            "DELETE FROM cm_co_jobs WHERE status IN ('OK', 'X', 'CX') AND complete_time < ?1",
            [&cutoff],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Number of rows in each status (every status, zeros included).
    ///
    /// `OK`, the status most rows end in, is not counted row by row: it is
    /// the table's row count (which SQLite takes page by page) less the
    /// other four, each a range of `cm_co_jobs_status` (the status column
    /// admits only the five codes). So a refresh of `watch` costs little
    /// at 1,000,000 ended rows.
    pub fn counts_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT (SELECT count(*) FROM cm_co_jobs), \
                    (SELECT count(*) FROM cm_co_jobs WHERE status = 'Q'), \
                    (SELECT count(*) FROM cm_co_jobs WHERE status = 'GO'), \
                    (SELECT count(*) FROM cm_co_jobs WHERE status = 'X'), \
                    (SELECT count(*) FROM cm_co_jobs WHERE status = 'CX')",
        )?;
        let [total, queued, running, failed, canceled]: [i64; 5] = stmt.query_row([], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])
        })?;
        let others = [queued, running, failed, canceled]
            .iter()
            .fold(0i64, |sum, n| sum.saturating_add(*n));
        let ok = total.saturating_sub(others);
        Ok(JobStatus::ALL
            .iter()
            .map(|&st| {
                let n = match st {
                    JobStatus::Queued => queued,
                    JobStatus::InProgress => running,
                    JobStatus::Complete => ok,
                    JobStatus::Failed => failed,
                    JobStatus::Canceled => canceled,
                };
                (st, n)
            })
            .collect())
    }

    /// Number of rows in `cm_co_jobs`.
    pub fn job_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM cm_co_jobs", [], |r| r.get(0))?)
    }

    /// Add a CO; returns its id.
    pub fn add_co(&mut self, name: &str, description: Option<&str>) -> Result<i64> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StoreError::EmptyCoName);
        }
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: Option<i64> = optional(tx.query_row(
            "SELECT id FROM cm_cos WHERE name = ?1",
            [name],
            |r| r.get(0),
        ))?;
        if exists.is_some() {
            return Err(StoreError::CoExists(name.to_string()));
        }
        tx.execute(
            "INSERT INTO cm_cos (name, description, status, created, modified) \
             VALUES (?1, ?2, 'A', ?3, ?3)",
            params![name, description.map(job::truncate_summary), now],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// All COs, by id.
    pub fn list_cos(&self) -> Result<Vec<Co>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, description, status, created FROM cm_cos ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Co {
                id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                status: r.get(3)?,
                created: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn insert_job(
    tx: &rusqlite::Transaction<'_>,
    job: &NewJob,
    checked: &Checked,
    now: &str,
) -> Result<JobId> {
    require_co(tx, job.co_id)?;
    insert_row(tx, job, checked, now)
}

/// Refuse an unknown CO with [`StoreError::NoCo`].
pub(super) fn require_co(tx: &rusqlite::Transaction<'_>, co_id: i64) -> Result<()> {
    let co: Option<i64> = optional(
        tx.prepare_cached("SELECT id FROM cm_cos WHERE id = ?1")?
            .query_row([co_id], |r| r.get(0)),
    )?;
    match co {
        Some(_) => Ok(()),
        None => Err(StoreError::NoCo(co_id)),
    }
}

/// Insert a checked job whose CO exists.
fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    job: &NewJob,
    checked: &Checked,
    now: &str,
) -> Result<JobId> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, requeue_interval, \
            retry_interval, max_retry, max_retry_count, status, register_summary, queue_time, \
            start_after_time, fuel_limit, memory_limit_mib, timeout_secs, queued_by, backoff, \
            backoff_max, priority) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'Q', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    stmt.execute(params![
        job.co_id,
        job.job_type,
        job.job_mode,
        checked.params,
        job.requeue_interval,
        job.retry_interval,
        job.max_retry,
        checked.summary,
        now,
        job.start_after.map(format_time),
        job.fuel_limit,
        job.memory_limit_mib,
        job.timeout_secs,
        job.queued_by,
        job.backoff.map(job::Backoff::name),
        job.backoff_max,
        job.priority.unwrap_or(crate::bounds::DEFAULT_PRIORITY),
    ])?;
    Ok(JobId(tx.last_insert_rowid()))
}

/// Insert one history record (key and comment cut to 256 characters) on
/// `conn`, which may be inside a transaction.
pub(super) fn insert_history(
    conn: &rusqlite::Connection,
    now: &str,
    rec: &NewHistoryRecord,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO cm_co_job_history_records \
           (co_job_id, record_key, co_person_id, org_identity_id, comment, status, created, modified) \
         SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?7 FROM cm_co_jobs WHERE id = ?1",
    )?;
    let n = stmt.execute(params![
        rec.co_job_id,
        rec.record_key.as_deref().map(job::truncate_summary),
        rec.co_person_id,
        rec.org_identity_id,
        job::truncate_summary(&rec.comment),
        rec.status.code(),
        now,
    ])?;
    if n == 0 {
        return Err(StoreError::NoJob(rec.co_job_id));
    }
    Ok(())
}
