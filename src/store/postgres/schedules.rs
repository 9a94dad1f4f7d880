//! Schedules on PostgreSQL (`docs/design.md#schedules`): the same rows and
//! the same exactly-once rule as SQLite (`src/store/schedules.rs`), with
//! the database's clock. The pass locks the due schedule rows it takes
//! with `FOR UPDATE SKIP LOCKED`: runners racing for one schedule do not
//! wait for each other, the one holding it queues its ticks, and the
//! compare-and-set on `next_tick` plus the unique `(schedule_name,
//! schedule_tick)` index keep a tick from being queued twice regardless.

use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{NOW, map_err};
use crate::store::driver::{Error, Result};
use crate::store::jobs::check;
use crate::store::schedules::{DUE_PER_PASS, catch_up_of, check_schedule, plan_row};
use crate::store::{JobId, NewSchedule, ScheduleRow, StoreError, format_time};

/// The columns [`row_to_schedule`] reads, in its order.
const COLUMNS: &str = "id::int8, name::text, cron, timezone, catch_up::text, paused, next_tick, \
    co_id::int8, job_type::text, job_mode::text, job_params, requeue_interval::int8, \
    retry_interval::int8, max_retry::int8, register_summary::text, fuel_limit::int8, \
    memory_limit_mib::int8, timeout_secs::int8, created_by, created, backoff::text, \
    backoff_max::int8, priority::int8";

fn text_time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(|t| format_time(t.and_utc()))
}

fn row_to_schedule(r: &Row) -> Result<ScheduleRow> {
    let g = map_err;
    Ok(ScheduleRow {
        id: r.try_get(0).map_err(g)?,
        name: r.try_get(1).map_err(g)?,
        cron: r.try_get(2).map_err(g)?,
        timezone: r.try_get(3).map_err(g)?,
        catch_up: catch_up_of(&r.try_get::<_, String>(4).map_err(g)?),
        paused: r.try_get(5).map_err(g)?,
        next_tick: text_time(r.try_get(6).map_err(g)?),
        co_id: r.try_get(7).map_err(g)?,
        job_type: r.try_get(8).map_err(g)?,
        job_mode: r.try_get(9).map_err(g)?,
        job_params: r.try_get(10).map_err(g)?,
        requeue_interval: r.try_get(11).map_err(g)?,
        retry_interval: r.try_get(12).map_err(g)?,
        max_retry: r.try_get(13).map_err(g)?,
        register_summary: r.try_get(14).map_err(g)?,
        fuel_limit: r.try_get(15).map_err(g)?,
        memory_limit_mib: r.try_get(16).map_err(g)?,
        timeout_secs: r.try_get(17).map_err(g)?,
        created_by: r.try_get(18).map_err(g)?,
        created: text_time(r.try_get(19).map_err(g)?),
        backoff: r.try_get(20).map_err(g)?,
        backoff_max: r.try_get(21).map_err(g)?,
        priority: r.try_get(22).map_err(g)?,
    })
}

async fn db_now(client: &impl GenericClient) -> Result<DateTime<Utc>> {
    let row = client
        .query_one(&format!("SELECT {NOW}"), &[])
        .await
        .map_err(map_err)?;
    Ok(row.get::<_, NaiveDateTime>(0).and_utc())
}

pub(super) async fn add(client: &mut deadpool_postgres::Client, s: &NewSchedule) -> Result<i64> {
    let schedule = check_schedule(s).map_err(Error::input)?;
    let checked = check(&s.job).map_err(Error::input)?;
    let tx = client.transaction().await.map_err(map_err)?;
    if super::jobs::missing_co(&tx, &[s.job.co_id])
        .await?
        .is_some()
    {
        return Err(Error::input(StoreError::NoCo(s.job.co_id)));
    }
    let now = db_now(&tx).await?;
    let next = schedule.next_after(now).map(|t| t.naive_utc());
    let j = &s.job;
    let row = tx
        .query_opt(
            "INSERT INTO cojobs_schedules (name, cron, timezone, catch_up, paused, next_tick, \
                co_id, job_type, job_mode, job_params, requeue_interval, retry_interval, \
                max_retry, register_summary, fuel_limit, memory_limit_mib, timeout_secs, \
                created_by, created, modified, backoff, backoff_max, priority) \
             VALUES ($1, $2, $3, $4, false, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                $16, $17, $18, $18, $19, $20, $21::int8) \
             ON CONFLICT (name) DO NOTHING RETURNING id::int8",
            &[
                &s.name,
                &s.cron,
                &schedule.zone(),
                &s.catch_up.name(),
                &next,
                &j.co_id,
                &j.job_type,
                &j.job_mode,
                &checked.params,
                &j.requeue_interval,
                &j.retry_interval,
                &j.max_retry,
                &checked.summary,
                &j.fuel_limit,
                &j.memory_limit_mib,
                &j.timeout_secs,
                &j.queued_by,
                &now.naive_utc(),
                &j.backoff.map(crate::job::Backoff::name),
                &j.backoff_max,
                &j.priority.unwrap_or(crate::bounds::DEFAULT_PRIORITY),
            ],
        )
        .await
        .map_err(map_err)?;
    let Some(row) = row else {
        return Err(Error::input(StoreError::ScheduleExists(s.name.clone())));
    };
    tx.commit().await.map_err(map_err)?;
    Ok(row.get(0))
}

