//! Integration tests of the runner daemon: the real `cojobs run` binary
//! against a real SQLite file and real example components.
//!
//! Nothing here depends on timing to pass: every wait polls the database
//! (or the process) until a condition holds, with generous deadlines, and
//! no test asserts a duration.

#[path = "util/procs.rs"]
mod procs;
mod util;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use procs::{DEADLINE, Daemon, Setup, insert_jobs};

// ---------------------------------------------------------------- helpers

/// SIGSTOP `d`, making sure it was not stopped inside a write transaction
/// (which would hold SQLite's write lock for as long as it is stopped):
/// if the database cannot be written, let it run a moment and try again.
fn stop_outside_a_write(setup: &Setup, d: &Daemon) {
    for _ in 0..50 {
        d.signal(libc::SIGSTOP);
        let mut conn = setup.env.conn();
        conn.busy_timeout(Duration::from_secs(2))
            .expect("busy timeout");
        if let Ok(tx) = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            tx.rollback().expect("rollback");
            return;
        }
        d.signal(libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "could not stop the runner outside a write; log:\n{}",
        d.log()
    );
}

/// Rows with `status = 'GO'`.
fn go_count(setup: &Setup) -> i64 {
    setup.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'GO'")
}

/// Queue a `cancellable` job that waits 10 minutes and ignores cancel
/// requests (stopped only by an interrupt), with `policy` options.
fn queue_stubborn(setup: &Setup, policy: &[&str]) -> i64 {
    let mut args = vec![
        "cancellable",
        "--params",
        r#"{"seconds":600,"ignore_cancel":true}"#,
    ];
    args.extend_from_slice(policy);
    setup.queue(&args)
}

/// A row's `finish_summary`.
fn finish_summary(setup: &Setup, id: i64) -> Option<String> {
    setup.text(&format!(
        "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
    ))
}

// ------------------------------------------------------------------ tests

/// (1) An OK job: percent 100, the plugin's summary, complete_time, history;
/// and a row inserted by plain SQL runs like any other.
#[test]
fn ok_job_records_summary_percent_history_and_plain_sql_rows_run() {
    let s = Setup::new(&["hello"]);
    let id = s.queue(&["hello", "--params", r#"{"name":"Ada"}"#]);
    s.env.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
         VALUES (1,'hello',NULL,'Q',datetime('now'))",
    );
    let plain = s.int("SELECT max(id) FROM cm_co_jobs");
    assert_ne!(plain, id);
    s.run_ok(&["--once"]);

    for (job, summary) in [(id, "hello, Ada"), (plain, "hello, world")] {
        let (status, percent, finish, complete, start): (
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = s
            .conn()
            .query_row(
                "SELECT status, percent_complete, finish_summary, complete_time, start_time \
                 FROM cm_co_jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .expect("row");
        assert_eq!(status, "OK", "job {job}:\n{}", s.dump());
        assert_eq!(percent, Some(100), "job {job}");
        assert_eq!(finish.as_deref(), Some(summary), "job {job}");
        assert!(complete.is_some(), "job {job}: complete_time not set");
        assert!(start.is_some(), "job {job}: start_time not set");
        let records = s.int(&format!(
            "SELECT count(*) FROM cm_co_job_history_records WHERE co_job_id = {job}"
        ));
        assert!(records >= 1, "job {job}: no history records");
    }
    // hello's "greeted Ada" record, keyed by the name.
    assert_eq!(
        s.int(&format!(
            "SELECT count(*) FROM cm_co_job_history_records \
             WHERE co_job_id = {id} AND record_key = 'Ada' AND comment = 'greeted Ada'"
        )),
        1
    );
    assert_eq!(s.env.job_count(), 2, "no successors without a policy");
}

/// (2) A runaway job with a fuel budget and a retry policy: three X rows
/// chained by requeued_from_co_job_id with counts 0, 1, 2, no fourth.
#[test]
fn runaway_job_is_retried_exactly_max_retry_times() {
    let s = Setup::new(&["runaway"]);
    let first = s.queue(&[
        "runaway",
        "--fuel",
        "100000000",
        "--retry-interval",
        "1",
        "--max-retry",
        "2",
    ]);
    s.run_ok(&["--once"]);

    let conn = s.conn();
    let mut stmt = conn
        .prepare(
            "SELECT id, status, max_retry_count, requeued_from_co_job_id, finish_summary \
             FROM cm_co_jobs ORDER BY id",
        )
        .expect("prepare");
    type Row = (i64, String, i64, Option<i64>, Option<String>);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(rows.len(), 3, "exactly three rows:\n{}", s.dump());
    let mut prev: Option<i64> = None;
    for (i, (id, status, count, from, summary)) in rows.iter().enumerate() {
        if i == 0 {
            assert_eq!(*id, first);
        }
        assert_eq!(status, "X", "row {id}");
        assert_eq!(*count, i64::try_from(i).expect("small"), "row {id}");
        assert_eq!(*from, prev, "row {id} chained to the previous one");
        assert_eq!(
            summary.as_deref(),
            Some("fuel budget of 100000000 exhausted"),
            "row {id}"
        );
        prev = Some(*id);
    }
}

/// (3) `retry` is retried, `discard` is not, and `--requeue-interval 3600`
/// leaves a Q successor due an hour after it was queued.
#[test]
fn retry_discard_and_requeue_policies() {
    let s = Setup::new(&["retry", "discard", "hello"]);
    let retry = s.queue(&["retry", "--retry-interval", "1", "--max-retry", "1"]);
    let discard = s.queue(&["discard", "--retry-interval", "1", "--max-retry", "3"]);
    let hello = s.queue(&["hello", "--requeue-interval", "3600"]);
    s.run_ok(&["--once"]);

    // retry: the original and exactly one retry, both X.
    let retry_chain = s.int(&format!(
        "SELECT count(*) FROM cm_co_jobs WHERE job_type = 'retry' \
         AND (id = {retry} OR requeued_from_co_job_id = {retry})"
    ));
    assert_eq!(retry_chain, 2, "{}", s.dump());
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'retry'"),
        2,
        "one retry only:\n{}",
        s.dump()
    );
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'retry' AND status = 'X'"),
        2
    );
    assert_eq!(
        s.int(&format!(
            "SELECT max_retry_count FROM cm_co_jobs WHERE requeued_from_co_job_id = {retry}"
        )),
        1
    );

    // discard: X and never retried.
    assert_eq!(s.status(discard), "X");
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'discard'"),
        1,
        "{}",
        s.dump()
    );

    // hello: OK, and a Q successor due an hour after its queue_time.
    assert_eq!(s.status(hello), "OK");
    let (succ, status, gap): (i64, String, f64) = s
        .conn()
        .query_row(
            "SELECT id, status, \
                 (julianday(start_after_time) - julianday(queue_time)) * 86400.0 \
             FROM cm_co_jobs WHERE requeued_from_co_job_id = ?1",
            [hello],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("requeued successor");
    assert_eq!(status, "Q", "successor {succ}");
    assert!(
        (gap - 3600.0).abs() < 3.0,
        "successor {succ} due {gap} s after queueing, not 3600"
    );
    assert_eq!(
        s.int(&format!(
            "SELECT max_retry_count FROM cm_co_jobs WHERE id = {succ}"
        )),
        0
    );
    // It is not due: --once did not wait an hour for it, and nothing else
    // requeued hello.
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'hello'"),
        2
    );
}

