//! The sandbox against real components (built by `scripts/build-plugins.sh`
//! into `plugins/`) in a real wasmtime: every way a run can end, the
//! grants, the caches.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cojobs::sandbox::{
    FailKind, History, HistoryStatus, HostEvents, Interrupt, JobInput, LimitOverrides, Limits,
    LogLevel, RunEnd, RunReport, Sandbox, SandboxConfig, SandboxError,
};

/// The directory the build script puts the example plugins in.
fn built_plugins() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    assert!(
        dir.join("hello.wasm").is_file(),
        "example plugins are missing: run scripts/build-plugins.sh (the README's test command does)"
    );
    dir
}

/// A plugins directory of our own holding copies of the named plugins.
fn plugins_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for n in names {
        std::fs::copy(
            built_plugins().join(format!("{n}.wasm")),
            dir.path().join(format!("{n}.wasm")),
        )
        .expect("copy plugin");
    }
    dir
}

fn sandbox(dir: &Path) -> Arc<Sandbox> {
    let mut config = SandboxConfig::new(dir);
    config.max_instances = 8;
    Arc::new(Sandbox::new(config).expect("sandbox"))
}

#[derive(Debug, Default)]
struct Seen {
    progress: Vec<(u8, Option<String>)>,
    logs: Vec<(LogLevel, String)>,
    history: Vec<(Option<String>, String, HistoryStatus)>,
    cancel_asked: u32,
}

/// Records every host call; `cancel` is what `cancel-requested` answers.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl HostEvents for Recorder {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        self.seen
            .lock()
            .expect("lock")
            .progress
            .push((percent, summary));
    }
    fn log(&mut self, level: LogLevel, message: String) {
        self.seen.lock().expect("lock").logs.push((level, message));
    }
    fn cancel_requested(&mut self) -> bool {
        self.seen.lock().expect("lock").cancel_asked += 1;
        self.cancel.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn record_history(&mut self, r: History) {
        self.seen
            .lock()
            .expect("lock")
            .history
            .push((r.key, r.comment, r.status));
    }
}

fn job(job_type: &str, params: &str) -> JobInput {
    JobInput {
        id: 7,
        co_id: 1,
        job_type: job_type.to_string(),
        mode: None,
        params: params.to_string(),
        retry_count: 0,
        requeued_from: None,
    }
}

async fn run_with(
    sb: &Arc<Sandbox>,
    name: &str,
    params: &str,
    overrides: LimitOverrides,
    events: Recorder,
    interrupt: &Interrupt,
) -> RunReport {
    let plugin = sb.plugin_async(name).await.expect("plugin loads");
    let limits = sb.limits_for(&plugin, &overrides);
    sb.run(
        &plugin,
        &job(name, params),
        limits,
        Box::new(events),
        interrupt,
    )
    .await
}

async fn run(name: &str, params: &str, overrides: LimitOverrides) -> (RunReport, Recorder) {
    let sb = sandbox(&built_plugins());
    let rec = Recorder::default();
    let report = run_with(&sb, name, params, overrides, rec.clone(), &Interrupt::new()).await;
    (report, rec)
}

