//! The plugin-facing commands through the real binary and real components:
//! `cojobs exec`, `cojobs plugins`, and the queue-time checks of mode and
//! params against what a plugin declares.
//!
//! The components are built by `scripts/build-plugins.sh` into `plugins/`;
//! each test copies the ones it needs into `plugins/` in its own temporary
//! directory (the binary's working directory, so `--plugins` keeps its
//! default).

mod util;

use std::path::{Path, PathBuf};

use util::{Env, Run};

fn built_plugins() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    assert!(
        dir.join("hello.wasm").is_file() && dir.join("echo.wasm").is_file(),
        "example plugins are missing: run scripts/build-plugins.sh (the README's test command does)"
    );
    dir
}

/// An `Env` whose `plugins/` holds copies of the named plugins.
fn env_with(names: &[&str]) -> Env {
    let env = Env::new();
    let dir = env.dir.path().join("plugins");
    std::fs::create_dir(&dir).expect("plugins dir");
    for n in names {
        std::fs::copy(
            built_plugins().join(format!("{n}.wasm")),
            dir.join(format!("{n}.wasm")),
        )
        .expect("copy plugin");
    }
    env
}

/// Assert a failed `exec` run: exit 1, the outcome line on stdout, and no
/// second report of it on stderr.
#[track_caller]
fn exec_failed(run: &Run, outcome: &str) {
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains(outcome),
        "stdout lacks {outcome:?}: {run:#?}"
    );
    assert!(run.stdout.contains("fuel used: "), "{run:#?}");
    assert!(!run.stderr.contains("cojobs: "), "{run:#?}");
}

// ------------------------------------------------------------------ exec

