//! Schedules in the database (`cojobs_schedules`) and the pass every
//! runner makes to queue their due ticks (`docs/design.md#schedules`).
//!
//! A schedule row is a cron expression, a zone, a catch-up policy, the job
//! to queue (the columns of a `cm_co_jobs` row, checked like a `queue`) and
//! `next_tick`: the earliest tick not yet queued. Exactly once per tick,
//! with no leader: a pass moves `next_tick` forward only from the value it
//! read (compare and set) in the transaction that inserts the ticks' jobs,
//! and each job carries `(schedule_name, schedule_tick)` under a unique
//! index, so a second pass racing for the same tick writes nothing.
//! When ticks fall is [`crate::schedule`]'s business, never SQL's.

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::jobs::check;
use super::{JobId, NewJob, Result, Store, StoreError, format_time};
use crate::schedule::{CatchUp, Schedule};

/// A schedule to add ([`Store::add_schedule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`, unique.
    pub name: String,
    pub cron: String,
    /// A tz database name; `UTC` when not given.
    pub timezone: String,
    pub catch_up: CatchUp,
    /// The job each tick queues (its `start_after` is ignored: a tick's job
    /// is due at its tick). `queued_by` is who added the schedule.
    pub job: NewJob,
}

/// A `cojobs_schedules` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleRow {
    pub id: i64,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    #[serde(serialize_with = "ser_catch_up")]
    pub catch_up: CatchUp,
    pub paused: bool,
    /// The earliest tick not yet queued (UTC); `None` when the pattern has
    /// no further tick.
    pub next_tick: Option<String>,
    pub co_id: i64,
    pub job_type: String,
    pub job_mode: Option<String>,
    pub job_params: Option<String>,
    pub requeue_interval: Option<i64>,
    pub retry_interval: Option<i64>,
    pub max_retry: Option<i64>,
    pub register_summary: Option<String>,
    pub fuel_limit: Option<i64>,
    pub memory_limit_mib: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub backoff: Option<String>,
    pub backoff_max: Option<i64>,
    pub created_by: Option<String>,
    pub created: Option<String>,
    /// The priority of the jobs it queues (1 to 9, 5 unless set).
    pub priority: i64,
}

fn ser_catch_up<S: serde::Serializer>(c: &CatchUp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

impl ScheduleRow {
    /// The parsed schedule (a row written by plain SQL may not parse).
    pub fn schedule(&self) -> Result<Schedule> {
        Ok(Schedule::parse(&self.cron, &self.timezone)?)
    }
}

/// Most due schedules one pass looks at (the rest wait for the next pass).
pub const DUE_PER_PASS: usize = 100;

/// The columns [`schedule_from_row`] reads, in its order.
pub(crate) const SCHEDULE_COLUMNS: &str = "id, name, cron, timezone, catch_up, paused, \
    next_tick, co_id, job_type, job_mode, job_params, requeue_interval, retry_interval, \
    max_retry, register_summary, fuel_limit, memory_limit_mib, timeout_secs, created_by, created, \
    backoff, backoff_max, priority";

/// A catch-up name read from the database; anything else reads as the
/// default (a row written by plain SQL cannot stop the pass).
pub(crate) fn catch_up_of(text: &str) -> CatchUp {
    text.parse().unwrap_or_default()
}

fn schedule_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        id: r.get(0)?,
        name: r.get(1)?,
        cron: r.get(2)?,
        timezone: r.get(3)?,
        catch_up: catch_up_of(&r.get::<_, String>(4)?),
        paused: r.get(5)?,
        next_tick: r.get(6)?,
        co_id: r.get(7)?,
        job_type: r.get(8)?,
        job_mode: r.get(9)?,
        job_params: r.get(10)?,
        requeue_interval: r.get(11)?,
        retry_interval: r.get(12)?,
        max_retry: r.get(13)?,
        register_summary: r.get(14)?,
        fuel_limit: r.get(15)?,
        memory_limit_mib: r.get(16)?,
        timeout_secs: r.get(17)?,
        created_by: r.get(18)?,
        created: r.get(19)?,
        backoff: r.get(20)?,
        backoff_max: r.get(21)?,
        priority: r.get(22)?,
    })
}

