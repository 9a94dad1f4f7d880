//! User-facing statements: queue, read, list, cancel, prune, history, COs.
//!
//! A new job is checked by the same code as on SQLite
//! ([`crate::store::jobs::check`]) before anything is written.

use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_postgres::GenericClient;

use super::{NOW, job_columns, job_from_row, map_err, pg_summary};
use crate::job::{self, JobStatus};
use crate::store::driver::{Error, Latencies, Result};
use crate::store::jobs::{Checked, check};
use crate::store::{
    CHAIN_WINDOW, CancelResult, ChainEntry, ChainPage, Co, HistoryRecord, Job, JobId, ListFilter,
    NewHistoryRecord, NewJob, Queued, StoreError,
};

/// Rows per INSERT statement of a bulk queue (all in one transaction).
const BULK_CHUNK: usize = 10_000;

/// The columns a queue writes, and the arrays they come from: one row per
/// array element (`unnest`), so one statement inserts one job or 10,000.
fn insert_sql() -> String {
    format!(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, requeue_interval, \
            retry_interval, max_retry, max_retry_count, status, register_summary, queue_time, \
            start_after_time, fuel_limit, memory_limit_mib, timeout_secs, queued_by, backoff, \
            backoff_max, priority) \
         SELECT co, typ, mode, params, requeue, retry, max_retry, 0, 'Q', summary, {NOW}, \
            start_after, fuel, mem, timeout, queued_by, backoff, backoff_max, prio \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], \
                     $7::int8[], $8::text[], $9::timestamp[], $10::int8[], $11::int8[], \
                     $12::int8[], $13::text[], $14::text[], $15::int8[], $16::int8[]) \
           AS n(co, typ, mode, params, requeue, retry, max_retry, summary, start_after, fuel, \
                mem, timeout, queued_by, backoff, backoff_max, prio) \
         RETURNING id::int8"
    )
}

/// Insert checked jobs (their COs known to exist); ids in input order.
async fn insert_rows(
    client: &impl GenericClient,
    jobs: &[(&NewJob, &Checked)],
) -> Result<Vec<JobId>> {
    let col = |f: fn(&NewJob) -> Option<i64>| jobs.iter().map(|(j, _)| f(j)).collect::<Vec<_>>();
    let cos: Vec<i64> = jobs.iter().map(|(j, _)| j.co_id).collect();
    let types: Vec<&str> = jobs.iter().map(|(j, _)| j.job_type.as_str()).collect();
    let modes: Vec<Option<&str>> = jobs.iter().map(|(j, _)| j.job_mode.as_deref()).collect();
    let params: Vec<Option<&str>> = jobs.iter().map(|(_, c)| c.params.as_deref()).collect();
    let summaries: Vec<Option<&str>> = jobs.iter().map(|(_, c)| c.summary.as_deref()).collect();
    let starts: Vec<Option<NaiveDateTime>> = jobs
        .iter()
        .map(|(j, _)| j.start_after.map(|t| t.naive_utc()))
        .collect();
    let queued_by: Vec<Option<&str>> = jobs.iter().map(|(j, _)| j.queued_by.as_deref()).collect();
    let backoffs: Vec<Option<&str>> = jobs
        .iter()
        .map(|(j, _)| j.backoff.map(crate::job::Backoff::name))
        .collect();
    let stmt = client
        .prepare_cached(&insert_sql())
        .await
        .map_err(map_err)?;
    let rows = client
        .query(
            &stmt,
            &[
                &cos,
                &types,
                &modes,
                &params,
                &col(|j| j.requeue_interval),
                &col(|j| j.retry_interval),
                &col(|j| j.max_retry),
                &summaries,
                &starts,
                &col(|j| j.fuel_limit),
                &col(|j| j.memory_limit_mib),
                &col(|j| j.timeout_secs),
                &queued_by,
                &backoffs,
                &col(|j| j.backoff_max),
                &jobs
                    .iter()
                    .map(|(j, _)| j.priority.unwrap_or(crate::bounds::DEFAULT_PRIORITY))
                    .collect::<Vec<i64>>(),
            ],
        )
        .await
        .map_err(map_err)?;
    // Ids come from the sequence in row order: sorted = input order.
    let mut ids: Vec<JobId> = rows.iter().map(|r| JobId(r.get(0))).collect();
    ids.sort();
    Ok(ids)
}

