//! What the store keeps about the fleet and its recent work, for `cojobs
//! serve` (issue 12): the live runners (a row each runner writes when it
//! starts and at every heartbeat, and deletes when it exits cleanly), and
//! the last hour's activity (jobs ended per minute, queue latencies). The
//! types are shared by both drivers; this file holds the SQLite
//! statements, `postgres/activity.rs` the PostgreSQL ones.

use chrono::{DateTime, Duration as Span, NaiveDateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use super::{Result, Store, format_time};
use crate::job::JobStatus;

/// A runner's row is deleted by the next runner that records itself once
/// its heartbeat is this old (a runner killed without a clean exit).
pub const FORGET_RUNNER_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The longest window [`Store::activity`] reads: a day.
pub const MAX_MINUTES: i64 = 24 * 60;

/// Most queue latencies [`Activity::latencies`] holds (the newest ends).
pub const LATENCY_SAMPLE: i64 = 10_000;

/// What a runner records about itself at start and at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRecord {
    /// The runner id its claims write (`runner_id`).
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub workers: i64,
    /// Jobs running now.
    pub running: i64,
    /// Its lease: it heartbeats every third of it, and is taken for dead
    /// once its heartbeat is older than the lease.
    pub lease_secs: i64,
}

/// A runner as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunnerRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub workers: i64,
    pub running: i64,
    pub lease_secs: i64,
    pub started: String,
    pub heartbeat: String,
    /// Seconds since its last heartbeat, on the database's clock.
    pub heartbeat_age_secs: i64,
    /// Its heartbeat is younger than its lease.
    pub alive: bool,
}

/// Jobs that ended in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// `YYYY-MM-DD HH:MM` (UTC).
    pub minute: String,
    pub ok: i64,
    pub failed: i64,
    pub canceled: i64,
}

/// The recent activity of the jobs of one CO or of all
/// ([`crate::store::driver::JobStore::activity`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// The database's now, the end of the window.
    pub now: DateTime<Utc>,
    /// One entry per minute of the window, oldest first, zeros included.
    pub per_minute: Vec<MinuteCount>,
    /// Queue latencies (seconds from due to start) of jobs that ended in
    /// the window and had started, at most [`LATENCY_SAMPLE`], unsorted.
    pub latencies: Vec<f64>,
}

impl Activity {
    /// Build from grouped rows `(minute, status, count)`: one entry per
    /// minute of the `minutes` before `now`, its own included.
    pub fn from_groups(
        now: DateTime<Utc>,
        minutes: i64,
        groups: &[(String, String, i64)],
        latencies: Vec<f64>,
    ) -> Activity {
        let per_minute = (0..minutes.max(0))
            .rev()
            .map(|back| {
                let minute = minute_of(now - Span::minutes(back));
                let mut m = MinuteCount {
                    minute,
                    ..MinuteCount::default()
                };
                for (_, status, n) in groups.iter().filter(|(g, _, _)| *g == m.minute) {
                    match status.parse::<JobStatus>() {
                        Ok(JobStatus::Complete) => m.ok = m.ok.saturating_add(*n),
                        Ok(JobStatus::Failed) => m.failed = m.failed.saturating_add(*n),
                        Ok(JobStatus::Canceled) => m.canceled = m.canceled.saturating_add(*n),
                        _ => {}
                    }
                }
                m
            })
            .collect();
        Activity {
            now,
            per_minute,
            latencies,
        }
    }

    /// The `q` quantile (0 to 1) of the latencies, by nearest rank.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let mut v: Vec<f64> = self
            .latencies
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
        v.get(rank.saturating_sub(1).min(v.len() - 1)).copied()
    }
}

/// The minute of `t` as stored texts begin (`YYYY-MM-DD HH:MM`).
pub fn minute_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// Seconds from `then` (a stored time) to `now`; 0 when unreadable.
fn age_secs(then: &str, now: DateTime<Utc>) -> i64 {
    NaiveDateTime::parse_from_str(then, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| (now - t.and_utc()).num_seconds().max(0))
        .unwrap_or(0)
}

