//! The PostgreSQL schema: an append-only list of migrations, tracked in a
//! table of their own (`cojobs_migrations`), applied in one transaction
//! under an advisory lock so that many runners starting at once migrate
//! exactly once.
//!
//! Coexistence with a COmanage Registry database: `cm_cos`, `cm_co_jobs`
//! and `cm_co_job_history_records` may already exist with the seed's
//! columns. Migrations therefore only add: `CREATE TABLE IF NOT EXISTS`,
//! `ADD COLUMN IF NOT EXISTS`, indexes (named `cojobs_*`), a trigger and
//! tables of cojobs' own; they never change or drop a seed column. Seed
//! columns are added too when missing, so an older COmanage schema (before
//! `max_retry`, say) gains them.
//!
//! Types: the seed's, in native PostgreSQL types; timestamps are
//! `timestamp without time zone` holding UTC, as COmanage writes them.
//! Integer columns may be `integer` (COmanage) or `bigint` (a fresh
//! cojobs schema): every query casts, so both work.
//!
//! Never edit or remove an entry of [`MIGRATIONS`]; append a new one.

use deadpool_postgres::GenericClient;

use super::{PgError, map_err};
use crate::store::driver::{Result, SchemaStatus};

/// The advisory lock key that serialises migrations ("cojobs" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_6a6f_6273;

/// One migration: its version (1, 2, ...), a name, its SQL.
pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations, oldest first. Append only.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "seed tables, cojobs columns, claim indexes, insert notify trigger",
        sql: r#"
CREATE TABLE IF NOT EXISTS cm_cos (
    id          bigserial PRIMARY KEY,
    name        varchar(128) NOT NULL,
    description varchar(256),
    status      varchar(2) NOT NULL DEFAULT 'A',
    created     timestamp without time zone,
    modified    timestamp without time zone
);
ALTER TABLE cm_cos ADD COLUMN IF NOT EXISTS description varchar(256);
ALTER TABLE cm_cos ADD COLUMN IF NOT EXISTS created timestamp without time zone;
ALTER TABLE cm_cos ADD COLUMN IF NOT EXISTS modified timestamp without time zone;
INSERT INTO cm_cos (name, description, status, created, modified)
    SELECT 'default', 'The default CO', 'A', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
    WHERE NOT EXISTS (SELECT 1 FROM cm_cos);

CREATE TABLE IF NOT EXISTS cm_co_jobs (
    id                      bigserial PRIMARY KEY,
    co_id                   bigint NOT NULL REFERENCES cm_cos (id),
    job_type                varchar(64) NOT NULL,
    job_type_fk             bigint,
    job_mode                varchar(16),
    job_params              text,
    requeue_interval        integer,
    retry_interval          integer,
    max_retry               integer,
    max_retry_count         integer DEFAULT 0,
    requeued_from_co_job_id bigint REFERENCES cm_co_jobs (id) ON DELETE SET NULL,
    status                  varchar(2) NOT NULL DEFAULT 'Q'
                            CHECK (status IN ('Q', 'GO', 'OK', 'X', 'CX')),
    register_summary        varchar(256),
    start_summary           varchar(256),
    finish_summary          varchar(256),
    queue_time              timestamp without time zone,
    start_after_time        timestamp without time zone,
    start_time              timestamp without time zone,
    complete_time           timestamp without time zone,
    percent_complete        integer
);
-- Seed columns a COmanage before 4.3 may lack (never changed if present).
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS job_params text;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS requeue_interval integer;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS retry_interval integer;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS max_retry integer;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS max_retry_count integer DEFAULT 0;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS requeued_from_co_job_id bigint;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS start_after_time timestamp without time zone;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS percent_complete integer;
-- cojobs' own columns (all nullable, so the seed's SQL still works).
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS runner_id text;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS lease_expires_at timestamp without time zone;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS fuel_limit bigint;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS memory_limit_mib bigint;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS timeout_secs bigint;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS fuel_used bigint;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS job_log text;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS cancel_requested_by text;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS cancel_requested_at timestamp without time zone;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS queued_by text;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS status_line varchar(256);

-- Claims: queued rows only, per CO, in due-time order. A row is due at
-- coalesce(start_after_time, queue_time, '-infinity'): a plain-SQL row
-- without times is due at once. Rows not queued, and queued rows due
-- later, cost a claim nothing.
CREATE INDEX IF NOT EXISTS cojobs_jobs_due_by_co ON cm_co_jobs
    (co_id, (coalesce(start_after_time, queue_time, '-infinity'::timestamp)), id)
    WHERE status = 'Q';
-- The next due time over all COs.
CREATE INDEX IF NOT EXISTS cojobs_jobs_due ON cm_co_jobs
    ((coalesce(start_after_time, queue_time, '-infinity'::timestamp)), id)
    WHERE status = 'Q';
-- Running rows by runner (heartbeat, cancel checks, --per-co) and by lease.
CREATE INDEX IF NOT EXISTS cojobs_jobs_running ON cm_co_jobs (runner_id, co_id)
    WHERE status = 'GO';
