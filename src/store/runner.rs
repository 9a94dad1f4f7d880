//! Runner-facing operations: claim, finish, heartbeat, rescue, release,
//! progress, cancel checks.
//!
//! A claimed row is `GO` with `runner_id` and `lease_expires_at`; every
//! later write by that runner says `WHERE status = 'GO' AND runner_id = ?`,
//! so a runner that lost its row (canceled and rescued, or rescued after
//! its lease ran out) writes nothing.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{TransactionBehavior, params};

use super::driver::Claim;
use super::{JOB_COLUMNS, Job, JobId, Result, Store, StoreError, format_time, optional};
use crate::bounds;
use crate::job::{self, JobStatus, Outcome};

/// The claim statement for batches of `n`. Fair between COs, highest
/// priority first within a CO, and under the limits of
/// docs/design.md#limits-and-pause:
///
/// - `tl` / `cl`: the room each limited job type / CO has now (how many
///   more rows may start; 0 when paused), counted in this statement, so
///   the limits hold across runner processes (SQLite runs one write at a
///   time: no other claim runs between the count and the update).
/// - `cos`: every CO with queued rows, by a skip-scan of the partial index
///   `cm_co_jobs_claim` (one seek per CO), minus COs without room.
/// - `types`: within each such CO, every job type with queued rows (one
///   seek per (CO, type)), minus types without room: a paused or full type
///   costs one seek, however many of its rows wait.
/// - `cand`: for each (CO, type) and each priority level, its `n`
///   earliest due rows (one seek each, in index order: rows due later cost
///   nothing).
/// - `by_co` / `ranked`: each candidate's rank within its CO by
///   (priority, due, id), then within its type by the fair order.
/// - The update takes the best `n` by (CO rank, priority, due, id): the
///   1st of every CO, then the 2nd..., no more of a CO than the runner's
///   cap `?5` (minus what it holds) or the CO's room, no more of a type
///   than its room.
///
/// `?1` due cutoff, `?2` runner, `?3` lease end, `?4` start summary, `?5`
/// per-CO cap or NULL, `?6` start time or NULL, `?7` now (rate windows).
/// Cost grows with the number of COs and types and `n`, never with the
/// number of rows: every `cm_co_jobs` access is a seek in an index or by
/// primary key. (`+status` keeps the outer update on the primary key;
/// `INDEXED BY` pins the plan, which without `ANALYZE` statistics would
/// find `min(co_id)` by walking every queued row of a status index.)
pub(super) fn claim_sql(n: usize) -> String {
    let prios = (bounds::PRIORITY.min..=bounds::PRIORITY.max)
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH RECURSIVE \
           tl(job_type, room) AS MATERIALIZED ( \
             SELECT t.job_type, {TYPE_ROOM} FROM cojobs_type_limits t), \
           cl(co_id, room) AS MATERIALIZED ( \
             SELECT c.co_id, {CO_ROOM} FROM cojobs_co_limits c), \
           cos(co) AS ( \
             SELECT (SELECT min(co_id) FROM cm_co_jobs INDEXED BY cm_co_jobs_claim \
                     WHERE status = 'Q') \
             UNION ALL \
             SELECT (SELECT min(co_id) FROM cm_co_jobs INDEXED BY cm_co_jobs_claim \
                     WHERE status = 'Q' AND co_id > cos.co) \
             FROM cos WHERE cos.co IS NOT NULL), \
           types(co, t) AS ( \
             SELECT cos.co, (SELECT min(job_type) FROM cm_co_jobs INDEXED BY cm_co_jobs_claim \
                             WHERE status = 'Q' AND co_id = cos.co) \
             FROM cos WHERE cos.co IS NOT NULL \
               AND coalesce((SELECT room FROM cl WHERE cl.co_id = cos.co), 1) > 0 \
             UNION ALL \
             SELECT types.co, (SELECT min(job_type) FROM cm_co_jobs INDEXED BY cm_co_jobs_claim \
                               WHERE status = 'Q' AND co_id = types.co AND job_type > types.t) \
             FROM types WHERE types.t IS NOT NULL), \
           prio(p) AS (VALUES {prios}), \
           cand(id, co_id, job_type, prio, due) AS ( \
             SELECT j.id, j.co_id, j.job_type, j.priority, \
                    coalesce(j.start_after_time, j.queue_time, '') \
             FROM types JOIN prio JOIN cm_co_jobs j ON j.id IN ( \
               SELECT q.id FROM cm_co_jobs q INDEXED BY cm_co_jobs_claim \
               WHERE q.status = 'Q' AND q.co_id = types.co AND q.job_type = types.t \
                 AND q.priority = prio.p \
                 AND coalesce(q.start_after_time, q.queue_time, '') <= ?1 \
               ORDER BY coalesce(q.start_after_time, q.queue_time, ''), q.id LIMIT {n}) \
             WHERE types.t IS NOT NULL \
               AND coalesce((SELECT room FROM tl WHERE tl.job_type = types.t), 1) > 0), \
           by_co(id, co_id, job_type, prio, due, rn) AS ( \
             SELECT id, co_id, job_type, prio, due, \
                    row_number() OVER (PARTITION BY co_id ORDER BY prio, due, id) \
             FROM cand), \
           ranked(id, co_id, job_type, prio, due, rn, tn) AS ( \
             SELECT id, co_id, job_type, prio, due, rn, \
                    row_number() OVER (PARTITION BY job_type ORDER BY rn, prio, due, id) \
             FROM by_co) \
         UPDATE cm_co_jobs SET status = 'GO', start_time = ?6, runner_id = ?2, \
             lease_expires_at = ?3, start_summary = ?4, percent_complete = 0, \
             status_line = NULL, complete_time = NULL \
         WHERE id IN ( \
             SELECT id FROM ranked \
             WHERE (?5 IS NULL OR rn <= ?5 - ( \
               SELECT count(*) FROM cm_co_jobs r INDEXED BY cm_co_jobs_running \
               WHERE r.status = 'GO' AND r.runner_id = ?2 AND r.co_id = ranked.co_id)) \
               AND rn <= coalesce((SELECT room FROM cl WHERE cl.co_id = ranked.co_id), {NO_LIMIT}) \
               AND tn <= coalesce((SELECT room FROM tl WHERE tl.job_type = ranked.job_type), {NO_LIMIT}) \
             ORDER BY rn, prio, due, id LIMIT {n}) \
           AND +status = 'Q' \
         RETURNING {JOB_COLUMNS}"
    )
}

