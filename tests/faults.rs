//! Fault injection against the real `cojobs run` binary and a real SQLite
//! file: runners SIGKILLed at random moments, several runners on one
//! database, plugin files swapped under a runner, the database removed
//! under a runner. Nothing here depends on timing to pass: waits poll
//! with generous deadlines; random moments only vary where the faults land.

#[path = "util/procs.rs"]
mod procs;
mod util;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use procs::{DEADLINE, Daemon, Setup, insert_jobs, wait_until};
use rusqlite::params;

/// A small seeded PRNG (xorshift64*): the faults are random but repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One row of `cm_co_jobs`, the columns the checks need.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    job_type: String,
    status: String,
    count: i64,
    parent: Option<i64>,
    max_retry: Option<i64>,
    retry_interval: Option<i64>,
    summary: Option<String>,
    complete_time: Option<String>,
}

fn rows(s: &Setup) -> Vec<Row> {
    let conn = s.conn();
    let mut stmt = conn
        .prepare(
            "SELECT id, job_type, status, coalesce(max_retry_count, 0), requeued_from_co_job_id, \
             max_retry, retry_interval, finish_summary, complete_time FROM cm_co_jobs ORDER BY id",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok(Row {
            id: r.get(0)?,
            job_type: r.get(1)?,
            status: r.get(2)?,
            count: r.get(3)?,
            parent: r.get(4)?,
            max_retry: r.get(5)?,
            retry_interval: r.get(6)?,
            summary: r.get(7)?,
            complete_time: r.get(8)?,
        })
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// Insert one due job by plain SQL; its id.
fn insert(s: &Setup, job_type: &str, params_json: Option<&str>, fuel: Option<i64>) -> i64 {
    let conn = s.conn();
    conn.execute(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time, \
         retry_interval, max_retry, max_retry_count, fuel_limit) \
         VALUES (1, ?1, ?2, 'Q', '2000-01-01 00:00:00', 1, 2, 0, ?3)",
        params![job_type, params_json, fuel],
    )
    .expect("insert");
    conn.last_insert_rowid()
}

/// Every history record's job id, with how many records it has.
fn history_per_job(s: &Setup) -> HashMap<i64, i64> {
    let conn = s.conn();
    let mut stmt = conn
        .prepare("SELECT co_job_id, count(*) FROM cm_co_job_history_records GROUP BY co_job_id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// The invariants of `docs/design.md#the-state-machine` over a finished
/// table: nothing live, every chain ends terminal, every successor is a
/// correct retry of an `X` parent whose policy allowed one, and no row ran
/// to `OK` twice.
fn check_chains(s: &Setup, originals: &[i64]) -> (usize, usize) {
    let all = rows(s);
    let by_id: HashMap<i64, &Row> = all.iter().map(|r| (r.id, r)).collect();
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in &all {
        assert!(
            ["OK", "X", "CX"].contains(&r.status.as_str()),
            "row {} is {} at the end: {r:?}",
            r.id,
            r.status
        );
        assert!(
            r.complete_time.is_some(),
            "terminal row without complete_time: {r:?}"
        );
        // A failure or cancel says why (an OK summary is the plugin's, maybe empty).
        assert!(
            r.status == "OK" || r.summary.as_deref().is_some_and(|t| !t.is_empty()),
            "failed row without finish_summary: {r:?}"
        );
        if let Some(p) = r.parent {
            children.entry(p).or_default().push(r.id);
        }
    }
    let mut retries = 0;
    for r in &all {
        let kids = children.get(&r.id).map_or(&[][..], Vec::as_slice);
        let allowed = r.status == "X"
            && r.retry_interval.unwrap_or(0) > 0
            && r.max_retry.is_none_or(|m| r.count < m);
        // Every failure here is retryable (a Retry failure, fuel, a rescue).
        assert_eq!(
            kids.len(),
            usize::from(allowed),
            "row {r:?} has successors {kids:?}"
        );
        if let Some(p) = r.parent {
            retries += 1;
            let parent = by_id[&p];
            assert_eq!(parent.status, "X", "retry {} of a non-failed row", r.id);
            assert_eq!(r.count, parent.count + 1, "retry count of {}", r.id);
            assert_eq!(r.job_type, parent.job_type);
        }
    }
    // Every original's chain is finite and ends terminal (checked above).
    let mut ends = 0;
    for &o in originals {
        assert!(by_id[&o].parent.is_none());
        let mut at = o;
        let mut hops = 0;
        while let Some(kids) = children.get(&at) {
            at = kids[0];
            hops += 1;
            assert!(hops <= 2, "chain of {o} longer than max_retry");
        }
        ends += 1;
    }
    // Counts add up: originals + retries = rows.
    assert_eq!(
        originals.len() + retries,
        all.len(),
        "rows = originals + retries"
    );
    // No row ran to OK twice: a counter row has at most one history record,
    // and exactly one if it ended OK.
    let history = history_per_job(s);
    for r in all.iter().filter(|r| r.job_type == "counter") {
        let n = history.get(&r.id).copied().unwrap_or(0);
        assert!(n <= 1, "counter row {} recorded {n} runs", r.id);
        assert_eq!(n == 1, r.status == "OK", "counter row {r:?}: {n} records");
    }
    (ends, retries)
}

/// 300 mixed jobs; a runner started and SIGKILLed at random moments 20
/// times; then one runs until every chain ended. Nothing lost, nothing
/// stuck `GO`, nothing run to `OK` twice, every retry well linked.
#[test]
fn crash_loop_loses_nothing_and_runs_nothing_twice() {
    let s = Setup::new(&[
        "noop",
        "hello",
        "counter",
        "cancellable",
        "retry",
        "runaway",
    ]);
    s.cojobs(&["list"]).ok(); // create the database
    let mut rng = Rng(0x5EC0_1D5E_ED00_0007);
    let mut originals = Vec::new();
    for _ in 0..300 {
        let id = match rng.below(20) {
            0..=5 => insert(&s, "noop", None, None),
            6..=10 => insert(&s, "counter", None, None),
            11..=12 => insert(&s, "hello", None, None),
            13..=15 => {
                let secs = 1 + rng.below(3);
                insert(
                    &s,
                    "cancellable",
                    Some(&format!("{{\"seconds\":{secs}}}")),
                    None,
                )
            }
            16..=18 => insert(&s, "retry", None, None),
            _ => insert(&s, "runaway", None, Some(20_000_000)),
        };
        originals.push(id);
    }
    let args = ["--lease", "1", "--workers", "4", "--poll-interval", "0.2"];
    let kills = 20;
    for _ in 0..kills {
        let mut d = s.daemon(&args);
        std::thread::sleep(Duration::from_millis(300 + rng.below(2200)));
        d.kill9();
    }
    let mut last = s.daemon(&args);
    assert!(
        wait_until(DEADLINE * 4, || s
            .int("SELECT count(*) FROM cm_co_jobs WHERE status IN ('Q', 'GO')")
            == 0),
        "chains did not end\n{}\nlog:\n{}",
        s.dump(),
        last.log()
    );
    // SIGTERM only once the runner has its signal handlers (it logs
    // "runner started" after installing them).
    last.wait_for(&s, "the last runner started", || {
        last.log().contains("runner started")
    });
    last.terminate();
    last.wait_ok();

    let (chains, retries) = check_chains(&s, &originals);
    let rescues =
        s.int("SELECT count(*) FROM cm_co_jobs WHERE finish_summary LIKE '%stopped responding%'");
    let ok = s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'");
    let failed = s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'X'");
    eprintln!(
        "crash loop: {kills} kills, {} jobs ({chains} chains), {} rows, {rescues} rescues, \
         {retries} retries, {ok} OK, {failed} X",
        originals.len(),
        originals.len() + retries
    );
    // Quick jobs that were never caught mid-run end OK; cancellable ones
    // may have been rescued up to 3 times but mostly end OK too.
    assert!(ok > 0);
}

/// 2,000 jobs and `n` runner processes with `--once`: every row run once.
fn many_runners(n: usize) {
    let s = Setup::new(&["noop", "counter"]);
    s.cojobs(&["list"]).ok();
    let mut ids = insert_jobs(&s, 1, "counter", 1000, "2000-01-01 00:00:00");
    ids.extend(insert_jobs(&s, 1, "noop", 1000, "2000-01-01 00:00:00"));
    let mut runners: Vec<Daemon> = (0..n)
        .map(|_| s.daemon(&["--once", "--workers", "2"]))
        .collect();
    for r in &mut runners {
        r.wait_ok(); // exit 0: no runner crashed on a busy database
    }
    assert_eq!(s.env.job_count(), 2000, "no successor rows, no lost rows");
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        2000,
        "{}",
        s.dump()
    );
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE finish_summary LIKE '%locked%'"),
        0
    );
    let history = history_per_job(&s);
    assert_eq!(history.len(), 1000, "one record per counter job");
    assert!(history.values().all(|&c| c == 1), "a counter job ran twice");
    let locked_warnings: usize = runners
        .iter()
        .map(|r| r.log().matches("locked").count())
        .sum();
    let used = s.int("SELECT count(DISTINCT runner_id) FROM cm_co_jobs");
    eprintln!(
        "{n} runners: 2000 jobs run once each by {used} runner(s); 'locked' in logs: {locked_warnings}"
    );
}

#[test]
fn two_runners_on_one_database_run_each_of_2000_jobs_once() {
    many_runners(2);
}

#[test]
fn four_runners_on_one_database_run_each_of_2000_jobs_once() {
    many_runners(4);
}

/// Plugin files deleted, replaced by garbage, or replaced by another valid
/// plugin while jobs of their type are queued or running: each job ends
/// with a clear outcome and the runner keeps serving.
#[test]
fn plugin_file_deleted_garbled_or_swapped_under_a_runner() {
    let s = Setup::new(&["hello", "noop", "cancellable"]);
    let dir = s.plugins.path();
    let copy = |from: &str, to: &str| {
        std::fs::copy(
            dir.join(format!("{from}.wasm")),
            dir.join(format!("{to}.wasm")),
        )
        .expect("copy");
    };
    copy("hello", "gone");
    copy("hello", "junk");
    copy("hello", "swap");
    copy("cancellable", "slow");
    s.cojobs(&["list"]).ok();
    let mut d = s.daemon(&["--workers", "2", "--poll-interval", "0.2", "--lease", "5"]);

    // Running: two slow jobs; garble the file once the first is running.
    let slow: Vec<i64> = (0..3)
        .map(|_| insert(&s, "slow", Some("{\"seconds\":2}"), None))
        .collect();
    d.wait_for(&s, "a slow job runs", || {
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'GO'") > 0
    });
    std::fs::write(dir.join("slow.wasm"), b"this is not wasm at all").expect("garble");
    // Queued: the file changes before a runner gets to them.
    std::fs::remove_file(dir.join("gone.wasm")).expect("rm");
    std::fs::write(dir.join("junk.wasm"), b"\x7fELF garbage").expect("garble");
    let noop = std::fs::read(dir.join("noop.wasm")).expect("read");
    std::fs::write(dir.join("swap.wasm.tmp"), noop).expect("write");
    std::fs::rename(dir.join("swap.wasm.tmp"), dir.join("swap.wasm")).expect("rename");
    let gone = insert(&s, "gone", None, None);
    let junk = insert(&s, "junk", None, None);
    let swap = insert(&s, "swap", None, None);
    let hello = insert(&s, "hello", None, None);
    d.wait_for(&s, "all end", || {
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status IN ('Q','GO')") == 0
    });
    let summary = |id: i64| {
        s.text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
        ))
        .unwrap_or_default()
    };
    for id in slow {
        let (st, sum) = (s.status(id), summary(id));
        assert!(
            (st == "OK") || (st == "X" && sum.contains("not a WebAssembly file")),
            "slow job {id}: {st} {sum}"
        );
    }
    assert_eq!(s.status(gone), "X");
    assert!(
        summary(gone).contains("no plugin named 'gone'"),
        "{}",
        summary(gone)
    );
    assert_eq!(s.status(junk), "X");
    assert!(
        summary(junk).contains("not a WebAssembly file"),
        "{}",
        summary(junk)
    );
    assert_eq!(s.status(swap), "OK", "{}", s.dump());
    assert!(
        !summary(swap).contains("hello"),
        "the new plugin ran: {}",
        summary(swap)
    );
    assert_eq!(s.status(hello), "OK");
    // The runner is still serving: a plain job queued now runs.
    let later = insert(&s, "noop", None, None);
    d.wait_for(&s, "a later job runs", || s.status(later) == "OK");
    d.terminate();
    d.wait_ok();
}

