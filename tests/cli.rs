//! Integration tests: the real `cojobs` binary against a real database file.
//!
//! These test the queue and the store, not plugins: jobs are queued with
//! `--no-check`, so no plugin is needed (`tests/plugins_cli.rs` tests the
//! checks against real components).

mod util;

use util::Env;

#[test]
fn issue_example_queue_prints_id_alone() {
    let env = Env::new();
    let run = env.run(&[
        "queue",
        "--no-check",
        "hello",
        "--params",
        r#"{"name":"Ada"}"#,
        "--mode",
        "fast",
        "--co",
        "1",
        "--retry-interval",
        "60",
        "--max-retry",
        "3",
        "--requeue-interval",
        "3600",
        "--delay",
        "10",
        "--summary",
        "nightly hello",
    ]);
    assert_eq!(run.ok(), "1\n");
    let conn = env.conn();
    let row: (String, String, String, i64, i64, i64, String, String, i64) = conn
        .query_row(
            "SELECT job_type, job_mode, job_params, retry_interval, max_retry, requeue_interval, \
                    register_summary, status, start_after_time > queue_time FROM cm_co_jobs WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .expect("row");
    assert_eq!(
        row,
        (
            "hello".into(),
            "fast".into(),
            r#"{"name":"Ada"}"#.into(),
            60,
            3,
            3600,
            "nightly hello".into(),
            "Q".into(),
            1
        )
    );
    assert_eq!(env.queue(&["--no-check", "hello"]), 2);
}

#[test]
fn list_table_and_json() {
    let env = Env::new();
    env.queue(&["--no-check", "hello", "--summary", "first"]);
    env.queue(&["--no-check", "other"]);
    let out = env.run(&["list", "--status", "Q", "--type", "hello"]);
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("ID"), "{text}");
    assert!(
        lines[1].contains("hello") && lines[1].contains("first"),
        "{text}"
    );
    assert_eq!(
        lines[0].find("TYPE"),
        lines[1].find("hello"),
        "not aligned:\n{text}"
    );

    let json = env.run(&["list", "--json"]);
    let rows: Vec<serde_json::Value> = json
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], 2);
    assert_eq!(rows[1]["job_type"], "hello");
    assert_eq!(rows[1]["status"], "Q");
    assert_eq!(env.run(&["list", "--status", "OK"]).ok().lines().count(), 1);
    assert_eq!(
        env.run(&["list", "--limit", "1", "--json"])
            .ok()
            .lines()
            .count(),
        1
    );
    assert_eq!(
        env.run(&["list", "--co", "1", "--json"])
            .ok()
            .lines()
            .count(),
        2
    );
}