/// "No limit" in the claim's room arithmetic (`i64::MAX`).
const NO_LIMIT: &str = "9223372036854775807";

/// How many more rows of the job type of `cojobs_type_limits t` may start
/// now: 0 when paused, else the least of its concurrency minus its `GO`
/// rows and its rate minus its starts in the window ending at `?7` (rows
/// claimed but not started yet count as starts). [`NO_LIMIT`] when
/// neither is set.
const TYPE_ROOM: &str = "CASE WHEN t.paused_by IS NOT NULL THEN 0 ELSE min( \
       CASE WHEN t.concurrency IS NULL THEN 9223372036854775807 ELSE t.concurrency - ( \
         SELECT count(*) FROM cm_co_jobs g INDEXED BY cm_co_jobs_running_type \
         WHERE g.status = 'GO' AND g.job_type = t.job_type) END, \
       CASE WHEN t.rate_max IS NULL OR t.rate_window_secs IS NULL THEN 9223372036854775807 \
       ELSE t.rate_max - ( \
         SELECT count(*) FROM cm_co_jobs s INDEXED BY cm_co_jobs_started \
         WHERE s.job_type = t.job_type \
           AND s.start_time > strftime('%Y-%m-%d %H:%M:%f', ?7, \
                                       printf('-%d seconds', t.rate_window_secs))) - ( \
         SELECT count(*) FROM cm_co_jobs g INDEXED BY cm_co_jobs_running_type \
         WHERE g.status = 'GO' AND g.job_type = t.job_type AND g.start_time IS NULL) END) END";