/// `cojobs run` on `db` in the background, its log in `log`.
fn spawn_runner(s: &Setup, db: &Path, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cojobs"))
        .arg("--plugins")
        .arg(s.plugins.path())
        .arg("--db")
        .arg(db)
        .args([
            "run",
            "--workers",
            "2",
            "--poll-interval",
            "0.2",
            "--lease",
            "2",
        ])
        .env("RUST_LOG", "info")
        .env_remove("COJOBS_DB")
        .env_remove("COJOBS_PLUGINS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("spawn")
}

/// Wait for `child` to exit; its exit code (panics after the deadline).
fn exit_code(child: &mut std::process::Child, log: &Path) -> i32 {
    let mut status = None;
    let exited = wait_until(DEADLINE, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "runner did not exit; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    status.and_then(|s| s.code()).unwrap_or(-1)
}

/// The database's directory renamed away (as good as removed, for the
/// runner: its path no longer leads to the file it has open) and, in a
/// second run, deleted outright, while a job runs: the runner stops with a
/// clear error and a non-zero exit, and the running job is not marked done.
/// Regression test for: a runner kept claiming and finishing jobs into a
/// deleted database file, exit 0, every result lost.
#[test]
fn database_removed_under_a_running_runner_stops_it_with_an_error() {
    let s = Setup::new(&["cancellable", "noop"]);
    for remove in [false, true] {
        let dir = s.env.dir.path().join(format!("dbdir-{remove}"));
        std::fs::create_dir(&dir).expect("mkdir");
        let db = dir.join("jobs.db");
        let log = s.env.dir.path().join(format!("removed-{remove}.log"));
        let conn = || {
            let c = rusqlite::Connection::open(&db).expect("open");
            c.busy_timeout(Duration::from_secs(30)).expect("busy");
            c
        };
        let mut child = spawn_runner(&s, &db, &log);
        assert!(
            wait_until(DEADLINE, || db.exists()
                && conn()
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE name = 'cm_co_jobs'",
                        [],
                        |r| r.get::<_, i64>(0)
                    )
                    .unwrap_or(0)
                    == 1),
            "database created"
        );
        conn()
            .execute(
                "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
                 VALUES (1, 'cancellable', '{\"seconds\":3}', 'Q', '2000-01-01 00:00:00')",
                [],
            )
            .expect("insert");
        let go = || {
            conn()
                .query_row("SELECT status FROM cm_co_jobs WHERE id = 1", [], |r| {
                    r.get::<_, String>(0)
                })
                .expect("status")
                == "GO"
        };
        assert!(wait_until(DEADLINE, go), "the job started");
        let moved = s.env.dir.path().join(format!("moved-{remove}"));
        if remove {
            std::fs::remove_dir_all(&dir).expect("rm -r");
        } else {
            std::fs::rename(&dir, &moved).expect("mv");
        }
        let code = exit_code(&mut child, &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_ne!(
            code, 0,
            "runner exited 0 with its database gone; log:\n{text}"
        );
        assert!(
            text.contains("was removed (or its directory was)"),
            "no clear error; log:\n{text}"
        );
        if !remove {
            let c = rusqlite::Connection::open(moved.join("jobs.db")).expect("open moved");
            let status: String = c
                .query_row("SELECT status FROM cm_co_jobs WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .expect("status");
            assert_eq!(status, "GO", "the running job was not silently ended");
        }
    }
}

/// A runner started on a database it cannot write exits non-zero with a
/// clear message. Permissions are checked when a file is opened, so this
/// is what "made read-only" can mean for a runner (one already running
/// keeps its open descriptor: POSIX). Root ignores file modes, so as root
/// there is nothing to test: the test says so and passes.
#[test]
fn read_only_database_is_refused_with_a_clear_error() {
    let s = Setup::new(&["noop"]);
    s.cojobs(&["list"]).ok();
    let db = &s.env.db;
    let mut perms = std::fs::metadata(db).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
    std::fs::set_permissions(db, perms.clone()).expect("chmod");
    std::fs::set_permissions(s.env.dir.path(), {
        let mut p = perms;
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o555);
        p
    })
    .expect("chmod dir");
    let writable = std::fs::OpenOptions::new().append(true).open(db).is_ok();
    // As root (CI) file modes do not stop us: run the runner as `nobody`
    // instead, where the machine lets it (setpriv present, the binary
    // reachable by that user).
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_cojobs"),
            ])
            .args(args)
            .current_dir(s.env.dir.path())
            .output()
    };
    let run_as_nobody = writable && as_nobody(&["--version"]).is_ok_and(|o| o.status.success());
    if !writable {
        let run = s.cojobs(&["run", "--once"]);
        assert_ne!(run.code, 0, "{run:#?}");
        assert!(
            run.stderr.contains("readonly") || run.stderr.contains("read-only"),
            "{run:#?}"
        );
    } else if run_as_nobody {
        let db_arg = db.to_str().expect("utf-8 path");
        let out = as_nobody(&["--db", db_arg, "--plugins", s.plugins(), "run", "--once"])
            .expect("setpriv runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a read-only database must stop the runner: {stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("cojobs: ")
                && (stderr.contains("readonly") || stderr.contains("unable to open")),
            "{stderr}"
        );
    } else {
        eprintln!("running as root and cannot run as another user here: nothing to test");
    }
    let mut p = std::fs::metadata(s.env.dir.path())
        .expect("meta")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(s.env.dir.path(), p).expect("chmod back");
}

