//! Runner-facing statements: claim, start, finish, heartbeat, rescue,
//! release, progress, cancel requests, next due time.
//!
//! A claimed row is `GO` with `runner_id` and `lease_expires_at` (the
//! database's clock); every later write of that runner says `WHERE status
//! = 'GO' AND runner_id = ...`, so a runner that lost its row writes
//! nothing. Ending a row and queueing its successor happen in one
//! transaction; which successor is [`job::successor`]'s decision, made
//! here in Rust between the statements, never re-written in SQL.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_postgres::GenericClient;

use super::limits::{CLAIM_LOCK, LOCK_IF_LIMITED};
use super::{
    DUE, JOB_COLUMN_COUNT, NOW, interval_secs, job_columns, job_from_row, map_err, pg_summary,
    pg_text,
};
use crate::job::{self, JobStatus, Outcome};
use crate::store::driver::{Claim, Error, Progress, Released, Rescued, Result, Successor};
use crate::store::{Finish, Job, JobId, NewChild, NewHistoryRecord, PluginRun, StoreError};

/// The claim: one statement, fair between COs, highest priority first
/// within a CO, under the limits (docs/design.md#limits-and-pause).
///
/// - `tl` / `cl`: the room each limited job type / CO has (how many more
///   rows may start; 0 when paused), counted now. When any limit that
///   counts is set, [`claim`] runs this after taking an advisory lock, so
///   no other claim commits between the count and the update.
/// - `cos`: every CO with queued rows (a loose index scan of
///   `cojobs_jobs_claim`, one seek per CO), minus COs without room;
///   `types`: within each, every job type with queued rows (one seek per
///   pair), minus types without room.
/// - `cand`: for each (CO, type) and priority level, its earliest due rows
///   locked with `FOR UPDATE SKIP LOCKED` (rows another claimer holds are
///   skipped, never waited for), due by now and by `$7` (NULL = no limit:
///   `run --once`), ranked within their CO by (priority, due, id); `typed`
///   ranks them within their type by the fair order.
/// - `picked`: the best `$2` by (CO rank, priority, due, id) under the
///   per-runner cap (`$4`, NULL = none, minus the rows of that CO this
///   runner holds) and the rooms, marked `GO` in the same statement
///   (started now when `$6`).
///
/// Cost grows with the number of COs and types and `$2`, never with the
/// number of rows.
fn claim_sql() -> String {
    format!(
        "WITH RECURSIVE \
         tl AS MATERIALIZED (SELECT t.job_type, {TYPE_ROOM} AS room FROM cojobs_type_limits t), \
         cl AS MATERIALIZED (SELECT c.co_id, {CO_ROOM} AS room FROM cojobs_co_limits c), \
         {QUEUED_GROUPS}, \
         cand AS ( \
           SELECT c.id, c.co_id, c.job_type, c.priority, c.due, \
                  row_number() OVER (PARTITION BY c.co_id ORDER BY c.priority, c.due, c.id) AS rn \
           FROM types CROSS JOIN {LEVELS} CROSS JOIN LATERAL ( \
             SELECT j.id, j.co_id, j.job_type, j.priority, {DUE} AS due FROM cm_co_jobs j \
             WHERE {GROUP_ROWS} \
               AND {DUE} <= least({NOW}, coalesce($7::timestamp, 'infinity')) \
             ORDER BY {DUE}, j.id LIMIT $2 \
             FOR UPDATE SKIP LOCKED) c \
           WHERE types.t IS NOT NULL \
             AND coalesce((SELECT room FROM cl WHERE cl.co_id = types.co), 1) > 0 \
             AND coalesce((SELECT room FROM tl WHERE tl.job_type = types.t), 1) > 0), \
         typed AS ( \
           SELECT cand.*, row_number() OVER (PARTITION BY cand.job_type \
                                             ORDER BY cand.rn, cand.priority, cand.due, cand.id) AS tn \
           FROM cand), \
         held AS ( \
           SELECT co_id, count(*) AS n FROM cm_co_jobs \
           WHERE status = 'GO' AND runner_id = $1 AND $4::int8 IS NOT NULL GROUP BY co_id), \
         picked AS ( \
           SELECT typed.id, typed.rn FROM typed \
           LEFT JOIN held ON held.co_id = typed.co_id \
           LEFT JOIN tl ON tl.job_type = typed.job_type \
           LEFT JOIN cl ON cl.co_id = typed.co_id \
           WHERE ($4::int8 IS NULL OR typed.rn <= $4::int8 - coalesce(held.n, 0)) \
             AND typed.tn <= coalesce(tl.room, {NO_LIMIT}) \
             AND typed.rn <= coalesce(cl.room, {NO_LIMIT}) \
           ORDER BY typed.rn, typed.priority, typed.due, typed.id LIMIT $2) \
         UPDATE cm_co_jobs j SET status = 'GO', \
             start_time = CASE WHEN $6::bool THEN {NOW} END, runner_id = $1, \
             lease_expires_at = {NOW} + make_interval(secs => $3::float8), \
             start_summary = $5, percent_complete = 0, status_line = NULL, complete_time = NULL \
         FROM picked WHERE j.id = picked.id \
         RETURNING {}, picked.rn",
        job_columns("j")
    )
}

