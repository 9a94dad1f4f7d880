//! The schema: an append-only list of migrations, tracked by
//! `pragma user_version`.
//!
//! Never edit or remove an entry of [`MIGRATIONS`]; append a new one. Entry
//! `i` moves a database from version `i` to `i + 1`. All pending entries are
//! applied in one immediate transaction, so two processes opening a fresh
//! file at once migrate it exactly once.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// True (as SQL) when `NEW.<col>` holds a time not in one of the two
/// stored forms (`YYYY-MM-DD HH:MM:SS` or with `.fff`), or no time at all.
macro_rules! odd_time {
    ($col:literal) => {
        concat!(
            "(NEW.",
            $col,
            " IS NOT NULL AND NEW.",
            $col,
            " IS NOT strftime('%Y-%m-%d %H:%M:%f', NEW.",
            $col,
            ") AND NEW.",
            $col,
            " IS NOT datetime(NEW.",
            $col,
            "))"
        )
    };
}

/// The body of the triggers that keep a queued row's due time comparable
/// as text (migration 2): a time SQLite can read (ISO 8601 with `T`, `Z`,
/// an offset, a fraction) is rewritten as the instant it means, in the
/// stored form; a row whose time cannot be read ends `X` at once, saying
/// which, so a runner never waits on nor spins over it.
macro_rules! normalize_times {
    () => {
        concat!(
            "WHEN NEW.status = 'Q' AND (", odd_time!("start_after_time"), " OR ",
            odd_time!("queue_time"), ") BEGIN \
            UPDATE cm_co_jobs SET \
                start_after_time = coalesce(strftime('%Y-%m-%d %H:%M:%f', start_after_time), start_after_time), \
                queue_time = coalesce(strftime('%Y-%m-%d %H:%M:%f', queue_time), queue_time) \
            WHERE id = NEW.id; \
            UPDATE cm_co_jobs SET status = 'X', \
                complete_time = strftime('%Y-%m-%d %H:%M:%f', 'now'), \
                finish_summary = substr(CASE \
                    WHEN start_after_time IS NOT NULL AND datetime(start_after_time) IS NULL \
                    THEN 'start_after_time ''' || start_after_time || ''' is not a time' \
                    ELSE 'queue_time ''' || queue_time || ''' is not a time' END, 1, 256) \
            WHERE id = NEW.id AND status = 'Q' \
              AND ((start_after_time IS NOT NULL AND datetime(start_after_time) IS NULL) \
                OR (queue_time IS NOT NULL AND datetime(queue_time) IS NULL)); \
            END;"
        )
    };
}

/// The migrations, oldest first. Append only.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the seed's three tables, the runner's columns, the claim indexes.
    r#"
CREATE TABLE cm_cos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        VARCHAR(128) NOT NULL,
    description VARCHAR(256),
    status      VARCHAR(2) NOT NULL DEFAULT 'A',
    created     TIMESTAMP,
    modified    TIMESTAMP
);
CREATE UNIQUE INDEX cm_cos_i1 ON cm_cos (name);
INSERT INTO cm_cos (id, name, description, status, created, modified)
    VALUES (1, 'default', 'The default CO', 'A', datetime('now'), datetime('now'));

CREATE TABLE cm_co_jobs (
    -- The seed's columns, in the seed's order, with the seed's types.
    -- (job_type is varchar(64), not the seed's 32: docs/design.md#the-schema.)
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    co_id                   INTEGER NOT NULL REFERENCES cm_cos (id),
    job_type                VARCHAR(64) NOT NULL,
    job_type_fk             INTEGER,
    job_mode                VARCHAR(16),
    job_params              TEXT,
    requeue_interval        INTEGER,
    retry_interval          INTEGER,
    max_retry               INTEGER,
    max_retry_count         INTEGER DEFAULT 0,
    requeued_from_co_job_id INTEGER REFERENCES cm_co_jobs (id) ON DELETE SET NULL,
    status                  VARCHAR(2) NOT NULL DEFAULT 'Q'
                            CHECK (status IN ('Q', 'GO', 'OK', 'X', 'CX')),
    register_summary        VARCHAR(256),
    start_summary           VARCHAR(256),
    finish_summary          VARCHAR(256),
    queue_time              TIMESTAMP,
    start_after_time        TIMESTAMP,
    start_time              TIMESTAMP,
    complete_time           TIMESTAMP,
    percent_complete        INTEGER,
    -- cojobs' own columns (all nullable, so the seed's SQL still works).
    runner_id               TEXT,      -- the runner holding a GO row
    lease_expires_at        TIMESTAMP, -- that runner's lease; rescued after
    fuel_limit              INTEGER,   -- per-job limit overrides, NULL = default
    memory_limit_mib        INTEGER,
    timeout_secs            INTEGER,
    fuel_used               INTEGER,   -- fuel the last run consumed
    job_log                 TEXT,      -- captured plugin output, bounded by the runner
    cancel_requested_by     TEXT,      -- a cancel of a GO row, for its runner to act on
    cancel_requested_at     TIMESTAMP,
    queued_by               TEXT,      -- who queued it ($USER, or the parent for successors)
    status_line             VARCHAR(256) -- the plugin's latest progress summary
);