/// Issue 13: child jobs are committed in the same transaction as their
/// parent's `OK` end, and only then. 40 `contract` parents each queue 3
/// `hello` children; runners are SIGKILLed at random moments 12 times
/// (a parent killed mid-run is rescued, fails and is retried); then one
/// runs until everything ended. Each parent chain that ended `OK` has
/// exactly 3 children, all on its `OK` row, each child run once; a chain
/// that ended `X` has none; every run records the component's SHA-256.
#[test]
fn children_are_queued_exactly_once_across_a_crash_loop() {
    use sha2::{Digest, Sha256};
    let s = Setup::new(&["contract", "hello"]);
    s.cojobs(&["list"]).ok(); // create the database
    let mut parents = Vec::new();
    {
        let conn = s.conn();
        // Due one after another over ~12 s, so that the kills land while
        // parents are claimed, running or ending.
        for i in 0..40 {
            conn.execute(
                "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, status, \
                 queue_time, start_after_time, retry_interval, max_retry, max_retry_count) \
                 VALUES (1, 'contract', 'children', '{\"n\":3}', 'Q', '2000-01-01 00:00:00', \
                 strftime('%Y-%m-%d %H:%M:%f', 'now', ?1), 1, 5, 0)",
                [format!("+{:.1} seconds", f64::from(i) * 0.3)],
            )
            .expect("insert");
            parents.push(conn.last_insert_rowid());
        }
    }
    let mut rng = Rng(0xC41D_0000_0000_0013);
    let args = ["--lease", "1", "--workers", "4", "--poll-interval", "0.2"];
    for _ in 0..12 {
        let mut d = s.daemon(&args);
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        d.kill9();
    }
    let mut last = s.daemon(&args);
    assert!(
        wait_until(DEADLINE * 4, || s
            .int("SELECT count(*) FROM cm_co_jobs WHERE status IN ('Q', 'GO')")
            == 0),
        "jobs did not end\n{}\nlog:\n{}",
        s.dump(),
        last.log()
    );
    last.wait_for(&s, "the last runner started", || {
        last.log().contains("runner started")
    });
    last.terminate();
    last.wait_ok();

    let all = rows(&s);
    let parent_of: HashMap<i64, Option<i64>> = {
        let conn = s.conn();
        let mut stmt = conn
            .prepare("SELECT id, parent_co_job_id FROM cm_co_jobs")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let mut kids: HashMap<i64, Vec<i64>> = HashMap::new();
    for (id, parent) in &parent_of {
        if let Some(p) = parent {
            kids.entry(*p).or_default().push(*id);
        }
    }
    let sha = Sha256::digest(
        std::fs::read(s.plugins.path().join("contract.wasm")).expect("read contract.wasm"),
    )
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect::<String>();
    let mut ok_parents = 0;
    for r in all.iter().filter(|r| r.job_type == "contract") {
        let n = kids.get(&r.id).map_or(0, Vec::len);
        if r.status == "OK" {
            ok_parents += 1;
            assert_eq!(n, 3, "parent {r:?} has {n} children");
            let result = s
                .text(&format!(
                    "SELECT result FROM cm_co_jobs WHERE id = {}",
                    r.id
                ))
                .expect("an OK parent has its result");
            let result: serde_json::Value = serde_json::from_str(&result).expect("JSON");
            assert_eq!(result["children"], 3, "{result}");
            assert_eq!(result["parent"], r.id, "{result}");
            assert_eq!(
                s.text(&format!(
                    "SELECT plugin_sha256 FROM cm_co_jobs WHERE id = {}",
                    r.id
                ))
                .as_deref(),
                Some(sha.as_str())
            );
            assert_eq!(
                s.text(&format!(
                    "SELECT plugin_contract FROM cm_co_jobs WHERE id = {}",
                    r.id
                ))
                .as_deref(),
                Some("0.2.0")
            );
        } else {
            assert_eq!(n, 0, "a parent that did not end OK has children: {r:?}");
        }
    }
    // One OK row per chain: every chain's children were queued once.
    let mut chain_ok: HashMap<i64, usize> = HashMap::new();
    let by_id: HashMap<i64, &Row> = all.iter().map(|r| (r.id, r)).collect();
    for r in all
        .iter()
        .filter(|r| r.job_type == "contract" && r.status == "OK")
    {
        let mut root = r;
        while let Some(p) = root.parent.and_then(|p| by_id.get(&p)) {
            root = p;
        }
        *chain_ok.entry(root.id).or_default() += 1;
    }
    assert!(chain_ok.values().all(|n| *n == 1), "{chain_ok:?}");
    assert!(ok_parents > 0, "no parent ended OK");
    // A chain without an OK row failed only through rescues.
    for r in all
        .iter()
        .filter(|r| r.job_type == "contract" && r.status == "X")
    {
        let summary = r.summary.as_deref().unwrap_or("");
        assert!(summary.contains("stopped responding"), "{r:?}");
    }
    // Every child is a `hello` that ran: OK, or rescued if a kill caught it.
    let children: Vec<&Row> = all
        .iter()
        .filter(|r| parent_of.get(&r.id).copied().flatten().is_some())
        .collect();
    assert_eq!(children.len(), 3 * ok_parents);
    for c in &children {
        assert_eq!(c.job_type, "hello", "{c:?}");
        let rescued = c
            .summary
            .as_deref()
            .is_some_and(|m| m.contains("stopped responding"));
        assert!(c.status == "OK" || rescued, "{c:?}");
    }
    let hello_ok = children.iter().filter(|r| r.status == "OK").count();
    let rescued = all
        .iter()
        .filter(|r| r.job_type == "contract" && r.status == "X")
        .count();
    eprintln!(
        "children crash loop: 12 kills, {rescued} parent runs rescued, {ok_parents} parents OK, \
         {} children, {hello_ok} of them OK",
        children.len()
    );
}