/// The first of `cos` that is not a CO, if any.
pub(super) async fn missing_co(client: &impl GenericClient, cos: &[i64]) -> Result<Option<i64>> {
    let row = client
        .query_one(
            "SELECT min(c) FROM unnest($1::int8[]) AS c \
             WHERE NOT EXISTS (SELECT 1 FROM cm_cos WHERE id = c)",
            &[&cos],
        )
        .await
        .map_err(map_err)?;
    Ok(row.get(0))
}

pub(super) async fn queue(client: &deadpool_postgres::Client, job: &NewJob) -> Result<JobId> {
    let checked = check(job).map_err(Error::input)?;
    if missing_co(client, &[job.co_id]).await?.is_some() {
        return Err(Error::input(StoreError::NoCo(job.co_id)));
    }
    let ids = insert_rows(client, &[(job, &checked)]).await?;
    ids.first()
        .copied()
        .ok_or_else(|| Error::Other("the insert returned no id".into()))
}

pub(super) async fn queue_many(
    client: &mut deadpool_postgres::Client,
    jobs: &[NewJob],
) -> Result<Vec<JobId>> {
    let in_batch = |index: usize, e: StoreError| {
        Error::input(StoreError::InBatch {
            index,
            source: Box::new(e),
        })
    };
    let checked: Vec<Checked> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| check(j).map_err(|e| in_batch(i, e)))
        .collect::<Result<_>>()?;
    let mut cos: Vec<i64> = jobs.iter().map(|j| j.co_id).collect();
    cos.sort_unstable();
    cos.dedup();
    let tx = client.transaction().await.map_err(map_err)?;
    if let Some(co) = missing_co(&tx, &cos).await? {
        let index = jobs.iter().position(|j| j.co_id == co).unwrap_or(0);
        return Err(in_batch(index, StoreError::NoCo(co)));
    }
    let pairs: Vec<(&NewJob, &Checked)> = jobs.iter().zip(&checked).collect();
    let mut ids = Vec::with_capacity(jobs.len());
    for chunk in pairs.chunks(BULK_CHUNK) {
        ids.extend(insert_rows(&tx, chunk).await?);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(ids)
}

pub(super) async fn queue_unique(
    client: &mut deadpool_postgres::Client,
    job: &NewJob,
) -> Result<Queued> {
    let checked = check(job).map_err(Error::input)?;
    let tx = client.transaction().await.map_err(map_err)?;
    // Two --unique queues of the same CO and type take turns.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::int8::text || '/' || $2, 0))",
        &[&job.co_id, &job.job_type],
    )
    .await
    .map_err(map_err)?;
    if missing_co(&tx, &[job.co_id]).await?.is_some() {
        return Err(Error::input(StoreError::NoCo(job.co_id)));
    }
    let rows = tx
        .query(
            "SELECT id::int8, status::text, job_params FROM cm_co_jobs \
             WHERE status IN ('Q', 'GO') AND co_id = $1::int8 AND job_type = $2 \
               AND job_mode IS NOT DISTINCT FROM $3 ORDER BY id",
            &[&job.co_id, &job.job_type, &job.job_mode],
        )
        .await
        .map_err(map_err)?;
    for r in &rows {
        let params: Option<String> = r.get(2);
        let same = match params.as_deref().map(str::trim) {
            None | Some("") => checked.params_value.is_empty(),
            Some(text) => crate::store::parse_params(text)
                .map(|m| m == checked.params_value)
                .unwrap_or(false),
        };
        if same {
            let id = JobId(r.get(0));
            let status: String = r.get(1);
            let status = status
                .parse()
                .map_err(|_| Error::Other(format!("job {id} has unreadable status '{status}'")))?;
            return Ok(Queued::Existing(id, status));
        }
    }
    let ids = insert_rows(&tx, &[(job, &checked)]).await?;
    tx.commit().await.map_err(map_err)?;
    ids.first()
        .map(|id| Queued::New(*id))
        .ok_or_else(|| Error::Other("the insert returned no id".into()))
}

