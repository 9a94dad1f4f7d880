//! What `cojobs serve` needs from the store beyond the commands' operations
//! (issue 12): access tokens, a job search with time ranges and text,
//! counts grouped by CO, type and status, and "retry now". The types are
//! shared by both drivers; this file holds the SQLite statements, and
//! `postgres/serve.rs` the PostgreSQL ones.

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use super::{JOB_COLUMNS, Job, JobId, Result, Store, StoreError, format_time, optional};
use crate::job::JobStatus;

/// What a token may do. Ordered: each role may do everything the ones
/// before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads jobs, plugins, COs, stats.
    Viewer,
    /// Also queues, cancels and retries jobs.
    Operator,
    /// Also manages tokens and COs.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The stored (and command-line) name.
    pub fn code(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Role {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.code() == s)
            .ok_or_else(|| StoreError::BadRole(s.to_string()))
    }
}

/// A token to store: its name, what it may do, and the hash of its secret
/// (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// `Some(n)`: sees and acts on CO n's jobs only.
    pub co_id: Option<i64>,
    /// Hex SHA-256 of the secret.
    pub hash: String,
}

/// A stored token, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub co_id: Option<i64>,
    pub created: Option<String>,
    /// When it was revoked; `None` = live.
    pub revoked: Option<String>,
}

/// Check a token name: `[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}`, so that it
/// reads well as "canceled by NAME" and in a table.
pub fn check_token_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(StoreError::BadTokenName(name.to_string()))
    }
}

/// Which rows [`crate::store::driver::JobStore::search`] returns, newest
/// first; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    pub co_id: Option<i64>,
    /// `queue_time >= queued_after`.
    pub queued_after: Option<DateTime<Utc>>,
    /// `queue_time < queued_before`.
    pub queued_before: Option<DateTime<Utc>>,
    /// `complete_time >= finished_after`.
    pub finished_after: Option<DateTime<Utc>>,
    /// `complete_time < finished_before`.
    pub finished_before: Option<DateTime<Utc>>,
    /// Text in the register, start or finish summary or the status line
    /// (a substring, case-insensitive).
    pub text: Option<String>,
    /// The cursor: only rows with a smaller id.
    pub before: Option<JobId>,
    /// Most rows.
    pub limit: i64,
}

/// How many rows one (CO, type, status) has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupCount {
    pub co_id: i64,
    pub job_type: String,
    #[serde(serialize_with = "super::ser_status")]
    pub status: JobStatus,
    pub count: i64,
}

/// `text` as a `LIKE` pattern that matches it anywhere, `\` escaping.
pub(super) fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The columns of a search: [`JOB_COLUMNS`] without the log and the
/// result (a page of rows must not carry 64 KiB each).
fn search_columns() -> String {
    JOB_COLUMNS
        .replacen("job_log,", "NULL,", 1)
        .replacen(" result,", " NULL,", 1)
}

/// The `SELECT` of a search and its values: only the filters given appear
/// in the `WHERE`, so each can use its index.
fn search_sql(q: &JobQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut push = |cond: &str, v: Value, conds: &mut Vec<String>| {
        values.push(v);
        conds.push(cond.replace('?', &format!("?{}", values.len())));
    };
    let time = |t: &DateTime<Utc>| Value::Text(format_time(*t));
    if let Some(b) = q.before {
        push("id < ?", Value::Integer(b.0), &mut conds);
    }
    if let Some(s) = q.status {
        push("status = ?", Value::Text(s.code().into()), &mut conds);
    }
    if let Some(t) = &q.job_type {
        push("job_type = ?", Value::Text(t.clone()), &mut conds);
    }
    if let Some(co) = q.co_id {
        push("co_id = ?", Value::Integer(co), &mut conds);
    }
    for (cond, t) in [
        ("queue_time >= ?", &q.queued_after),
        ("queue_time < ?", &q.queued_before),
        ("complete_time >= ?", &q.finished_after),
        ("complete_time < ?", &q.finished_before),
    ] {
        if let Some(t) = t {
            push(cond, time(t), &mut conds);
        }
    }
    if let Some(text) = &q.text {
        push(
            "(register_summary LIKE ? ESCAPE '\\' OR start_summary LIKE ? ESCAPE '\\' \
             OR finish_summary LIKE ? ESCAPE '\\' OR status_line LIKE ? ESCAPE '\\')",
            Value::Text(like_pattern(text)),
            &mut conds,
        );
    }
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    values.push(Value::Integer(q.limit.max(0)));
    let sql = format!(
        "SELECT {} FROM cm_co_jobs {where_}ORDER BY id DESC LIMIT ?{}",
        search_columns(),
        values.len()
    );
    (sql, values)
}

