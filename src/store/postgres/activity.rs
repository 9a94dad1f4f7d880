//! The runners' rows and the last hour's activity on PostgreSQL (the
//! SQLite statements and the shared types are in `store/activity.rs`).
//! Times are the server's (`now()`), as for leases.

use chrono::NaiveDateTime;
use deadpool_postgres::GenericClient;

use super::{NOW, map_err};
use crate::store::activity::{Activity, FORGET_RUNNER_AFTER, LATENCY_SAMPLE, MAX_MINUTES};
use crate::store::driver::Result;
use crate::store::{RunnerRecord, RunnerRow, format_time};

pub(super) async fn record_runner(
    client: &mut deadpool_postgres::Client,
    r: &RunnerRecord,
) -> Result<()> {
    let forget = i64::try_from(FORGET_RUNNER_AFTER.as_secs()).unwrap_or(i64::MAX);
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute(
        &format!(
            "INSERT INTO cojobs_runners (id, host, pid, workers, running, lease_secs, started, \
                heartbeat) VALUES ($1, $2, $3::int8, $4::int8, $5::int8, $6::int8, {NOW}, {NOW}) \
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                workers = excluded.workers, running = excluded.running, \
                lease_secs = excluded.lease_secs, heartbeat = excluded.heartbeat"
        ),
        &[
            &r.id,
            &r.host,
            &r.pid,
            &r.workers,
            &r.running,
            &r.lease_secs,
        ],
    )
    .await
    .map_err(map_err)?;
    tx.execute(
        &format!(
            "DELETE FROM cojobs_runners WHERE heartbeat < {NOW} - make_interval(secs => $1::int8)"
        ),
        &[&forget],
    )
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

pub(super) async fn remove_runner(client: &deadpool_postgres::Client, id: &str) -> Result<()> {
    client
        .execute("DELETE FROM cojobs_runners WHERE id = $1", &[&id])
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn list_runners(client: &deadpool_postgres::Client) -> Result<Vec<RunnerRow>> {
    let rows = client
        .query(
            &format!(
                "SELECT id, host, pid::int8, workers::int8, running::int8, lease_secs::int8, \
                    started, heartbeat, \
                    greatest(0, floor(extract(epoch FROM {NOW} - heartbeat)))::int8 \
                 FROM cojobs_runners ORDER BY started, id"
            ),
            &[],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            let time = |t: NaiveDateTime| format_time(t.and_utc());
            let lease_secs: i64 = r.get(5);
            let age: i64 = r.get(8);
            RunnerRow {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                workers: r.get(3),
                running: r.get(4),
                lease_secs,
                started: time(r.get(6)),
                heartbeat: time(r.get(7)),
                heartbeat_age_secs: age,
                alive: age <= lease_secs,
            }
        })
        .collect())
}

pub(super) async fn activity(
    client: &deadpool_postgres::Client,
    co_id: Option<i64>,
    minutes: i64,
) -> Result<Activity> {
    let minutes = minutes.clamp(0, MAX_MINUTES);
    let now: NaiveDateTime = client
        .query_one(&format!("SELECT {NOW}"), &[])
        .await
        .map_err(map_err)?
        .get(0);
    let since = now - chrono::Duration::minutes(minutes);
    let groups = client
        .query(
            "SELECT to_char(date_trunc('minute', complete_time), 'YYYY-MM-DD HH24:MI'), \
                status::text, count(*) FROM cm_co_jobs \
             WHERE status IN ('OK', 'X', 'CX') AND complete_time >= $1 \
               AND ($2::int8 IS NULL OR co_id = $2::int8) \
             GROUP BY 1, 2",
            &[&since, &co_id],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect::<Vec<(String, String, i64)>>();
    let latencies = client
        .query(
            "SELECT extract(epoch FROM start_time - coalesce(start_after_time, queue_time))::float8 \
             FROM cm_co_jobs \
             WHERE status IN ('OK', 'X', 'CX') AND complete_time >= $1 \
               AND ($2::int8 IS NULL OR co_id = $2::int8) AND start_time IS NOT NULL \
             ORDER BY complete_time DESC LIMIT $3::int8",
            &[&since, &co_id, &LATENCY_SAMPLE],
        )
        .await
        .map_err(map_err)?
        .iter()
        .filter_map(|r| r.get::<_, Option<f64>>(0))
        .map(|x| x.max(0.0))
        .collect();
    Ok(Activity::from_groups(
        now.and_utc(),
        minutes,
        &groups,
        latencies,
    ))
}