#[test]
fn exec_hello_shows_progress_history_and_summary() {
    let env = env_with(&["hello"]);
    let run = env.run(&["exec", "hello", "--params", r#"{"name":"Ada"}"#]);
    let out = run.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "OK: hello, Ada", "{run:#?}");
    assert!(lines[1].starts_with("fuel used: "), "{run:#?}");
    for want in [
        "progress 0% starting",
        "progress 50% greeting Ada",
        "history GO Ada greeting started",
        "history OK Ada greeted Ada",
        "progress 100% done",
    ] {
        assert!(run.stderr.contains(want), "stderr lacks {want:?}: {run:#?}");
    }
    // No database: exec does not create one.
    assert!(!env.db.exists());
}

#[test]
fn exec_runaway_stops_at_its_fuel_budget() {
    let env = env_with(&["runaway"]);
    let run = env.run(&["exec", "runaway", "--fuel", "100000000"]);
    exec_failed(&run, "X: fuel budget of 100000000 exhausted (retryable)");
    assert!(
        run.stdout.contains("fuel used: 100000000 of 100000000"),
        "{run:#?}"
    );
}

#[test]
fn exec_panic_shows_the_panic_message() {
    let env = env_with(&["panic"]);
    let run = env.run(&["exec", "panic"]);
    exec_failed(&run, "X: plugin panicked: boom (retryable)");
    // What the guest wrote to stderr is shown too.
    assert!(run.stderr.contains("--- plugin output ---"), "{run:#?}");
}

#[test]
fn exec_memhog_hits_its_memory_limit() {
    let env = env_with(&["memhog"]);
    let run = env.run(&["exec", "memhog", "--memory", "32"]);
    exec_failed(&run, "memory limit of 32 MiB exceeded");
}

#[test]
fn exec_sleepy_times_out() {
    let env = env_with(&["sleepy"]);
    let run = env.run(&["exec", "sleepy", "--timeout", "1"]);
    exec_failed(&run, "X: timed out after 1 s (retryable)");
}

#[test]
fn exec_discard_says_it_is_not_retried() {
    let env = env_with(&["discard"]);
    let run = env.run(&["exec", "discard"]);
    exec_failed(&run, "X: bad input: this job can never succeed (discarded)");
}

#[test]
fn exec_a_component_file() {
    // No plugins folder at all: the file is all it needs.
    let env = Env::new();
    let file = built_plugins().join("hello.wasm");
    let file = file.to_str().expect("utf-8 path");
    let run = env.run(&["exec", file, "--mode", "fast"]);
    assert_eq!(run.ok().lines().next(), Some("OK: hello, world (fast)"));
    assert!(!env.dir.path().join("plugins").exists());
}

#[test]
fn exec_unknown_plugin_fails_to_load() {
    let env = env_with(&[]);
    env.run(&["exec", "nope"])
        .fails(1, "cojobs: no plugin named 'nope' in plugins");
}

#[test]
fn exec_refuses_a_bad_mode_or_params_unless_no_check() {
    let env = env_with(&["hello", "echo"]);
    for (args, msg) in [
        (
            vec!["exec", "hello", "--mode", "turbo"],
            "plugin 'hello' has no mode 'turbo' (modes: fast, slow)",
        ),
        (
            vec!["exec", "echo"],
            "parameter 'target' is required by plugin 'echo'",
        ),
        (
            vec!["exec", "echo", "--params", r#"{"target":"a","count":"x"}"#],
            "parameter 'count' must be integer",
        ),
    ] {
        let run = env.run(&args);
        run.fails(2, msg);
        assert!(run.stdout.is_empty(), "ran anyway: {run:#?}");
        assert!(!run.stderr.contains("progress"), "ran anyway: {run:#?}");
    }
    let run = env.run(&["exec", "hello", "--mode", "turbo", "--no-check"]);
    assert_eq!(run.ok().lines().next(), Some("OK: hello, world (turbo)"));
}

#[test]
fn exec_passes_defaults_and_shows_logs_and_output() {
    let env = env_with(&["echo"]);
    let run = env.run(&[
        "exec",
        "echo",
        "--params",
        r#"{"target":"Ada","verbose":true}"#,
    ]);
    let params = r#"{"count":3,"level":"low","target":"Ada","verbose":true}"#;
    assert_eq!(
        run.ok().lines().next(),
        Some(format!("OK: {params}").as_str())
    );
    assert!(run.stderr.contains("[info] target = \"Ada\""), "{run:#?}");
    assert!(run.stderr.contains("[info] count = 3"), "{run:#?}");
    // The plugin's stdout comes after the header, the log lines only once.
    let (_, output) = run
        .stderr
        .split_once("--- plugin output ---\n")
        .expect("output header");
    assert_eq!(output, format!("echo: {params}\n"));
}

#[test]
fn exec_bad_limits_are_usage_errors() {
    let env = env_with(&["hello"]);
    for args in [
        vec!["exec", "hello", "--fuel", "0"],
        vec!["exec", "hello", "--memory", "4097"],
        vec!["exec", "hello", "--timeout", "0"],
        vec!["exec", "hello", "--params", "[1]"],
    ] {
        let run = env.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
    }
}

// --------------------------------------------------------------- plugins

#[test]
fn plugins_lists_each_plugin_and_broken_ones() {
    let env = env_with(&["hello", "echo", "otherworld"]);
    std::fs::write(env.dir.path().join("plugins/broken.wasm"), "garbage").expect("write");
    let run = env.run(&["plugins"]);
    let out = run.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("VERSION"),
        "{out}"
    );
    let hello = lines
        .iter()
        .find(|l| l.starts_with("hello "))
        .expect("hello row");
    assert!(
        hello.contains("0.1.0") && hello.contains("Greets someone, with progress and history."),
        "{out}"
    );
    let broken = lines
        .iter()
        .find(|l| l.starts_with("broken "))
        .expect("broken row");
    assert!(
        broken.contains("error: ") && broken.contains("not a WebAssembly file"),
        "{out}"
    );
    let other = lines
        .iter()
        .find(|l| l.starts_with("otherworld "))
        .expect("otherworld row");
    assert!(
        other.contains("does not implement cojobs:plugin/plugin@0.1.0"),
        "{out}"
    );

    let json = env.run(&["plugins", "--json"]);
    let rows: Vec<serde_json::Value> = json
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["plugin"], "broken");
    assert!(rows[0]["error"].is_string());
    assert_eq!(rows[2]["description"]["version"], "0.1.0");

    // Asked for by name, a broken plugin is the command's failure.
    env.run(&["plugins", "broken"])
        .fails(1, "not a WebAssembly file");
    env.run(&["plugins", "nope"])
        .fails(1, "no plugin named 'nope' in plugins");
}