/// The CTEs `cos(co)`, every CO with queued rows (a loose index scan, one
/// seek per CO), and `types(co, t)`, every job type with queued rows in
/// each (one seek per pair; the last row of each CO has `t` NULL). Both
/// the claim and the next due time start from these groups, so neither
/// costs more with more rows.
const QUEUED_GROUPS: &str = "\
    cos(co) AS ( \
      (SELECT co_id FROM cm_co_jobs WHERE status = 'Q' ORDER BY co_id LIMIT 1) \
      UNION ALL \
      SELECT (SELECT q.co_id FROM cm_co_jobs q WHERE q.status = 'Q' AND q.co_id > cos.co \
              ORDER BY q.co_id LIMIT 1) \
      FROM cos WHERE cos.co IS NOT NULL), \
    types(co, t) AS ( \
      SELECT cos.co, (SELECT q.job_type FROM cm_co_jobs q \
                      WHERE q.status = 'Q' AND q.co_id = cos.co \
                      ORDER BY q.job_type LIMIT 1) \
      FROM cos WHERE cos.co IS NOT NULL \
      UNION ALL \
      SELECT types.co, (SELECT q.job_type FROM cm_co_jobs q \
                        WHERE q.status = 'Q' AND q.co_id = types.co AND q.job_type > types.t \
                        ORDER BY q.job_type LIMIT 1) \
      FROM types WHERE types.t IS NOT NULL)";

/// Every priority level, as `p(p)`: a seek per (CO, type, level).
const LEVELS: &str = "generate_series(1, 9) AS p(p)";

/// The queued rows of one (CO, type, level) of [`QUEUED_GROUPS`] and
/// [`LEVELS`], as `cojobs_jobs_claim` holds them, in due order.
const GROUP_ROWS: &str = "j.status = 'Q' AND j.co_id = types.co AND j.job_type = types.t \
    AND j.priority = p.p";

/// Run before the claim, in its transaction, so that its plan does not
/// depend on statistics: each (CO, type, level) is read in order from
/// `cojobs_jobs_claim` (no sort of another index's rows) and the claimed
/// rows are written through their primary key (no hash or merge join with
/// a scan of the table). With statistics from before a bulk load
/// (autovacuum had not analyzed yet) the planner took the table for a few
/// hundred rows and did both: 15-35 ms per claim at 20,000 queued, 350 ms
/// at 100,000, instead of ~3 (docs/performance.md).
const CLAIM_PLAN_SETTINGS: &str = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_sort = off";

/// "No limit" in the claim's room arithmetic (`i64::MAX`).
const NO_LIMIT: &str = "9223372036854775807";

/// How many more rows of the job type of `cojobs_type_limits t` may start
/// now: 0 when paused, else the least of its concurrency minus its `GO`
/// rows and its rate minus its starts in the window (rows claimed but not
/// started yet count as starts).
const TYPE_ROOM: &str = "CASE WHEN t.paused_by IS NOT NULL THEN 0::int8 ELSE least( \
       CASE WHEN t.concurrency IS NULL THEN 9223372036854775807 ELSE t.concurrency::int8 - ( \
         SELECT count(*) FROM cm_co_jobs g WHERE g.status = 'GO' AND g.job_type = t.job_type) END, \
       CASE WHEN t.rate_max IS NULL OR t.rate_window_secs IS NULL THEN 9223372036854775807 \
       ELSE t.rate_max::int8 - ( \
         SELECT count(*) FROM cm_co_jobs s WHERE s.job_type = t.job_type \
           AND s.start_time > (now() AT TIME ZONE 'UTC') - make_interval(secs => t.rate_window_secs)) - ( \
         SELECT count(*) FROM cm_co_jobs g \
         WHERE g.status = 'GO' AND g.job_type = t.job_type AND g.start_time IS NULL) END) END";

/// How many more rows of the CO of `cojobs_co_limits c` may start now.
const CO_ROOM: &str = "CASE WHEN c.paused_by IS NOT NULL THEN 0::int8 \
       WHEN c.max_running IS NULL THEN 9223372036854775807 \
       ELSE c.max_running::int8 - (SELECT count(*) FROM cm_co_jobs g \
                                   WHERE g.status = 'GO' AND g.co_id = c.co_id) END";