/// How many more rows of the CO of `cojobs_co_limits c` may start now: 0
/// when paused, else its `max_running` minus its `GO` rows.
const CO_ROOM: &str = "CASE WHEN c.paused_by IS NOT NULL THEN 0 \
       WHEN c.max_running IS NULL THEN 9223372036854775807 \
       ELSE c.max_running - (SELECT count(*) FROM cm_co_jobs g INDEXED BY cm_co_jobs_running_co \
                             WHERE g.status = 'GO' AND g.co_id = c.co_id) END";

/// Order claimed rows as the claim picked them (RETURNING has no order):
/// by rank within their CO (priority, due time, id), then priority, due
/// time, id. Moves the rows; no row is copied (this runs on every claim).
fn round_robin(mut jobs: Vec<Job>) -> Vec<Job> {
    fn due(j: &Job) -> &str {
        j.start_after_time
            .as_deref()
            .or(j.queue_time.as_deref())
            .unwrap_or("")
    }
    jobs.sort_by(|a, b| {
        (a.co_id, a.priority, due(a), a.id).cmp(&(b.co_id, b.priority, due(b), b.id))
    });
    let mut prev_co = None;
    let mut rank = 0usize;
    let mut ranked: Vec<(usize, Job)> = jobs
        .into_iter()
        .map(|j| {
            rank = if prev_co == Some(j.co_id) {
                rank.saturating_add(1)
            } else {
                0
            };
            prev_co = Some(j.co_id);
            (rank, j)
        })
        .collect();
    ranked.sort_by(|(ra, a), (rb, b)| {
        (*ra, a.priority, due(a), a.id).cmp(&(*rb, b.priority, due(b), b.id))
    });
    ranked.into_iter().map(|(_, j)| j).collect()
}

/// `start_summary` and `start_time` of a row the claim of `c` takes: started
/// now when `c.start`, else claimed and not started yet.
fn claimed_as(c: &Claim, now: DateTime<Utc>) -> (String, Option<String>) {
    if c.start {
        (started_summary(&c.runner_id), Some(format_time(now)))
    } else {
        let summary = format!("claimed by runner {}, not started yet", c.runner_id);
        (job::truncate_summary(&summary), None)
    }
}