#[test]
fn plugins_name_shows_modes_and_parameters() {
    let env = env_with(&["hello", "echo"]);
    let out = env.run(&["plugins", "hello"]).ok().to_string();
    for want in [
        "name:         hello",
        "version:      0.1.0",
        "modes:        fast, slow",
        "parameters:",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let row = out
        .lines()
        .find(|l| l.starts_with("name "))
        .expect("parameter row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["name", "text", "no", "\"world\"", "-"],
        "{out}"
    );
    assert!(row.ends_with("Who to greet"), "{out}");

    let echo = env.run(&["plugins", "echo"]).ok().to_string();
    assert!(echo.contains("modes:        (none)"), "{echo}");
    assert!(
        echo.lines()
            .any(|l| l.starts_with("level ") && l.contains("low, high")),
        "{echo}"
    );
    assert!(
        echo.lines()
            .any(|l| l.split_whitespace().take(3).eq(["target", "text", "yes"])),
        "{echo}"
    );
}

#[test]
fn plugins_name_json_is_the_description() {
    let env = env_with(&["hello"]);
    let run = env.run(&["plugins", "hello", "--json"]);
    let d: serde_json::Value = serde_json::from_str(run.ok()).expect("json");
    assert_eq!(d["name"], "hello");
    assert_eq!(d["modes"], serde_json::json!(["fast", "slow"]));
    assert_eq!(d["params"][0]["name"], "name");
    assert_eq!(d["params"][0]["kind"], "text");
    assert_eq!(d["params"][0]["default"], "\"world\"");
}

// ----------------------------------------------------------------- queue