/// `start_summary` of a row whose run began.
fn started_summary(runner_id: &str) -> String {
    job::truncate_summary(&format!("started by runner {runner_id}"))
}

/// `start_summary` of a row the claim of `c` takes: started, or claimed
/// and not started yet.
fn claimed_summary(c: &Claim) -> String {
    if c.start {
        started_summary(&c.runner_id)
    } else {
        job::truncate_summary(&format!(
            "claimed by runner {}, not started yet",
            c.runner_id
        ))
    }
}

pub(super) async fn claim(client: &mut deadpool_postgres::Client, c: &Claim) -> Result<Vec<Job>> {
    if c.max == 0 || c.per_co == Some(0) {
        return Ok(Vec::new());
    }
    let max = i64::try_from(c.max).unwrap_or(i64::MAX);
    let per_co = c.per_co.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let summary = claimed_summary(c);
    // The lock (taken only while a counting limit is set) and the claim in
    // one transaction: the claim's snapshot is taken after the lock, so it
    // sees every row the previous holder's claim made GO.
    // The three statements are pipelined (sent together, run in order).
    let tx = client.transaction().await.map_err(map_err)?;
    let lock = tx.prepare_cached(LOCK_IF_LIMITED).await.map_err(map_err)?;
    let stmt = tx.prepare_cached(&claim_sql()).await.map_err(map_err)?;
    let due_by = c.due_by.map(|d| d.naive_utc());
    let lease = interval_secs(c.lease);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &c.runner_id,
        &max,
        &lease,
        &per_co,
        &summary,
        &c.start,
        &due_by,
    ];
    let (_, _, rows) = tokio::try_join!(
        tx.batch_execute(CLAIM_PLAN_SETTINGS),
        tx.execute(&lock, &[&CLAIM_LOCK]),
        tx.query(&stmt, &params)
    )
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    // RETURNING has no order: put the rows in the claim's fair order (by
    // rank in their CO, then priority, due time, id). Due times compare as
    // the stored text; a row with neither time ("" here) is due first.
    fn due(j: &Job) -> &str {
        j.start_after_time
            .as_deref()
            .or(j.queue_time.as_deref())
            .unwrap_or("")
    }
    let mut ranked = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, i64>(JOB_COLUMN_COUNT).map_err(map_err)?,
                job_from_row(r)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    ranked.sort_by(|(ra, a), (rb, b)| {
        (*ra, a.priority, due(a), a.id).cmp(&(*rb, b.priority, due(b), b.id))
    });
    Ok(ranked.into_iter().map(|(_, j)| j).collect())
}

/// Claim row `id` alone if it is queued and due, under `c`'s lease and
/// per-CO cap (rows of its CO this runner holds count).
pub(super) async fn claim_one(
    client: &mut deadpool_postgres::Client,
    c: &Claim,
    id: JobId,
) -> Result<Option<Job>> {
    if c.per_co == Some(0) {
        return Ok(None);
    }
    let per_co = c.per_co.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let summary = claimed_summary(c);
    let tx = client.transaction().await.map_err(map_err)?;
    let lock = tx.prepare_cached(LOCK_IF_LIMITED).await.map_err(map_err)?;
    tx.execute(&lock, &[&CLAIM_LOCK]).await.map_err(map_err)?;
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE cm_co_jobs j SET status = 'GO', runner_id = $2, \
                 start_time = CASE WHEN $6::bool THEN {NOW} END, \
                 lease_expires_at = {NOW} + make_interval(secs => $3::float8), \
                 start_summary = $5, percent_complete = 0, status_line = NULL, \
                 complete_time = NULL \
             WHERE j.id = $1 AND j.status = 'Q' AND {DUE} <= {NOW} \
               AND ($4::int8 IS NULL OR $4::int8 > ( \
                 SELECT count(*) FROM cm_co_jobs r \
                 WHERE r.status = 'GO' AND r.runner_id = $2 AND r.co_id = j.co_id)) \
               AND coalesce((SELECT {TYPE_ROOM} FROM cojobs_type_limits t \
                             WHERE t.job_type = j.job_type), 1) > 0 \
               AND coalesce((SELECT {CO_ROOM} FROM cojobs_co_limits c \
                             WHERE c.co_id = j.co_id), 1) > 0 \
             RETURNING {}",
            job_columns("j")
        ))
        .await
        .map_err(map_err)?;
    let row = tx
        .query_opt(
            &stmt,
            &[
                &id.0,
                &c.runner_id,
                &interval_secs(c.lease),
                &per_co,
                &summary,
                &c.start,
            ],
        )
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    row.as_ref().map(job_from_row).transpose()
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of a claim of `max` rows, rolled back:
/// what the claim would do now, and what it costs.
pub(super) async fn explain_claim(
    client: &mut deadpool_postgres::Client,
    max: usize,
) -> Result<String> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.batch_execute(CLAIM_PLAN_SETTINGS)
        .await
        .map_err(map_err)?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            &format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}", claim_sql()),
            &[
                &"explain",
                &max,
                &60.0f64,
                &None::<i64>,
                &"explain",
                &false,
                &None::<NaiveDateTime>,
            ],
        )
        .await
        .map_err(map_err)?;
    let plan = rows
        .iter()
        .map(|r| r.try_get::<_, String>(0).map_err(map_err))
        .collect::<Result<Vec<_>>>()?
        .join("\n");
    tx.rollback().await.map_err(map_err)?;
    Ok(plan)
}