CREATE INDEX IF NOT EXISTS cojobs_jobs_lease ON cm_co_jobs (lease_expires_at)
    WHERE status = 'GO';
-- --unique: live rows of a type.
CREATE INDEX IF NOT EXISTS cojobs_jobs_live ON cm_co_jobs (co_id, job_type)
    WHERE status IN ('Q', 'GO');
-- Retry chains, and unlinking successors when pruning.
CREATE INDEX IF NOT EXISTS cojobs_jobs_requeued_from ON cm_co_jobs (requeued_from_co_job_id);
-- list --status and prune.
CREATE INDEX IF NOT EXISTS cojobs_jobs_status ON cm_co_jobs (status, id);
CREATE INDEX IF NOT EXISTS cojobs_jobs_complete ON cm_co_jobs (complete_time)
    WHERE status IN ('OK', 'X', 'CX');

CREATE TABLE IF NOT EXISTS cm_co_job_history_records (
    id              bigserial PRIMARY KEY,
    co_job_id       bigint NOT NULL REFERENCES cm_co_jobs (id) ON DELETE CASCADE,
    record_key      varchar(256),
    co_person_id    bigint,
    org_identity_id bigint,
    comment         varchar(256),
    status          varchar(2),
    created         timestamp without time zone,
    modified        timestamp without time zone
);
CREATE INDEX IF NOT EXISTS cojobs_history_job ON cm_co_job_history_records (co_job_id, id);

-- Rows inserted by plain SQL (COmanage) reach idle runners: one NOTIFY
-- per INSERT statement, not per row. cojobs' own connections set
-- cojobs.quiet = on and notify through their rate limiter instead.
CREATE OR REPLACE FUNCTION cojobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF coalesce(current_setting('cojobs.quiet', true), '') <> 'on' THEN
        PERFORM pg_notify('cojobs_jobs', '');
    END IF;
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS cojobs_notify_insert ON cm_co_jobs;
CREATE TRIGGER cojobs_notify_insert AFTER INSERT ON cm_co_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION cojobs_notify_insert();
"#,
    },
    Migration {
        version: 2,
        name: "serve: retried_by, access tokens",
        sql: r#"
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS retried_by text;
CREATE TABLE IF NOT EXISTS cojobs_tokens (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    co_id      bigint,
    created    timestamp without time zone NOT NULL,
    revoked    timestamp without time zone
);
CREATE UNIQUE INDEX IF NOT EXISTS cojobs_tokens_live_name ON cojobs_tokens (name)
    WHERE revoked IS NULL;
"#,
    },
    Migration {
        version: 3,
        name: "schedules; the schedule and tick of a scheduled row, unique; backoff",
        sql: r#"
CREATE TABLE IF NOT EXISTS cojobs_schedules (
    id               bigserial PRIMARY KEY,
    name             varchar(64) NOT NULL UNIQUE,
    cron             text NOT NULL,
    timezone         text NOT NULL DEFAULT 'UTC',
    catch_up         varchar(8) NOT NULL DEFAULT 'latest'
                     CHECK (catch_up IN ('none', 'latest', 'all')),
    paused           boolean NOT NULL DEFAULT false,
    next_tick        timestamp without time zone,
    co_id            bigint NOT NULL REFERENCES cm_cos (id),
    job_type         varchar(64) NOT NULL,
    job_mode         varchar(16),
    job_params       text,
    requeue_interval bigint,
    retry_interval   bigint,
    max_retry        bigint,
    register_summary varchar(256),
    fuel_limit       bigint,
    memory_limit_mib bigint,
    timeout_secs     bigint,
    backoff          varchar(16),
    backoff_max      bigint,
    created_by       text,
    created          timestamp without time zone,
    modified         timestamp without time zone
);
CREATE INDEX IF NOT EXISTS cojobs_schedules_due ON cojobs_schedules (next_tick)
    WHERE NOT paused;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS schedule_name varchar(64);
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS schedule_tick timestamp without time zone;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS backoff varchar(16);
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS backoff_max bigint;
CREATE UNIQUE INDEX IF NOT EXISTS cojobs_jobs_schedule_tick ON cm_co_jobs
    (schedule_name, schedule_tick) WHERE schedule_name IS NOT NULL;
"#,
    },
    Migration {
        version: 4,
        name: "contract 0.2: result, parent of a child job, the component that ran",
        sql: r#"
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS result text;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS parent_co_job_id bigint
    REFERENCES cm_co_jobs (id) ON DELETE SET NULL;
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS plugin_sha256 char(64);
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS plugin_contract varchar(16);
CREATE INDEX IF NOT EXISTS cojobs_jobs_parent ON cm_co_jobs (parent_co_job_id, id)
    WHERE parent_co_job_id IS NOT NULL;
"#,
    },
    Migration {
        version: 5,
        name: "priorities, per-type and per-CO limits, pause",
        sql: r#"
ALTER TABLE cm_co_jobs ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 5
    CONSTRAINT cojobs_jobs_priority_range CHECK (priority BETWEEN 1 AND 9);
ALTER TABLE cojobs_schedules ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 5
    CONSTRAINT cojobs_schedules_priority_range CHECK (priority BETWEEN 1 AND 9);
-- Claims seek each (CO, type, priority) in due order
-- (docs/design.md#limits-and-pause); this replaces the index by CO.
DROP INDEX IF EXISTS cojobs_jobs_due_by_co;
CREATE INDEX IF NOT EXISTS cojobs_jobs_claim ON cm_co_jobs
    (co_id, job_type, priority, (coalesce(start_after_time, queue_time, '-infinity'::timestamp)), id)
    WHERE status = 'Q';
-- Running rows per type and per CO, and recent starts per type: what the
-- limits count.
CREATE INDEX IF NOT EXISTS cojobs_jobs_running_type ON cm_co_jobs (job_type) WHERE status = 'GO';
CREATE INDEX IF NOT EXISTS cojobs_jobs_running_co ON cm_co_jobs (co_id) WHERE status = 'GO';
CREATE INDEX IF NOT EXISTS cojobs_jobs_started ON cm_co_jobs (job_type, start_time)
    WHERE start_time IS NOT NULL;
CREATE TABLE IF NOT EXISTS cojobs_type_limits (
    job_type         varchar(64) PRIMARY KEY,
    concurrency      bigint CHECK (concurrency >= 1),
    rate_max         bigint CHECK (rate_max >= 1),
    rate_window_secs bigint CHECK (rate_window_secs >= 1),
    paused_by        text,
    paused_at        timestamp without time zone,
    modified         timestamp without time zone
);
CREATE TABLE IF NOT EXISTS cojobs_co_limits (
    co_id       bigint PRIMARY KEY REFERENCES cm_cos (id) ON DELETE CASCADE,
    max_running bigint CHECK (max_running >= 1),
    paused_by   text,
    paused_at   timestamp without time zone,
    modified    timestamp without time zone
);
"#,
    },
    Migration {
        version: 6,
        name: "serve: live runners",
        sql: r#"
CREATE TABLE IF NOT EXISTS cojobs_runners (
    id         text PRIMARY KEY,
    host       text NOT NULL,
    pid        bigint NOT NULL,
    workers    bigint NOT NULL,
    running    bigint NOT NULL,
    lease_secs bigint NOT NULL,
    started    timestamp without time zone NOT NULL,
    heartbeat  timestamp without time zone NOT NULL
);
"#,
    },
    Migration {
        version: 7,
        name: "claims: one index",
        sql: r#"
-- The claim's per-priority seeks must use cojobs_jobs_claim. With this
-- index beside it the planner sometimes preferred it plus a filter on CO,
-- type and priority, which walks every queued row for a priority level
-- that has none (O(queued rows) per claim). The next due time is now a
-- seek per (CO, type, priority) through cojobs_jobs_claim
-- (docs/design.md#limits-and-pause).
DROP INDEX IF EXISTS cojobs_jobs_due;
"#,
    },
];

/// The newest version this cojobs knows.
pub(super) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS cojobs_migrations (
    version    bigint PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))";