pub(super) async fn get(client: &deadpool_postgres::Client, id: JobId) -> Result<Option<Job>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {} FROM cm_co_jobs j WHERE j.id = $1::int8",
            job_columns("j")
        ))
        .await
        .map_err(map_err)?;
    let row = client.query_opt(&stmt, &[&id.0]).await.map_err(map_err)?;
    row.as_ref().map(job_from_row).transpose()
}

pub(super) async fn list(
    client: &deadpool_postgres::Client,
    filter: &ListFilter,
    before: Option<JobId>,
) -> Result<Vec<Job>> {
    select_jobs(
        client,
        &format!(
            "SELECT {} FROM cm_co_jobs j \
             WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.job_type = $2) \
               AND ($3::int8 IS NULL OR j.co_id = $3) AND ($4::int8 IS NULL OR j.id < $4) \
               AND ($6::text IS NULL OR j.schedule_name = $6) \
             ORDER BY j.id DESC LIMIT $5::int8",
            job_columns("j")
        ),
        &[
            &filter.status.map(JobStatus::code),
            &filter.job_type,
            &filter.co_id,
            &before.map(|b| b.0),
            &filter.limit.map(|l| l.max(0)),
            &filter.schedule,
        ],
    )
    .await
}

pub(super) async fn history(
    client: &deadpool_postgres::Client,
    id: JobId,
) -> Result<Vec<HistoryRecord>> {
    let rows = client
        .query(
            "SELECT id::int8, co_job_id::int8, record_key::text, co_person_id::int8, \
                org_identity_id::int8, comment::text, status::text, created, modified \
             FROM cm_co_job_history_records WHERE co_job_id = $1::int8 ORDER BY id",
            &[&id.0],
        )
        .await
        .map_err(map_err)?;
    let time = |t: Option<NaiveDateTime>| t.map(|t| crate::store::format_time(t.and_utc()));
    Ok(rows
        .iter()
        .map(|r| HistoryRecord {
            id: r.get(0),
            co_job_id: JobId(r.get(1)),
            record_key: r.get(2),
            co_person_id: r.get(3),
            org_identity_id: r.get(4),
            comment: r.get(5),
            status: r.get(6),
            created: time(r.get(7)),
            modified: time(r.get(8)),
        })
        .collect())
}

/// Insert history records (key and comment cut to 256 characters), each
/// only if its job exists; returns their ids, or [`StoreError::NoJob`] for
/// the first whose job does not.
pub(super) async fn insert_history(
    client: &impl GenericClient,
    recs: &[&NewHistoryRecord],
) -> Result<Vec<i64>> {
    if recs.is_empty() {
        return Ok(Vec::new());
    }
    let jobs: Vec<i64> = recs.iter().map(|r| r.co_job_id.0).collect();
    let keys: Vec<Option<String>> = recs
        .iter()
        .map(|r| r.record_key.as_deref().map(pg_summary))
        .collect();
    let people: Vec<Option<i64>> = recs.iter().map(|r| r.co_person_id).collect();
    let orgs: Vec<Option<i64>> = recs.iter().map(|r| r.org_identity_id).collect();
    let comments: Vec<String> = recs.iter().map(|r| pg_summary(&r.comment)).collect();
    let statuses: Vec<&str> = recs.iter().map(|r| r.status.code()).collect();
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO cm_co_job_history_records \
               (co_job_id, record_key, co_person_id, org_identity_id, comment, status, created, \
                modified) \
             SELECT h.job, h.key, h.person, h.org, h.comment, h.status, {NOW}, {NOW} \
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[]) \
               WITH ORDINALITY AS h(job, key, person, org, comment, status, n) \
             WHERE EXISTS (SELECT 1 FROM cm_co_jobs WHERE id = h.job) ORDER BY h.n \
             RETURNING id::int8, co_job_id::int8"
        ))
        .await
        .map_err(map_err)?;
    let rows = client
        .query(&stmt, &[&jobs, &keys, &people, &orgs, &comments, &statuses])
        .await
        .map_err(map_err)?;
    if rows.len() < recs.len() {
        let found: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(1)).collect();
        let missing = jobs
            .iter()
            .find(|j| !found.contains(j))
            .copied()
            .unwrap_or(0);
        return Err(Error::input(StoreError::NoJob(JobId(missing))));
    }
    let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    ids.sort_unstable();
    Ok(ids)
}

