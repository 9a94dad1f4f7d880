//! The PostgreSQL driver against the real server on this machine.
//!
//! Base URL from `COJOBS_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Every test makes its own
//! database `cojobs_t_<pid>_<n>` and drops it afterwards, on panic too. No
//! test skips: without a server each fails, saying how to start one.
//!
//! The conformance bodies (`conformance/`) run here through [`PgHarness`];
//! the PostgreSQL-only ones follow: coexistence with a COmanage schema,
//! the claim plan at 1,000,000 rows, the listener's reconnect, TLS.

mod conformance;
#[path = "util/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cojobs::job::JobStatus;
use cojobs::store::driver::{Claim, JobStore, Wake};
use cojobs::store::postgres::PgStore;
use cojobs::store::{Finish, NewJob};
use cojobs::throttle::{PauseTarget, TypeLimits};
use conformance::Harness;
use pg::{base_url, url_for};
use tokio_postgres::NoTls;

async fn admin() -> tokio_postgres::Client {
    let base = base_url();
    let (client, conn) = tokio_postgres::connect(&base, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {base} ({e}); start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
             or point COJOBS_TEST_PG at a server"
            )
        });
    tokio::spawn(conn);
    client
}

/// A database of one test; dropped (connections and all) when this is.
struct TestDb {
    name: String,
    url: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    async fn new() -> TestDb {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("cojobs_t_{}_{n}", std::process::id());
        let client = admin().await;
        // Two calls: one string of two statements is one transaction
        // block, where neither may run.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop a leftover test database");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        TestDb {
            url: url_for(&base_url(), &name),
            name,
        }
    }

    /// A plain connection to this database.
    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread of our own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                admin()
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

struct PgHarness {
    store: Arc<PgStore>,
    sql: tokio_postgres::Client,
    // Last: dropped after the store's connections.
    db: TestDb,
}

impl PgHarness {
    async fn new() -> PgHarness {
        let db = TestDb::new().await;
        let store = Arc::new(
            PgStore::connect(&db.url)
                .await
                .expect("connect and migrate"),
        );
        let sql = db.client().await;
        PgHarness { store, sql, db }
    }
}

#[async_trait]
impl Harness for PgHarness {
    fn store(&self) -> Arc<dyn JobStore> {
        self.store.clone()
    }

    async fn another(&self) -> Arc<dyn JobStore> {
        Arc::new(
            PgStore::connect_with(&self.db.url, 2)
                .await
                .expect("connect"),
        )
    }

    async fn sql(&self, sql: &str) {
        self.sql.batch_execute(sql).await.expect("plain SQL");
    }
}

conformance_tests!(PgHarness::new);

// ---- PostgreSQL only ----

/// The seed's columns as COmanage Registry creates them on PostgreSQL
/// (integer ids, varchar(32) job_type, timestamp without time zone),
/// before cojobs ever ran.
const COMANAGE_SCHEMA: &str = "
CREATE TABLE cm_cos (id serial PRIMARY KEY, name varchar(128) NOT NULL,
    description varchar(256), status varchar(2), created timestamp, modified timestamp);
CREATE TABLE cm_co_jobs (
    id serial PRIMARY KEY, co_id integer NOT NULL REFERENCES cm_cos (id),
    job_type varchar(32), job_type_fk integer, job_mode varchar(16), job_params text,
    requeue_interval integer, retry_interval integer, max_retry integer, max_retry_count integer,
    requeued_from_co_job_id integer REFERENCES cm_co_jobs (id), status varchar(2),
    register_summary varchar(256), start_summary varchar(256), finish_summary varchar(256),
    queue_time timestamp, start_after_time timestamp, start_time timestamp,
    complete_time timestamp, percent_complete integer);
CREATE TABLE cm_co_job_history_records (id serial PRIMARY KEY,
    co_job_id integer REFERENCES cm_co_jobs (id), record_key varchar(256), co_person_id integer,
    org_identity_id integer, comment varchar(256), status varchar(2),
    created timestamp, modified timestamp);
INSERT INTO cm_cos (name, status, created) VALUES ('COmanage CO', 'A', '2024-01-01 00:00:00');
INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time, register_summary)
    VALUES (1, 'hello', NULL, 'Q', '2024-03-01 10:00:00', 'queued by COmanage');
";