#[test]
fn show_text_and_json() {
    let env = Env::new();
    let id = env.queue(&[
        "--no-check",
        "hello",
        "--params",
        r#"{"a":1}"#,
        "--fuel",
        "1000",
    ]);
    env.sql(&format!(
        "INSERT INTO cm_co_job_history_records (co_job_id, record_key, comment, status, created) \
         VALUES ({id}, 'person-7', 'synced', 'OK', datetime('now'));"
    ));
    let text = env.run(&["show", &id.to_string()]).ok().to_string();
    for want in [
        "job_type",
        "hello",
        "fuel_limit",
        "1000",
        "queued_by",
        "ada",
        "history records:",
        "person-7",
        "synced",
        "retry chain:",
        &format!("{id}*"),
        "log:",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(env.run(&["show", &id.to_string(), "--json"]).ok()).expect("json");
    assert_eq!(json["job"]["id"], id);
    assert_eq!(json["job"]["job_params"], r#"{"a":1}"#);
    assert_eq!(json["history"][0]["comment"], "synced");
    assert_eq!(json["chain"][0]["id"], id);
}

#[test]
fn cancel_queued_then_again() {
    let env = Env::new();
    let id = env.queue(&["--no-check", "hello", "--retry-interval", "5"]);
    let run = env.run(&["cancel", &id.to_string()]);
    assert!(run.ok().contains("canceled"));
    assert_eq!(
        env.text("SELECT status FROM cm_co_jobs").as_deref(),
        Some("CX")
    );
    assert_eq!(
        env.text("SELECT finish_summary FROM cm_co_jobs").as_deref(),
        Some("canceled by ada")
    );
    assert_eq!(
        env.scalar("SELECT complete_time IS NOT NULL FROM cm_co_jobs"),
        1
    );
    let again = env.run(&["cancel", &id.to_string()]);
    again.fails(2, &format!("job {id} already ended (CX)"));
    assert_eq!(env.job_count(), 1);
}

#[test]
fn cancel_running_requests_stop() {
    let env = Env::new();
    let id = env.queue(&["--no-check", "hello"]);
    // Started (a claimed row that has not started ends CX at once).
    env.sql("UPDATE cm_co_jobs SET status = 'GO', runner_id = 'r1', start_time = datetime('now')");
    let run = env.run(&["cancel", &id.to_string()]);
    assert!(run.ok().contains("asked its runner to stop"), "{run:?}");
    assert_eq!(
        env.text("SELECT status FROM cm_co_jobs").as_deref(),
        Some("GO")
    );
    assert_eq!(
        env.text("SELECT cancel_requested_by FROM cm_co_jobs")
            .as_deref(),
        Some("ada")
    );
}

#[test]
fn plain_sql_row_is_listed_shown_and_cancelable() {
    let env = Env::new();
    env.run(&["co", "list"]).ok(); // creates and migrates the db
    env.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
         VALUES (1, 'hello', '{}', 'Q', datetime('now'));
         INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
         VALUES (1, 'hello', NULL, 'Q', datetime('now'));",
    );
    let list = env.run(&["list", "--status", "Q"]);
    assert_eq!(list.ok().lines().count(), 3, "{list:?}");
    assert!(env.run(&["show", "1"]).ok().contains("hello"));
    assert!(
        env.run(&["show", "2", "--json"])
            .ok()
            .contains(r#""job_params":null"#)
    );
    env.run(&["cancel", "2"]).ok();
    assert_eq!(
        env.text("SELECT status FROM cm_co_jobs WHERE id = 2")
            .as_deref(),
        Some("CX")
    );
    assert_eq!(env.run(&["history", "1"]).ok().lines().count(), 1);
}

#[test]
fn unique_refuses_duplicate_with_exit_3() {
    let env = Env::new();
    let id = env.queue(&[
        "--no-check",
        "hello",
        "--params",
        r#"{"a":1,"b":2}"#,
        "--unique",
    ]);
    let dup = env.run(&[
        "queue",
        "--no-check",
        "hello",
        "--params",
        r#"{"b":2, "a":1}"#,
        "--unique",
    ]);
    dup.fails(
        3,
        &format!("job {id} with the same CO, type, mode and params"),
    );
    assert_eq!(dup.stdout, format!("{id}\n"));
    assert_eq!(env.job_count(), 1);
    // Without --unique, or with another mode, a new row.
    env.queue(&[
        "--no-check",
        "hello",
        "--params",
        r#"{"a":1,"b":2}"#,
        "--unique",
        "--mode",
        "m",
    ]);
    env.queue(&["--no-check", "hello", "--params", r#"{"a":1,"b":2}"#]);
    assert_eq!(env.job_count(), 3);
}

#[test]
fn start_after_forms() {
    let env = Env::new();
    env.queue(&[
        "--no-check",
        "hello",
        "--start-after",
        "2030-01-02T03:04:05Z",
    ]);
    env.queue(&[
        "--no-check",
        "hello",
        "--start-after",
        "2030-01-02 05:04:05+02:00",
    ]);
    env.queue(&[
        "--no-check",
        "hello",
        "--start-after",
        "2030-01-02 03:04:05",
    ]);
    let conn = env.conn();
    let mut stmt = conn
        .prepare("SELECT DISTINCT start_after_time FROM cm_co_jobs")
        .expect("prepare");
    let times: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(times, vec!["2030-01-02 03:04:05.000".to_string()]);
}

#[test]
fn history_prune_and_cos() {
    let env = Env::new();
    assert_eq!(
        env.run(&["co", "add", "research", "--description", "lab"])
            .ok(),
        "2\n"
    );
    let cos = env.run(&["co", "list"]).ok().to_string();
    assert!(
        cos.contains("default") && cos.contains("research") && cos.contains("lab"),
        "{cos}"
    );
    env.run(&["co", "add", "research"])
        .fails(2, "a CO named 'research' already exists");

    let old = env.queue(&["--no-check", "hello", "--co", "2"]);
    let recent = env.queue(&["--no-check", "hello"]);
    let live = env.queue(&["--no-check", "hello"]);
    env.sql(&format!(
        "UPDATE cm_co_jobs SET status = 'OK', complete_time = '2000-01-01 00:00:00' WHERE id = {old};
         UPDATE cm_co_jobs SET status = 'X', complete_time = datetime('now') WHERE id = {recent};
         INSERT INTO cm_co_job_history_records (co_job_id, comment, status) VALUES ({old}, 'c', 'OK');"
    ));
    assert_eq!(
        env.run(&["history", &old.to_string()]).ok().lines().count(),
        2
    );
    assert_eq!(env.run(&["prune", "--older-than", "30d"]).ok(), "1\n");
    assert_eq!(env.job_count(), 2);
    assert_eq!(
        env.scalar("SELECT count(*) FROM cm_co_job_history_records"),
        0
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM cm_co_jobs WHERE id = {live}"
        )),
        1
    );
    assert_eq!(env.run(&["prune", "--older-than", "30d"]).ok(), "0\n");
}

#[test]
fn global_options_from_env_and_after_subcommand() {
    let env = Env::new();
    let other = env.dir.path().join("other.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cojobs"))
        .args(["queue", "--no-check", "hello"])
        .env("COJOBS_DB", &other)
        .current_dir(env.dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(other.exists());
    assert!(!env.db.exists());
}

/// Every bad input: a clear message, the right exit code, nothing written.
#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let env = Env::new();
    env.queue(&["--no-check", "hello"]);
    let long = "a".repeat(65);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // Regression (found by the binary queue property in tests/model.rs):
        // a delay past chrono's range panicked instead of being refused.
        (
            vec![
                "queue",
                "--no-check",
                "hello",
                "--delay",
                "10000000000000000",
            ],
            2,
            "--delay 10000000000000000 is out of range: 0 to 315360000 seconds",
        ),
        (
            vec!["queue", "--no-check", "hello", "--params", "{nope"],
            2,
            "job params are not valid JSON",
        ),
        (
            vec!["queue", "--no-check", "hello", "--params", "[1,2]"],
            2,
            "job params must be a JSON object, not an array",
        ),
        (
            vec!["queue", "--no-check", "hello", "--params", "\"x\""],
            2,
            "must be a JSON object, not a string",
        ),
        (
            vec!["queue", "--no-check", "../x"],
            2,
            "invalid job type '../x'",
        ),
        (vec!["queue", "--no-check", ""], 2, "invalid job type ''"),
        (vec!["queue", "--no-check", &long], 2, "invalid job type"),
        (
            vec!["queue", "--no-check", "hello", "--co", "9"],
            2,
            "no CO 9",
        ),
        (
            vec!["queue", "--no-check", "hello", "--retry-interval", "-1"],
            2,
            "--retry-interval -1 is out of range: 0 to 315360000 seconds",
        ),
        (
            vec!["queue", "--no-check", "hello", "--requeue-interval", "-5"],
            2,
            "--requeue-interval -5 is out of range",
        ),
        (
            vec!["queue", "--no-check", "hello", "--max-retry", "-1"],
            2,
            "--max-retry -1 is out of range: 0 to 1000000 retries",
        ),
        (
            vec!["queue", "--no-check", "hello", "--fuel", "-1"],
            2,
            "--fuel -1 is out of range",
        ),
        (
            vec!["queue", "--no-check", "hello", "--delay", "-3"],
            2,
            "invalid duration '-3'",
        ),
        (
            vec!["queue", "--no-check", "hello", "--start-after", "tomorrow"],
            2,
            "cannot read time 'tomorrow'",
        ),
        (
            vec![
                "queue",
                "--no-check",
                "hello",
                "--start-after",
                "2030-01-01",
                "--delay",
                "5",
            ],
            2,
            "cannot be used with",
        ),
        (
            vec![
                "queue",
                "--no-check",
                "hello",
                "--mode",
                "abcdefghijklmnopq",
            ],
            2,
            "longer than 16",
        ),
        (
            vec!["queue", "--no-check", "hello", "--retry-interval", "soon"],
            2,
            "invalid value 'soon'",
        ),
        // Limits the sandbox cannot honour, checked with or without --no-check.
        (
            vec!["queue", "--no-check", "hello", "--memory", "4097"],
            2,
            "--memory 4097 is out of range: 1 to 4096 MiB",
        ),
        (
            vec!["queue", "hello", "--memory", "0"],
            2,
            "--memory 0 is out of range: 1 to 4096 MiB",
        ),
        (
            vec!["queue", "hello", "--fuel", "0"],
            2,
            "--fuel 0 is out of range: 1 to",
        ),
        (
            vec!["queue", "hello", "--timeout", "0"],
            2,
            "--timeout 0 is out of range: 1 to 604800 seconds",
        ),
        (vec!["list", "--status", "Z"], 2, "unknown job status 'Z'"),
        (vec!["show", "99"], 2, "no job 99"),
        (vec!["cancel", "99"], 2, "no job 99"),
        (vec!["history", "99"], 2, "no job 99"),
        (
            vec!["prune", "--older-than", "30x"],
            2,
            "invalid duration '30x'",
        ),
        (
            vec!["prune", "--older-than", "-1d"],
            2,
            "invalid duration '-1d'",
        ),
        (vec!["queue"], 2, "required"),
        (vec!["frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, code, msg) in cases {
        let run = env.run(&args);
        assert_eq!(run.code, code, "{args:?}: {run:#?}");
        assert!(
            run.stderr.contains(msg),
            "{args:?}: stderr lacks {msg:?}: {run:#?}"
        );
        if code == 2 && !run.stderr.starts_with("error:") {
            assert!(run.stderr.starts_with("cojobs: "), "{args:?}: {run:#?}");
        }
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
        assert_eq!(env.job_count(), 1, "{args:?} wrote a row");
    }
    assert_eq!(env.scalar("SELECT count(*) FROM cm_cos"), 1);
}

#[test]
fn long_summary_is_cut_not_refused() {
    let env = Env::new();
    let summary = "ü".repeat(300);
    let id = env.queue(&["--no-check", "hello", "--summary", &summary]);
    let stored = env
        .text(&format!(
            "SELECT register_summary FROM cm_co_jobs WHERE id = {id}"
        ))
        .expect("summary");
    assert_eq!(stored.chars().count(), 256);
}

/// Issue 11: a PostgreSQL connection string given to a command selects the
/// PostgreSQL driver (never taken for a file name): a server that is not
/// there is a clear error (exit 1) naming where it looked, its password is
/// not repeated, and nothing is written. (Commands against a real server:
/// `tests/postgres_cli.rs`.)
#[test]
fn postgres_url_selects_the_postgres_driver() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 9 (discard): nothing listens there.
    for db in [
        "postgres://ada:s3cret@127.0.0.1:9/jobs",
        "postgresql://127.0.0.1:9/jobs",
        "host=127.0.0.1 port=9 dbname=jobs password=s3cret",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cojobs"))
            .args(["list", "--db", db])
            .current_dir(dir.path())
            .env_remove("COJOBS_DB")
            .output()
            .expect("run cojobs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{db}: {stderr}");
        assert!(
            stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:9/jobs"),
            "{db}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{db}: {stderr}");
    }
    // A malformed one is bad usage (exit 2), password not repeated either.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cojobs"))
        .args([
            "list",
            "--db",
            "postgres://ada:s3cret@127.0.0.1:99999999/jobs",
        ])
        .current_dir(dir.path())
        .env_remove("COJOBS_DB")
        .output()
        .expect("run cojobs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

/// `migrate --status` says a SQLite file is behind and leaves it so.
#[test]
fn migrate_status_leaves_a_file_behind_as_it_is() {
    let env = Env::new();
    env.run(&["migrate"]).ok();
    let latest = env.scalar("PRAGMA user_version");
    assert!(latest >= 2, "{latest}");
    // Mark the file one migration behind (the status reads user_version).
    env.sql(&format!("PRAGMA user_version = {}", latest - 1));
    let status = env.run(&["migrate", "--status"]);
    assert!(status.ok().contains("1 migration(s) pending"), "{status:?}");
    assert_eq!(
        env.scalar("PRAGMA user_version"),
        latest - 1,
        "migrate --status changed the schema"
    );
}