-- Claims: queued rows only, per CO, in due-time order. A row is due when
-- coalesce(start_after_time, queue_time, '') <= now; '' keeps a plain-SQL
-- row without queue_time claimable. Rows that are not queued, and queued
-- rows due later, cost a claim nothing.
CREATE INDEX cm_co_jobs_due_by_co ON cm_co_jobs
    (co_id, coalesce(start_after_time, queue_time, ''), id) WHERE status = 'Q';
-- The next due time over all COs (how long a runner may sleep).
CREATE INDEX cm_co_jobs_due ON cm_co_jobs
    (coalesce(start_after_time, queue_time, ''), id) WHERE status = 'Q';
-- Running rows by runner and by lease (heartbeat, rescue, cancel checks).
CREATE INDEX cm_co_jobs_running ON cm_co_jobs (runner_id) WHERE status = 'GO';
CREATE INDEX cm_co_jobs_lease ON cm_co_jobs (lease_expires_at) WHERE status = 'GO';
-- --unique: live rows of a type.
CREATE INDEX cm_co_jobs_live ON cm_co_jobs (co_id, job_type) WHERE status IN ('Q', 'GO');
-- Retry chains, and ON DELETE SET NULL when pruning.
CREATE INDEX cm_co_jobs_requeued_from ON cm_co_jobs (requeued_from_co_job_id);
-- list --status/--type and prune.
CREATE INDEX cm_co_jobs_status ON cm_co_jobs (status, id);
CREATE INDEX cm_co_jobs_complete ON cm_co_jobs (complete_time) WHERE status IN ('OK', 'X', 'CX');

CREATE TABLE cm_co_job_history_records (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    co_job_id       INTEGER NOT NULL REFERENCES cm_co_jobs (id) ON DELETE CASCADE,
    record_key      VARCHAR(256),
    co_person_id    INTEGER,
    org_identity_id INTEGER,
    comment         VARCHAR(256),
    status          VARCHAR(2) CHECK (status IN ('OK', 'X', 'GO', 'NT', 'Q')),
    created         TIMESTAMP,
    modified        TIMESTAMP
);
CREATE INDEX cm_co_job_history_records_i1 ON cm_co_job_history_records (co_job_id, id);
"#,
    // 2: `list --type` / `--co` by index (issue 10, finding 9); due times
    // written by other programs normalised or refused (finding 7), and the
    // queued rows already there put through the same rule.
    concat!(
        "CREATE INDEX cm_co_jobs_type ON cm_co_jobs (job_type, id); \
         CREATE INDEX cm_co_jobs_co ON cm_co_jobs (co_id, id); \
         CREATE TRIGGER cm_co_jobs_times_on_insert AFTER INSERT ON cm_co_jobs ",
        normalize_times!(),
        " CREATE TRIGGER cm_co_jobs_times_on_update \
           AFTER UPDATE OF start_after_time, queue_time, status ON cm_co_jobs ",
        normalize_times!(),
        " UPDATE cm_co_jobs SET status = status WHERE status = 'Q';"
    ),
    // 3: `cojobs serve` (issue 12): who retried a row by hand, and access
    // tokens (only the hash of a secret; a name is unique among live ones).
    r#"
ALTER TABLE cm_co_jobs ADD COLUMN retried_by TEXT;
CREATE TABLE cojobs_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    co_id      INTEGER REFERENCES cm_cos (id),
    created    TIMESTAMP NOT NULL,
    revoked    TIMESTAMP
);
CREATE UNIQUE INDEX cojobs_tokens_live_name ON cojobs_tokens (name) WHERE revoked IS NULL;
"#,
    // 4: schedules (issue 14): the table, and the schedule and tick each
    // scheduled row records, unique so a tick is queued once
    // (docs/design.md#schedules); exponential backoff's columns.
    r#"