fn started_summary(runner_id: &str) -> String {
    job::truncate_summary(&format!("started by runner {runner_id}"))
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> String {
    let lease = TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX);
    format_time(
        now.checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

impl Store {
    /// Claim up to `max` due rows for `runner_id` in one atomic statement:
    /// they become `GO` with a lease until now + `lease`. Two runners never
    /// get the same row. Returned in the claim's fair order: the earliest
    /// due row of each CO, then the second of each, and so on.
    pub fn claim(&mut self, runner_id: &str, max: usize, lease: Duration) -> Result<Vec<Job>> {
        self.claim_capped(&Claim::new(runner_id, max, lease))
    }

    /// [`Store::claim`] as `c` says: taking no more rows of one CO than
    /// `c.per_co` minus the rows of that CO the runner already holds
    /// (`--per-co`), only rows due by `c.due_by` (`run --once`: what was
    /// due when it started), and with `c.start` writing their start in the
    /// same statement. Otherwise a claimed row says so in `start_summary`
    /// ("claimed by runner …") until [`Store::start`] records its start.
    pub fn claim_capped(&mut self, c: &Claim) -> Result<Vec<Job>> {
        if c.max == 0 || c.per_co == Some(0) {
            return Ok(Vec::new());
        }
        let now = self.now();
        let cutoff = format_time(c.due_by.map_or(now, |d| d.min(now)));
        let (summary, start_time) = claimed_as(c, now);
        let mut stmt = self.conn.prepare_cached(&claim_sql(c.max))?;
        let rows = stmt.query_map(
            params![
                cutoff,
                c.runner_id,
                lease_end(now, c.lease),
                summary,
                c.per_co.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                start_time,
                format_time(now),
            ],
            Job::from_row,
        )?;
        let jobs: Vec<Job> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(round_robin(jobs))
    }

    /// Claim row `id` if it is queued and due (a `run --once` follow-up:
    /// a retry of a job this run ended), as `c` says (its `max` and
    /// `due_by` aside), and if its type and CO have room (limits, pause).
    pub fn claim_one(&mut self, c: &Claim, id: JobId) -> Result<Option<Job>> {
        let now = self.now();
        let (summary, start_time) = claimed_as(c, now);
        let mut stmt = self.conn.prepare_cached(&format!(
            "UPDATE cm_co_jobs SET status = 'GO', start_time = ?6, runner_id = ?2, \
                lease_expires_at = ?3, start_summary = ?4, percent_complete = 0, \
                status_line = NULL, complete_time = NULL \
             WHERE id = ?1 AND status = 'Q' \
               AND coalesce(start_after_time, queue_time, '') <= ?7 \
               AND (?5 IS NULL OR ?5 > ( \
                 SELECT count(*) FROM cm_co_jobs r INDEXED BY cm_co_jobs_running \
                 WHERE r.status = 'GO' AND r.runner_id = ?2 AND r.co_id = cm_co_jobs.co_id)) \
               AND coalesce((SELECT {TYPE_ROOM} FROM cojobs_type_limits t \
                             WHERE t.job_type = cm_co_jobs.job_type), 1) > 0 \
               AND coalesce((SELECT {CO_ROOM} FROM cojobs_co_limits c \
                             WHERE c.co_id = cm_co_jobs.co_id), 1) > 0 \
             RETURNING {JOB_COLUMNS}"
        ))?;
        optional(stmt.query_row(
            params![
                id,
                c.runner_id,
                lease_end(now, c.lease),
                summary,
                c.per_co.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                start_time,
                format_time(now),
            ],
            Job::from_row,
        ))
    }

    /// Record how a claimed row ended and queue its successor (retry or
    /// requeue, per [`job::successor`]), in one transaction. Only if the
    /// row is still `GO` and held by `runner_id`; otherwise writes nothing
    /// and returns [`StoreError::NotOurs`]. `log` (bounded by the caller)
    /// replaces `job_log` when given. Returns the successor's id.
    pub fn finish(
        &mut self,
        id: JobId,
        runner_id: &str,
        outcome: &Outcome,
        fuel_used: Option<i64>,
        log: Option<&str>,
    ) -> Result<Option<JobId>> {
        let item = Finish {
            fuel_used,
            log: log.map(str::to_string),
            ..Finish::new(id, outcome.clone())
        };
        self.finish_batch(runner_id, std::slice::from_ref(&item))?
            .pop()
            .unwrap_or(Err(StoreError::NoJob(id)))
    }

    /// [`Store::finish`] for many rows in ONE transaction (group commit:
    /// one fsync for the batch), each with the history records its run
    /// produced, written only if the row is still ours — so a run whose
    /// lease was lost records nothing. One result per item, in order; the
    /// outer error is for the transaction itself.
    pub fn finish_batch(
        &mut self,
        runner_id: &str,
        items: &[Finish],
    ) -> Result<Vec<Result<Option<JobId>>>> {
        Ok(self.record(runner_id, &[], items)?.1)
    }

    /// Extend the lease of every `GO` row of `runner_id` to now + `lease`.
    /// Returns the rows it still holds: a runner interrupts any run whose
    /// row is not among them (rescued while the runner was stalled, or
    /// otherwise taken from it).
    pub fn heartbeat(&mut self, runner_id: &str, lease: Duration) -> Result<Vec<JobId>> {
        let end = lease_end(self.now(), lease);
        let mut stmt = self.conn.prepare_cached(
            "UPDATE cm_co_jobs SET lease_expires_at = ?2 WHERE status = 'GO' AND runner_id = ?1 \
             RETURNING id",
        )?;
        let ids = stmt.query_map(params![runner_id, end], |r| r.get(0))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    /// Deal with every `GO` row whose lease ran out. A row whose run had
    /// begun (`start_time` set) ends `X` with "runner <id> stopped
    /// responding" and a retry per its policy (or `CX` if a cancel was
    /// requested). A row its runner claimed but never started goes back to
    /// `Q` as it was, costing no retry. Returns (rescued row, successor)
    /// pairs; a row put back is its own "successor".
    pub fn rescue_expired(&mut self) -> Result<Vec<(JobId, Option<JobId>)>> {
        let now = self.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired: Vec<Job> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM cm_co_jobs \
                 WHERE status = 'GO' AND lease_expires_at IS NOT NULL AND lease_expires_at < ?1 \
                 ORDER BY id"
            ))?;
            stmt.query_map([format_time(now)], Job::from_row)?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut rescued = Vec::with_capacity(expired.len());
        for job in &expired {
            let runner = job.runner_id.as_deref().unwrap_or("(unknown)");
            if job.start_time.is_none() && job.cancel_requested_by.is_none() {
                tx.prepare_cached(
                    "UPDATE cm_co_jobs SET status = 'Q', runner_id = NULL, lease_expires_at = NULL, \
                        percent_complete = NULL, status_line = NULL, start_summary = ?2 \
                     WHERE id = ?1 AND status = 'GO'",
                )?
                .execute(params![
                    job.id,
                    job::truncate_summary(&format!(
                        "returned to the queue: runner {runner} stopped responding before the job started"
                    ))
                ])?;
                rescued.push((job.id, Some(job.id)));
                continue;
            }
            let outcome = match &job.cancel_requested_by {
                Some(who) => Outcome::Canceled {
                    summary: format!("canceled by {who}"),
                },
                None => Outcome::Failed {
                    summary: format!("runner {runner} stopped responding"),
                    retry: job::Retry::Policy,
                },
            };
            let successor = end_row(
                &tx,
                job.runner_id.as_deref(),
                &Finish::new(job.id, outcome),
                now,
            )?
            .flatten();
            rescued.push((job.id, successor));
        }
        tx.commit()?;
        Ok(rescued)
    }

    /// Record that the run of a claimed row begins: its `start_time` and a
    /// "started by runner …" summary. False, writing nothing, when the row
    /// is no longer this runner's (canceled while claimed, or rescued): then
    /// the job must not run.
    pub fn start(&mut self, id: JobId, runner_id: &str) -> Result<bool> {
        let now = self.now();
        Ok(start_row(&self.conn, runner_id, id, now)?)
    }

    /// [`Store::start`] for the rows of `started` (one result each, in
    /// order), then the ends in `finishes` — all in ONE transaction (group
    /// commit). A row whose start is recorded is one a rescue treats as
    /// run, not as merely claimed.
    pub fn record(
        &mut self,
        runner_id: &str,
        started: &[JobId],
        finishes: &[Finish],
    ) -> Result<(Vec<bool>, FinishResults)> {
        let now = self.now();
        let now_text = format_time(now);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut starts = Vec::with_capacity(started.len());
        for id in started {
            starts.push(start_row(&tx, runner_id, *id, now)?);
        }
        let mut results = Vec::with_capacity(finishes.len());
        for item in finishes {
            // A row that is no longer ours is refused before anything is
            // written for it; any other error is the database's, and fails
            // (rolls back) the whole batch.
            match finish_one(&tx, runner_id, item, now, &now_text) {
                Err(e @ (StoreError::NotOurs { .. } | StoreError::NoJob(_))) => {
                    results.push(Err(e))
                }
                Err(e) => return Err(e),
                Ok(successor) => results.push(Ok(successor)),
            }
        }
        tx.commit()?;
        Ok((starts, results))
    }

    /// Put a `GO` row of `runner_id` back to `Q` as if never started (the
    /// shutdown path); `summary` goes to `start_summary` to say why. A row
    /// whose cancel was requested never goes back to `Q`: the same
    /// statement ends it `CX`, "canceled by <who>". Returns the status the
    /// row now has (`Q` or `CX`).
    pub fn release(&mut self, id: JobId, runner_id: &str, summary: &str) -> Result<JobStatus> {
        let now = self.now_text();
        let status: Option<String> = optional(
            self.conn
                .prepare_cached(
                    "UPDATE cm_co_jobs SET \
                        status = CASE WHEN cancel_requested_by IS NULL THEN 'Q' ELSE 'CX' END, \
                        start_time = CASE WHEN cancel_requested_by IS NULL THEN NULL ELSE start_time END, \
                        runner_id = CASE WHEN cancel_requested_by IS NULL THEN NULL ELSE runner_id END, \
                        percent_complete = CASE WHEN cancel_requested_by IS NULL THEN NULL ELSE percent_complete END, \
                        status_line = CASE WHEN cancel_requested_by IS NULL THEN NULL ELSE status_line END, \
                        start_summary = CASE WHEN cancel_requested_by IS NULL THEN ?3 ELSE start_summary END, \
                        complete_time = CASE WHEN cancel_requested_by IS NULL THEN NULL ELSE ?4 END, \
                        finish_summary = CASE WHEN cancel_requested_by IS NULL THEN finish_summary \
                            ELSE substr('canceled by ' || cancel_requested_by, 1, 256) END, \
                        lease_expires_at = NULL \
                     WHERE id = ?1 AND status = 'GO' AND runner_id = ?2 \
                     RETURNING status",
                )?
                .query_row(
                    params![id, runner_id, job::truncate_summary(summary), now],
                    |r| r.get(0),
                ),
        )?;
        let Some(status) = status else {
            return Err(self.not_ours(id, runner_id));
        };
        status
            .parse()
            .map_err(|_| StoreError::BadStatus { id, status })
    }

    /// Record progress of a `GO` row: `percent` clamped to 0..=100, and the
    /// plugin's status line when given (cut to 256 characters). Returns
    /// false, writing nothing, if the row is no longer this runner's.
    pub fn set_progress(
        &mut self,
        id: JobId,
        runner_id: &str,
        percent: i64,
        status_line: Option<&str>,
    ) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE cm_co_jobs SET percent_complete = ?3, \
                    status_line = coalesce(?4, status_line) \
                 WHERE id = ?1 AND status = 'GO' AND runner_id = ?2",
            )?
            .execute(params![
                id,
                runner_id,
                percent.clamp(0, 100),
                status_line.map(job::truncate_summary)
            ])?;
        Ok(n == 1)
    }

    /// Record which component runs a `GO` row of `runner_id`
    /// (`plugin_sha256`, `plugin_contract`). Returns false, writing
    /// nothing, if the row is no longer this runner's.
    pub fn set_plugin(&mut self, id: JobId, runner_id: &str, plugin: &PluginRun) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE cm_co_jobs SET plugin_sha256 = ?3, plugin_contract = ?4 \
                 WHERE id = ?1 AND status = 'GO' AND runner_id = ?2",
            )?
            .execute(params![id, runner_id, plugin.sha256, plugin.contract])?;
        Ok(n == 1)
    }

    /// Whether a stop was requested for a `GO` row.
    pub fn cancel_requested(&self, id: JobId) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT cancel_requested_by IS NOT NULL FROM cm_co_jobs WHERE id = ?1 AND status = 'GO'",
        )?;
        Ok(optional(stmt.query_row([id], |r| r.get::<_, bool>(0)))?.unwrap_or(false))
    }

    /// The `GO` rows of `runner_id` with a stop request, and who asked:
    /// one query per poll for all of a runner's jobs.
    pub fn cancel_requests(&self, runner_id: &str) -> Result<Vec<(JobId, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, cancel_requested_by FROM cm_co_jobs \
             WHERE status = 'GO' AND runner_id = ?1 AND cancel_requested_by IS NOT NULL",
        )?;
        let rows = stmt.query_map([runner_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The earliest due time of any queued row (text, as stored; `""` for
    /// a plain-SQL row without times), or `None` when nothing is queued.
    pub fn next_due(&self) -> Result<Option<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT coalesce(start_after_time, queue_time, '') FROM cm_co_jobs INDEXED BY cm_co_jobs_due \
             WHERE status = 'Q' ORDER BY coalesce(start_after_time, queue_time, ''), id LIMIT 1",
        )?;
        optional(stmt.query_row([], |r| r.get(0)))
    }

    fn not_ours(&self, id: JobId, runner_id: &str) -> StoreError {
        match self.get(id) {
            Ok(Some(job)) => StoreError::NotOurs {
                id,
                runner_id: runner_id.to_string(),
                status: job.status,
            },
            Ok(None) => StoreError::NoJob(id),
            Err(e) => e,
        }
    }
}