/// Bring the database up to the newest schema, in one transaction, under
/// an advisory lock (a second migrator waits, then finds nothing to do).
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<SchemaStatus> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(map_err)?;
    tx.batch_execute(CREATE_TABLE).await.map_err(map_err)?;
    let version = current_version(&tx).await?;
    if version > latest() {
        return Err(too_new(version));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > version) {
        tx.batch_execute(m.sql).await.map_err(|e| {
            crate::store::driver::Error::Other(format!(
                "migration {} ({}) failed: {}",
                m.version,
                m.name,
                PgError(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO cojobs_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(map_err)?;
    }
    let status = read_status(&tx).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(status)
}

/// The schema's state, changing nothing (version 0 on a database cojobs
/// never migrated).
pub(super) async fn status(client: &impl GenericClient) -> Result<SchemaStatus> {
    let exists: bool = client
        .query_one("SELECT to_regclass('cojobs_migrations') IS NOT NULL", &[])
        .await
        .map_err(map_err)?
        .get(0);
    if !exists {
        return Ok(SchemaStatus {
            version: 0,
            latest: latest(),
            applied: Vec::new(),
        });
    }
    read_status(client).await
}

async fn current_version(client: &impl GenericClient) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM cojobs_migrations",
            &[],
        )
        .await
        .map_err(map_err)?;
    Ok(row.get(0))
}

async fn read_status(client: &impl GenericClient) -> Result<SchemaStatus> {
    let rows = client
        .query(
            "SELECT version, name, applied_at FROM cojobs_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(map_err)?;
    let applied: Vec<(i64, String, Option<chrono::DateTime<chrono::Utc>>)> = rows
        .iter()
        .map(|r| {
            let at: chrono::NaiveDateTime = r.get(2);
            (r.get(0), r.get(1), Some(at.and_utc()))
        })
        .collect();
    Ok(SchemaStatus {
        version: applied.last().map_or(0, |a| a.0),
        latest: latest(),
        applied,
    })
}

fn too_new(found: i64) -> crate::store::driver::Error {
    crate::store::driver::Error::Other(
        crate::store::StoreError::SchemaTooNew {
            found,
            known: latest(),
        }
        .to_string(),
    )
}