/// (4) Fairness: one CO's burst of 5,000 due jobs does not keep another
/// CO's single job waiting: it is among the first few claimed.
#[test]
fn another_cos_job_is_not_starved_by_a_burst() {
    let s = Setup::new(&["noop"]);
    assert_eq!(s.cojobs(&["co", "add", "other"]).ok().trim(), "2");
    // The burst is older than the other CO's job.
    insert_jobs(&s, 1, "noop", 5000, "2000-01-01 00:00:00");
    let lone = s.queue(&["noop", "--co", "2"]);

    let mut d = s.daemon(&["--once", "--workers", "2"]);
    d.wait_for(&s, "the CO 2 job has started", || {
        s.int(&format!(
            "SELECT start_time IS NOT NULL FROM cm_co_jobs WHERE id = {lone}"
        )) == 1
    });
    // Rows claimed before it: earlier start_time, or the same claim and a
    // smaller id (start times are stored to the millisecond).
    let before = s.int(&format!(
        "SELECT count(*) FROM cm_co_jobs j, cm_co_jobs l \
         WHERE l.id = {lone} AND j.start_time IS NOT NULL AND j.id <> l.id \
           AND (j.start_time < l.start_time OR (j.start_time = l.start_time AND j.id < l.id))"
    ));
    eprintln!("{before} jobs were claimed before the CO 2 job");
    assert!(
        before < 10,
        "{before} jobs of CO 1 were claimed before the CO 2 job"
    );
    // The drain itself finishes: every job ran once, and --once exited 0.
    d.wait_ok();
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        5001,
        "{}",
        s.dump()
    );
    assert_eq!(s.env.job_count(), 5001);
}

