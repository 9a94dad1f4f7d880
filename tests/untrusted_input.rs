//! Issue 10, findings 2a, 8 and 11, through the real binary on a real
//! database file with real components: numbers out of range, text that
//! would steer the operator's terminal, and the compiled-code cache.

#[path = "util/procs.rs"]
mod procs;
mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use procs::Setup;

/// Sets the terminal's title, then clears the screen.
const JUNK: &str = "\x1b]0;title\x07\x1b[2J";
/// How [`JUNK`] must be shown.
const SHOWN: &str = "\\x1b]0;title\\x07\\x1b[2J";

/// No byte a terminal would act on: ESC, BEL.
#[track_caller]
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "{what} printed a raw control character: {text:?}"
    );
}

// ------------------------------------------------------------ finding 2a

/// Issue 10, finding 2a: every limit and interval is range-checked at queue
/// time (`queue`, `queue --from`, `run`, `exec`): exit 2 naming the option
/// and its range, nothing written. `--timeout 9223372036854775807` used to
/// be queued, and its job's task panicked.
#[test]
fn issue_10_2a_out_of_range_numbers_are_refused_when_given() {
    let s = Setup::new(&["hello"]);
    s.queue(&["hello"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--timeout", "9223372036854775807"],
            "--timeout 9223372036854775807 is out of range: 1 to 604800 seconds (7 days)",
        ),
        (&["--timeout", "604801"], "--timeout 604801 is out of range"),
        (
            &["--fuel", "1000000000000001"],
            "--fuel 1000000000000001 is out of range: 1 to 1000000000000000 fuel units",
        ),
        (
            &["--memory", "-1"],
            "--memory -1 is out of range: 1 to 4096 MiB",
        ),
        (
            &["--retry-interval", "315360001"],
            "--retry-interval 315360001 is out of range: 0 to 315360000 seconds (10 years)",
        ),
        (
            &["--requeue-interval", "9223372036854775807"],
            "--requeue-interval 9223372036854775807 is out of range: 0 to 315360000 seconds",
        ),
        (
            &["--max-retry", "1000001"],
            "--max-retry 1000001 is out of range: 0 to 1000000 retries",
        ),
        (
            &["--delay", "3651d"],
            "--delay 315446400 is out of range: 0 to 315360000 seconds",
        ),
    ];
    for (args, msg) in cases {
        let mut all = vec!["queue", "hello"];
        all.extend_from_slice(args);
        let out = s.cojobs(&all);
        out.fails(2, msg);
        assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
        assert_eq!(s.int("SELECT count(*) FROM cm_co_jobs"), 1, "{args:?}");
    }
    // The ends of every range are accepted.
    s.queue(&[
        "hello",
        "--timeout",
        "604800",
        "--fuel",
        "1000000000000000",
        "--memory",
        "4096",
        "--retry-interval",
        "315360000",
        "--requeue-interval",
        "0",
        "--max-retry",
        "1000000",
        "--delay",
        "3650d",
    ]);

    // `queue --from`: the line is named, nothing of the file is written.
    let file = s.env.dir.path().join("jobs.jsonl");
    std::fs::write(
        &file,
        "{\"type\":\"hello\"}\n{\"type\":\"hello\",\"timeout\":9223372036854775807}\n",
    )
    .expect("write jobs");
    let out = s.cojobs(&["queue", "--from", file.to_str().expect("utf-8")]);
    out.fails(
        2,
        "jobs.jsonl:2: timeout 9223372036854775807 is out of range: 1 to 604800 seconds",
    );
    std::fs::write(&file, "{\"type\":\"hello\",\"retry_interval\":-1}\n").expect("write");
    s.cojobs(&["queue", "--from", file.to_str().expect("utf-8")])
        .fails(2, "jobs.jsonl:1: retry_interval -1 is out of range");
    assert_eq!(s.int("SELECT count(*) FROM cm_co_jobs"), 2);

    // The runner's and exec's defaults, the runner's lease and grace.
    for args in [
        &["run", "--once", "--timeout", "604801"][..],
        &["run", "--once", "--lease", "86401"][..],
        &["run", "--once", "--grace", "-1"][..],
        &["exec", "hello", "--timeout", "9223372036854775807"][..],
    ] {
        let out = s.cojobs(args);
        out.fails(2, "is out of range");
        assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
    }
    assert_eq!(
        s.int("SELECT count(*) FROM cm_co_jobs WHERE status <> 'Q'"),
        0
    );
}