pub(super) async fn add_history(
    client: &deadpool_postgres::Client,
    rec: &NewHistoryRecord,
) -> Result<i64> {
    let ids = insert_history(client, &[rec]).await?;
    ids.first()
        .copied()
        .ok_or_else(|| Error::input(StoreError::NoJob(rec.co_job_id)))
}

pub(super) async fn retry_chain(
    client: &deadpool_postgres::Client,
    id: JobId,
    after: Option<JobId>,
    limit: i64,
) -> Result<Vec<Job>> {
    select_jobs(
        client,
        &format!(
            "WITH RECURSIVE \
               up(id, parent) AS ( \
                 SELECT id, requeued_from_co_job_id FROM cm_co_jobs WHERE id = $1::int8 \
                 UNION \
                 SELECT j.id, j.requeued_from_co_job_id FROM cm_co_jobs j JOIN up ON j.id = up.parent), \
               root(id) AS (SELECT up.id FROM up WHERE up.parent IS NULL \
                              OR NOT EXISTS (SELECT 1 FROM cm_co_jobs p WHERE p.id = up.parent)), \
               down(id) AS ( \
                 SELECT id FROM root \
                 UNION \
                 SELECT j.id FROM cm_co_jobs j JOIN down ON j.requeued_from_co_job_id = down.id) \
             SELECT {} FROM cm_co_jobs j \
             WHERE j.id IN (SELECT id FROM down UNION SELECT id FROM up) \
               AND ($2::int8 IS NULL OR j.id > $2) \
             ORDER BY j.id LIMIT $3::int8",
            job_columns("j")
        ),
        &[&id.0, &after.map(|a| a.0), &limit.max(0)],
    )
    .await
}

/// [`crate::store::driver::JobStore::children`].
pub(super) async fn children(
    client: &deadpool_postgres::Client,
    id: JobId,
    after: Option<JobId>,
    limit: i64,
) -> Result<Vec<Job>> {
    select_jobs(
        client,
        &format!(
            "SELECT {} FROM cm_co_jobs j \
             WHERE j.parent_co_job_id = $1::int8 AND ($2::int8 IS NULL OR j.id > $2) \
             ORDER BY j.id LIMIT $3::int8",
            job_columns("j")
        ),
        &[&id.0, &after.map(|a| a.0), &limit.max(0)],
    )
    .await
}