/// (5) Two runner processes on one database: every job run exactly once.
#[test]
fn two_runners_run_each_job_exactly_once() {
    let s = Setup::new(&["counter"]);
    s.cojobs(&["list"]).ok(); // create the database
    let ids = insert_jobs(&s, 1, "counter", 500, "2000-01-01 00:00:00");

    let mut a = s.daemon(&["--once", "--workers", "2"]);
    let mut b = s.daemon(&["--once", "--workers", "2"]);
    a.wait_ok();
    b.wait_ok();

    assert_eq!(s.env.job_count(), 500);
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        500,
        "{}",
        s.dump()
    );
    assert_eq!(go_count(&s), 0);
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_job_history_records"),
        500,
        "the plugin's count of runs"
    );
    let conn = s.conn();
    let mut stmt = conn
        .prepare("SELECT co_job_id, record_key FROM cm_co_job_history_records")
        .expect("prepare");
    let mut seen = HashSet::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
    {
        let (job, key) = row.expect("row");
        assert_eq!(key, job.to_string(), "record of job {job} keyed by its id");
        assert!(seen.insert(job), "job {job} ran twice");
    }
    let expected: HashSet<i64> = ids.into_iter().collect();
    assert_eq!(seen, expected);
    // For the record: how the work was shared (not asserted, it depends on
    // scheduling).
    let runners = s.int("SELECT count(DISTINCT runner_id) FROM cm_co_jobs");
    eprintln!("jobs were run by {runners} runner(s)");
}

