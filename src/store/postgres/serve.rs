//! `cojobs serve`'s statements on PostgreSQL: search, counts, retry now,
//! tokens (the SQLite ones and the shared types are in `store/serve.rs`).

use chrono::NaiveDateTime;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::{NOW, job_columns, job_from_row, map_err};
use crate::job::JobStatus;
use crate::store::driver::{Error, Result};
use crate::store::{GroupCount, Job, JobId, JobQuery, NewToken, StoreError, Token, format_time};

type Param = Box<dyn ToSql + Sync + Send>;

/// The `WHERE` of a search and its values: only the filters given.
fn search_where(q: &JobQuery) -> (String, Vec<Param>) {
    let mut conds: Vec<String> = Vec::new();
    let mut values: Vec<Param> = Vec::new();
    let mut push = |cond: &str, v: Param| {
        values.push(v);
        conds.push(cond.replace('?', &format!("${}", values.len())));
    };
    if let Some(b) = q.before {
        push("j.id < ?::int8", Box::new(b.0));
    }
    if let Some(s) = q.status {
        push("j.status = ?::text", Box::new(s.code()));
    }
    if let Some(t) = &q.job_type {
        push("j.job_type = ?::text", Box::new(t.clone()));
    }
    if let Some(co) = q.co_id {
        push("j.co_id = ?::int8", Box::new(co));
    }
    for (cond, t) in [
        ("j.queue_time >= ?::timestamp", q.queued_after),
        ("j.queue_time < ?::timestamp", q.queued_before),
        ("j.complete_time >= ?::timestamp", q.finished_after),
        ("j.complete_time < ?::timestamp", q.finished_before),
    ] {
        if let Some(t) = t {
            push(cond, Box::new(t.naive_utc()));
        }
    }
    if let Some(text) = &q.text {
        push(
            "(j.register_summary ILIKE ? OR j.start_summary ILIKE ? \
              OR j.finish_summary ILIKE ? OR j.status_line ILIKE ?)",
            Box::new(crate::store::serve::like_pattern(text)),
        );
    }
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    (where_, values)
}

pub(super) async fn search(client: &deadpool_postgres::Client, q: &JobQuery) -> Result<Vec<Job>> {
    let (where_, mut values) = search_where(q);
    values.push(Box::new(q.limit.max(0)));
    let columns = job_columns("j")
        .replacen("j.job_log::text", "NULL::text", 1)
        .replacen("j.result::text", "NULL::text", 1);
    let sql = format!(
        "SELECT {columns} FROM cm_co_jobs j {where_}ORDER BY j.id DESC LIMIT ${}::int8",
        values.len()
    );
    let stmt = client.prepare_cached(&sql).await.map_err(map_err)?;
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&stmt, &params).await.map_err(map_err)?;
    rows.iter().map(job_from_row).collect()
}

pub(super) async fn count_groups(
    client: &deadpool_postgres::Client,
    co_id: Option<i64>,
) -> Result<Vec<GroupCount>> {
    let rows = client
        .query(
            "SELECT co_id::int8, job_type::text, status::text, count(*) FROM cm_co_jobs \
             WHERE $1::int8 IS NULL OR co_id = $1::int8 GROUP BY co_id, job_type, status \
             ORDER BY co_id, job_type, status",
            &[&co_id],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let status: String = r.get(2);
            Some(GroupCount {
                co_id: r.get(0),
                job_type: r.get(1),
                status: status.parse::<JobStatus>().ok()?,
                count: r.get(3),
            })
        })
        .collect())
}