pub(super) async fn start(
    client: &deadpool_postgres::Client,
    runner_id: &str,
    started: &[(JobId, DateTime<Utc>)],
) -> Result<Vec<JobId>> {
    if started.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = started.iter().map(|(id, _)| id.0).collect();
    let ats: Vec<NaiveDateTime> = started.iter().map(|(_, at)| at.naive_utc()).collect();
    let stmt = client
        .prepare_cached(
            "UPDATE cm_co_jobs j SET start_time = s.at, \
                 start_summary = 'started by runner ' || $1 \
             FROM unnest($2::int8[], $3::timestamp[]) AS s(id, at) \
             WHERE j.id = s.id AND j.status = 'GO' AND j.runner_id = $1 \
               AND j.start_time IS NULL \
             RETURNING j.id::int8",
        )
        .await
        .map_err(map_err)?;
    let rows = client
        .query(&stmt, &[&runner_id, &ids, &ats])
        .await
        .map_err(map_err)?;
    Ok(rows.iter().map(|r| JobId(r.get(0))).collect())
}

/// A row to end: which row, under whose lease, how.
struct End<'a> {
    id: JobId,
    /// The runner that must hold it (`None`: a row without one).
    runner: Option<&'a str>,
    /// The lease it must still be under (rescue), or `None` (any).
    lease: Option<NaiveDateTime>,
    outcome: &'a Outcome,
    fuel_used: Option<i64>,
    log: Option<&'a str>,
    started: Option<DateTime<Utc>>,
    /// The result to store (an `OK` end's), and the component that ran.
    result: Option<&'a str>,
    plugin: Option<&'a PluginRun>,
}

/// End rows still `GO` under the given runner (and lease), in one
/// statement; returns the policy columns of each row it ended.
async fn end_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    ends: &[End<'_>],
) -> Result<HashMap<JobId, job::Policy>> {
    let ids: Vec<i64> = ends.iter().map(|e| e.id.0).collect();
    let runners: Vec<Option<&str>> = ends.iter().map(|e| e.runner).collect();
    let leases: Vec<Option<NaiveDateTime>> = ends.iter().map(|e| e.lease).collect();
    let statuses: Vec<&str> = ends.iter().map(|e| e.outcome.status().code()).collect();
    let summaries: Vec<String> = ends
        .iter()
        .map(|e| pg_summary(e.outcome.summary()))
        .collect();
    let fuels: Vec<Option<i64>> = ends.iter().map(|e| e.fuel_used).collect();
    let logs: Vec<Option<Cow<'_, str>>> = ends.iter().map(|e| e.log.map(pg_text)).collect();
    let starts: Vec<Option<NaiveDateTime>> = ends
        .iter()
        .map(|e| e.started.map(|t| t.naive_utc()))
        .collect();
    let results: Vec<Option<Cow<'_, str>>> = ends.iter().map(|e| e.result.map(pg_text)).collect();
    let shas: Vec<Option<&str>> = ends
        .iter()
        .map(|e| e.plugin.map(|p| p.sha256.as_str()))
        .collect();
    let contracts: Vec<Option<&str>> = ends
        .iter()
        .map(|e| e.plugin.map(|p| p.contract.as_str()))
        .collect();
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE cm_co_jobs j SET status = f.status, complete_time = {NOW}, \
                finish_summary = f.summary, \
                percent_complete = CASE WHEN f.status = 'OK' THEN 100 ELSE j.percent_complete END, \
                fuel_used = coalesce(f.fuel, j.fuel_used), job_log = coalesce(f.log, j.job_log), \
                lease_expires_at = NULL, start_time = coalesce(f.started, j.start_time), \
                result = coalesce(f.result, j.result), \
                plugin_sha256 = coalesce(f.sha, j.plugin_sha256), \
                plugin_contract = coalesce(f.contract, j.plugin_contract) \
             FROM unnest($1::int8[], $2::text[], $3::timestamp[], $4::text[], $5::text[], \
                         $6::int8[], $7::text[], $8::timestamp[], $9::text[], $10::text[], \
                         $11::text[]) \
                  AS f(id, runner, lease, status, summary, fuel, log, started, result, sha, \
                       contract) \
             WHERE j.id = f.id AND j.status = 'GO' AND j.runner_id IS NOT DISTINCT FROM f.runner \
               AND (f.lease IS NULL OR date_trunc('milliseconds', j.lease_expires_at) = f.lease) \
             RETURNING j.id::int8, j.requeue_interval::int8, j.retry_interval::int8, \
                j.max_retry::int8, j.max_retry_count::int8, j.backoff::text, j.backoff_max::int8"
        ))
        .await
        .map_err(map_err)?;
    let rows = tx
        .query(
            &stmt,
            &[
                &ids, &runners, &leases, &statuses, &summaries, &fuels, &logs, &starts, &results,
                &shas, &contracts,
            ],
        )
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            let policy = job::Policy {
                requeue_interval: r.try_get(1).map_err(map_err)?,
                retry_interval: r.try_get(2).map_err(map_err)?,
                max_retry: r.try_get(3).map_err(map_err)?,
                max_retry_count: r
                    .try_get::<_, Option<i64>>(4)
                    .map_err(map_err)?
                    .unwrap_or(0),
                backoff: job::Backoff::from_column(
                    r.try_get::<_, Option<String>>(5)
                        .map_err(map_err)?
                        .as_deref(),
                ),
                backoff_max: r.try_get(6).map_err(map_err)?,
                id: r.try_get(0).map_err(map_err)?,
            };
            Ok((JobId(r.try_get(0).map_err(map_err)?), policy))
        })
        .collect()
}

