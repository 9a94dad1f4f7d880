//! Hostile plugins against the real binary and real database: every one
//! ends its job with a clear `finish_summary`, and the runner keeps serving
//! the other jobs queued beside it. Queue-time checks (`describe`) of a
//! hostile plugin are bounded and refuse it with a clear message.
//! (Library-level checks of the same plugins are in tests/sandbox.rs.)

#[path = "util/procs.rs"]
mod procs;
mod util;

use std::sync::{Arc, Mutex};

use cojobs::sandbox::{
    HostEvents, Interrupt, JobInput, LimitOverrides, LogLevel, RunEnd, Sandbox, SandboxConfig,
};
use procs::{Setup, built_plugins};

const HOSTILE: &[&str] = &[
    "hello",
    "probe",
    "grants",
    "memhog",
    "recurse",
    "runaway",
    "sleepy",
    "chatty",
    "spammer",
    "panic",
    "otherworld",
    "baddescribe",
    "loopdescribe",
    "evilimport",
];

/// Each hostile job next to a `hello`, one `run --once`: the hostile rows
/// end with the expected clear summary, every `hello` ends `OK`.
#[test]
fn hostile_jobs_end_clearly_and_the_runner_keeps_serving() {
    let s = Setup::new(HOSTILE);
    std::fs::write(s.plugins.path().join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    // grants: /scratch only, and it tries `..` from there.
    std::fs::write(s.plugins.path().join("grants.toml"), "scratch = true\n").expect("toml");
    // (job type, params, extra queue options, expected summary fragment, status)
    let cases: &[(&str, &str, &[&str], &str, &str)] = &[
        (
            "memhog",
            "{}",
            &["--memory", "16"],
            "memory limit of 16 MiB exceeded",
            "X",
        ),
        (
            "recurse",
            "{}",
            &[],
            "out of bounds memory access (its stack",
            "X",
        ),
        (
            "recurse",
            r#"{"native":true}"#,
            &[],
            "plugin overflowed its stack",
            "X",
        ),
        (
            "runaway",
            "{}",
            &["--fuel", "50000000"],
            "fuel budget of 50000000 exhausted",
            "X",
        ),
        (
            "sleepy",
            "{}",
            &["--timeout", "1"],
            "timed out after 1 s",
            "X",
        ),
        (
            "chatty",
            "{}",
            &["--timeout", "1"],
            "timed out after 1 s",
            "X",
        ),
        ("spammer", r#"{"calls":1000000}"#, &[], "", "?"),
        (
            "panic",
            r#"{"message":"evil"}"#,
            &[],
            "plugin panicked: evil",
            "X",
        ),
        (
            "otherworld",
            "{}",
            &["--no-check"],
            "does not implement cojobs:plugin/plugin@0.1.0",
            "X",
        ),
        ("evilimport", "{}", &["--no-check"], "evil:thing/x", "X"),
        (
            "core",
            "{}",
            &["--no-check"],
            "a core WebAssembly module, not a component",
            "X",
        ),
        // describe is not called to run a job: it runs (run returns "ran").
        ("baddescribe", "{}", &["--no-check"], "ran", "OK"),
        ("loopdescribe", "{}", &["--no-check"], "ran", "OK"),
        ("probe", r#"{"port":9}"#, &[], "\"read_passwd\":false", "OK"),
        (
            "grants",
            r#"{"dir":"/scratch"}"#,
            &[],
            "\"escape_parent\":false",
            "OK",
        ),
    ];
    let mut queued = Vec::new();
    for (ty, params, extra, want, status) in cases {
        let mut args = vec![*ty, "--params", params];
        args.extend_from_slice(extra);
        let id = s.queue(&args);
        let hello = s.queue(&["hello"]);
        queued.push((id, *ty, *want, *status, hello));
    }
    s.run_ok(&["--once", "--workers", "2"]);
    for (id, ty, want, status, hello) in queued {
        let got_status = s.status(id);
        let summary = s
            .text(&format!(
                "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
            ))
            .unwrap_or_default();
        assert!(summary.chars().count() <= 256);
        if status != "?" {
            assert_eq!(got_status, status, "{ty}: {summary}");
        }
        assert!(summary.contains(want), "{ty}: {got_status} {summary:?}");
        assert_eq!(s.status(hello), "OK", "the hello queued after {ty}");
        eprintln!("{ty:12} {got_status:2} {summary}");
    }
    // probe: nothing reachable.
    let probe = s
        .text("SELECT finish_summary FROM cm_co_jobs WHERE job_type = 'probe'")
        .unwrap_or_default();
    for key in [
        "read_passwd",
        "list_root",
        "tcp",
        "dns",
        "env_home",
        "env_path",
    ] {
        assert!(
            probe.contains(&format!("\"{key}\":false")),
            "{key}: {probe}"
        );
    }
    let grants = s
        .text("SELECT finish_summary FROM cm_co_jobs WHERE job_type = 'grants'")
        .unwrap_or_default();
    assert!(grants.contains("\"escape_abs\":false"), "{grants}");
    // spammer: its 10 MB summary is cut to 256 characters, its history
    // capped at 1000 records.
    let spam = s.int("SELECT id FROM cm_co_jobs WHERE job_type = 'spammer'");
    assert!(
        s.int(&format!(
            "SELECT count(*) FROM cm_co_job_history_records WHERE co_job_id = {spam}"
        )) <= 1000
    );
    assert!(
        s.int(&format!(
            "SELECT coalesce(length(job_log), 0) FROM cm_co_jobs WHERE id = {spam}"
        )) < 2 * 1024 * 1024,
        "captured log is bounded"
    );
}

/// `queue` asks the plugin's `describe`: a trapping, looping, other-world,
/// unlinkable or core-module plugin is refused (exit 2, clear message,
/// nothing written) within the describe limits; `plugins` lists the rest.
#[test]
fn queue_refuses_plugins_whose_describe_fails_and_plugins_lists_the_rest() {
    let s = Setup::new(&[
        "hello",
        "otherworld",
        "baddescribe",
        "loopdescribe",
        "evilimport",
    ]);
    std::fs::write(s.plugins.path().join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    s.cojobs(&["list"]).ok();
    for (ty, msg) in [
        (
            "baddescribe",
            "describe failed: plugin panicked: describe is broken on purpose",
        ),
        ("loopdescribe", "describe failed: fuel budget of"),
        (
            "otherworld",
            "does not implement cojobs:plugin/plugin@0.1.0",
        ),
        ("evilimport", "evil:thing/x"),
        ("core", "a core WebAssembly module, not a component"),
    ] {
        let run = s.cojobs(&["queue", ty]);
        assert_eq!(run.code, 2, "{ty}: {run:#?}");
        assert!(run.stderr.contains(msg), "{ty}: {run:#?}");
        assert_eq!(s.env.job_count(), 0, "{ty}: nothing queued");
    }
    let list = s.cojobs(&["plugins"]);
    assert!(list.stdout.contains("hello"), "{list:#?}");
    assert!(list.stdout.contains("Greets"), "{list:#?}");
    s.queue(&["hello"]);
}

#[derive(Default)]
struct Counts {
    progress: usize,
    logs: usize,
    history: usize,
}

#[derive(Clone, Default)]
struct Counter(Arc<Mutex<Counts>>);

impl HostEvents for Counter {
    fn progress(&mut self, _: u8, _: Option<String>) {
        self.0.lock().expect("lock").progress += 1;
    }
    fn log(&mut self, _: LogLevel, _: String) {
        self.0.lock().expect("lock").logs += 1;
    }
    fn cancel_requested(&mut self) -> bool {
        false
    }
    fn record_history(&mut self, _: cojobs::sandbox::History) {
        self.0.lock().expect("lock").history += 1;
    }
}

/// A million calls each of `progress`, `log` and `record-history` under the
/// default limits: the run ends (OK, or a clear fuel/time failure), and at
/// most 1000 log lines and 1000 history records reach the host's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_host_calls_end_within_the_default_limits() {
    let sb = Arc::new(Sandbox::new(SandboxConfig::new(built_plugins())).expect("sandbox"));
    let plugin = sb.plugin_async("spammer").await.expect("spammer");
    let limits = sb.limits_for(&plugin, &LimitOverrides::default());
    let counts = Counter::default();
    let job = JobInput {
        id: 1,
        co_id: 1,
        job_type: "spammer".into(),
        mode: None,
        params: r#"{"calls":1000000}"#.into(),
        retry_count: 0,
        requeued_from: None,
    };
    let report = sb
        .run(
            &plugin,
            &job,
            limits,
            Box::new(counts.clone()),
            &Interrupt::new(),
        )
        .await;
    match &report.end {
        RunEnd::Ok(summary) => assert!(summary.len() >= 10_000_000, "the 10 MB summary"),
        RunEnd::Failed { message, .. } => assert!(
            message.contains("fuel budget") || message.contains("timed out"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let c = counts.0.lock().expect("lock");
    assert!(c.history <= 1000, "{} history records", c.history);
    assert!(c.logs <= 1000, "{} logs", c.logs);
    eprintln!(
        "spammer 1e6: {:?} after {:?}; progress {} logs {} history {}",
        match &report.end {
            RunEnd::Ok(s) => format!("OK ({} bytes)", s.len()),
            other => format!("{other:?}"),
        },
        report.elapsed,
        c.progress,
        c.logs,
        c.history
    );
}