impl Store {
    /// Insert or update runner `r`'s row (its start time kept), with its
    /// heartbeat now; forget rows whose heartbeat is older than
    /// [`FORGET_RUNNER_AFTER`].
    pub fn record_runner(&mut self, r: &RunnerRecord) -> Result<()> {
        let now = self.now();
        let forget = format_time(now - Span::seconds(FORGET_RUNNER_AFTER.as_secs() as i64));
        let now = format_time(now);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO cojobs_runners (id, host, pid, workers, running, lease_secs, started, \
                heartbeat) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                workers = excluded.workers, running = excluded.running, \
                lease_secs = excluded.lease_secs, heartbeat = excluded.heartbeat",
            params![r.id, r.host, r.pid, r.workers, r.running, r.lease_secs, now],
        )?;
        tx.execute("DELETE FROM cojobs_runners WHERE heartbeat < ?1", [forget])?;
        tx.commit()?;
        Ok(())
    }

    /// Delete runner `id`'s row (a clean exit).
    pub fn remove_runner(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM cojobs_runners WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every recorded runner, oldest start first.
    pub fn list_runners(&self) -> Result<Vec<RunnerRow>> {
        let now = self.now();
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, host, pid, workers, running, lease_secs, started, heartbeat \
             FROM cojobs_runners ORDER BY started, id",
        )?;
        let rows = stmt.query_map([], |r| {
            let heartbeat: String = r.get(7)?;
            let lease_secs: i64 = r.get(5)?;
            let age = age_secs(&heartbeat, now);
            Ok(RunnerRow {
                id: r.get(0)?,
                host: r.get(1)?,
                pid: r.get(2)?,
                workers: r.get(3)?,
                running: r.get(4)?,
                lease_secs,
                started: r.get(6)?,
                heartbeat,
                heartbeat_age_secs: age,
                alive: age <= lease_secs,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last `minutes` minutes' activity of CO `co_id`'s jobs, or all.
    pub fn activity(&self, co_id: Option<i64>, minutes: i64) -> Result<Activity> {
        let minutes = minutes.clamp(0, MAX_MINUTES);
        let now = self.now();
        let since = format_time(now - Span::minutes(minutes));
        let mut stmt = self.conn.prepare_cached(
            "SELECT substr(complete_time, 1, 16), status, count(*) FROM cm_co_jobs \
             WHERE status IN ('OK', 'X', 'CX') AND complete_time >= ?1 \
               AND (?2 IS NULL OR co_id = ?2) \
             GROUP BY 1, 2",
        )?;
        let groups = stmt
            .query_map(params![since, co_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<(String, String, i64)>>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT (julianday(start_time) - julianday(coalesce(start_after_time, queue_time))) \
                * 86400.0 FROM cm_co_jobs \
             WHERE status IN ('OK', 'X', 'CX') AND complete_time >= ?1 \
               AND (?2 IS NULL OR co_id = ?2) AND start_time IS NOT NULL \
             ORDER BY complete_time DESC LIMIT ?3",
        )?;
        let latencies = stmt
            .query_map(params![since, co_id, LATENCY_SAMPLE], |r| {
                r.get::<_, Option<f64>>(0)
            })?
            .filter_map(|x| x.ok().flatten())
            .map(|x| x.max(0.0))
            .collect();
        Ok(Activity::from_groups(now, minutes, &groups, latencies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_filled_and_quantiles_ranked() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T17:05:30Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let groups = vec![
            ("2026-11-29 17:05".to_string(), "OK".to_string(), 3),
            ("2026-11-29 17:03".to_string(), "X".to_string(), 2),
            ("2026-11-29 16:00".to_string(), "OK".to_string(), 9),
        ];
        let a = Activity::from_groups(now, 3, &groups, (1..=100).map(f64::from).collect());
        let minutes: Vec<_> = a.per_minute.iter().map(|m| m.minute.as_str()).collect();
        assert_eq!(
            minutes,
            ["2026-11-29 17:03", "2026-11-29 17:04", "2026-11-29 17:05"]
        );
        assert_eq!((a.per_minute[0].failed, a.per_minute[2].ok), (2, 3));
        assert_eq!(a.latency_quantile(0.5), Some(50.0));
        assert_eq!(a.latency_quantile(0.99), Some(99.0));
        let empty = Activity::from_groups(now, 0, &[], Vec::new());
        assert_eq!(empty.latency_quantile(0.5), None);
    }
}