/// Queue the successors of ended rows: copies of the parent with the
/// given retry count, due `delay` seconds from now. Returns parent ->
/// successor.
async fn insert_successors(
    tx: &deadpool_postgres::Transaction<'_>,
    next: &[(JobId, job::Successor)],
) -> Result<HashMap<JobId, Successor>> {
    if next.is_empty() {
        return Ok(HashMap::new());
    }
    let parents: Vec<i64> = next.iter().map(|(p, _)| p.0).collect();
    let counts: Vec<i64> = next.iter().map(|(_, s)| s.max_retry_count).collect();
    let delays: Vec<f64> = next
        .iter()
        .map(|(_, s)| interval_secs(Duration::from_secs(s.delay_secs.max(0).unsigned_abs())))
        .collect();
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, requeue_interval, \
                retry_interval, max_retry, max_retry_count, requeued_from_co_job_id, status, \
                register_summary, queue_time, start_after_time, fuel_limit, memory_limit_mib, \
                timeout_secs, queued_by, backoff, backoff_max, priority) \
             SELECT p.co_id, p.job_type, p.job_mode, p.job_params, p.requeue_interval, \
                p.retry_interval, p.max_retry, s.cnt, p.id, 'Q', p.register_summary, {NOW}, \
                {NOW} + make_interval(secs => s.delay), p.fuel_limit, p.memory_limit_mib, \
                p.timeout_secs, p.queued_by, p.backoff, p.backoff_max, p.priority \
             FROM unnest($1::int8[], $2::int8[], $3::float8[]) AS s(parent, cnt, delay) \
             JOIN cm_co_jobs p ON p.id = s.parent \
             RETURNING id::int8, requeued_from_co_job_id::int8, start_after_time"
        ))
        .await
        .map_err(map_err)?;
    let rows = tx
        .query(&stmt, &[&parents, &counts, &delays])
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            let due: NaiveDateTime = r.try_get(2).map_err(map_err)?;
            Ok((
                JobId(r.try_get(1).map_err(map_err)?),
                Successor {
                    id: JobId(r.try_get(0).map_err(map_err)?),
                    due: due.and_utc(),
                },
            ))
        })
        .collect()
}