/// Every schedule by name, or the one named `name`.
pub(super) async fn list(
    client: &impl GenericClient,
    name: Option<&str>,
) -> Result<Vec<ScheduleRow>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM cojobs_schedules \
                 WHERE ($1::text IS NULL OR name = $1) ORDER BY name"
            ),
            &[&name],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(row_to_schedule).collect()
}

pub(super) async fn set_paused(
    client: &deadpool_postgres::Client,
    name: &str,
    paused: bool,
) -> Result<()> {
    let row = list(client, Some(name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::input(StoreError::NoSchedule(name.to_string())))?;
    let now = db_now(client).await?;
    let next: Option<NaiveDateTime> = if paused {
        row.next_tick
            .as_deref()
            .and_then(crate::store::schedules::parse_stored)
            .map(|t| t.naive_utc())
    } else {
        row.schedule()
            .map_err(Error::input)?
            .next_after(now)
            .map(|t| t.naive_utc())
    };
    let n = client
        .execute(
            &format!(
                "UPDATE cojobs_schedules SET paused = $2, next_tick = $3, modified = {NOW} \
                 WHERE name = $1"
            ),
            &[&name, &paused, &next],
        )
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(Error::input(StoreError::NoSchedule(name.to_string())));
    }
    Ok(())
}

pub(super) async fn remove(client: &deadpool_postgres::Client, name: &str) -> Result<()> {
    let n = client
        .execute("DELETE FROM cojobs_schedules WHERE name = $1", &[&name])
        .await
        .map_err(map_err)?;
    if n == 0 {
        return Err(Error::input(StoreError::NoSchedule(name.to_string())));
    }
    Ok(())
}

/// The schedule pass (see the module doc and
/// [`crate::store::driver::JobStore::enqueue_due_ticks`]).
pub(super) async fn enqueue_due_ticks(
    client: &mut deadpool_postgres::Client,
) -> Result<Vec<JobId>> {
    // Nothing due: one indexed read, no transaction.
    let any: bool = client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM cojobs_schedules \
                 WHERE NOT paused AND next_tick <= {NOW})"
            ),
            &[],
        )
        .await
        .map_err(map_err)?
        .get(0);
    if !any {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await.map_err(map_err)?;
    let now = db_now(&tx).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM cojobs_schedules \
                 WHERE NOT paused AND next_tick <= $1 ORDER BY next_tick LIMIT $2 \
                 FOR UPDATE SKIP LOCKED"
            ),
            &[&now.naive_utc(), &(DUE_PER_PASS as i64)],
        )
        .await
        .map_err(map_err)?;
    let mut ids = Vec::new();
    for row in rows.iter().map(row_to_schedule) {
        let row = row?;
        let Some((_, plan)) = plan_row(&row, now) else {
            continue;
        };
        let old = row
            .next_tick
            .as_deref()
            .and_then(crate::store::schedules::parse_stored)
            .map(|t| t.naive_utc());
        let moved = tx
            .execute(
                "UPDATE cojobs_schedules SET next_tick = $3, modified = $4 \
                 WHERE id = $1 AND next_tick = $2 AND NOT paused",
                &[
                    &row.id,
                    &old,
                    &plan.next.map(|t| t.naive_utc()),
                    &now.naive_utc(),
                ],
            )
            .await
            .map_err(map_err)?;
        if moved == 0 {
            continue;
        }
        let ticks: Vec<NaiveDateTime> = plan.ticks.iter().map(|t| t.naive_utc()).collect();
        let inserted = tx
            .query(
                "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, \
                    requeue_interval, retry_interval, max_retry, max_retry_count, status, \
                    register_summary, queue_time, start_after_time, fuel_limit, \
                    memory_limit_mib, timeout_secs, queued_by, schedule_name, schedule_tick, \
                    backoff, backoff_max, priority) \
                 SELECT s.co_id, s.job_type, s.job_mode, s.job_params, s.requeue_interval, \
                    s.retry_interval, s.max_retry, 0, 'Q', s.register_summary, $3, t.tick, \
                    s.fuel_limit, s.memory_limit_mib, s.timeout_secs, s.created_by, s.name, \
                    t.tick, s.backoff, s.backoff_max, s.priority \
                 FROM cojobs_schedules s, unnest($2::timestamp[]) WITH ORDINALITY AS t(tick, n) \
                 WHERE s.id = $1 ORDER BY t.n \
                 ON CONFLICT DO NOTHING RETURNING id::int8",
                &[&row.id, &ticks, &now.naive_utc()],
            )
            .await
            .map_err(map_err)?;
        let mut new: Vec<JobId> = inserted.iter().map(|r| JobId(r.get(0))).collect();
        new.sort_unstable();
        ids.extend(new);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(ids)
}