/// A stored time (`YYYY-MM-DD HH:MM:SS[.fff]`, UTC).
pub(crate) fn parse_stored(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Check a new schedule: its name, expression and zone, and its job as
/// `queue` would. Returns the parsed schedule.
pub(crate) fn check_schedule(s: &NewSchedule) -> Result<Schedule> {
    crate::schedule::validate_name(&s.name)?;
    let schedule = Schedule::parse(&s.cron, &s.timezone)?;
    check(&s.job)?;
    Ok(schedule)
}

/// Insert the job of tick `tick` of schedule `id` unless it exists
/// (the unique `(schedule_name, schedule_tick)` index). Returns whether it
/// was inserted.
fn insert_tick(tx: &rusqlite::Transaction<'_>, id: i64, tick: &str, now: &str) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, requeue_interval, \
                retry_interval, max_retry, max_retry_count, status, register_summary, queue_time, \
                start_after_time, fuel_limit, memory_limit_mib, timeout_secs, queued_by, \
                schedule_name, schedule_tick, backoff, backoff_max, priority) \
             SELECT co_id, job_type, job_mode, job_params, requeue_interval, retry_interval, \
                max_retry, 0, 'Q', register_summary, ?3, ?2, fuel_limit, memory_limit_mib, \
                timeout_secs, created_by, name, ?2, backoff, backoff_max, priority \
             FROM cojobs_schedules WHERE id = ?1 \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![id, tick, now])?;
    Ok(n == 1)
}

impl Store {
    /// Add a schedule. Checks everything first (a bad expression, zone,
    /// name or job, an unknown CO, a name in use are
    /// [`StoreError::is_input`]) and writes nothing on error. Its first
    /// tick is the first after now.
    pub fn add_schedule(&mut self, s: &NewSchedule) -> Result<i64> {
        let schedule = check_schedule(s)?;
        let checked = check(&s.job)?;
        let now = self.now();
        let next = schedule.next_after(now).map(format_time);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        super::jobs::require_co(&tx, s.job.co_id)?;
        let exists: Option<i64> = tx
            .prepare_cached("SELECT id FROM cojobs_schedules WHERE name = ?1")?
            .query_row([&s.name], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::ScheduleExists(s.name.clone()));
        }
        let j = &s.job;
        tx.prepare_cached(
            "INSERT INTO cojobs_schedules (name, cron, timezone, catch_up, paused, next_tick, \
                co_id, job_type, job_mode, job_params, requeue_interval, retry_interval, \
                max_retry, register_summary, fuel_limit, memory_limit_mib, timeout_secs, \
                created_by, created, modified, backoff, backoff_max, priority) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                ?17, ?18, ?18, ?19, ?20, ?21)",
        )?
        .execute(params![
            s.name,
            s.cron,
            schedule.zone(),
            s.catch_up.name(),
            next,
            j.co_id,
            j.job_type,
            j.job_mode,
            checked.params,
            j.requeue_interval,
            j.retry_interval,
            j.max_retry,
            checked.summary,
            j.fuel_limit,
            j.memory_limit_mib,
            j.timeout_secs,
            j.queued_by,
            format_time(now),
            j.backoff.map(crate::job::Backoff::name),
            j.backoff_max,
            j.priority.unwrap_or(crate::bounds::DEFAULT_PRIORITY),
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM cojobs_schedules ORDER BY name"
        ))?;
        let rows = stmt.query_map([], schedule_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One schedule by name, or `None`.
    pub fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM cojobs_schedules WHERE name = ?1"
            ))?
            .query_row([name], schedule_from_row)
            .optional()?)
    }

    /// Pause a schedule (its ticks are not queued), or resume it: its next
    /// tick is then the first after now (the paused time's ticks are not
    /// caught up). [`StoreError::NoSchedule`] for an unknown name.
    pub fn set_schedule_paused(&mut self, name: &str, paused: bool) -> Result<()> {
        let row = self
            .schedule(name)?
            .ok_or_else(|| StoreError::NoSchedule(name.to_string()))?;
        let now = self.now();
        let next = if paused {
            row.next_tick
        } else {
            row.schedule()?.next_after(now).map(format_time)
        };
        let n = self
            .conn
            .prepare_cached(
                "UPDATE cojobs_schedules SET paused = ?2, next_tick = ?3, modified = ?4 \
                 WHERE name = ?1",
            )?
            .execute(params![name, paused, next, format_time(now)])?;
        if n == 0 {
            return Err(StoreError::NoSchedule(name.to_string()));
        }
        Ok(())
    }

    /// Remove a schedule; the jobs it queued stay.
    pub fn remove_schedule(&mut self, name: &str) -> Result<()> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM cojobs_schedules WHERE name = ?1")?
            .execute([name])?;
        if n == 0 {
            return Err(StoreError::NoSchedule(name.to_string()));
        }
        Ok(())
    }

    /// The schedule pass: queue the due ticks of every schedule whose
    /// `next_tick` has come, as [`Schedule::plan`] says, and move each
    /// `next_tick` on. Returns the ids of the jobs queued. Many runners may
    /// call this at once: each tick is queued once (see the module doc).
    /// Looking costs one indexed read and no lock when nothing is due.
    pub fn enqueue_due_ticks(&mut self) -> Result<Vec<JobId>> {
        let now = self.now();
        let now_text = format_time(now);
        let due: Vec<ScheduleRow> = {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM cojobs_schedules \
                 WHERE paused = 0 AND next_tick <= ?1 ORDER BY next_tick LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now_text, DUE_PER_PASS as i64], schedule_from_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::new();
        for row in &due {
            let Some((old, plan)) = plan_row(row, now) else {
                continue;
            };
            let moved = tx
                .prepare_cached(
                    "UPDATE cojobs_schedules SET next_tick = ?3, modified = ?4 \
                     WHERE id = ?1 AND next_tick = ?2 AND paused = 0",
                )?
                .execute(params![row.id, old, plan.next.map(format_time), now_text])?;
            if moved == 0 {
                continue; // another runner took these ticks
            }
            for tick in &plan.ticks {
                if insert_tick(&tx, row.id, &format_time(*tick), &now_text)? {
                    ids.push(JobId(tx.last_insert_rowid()));
                }
            }
        }
        tx.commit()?;
        Ok(ids)
    }
}

/// The stored `next_tick` of a due row and the plan for it; `None` (with
/// a warning) for a row whose expression or zone does not parse (written
/// by plain SQL): it is left alone.
pub(crate) fn plan_row(
    row: &ScheduleRow,
    now: DateTime<Utc>,
) -> Option<(String, crate::schedule::Plan)> {
    let old = row.next_tick.clone()?;
    let next = parse_stored(&old)?;
    match row.schedule() {
        Ok(s) => Some((old, s.plan(next, now, row.catch_up))),
        Err(e) => {
            tracing::warn!(schedule = %row.name, "schedule skipped: {e}");
            None
        }
    }
}