/// Every way params or mode can miss what the plugin declares: exit 2, a
/// message naming the parameter or mode, nothing inserted.
#[test]
fn queue_refuses_params_and_modes_the_plugin_does_not_take() {
    let env = env_with(&["hello", "echo"]);
    std::fs::write(env.dir.path().join("plugins/broken.wasm"), "garbage").expect("write");
    env.queue(&["echo", "--params", r#"{"target":"a"}"#]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["queue", "echo"],
            "parameter 'target' is required by plugin 'echo'",
        ),
        (
            vec!["queue", "echo", "--params", r#"{"count":1}"#],
            "parameter 'target' is required by plugin 'echo'",
        ),
        (
            vec!["queue", "echo", "--params", r#"{"target":1}"#],
            "parameter 'target' must be text, got 1",
        ),
        (
            vec!["queue", "echo", "--params", r#"{"target":"a","count":1.5}"#],
            "parameter 'count' must be integer, got 1.5",
        ),
        (
            vec![
                "queue",
                "echo",
                "--params",
                r#"{"target":"a","verbose":"yes"}"#,
            ],
            "parameter 'verbose' must be boolean",
        ),
        (
            vec!["queue", "echo", "--params", r#"{"target":"a","ratio":"x"}"#],
            "parameter 'ratio' must be number",
        ),
        (
            vec![
                "queue",
                "echo",
                "--params",
                r#"{"target":"a","level":"mid"}"#,
            ],
            "parameter 'level' must be one of low, high, got \"mid\"",
        ),
        (
            vec!["queue", "echo", "--params", r#"{"target":"a","zz":1}"#],
            "plugin 'echo' has no parameter 'zz'",
        ),
        (
            vec!["queue", "hello", "--params", r#"{"nmae":"Ada"}"#],
            "plugin 'hello' has no parameter 'nmae' (parameters: name)",
        ),
        (
            vec!["queue", "hello", "--mode", "turbo"],
            "plugin 'hello' has no mode 'turbo' (modes: fast, slow)",
        ),
        (
            vec![
                "queue",
                "echo",
                "--mode",
                "fast",
                "--params",
                r#"{"target":"a"}"#,
            ],
            "plugin 'echo' takes no mode, but mode 'fast' was given",
        ),
        (
            vec!["queue", "nope"],
            "no plugin named 'nope' in plugins (use --no-check to queue it anyway)",
        ),
        (
            vec!["queue", "broken"],
            "not a WebAssembly file (use --no-check to queue it anyway)",
        ),
        (
            vec!["queue", "hello", "--params", "{nope"],
            "job params are not valid JSON",
        ),
    ];
    for (args, msg) in cases {
        let run = env.run(&args);
        run.fails(2, msg);
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
        assert_eq!(env.job_count(), 1, "{args:?} wrote a row");
    }
}

#[test]
fn queue_fills_in_defaults() {
    let env = env_with(&["hello", "echo"]);
    let id = env.queue(&["echo", "--params", r#"{"target":"a","level":"high"}"#]);
    let show: serde_json::Value =
        serde_json::from_str(env.run(&["show", &id.to_string(), "--json"]).ok()).expect("json");
    assert_eq!(
        show["job"]["job_params"],
        r#"{"count":3,"level":"high","target":"a","verbose":false}"#
    );
    let id = env.queue(&["hello"]);
    assert_eq!(
        env.text(&format!(
            "SELECT job_params FROM cm_co_jobs WHERE id = {id}"
        ))
        .as_deref(),
        Some(r#"{"name":"world"}"#)
    );
    // --unique compares the filled-in params: `{}` and the default are one job.
    let twin = env.run(&[
        "queue",
        "hello",
        "--params",
        r#"{"name":"world"}"#,
        "--unique",
    ]);
    twin.fails(3, &format!("job {id} with the same CO"));
}

#[test]
fn queue_issue_example_passes_the_check() {
    let env = env_with(&["hello"]);
    let id = env.queue(&[
        "hello",
        "--params",
        r#"{"name":"Ada"}"#,
        "--mode",
        "fast",
        "--retry-interval",
        "60",
    ]);
    assert_eq!(
        env.text(&format!(
            "SELECT job_params FROM cm_co_jobs WHERE id = {id}"
        ))
        .as_deref(),
        Some(r#"{"name":"Ada"}"#)
    );
}

#[test]
fn queue_unknown_type_needs_no_check() {
    let env = env_with(&["hello"]);
    env.queue(&["hello"]);
    env.run(&["queue", "later", "--params", r#"{"x":1}"#])
        .fails(
            2,
            "no plugin named 'later' in plugins (use --no-check to queue it anyway)",
        );
    assert_eq!(env.job_count(), 1);
    let id = env.queue(&["later", "--params", r#"{"x":1}"#, "--no-check"]);
    assert_eq!(
        env.text(&format!(
            "SELECT job_params FROM cm_co_jobs WHERE id = {id}"
        ))
        .as_deref(),
        Some(r#"{"x":1}"#)
    );
    // --no-check also lets through what the plugin would refuse.
    env.queue(&["hello", "--mode", "turbo", "--no-check"]);
    assert_eq!(env.job_count(), 3);
}

#[test]
fn queue_from_a_jsonl_file_is_all_or_nothing() {
    let env = env_with(&["hello", "echo"]);
    let good = env.dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        concat!(
            r#"{"type":"hello","params":{"name":"Ada"},"mode":"fast"}"#,
            "\n\n",
            r#"{"type":"echo","params":{"target":"x"},"retry_interval":5,"max_retry":1}"#,
            "\n",
            r#"{"type":"hello","delay":3600,"summary":"later"}"#,
            "\n"
        ),
    )
    .expect("write");
    let run = env.run(&["queue", "--from", good.to_str().expect("utf-8")]);
    let ids: Vec<i64> = run
        .ok()
        .lines()
        .map(|l| l.parse().expect("an id per line"))
        .collect();
    assert_eq!(ids.len(), 3, "{run:#?}");
    assert_eq!(env.job_count(), 3);
    // Defaults are filled in per line, as for a single queue.
    assert_eq!(
        env.text(&format!(
            "SELECT job_params FROM cm_co_jobs WHERE id = {}",
            ids[2]
        ))
        .as_deref(),
        Some(r#"{"name":"world"}"#)
    );

    // One bad line (line 3 here: blank lines count) and nothing is written.
    for (body, msg) in [
        (
            "{\"type\":\"hello\"}\n\n{\"type\":\"hello\",\"params\":{\"nmae\":1}}\n",
            "bad.jsonl:3: plugin 'hello' has no parameter 'nmae'",
        ),
        ("{\"type\":\"hello\"}\nnot json\n", "bad.jsonl:2: "),
        ("{\"type\":\"hello\",\"co\":99}\n", "bad.jsonl:1: "),
        ("{\"type\":\"../x\"}\n", "bad.jsonl:1: invalid job type"),
        (
            "{\"type\":\"hello\",\"params\":[1]}\n",
            "bad.jsonl:1: params must be a JSON object",
        ),
        (
            "{\"type\":\"hello\",\"colour\":1}\n",
            "bad.jsonl:1: unknown field `colour`",
        ),
    ] {
        let bad = env.dir.path().join("bad.jsonl");
        std::fs::write(&bad, body).expect("write");
        env.run(&["queue", "--from", bad.to_str().expect("utf-8")])
            .fails(2, msg);
        assert_eq!(env.job_count(), 3, "{msg}");
    }
}

/// `cojobs bench` runs every phase on a small load and reports each figure
/// (the figures themselves are for docs/performance.md, not for tests).
#[test]
fn bench_reports_every_figure() {
    let env = env_with(&["noop", "primes"]);
    let run = env.run(&[
        "bench",
        "--jobs",
        "200",
        "--workers",
        "2",
        "--pickup",
        "2",
        "--delayed",
        "50",
    ]);
    let out = run.ok();
    for want in [
        "queued 50 jobs due tomorrow",
        "queue:        200 jobs",
        "sandbox only: 200 runs",
        "end to end:   200 jobs",
        "rows OK:      200 of 200",
        "queue→start:  p50",
        "queue→finish: p50",
        "pickup:       2 jobs",
        "peak RSS:",
        "machine:      ",
        " cores, load average ",
    ] {
        assert!(out.contains(want), "bench output lacks {want:?}: {run:#?}");
    }
    // Every rate (queue, sandbox only, end to end) has its cost line.
    assert_eq!(
        out.matches(" context switches per job (").count(),
        3,
        "{run:#?}"
    );
    bench_json_has_every_figure(&env);
    let run = env.run(&[
        "bench",
        "--jobs",
        "4",
        "--plugin",
        "primes",
        "--fuel-overhead",
        "--pickup",
        "0",
    ]);
    assert!(run.ok().contains("fuel metering costs"), "{run:#?}");
    env.run(&["bench", "--jobs", "0"])
        .fails(2, "--jobs must be at least 1");
    env.run(&["bench", "--plugin", "no such"])
        .fails(2, "invalid job type");
    env.run(&["bench", "--plugin", "../x.wasm"])
        .fails(2, "cannot read ../x.wasm");
}

/// `bench --json`: one JSON object on stdout, nothing else, with every
/// figure a script compares runs by.
fn bench_json_has_every_figure(env: &Env) {
    let run = env.run(&[
        "bench",
        "--jobs",
        "60",
        "--workers",
        "2",
        "--pickup",
        "1",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(run.ok()).expect("bench --json is JSON");
    let num = |ptr: &str| {
        v.pointer(ptr)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("bench --json lacks the number {ptr}: {v:#}"))
    };
    assert!(
        v.pointer("/machine/cpu_model")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "{v:#}"
    );
    assert!(num("/machine/cores") >= 1.0, "{v:#}");
    assert_eq!(v["job_type"], "noop");
    assert_eq!((num("/jobs"), num("/workers")), (60.0, 2.0));
    assert_eq!((num("/rows_ok"), num("/pickup_jobs")), (60.0, 1.0));
    for phase in ["queue", "sandbox_only", "end_to_end"] {
        assert_eq!(num(&format!("/{phase}/jobs")), 60.0, "{v:#}");
        for field in [
            "seconds",
            "jobs_per_s",
            "us_per_job_per_worker",
            "cpu_us_per_job",
            "user_us_per_job",
            "sys_us_per_job",
            "context_switches_per_job",
            "voluntary_switches_per_job",
            "involuntary_switches_per_job",
        ] {
            assert!(num(&format!("/{phase}/{field}")) >= 0.0, "{phase}.{field}");
        }
        assert!(num(&format!("/{phase}/jobs_per_s")) > 0.0, "{v:#}");
    }
    assert!(num("/end_to_end/cpu_us_per_job") > 0.0, "{v:#}");
    for ptr in [
        "/end_to_end_of_bound",
        "/queue_to_start_s/p50",
        "/queue_to_finish_s/p99",
        "/pickup_ms/p50",
        "/peak_rss_mib",
    ] {
        assert!(num(ptr) > 0.0, "{ptr}: {v:#}");
    }
    assert!(
        v["fuel_off"].is_null() && v["fuel_overhead"].is_null(),
        "{v:#}"
    );
}

// ------------------------------------------------------- Python and JS

/// Python and JavaScript plugins through the commands a user runs: `exec`,
/// and `queue` + `run --once` with retry policies. They use the built
/// plugins directory itself, so its compiled-code cache (warmed by any
/// earlier run) spares recompiling 12–18 MB components per test.
#[test]
fn python_and_javascript_plugins_through_exec_and_the_runner() {
    let plugins = built_plugins();
    let plugins = plugins.to_str().expect("utf-8 path");
    for name in [
        "python-hello",
        "js-hello",
        "python-runaway",
        "js-runaway",
        "python-fetch",
        "js-fetch",
    ] {
        assert!(
            Path::new(plugins).join(format!("{name}.wasm")).is_file(),
            "{name}.wasm is missing: run scripts/build-python-plugins.sh and scripts/build-js-plugins.sh"
        );
    }
    let env = Env::new();
    // Contract 0.2, said by `plugins NAME`.
    for name in ["python-hello", "js-hello", "python-fetch", "js-fetch"] {
        let details = env.run(&["--plugins", plugins, "plugins", name]);
        assert!(
            details.ok().contains("contract:     cojobs:plugin@0.2.0"),
            "{name}: {details:#?}"
        );
    }
    let exec = env.run(&[
        "--plugins",
        plugins,
        "exec",
        "python-hello",
        "--params",
        r#"{"name":"Ada"}"#,
    ]);
    assert!(
        exec.ok().starts_with("OK: hello, Ada from Python"),
        "{exec:#?}"
    );
    let exec = env.run(&[
        "--plugins",
        plugins,
        "exec",
        "js-hello",
        "--params",
        r#"{"name":"Ada"}"#,
    ]);
    assert!(
        exec.ok().starts_with("OK: hello, Ada from JavaScript"),
        "{exec:#?}"
    );

    let q = |args: &[&str]| -> i64 {
        let mut all = vec!["--plugins", plugins, "queue"];
        all.extend_from_slice(args);
        env.run(&all).ok().trim().parse().expect("id")
    };
    let retry = ["--retry-interval", "1", "--max-retry", "1"];
    let py_ok = q(&["python-hello", "--params", r#"{"name":"Grace"}"#]);
    let py_retry = q(&[
        &["python-hello", "--params", r#"{"outcome":"retry"}"#][..],
        &retry[..],
    ]
    .concat());
    let js_discard = q(&[
        &["js-hello", "--params", r#"{"outcome":"discard"}"#][..],
        &retry[..],
    ]
    .concat());
    let py_raise = q(&[
        "python-hello",
        "--params",
        r#"{"outcome":"raise","name":"Bob"}"#,
    ]);
    let js_raise = q(&[
        "js-hello",
        "--params",
        r#"{"outcome":"raise","name":"Eve"}"#,
    ]);
    let py_loop = q(&[&["python-runaway", "--fuel", "1000000000"][..], &retry[..]].concat());
    let js_loop = q(&[&["js-runaway", "--fuel", "1000000000"][..], &retry[..]].concat());
    env.run(&["--plugins", plugins, "run", "--once", "--workers", "2"])
        .ok();

    let row = |id: i64| {
        (
            env.text(&format!("SELECT status FROM cm_co_jobs WHERE id = {id}"))
                .unwrap_or_default(),
            env.text(&format!(
                "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
            ))
            .unwrap_or_default(),
        )
    };
    let retries = |id: i64| {
        env.text(&format!(
            "SELECT count(*) || '' FROM cm_co_jobs WHERE requeued_from_co_job_id = {id}"
        ))
        .unwrap_or_default()
    };
    assert_eq!(row(py_ok), ("OK".into(), "hello, Grace from Python".into()));
    assert_eq!(row(py_retry).0, "X");
    assert_eq!(retries(py_retry), "1", "retry is retried");
    assert_eq!(row(js_discard).0, "X");
    assert_eq!(retries(js_discard), "0", "discard is not");
    let (st, summary) = row(py_raise);
    assert_eq!(st, "X");
    assert!(
        summary.contains("RuntimeError: python exploded: Bob"),
        "{summary}"
    );
    let (st, summary) = row(js_raise);
    assert_eq!(st, "X");
    assert!(summary.contains("js exploded: Eve"), "{summary}");
    for id in [py_loop, js_loop] {
        assert_eq!(
            row(id),
            ("X".into(), "fuel budget of 1000000000 exhausted".into())
        );
        assert_eq!(retries(id), "1", "a runaway loop is retried per policy");
    }
}

// ------------------------------------------------------- contract 0.2

#[test]
fn plugins_say_which_contract_each_implements() {
    let env = env_with(&["hello", "contract"]);
    std::fs::copy(
        built_plugins().join("hello-v01.wasm"),
        env.dir.path().join("plugins/old.wasm"),
    )
    .expect("copy the 0.1 plugin");
    let out = env.run(&["plugins"]).ok().to_string();
    assert!(
        out.lines().next().is_some_and(|l| l.contains("CONTRACT")),
        "{out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} row: {out}"))
            .to_string()
    };
    assert!(row("old").contains(" 0.1.0 "), "{out}");
    assert!(row("hello").contains(" 0.2.0 "), "{out}");
    let details = env.run(&["plugins", "old"]).ok().to_string();
    assert!(
        details.contains("contract:     cojobs:plugin@0.1.0"),
        "{details}"
    );
    // The 0.1 component runs unchanged.
    let run = env.run(&["exec", "old", "--params", r#"{"name":"Ada"}"#]);
    assert!(run.ok().starts_with("OK: hello, Ada\n"), "{run:#?}");
}

#[test]
fn exec_shows_result_children_and_never_a_secret() {
    let env = env_with(&["contract"]);
    std::fs::write(
        env.dir.path().join("plugins/contract.toml"),
        "[config]\ngreeting = 'hi'\n[secrets]\ntoken = { env = 'COJOBS_TEST_TOKEN' }\n",
    )
    .expect("side file");
    let secret = "hunter2-s3cr3t-value";
    let vars = [("COJOBS_TEST_TOKEN", secret)];
    let run = env.run_env(&["exec", "contract", "--mode", "leak"], &vars);
    let out = run.ok();
    assert!(out.starts_with("OK: done with [redacted]\n"), "{run:#?}");
    assert!(
        out.contains(r#"result: {"token":"[redacted]"}"#),
        "{run:#?}"
    );
    assert!(
        !out.contains(secret) && !run.stderr.contains(secret),
        "{run:#?}"
    );
    assert!(run.stderr.contains("the token is [redacted]"), "{run:#?}");

    let details = env
        .run_env(&["plugins", "contract"], &vars)
        .ok()
        .to_string();
    assert!(
        details.contains("secrets:      token (values hidden)"),
        "{details}"
    );
    assert!(details.contains("config:       greeting"), "{details}");
    assert!(!details.contains(secret), "{details}");

    let run = env.run_env(
        &[
            "exec",
            "contract",
            "--mode",
            "children",
            "--params",
            r#"{"n":2}"#,
        ],
        &vars,
    );
    let out = run.ok();
    assert!(
        out.contains("child 2: hello {\"name\":\"child 1\"}"),
        "{run:#?}"
    );

    // A secret whose variable is missing: the load fails naming the
    // variable, nothing runs.
    env.run(&["exec", "contract", "--mode", "config"]).fails(
        1,
        "secret 'token': environment variable COJOBS_TEST_TOKEN is not set",
    );
}

// ------------------------------------------------------- cojobs test

/// The example plugins' own component tests, `guest-plugins/cases.toml`,
/// through the real binary: every case passes, with no database and no
/// network (HTTP is answered by the cases' fixtures).
#[test]
fn the_example_plugins_own_cases_pass() {
    let plugins = built_plugins();
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-plugins/cases.toml");
    let n = std::fs::read_to_string(&cases)
        .expect("cases.toml")
        .lines()
        .filter(|l| l.trim() == "[[case]]")
        .count();
    assert!(n >= 15, "{n} cases");
    let env = Env::new();
    let run = env.run(&[
        "--plugins",
        plugins.to_str().expect("utf-8 path"),
        "test",
        cases.to_str().expect("utf-8 path"),
    ]);
    let out = run.ok();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok   ")).count(),
        n,
        "{run:#?}"
    );
    assert!(
        out.ends_with(&format!("{n} passed, 0 failed\n")),
        "{run:#?}"
    );
    assert!(!env.db.exists(), "no database");
}

/// Write `text` as `cases.toml` in the env's directory.
fn cases_file(env: &Env, text: &str) -> String {
    let path = env.dir.path().join("cases.toml");
    std::fs::write(&path, text).expect("write cases");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn a_failing_case_exits_1_naming_the_case_and_why() {
    let env = env_with(&["hello", "fetch"]);
    let cases = cases_file(
        &env,
        r#"
[[case]]
name = "greets"
plugin = "hello"
params = { name = "Ada" }
expect = { outcome = "ok", summary = "^hello, Ada$" }

[[case]]
name = "wrong summary"
plugin = "hello"
params = { name = "Ada" }
expect = { outcome = "ok", summary = "^goodbye" }

[[case]]
name = "wrong ending and history"
plugin = "hello"
expect = { outcome = "retry", history = [{ comment = "greeted nobody" }, {}] }

[[case]]
name = "a request no fixture answers"
plugin = "fetch"
params = { url = "https://api.example.org/missing" }
allowed_hosts = ["https://api.example.org"]
http = [{ url = "https://api.example.org/doc", body = "{}" }]
expect = { outcome = "ok", result = { keys = 0 } }
"#,
    );
    let run = env.run(&["test", &cases]);
    assert_eq!(run.code, 1, "{run:#?}");
    let out = &run.stdout;
    for want in [
        "ok   greets\n",
        "FAIL wrong summary: summary 'hello, Ada' does not match /^goodbye/\n",
        "FAIL wrong ending and history: expected retry, got ok: 'hello, world'; \
         history record 1: comment is 'greeting started', expected 'greeted nobody'\n",
        "FAIL a request no fixture answers: expected ok, got discard: 'request denied",
        "expected a result, the plugin set none; \
         unexpected request GET https://api.example.org/missing (no fixture answers it)\n",
        "     | [http] GET https://api.example.org/missing -> denied: no fixture answers this request",
        "1 passed, 3 failed\n",
    ] {
        assert!(out.contains(want), "stdout lacks {want:?}: {run:#?}");
    }
    assert!(run.stderr.is_empty(), "{run:#?}");
}

#[test]
fn a_malformed_cases_file_exits_2_naming_the_problem() {
    let env = env_with(&["hello"]);
    let case = |body: &str| format!("[[case]]\nname = 'a'\nplugin = 'hello'\n{body}");
    for (text, problem) in [
        (
            String::new(),
            "no cases (write one [[case]] table per case)",
        ),
        (
            "[[case]]\nname = 'a'\n".to_string(),
            "missing field `plugin`",
        ),
        (
            case("colour = 'red'\nexpect = { outcome = 'ok' }"),
            "unknown field `colour`",
        ),
        (
            case("expect = { outcome = 'fine' }"),
            "case 1 ('a'): expect.outcome 'fine' is not one of ok, retry, discard",
        ),
        (
            case("expect = { outcome = 'ok', summary = '(' }"),
            "case 1 ('a'): expect.summary is not a regex",
        ),
        (
            case("limits = { fuel = 0 }\nexpect = { outcome = 'ok' }"),
            "case 1 ('a'): limits: fuel 0 is out of range",
        ),
        (
            case("http = [{ url = 'ftp://x/' }]\nexpect = { outcome = 'ok' }"),
            "case 1 ('a'): http fixture 1: 'ftp://x/' is not an http:// or https:// URL",
        ),
        (
            case(
                "http = [{ url = 'http://x/', body_file = 'nope.json' }]\nexpect = { outcome = 'ok' }",
            ),
            "case 1 ('a'): http fixture 1: body_file ",
        ),
        (
            case("allowed_hosts = ['api.example.org']\nexpect = { outcome = 'ok' }"),
            "allowed_hosts entry 'api.example.org'",
        ),
        (
            format!(
                "{}\n{}",
                case("expect = { outcome = 'ok' }"),
                case("expect = { outcome = 'ok' }")
            ),
            "case 2 ('a'): another case has this name",
        ),
    ] {
        let cases = cases_file(&env, &text);
        let run = env.run(&["test", &cases]);
        run.fails(2, problem);
        assert!(run.stdout.is_empty(), "nothing ran: {run:#?}");
    }
    env.run(&["test", "no-such-cases.toml"])
        .fails(2, "cannot read no-such-cases.toml");
}
