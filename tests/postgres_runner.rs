//! The real `cojobs` binary against the real PostgreSQL server (issue 11):
//! the commands' round trip, several runner processes sharing one queue, a
//! crash loop, and the server restarted under a running runner.
//!
//! Each test makes its own database and drops it ([`pg::PgDb`]). The
//! restart test takes the server from every other test of this file, so it
//! holds [`SERVER`] for writing while the others hold it for reading.

#[path = "util/pg.rs"]
mod pg;
#[path = "util/procs.rs"]
mod procs;
mod util;

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use pg::PgDb;
use procs::{DEADLINE, Daemon, Setup, wait_until};

/// The server, shared by this file's tests; the restart test takes it alone.
static SERVER: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    SERVER
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Our plugins, `--db` pointing at `pg`'s database.
fn setup(pg: &PgDb, plugins: &[&str]) -> Setup {
    let mut s = Setup::new(plugins);
    s.env.db = PathBuf::from(&pg.url);
    s
}

/// Insert `n` due rows by plain SQL, as COmanage would (one statement).
fn insert(pg: &PgDb, job_type: &str, n: usize, extra: &str) {
    pg.exec(&format!(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time{}) \
         SELECT 1, '{job_type}', 'Q', now() AT TIME ZONE 'UTC'{} FROM generate_series(1, {n})",
        if extra.is_empty() {
            ""
        } else {
            ", retry_interval, max_retry"
        },
        if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        },
    ));
}

