//! Priorities, limits and pause through the real `cojobs` binary (issue
//! 14): a side file's `concurrency` held by four runner processes over one
//! database, pause and resume while runners run, priorities in the order
//! jobs start, and the refusals. The store-level rules are checked on both
//! drivers by the conformance bodies (`tests/conformance/`).

#[path = "util/procs.rs"]
mod procs;
mod util;

use std::time::{Duration, Instant};

use procs::{DEADLINE, Setup};

/// `n` lines of `queue --from`: `hello` in mode `slow` (half a second).
fn slow_hellos(s: &Setup, n: usize, extra: &str) -> std::path::PathBuf {
    let path = s.env.dir.path().join("jobs.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(r#"{{"type": "hello", "mode": "slow", "params": {{"name": "n{i}"}}{extra}}}"#)
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).expect("write jobs");
    path
}

fn count(s: &Setup, sql: &str) -> i64 {
    s.int(sql)
}

/// Issue 14: 4 runner processes × 2 workers, `concurrency = 3` in the side
/// file: sampled, never more than 3 `hello` rows `GO` at once; every job
/// ends `OK`.
#[test]
fn concurrency_holds_across_four_runner_processes() {
    const JOBS: usize = 24;
    let s = Setup::new(&["hello"]);
    std::fs::write(s.plugins.path().join("hello.toml"), "concurrency = 3\n").expect("side file");
    let from = slow_hellos(&s, JOBS, "");
    s.cojobs(&["queue", "--from", from.to_str().expect("utf-8")])
        .ok();
    let runners: Vec<_> = (0..4)
        .map(|_| s.daemon(&["--workers", "2", "--poll-interval", "0.2"]))
        .collect();
    let conn = s.conn();
    let (mut most, mut samples, mut seen_three) = (0i64, 0u64, false);
    let started = Instant::now();
    loop {
        let (go, done): (i64, i64) = conn
            .query_row(
                "SELECT count(*) FILTER (WHERE status = 'GO'), \
                        count(*) FILTER (WHERE status IN ('OK', 'X', 'CX')) \
                 FROM cm_co_jobs WHERE job_type = 'hello'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("sample");
        most = most.max(go);
        seen_three |= go == 3;
        samples += 1;
        if done == JOBS as i64 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE * 2,
            "jobs did not finish; rows:\n{}\nlogs:\n{}",
            s.dump(),
            runners
                .iter()
                .map(|r| r.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(most <= 3, "{most} hello jobs ran at once (cap 3)");
    assert!(
        seen_three,
        "the cap was reached ({samples} samples): the test tested it"
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM cm_co_jobs WHERE status = 'OK'"),
        JOBS as i64,
        "{}",
        s.dump()
    );
    // Four runners, so no single one ran them all.
    let runners_used = count(&s, "SELECT count(DISTINCT runner_id) FROM cm_co_jobs");
    assert!(runners_used > 1, "only {runners_used} runner took jobs");
    for r in &runners {
        r.terminate();
    }
    for mut r in runners {
        r.wait_ok();
    }
}

/// Issue 14: `pause TYPE` holds its queued jobs back while a runner runs
/// (other types go on); `list` and `watch --once` say what is paused;
/// `resume` lets them run. `pause --co` the same for a CO.
#[test]
fn pause_and_resume_while_a_runner_runs() {
    let s = Setup::new(&["hello", "noop"]);
    let mut runner = s.daemon(&["--workers", "2", "--poll-interval", "0.2"]);
    let said = s.cojobs(&["pause", "hello"]).ok().to_string();
    assert!(said.contains("paused job type 'hello'"), "{said}");
    let again = s.cojobs(&["pause", "hello"]).ok().to_string();
    assert!(again.contains("was paused already"), "{again}");
    let held: Vec<i64> = (0..3).map(|_| s.queue(&["hello"])).collect();
    let other = s.queue(&["noop"]);
    runner.wait_for(&s, "the other type ran", || s.status(other) == "OK");
    std::thread::sleep(Duration::from_millis(800));
    for id in &held {
        assert_eq!(s.status(*id), "Q", "paused jobs wait");
    }
    let list = s.cojobs(&["list"]).ok().to_string();
    assert!(list.contains("paused: job types hello"), "{list}");
    let watch = s.cojobs(&["watch", "--once"]).ok().to_string();
    assert!(watch.contains("paused: job types hello"), "{watch}");
    assert!(
        s.cojobs(&["resume", "hello"])
            .ok()
            .contains("resumed job type 'hello'")
    );
    assert!(
        s.cojobs(&["resume", "hello"])
            .ok()
            .contains("was not paused")
    );
    runner.wait_for(&s, "the paused jobs ran after resume", || {
        held.iter().all(|id| s.status(*id) == "OK")
    });
    // A CO.
    let co = s.cojobs(&["co", "add", "lab"]).ok().trim().to_string();
    s.cojobs(&["pause", "--co", co.as_str()]).ok();
    let in_co = s.queue(&["noop", "--co", co.as_str()]);
    let in_default = s.queue(&["noop"]);
    runner.wait_for(&s, "the default CO's job ran", || {
        s.status(in_default) == "OK"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(s.status(in_co), "Q");
    let cos = s.cojobs(&["co", "list"]).ok().to_string();
    assert!(cos.contains("PAUSED"), "{cos}");
    s.cojobs(&["resume", "--co", co.as_str()]).ok();
    runner.wait_for(&s, "the CO's job ran after resume", || {
        s.status(in_co) == "OK"
    });
    runner.terminate();
    runner.wait_ok();
}

/// Issue 14: with one worker, queued jobs start by priority (smaller
/// first), then age; `priority` in `--from` lines and `--priority` alike.
/// (Half-second jobs, so the runner claims one at a time and each row's
/// `start_time` is when it started.)
#[test]
fn one_worker_starts_jobs_by_priority() {
    let s = Setup::new(&["hello"]);
    let slow = |p: &[&str]| {
        let mut args = vec!["hello", "--mode", "slow"];
        args.extend_from_slice(p);
        s.queue(&args)
    };
    let low = slow(&["--priority", "9"]);
    let mid = slow(&[]);
    let path = s.env.dir.path().join("high.jsonl");
    std::fs::write(&path, r#"{"type": "hello", "mode": "slow", "priority": 1}"#).expect("write");
    let high: i64 = s
        .cojobs(&["queue", "--from", path.to_str().expect("utf-8")])
        .ok()
        .trim()
        .parse()
        .expect("id");
    let top = slow(&["--priority", "1"]);
    assert_eq!(
        s.int(&format!("SELECT priority FROM cm_co_jobs WHERE id = {mid}")),
        5,
        "the default is the middle"
    );
    s.run_ok(&["--once", "--workers", "1"]);
    let conn = s.conn();
    let mut stmt = conn
        .prepare("SELECT id FROM cm_co_jobs ORDER BY start_time, id")
        .expect("prepare");
    let order: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(order, vec![high, top, mid, low], "{}", s.dump());
}

/// Issue 14: bad input is refused with the reason, exit 2, nothing written.
#[test]
fn limits_and_priorities_refuse_bad_input() {
    let s = Setup::new(&["hello"]);
    s.cojobs(&["co", "list"]).ok();
    for (args, says) in [
        (
            vec!["queue", "hello", "--priority", "0"],
            "--priority 0 is out of range: 1 to 9",
        ),
        (
            vec!["queue", "hello", "--priority", "10"],
            "--priority 10 is out of range: 1 to 9",
        ),
        (vec!["pause", "--co", "99"], "no CO 99"),
        (vec!["resume", "--co", "99"], "no CO 99"),
        (vec!["pause", "../x"], "../x"),
        (vec!["pause"], "required"),
        (vec!["pause", "hello", "--co", "1"], "cannot be used with"),
        (vec!["co", "set", "99", "--max-running", "3"], "no CO 99"),
        (
            vec!["co", "set", "1", "--max-running", "0"],
            "--max-running 0 is out of range",
        ),
        (
            vec!["co", "set", "1", "--max-running", "many"],
            "not a number",
        ),
        (
            vec![
                "schedule",
                "add",
                "x",
                "--cron",
                "* * * * *",
                "hello",
                "--priority",
                "12",
            ],
            "--priority 12 is out of range",
        ),
    ] {
        s.cojobs(&args).fails(2, says);
    }
    let path = s.env.dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        "{\"type\": \"hello\"}\n{\"type\": \"hello\", \"priority\": 99}\n",
    )
    .expect("write");
    s.cojobs(&["queue", "--from", path.to_str().expect("utf-8")])
        .fails(2, "priority 99 is out of range");
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs"),
        0,
        "nothing queued"
    );
    assert_eq!(s.int("SELECT count(*) FROM cojobs_co_limits"), 0);
    assert_eq!(s.int("SELECT count(*) FROM cojobs_type_limits"), 0);
    assert_eq!(s.int("SELECT count(*) FROM cojobs_schedules"), 0);
    // Accepted: a limit, then cleared; a schedule with a priority.
    assert!(
        s.cojobs(&["co", "set", "1", "--max-running", "4"])
            .ok()
            .contains("at most 4")
    );
    let cos = s.cojobs(&["co", "list"]).ok().to_string();
    assert!(cos.contains("MAX RUNNING"), "{cos}");
    s.cojobs(&["co", "set", "1", "--max-running", "none"]).ok();
    assert_eq!(
        s.text("SELECT max_running FROM cojobs_co_limits WHERE co_id = 1"),
        None
    );
    s.cojobs(&[
        "schedule",
        "add",
        "p",
        "--cron",
        "@hourly",
        "hello",
        "--priority",
        "2",
    ])
    .ok();
    assert_eq!(
        s.int("SELECT priority FROM cojobs_schedules WHERE name = 'p'"),
        2
    );
}

/// Issue 14: a side file whose `rate` does not read is refused by the
/// plugin loader (the job fails saying why) and its limits are left alone.
#[test]
fn a_bad_rate_in_a_side_file_is_reported() {
    let s = Setup::new(&["noop"]);
    std::fs::write(
        s.plugins.path().join("noop.toml"),
        "rate = \"5/fortnight\"\n",
    )
    .expect("side file");
    let id = s.queue(&["noop", "--no-check"]);
    let run = s.run_ok(&["--once"]);
    assert!(run.stderr.contains("5/fortnight"), "{}", run.stderr);
    assert_eq!(s.status(id), "X");
    let summary = s
        .text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
        ))
        .unwrap_or_default();
    assert!(summary.contains("COUNT/UNIT"), "{summary}");
}