async fn seed_columns(client: &tokio_postgres::Client) -> Vec<(String, String, String)> {
    client
        .query(
            "SELECT table_name::text, column_name::text, \
                    data_type || coalesce('(' || character_maximum_length || ')', '') \
             FROM information_schema.columns \
             WHERE table_name IN ('cm_cos', 'cm_co_jobs', 'cm_co_job_history_records') \
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coexists_with_a_comanage_schema() {
    let db = TestDb::new().await;
    let sql = db.client().await;
    sql.batch_execute(COMANAGE_SCHEMA)
        .await
        .expect("COmanage schema");
    let before = seed_columns(&sql).await;
    let store = PgStore::connect(&db.url)
        .await
        .expect("migrate over COmanage's tables");
    let after = seed_columns(&sql).await;
    // Every seed column is still there with the same type; cojobs' own
    // columns are only added.
    for col in &before {
        assert!(
            after.contains(col),
            "seed column changed or dropped: {col:?}"
        );
    }
    let added: Vec<&str> = after
        .iter()
        .filter(|c| !before.contains(c))
        .map(|(_, c, _)| c.as_str())
        .collect();
    assert!(
        added.contains(&"runner_id") && added.contains(&"lease_expires_at"),
        "{added:?}"
    );
    let cos = store.list_cos().await.expect("cos");
    assert_eq!(cos.len(), 1, "no default CO added beside COmanage's");
    // COmanage's own row is claimed and run; ours live beside it.
    let got = store
        .claim(&Claim::new("r", 5, Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].register_summary.as_deref(),
        Some("queued by COmanage")
    );
    let item = Finish::new(
        got[0].id,
        cojobs::job::Outcome::Complete {
            summary: "done".into(),
        },
    );
    store.finish("r", &[item]).await.expect("finish")[0]
        .as_ref()
        .expect("ours");
    assert_eq!(
        store
            .get(got[0].id)
            .await
            .expect("get")
            .expect("row")
            .status,
        JobStatus::Complete
    );
    store
        .queue(&NewJob::new(1, "hello"))
        .await
        .expect("queue on COmanage's table");
    // Migrating again changes nothing.
    let status = store.migrate().await.expect("migrate");
    assert!(status.is_current());
    assert_eq!(
        status.applied.len(),
        usize::try_from(status.latest).expect("a few migrations")
    );
    assert_eq!(seed_columns(&sql).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_plan_stays_flat_at_a_million_delayed_rows() {
    let h = PgHarness::new().await;
    h.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, start_after_time, max_retry_count) \
         SELECT 1, 'later', 'Q', now() AT TIME ZONE 'UTC', \
                (now() AT TIME ZONE 'UTC') + interval '1 day', 0 \
         FROM generate_series(1, 1000000); \
         ANALYZE cm_co_jobs;",
    )
    .await;
    h.store.queue(&NewJob::new(1, "now")).await.expect("queue");
    let plan = h.store.explain_claim(16).await.expect("explain");
    assert_flat(&plan, 200);
    let got = h
        .store
        .claim(&Claim::new("r", 16, Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(got.len(), 1, "only the due row");
}

/// Issue 14: a million due rows of a type held back (paused, or at its
/// concurrency) cost the claim nothing: it skips the type in one seek and
/// claims the other type's row; a priority above theirs changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_plan_stays_flat_past_a_million_held_back_rows() {
    let h = PgHarness::new().await;
    h.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, max_retry_count, priority) \
         SELECT 1, 'held', 'Q', (now() AT TIME ZONE 'UTC') - interval '1 hour', 0, 1 + i % 9 \
         FROM generate_series(1, 1000000) AS i; \
         ANALYZE cm_co_jobs;",
    )
    .await;
    let other = h
        .store
        .queue(&NewJob::new(1, "other"))
        .await
        .expect("queue");
    h.store
        .pause(&PauseTarget::Type("held".into()), "test")
        .await
        .expect("pause");
    let paused = h.store.explain_claim(16).await.expect("explain");
    h.store
        .resume(&PauseTarget::Type("held".into()))
        .await
        .expect("resume");
    // At its limit: one of its rows running, concurrency 1.
    h.sql("UPDATE cm_co_jobs SET status = 'GO', runner_id = 'x' WHERE id = 1")
        .await;
    h.store
        .set_type_limits(
            "held",
            &TypeLimits {
                concurrency: Some(1),
                rate: None,
            },
        )
        .await
        .expect("limits");
    let full = h.store.explain_claim(16).await.expect("explain");
    for plan in [&paused, &full] {
        assert_flat(plan, 300);
    }
    let got = h
        .store
        .claim(&Claim::new("r", 16, Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![other]);
}

/// Issues 11 and 14: 100,000 due rows, all of one CO, type and priority.
/// Each of the eight empty priority levels is one seek; the claim never
/// walks the queued rows (it once did, through an index by due time with
/// a filter: 0.8 s per claim). The next due time is as cheap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_plan_stays_flat_at_100000_queued_rows_of_one_priority() {
    let h = PgHarness::new().await;
    h.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, max_retry_count) \
         SELECT 1, 'noop', 'Q', (now() AT TIME ZONE 'UTC') - interval '1 hour', 0 \
         FROM generate_series(1, 100000); \
         ANALYZE cm_co_jobs;",
    )
    .await;
    // Claiming 16 rows writes each into every index (~1,000 buffers); a
    // walk of the queued rows would touch over 10,000.
    let plan = h.store.explain_claim(16).await.expect("explain");
    assert_flat(&plan, 2_000);
    let got = h
        .store
        .claim(&Claim::new("r", 64, Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(got.len(), 64);
    assert_eq!(
        h.store.next_due().await.expect("next due"),
        Some(Duration::ZERO)
    );
}

/// A queue loaded in bulk before autovacuum analyzed it: the statistics
/// still say the table is empty. The claim still seeks the claim index
/// and writes the claimed rows through the primary key, never scanning
/// every queued row (350 ms per claim at 100,000 rows, before the claim
/// said how).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_writes_by_key_with_statistics_from_an_empty_table() {
    let h = PgHarness::new().await;
    h.sql(
        "ANALYZE cm_co_jobs; \
         INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, max_retry_count) \
         SELECT 1, 'noop', 'Q', (now() AT TIME ZONE 'UTC') - interval '1 hour', 0 \
         FROM generate_series(1, 100000);",
    )
    .await;
    let plan = h.store.explain_claim(16).await.expect("explain");
    assert!(
        plan.contains("Index Scan using cm_co_jobs_pkey on cm_co_jobs j"),
        "the claimed rows are not looked up by key:\n{plan}"
    );
    assert_flat(&plan, 2_000);
}