/// One result per [`Finish`] of a batch: the successor's id, or why the
/// row could not be ended (no longer ours).
pub type FinishResults = Vec<Result<Option<JobId>>>;

/// How one run ended, for [`Store::finish_batch`].
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: JobId,
    pub outcome: Outcome,
    pub fuel_used: Option<i64>,
    /// The run's captured log (bounded by the caller).
    pub log: Option<String>,
    /// History records the plugin made during the run.
    pub history: Vec<super::NewHistoryRecord>,
    /// The plugin's structured result (JSON text): stored with an `OK`
    /// end only, and only when at most [`super::RESULT_MAX_BYTES`].
    pub result: Option<String>,
    /// Child jobs the run queued: inserted with an `OK` end, in the same
    /// transaction, and only then (a failed run queues none).
    pub children: Vec<NewChild>,
    /// The component that ran (SHA-256, hex) and its contract version;
    /// `None` keeps what the row holds.
    pub plugin: Option<PluginRun>,
}

impl Finish {
    /// An end with nothing but its outcome.
    pub fn new(id: JobId, outcome: Outcome) -> Finish {
        Finish {
            id,
            outcome,
            fuel_used: None,
            log: None,
            history: Vec::new(),
            result: None,
            children: Vec::new(),
            plugin: None,
        }
    }