/// [`JobStore::chain_page`] by a two-column walk: at most
/// [`CHAIN_WINDOW`] + 1 rows up and down from `id` (the one past the
/// window says the chain goes on), then whole rows for the page only.
pub(super) async fn chain_page(
    client: &deadpool_postgres::Client,
    id: JobId,
    around: usize,
) -> Result<ChainPage> {
    let window = i64::try_from(CHAIN_WINDOW.saturating_add(1)).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "WITH RECURSIVE \
               up(id, parent, n) AS ( \
                 SELECT id, requeued_from_co_job_id, 0 FROM cm_co_jobs WHERE id = $1::int8 \
                 UNION ALL \
                 SELECT j.id, j.requeued_from_co_job_id, up.n + 1 FROM cm_co_jobs j \
                 JOIN up ON j.id = up.parent WHERE up.n < $2::int8), \
               down(id, n) AS ( \
                 SELECT $1::int8, 0 \
                 UNION ALL \
                 SELECT j.id, down.n + 1 FROM cm_co_jobs j \
                 JOIN down ON j.requeued_from_co_job_id = down.id WHERE down.n < $2::int8) \
             SELECT id::int8, status::text FROM cm_co_jobs \
             WHERE id IN (SELECT id FROM down UNION SELECT id FROM up) ORDER BY id",
        )
        .await
        .map_err(map_err)?;
    let members: Vec<(JobId, String)> = client
        .query(&stmt, &[&id.0, &window])
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| (JobId(r.get(0)), r.get(1)))
        .collect();
    let Some(position) = members.iter().position(|(m, _)| *m == id) else {
        return Err(Error::input(StoreError::NoJob(id)));
    };
    let mut page = ChainPage::of_members(&members, position, around);
    let last = position
        .saturating_add(around)
        .min(members.len().saturating_sub(1));
    let ids: Vec<i64> = members
        .get(page.first..=last)
        .unwrap_or_default()
        .iter()
        .map(|(m, _)| m.0)
        .collect();
    let rows = select_jobs(
        client,
        &format!(
            "SELECT {} FROM cm_co_jobs j WHERE j.id = ANY($1::int8[]) ORDER BY j.id",
            job_columns("j")
        ),
        &[&ids],
    )
    .await?;
    page.rows = rows.iter().map(ChainEntry::of).collect();
    Ok(page)
}

pub(super) async fn cancel(
    client: &mut deadpool_postgres::Client,
    id: JobId,
    who: &str,
) -> Result<CancelResult> {
    let tx = client.transaction().await.map_err(map_err)?;
    let row = tx
        .query_opt(
            "SELECT status::text, start_time IS NOT NULL FROM cm_co_jobs \
             WHERE id = $1::int8 FOR UPDATE",
            &[&id.0],
        )
        .await
        .map_err(map_err)?;
    let row = row.ok_or_else(|| Error::input(StoreError::NoJob(id)))?;
    let (status, started): (String, bool) = (row.get(0), row.get(1));
    let status: JobStatus = status
        .parse()
        .map_err(|_| Error::Other(format!("job {id} has unreadable status '{status}'")))?;
    // A claimed row that has not started ends at once too: its runner's
    // start is then refused, so it never runs (issue 10, finding 4).
    let ends_now = status == JobStatus::Queued || (status == JobStatus::InProgress && !started);
    let result = match status {
        _ if ends_now => {
            tx.execute(
                &format!(
                    "UPDATE cm_co_jobs SET status = 'CX', complete_time = {NOW}, \
                        finish_summary = $2, cancel_requested_by = $3, cancel_requested_at = {NOW}, \
                        lease_expires_at = NULL \
                     WHERE id = $1::int8 \
                       AND (status = 'Q' OR (status = 'GO' AND start_time IS NULL))"
                ),
                &[
                    &id.0,
                    &job::truncate_summary(&format!("canceled by {who}")),
                    &who,
                ],
            )
            .await
            .map_err(map_err)?;
            CancelResult::Canceled
        }
        JobStatus::InProgress => {
            tx.execute(
                &format!(
                    "UPDATE cm_co_jobs SET cancel_requested_by = coalesce(cancel_requested_by, $2), \
                        cancel_requested_at = coalesce(cancel_requested_at, {NOW}) \
                     WHERE id = $1::int8 AND status = 'GO'"
                ),
                &[&id.0, &who],
            )
            .await
            .map_err(map_err)?;
            CancelResult::StopRequested
        }
        ended => {
            return Err(Error::Conflict(StoreError::AlreadyEnded {
                id,
                status: ended,
            }));
        }
    };
    tx.commit().await.map_err(map_err)?;
    Ok(result)
}