/// Queue the children of rows that just ended `OK`, each with its parent.
async fn insert_children(
    tx: &deadpool_postgres::Transaction<'_>,
    children: &[(JobId, &NewChild)],
) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    let parents: Vec<i64> = children.iter().map(|(p, _)| p.0).collect();
    let types: Vec<&str> = children.iter().map(|(_, c)| c.job_type.as_str()).collect();
    let modes: Vec<Option<&str>> = children
        .iter()
        .map(|(_, c)| c.job_mode.as_deref())
        .collect();
    let params: Vec<&str> = children
        .iter()
        .map(|(_, c)| c.job_params.as_str())
        .collect();
    let delays: Vec<f64> = children
        .iter()
        .map(|(_, c)| interval_secs(Duration::from_secs(c.delay_secs.max(0).unsigned_abs())))
        .collect();
    let max_retries: Vec<Option<i64>> = children.iter().map(|(_, c)| c.max_retry).collect();
    let intervals: Vec<Option<i64>> = children.iter().map(|(_, c)| c.retry_interval).collect();
    let summaries: Vec<String> = children
        .iter()
        .map(|(p, _)| crate::store::child_summary(*p))
        .collect();
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, retry_interval, \
                max_retry, max_retry_count, status, register_summary, queue_time, \
                start_after_time, queued_by, parent_co_job_id) \
             SELECT p.co_id, c.job_type, c.mode, c.params, c.retry_interval, c.max_retry, 0, \
                'Q', c.summary, {NOW}, {NOW} + make_interval(secs => c.delay), p.queued_by, p.id \
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::float8[], \
                         $6::int8[], $7::int8[], $8::text[]) WITH ORDINALITY \
                  AS c(parent, job_type, mode, params, delay, max_retry, retry_interval, summary, n) \
             JOIN cm_co_jobs p ON p.id = c.parent \
             ORDER BY c.n"
        ))
        .await
        .map_err(map_err)?;
    tx.execute(
        &stmt,
        &[
            &parents,
            &types,
            &modes,
            &params,
            &delays,
            &max_retries,
            &intervals,
            &summaries,
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

/// End `ends` and queue their successors per [`job::successor`], inside
/// `tx`. Returns, per ended row, its successor (if any).
async fn end_with_successors(
    tx: &deadpool_postgres::Transaction<'_>,
    ends: &[End<'_>],
) -> Result<HashMap<JobId, Option<Successor>>> {
    let ended = end_rows(tx, ends).await?;
    let next: Vec<(JobId, job::Successor)> = ends
        .iter()
        .filter_map(|e| {
            let policy = ended.get(&e.id)?;
            job::successor(policy, e.outcome).map(|s| (e.id, s))
        })
        .collect();
    let successors = insert_successors(tx, &next).await?;
    Ok(ended
        .keys()
        .map(|id| (*id, successors.get(id).copied()))
        .collect())
}

/// The error for a row `runner_id` no longer holds: what the row is now.
async fn not_ours(client: &impl GenericClient, id: JobId, runner_id: &str) -> Result<Error> {
    let row = client
        .query_opt(
            "SELECT status::text FROM cm_co_jobs WHERE id = $1::int8",
            &[&id.0],
        )
        .await
        .map_err(map_err)?;
    let Some(row) = row else {
        return Ok(Error::input(StoreError::NoJob(id)));
    };
    let status: String = row.get(0);
    let status = status
        .parse::<JobStatus>()
        .map_err(|_| Error::Other(format!("job {id} has unreadable status '{status}'")))?;
    Ok(Error::Conflict(StoreError::NotOurs {
        id,
        runner_id: runner_id.to_string(),
        status,
    }))
}

pub(super) async fn finish(
    client: &mut deadpool_postgres::Client,
    runner_id: &str,
    items: &[Finish],
) -> Result<Vec<Result<Option<Successor>>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await.map_err(map_err)?;
    let ends: Vec<End<'_>> = items
        .iter()
        .map(|f| End {
            id: f.id,
            runner: Some(runner_id),
            lease: None,
            outcome: &f.outcome,
            fuel_used: f.fuel_used,
            log: f.log.as_deref(),
            started: None,
            result: f.completed().0,
            plugin: f.plugin.as_ref(),
        })
        .collect();
    let ended = end_with_successors(&tx, &ends).await?;
    // Children only of runs whose `OK` end was recorded.
    let children: Vec<(JobId, &NewChild)> = items
        .iter()
        .filter(|f| ended.contains_key(&f.id))
        .flat_map(|f| f.completed().1.iter().map(|c| (f.id, c)))
        .collect();
    insert_children(&tx, &children).await?;
    // History records only of runs whose end was recorded.
    let history: Vec<&NewHistoryRecord> = items
        .iter()
        .filter(|f| ended.contains_key(&f.id))
        .flat_map(|f| &f.history)
        .collect();
    super::jobs::insert_history(&tx, &history).await?;
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        results.push(match ended.get(&item.id) {
            Some(successor) => Ok(*successor),
            None => Err(not_ours(&tx, item.id, runner_id).await?),
        });
    }
    tx.commit().await.map_err(map_err)?;
    Ok(results)
}

pub(super) async fn heartbeat(
    client: &deadpool_postgres::Client,
    runner_id: &str,
    lease: Duration,
) -> Result<Vec<JobId>> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE cm_co_jobs SET lease_expires_at = {NOW} + make_interval(secs => $2::float8) \
             WHERE status = 'GO' AND runner_id = $1 RETURNING id::int8"
        ))
        .await
        .map_err(map_err)?;
    let rows = client
        .query(&stmt, &[&runner_id, &interval_secs(lease)])
        .await
        .map_err(map_err)?;
    let mut ids: Vec<JobId> = rows.iter().map(|r| JobId(r.get(0))).collect();
    ids.sort();
    Ok(ids)
}