    /// What goes with the row's end: the result and the children, for an
    /// `OK` end; nothing for any other.
    pub(crate) fn completed(&self) -> (Option<&str>, &[NewChild]) {
        match self.outcome {
            Outcome::Complete { .. } => (
                self.result
                    .as_deref()
                    .filter(|r| r.len() <= super::RESULT_MAX_BYTES),
                self.children.as_slice(),
            ),
            _ => (None, [].as_slice()),
        }
    }
}

/// Which component ran a row (`plugin_sha256`, `plugin_contract`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRun {
    /// The component file's SHA-256, 64 hex digits.
    pub sha256: String,
    /// The contract version it implements (`0.1.0`, `0.2.0`).
    pub contract: String,
}

/// A child job a run queued (`queue-job`), checked by the sandbox: a valid
/// type, params a JSON object, a mode of at most 16 characters, numbers
/// within [`crate::bounds`]. It copies its parent's CO and `queued_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChild {
    pub job_type: String,
    /// A JSON object as text.
    pub job_params: String,
    pub job_mode: Option<String>,
    /// Seconds after the parent's end before it is due.
    pub delay_secs: i64,
    pub max_retry: Option<i64>,
    pub retry_interval: Option<i64>,
}

/// `register_summary` of a child of `parent`.
pub(crate) fn child_summary(parent: JobId) -> String {
    format!("queued by job {parent}")
}