CREATE TABLE cojobs_schedules (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             VARCHAR(64) NOT NULL UNIQUE,
    cron             TEXT NOT NULL,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    catch_up         VARCHAR(8) NOT NULL DEFAULT 'latest'
                     CHECK (catch_up IN ('none', 'latest', 'all')),
    paused           INTEGER NOT NULL DEFAULT 0,
    next_tick        TIMESTAMP, -- the earliest tick not yet queued (UTC)
    -- The job each tick queues: cm_co_jobs' columns.
    co_id            INTEGER NOT NULL REFERENCES cm_cos (id),
    job_type         VARCHAR(64) NOT NULL,
    job_mode         VARCHAR(16),
    job_params       TEXT,
    requeue_interval INTEGER,
    retry_interval   INTEGER,
    max_retry        INTEGER,
    register_summary VARCHAR(256),
    fuel_limit       INTEGER,
    memory_limit_mib INTEGER,
    timeout_secs     INTEGER,
    backoff          VARCHAR(16),
    backoff_max      INTEGER,
    created_by       TEXT,
    created          TIMESTAMP,
    modified         TIMESTAMP
);
-- The pass every runner makes: due, unpaused schedules.
CREATE INDEX cojobs_schedules_due ON cojobs_schedules (next_tick) WHERE paused = 0;
ALTER TABLE cm_co_jobs ADD COLUMN schedule_name VARCHAR(64);
ALTER TABLE cm_co_jobs ADD COLUMN schedule_tick TIMESTAMP;
-- How the retry delay grows (NULL = fixed, the seed's rule) and its cap.
ALTER TABLE cm_co_jobs ADD COLUMN backoff VARCHAR(16);
ALTER TABLE cm_co_jobs ADD COLUMN backoff_max INTEGER;
CREATE UNIQUE INDEX cm_co_jobs_schedule_tick ON cm_co_jobs (schedule_name, schedule_tick)
    WHERE schedule_name IS NOT NULL;
"#,
    // 5: contract 0.2 (issue 13): a plugin's structured result, the job
    // whose run queued a child (children are committed with its `OK` end),
    // and which component ran a row (its SHA-256 and contract version).
    r#"
ALTER TABLE cm_co_jobs ADD COLUMN result TEXT;
ALTER TABLE cm_co_jobs ADD COLUMN parent_co_job_id INTEGER
    REFERENCES cm_co_jobs (id) ON DELETE SET NULL;
ALTER TABLE cm_co_jobs ADD COLUMN plugin_sha256 CHAR(64);
ALTER TABLE cm_co_jobs ADD COLUMN plugin_contract VARCHAR(16);
CREATE INDEX cm_co_jobs_parent ON cm_co_jobs (parent_co_job_id, id)
    WHERE parent_co_job_id IS NOT NULL;
"#,
    // 6: priorities, limits and pause (issue 14,
    // docs/design.md#limits-and-pause). A row's priority (1 runs first;
    // a plain-SQL row gets the middle, 5) and the claim index that seeks
    // each (CO, type, priority) in due order; the limits the claim reads;
    // the indexes that count running rows per type and per CO and recent
    // starts per type.
    r#"
ALTER TABLE cm_co_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5
    CHECK (priority BETWEEN 1 AND 9);
ALTER TABLE cojobs_schedules ADD COLUMN priority INTEGER NOT NULL DEFAULT 5
    CHECK (priority BETWEEN 1 AND 9);
DROP INDEX cm_co_jobs_due_by_co;
CREATE INDEX cm_co_jobs_claim ON cm_co_jobs
    (co_id, job_type, priority, coalesce(start_after_time, queue_time, ''), id)
    WHERE status = 'Q';
CREATE INDEX cm_co_jobs_running_type ON cm_co_jobs (job_type) WHERE status = 'GO';
CREATE INDEX cm_co_jobs_running_co ON cm_co_jobs (co_id) WHERE status = 'GO';
CREATE INDEX cm_co_jobs_started ON cm_co_jobs (job_type, start_time)
    WHERE start_time IS NOT NULL;
-- Per job type: the side file's limits (copied by every runner) and
-- pause (cojobs pause TYPE). NULL = no limit / not paused.
CREATE TABLE cojobs_type_limits (
    job_type         VARCHAR(64) PRIMARY KEY,
    concurrency      INTEGER CHECK (concurrency >= 1),
    rate_max         INTEGER CHECK (rate_max >= 1),
    rate_window_secs INTEGER CHECK (rate_window_secs >= 1),
    paused_by        TEXT,
    paused_at        TIMESTAMP,
    modified         TIMESTAMP
);
-- Per CO: most running jobs (cojobs co set --max-running) and pause.
CREATE TABLE cojobs_co_limits (
    co_id       INTEGER PRIMARY KEY REFERENCES cm_cos (id) ON DELETE CASCADE,
    max_running INTEGER CHECK (max_running >= 1),
    paused_by   TEXT,
    paused_at   TIMESTAMP,
    modified    TIMESTAMP
);
"#,
    // 7: live runners (issue 12): a row each runner writes at start and at
    // every heartbeat, and deletes at a clean exit (`store/activity.rs`).
    r#"
CREATE TABLE cojobs_runners (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    workers    INTEGER NOT NULL,
    running    INTEGER NOT NULL,
    lease_secs INTEGER NOT NULL,
    started    TIMESTAMP NOT NULL,
    heartbeat  TIMESTAMP NOT NULL
);
"#,
];

/// The schema version of the open database (`user_version`), read
/// without a transaction: no lock is taken.
pub(super) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// The newest schema version this cojobs knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.len() as i64
}

/// True when `conn`'s schema is older than [`known`]; an error when it is
/// newer ([`StoreError::SchemaTooNew`]). Takes no lock.
pub(super) fn is_behind(conn: &Connection) -> Result<bool, StoreError> {
    let found = version(conn)?;
    if found > known() {
        return Err(StoreError::SchemaTooNew {
            found,
            known: known(),
        });
    }
    Ok(found < known())
}

/// Bring `conn` up to the newest schema, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = known();
    if version > known {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known,
        });
    }
    for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
    }
    if version != known {
        tx.pragma_update(None, "user_version", known)?;
    }
    tx.commit()?;
    Ok(())
}