/// Most rows one rescue deals with (the next rescue takes the rest).
const RESCUE_BATCH: i64 = 1000;

pub(super) async fn rescue(client: &mut deadpool_postgres::Client) -> Result<Vec<Rescued>> {
    let tx = client.transaction().await.map_err(map_err)?;
    // Lock the expired rows: a heartbeat or finish of their runner now
    // waits for this transaction, then finds the row no longer its own.
    let rows = tx
        .query(
            &format!(
                "SELECT {} FROM cm_co_jobs j \
                 WHERE j.status = 'GO' AND j.lease_expires_at < {NOW} \
                 ORDER BY j.id LIMIT $1 FOR UPDATE SKIP LOCKED",
                job_columns("j")
            ),
            &[&RESCUE_BATCH],
        )
        .await
        .map_err(map_err)?;
    let expired = rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<Job>>>()?;
    let mut rescued = Vec::new();
    let (unstarted, started): (Vec<&Job>, Vec<&Job>) = expired
        .iter()
        .partition(|j| j.start_time.is_none() && j.cancel_requested_by.is_none());
    for j in unstarted {
        if requeue_unstarted(&tx, j).await? {
            rescued.push(Rescued::Requeued(j.id));
        }
    }
    let outcomes: Vec<(&Job, Outcome, Option<NaiveDateTime>)> = started
        .iter()
        .map(|j| Ok((*j, rescue_outcome(j), lease_of(j)?)))
        .collect::<Result<_>>()?;
    let ends: Vec<End<'_>> = outcomes
        .iter()
        .map(|(j, outcome, lease)| End {
            id: j.id,
            runner: j.runner_id.as_deref(),
            lease: *lease,
            outcome,
            fuel_used: None,
            log: None,
            started: None,
            result: None,
            plugin: None,
        })
        .collect();
    let ended = end_with_successors(&tx, &ends).await?;
    for (j, outcome, _) in &outcomes {
        if let Some(successor) = ended.get(&j.id) {
            rescued.push(Rescued::Ended {
                id: j.id,
                status: outcome.status(),
                successor: *successor,
            });
        }
    }
    tx.commit().await.map_err(map_err)?;
    Ok(rescued)
}

/// How a rescued row that had started ends.
fn rescue_outcome(j: &Job) -> Outcome {
    let runner = j.runner_id.as_deref().unwrap_or("(unknown)");
    match &j.cancel_requested_by {
        Some(who) => Outcome::Canceled {
            summary: format!("canceled by {who}"),
        },
        None => Outcome::Failed {
            summary: format!("runner {runner} stopped responding"),
            retry: job::Retry::Policy,
        },
    }
}

/// The lease a row was read under, to the millisecond (a `Job`'s times
/// are text to the millisecond; PostgreSQL keeps microseconds, so the SQL
/// compares `date_trunc('milliseconds', lease_expires_at)` with it).
fn lease_of(j: &Job) -> Result<Option<NaiveDateTime>> {
    j.lease_expires_at
        .as_deref()
        .map(|t| {
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| Error::Other(format!("job {}: bad lease time '{t}': {e}", j.id)))
        })
        .transpose()
}

/// Put a claimed-but-never-started row of a dead runner back to `Q`, only
/// if it is still `GO` under the same runner and the same expired lease.
async fn requeue_unstarted(tx: &deadpool_postgres::Transaction<'_>, j: &Job) -> Result<bool> {
    let runner = j.runner_id.as_deref().unwrap_or("(unknown)");
    let summary = job::truncate_summary(&format!(
        "returned to the queue: runner {runner} stopped responding before the job started"
    ));
    let n = tx
        .execute(
            "UPDATE cm_co_jobs SET status = 'Q', runner_id = NULL, lease_expires_at = NULL, \
                percent_complete = NULL, status_line = NULL, start_summary = $2 \
             WHERE id = $1::int8 AND status = 'GO' AND runner_id IS NOT DISTINCT FROM $3 \
               AND date_trunc('milliseconds', lease_expires_at) = $4",
            &[&j.id.0, &summary, &j.runner_id, &lease_of(j)?],
        )
        .await
        .map_err(map_err)?;
    Ok(n == 1)
}