/// Issue 10, finding 2a: limits written by someone else (a row inserted by
/// plain SQL, a plugin's side file) are clamped into their ranges with a
/// warning naming the job or side file, the value and what is used. The
/// row with `timeout_secs` 9223372036854775807 used to panic its job's task
/// and stay `GO`.
#[test]
fn issue_10_2a_out_of_range_limits_of_rows_and_side_files_are_clamped() {
    let s = Setup::new(&["hello", "noop"]);
    std::fs::write(
        s.plugins.path().join("noop.toml"),
        "timeout_secs = 9223372036854775807\nmemory_mib = 99999\n",
    )
    .expect("side file");
    let queued = s.cojobs(&["queue", "noop"]);
    let noop: i64 = queued.ok().trim().parse().expect("id");
    assert!(
        queued
            .stderr
            .contains("noop.toml: timeout 9223372036854775807 is out of range"),
        "queue did not warn: {queued:#?}"
    );
    s.conn()
        .execute(
            "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, fuel_limit, \
             memory_limit_mib, timeout_secs) \
             VALUES (1, 'hello', 'Q', datetime('now'), 9223372036854775807, 999999, \
             9223372036854775807)",
            [],
        )
        .expect("insert");
    let hello = s.int("SELECT max(id) FROM cm_co_jobs");
    let run = s.run_ok(&["--once"]);
    assert_eq!(s.status(hello), "OK", "{}\n{run:#?}", s.dump());
    assert_eq!(s.status(noop), "OK", "{}\n{run:#?}", s.dump());
    for want in [
        format!(
            "job {hello}: timeout 9223372036854775807 is out of range: 1 to 604800 seconds (7 days); using 604800"
        ),
        format!("job {hello}: memory 999999 is out of range: 1 to 4096 MiB; using 4096"),
        format!("job {hello}: fuel 9223372036854775807 is out of range"),
        "noop.toml: timeout 9223372036854775807 is out of range: 1 to 604800 seconds (7 days); using 604800"
            .to_string(),
        "noop.toml: memory 99999 is out of range: 1 to 4096 MiB; using 4096".to_string(),
    ] {
        assert!(run.stderr.contains(&want), "no warning {want:?}: {run:#?}");
    }
}

// ------------------------------------------------------------- finding 8

/// Issue 10, finding 8: what a plugin writes (progress, log, history,
/// stdout, stderr, summary) reaches `exec`'s terminal escaped, never as
/// escape sequences.
#[test]
fn issue_10_8_exec_shows_a_plugins_control_characters_escaped() {
    let s = Setup::new(&["escapes"]);
    let params = serde_json::json!({ "text": JUNK }).to_string();
    let out = s.cojobs(&["exec", "escapes", "--params", &params]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_inert("exec's stdout", &out.stdout);
    assert_inert("exec's stderr", &out.stderr);
    assert!(
        out.stdout.contains(&format!("OK: summary {SHOWN}")),
        "{out:#?}"
    );
    for want in [
        format!("progress 50% {SHOWN}"),
        format!("[info] {SHOWN}"),
        format!("history NT key {SHOWN}"),
        format!("stdout {SHOWN}"),
        format!("stderr {SHOWN}"),
    ] {
        assert!(
            out.stderr.contains(&want),
            "stderr lacks {want:?}: {out:#?}"
        );
    }
}

/// Issue 10, finding 8: the rows a plugin (or anyone writing the database)
/// filled with escape sequences are stored as they came and shown escaped
/// by `show`, `list`, `history` and `watch`; `--json` escapes them as JSON
/// does.
#[test]
fn issue_10_8_show_list_history_and_watch_show_control_characters_escaped() {
    let s = Setup::new(&["escapes"]);
    let params = serde_json::json!({ "text": JUNK }).to_string();
    let id = s.queue(&["escapes", "--params", &params, "--summary", JUNK]);
    s.run_ok(&["--once"]);
    assert_eq!(s.status(id), "OK", "{}", s.dump());
    // Stored as they came.
    assert_eq!(
        s.text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
        )),
        Some(format!("summary {JUNK}"))
    );
    // A row queued (its register summary shown by `list`) and one running
    // (its status line shown by `watch`), written by plain SQL.
    s.conn()
        .execute(
            "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, register_summary) \
             VALUES (1, 'escapes', 'Q', datetime('now'), ?1)",
            [JUNK],
        )
        .expect("insert");
    s.conn()
        .execute(
            "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, start_time, \
             status_line, runner_id, lease_expires_at) \
             VALUES (1, 'escapes', 'GO', datetime('now'), datetime('now'), ?1, 'elsewhere', \
             datetime('now', '+1 day'))",
            [JUNK],
        )
        .expect("insert");

    let id_text = id.to_string();
    let show = s.cojobs(&["show", &id_text]);
    assert_inert("show", show.ok());
    for want in [
        format!("summary {SHOWN}"),
        format!("[info] {SHOWN}"),
        format!("stdout {SHOWN}"),
    ] {
        assert!(
            show.stdout.contains(&want),
            "show lacks {want:?}: {show:#?}"
        );
    }
    let list = s.cojobs(&["list"]);
    assert_inert("list", list.ok());
    assert!(
        list.stdout.contains(&format!("summary {SHOWN}")),
        "{list:#?}"
    );
    assert!(list.stdout.contains(SHOWN), "{list:#?}");
    let history = s.cojobs(&["history", &id_text]);
    assert_inert("history", history.ok());
    assert!(history.stdout.contains(SHOWN), "{history:#?}");
    let watch = s.cojobs(&["watch", "--once"]);
    assert_inert("watch", watch.ok());
    assert!(watch.stdout.contains(SHOWN), "{watch:#?}");

    // JSON escapes the control characters its own way.
    for args in [
        &["show", &id_text, "--json"][..],
        &["list", "--json"][..],
        &["history", &id_text, "--json"][..],
    ] {
        let out = s.cojobs(args);
        assert_inert("--json", out.ok());
        assert!(
            out.stdout.contains("\\u001b]0;title\\u0007\\u001b[2J"),
            "{args:?}: {out:#?}"
        );
    }
}

