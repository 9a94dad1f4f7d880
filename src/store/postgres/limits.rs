//! Limits and pause (`cojobs_type_limits`, `cojobs_co_limits`): the
//! statements that set and read them. The claim reads them
//! ([`super::runner`]); docs/design.md#limits-and-pause says how they hold
//! across runners.

use deadpool_postgres::GenericClient;

use super::{NOW, map_err};
use crate::store::driver::{Error, Result};
use crate::store::limits::rate_text;
use crate::store::{CoThrottle, StoreError, Throttles, TypeThrottle, format_time};
use crate::throttle::{PauseTarget, TypeLimits};

/// The advisory lock every claim takes while any limit is set (see
/// [`super::runner::claim`]): "cojobsL" in ASCII.
pub(super) const CLAIM_LOCK: i64 = 0x0063_6f6a_6f62_734c;

/// Take [`CLAIM_LOCK`] for the transaction, if any limit that counts rows
/// is set (a pause alone needs no lock: it is a filter, not a count).
pub(super) const LOCK_IF_LIMITED: &str = "SELECT pg_advisory_xact_lock($1) \
     WHERE EXISTS (SELECT 1 FROM cojobs_type_limits \
                   WHERE concurrency IS NOT NULL OR rate_max IS NOT NULL) \
        OR EXISTS (SELECT 1 FROM cojobs_co_limits WHERE max_running IS NOT NULL)";

fn bad_type(job_type: &str) -> Result<()> {
    crate::job::validate_job_type(job_type).map_err(|e| Error::input(StoreError::JobType(e)))
}

async fn require_co(client: &impl GenericClient, co_id: i64) -> Result<()> {
    if super::jobs::missing_co(client, &[co_id]).await?.is_some() {
        return Err(Error::input(StoreError::NoCo(co_id)));
    }
    Ok(())
}

pub(super) async fn set_type_limits(
    client: &impl GenericClient,
    job_type: &str,
    limits: &TypeLimits,
) -> Result<()> {
    bad_type(job_type)?;
    client
        .execute(
            &format!(
                "INSERT INTO cojobs_type_limits \
                   (job_type, concurrency, rate_max, rate_window_secs, modified) \
                 VALUES ($1, $2, $3, $4, {NOW}) \
                 ON CONFLICT (job_type) DO UPDATE SET concurrency = excluded.concurrency, \
                   rate_max = excluded.rate_max, rate_window_secs = excluded.rate_window_secs, \
                   modified = excluded.modified"
            ),
            &[
                &job_type,
                &limits.concurrency,
                &limits.rate.map(|r| r.max),
                &limits.rate.map(|r| r.window_secs),
            ],
        )
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn set_co_max_running(
    client: &impl GenericClient,
    co_id: i64,
    max: Option<i64>,
) -> Result<()> {
    crate::bounds::MAX_RUNNING
        .check_opt(max)
        .map_err(|e| Error::input(StoreError::OutOfRange(e)))?;
    require_co(client, co_id).await?;
    client
        .execute(
            &format!(
                "INSERT INTO cojobs_co_limits (co_id, max_running, modified) \
                 VALUES ($1, $2, {NOW}) \
                 ON CONFLICT (co_id) DO UPDATE SET max_running = excluded.max_running, \
                   modified = excluded.modified"
            ),
            &[&co_id, &max],
        )
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn pause(
    client: &impl GenericClient,
    target: &PauseTarget,
    who: &str,
) -> Result<bool> {
    let n = match target {
        PauseTarget::Type(t) => {
            bad_type(t)?;
            client
                .execute(
                    &format!(
                        "INSERT INTO cojobs_type_limits (job_type, paused_by, paused_at, modified) \
                         VALUES ($1, $2, {NOW}, {NOW}) \
                         ON CONFLICT (job_type) DO UPDATE SET paused_by = excluded.paused_by, \
                           paused_at = excluded.paused_at, modified = excluded.modified \
                         WHERE cojobs_type_limits.paused_by IS NULL"
                    ),
                    &[t, &who],
                )
                .await
        }
        PauseTarget::Co(id) => {
            require_co(client, *id).await?;
            client
                .execute(
                    &format!(
                        "INSERT INTO cojobs_co_limits (co_id, paused_by, paused_at, modified) \
                         VALUES ($1, $2, {NOW}, {NOW}) \
                         ON CONFLICT (co_id) DO UPDATE SET paused_by = excluded.paused_by, \
                           paused_at = excluded.paused_at, modified = excluded.modified \
                         WHERE cojobs_co_limits.paused_by IS NULL"
                    ),
                    &[id, &who],
                )
                .await
        }
    }
    .map_err(map_err)?;
    Ok(n == 1)
}

pub(super) async fn resume(client: &impl GenericClient, target: &PauseTarget) -> Result<bool> {
    let n = match target {
        PauseTarget::Type(t) => {
            bad_type(t)?;
            client
                .execute(
                    &format!(
                        "UPDATE cojobs_type_limits SET paused_by = NULL, paused_at = NULL, \
                           modified = {NOW} WHERE job_type = $1 AND paused_by IS NOT NULL"
                    ),
                    &[t],
                )
                .await
        }
        PauseTarget::Co(id) => {
            require_co(client, *id).await?;
            client
                .execute(
                    &format!(
                        "UPDATE cojobs_co_limits SET paused_by = NULL, paused_at = NULL, \
                           modified = {NOW} WHERE co_id = $1 AND paused_by IS NOT NULL"
                    ),
                    &[id],
                )
                .await
        }
    }
    .map_err(map_err)?;
    Ok(n == 1)
}

fn time_text(t: Option<chrono::NaiveDateTime>) -> Option<String> {
    t.map(|t| format_time(t.and_utc()))
}

pub(super) async fn throttles(client: &impl GenericClient) -> Result<Throttles> {
    let types = client
        .query(
            "SELECT job_type::text, concurrency::int8, rate_max::int8, rate_window_secs::int8, \
                paused_by, paused_at FROM cojobs_type_limits ORDER BY job_type",
            &[],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            Ok(TypeThrottle {
                job_type: r.try_get(0).map_err(map_err)?,
                concurrency: r.try_get(1).map_err(map_err)?,
                rate: rate_text(
                    r.try_get(2).map_err(map_err)?,
                    r.try_get(3).map_err(map_err)?,
                ),
                paused_by: r.try_get(4).map_err(map_err)?,
                paused_at: time_text(r.try_get(5).map_err(map_err)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cos = client
        .query(
            "SELECT co_id::int8, max_running::int8, paused_by, paused_at \
             FROM cojobs_co_limits ORDER BY co_id",
            &[],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            Ok(CoThrottle {
                co_id: r.try_get(0).map_err(map_err)?,
                max_running: r.try_get(1).map_err(map_err)?,
                paused_by: r.try_get(2).map_err(map_err)?,
                paused_at: time_text(r.try_get(3).map_err(map_err)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Throttles { types, cos })
}