/// The number in a runner's closing line: "<n> <what>," of its stats.
fn stat(log: &str, what: &str) -> u64 {
    let Some(line) = log.lines().rev().find(|l| l.contains(" stopped: ")) else {
        panic!("no closing line in the runner's log:\n{log}");
    };
    line.split(", ")
        .find_map(|part| {
            let part = part.rsplit(": ").next().unwrap_or(part);
            part.strip_suffix(&format!(" {what}"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no '{what}' in: {line}"))
}

/// `cojobs migrate`, `queue`, `list`, `show`, `history`, `cancel`,
/// `run --once`, `watch --once`, `prune` and `co` on PostgreSQL, the
/// database named by `--db` or by `COJOBS_DB`.
#[test]
fn commands_round_trip_on_postgres() {
    let _server = shared();
    let pg = PgDb::new();
    let s = setup(&pg, &["hello", "counter"]);
    // A fresh database: nothing applied; `--status` changes nothing.
    let before = s.cojobs(&["migrate", "--status"]);
    assert!(
        before.ok().starts_with("postgres: schema version 0 of"),
        "{before:?}"
    );
    assert!(before.stdout.contains("pending"), "{before:?}");
    assert_eq!(
        pg.int("SELECT (to_regclass('cm_co_jobs') IS NULL)::int::int8"),
        1,
        "--status created nothing"
    );
    let migrated = s.cojobs(&["migrate"]);
    assert!(migrated.ok().contains("up to date"), "{migrated:?}");
    let status = s.cojobs(&["migrate", "--status"]);
    assert!(status.ok().contains("up to date"), "{status:?}");

    let co = s.cojobs(&["co", "add", "research"]).ok().trim().to_string();
    assert!(s.cojobs(&["co", "list"]).ok().contains("research"));
    let hello = s.queue(&["hello", "--params", r#"{"name":"Ada"}"#]);
    let counter = s.queue(&["counter", "--co", &co]);
    let later = s.queue(&["hello", "--delay", "1h"]);
    let listed = s.cojobs(&["list", "--status", "Q"]);
    for id in [hello, counter, later] {
        assert!(listed.ok().contains(&format!("\n{id} ")), "{listed:?}");
    }
    // Cancel of a queued job: CX at once.
    assert!(
        s.cojobs(&["cancel", &later.to_string()])
            .ok()
            .contains("canceled")
    );

    s.run_ok(&["--once", "--workers", "2"]);
    let shown = s.cojobs(&["show", &hello.to_string()]);
    assert!(shown.ok().contains("status"), "{shown:?}");
    assert!(shown.stdout.contains("OK"), "{shown:?}");
    let json = s.cojobs(&["show", &counter.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.ok()).expect("show --json");
    assert_eq!(v["job"]["status"], "OK");
    assert_eq!(v["chain_total"], 1);
    let history = s.cojobs(&["history", &counter.to_string()]);
    assert_eq!(history.ok().lines().count(), 2, "one record: {history:?}");
    assert_eq!(
        pg.int(&format!(
            "SELECT count(*) FROM cm_co_jobs WHERE id = {later} AND status = 'CX'"
        )),
        1
    );
    // Cancel of an ended job: refused (exit 2), nothing changed.
    s.cojobs(&["cancel", &hello.to_string()])
        .fails(2, "already ended");
    s.cojobs(&["show", "999999"]).fails(2, "999999");
    let watch = s.cojobs(&["watch", "--once"]);
    assert!(watch.ok().contains("OK=2"), "{watch:?}");

    // COJOBS_DB selects the driver as --db does.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cojobs"))
        .args(["list", "--status", "OK", "--json"])
        .env("COJOBS_DB", &pg.url)
        .current_dir(s.env.dir.path())
        .output()
        .expect("run cojobs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    assert_eq!(s.cojobs(&["prune", "--older-than", "0s"]).ok().trim(), "3");
    assert_eq!(pg.int("SELECT count(*) FROM cm_co_jobs"), 0);
    assert_eq!(pg.int("SELECT count(*) FROM cm_co_job_history_records"), 0);
}

/// A server that refuses the login (no such database): exit 1, a clear
/// message naming the server, no password repeated, nothing written.
#[test]
fn a_missing_database_is_a_clear_error() {
    let _server = shared();
    let base = pg::base_url();
    let url = pg::url_for(&base, "cojobs_no_such_database");
    let url = url
        .replacen("://", "://postgres:s3cret@", 1)
        .replacen("postgres@", "", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cojobs"))
        .args(["--db", &url, "queue", "hello", "--no-check"])
        .current_dir(dir.path())
        .env_remove("COJOBS_DB")
        .output()
        .expect("run cojobs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(stderr.contains("cojobs_no_such_database"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// `n` runner processes with `--once` on 2,000 plain-SQL jobs (half
/// `counter`, which records one history row per run): every row run
/// exactly once, and the runners' own counts add up to 2,000 starts.
fn many_runners(n: usize) {
    let _server = shared();
    let pg = PgDb::new();
    let s = setup(&pg, &["noop", "counter"]);
    s.cojobs(&["migrate"]).ok();
    insert(&pg, "counter", 1000, "");
    insert(&pg, "noop", 1000, "");
    let mut runners: Vec<Daemon> = (0..n)
        .map(|_| s.daemon(&["--once", "--workers", "2"]))
        .collect();
    for r in &mut runners {
        r.wait_ok();
    }
    let started: u64 = runners.iter().map(|r| stat(&r.log(), "started")).sum();
    let lost: u64 = runners.iter().map(|r| stat(&r.log(), "lost")).sum();
    assert_eq!(started, 2000, "each row started once, by one runner");
    assert_eq!(lost, 0);
    assert_eq!(pg.int("SELECT count(*) FROM cm_co_jobs"), 2000);
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        2000,
        "{}",
        pg.dump()
    );
    assert_eq!(
        pg.int(
            "SELECT count(*) FROM (SELECT co_job_id FROM cm_co_job_history_records \
             GROUP BY co_job_id HAVING count(*) = 1) one"
        ),
        1000,
        "one history record per counter job"
    );
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_job_history_records"),
        1000
    );
    let used = pg.int("SELECT count(DISTINCT runner_id) FROM cm_co_jobs");
    eprintln!("{n} runners on PostgreSQL: 2000 jobs run once each by {used} runner(s)");
    assert!(used > 1, "the runners shared the queue");
}

#[test]
fn two_runners_on_postgres_run_each_of_2000_jobs_once() {
    many_runners(2);
}

#[test]
fn four_runners_on_postgres_run_each_of_2000_jobs_once() {
    many_runners(4);
}

#[test]
fn eight_runners_on_postgres_run_each_of_2000_jobs_once() {
    many_runners(8);
}

/// 300 jobs (quick ones, `counter`s, and 1-second waits), retried on
/// failure; a runner SIGKILLed 20 times while they run; then one runs until
/// every chain ended. Nothing stranded `GO`, every rescued row ended `X`
/// once with its retry queued, and no `counter` row ran to `OK` twice.
#[test]
fn crash_loop_on_postgres_ends_every_job_once() {
    let _server = shared();
    let pg = PgDb::new();
    let s = setup(&pg, &["noop", "counter", "cancellable"]);
    s.cojobs(&["migrate"]).ok();
    insert(&pg, "noop", 100, "1, 5");
    insert(&pg, "counter", 100, "1, 5");
    pg.exec(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time, \
         retry_interval, max_retry) \
         SELECT 1, 'cancellable', '{\"seconds\":1}', 'Q', now() AT TIME ZONE 'UTC', 1, 5 \
         FROM generate_series(1, 100)",
    );
    let args = ["--lease", "1", "--workers", "4", "--poll-interval", "0.2"];
    for i in 0..20u64 {
        let mut d = s.daemon(&args);
        std::thread::sleep(Duration::from_millis(300 + (i * 7919) % 900));
        d.kill9();
    }
    let mut last = s.daemon(&args);
    assert!(
        wait_until(DEADLINE * 3, || pg
            .int("SELECT count(*) FROM cm_co_jobs WHERE status IN ('Q', 'GO')")
            == 0),
        "chains did not end\n{}\nlog:\n{}",
        pg.dump(),
        last.log()
    );
    assert!(wait_until(DEADLINE, || last
        .log()
        .contains("runner started")));
    last.terminate();
    last.wait_ok();
    // Every row ended, with a time and (unless OK) a reason.
    assert_eq!(
        pg.int(
            "SELECT count(*) FROM cm_co_jobs WHERE complete_time IS NULL \
             OR (status <> 'OK' AND coalesce(finish_summary, '') = '')"
        ),
        0,
        "{}",
        pg.dump()
    );
    // Every original's chain ends OK exactly once (5 retries are plenty
    // for 20 kills spread over 300 jobs), and nothing else ended OK.
    let chains_ok = pg.int(
        "WITH RECURSIVE chain(root, id) AS ( \
           SELECT id, id FROM cm_co_jobs WHERE requeued_from_co_job_id IS NULL \
           UNION ALL SELECT c.root, j.id FROM cm_co_jobs j \
           JOIN chain c ON j.requeued_from_co_job_id = c.id) \
         SELECT count(*) FROM (SELECT c.root FROM chain c JOIN cm_co_jobs j ON j.id = c.id \
           WHERE j.status = 'OK' GROUP BY c.root HAVING count(*) = 1) once",
    );
    assert_eq!(chains_ok, 300, "{}", pg.dump());
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        300
    );
    // Every failure is a rescue, retried once.
    assert_eq!(
        pg.int(
            "SELECT count(*) FROM cm_co_jobs f WHERE f.status = 'X' AND \
             (f.finish_summary NOT LIKE '%stopped responding%' OR \
              (SELECT count(*) FROM cm_co_jobs r WHERE r.requeued_from_co_job_id = f.id) <> 1)"
        ),
        0,
        "{}",
        pg.dump()
    );
    // No counter row ran to OK twice: one history record per OK counter.
    assert_eq!(
        pg.int(
            "SELECT count(*) FROM cm_co_jobs j WHERE j.job_type = 'counter' AND j.status = 'OK' \
             AND (SELECT count(*) FROM cm_co_job_history_records h WHERE h.co_job_id = j.id) <> 1"
        ),
        0
    );
    let rescues = pg.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'X'");
    eprintln!("crash loop on PostgreSQL: 20 kills, 300 jobs, {rescues} rescued and retried");
}

/// The server restarted under a running runner: it warns, waits, never
/// exits, and ends every job; nothing is left `GO` or lost.
#[test]
fn server_restart_under_a_running_runner_loses_nothing() {
    let _server = SERVER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pg = PgDb::new();
    let s = setup(&pg, &["cancellable"]);
    s.cojobs(&["migrate"]).ok();
    pg.exec(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
         SELECT 1, 'cancellable', '{\"seconds\":1}', 'Q', now() AT TIME ZONE 'UTC' \
         FROM generate_series(1, 40)",
    );
    let mut runner = s.daemon(&["--workers", "4", "--poll-interval", "0.2"]);
    assert!(
        wait_until(DEADLINE, || pg
            .int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'")
            >= 4),
        "jobs ran before the restart\n{}",
        runner.log()
    );
    let restart = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", "15", "main", "restart"])
        .output()
        .expect("pg_ctlcluster");
    assert!(restart.status.success(), "restart: {restart:?}");
    // Jobs queued while the runner was cut off are run too.
    assert!(
        wait_until(DEADLINE, || pg
            .try_int(
                "WITH n AS (INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, \
                 queue_time) SELECT 1, 'cancellable', '{\"seconds\":1}', 'Q', \
                 now() AT TIME ZONE 'UTC' FROM generate_series(1, 10) RETURNING id) \
                 SELECT count(*) FROM n"
            )
            .is_some()),
        "the server came back"
    );
    assert!(
        wait_until(DEADLINE * 2, || pg
            .try_int("SELECT count(*) FROM cm_co_jobs WHERE status <> 'OK'")
            == Some(0)),
        "every job ended OK\n{}\nlog:\n{}",
        pg.dump(),
        runner.log()
    );
    assert!(
        runner.running(),
        "the runner never exited:\n{}",
        runner.log()
    );
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_jobs"),
        50,
        "no retries needed"
    );
    // Whether the runner's own calls met the outage (and logged "waiting
    // for the database") depends on timing: a restart between two calls is
    // absorbed by the pool reconnecting. So it is not asserted; what must
    // hold is above (never exited, every job OK, none retried) and below.
    runner.terminate();
    runner.wait_ok();
    // A job's end whose commit's answer was lost in the restart is written
    // once and then refused as no longer the runner's ("lost").
    let log = runner.log();
    assert_eq!(stat(&log, "ok") + stat(&log, "lost"), 50, "{log}");
}

/// `bench --bench-db postgres://…` measures every figure on PostgreSQL,
/// never prints the connection string, and refuses a database that holds
/// jobs already (it counts every row of its type).
#[test]
fn bench_runs_on_postgres() {
    let _server = shared();
    let pg = PgDb::new();
    let s = Setup::new(&["noop"]);
    let run = s.cojobs(&[
        "bench",
        "--bench-db",
        &pg.url,
        "--jobs",
        "300",
        "--workers",
        "2",
        "--pickup",
        "2",
        "--delayed",
        "50",
    ]);
    let out = run.ok();
    for want in [
        "db postgres",
        "queued 50 jobs due tomorrow",
        "queue:        300 jobs",
        "end to end:   300 jobs",
        "rows OK:      300 of 300",
        "pickup:       2 jobs",
    ] {
        assert!(out.contains(want), "bench output lacks {want:?}: {run:#?}");
    }
    assert!(!out.contains(&pg.url), "the connection string was printed");
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        302
    );
    s.cojobs(&["bench", "--bench-db", &pg.url, "--jobs", "10"])
        .fails(2, "holds 352 jobs already");
}

/// Issue 13 on PostgreSQL: 30 `contract` parents each queue 3 `hello`
/// children, runners SIGKILLed 10 times. Every parent row that ended `OK`
/// has exactly 3 children and its result; no other row has any; each
/// parent chain has one `OK` row, so its children were queued once.
#[test]
fn children_are_queued_exactly_once_across_a_crash_loop_on_postgres() {
    let _server = shared();
    let pg = PgDb::new();
    let s = setup(&pg, &["contract", "hello"]);
    s.cojobs(&["migrate"]).ok();
    pg.exec(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, status, queue_time, \
         retry_interval, max_retry) \
         SELECT 1, 'contract', 'children', '{\"n\":3}', 'Q', \
           now() AT TIME ZONE 'UTC' + make_interval(secs => i * 0.3), 1, 5 \
         FROM generate_series(1, 30) AS i",
    );
    let args = ["--lease", "1", "--workers", "4", "--poll-interval", "0.2"];
    for i in 0..10u64 {
        let mut d = s.daemon(&args);
        std::thread::sleep(Duration::from_millis(300 + (i * 7919) % 1200));
        d.kill9();
    }
    let mut last = s.daemon(&args);
    assert!(
        wait_until(DEADLINE * 3, || pg
            .int("SELECT count(*) FROM cm_co_jobs WHERE status IN ('Q', 'GO')")
            == 0),
        "jobs did not end\n{}\nlog:\n{}",
        pg.dump(),
        last.log()
    );
    assert!(wait_until(DEADLINE, || last
        .log()
        .contains("runner started")));
    last.terminate();
    last.wait_ok();
    let ok_parents =
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'contract' AND status = 'OK'");
    assert!(ok_parents > 0, "{}", pg.dump());
    // Exactly 3 children per OK parent, none for any other row.
    assert_eq!(
        pg.int(
            "SELECT count(*) FROM cm_co_jobs p WHERE p.job_type = 'contract' AND \
             (SELECT count(*) FROM cm_co_jobs c WHERE c.parent_co_job_id = p.id) \
               <> CASE WHEN p.status = 'OK' THEN 3 ELSE 0 END"
        ),
        0,
        "{}",
        pg.dump()
    );
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE parent_co_job_id IS NOT NULL"),
        3 * ok_parents
    );
    // An OK parent has its result and its component; a failed one no result.
    assert_eq!(
        pg.int(
            "SELECT count(*) FROM cm_co_jobs WHERE job_type = 'contract' AND status = 'OK' \
             AND (result IS NULL OR (result::jsonb ->> 'children') <> '3' \
                  OR length(plugin_sha256) <> 64 OR plugin_contract <> '0.2.0')"
        ),
        0,
        "{}",
        pg.dump()
    );
    assert_eq!(
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE status <> 'OK' AND result IS NOT NULL"),
        0
    );
    // One OK row per parent chain.
    let chains_twice = pg.int(
        "WITH RECURSIVE chain(root, id) AS ( \
           SELECT id, id FROM cm_co_jobs WHERE job_type = 'contract' \
             AND requeued_from_co_job_id IS NULL \
           UNION ALL SELECT c.root, j.id FROM cm_co_jobs j \
           JOIN chain c ON j.requeued_from_co_job_id = c.id) \
         SELECT count(*) FROM (SELECT c.root FROM chain c JOIN cm_co_jobs j ON j.id = c.id \
           WHERE j.status = 'OK' GROUP BY c.root HAVING count(*) > 1) twice",
    );
    assert_eq!(chains_twice, 0, "{}", pg.dump());
    let rescued =
        pg.int("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'contract' AND status = 'X'");
    eprintln!(
        "children crash loop on PostgreSQL: 10 kills, {rescued} parent runs rescued, \
         {ok_parents} parents OK"
    );
}