// ------------------------------------------------------------ finding 11

/// The compiled-code cache directory of a setup.
fn cache_dir(s: &Setup) -> PathBuf {
    s.plugins.path().join(".cache")
}

/// The cache entry of plugin `name` (there must be exactly one).
fn entry(dir: &Path, name: &str) -> PathBuf {
    let prefix = format!("{name}-");
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".cwasm"))
        })
        .collect();
    assert_eq!(found.len(), 1, "cache entries of {name}: {found:?}");
    found.into_iter().next().expect("one entry")
}

/// Issue 10, finding 11: a cache directory others may write is not used:
/// a warning says why, the job runs (compiled), nothing is written there.
#[test]
fn issue_10_11_a_world_writable_cache_directory_is_not_used() {
    let s = Setup::new(&["hello"]);
    let dir = cache_dir(&s);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let id = s.queue(&["hello", "--no-check"]);
    let run = s.run_ok(&["--once"]);
    assert_eq!(s.status(id), "OK", "{}", s.dump());
    assert!(
        run.stderr.contains(&format!(
            "not using the compiled-code cache {}: it is writable by group or others (mode 777)",
            dir.display()
        )),
        "{run:#?}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).expect("read dir").count(),
        0,
        "something was written to the refused cache directory"
    );
}

/// Issue 10, finding 11: an entry is verified on the bytes read through
/// its one open descriptor before wasmtime maps them. Another plugin's
/// (valid) entry swapped in used to be loaded and run in place of the
/// plugin; a corrupted one would have been mapped as native code. Both
/// are now compiled afresh, with a warning, and the entry rewritten.
#[test]
fn issue_10_11_a_swapped_or_corrupted_cache_entry_is_compiled_again() {
    let s = Setup::new(&["hello", "noop"]);
    let first = [s.queue(&["hello"]), s.queue(&["noop"])];
    s.run_ok(&["--once"]);
    for id in first {
        assert_eq!(s.status(id), "OK", "{}", s.dump());
    }
    let dir = cache_dir(&s);
    let (hello, noop) = (entry(&dir, "hello"), entry(&dir, "noop"));
    let finish = |id: i64| {
        s.text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
        ))
        .unwrap_or_default()
    };

    // hello's entry under noop's name: noop must still run noop.
    std::fs::copy(&hello, &noop).expect("swap");
    let id = s.queue(&["noop", "--no-check"]);
    let run = s.run_ok(&["--once"]);
    assert_eq!(s.status(id), "OK", "{}", s.dump());
    assert_eq!(finish(id), "", "noop ran hello's code: {run:#?}");
    assert!(
        run.stderr.contains("compiled from another component"),
        "{run:#?}"
    );
    assert_ne!(
        std::fs::read(&noop).expect("read"),
        std::fs::read(&hello).expect("read"),
        "the swapped entry was not rewritten"
    );

    // A flipped byte in hello's compiled code.
    let mut bytes = std::fs::read(&hello).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&hello, &bytes).expect("corrupt");
    let id = s.queue(&["hello", "--no-check"]);
    let run = s.run_ok(&["--once"]);
    assert_eq!(s.status(id), "OK", "{}", s.dump());
    assert_eq!(finish(id), "hello, world");
    assert!(
        run.stderr
            .contains("its contents changed after it was written"),
        "{run:#?}"
    );
    assert_ne!(std::fs::read(&hello).expect("read"), bytes, "not rewritten");
}