/// The claim's plan scans no table and touches fewer than `most` buffers.
fn assert_flat(plan: &str, most: u64) {
    assert!(
        !plan.contains("Seq Scan on cm_co_jobs"),
        "a full scan:\n{plan}"
    );
    let buffers = shared_buffers(plan);
    assert!(
        buffers < most,
        "the claim touched {buffers} buffers:\n{plan}"
    );
}

/// The sum of `shared hit=N` and `read=N` of the plan's top node.
fn shared_buffers(plan: &str) -> u64 {
    plan.lines()
        .find(|l| l.trim_start().starts_with("Buffers:"))
        .map(|l| {
            l.split([' ', ','])
                .filter_map(|w| w.split_once('='))
                .filter(|(k, _)| *k == "hit" || *k == "read")
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reconnects_and_polls_meanwhile() {
    let h = PgHarness::new().await;
    // Start listening, then cut the listener's connection.
    while h
        .store
        .wait_for_jobs(Duration::from_millis(300))
        .await
        .expect("wait")
        != Wake::Timeout
    {}
    let killed: i64 = h
        .sql
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'cojobs listener' AND datname = current_database()",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1, "one listener connection");
    // Down: waits return for polling, and once it is back it wakes the
    // waiter (notifications were lost meanwhile), then hears new ones.
    let mut saw = Vec::new();
    for _ in 0..100 {
        let w = h
            .store
            .wait_for_jobs(Duration::from_secs(1))
            .await
            .expect("wait");
        saw.push(w);
        if w == Wake::NewJobs {
            break;
        }
    }
    assert_eq!(saw.last(), Some(&Wake::NewJobs), "{saw:?}");
    while h
        .store
        .wait_for_jobs(Duration::from_millis(300))
        .await
        .expect("wait")
        != Wake::Timeout
    {}
    let waiter = {
        let s = Arc::clone(&h.store);
        tokio::spawn(async move { s.wait_for_jobs(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.sql("INSERT INTO cm_co_jobs (co_id, job_type, status) VALUES (1, 'bare', 'Q')")
        .await;
    assert_eq!(waiter.await.expect("task").expect("wait"), Wake::NewJobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_inserts_notify_through_the_limiter_not_the_trigger() {
    let h = PgHarness::new().await;
    // A raw listener counts NOTIFYs while 200 jobs are queued one by one.
    let db = &h.db;
    let (client, mut conn) = tokio_postgres::connect(&db.url, NoTls)
        .await
        .expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(_) = m {
                let _ = tx.send(());
            }
        }
    });
    client
        .batch_execute("LISTEN cojobs_jobs")
        .await
        .expect("listen");
    let started = std::time::Instant::now();
    for _ in 0..200 {
        h.store
            .queue(&NewJob::new(1, "hello"))
            .await
            .expect("queue");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut heard = 0u128;
    while rx.try_recv().is_ok() {
        heard += 1;
    }
    // At most one notify per 100 ms window since the first queue, plus the
    // leading and the trailing one; a per-row trigger would send 200.
    let windows = started.elapsed().as_millis() / 100 + 2;
    assert!(heard >= 1, "the last queue of the burst is heard");
    assert!(
        heard <= windows,
        "{heard} notifies for {windows} windows of 100 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_the_local_server() {
    let db = TestDb::new().await;
    let sql = db.client().await;
    let ssl_on: String = sql.query_one("SHOW ssl", &[]).await.expect("show").get(0);
    assert_eq!(
        ssl_on, "on",
        "this test needs the server's TLS (Debian's default)"
    );
    let tls_url = format!(
        "{}?sslmode=require&application_name=cojobs_tls_test",
        db.url
    );
    let store = PgStore::connect(&tls_url).await.expect("TLS connect");
    store
        .queue(&NewJob::new(1, "hello"))
        .await
        .expect("queue over TLS");
    let encrypted: bool = sql
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'cojobs_tls_test'",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted, "the pool's connections use TLS");
    // verify-full with a root that did not sign the server's certificate
    // (a fresh self-signed one would do; the system's CA bundle is one
    // that certainly did not sign Debian's snakeoil certificate).
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    let e = PgStore::connect(&format!(
        "{}?sslmode=verify-full&sslrootcert={bundle}",
        db.url
    ))
    .await
    .expect_err("untrusted certificate");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot connect to PostgreSQL at 127.0.0.1:5432"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_and_missing_database_say_so() {
    let e = PgStore::connect("postgres://postgres@127.0.0.1:1/test?connect_timeout=5")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(e.kind(), cojobs::store::driver::ErrorKind::Transient, "{e}");
    assert!(
        e.to_string()
            .contains("cannot connect to PostgreSQL at 127.0.0.1:1/test"),
        "{e}"
    );
    let e = PgStore::connect(&url_for(&base_url(), "cojobs_no_such_db"))
        .await
        .expect_err("no such database");
    assert_eq!(e.kind(), cojobs::store::driver::ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("cojobs_no_such_db"), "{e}");
    let e = PgStore::connect("postgres://h/db?sslmode=sometimes")
        .await
        .expect_err("bad sslmode");
    assert!(e.is_input(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_use_migrates_once() {
    let db = TestDb::new().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.spawn(async move { PgStore::connect_with(&url, 1).await.map(drop) });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("connect and migrate");
    }
    let sql = db.client().await;
    let n: i64 = sql
        .query_one("SELECT count(*) FROM cojobs_migrations", &[])
        .await
        .expect("count")
        .get(0);
    let latest = PgStore::connect(&db.url)
        .await
        .expect("connect")
        .schema_status()
        .await
        .expect("status")
        .latest;
    assert_eq!(n, latest, "each migration applied once");
    let cos: i64 = sql
        .query_one("SELECT count(*) FROM cm_cos", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(cos, 1, "one default CO");
}

/// Bulk queue (`queue --from`): 100,000 jobs in one call, all or nothing,
/// ids in input order. Prints the rate (the figure in docs/performance.md
/// comes from a release build: `cargo test --release --test postgres
/// bulk_queue -- --nocapture`); asserts only what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_queue_of_100000_jobs() {
    const JOBS: usize = 100_000;
    let h = PgHarness::new().await;
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| {
            let mut j = NewJob::new(1, "hello");
            j.job_params = Some(format!(r#"{{"n":{i}}}"#));
            j
        })
        .collect();
    let started = std::time::Instant::now();
    let ids = h.store.queue_many(&jobs).await.expect("bulk queue");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "bulk queue: {JOBS} jobs in {secs:.3} s = {:.0} jobs/s",
        JOBS as f64 / secs
    );
    assert_eq!(ids.len(), JOBS);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in input order");
    let last = h.store.get(ids[JOBS - 1]).await.expect("get").expect("row");
    assert_eq!(last.job_params.as_deref(), Some(r#"{"n":99999}"#));
    let counts = h.store.counts_by_status().await.expect("counts");
    assert!(
        counts.contains(&(JobStatus::Queued, JOBS as i64)),
        "{counts:?}"
    );
}