pub(super) async fn prune(
    client: &mut deadpool_postgres::Client,
    older_than: DateTime<Utc>,
) -> Result<u64> {
    let cutoff = older_than.naive_utc();
    let tx = client.transaction().await.map_err(map_err)?;
    let doomed =
        "SELECT id FROM cm_co_jobs WHERE status IN ('OK', 'X', 'CX') AND complete_time < $1";
    // Successors keep living, unlinked (a COmanage schema's foreign key
    // may not say ON DELETE SET NULL), and history goes with its job.
    for sql in [
        format!(
            "UPDATE cm_co_jobs SET requeued_from_co_job_id = NULL \
             WHERE requeued_from_co_job_id IN ({doomed})"
        ),
        format!("DELETE FROM cm_co_job_history_records WHERE co_job_id IN ({doomed})"),
    ] {
        tx.execute(&sql, &[&cutoff]).await.map_err(map_err)?;
    }
    let n = tx
        .execute(
            "DELETE FROM cm_co_jobs WHERE status IN ('OK', 'X', 'CX') AND complete_time < $1",
            &[&cutoff],
        )
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(n)
}

pub(super) async fn counts_by_status(
    client: &deadpool_postgres::Client,
) -> Result<Vec<(JobStatus, i64)>> {
    let rows = client
        .query(
            "SELECT status::text, count(*) FROM cm_co_jobs GROUP BY status",
            &[],
        )
        .await
        .map_err(map_err)?;
    let mut counts: Vec<(JobStatus, i64)> = JobStatus::ALL.iter().map(|&s| (s, 0)).collect();
    for r in &rows {
        let code: String = r.get(0);
        if let Ok(st) = code.parse::<JobStatus>()
            && let Some(slot) = counts.iter_mut().find(|(s, _)| *s == st)
        {
            slot.1 = r.get(1);
        }
    }
    Ok(counts)
}

pub(super) async fn latencies(
    client: &deadpool_postgres::Client,
    job_type: &str,
) -> Result<Latencies> {
    let rows = client
        .query(
            "SELECT extract(epoch FROM start_time - queue_time)::float8, \
                    extract(epoch FROM complete_time - queue_time)::float8, status = 'OK' \
             FROM cm_co_jobs WHERE job_type = $1 AND status IN ('OK', 'X', 'CX')",
            &[&job_type],
        )
        .await
        .map_err(map_err)?;
    let mut out = Latencies::default();
    for r in &rows {
        out.to_start.extend(r.get::<_, Option<f64>>(0));
        out.to_finish.extend(r.get::<_, Option<f64>>(1));
        out.ok += usize::from(r.get::<_, bool>(2));
    }
    Ok(out)
}

pub(super) async fn add_co(
    client: &mut deadpool_postgres::Client,
    name: &str,
    description: Option<&str>,
) -> Result<i64> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::input(StoreError::EmptyCoName));
    }
    let tx = client.transaction().await.map_err(map_err)?;
    // Two adds of one name take turns; cm_cos may have no unique index.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('cm_cos/' || $1, 0))",
        &[&name],
    )
    .await
    .map_err(map_err)?;
    let exists = tx
        .query_opt("SELECT 1 FROM cm_cos WHERE name = $1", &[&name])
        .await
        .map_err(map_err)?;
    if exists.is_some() {
        return Err(Error::input(StoreError::CoExists(name.to_string())));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO cm_cos (name, description, status, created, modified) \
                 VALUES ($1, $2, 'A', {NOW}, {NOW}) RETURNING id::int8"
            ),
            &[&name, &description.map(job::truncate_summary)],
        )
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(row.get(0))
}

pub(super) async fn list_cos(client: &deadpool_postgres::Client) -> Result<Vec<Co>> {
    let rows = client
        .query(
            "SELECT id::int8, name::text, description::text, coalesce(status, '')::text, created \
             FROM cm_cos ORDER BY id",
            &[],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| Co {
            id: r.get(0),
            name: r.get(1),
            description: r.get(2),
            status: r.get(3),
            created: r
                .get::<_, Option<NaiveDateTime>>(4)
                .map(|t| crate::store::format_time(t.and_utc())),
        })
        .collect())
}

/// The rows `sql` (a `SELECT` of [`job_columns`]) finds with `params`,
/// through the connection's statement cache.
async fn select_jobs(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Job>> {
    let stmt = client.prepare_cached(sql).await.map_err(map_err)?;
    let rows = client.query(&stmt, params).await.map_err(map_err)?;
    rows.iter().map(job_from_row).collect()
}