fn failed(report: &RunReport) -> (FailKind, &str) {
    match &report.end {
        RunEnd::Failed { kind, message } => (*kind, message.as_str()),
        other => panic!("expected a failure, got {other:?}\nlog:\n{}", report.log),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_completes_with_progress_history_and_summary() {
    let (report, rec) = run("hello", r#"{"name":"Ada"}"#, LimitOverrides::default()).await;
    assert_eq!(
        report.end,
        RunEnd::Ok("hello, Ada".to_string()),
        "log: {}",
        report.log
    );
    let seen = rec.seen.lock().expect("lock");
    assert_eq!(seen.progress.last().map(|p| p.0), Some(100));
    assert_eq!(seen.history.len(), 2, "{:?}", seen.history);
    assert!(report.fuel_used > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_is_stopped_by_fuel() {
    let (report, _) = run(
        "runaway",
        "{}",
        LimitOverrides {
            fuel: Some(100_000_000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        failed(&report),
        (FailKind::Fuel, "fuel budget of 100000000 exhausted")
    );
    assert_eq!(report.fuel_used, 100_000_000);
    eprintln!("runaway with 1e8 fuel stopped after {:?}", report.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_is_stopped_by_the_wall_clock() {
    let (report, _) = run(
        "runaway",
        "{}",
        LimitOverrides {
            fuel: Some(u64::MAX / 2),
            timeout_secs: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failed(&report), (FailKind::Timeout, "timed out after 1 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_blocked_in_a_host_call_is_stopped_by_the_wall_clock() {
    let (report, _) = run(
        "sleepy",
        "{}",
        LimitOverrides {
            timeout_secs: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failed(&report), (FailKind::Timeout, "timed out after 1 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_message_reaches_the_summary() {
    let (report, _) = run(
        "panic",
        r#"{"message":"kaboom 42"}"#,
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(
        failed(&report),
        (FailKind::Trap, "plugin panicked: kaboom 42")
    );
    assert!(report.log.contains("kaboom 42"), "{}", report.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_hits_the_memory_limit() {
    let (report, _) = run(
        "memhog",
        "{}",
        LimitOverrides {
            memory_mib: Some(64),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        failed(&report),
        (FailKind::Memory, "memory limit of 64 MiB exceeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_discard_are_told_apart() {
    let (r, _) = run("retry", "{}", LimitOverrides::default()).await;
    assert_eq!(failed(&r).0, FailKind::Retry);
    assert!(r.end.outcome().is_some_and(|o| matches!(
        o,
        cojobs::job::Outcome::Failed {
            retry: cojobs::job::Retry::Policy,
            ..
        }
    )));
    let (d, _) = run("discard", "{}", LimitOverrides::default()).await;
    assert_eq!(failed(&d).0, FailKind::Discard);
    assert!(d.end.outcome().is_some_and(|o| matches!(
        o,
        cojobs::job::Outcome::Failed {
            retry: cojobs::job::Retry::Never,
            ..
        }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_output_is_capped() {
    let (report, _) = run(
        "chatty",
        "{}",
        LimitOverrides {
            timeout_secs: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failed(&report).0, FailKind::Timeout);
    let cap = Limits::default().output_bytes;
    assert!(
        report.log.len() < cap + 200,
        "log is {} bytes",
        report.log.len()
    );
    assert!(
        report.log.contains("more bytes dropped"),
        "{}",
        &report.log[report.log.len() - 200..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_grants_nothing_by_default() {
    let (report, _) = run("probe", r#"{"port": 9}"#, LimitOverrides::default()).await;
    let RunEnd::Ok(summary) = &report.end else {
        panic!("probe failed: {:?}\n{}", report.end, report.log);
    };
    let v: serde_json::Value = serde_json::from_str(summary).expect("probe reports JSON");
    for key in [
        "read_passwd",
        "list_root",
        "tcp",
        "dns",
        "env_home",
        "env_path",
    ] {
        assert_eq!(v[key], serde_json::json!(false), "{key} in {summary}");
    }
    assert_eq!(v["env_vars"], serde_json::json!(0), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_plugin_stops_when_asked() {
    let sb = sandbox(&built_plugins());
    let rec = Recorder::default();
    let flag = Arc::clone(&rec.cancel);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let report = run_with(
        &sb,
        "cancellable",
        r#"{"seconds":60}"#,
        LimitOverrides::default(),
        rec,
        &Interrupt::new(),
    )
    .await;
    match &report.end {
        RunEnd::Ok(s) => assert!(s.starts_with("stopped on request"), "{s}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncooperative_plugin_is_interrupted() {
    let sb = sandbox(&built_plugins());
    let interrupt = Interrupt::new();
    let i2 = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        i2.fire("canceled by test");
    });
    let report = run_with(
        &sb,
        "cancellable",
        r#"{"seconds":60,"ignore_cancel":true}"#,
        LimitOverrides::default(),
        Recorder::default(),
        &interrupt,
    )
    .await;
    assert_eq!(
        report.end,
        RunEnd::Interrupted("canceled by test".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_floods_are_bounded() {
    let (report, rec) = run("spammer", r#"{"calls":20000}"#, LimitOverrides::default()).await;
    assert!(matches!(report.end, RunEnd::Ok(_)), "{:?}", failed(&report));
    let seen = rec.seen.lock().expect("lock");
    assert_eq!(seen.history.len(), 1000);
    assert_eq!(seen.logs.len(), 1000);
    assert!(report.log.len() < Limits::default().output_bytes + 200);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_directories_are_reachable_and_nothing_else() {
    let plugins = plugins_dir(&["grants"]);
    let data = tempfile::tempdir().expect("tempdir");
    write(&data.path().join("a.txt"), "1\n2\n3\n");
    write(&data.path().join("b.txt"), "x\ny\n");
    std::os::unix::fs::symlink("/etc/passwd", data.path().join("link")).expect("symlink");
    for writable in [false, true] {
        write(
            &plugins.path().join("grants.toml"),
            &format!(
                "scratch = true\n[[dirs]]\nhost = '{}'\nguest = '/data'\nwritable = {writable}\n",
                data.path().display()
            ),
        );
        let sb = sandbox(plugins.path());
        let (report, _) = {
            let rec = Recorder::default();
            let r = run_with(
                &sb,
                "grants",
                "{}",
                LimitOverrides::default(),
                rec.clone(),
                &Interrupt::new(),
            )
            .await;
            (r, rec)
        };
        let RunEnd::Ok(summary) = &report.end else {
            panic!("grants failed: {:?}\n{}", report.end, report.log);
        };
        let v: serde_json::Value = serde_json::from_str(summary).expect("json");
        assert_eq!(v["lines"], serde_json::json!(5), "{summary}");
        assert_eq!(v["report_written"], serde_json::json!(true), "{summary}");
        assert_eq!(v["escape_parent"], serde_json::json!(false), "{summary}");
        assert_eq!(v["escape_abs"], serde_json::json!(false), "{summary}");
        assert_eq!(v["escape_symlink"], serde_json::json!(false), "{summary}");
        assert_eq!(v["wrote_dir"], serde_json::json!(writable), "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_are_clear_errors() {
    let plugins = plugins_dir(&["otherworld"]);
    std::fs::write(plugins.path().join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(plugins.path().join("junk.wasm"), b"this is not wasm").expect("write");
    write(
        &plugins.path().join("badgrant.toml"),
        "[[dirs]]\nhost = '/no/such/dir'\nguest = '/data'\n",
    );
    std::fs::copy(
        built_plugins().join("noop.wasm"),
        plugins.path().join("badgrant.wasm"),
    )
    .expect("copy");
    let sb = sandbox(plugins.path());
    let err = |name: &str| match sb.plugin(name) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err("nope").starts_with("no plugin named 'nope' in"),
        "{}",
        err("nope")
    );
    assert!(
        err("core").contains("a core WebAssembly module, not a component"),
        "{}",
        err("core")
    );
    assert!(
        err("junk").contains("not a WebAssembly file"),
        "{}",
        err("junk")
    );
    assert!(
        err("otherworld").contains("does not implement cojobs:plugin/plugin@0.1.0"),
        "{}",
        err("otherworld")
    );
    assert!(
        err("badgrant").contains("/no/such/dir"),
        "{}",
        err("badgrant")
    );
    assert!(matches!(sb.plugin("../x"), Err(SandboxError::BadName(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_a_replaced_file_is_picked_up() {
    let plugins = plugins_dir(&[]);
    let target = plugins.path().join("swap.wasm");
    std::fs::copy(built_plugins().join("noop.wasm"), &target).expect("copy");
    let sb = sandbox(plugins.path());
    let p = sb.plugin_async("swap").await.expect("load");
    let d = sb.describe(&p).await.expect("describe");
    assert_eq!(d.name, "noop");
    std::fs::copy(built_plugins().join("hello.wasm"), &target).expect("copy");
    let p = sb.plugin_async("swap").await.expect("reload");
    let d = sb.describe(&p).await.expect("describe");
    assert_eq!(d.name, "hello");
    assert_eq!(d.modes, vec!["fast".to_string(), "slow".to_string()]);
    assert!(d.params.iter().any(|p| p.name == "name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_is_cached_on_disk() {
    let plugins = plugins_dir(&["hello"]);
    let first = sandbox(plugins.path()).plugin("hello").expect("load");
    assert!(!first.load.from_disk_cache);
    let second = sandbox(plugins.path()).plugin("hello").expect("load");
    assert!(second.load.from_disk_cache);
    eprintln!(
        "hello: compiled in {:.3} s, loaded from cache in {:.3} s",
        first.load.seconds, second.load.seconds
    );
}

/// Python (componentize-py) and JavaScript (componentize-js) plugins run in
/// the same sandbox, under the same limits, with the same summaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins() {
    for (lang, name) in [("Python", "python-hello"), ("JavaScript", "js-hello")] {
        let (ok, rec) = run(name, r#"{"name":"Ada"}"#, LimitOverrides::default()).await;
        assert_eq!(
            ok.end,
            RunEnd::Ok(format!("hello, Ada from {lang}")),
            "{}",
            ok.log
        );
        {
            let seen = rec.seen.lock().expect("lock");
            assert_eq!(seen.progress.last().map(|p| p.0), Some(100), "{name}");
            assert!(!seen.history.is_empty(), "{name}");
        }
        let (r, _) = run(name, r#"{"outcome":"retry"}"#, LimitOverrides::default()).await;
        assert_eq!(failed(&r).0, FailKind::Retry, "{name}");
        let (d, _) = run(name, r#"{"outcome":"discard"}"#, LimitOverrides::default()).await;
        assert_eq!(failed(&d).0, FailKind::Discard, "{name}");
        let (x, _) = run(
            name,
            r#"{"outcome":"raise","name":"Ada"}"#,
            LimitOverrides::default(),
        )
        .await;
        let (kind, msg) = failed(&x);
        assert_eq!(kind, FailKind::Trap, "{name}");
        assert!(msg.contains("exploded: Ada"), "{name}: {msg}\n{}", x.log);
    }
    for name in ["python-runaway", "js-runaway"] {
        let (report, _) = run(
            name,
            "{}",
            LimitOverrides {
                fuel: Some(1_000_000_000),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            failed(&report),
            (FailKind::Fuel, "fuel budget of 1000000000 exhausted"),
            "{name}"
        );
    }
}

/// Every job gets a fresh instance: a Python or JavaScript plugin that
/// changes its module-level and global state in one job finds it as built
/// in the next, whether the next reuses the pool slot the last one left
/// (one after another) or not (two at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_passes_from_one_job_to_the_next() {
    let sb = sandbox(&built_plugins());
    for (name, fresh) in [
        ("python-state", "fresh: seen=None runs=0 cache=0"),
        ("js-state", "fresh: seen=undefined runs=0 cache=0"),
    ] {
        let plugin = sb.plugin_async(name).await.expect("plugin loads");
        let limits = sb.limits_for(&plugin, &LimitOverrides::default());
        let one = |id: i64| {
            let (sb, plugin) = (Arc::clone(&sb), Arc::clone(&plugin));
            async move {
                let input = JobInput {
                    id,
                    ..job(name, "{}")
                };
                sb.run(
                    &plugin,
                    &input,
                    limits,
                    Box::new(Recorder::default()),
                    &Interrupt::new(),
                )
                .await
            }
        };
        for id in 1..=4 {
            let r = one(id).await;
            assert_eq!(
                r.end,
                RunEnd::Ok(fresh.into()),
                "{name} job {id}: {}",
                r.log
            );
        }
        let (a, b) = tokio::join!(tokio::spawn(one(5)), tokio::spawn(one(6)));
        for r in [a.expect("job 5"), b.expect("job 6")] {
            assert_eq!(r.end, RunEnd::Ok(fresh.into()), "{name}: {}", r.log);
        }
    }
}

/// The compiled-code cache is what makes an 18 MB Python component cheap
/// to load after the first time: the second load, by a new process's
/// sandbox, comes from the disk cache. (Times are printed, not asserted:
/// docs/performance.md has the figures.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_second_load_hits_the_compiled_code_cache() {
    let plugins = plugins_dir(&["python-hello"]);
    let first = sandbox(plugins.path())
        .plugin_async("python-hello")
        .await
        .expect("first load");
    assert!(!first.load.from_disk_cache);
    let sb = sandbox(plugins.path());
    let second = sb.plugin_async("python-hello").await.expect("second load");
    assert!(second.load.from_disk_cache);
    eprintln!(
        "python-hello ({} bytes): first load (compile) {:.3} s, second load (cache) {:.3} s",
        std::fs::metadata(plugins.path().join("python-hello.wasm"))
            .map(|m| m.len())
            .unwrap_or(0),
        first.load.seconds,
        second.load.seconds
    );
    let limits = sb.limits_for(&second, &LimitOverrides::default());
    let report = sb
        .run(
            &second,
            &job("python-hello", r#"{"name":"cache"}"#),
            limits,
            Box::new(Recorder::default()),
            &Interrupt::new(),
        )
        .await;
    assert_eq!(report.end, RunEnd::Ok("hello, cache from Python".into()));
}

/// A core module for the `plugin` world whose `run` grows its table
/// without end. No guest language emits `table.grow` on purpose, so it is
/// written in WAT and wrapped as a component here.
const TABLE_GROWER: &str = r#"
(module
  (type $run (func (param i64 i64 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)))
  (memory 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 1024))
  (export "cm32p2||describe" (func $describe))
  (export "cm32p2||describe_post" (func $post))
  (export "cm32p2||run" (func $run))
  (export "cm32p2||run_post" (func $post))
  (export "cm32p2_memory" (memory 0))
  (export "cm32p2_realloc" (func $realloc))
  (export "cm32p2_initialize" (func $init))
  (func $describe (result i32) unreachable)
  (func $post (param i32))
  (func $run (type $run)
    (loop $grow
      (drop (table.grow $t (ref.null func) (i32.const 65536)))
      (br $grow))
    unreachable)
  ;; A bump allocator: enough for the host to pass the job's strings.
  (func $realloc (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (drop (memory.grow
          (i32.add
            (i32.div_u
              (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
              (i32.const 65536))
            (i32.const 1))))))
    (local.get $p))
  (func $init)
)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_grown_without_end_hits_the_table_limit() {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("wit"))
        .expect("the project's WIT");
    let world = resolve
        .select_world(&[pkg], Some("plugin"))
        .expect("world plugin");
    let mut module = wat::parse_str(TABLE_GROWER).expect("WAT");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed the world");
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("component");
    let plugins = plugins_dir(&[]);
    std::fs::write(plugins.path().join("tablegrow.wasm"), component).expect("write");
    let sb = sandbox(plugins.path());
    let report = run_with(
        &sb,
        "tablegrow",
        "{}",
        LimitOverrides::default(),
        Recorder::default(),
        &Interrupt::new(),
    )
    .await;
    assert_eq!(
        failed(&report),
        (FailKind::Memory, "table limit of 1000000 elements exceeded")
    );
    // The sandbox keeps serving.
    let (ok, _) = run("hello", "{}", LimitOverrides::default()).await;
    assert_eq!(ok.end, RunEnd::Ok("hello, world".into()));
}