pub(super) async fn release(
    client: &mut deadpool_postgres::Client,
    runner_id: &str,
    id: JobId,
    summary: &str,
) -> Result<Released> {
    let tx = client.transaction().await.map_err(map_err)?;
    let row = tx
        .query_opt(
            "SELECT cancel_requested_by FROM cm_co_jobs \
             WHERE id = $1::int8 AND status = 'GO' AND runner_id = $2 FOR UPDATE",
            &[&id.0, &runner_id],
        )
        .await
        .map_err(map_err)?;
    let Some(row) = row else {
        return Err(not_ours(&tx, id, runner_id).await?);
    };
    let released = match row.get::<_, Option<String>>(0) {
        Some(who) => {
            let outcome = Outcome::Canceled {
                summary: format!("canceled by {who}"),
            };
            let end = End {
                id,
                runner: Some(runner_id),
                lease: None,
                outcome: &outcome,
                fuel_used: None,
                log: None,
                started: None,
                result: None,
                plugin: None,
            };
            end_with_successors(&tx, std::slice::from_ref(&end)).await?;
            Released::Canceled
        }
        None => {
            tx.execute(
                "UPDATE cm_co_jobs SET status = 'Q', start_time = NULL, runner_id = NULL, \
                    lease_expires_at = NULL, percent_complete = NULL, status_line = NULL, \
                    start_summary = $3 \
                 WHERE id = $1::int8 AND status = 'GO' AND runner_id = $2",
                &[&id.0, &runner_id, &pg_summary(summary)],
            )
            .await
            .map_err(map_err)?;
            Released::Queued
        }
    };
    tx.commit().await.map_err(map_err)?;
    Ok(released)
}

pub(super) async fn progress(
    client: &deadpool_postgres::Client,
    runner_id: &str,
    updates: &[Progress],
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = updates.iter().map(|u| u.id.0).collect();
    let percents: Vec<i64> = updates.iter().map(|u| u.percent.clamp(0, 100)).collect();
    let lines: Vec<Option<String>> = updates
        .iter()
        .map(|u| u.status_line.as_deref().map(pg_summary))
        .collect();
    let shas: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.plugin.as_ref().map(|p| p.sha256.as_str()))
        .collect();
    let contracts: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.plugin.as_ref().map(|p| p.contract.as_str()))
        .collect();
    let stmt = client
        .prepare_cached(
            "UPDATE cm_co_jobs j SET percent_complete = u.p, \
                status_line = coalesce(u.line, j.status_line), \
                plugin_sha256 = coalesce(u.sha, j.plugin_sha256), \
                plugin_contract = coalesce(u.contract, j.plugin_contract) \
             FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[]) \
                  AS u(id, p, line, sha, contract) \
             WHERE j.id = u.id AND j.status = 'GO' AND j.runner_id = $1",
        )
        .await
        .map_err(map_err)?;
    client
        .execute(
            &stmt,
            &[&runner_id, &ids, &percents, &lines, &shas, &contracts],
        )
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn cancel_requests(
    client: &deadpool_postgres::Client,
    runner_id: &str,
) -> Result<Vec<(JobId, String)>> {
    let stmt = client
        .prepare_cached(
            "SELECT id::int8, cancel_requested_by FROM cm_co_jobs \
             WHERE status = 'GO' AND runner_id = $1 AND cancel_requested_by IS NOT NULL \
             ORDER BY id",
        )
        .await
        .map_err(map_err)?;
    let rows = client.query(&stmt, &[&runner_id]).await.map_err(map_err)?;
    Ok(rows.iter().map(|r| (JobId(r.get(0)), r.get(1))).collect())
}

pub(super) async fn next_due(client: &deadpool_postgres::Client) -> Result<Option<Duration>> {
    let stmt = client
        .prepare_cached(&format!(
            "WITH RECURSIVE {QUEUED_GROUPS}, \
             firsts AS ( \
               SELECT d.due FROM types CROSS JOIN {LEVELS} CROSS JOIN LATERAL ( \
                 SELECT {DUE} AS due FROM cm_co_jobs j WHERE {GROUP_ROWS} \
                 ORDER BY {DUE}, j.id LIMIT 1) d \
               WHERE types.t IS NOT NULL) \
             SELECT CASE WHEN min(due) <= {NOW} THEN 0::float8 \
                    ELSE extract(epoch FROM min(due) - {NOW})::float8 END \
             FROM firsts HAVING count(*) > 0"
        ))
        .await
        .map_err(map_err)?;
    let row = client.query_opt(&stmt, &[]).await.map_err(map_err)?;
    Ok(row.map(|r| {
        let secs: f64 = r.get(0);
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
    }))
}

#[cfg(test)]
mod tests {
    use super::LEVELS;
    use crate::bounds::PRIORITY;

    #[test]
    fn the_claim_seeks_every_priority_level() {
        assert_eq!(
            LEVELS,
            format!(
                "generate_series({}, {}) AS p(p)",
                PRIORITY.min, PRIORITY.max
            )
        );
    }
}