/// [`Store::start`] inside a transaction or on the connection.
fn start_row(
    conn: &rusqlite::Connection,
    runner_id: &str,
    id: JobId,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE cm_co_jobs SET start_time = ?3, start_summary = ?4 \
             WHERE id = ?1 AND status = 'GO' AND runner_id = ?2",
        )?
        .execute(params![
            id,
            runner_id,
            format_time(now),
            started_summary(runner_id)
        ])?;
    Ok(n == 1)
}

fn finish_one(
    tx: &rusqlite::Connection,
    runner_id: &str,
    item: &Finish,
    now: DateTime<Utc>,
    now_text: &str,
) -> Result<Option<JobId>> {
    let ended = end_row(tx, Some(runner_id), item, now)?;
    let Some(successor) = ended else {
        // Not ours (any more): say what the row is now.
        let status: Option<String> = optional(
            tx.prepare_cached("SELECT status FROM cm_co_jobs WHERE id = ?1")?
                .query_row([item.id], |r| r.get(0)),
        )?;
        let Some(status) = status else {
            return Err(StoreError::NoJob(item.id));
        };
        return Err(StoreError::NotOurs {
            id: item.id,
            runner_id: runner_id.to_string(),
            status: status.parse().map_err(|_| StoreError::BadStatus {
                id: item.id,
                status,
            })?,
        });
    };
    for rec in &item.history {
        super::jobs::insert_history(tx, now_text, rec)?;
    }
    let (_, children) = item.completed();
    for child in children {
        insert_child(tx, item.id, child, now)?;
    }
    Ok(successor)
}