impl Store {
    /// Rows matching `q`, newest first, without their logs.
    pub fn search(&self, q: &JobQuery) -> Result<Vec<Job>> {
        let (sql, values) = search_sql(q);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), Job::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Rows per (CO, type, status), of one CO or of all.
    pub fn count_groups(&self, co_id: Option<i64>) -> Result<Vec<GroupCount>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT co_id, job_type, status, count(*) FROM cm_co_jobs \
             WHERE ?1 IS NULL OR co_id = ?1 GROUP BY co_id, job_type, status \
             ORDER BY co_id, job_type, status",
        )?;
        let rows = stmt.query_map([co_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (co_id, job_type, status, count) = row?;
            // The status column admits only the five codes.
            if let Ok(status) = status.parse() {
                out.push(GroupCount {
                    co_id,
                    job_type,
                    status,
                    count,
                });
            }
        }
        Ok(out)
    }

    /// Retry an ended `X` or `CX` row now: a new `Q` row copying it,
    /// linked to it (`requeued_from_co_job_id`), queued by `who`, and
    /// `retried_by` = `who` on the row retried. One transaction.
    pub fn retry_now(&mut self, id: JobId, who: &str) -> Result<JobId> {
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let status: Option<String> = optional(tx.query_row(
            "SELECT status FROM cm_co_jobs WHERE id = ?1",
            [id],
            |r| r.get(0),
        ))?;
        let status = status.ok_or(StoreError::NoJob(id))?;
        let status: JobStatus = status
            .parse()
            .map_err(|_| StoreError::BadStatus { id, status })?;
        if !matches!(status, JobStatus::Failed | JobStatus::Canceled) {
            return Err(StoreError::NotRetryable { id, status });
        }
        tx.execute(RETRY_INSERT_SQL, params![id, now, who])?;
        let new = JobId(tx.last_insert_rowid());
        tx.execute(
            "UPDATE cm_co_jobs SET retried_by = ?2 WHERE id = ?1",
            params![id, who],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// Store a token; its name must be free among live tokens and its CO
    /// must exist.
    pub fn add_token(&mut self, t: &NewToken) -> Result<i64> {
        check_token_name(&t.name)?;
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(co) = t.co_id {
            let found: Option<i64> =
                optional(tx.query_row("SELECT id FROM cm_cos WHERE id = ?1", [co], |r| r.get(0)))?;
            found.ok_or(StoreError::NoCo(co))?;
        }
        let taken: Option<i64> = optional(tx.query_row(
            "SELECT id FROM cojobs_tokens WHERE name = ?1 AND revoked IS NULL",
            [&t.name],
            |r| r.get(0),
        ))?;
        if taken.is_some() {
            return Err(StoreError::TokenExists(t.name.clone()));
        }
        tx.execute(
            "INSERT INTO cojobs_tokens (name, token_hash, role, co_id, created) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![t.name, t.hash, t.role.code(), t.co_id, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Every token, live and revoked, by id.
    pub fn list_tokens(&self) -> Result<Vec<Token>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM cojobs_tokens ORDER BY id"
        ))?;
        let rows = stmt.query_map([], token_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revoke the live token named `name` ([`StoreError::NoToken`] if none).
    pub fn revoke_token(&mut self, name: &str) -> Result<()> {
        let now = self.now_text();
        let n = self.conn.execute(
            "UPDATE cojobs_tokens SET revoked = ?2 WHERE name = ?1 AND revoked IS NULL",
            params![name, now],
        )?;
        if n == 0 {
            return Err(StoreError::NoToken(name.to_string()));
        }
        Ok(())
    }

    /// The live token whose secret hashes to `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM cojobs_tokens WHERE token_hash = ?1 AND revoked IS NULL"
        ))?;
        optional(stmt.query_row([hash], token_from_row))
    }
}

/// The new row of a retry now: `?1` the row retried, `?2` now, `?3` who.
const RETRY_INSERT_SQL: &str = "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, \
        requeue_interval, retry_interval, max_retry, max_retry_count, requeued_from_co_job_id, \
        status, register_summary, queue_time, fuel_limit, memory_limit_mib, timeout_secs, \
        queued_by, backoff, backoff_max, priority) \
     SELECT co_id, job_type, job_mode, job_params, requeue_interval, retry_interval, max_retry, \
        min(coalesce(max_retry_count, 0), 1000000) + 1, id, 'Q', register_summary, ?2, \
        fuel_limit, memory_limit_mib, timeout_secs, ?3, backoff, backoff_max, priority \
     FROM cm_co_jobs WHERE id = ?1";

const TOKEN_COLUMNS: &str = "id, name, role, co_id, created, revoked";

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
    let role: String = r.get(2)?;
    let role = role.parse::<Role>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        role,
        co_id: r.get(3)?,
        created: r.get(4)?,
        revoked: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn token_names() {
        assert!(check_token_name("ci-bot@co2").is_ok());
        for bad in ["", "-x", "a b", "x/y", &"a".repeat(65)] {
            assert!(check_token_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip_and_order() {
        for r in Role::ALL {
            assert_eq!(r.code().parse::<Role>().ok(), Some(r));
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