pub(super) async fn retry_now(
    client: &mut deadpool_postgres::Client,
    id: JobId,
    who: &str,
) -> Result<JobId> {
    let tx = client.transaction().await.map_err(map_err)?;
    let row = tx
        .query_opt(
            "SELECT status::text FROM cm_co_jobs WHERE id = $1::int8 FOR UPDATE",
            &[&id.0],
        )
        .await
        .map_err(map_err)?;
    let row = row.ok_or_else(|| Error::input(StoreError::NoJob(id)))?;
    let status: String = row.get(0);
    let status: JobStatus = status
        .parse()
        .map_err(|_| Error::Other(format!("job {id} has unreadable status '{status}'")))?;
    if !matches!(status, JobStatus::Failed | JobStatus::Canceled) {
        return Err(Error::Conflict(StoreError::NotRetryable { id, status }));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, \
                    requeue_interval, retry_interval, max_retry, max_retry_count, \
                    requeued_from_co_job_id, status, register_summary, queue_time, fuel_limit, \
                    memory_limit_mib, timeout_secs, queued_by, backoff, backoff_max, priority) \
                 SELECT co_id, job_type, job_mode, job_params, requeue_interval, \
                    retry_interval, max_retry, least(coalesce(max_retry_count, 0), 1000000) + 1, \
                    id, 'Q', register_summary, {NOW}, fuel_limit, memory_limit_mib, \
                    timeout_secs, $2, backoff, backoff_max, priority \
                 FROM cm_co_jobs WHERE id = $1::int8 RETURNING id::int8"
            ),
            &[&id.0, &who],
        )
        .await
        .map_err(map_err)?;
    tx.execute(
        "UPDATE cm_co_jobs SET retried_by = $2 WHERE id = $1::int8",
        &[&id.0, &who],
    )
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(JobId(row.get(0)))
}

pub(super) async fn add_token(client: &mut deadpool_postgres::Client, t: &NewToken) -> Result<i64> {
    crate::store::check_token_name(&t.name).map_err(Error::input)?;
    let tx = client.transaction().await.map_err(map_err)?;
    // Two adds of one name take turns.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('cojobs_tokens/' || $1, 0))",
        &[&t.name],
    )
    .await
    .map_err(map_err)?;
    if let Some(co) = t.co_id {
        let found = tx
            .query_opt("SELECT 1 FROM cm_cos WHERE id = $1::int8", &[&co])
            .await
            .map_err(map_err)?;
        if found.is_none() {
            return Err(Error::input(StoreError::NoCo(co)));
        }
    }
    let taken = tx
        .query_opt(
            "SELECT 1 FROM cojobs_tokens WHERE name = $1 AND revoked IS NULL",
            &[&t.name],
        )
        .await
        .map_err(map_err)?;
    if taken.is_some() {
        return Err(Error::input(StoreError::TokenExists(t.name.clone())));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO cojobs_tokens (name, token_hash, role, co_id, created) \
                 VALUES ($1, $2, $3, $4::int8, {NOW}) RETURNING id::int8"
            ),
            &[&t.name, &t.hash, &t.role.code(), &t.co_id],
        )
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(row.get(0))
}

const TOKEN_COLUMNS: &str = "id::int8, name, role, co_id::int8, created, revoked";

fn token_from_row(r: &tokio_postgres::Row) -> Result<Token> {
    let time = |t: Option<NaiveDateTime>| t.map(|t| format_time(t.and_utc()));
    let role: String = r.get(2);
    Ok(Token {
        id: r.get(0),
        name: r.get(1),
        role: role
            .parse()
            .map_err(|e: StoreError| Error::Other(e.to_string()))?,
        co_id: r.get(3),
        created: time(r.get(4)),
        revoked: time(r.get(5)),
    })
}

pub(super) async fn list_tokens(client: &deadpool_postgres::Client) -> Result<Vec<Token>> {
    let rows = client
        .query(
            &format!("SELECT {TOKEN_COLUMNS} FROM cojobs_tokens ORDER BY id"),
            &[],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(token_from_row).collect()
}

pub(super) async fn revoke_token(client: &deadpool_postgres::Client, name: &str) -> Result<()> {
    let n = client
        .execute(
            &format!(
                "UPDATE cojobs_tokens SET revoked = {NOW} WHERE name = $1 AND revoked IS NULL"
            ),
            &[&name],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(Error::input(StoreError::NoToken(name.to_string())));
    }
    Ok(())
}

pub(super) async fn token_by_hash(
    client: &deadpool_postgres::Client,
    hash: &str,
) -> Result<Option<Token>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM cojobs_tokens WHERE token_hash = $1 AND revoked IS NULL"
        ))
        .await
        .map_err(map_err)?;
    let row = client.query_opt(&stmt, &[&hash]).await.map_err(map_err)?;
    row.as_ref().map(token_from_row).transpose()
}