/// Queue `child` of `parent` (which just ended `OK`), inside the
/// transaction of that end.
fn insert_child(
    tx: &rusqlite::Connection,
    parent: JobId,
    child: &NewChild,
    now: DateTime<Utc>,
) -> Result<()> {
    let due = now
        .checked_add_signed(TimeDelta::try_seconds(child.delay_secs).unwrap_or(TimeDelta::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    tx.prepare_cached(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, retry_interval, \
            max_retry, max_retry_count, status, register_summary, queue_time, \
            start_after_time, queued_by, parent_co_job_id) \
         SELECT co_id, ?2, ?3, ?4, ?5, ?6, 0, 'Q', ?7, ?8, ?9, queued_by, id \
         FROM cm_co_jobs WHERE id = ?1",
    )?
    .execute(params![
        parent,
        child.job_type,
        child.job_mode,
        child.job_params,
        child.retry_interval,
        child.max_retry,
        child_summary(parent),
        format_time(now),
        format_time(due),
    ])?;
    Ok(())
}

/// End a `GO` row held by `runner_id` as `item` says (its outcome, fuel,
/// log, and for an `OK` end its result; the component that ran) and insert
/// its successor, inside `tx`. The UPDATE returns the row's policy columns,
/// so no read comes first. Returns `None` (writing nothing) if the row is
/// no longer `GO` and held by `runner_id`.
fn end_row(
    tx: &rusqlite::Connection,
    runner_id: Option<&str>,
    item: &Finish,
    now: DateTime<Utc>,
) -> Result<Option<Option<JobId>>> {
    let (id, outcome) = (item.id, &item.outcome);
    let now_text = format_time(now);
    let (result, _) = item.completed();
    let policy = optional(
        tx.prepare_cached(
            "UPDATE cm_co_jobs SET status = ?3, complete_time = ?4, finish_summary = ?5, \
                percent_complete = CASE WHEN ?3 = 'OK' THEN 100 ELSE percent_complete END, \
                fuel_used = coalesce(?6, fuel_used), job_log = coalesce(?7, job_log), \
                result = coalesce(?8, result), plugin_sha256 = coalesce(?9, plugin_sha256), \
                plugin_contract = coalesce(?10, plugin_contract), lease_expires_at = NULL \
             WHERE id = ?1 AND status = 'GO' AND runner_id IS ?2 \
             RETURNING requeue_interval, retry_interval, max_retry, max_retry_count, backoff, \
                backoff_max",
        )?
        .query_row(
            params![
                id,
                runner_id,
                outcome.status().code(),
                now_text,
                job::truncate_summary(outcome.summary()),
                item.fuel_used,
                item.log,
                result,
                item.plugin.as_ref().map(|p| &p.sha256),
                item.plugin.as_ref().map(|p| &p.contract),
            ],
            |r| {
                Ok(job::Policy {
                    requeue_interval: r.get(0)?,
                    retry_interval: r.get(1)?,
                    max_retry: r.get(2)?,
                    max_retry_count: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    backoff: job::Backoff::from_column(r.get::<_, Option<String>>(4)?.as_deref()),
                    backoff_max: r.get(5)?,
                    id: id.0,
                })
            },
        ),
    )?;
    let Some(policy) = policy else {
        return Ok(None);
    };
    let Some(next) = job::successor(&policy, outcome) else {
        return Ok(Some(None));
    };
    let start_after = now
        .checked_add_signed(TimeDelta::try_seconds(next.delay_secs).unwrap_or(TimeDelta::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    tx.prepare_cached(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, requeue_interval, \
            retry_interval, max_retry, max_retry_count, requeued_from_co_job_id, status, \
            register_summary, queue_time, start_after_time, fuel_limit, memory_limit_mib, \
            timeout_secs, queued_by, backoff, backoff_max, priority) \
         SELECT co_id, job_type, job_mode, job_params, requeue_interval, retry_interval, \
            max_retry, ?2, id, 'Q', register_summary, ?3, ?4, fuel_limit, memory_limit_mib, \
            timeout_secs, queued_by, backoff, backoff_max, priority \
         FROM cm_co_jobs WHERE id = ?1",
    )?
    .execute(params![
        id,
        next.max_retry_count,
        now_text,
        format_time(start_after)
    ])?;
    Ok(Some(Some(JobId(tx.last_insert_rowid()))))
}