/// (6) A runner killed with SIGKILL mid-job: another runner rescues the row
/// (X, "stopped responding"), retries it, and nothing stays GO or is
/// recorded twice.
#[test]
fn job_of_a_killed_runner_is_rescued_and_retried() {
    let s = Setup::new(&["cancellable", "counter"]);
    let job = s.queue(&[
        "cancellable",
        "--params",
        r#"{"seconds":5,"ignore_cancel":true}"#,
        "--retry-interval",
        "1",
        "--max-retry",
        "3",
    ]);
    let mut first = s.daemon(&["--lease", "2"]);
    first.wait_for(&s, "the job is GO", || s.status(job) == "GO");
    let dead_runner = s
        .text(&format!(
            "SELECT runner_id FROM cm_co_jobs WHERE id = {job}"
        ))
        .expect("runner_id");
    first.kill9();
    // Queued while nobody runs: the second runner must run it too, once.
    let counted = s.queue(&["counter"]);

    let mut second = s.daemon(&["--lease", "2"]);
    second.wait_for(&s, "the job is rescued and its retry has run", || {
        s.status(job) == "X"
            && s.int(&format!(
                "SELECT count(*) FROM cm_co_jobs WHERE requeued_from_co_job_id = {job} \
                 AND status = 'OK'"
            )) == 1
            && s.status(counted) == "OK"
    });
    second.terminate();
    let status = second.wait(DEADLINE);
    assert!(status.success(), "exit {status}; log:\n{}", second.log());

    let summary = s
        .text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {job}"
        ))
        .expect("finish_summary");
    assert_eq!(summary, format!("runner {dead_runner} stopped responding"));
    assert!(
        s.text(&format!(
            "SELECT complete_time FROM cm_co_jobs WHERE id = {job}"
        ))
        .is_some()
    );
    let (retry, count, retry_summary): (i64, i64, String) = s
        .conn()
        .query_row(
            "SELECT id, max_retry_count, finish_summary FROM cm_co_jobs \
             WHERE requeued_from_co_job_id = ?1",
            [job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("retry row");
    assert_eq!(count, 1, "retry {retry}");
    assert_eq!(retry_summary, "waited 5 s");
    assert_eq!(go_count(&s), 0, "{}", s.dump());
    assert_eq!(s.env.job_count(), 3, "one retry only:\n{}", s.dump());
    // No history recorded twice (and the killed run recorded none).
    assert_eq!(
        s.int(
            "SELECT count(*) FROM (SELECT co_job_id, record_key, comment \
             FROM cm_co_job_history_records GROUP BY 1, 2, 3 HAVING count(*) > 1)"
        ),
        0
    );
    assert_eq!(
        s.int(&format!(
            "SELECT count(*) FROM cm_co_job_history_records WHERE co_job_id = {job}"
        )),
        0
    );
    assert_eq!(
        s.int(&format!(
            "SELECT count(*) FROM cm_co_job_history_records WHERE co_job_id = {counted}"
        )),
        1
    );
}

/// (7) `cojobs cancel` of a running job ends it CX "canceled by <user>",
/// whether the plugin cooperates or not, and never requeues it.
#[test]
fn cancel_of_a_running_job_ends_cx_with_or_without_cooperation() {
    let s = Setup::new(&["cancellable"]);
    let policy = ["--retry-interval", "1", "--max-retry", "3"];
    let mut args = vec!["cancellable", "--params", r#"{"seconds":60}"#];
    args.extend_from_slice(&policy);
    let polite = s.queue(&args);
    let mut args = vec![
        "cancellable",
        "--params",
        r#"{"seconds":60,"ignore_cancel":true}"#,
    ];
    args.extend_from_slice(&policy);
    let stubborn = s.queue(&args);

    let mut d = s.daemon(&["--workers", "2"]);
    d.wait_for(&s, "both jobs are GO", || {
        s.status(polite) == "GO" && s.status(stubborn) == "GO"
    });
    for id in [polite, stubborn] {
        let out = s.cojobs(&["cancel", &id.to_string()]);
        assert!(out.ok().contains("asked its runner to stop"), "{out:#?}");
    }
    d.wait_for(&s, "both jobs are CX", || {
        s.status(polite) == "CX" && s.status(stubborn) == "CX"
    });
    for id in [polite, stubborn] {
        let summary = s
            .text(&format!(
                "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
            ))
            .expect("finish_summary");
        assert!(summary.starts_with("canceled by"), "job {id}: {summary}");
        assert_eq!(summary, "canceled by ada", "job {id}");
        assert!(
            s.text(&format!(
                "SELECT complete_time FROM cm_co_jobs WHERE id = {id}"
            ))
            .is_some()
        );
    }
    // Give a (wrong) successor every chance to appear before looking.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        s.env.job_count(),
        2,
        "a canceled job was requeued:\n{}",
        s.dump()
    );
    d.terminate();
    assert!(d.wait(DEADLINE).success(), "{}", d.log());
}

/// (8) SIGTERM during a long job, grace over: the row is back in Q as if
/// never started, and the process exits 0.
#[test]
fn sigterm_returns_a_running_job_to_the_queue_and_exits_0() {
    let s = Setup::new(&["cancellable"]);
    let job = s.queue(&[
        "cancellable",
        "--params",
        r#"{"seconds":60,"ignore_cancel":true}"#,
    ]);
    let mut d = s.daemon(&["--grace", "1"]);
    d.wait_for(&s, "the job is GO", || s.status(job) == "GO");
    d.terminate();
    let status = d.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());

    let (status, start_time, start_summary, runner, complete): (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = s
        .conn()
        .query_row(
            "SELECT status, start_time, start_summary, runner_id, complete_time \
             FROM cm_co_jobs WHERE id = ?1",
            [job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("row");
    assert_eq!(status, "Q");
    assert_eq!(start_time, None);
    assert_eq!(runner, None);
    assert_eq!(complete, None);
    let start_summary = start_summary.expect("start_summary");
    assert!(
        start_summary.contains("shut down"),
        "start_summary: {start_summary}"
    );
    assert_eq!(s.env.job_count(), 1);
}

/// (9) `--per-co 1`: never two jobs of one CO running at once, even with
/// free workers; all of them still run.
#[test]
fn per_co_cap_is_never_exceeded() {
    let s = Setup::new(&["cancellable"]);
    let ids: Vec<i64> = (0..4)
        .map(|_| s.queue(&["cancellable", "--params", r#"{"seconds":2}"#]))
        .collect();
    let mut d = s.daemon(&["--once", "--workers", "4", "--per-co", "1"]);
    let start = Instant::now();
    let mut max_go = 0;
    let mut samples = 0;
    while d.running() {
        assert!(
            start.elapsed() < DEADLINE * 2,
            "run --once did not finish; log:\n{}",
            d.log()
        );
        max_go = max_go.max(go_count(&s));
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    d.wait_ok();
    assert!(samples > 0);
    assert!(max_go <= 1, "{max_go} jobs of CO 1 were GO at once");
    for id in ids {
        assert_eq!(s.status(id), "OK", "job {id}:\n{}", s.dump());
    }
}

/// (10) Bad `run` options exit 2 with a clear message and write nothing.
#[test]
fn bad_run_options_exit_2_and_write_nothing() {
    let s = Setup::new(&["hello"]);
    for (args, msg) in [
        (&["--workers", "0"][..], "--workers must be at least 1"),
        (
            &["--lease", "0"][..],
            "--lease 0 is out of range: 1 to 86400 seconds",
        ),
        (
            &["--memory", "999999"][..],
            "--memory 999999 is out of range: 1 to 4096 MiB",
        ),
        (&["--fuel", "0"][..], "--fuel 0 is out of range"),
        (&["--per-co", "0"][..], "--per-co must be at least 1"),
        (
            &["--poll-interval", "0"][..],
            "--poll-interval must be a positive number",
        ),
    ] {
        let mut all = vec!["run", "--once"];
        all.extend_from_slice(args);
        let out = s.cojobs(&all);
        out.fails(2, msg);
        assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
        assert!(
            !s.env.db.exists(),
            "{args:?} created the database:\n{out:#?}"
        );
    }
}

/// (11) A second SIGTERM interrupts running jobs at once, without waiting
/// for the grace period: the job (which would run 10 minutes, longer than
/// any deadline here) is back in Q and the process exits 0.
#[test]
fn second_signal_returns_jobs_to_the_queue_at_once() {
    let s = Setup::new(&["cancellable"]);
    let job = s.queue(&[
        "cancellable",
        "--params",
        r#"{"seconds":600,"ignore_cancel":true}"#,
    ]);
    let mut d = s.daemon(&["--grace", "3600"]);
    d.wait_for(&s, "the job is GO", || s.status(job) == "GO");
    d.terminate();
    // Signals that arrive together may be delivered as one: send the second
    // only once the first was acted on.
    d.wait_for(&s, "the runner logged the first signal", || {
        d.log().contains("signal received")
    });
    assert_eq!(s.status(job), "GO", "still running during the grace period");
    d.terminate();
    let status = d.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert_eq!(s.status(job), "Q", "{}", s.dump());
    assert_eq!(
        s.int(&format!(
            "SELECT start_time IS NULL FROM cm_co_jobs WHERE id = {job}"
        )),
        1
    );
}

/// (12) Issue 10 finding 5: a runner that stalls (SIGSTOP) past its lease
/// loses the row to another runner's rescue; when it resumes, its
/// heartbeat finds the lease gone and stops its copy at once (a log line),
/// recording nothing: the row stays X "stopped responding" with one retry.
/// The copy would run 10 minutes: the stalled runner, given an hour of
/// grace, exits at once on SIGTERM only because nothing runs any more.
#[test]
fn stalled_runner_that_lost_its_lease_stops_its_copy() {
    let s = Setup::new(&["cancellable"]);
    // A retry far in the future: no runner here picks it up.
    let job = queue_stubborn(&s, &["--retry-interval", "3600", "--max-retry", "3"]);
    let mut stalled = s.daemon(&["--lease", "2", "--grace", "3600"]);
    stalled.wait_for(&s, "the job is GO", || s.status(job) == "GO");
    let stalled_id = s
        .text(&format!(
            "SELECT runner_id FROM cm_co_jobs WHERE id = {job}"
        ))
        .expect("runner_id");
    stop_outside_a_write(&s, &stalled);

    let mut rescuer = s.daemon(&["--lease", "2"]);
    rescuer.wait_for(&s, "the job is rescued", || s.status(job) == "X");
    stalled.signal(libc::SIGCONT);
    stalled.wait_for(&s, "the stalled runner stops its copy", || {
        stalled.log().contains("lease lost")
    });
    stalled.wait_for(&s, "the stalled runner drops its result", || {
        stalled.log().contains("result dropped")
    });
    for d in [&stalled, &rescuer] {
        d.terminate();
    }
    assert!(stalled.wait(DEADLINE).success(), "{}", stalled.log());
    assert!(rescuer.wait(DEADLINE).success(), "{}", rescuer.log());
    assert!(
        stalled
            .log()
            .contains("0 ok, 0 failed, 0 canceled, 0 returned to the queue, 0 rescued, 1 lost"),
        "{}",
        stalled.log()
    );

    let (status, summary): (String, String) = s
        .conn()
        .query_row(
            "SELECT status, finish_summary FROM cm_co_jobs WHERE id = ?1",
            [job],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(status, "X");
    assert_eq!(summary, format!("runner {stalled_id} stopped responding"));
    assert_eq!(s.env.job_count(), 2, "one successor only:\n{}", s.dump());
    assert_eq!(
        s.int(&format!(
            "SELECT count(*) FROM cm_co_jobs WHERE requeued_from_co_job_id = {job} AND status = 'Q'"
        )),
        1
    );
    assert_eq!(go_count(&s), 0);
}

/// (13) `--once` rescues a row its dead runner left GO, and runs the
/// retry that falls due meanwhile, like any other successor.
#[test]
fn once_rescues_a_dead_runners_row_and_runs_its_retry() {
    let s = Setup::new(&["hello"]);
    s.cojobs(&["list"]).ok(); // create the database
    s.env.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, start_time, runner_id, \
            lease_expires_at, retry_interval, max_retry) \
         VALUES (1, 'hello', 'GO', '2000-01-01 00:00:00', '2000-01-01 00:00:01', 'ghost-1', \
            '2000-01-01 00:00:31', 1, 2)",
    );
    let job = s.int("SELECT max(id) FROM cm_co_jobs");
    s.run_ok(&["--once"]);
    assert_eq!(s.status(job), "X");
    assert_eq!(
        s.text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {job}"
        ))
        .as_deref(),
        Some("runner ghost-1 stopped responding")
    );
    let (status, count, summary): (String, i64, Option<String>) = s
        .conn()
        .query_row(
            "SELECT status, max_retry_count, finish_summary FROM cm_co_jobs \
             WHERE requeued_from_co_job_id = ?1",
            [job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("retry row");
    assert_eq!(count, 1);
    assert_eq!(
        (status.as_str(), summary.as_deref()),
        ("OK", Some("hello, world")),
        "the retry was left for a later run:\n{}",
        s.dump()
    );
}

/// Issue 10 finding 2: a timeout no deadline can hold, written by plain
/// SQL (queue-time checks bypassed), made the job's task panic (`Instant`
/// overflow): the row stayed GO for good and the runner went on. It runs
/// now, and so does the job after it.
#[test]
fn absurd_timeout_from_plain_sql_does_not_strand_the_row() {
    let s = Setup::new(&["hello"]);
    s.cojobs(&["list"]).ok(); // create the database
    s.env.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, timeout_secs) \
         VALUES (1, 'hello', 'Q', '2000-01-01 00:00:00', 9223372036854775807)",
    );
    let absurd = s.int("SELECT max(id) FROM cm_co_jobs");
    let next = s.queue(&["hello"]);
    let run = s.run_ok(&["--once"]);
    assert_eq!(go_count(&s), 0, "{}\n{}", s.dump(), run.stderr);
    assert_eq!(s.status(absurd), "OK", "{}\n{}", s.dump(), run.stderr);
    assert_eq!(s.status(next), "OK", "{}", s.dump());
}

/// Issue 10 finding 3: `run --once` ends whatever the policies: a job
/// requeued every second runs once (its requeued copy waits, queued), and a
/// job retried every second without limit is followed 5 times (6 runs),
/// leaving its next retry queued.
#[test]
fn once_ends_whatever_the_policies() {
    let s = Setup::new(&["hello", "retry"]);
    let requeued = s.queue(&["hello", "--requeue-interval", "1"]);
    let retried = s.queue(&["retry", "--retry-interval", "1"]);
    let mut d = s.daemon(&["--once"]);
    d.wait_ok();
    assert_eq!(s.status(requeued), "OK");
    let count = |sql: &str| s.int(sql);
    assert_eq!(
        count("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'hello' AND status = 'Q'"),
        1,
        "{}",
        s.dump()
    );
    assert_eq!(
        count("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'hello'"),
        2
    );
    assert_eq!(s.status(retried), "X");
    assert_eq!(
        count("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'retry' AND status = 'X'"),
        6,
        "{}",
        s.dump()
    );
    assert_eq!(
        count("SELECT count(*) FROM cm_co_jobs WHERE job_type = 'retry' AND status = 'Q'"),
        1
    );
    assert_eq!(go_count(&s), 0);
}

/// Issue 10 finding 4: slow jobs are claimed for free workers only, so a
/// runner started later gets its share instead of idling while the first
/// holds the rest; rows `GO` never outnumber the workers running them.
#[test]
fn slow_jobs_are_not_hoarded_by_one_runner() {
    let s = Setup::new(&["cancellable"]);
    let ids: Vec<i64> = (0..6)
        .map(|_| s.queue(&["cancellable", "--params", r#"{"seconds":2}"#]))
        .collect();
    let a = s.daemon(&["--workers", "1"]);
    a.wait_for(&s, "runner A took a job", || go_count(&s) >= 1);
    let b = s.daemon(&["--workers", "1"]);
    let mut max_go = 0;
    a.wait_for(&s, "every job ended", || {
        max_go = max_go.max(go_count(&s));
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'") == 6
    });
    assert!(max_go <= 2, "{max_go} rows GO with 2 workers in all");
    let runners = s.int("SELECT count(DISTINCT runner_id) FROM cm_co_jobs");
    assert_eq!(runners, 2, "one runner ran every job:\n{}", s.dump());
    for d in [&a, &b] {
        d.terminate();
    }
    for mut d in [a, b] {
        assert!(d.wait(DEADLINE).success(), "{}", d.log());
    }
    assert_eq!(ids.len(), 6);
}

/// Issue 10 finding 4: a claimed row that has not started says so in
/// `show`, and `cancel` ends it CX at once (its runner's start is then
/// refused: it never runs).
#[test]
fn cancel_of_a_claimed_row_that_has_not_started_ends_it_at_once() {
    let s = Setup::new(&["hello"]);
    s.cojobs(&["list"]).ok(); // create the database
    s.env.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, runner_id, \
            lease_expires_at, start_summary) \
         VALUES (1, 'hello', 'GO', '2000-01-01 00:00:00', 'far-1', '2999-01-01 00:00:00', \
            'claimed by runner far-1, not started yet')",
    );
    let job = s.int("SELECT max(id) FROM cm_co_jobs");
    let show = s.cojobs(&["show", &job.to_string()]);
    assert!(
        show.ok()
            .contains("claimed by runner far-1, not started yet")
    );
    let out = s.cojobs(&["cancel", &job.to_string()]);
    assert_eq!(out.ok().trim(), format!("job {job} canceled"));
    assert_eq!(s.status(job), "CX");
    assert_eq!(finish_summary(&s, job).as_deref(), Some("canceled by ada"));
}

/// Issue 10 finding 6: a cancel requested while a shutdown's grace period
/// runs out ends the row CX at once; it never goes back to Q.
#[test]
fn cancel_during_the_grace_period_ends_cx_not_q() {
    let s = Setup::new(&["cancellable"]);
    let job = queue_stubborn(&s, &["--retry-interval", "1"]);
    // Grace (2 s) ends before the cancel's own interrupt (3 s after it is
    // seen): the row is released by the shutdown path.
    let mut d = s.daemon(&["--grace", "2"]);
    d.wait_for(&s, "the job is GO", || s.status(job) == "GO");
    d.terminate();
    d.wait_for(&s, "the runner logged the signal", || {
        d.log().contains("signal received")
    });
    let out = s.cojobs(&["cancel", &job.to_string()]);
    assert!(out.ok().contains("asked its runner to stop"), "{out:#?}");
    let status = d.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert_eq!(s.status(job), "CX", "{}\n{}", s.dump(), d.log());
    assert_eq!(finish_summary(&s, job).as_deref(), Some("canceled by ada"));
    assert_eq!(s.env.job_count(), 1, "no successor:\n{}", s.dump());
}

/// Issue 10 finding 12: at SIGTERM every running plugin's
/// `cancel-requested` turns true at once: a cooperative plugin stops long
/// before the grace period (an hour here) ends. One returning `ok` ends
/// OK; one returning `retry` goes back to Q, no retry spent.
#[test]
fn shutdown_makes_cancel_requested_true_at_once() {
    let s = Setup::new(&["cancellable"]);
    let ok = s.queue(&["cancellable", "--params", r#"{"seconds":600}"#]);
    let retry = s.queue(&[
        "cancellable",
        "--params",
        r#"{"seconds":600,"retry_on_cancel":true}"#,
        "--retry-interval",
        "1",
    ]);
    let mut d = s.daemon(&["--workers", "2", "--grace", "3600"]);
    d.wait_for(&s, "both jobs started", || {
        s.int("SELECT count(*) FROM cm_co_jobs WHERE start_time IS NOT NULL AND status = 'GO'") == 2
    });
    d.terminate();
    let status = d.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert_eq!(s.status(ok), "OK", "{}", s.dump());
    assert!(
        finish_summary(&s, ok).is_some_and(|t| t.starts_with("stopped on request after")),
        "{}",
        s.dump()
    );
    assert_eq!(s.status(retry), "Q", "{}", s.dump());
    let summary = s
        .text(&format!(
            "SELECT start_summary FROM cm_co_jobs WHERE id = {retry}"
        ))
        .expect("start_summary");
    assert!(
        summary.contains("shut down and the plugin asked to be retried: stopped on request"),
        "{summary}"
    );
    assert_eq!(s.env.job_count(), 2, "no retry row:\n{}", s.dump());
}

/// Issue 13: a contract 0.2 run's result, children and retry-after reach
/// the database through the real runner, and `show` (text and `--json`)
/// prints the result, the children, the parent, the component's SHA-256
/// and its contract version.
#[test]
fn results_children_and_retry_after_are_stored_and_shown() {
    let s = Setup::new(&["contract", "hello"]);
    let parent = s.queue(&["contract", "--mode", "children", "--params", r#"{"n": 2}"#]);
    let limited = s.queue(&[
        "contract",
        "--mode",
        "retry-after",
        "--retry-interval",
        "3600",
    ]);
    // A daemon, not `--once` (which would wait for the 42 s retry).
    let mut d = s.daemon(&["--poll-interval", "0.2"]);
    d.wait_for(
        &s,
        "the parent, its two children and the limited job",
        || {
            s.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'") == 3
                && s.int(&format!(
                    "SELECT count(*) FROM cm_co_jobs WHERE requeued_from_co_job_id = {limited}"
                )) == 1
        },
    );
    d.wait_for(&s, "the runner started", || {
        d.log().contains("runner started")
    });
    d.terminate();
    d.wait_ok();
    assert_eq!(s.status(parent), "OK");
    // The retry waits the plugin's 42 s, not the hour of its interval.
    assert_eq!(s.status(limited), "X");
    let wait = s.int(&format!(
        "SELECT CAST(round((julianday(start_after_time) - julianday(queue_time)) * 86400) AS INTEGER) \
         FROM cm_co_jobs WHERE requeued_from_co_job_id = {limited}"
    ));
    assert!((40..=44).contains(&wait), "retry due after {wait} s");
    let kids: Vec<i64> = {
        let conn = s.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM cm_co_jobs WHERE parent_co_job_id = ?1 ORDER BY id")
            .expect("prepare");
        stmt.query_map([parent], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    assert_eq!(kids.len(), 2);
    let text = s.cojobs(&["show", &parent.to_string()]).ok().to_string();
    for want in ["plugin_contract", "0.2.0", "\"children\": 2", "children:"] {
        assert!(text.contains(want), "show lacks {want:?}:\n{text}");
    }
    for kid in &kids {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kid.to_string().as_str()))
            .unwrap_or_else(|| panic!("show lacks child {kid}:\n{text}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.get(1..3), Some(&["OK", "hello"][..]), "{line}");
    }
    let sha = s
        .text(&format!(
            "SELECT plugin_sha256 FROM cm_co_jobs WHERE id = {parent}"
        ))
        .expect("sha recorded");
    assert_eq!(sha.len(), 64);
    assert!(text.contains(&sha), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(s.cojobs(&["show", &parent.to_string(), "--json"]).ok())
            .expect("show --json is JSON");
    assert_eq!(json["job"]["plugin_sha256"], sha.as_str());
    assert_eq!(json["job"]["plugin_contract"], "0.2.0");
    let result: serde_json::Value =
        serde_json::from_str(json["job"]["result"].as_str().expect("result text")).expect("JSON");
    assert_eq!(result["children"], 2);
    assert_eq!(result["parent"], parent);
    let shown: Vec<i64> = json["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(shown, kids);
    assert_eq!(json["children"][0]["status"], "OK");
    assert_eq!(json["children"][0]["job_type"], "hello");
    // A child shows its parent.
    let child: serde_json::Value =
        serde_json::from_str(s.cojobs(&["show", &kids[0].to_string(), "--json"]).ok())
            .expect("JSON");
    assert_eq!(child["job"]["parent_co_job_id"], parent);
    assert_eq!(child["children"], serde_json::json!([]));

    // `exec --replay`: the same type, mode and params, now, nothing stored;
    // it says the component is the one the job ran with.
    let rows_before = s.int("SELECT count(*) FROM cm_co_jobs");
    let replay = s.cojobs(&["exec", "--replay", &parent.to_string()]);
    let shown = replay.ok();
    assert!(
        shown.contains(&format!("component: {sha} matches job {parent}")),
        "{shown}"
    );
    assert!(shown.contains("OK: queued 2 children"), "{shown}");
    assert!(shown.contains("child 2: hello"), "{shown}");
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs"),
        rows_before,
        "nothing stored"
    );
    // Another component under the same name: refused, unless --force.
    std::fs::copy(
        procs::built_plugins().join("hello.wasm"),
        s.plugins.path().join("contract.wasm"),
    )
    .expect("swap the component");
    s.cojobs(&["exec", "--replay", &parent.to_string()])
        .fails(2, "replay refused (--force runs it anyway)");
    let forced = s.cojobs(&["exec", "--replay", &parent.to_string(), "--force"]);
    assert_ne!(forced.code, 2, "{forced:#?}");
    assert!(
        forced.stdout.contains("running it anyway (--force)"),
        "{forced:#?}"
    );
    // Bad input: an unknown job, or a replay with a plugin named too.
    s.cojobs(&["exec", "--replay", "99999"])
        .fails(2, "no job 99999");
    let both = s.cojobs(&["exec", "hello", "--replay", &parent.to_string()]);
    assert_eq!(both.code, 2, "{both:#?}");
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs"),
        rows_before,
        "nothing stored"
    );
}

/// Issue 13: which component runs a row is on the row while it runs (the
/// run's first progress write carries it), not only once it ends.
#[test]
fn the_component_is_recorded_while_the_job_runs() {
    let s = Setup::new(&["cancellable"]);
    let id = s.queue(&["cancellable", "--params", r#"{"seconds": 30}"#]);
    let mut d = s.daemon(&["--poll-interval", "0.2"]);
    d.wait_for(&s, "the running job has its component's SHA-256", || {
        s.status(id) == "GO"
            && s.text(&format!(
                "SELECT plugin_sha256 FROM cm_co_jobs WHERE id = {id}"
            ))
            .is_some_and(|h| h.len() == 64)
    });
    use sha2::{Digest, Sha256};
    let file = std::fs::read(s.plugins.path().join("cancellable.wasm")).expect("read");
    let sha: String = Sha256::digest(file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let recorded = |col: &str| s.text(&format!("SELECT {col} FROM cm_co_jobs WHERE id = {id}"));
    assert_eq!(recorded("plugin_sha256"), Some(sha));
    let contract = recorded("plugin_contract").expect("contract recorded");
    assert!(
        ["0.1.0", "0.2.0"].contains(&contract.as_str()),
        "{contract}"
    );
    s.cojobs(&["cancel", &id.to_string()]).ok();
    d.wait_for(&s, "the job ends CX", || s.status(id) == "CX");
    d.wait_for(&s, "the runner started", || {
        d.log().contains("runner started")
    });
    d.terminate();
    d.wait_ok();
}
