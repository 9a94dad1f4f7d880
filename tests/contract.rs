//! Contract 0.2 against real components in a real wasmtime: 0.1 and 0.2
//! plugins side by side, config and secrets, results, child jobs,
//! retry-after, history ids; and outbound HTTP against a real HTTP server
//! this test starts on 127.0.0.1 (never any other address).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cojobs::sandbox::{
    Contract, FailKind, History, HostEvents, Interrupt, JobInput, LimitOverrides, LogLevel, RunEnd,
    RunReport, Sandbox, SandboxConfig,
};

/// The directory the build script puts the example plugins in.
fn built_plugins() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    assert!(
        dir.join("fetch.wasm").is_file(),
        "example plugins are missing: run scripts/build-plugins.sh"
    );
    dir
}

/// A plugins directory holding copies of `plugins` (installed name, built
/// name) and side files (installed name, TOML text). Compiled code is
/// cached in the shared `plugins/.cache`.
fn plugins_dir(
    plugins: &[(&str, &str)],
    side: &[(&str, String)],
) -> (tempfile::TempDir, Arc<Sandbox>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, built) in plugins {
        let from = if built.ends_with(".wasm") {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(built)
        } else {
            built_plugins().join(format!("{built}.wasm"))
        };
        std::fs::copy(&from, dir.path().join(format!("{name}.wasm"))).expect("copy plugin");
    }
    for (name, toml) in side {
        std::fs::write(dir.path().join(format!("{name}.toml")), toml).expect("side file");
    }
    let mut config = SandboxConfig::new(dir.path());
    config.cache_dir = Some(built_plugins().join(".cache"));
    config.max_instances = 8;
    let sb = Arc::new(Sandbox::new(config).expect("sandbox"));
    (dir, sb)
}

#[derive(Debug, Default)]
struct Seen {
    progress: Vec<Option<String>>,
    logs: Vec<String>,
    history: Vec<History>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl HostEvents for Recorder {
    fn progress(&mut self, _: u8, summary: Option<String>) {
        self.0.lock().expect("lock").progress.push(summary);
    }
    fn log(&mut self, _: LogLevel, message: String) {
        self.0.lock().expect("lock").logs.push(message);
    }
    fn cancel_requested(&mut self) -> bool {
        false
    }
    fn record_history(&mut self, r: History) {
        self.0.lock().expect("lock").history.push(r);
    }
}

async fn run(
    sb: &Arc<Sandbox>,
    name: &str,
    mode: Option<&str>,
    params: &str,
    overrides: LimitOverrides,
) -> (RunReport, Recorder) {
    let plugin = sb.plugin_async(name).await.expect("plugin loads");
    let limits = sb.limits_for(&plugin, &overrides);
    let rec = Recorder::default();
    let job = JobInput {
        id: 11,
        co_id: 1,
        job_type: name.to_string(),
        mode: mode.map(str::to_string),
        params: params.to_string(),
        retry_count: 0,
        requeued_from: None,
    };
    let report = sb
        .run(
            &plugin,
            &job,
            limits,
            Box::new(rec.clone()),
            &Interrupt::new(),
        )
        .await;
    (report, rec)
}

fn failed(report: &RunReport) -> (FailKind, &str) {
    match &report.end {
        RunEnd::Failed { kind, message } => (*kind, message.as_str()),
        other => panic!("expected a failure, got {other:?}\nlog:\n{}", report.log),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prebuilt_0_1_plugin_and_0_2_plugins_run_side_by_side() {
    let (_dir, sb) = plugins_dir(
        &[
            ("hello-old", "hello-v01"),
            ("hello", "hello"),
            ("contract", "contract"),
        ],
        &[],
    );
    let old = sb.plugin_async("hello-old").await.expect("0.1 loads");
    let new = sb.plugin_async("hello").await.expect("0.2 loads");
    assert_eq!(old.contract(), Contract::V0_1);
    assert_eq!(new.contract(), Contract::V0_2);
    assert_eq!(
        sb.describe(&old).await.expect("describe").contract,
        Contract::V0_1
    );
    let (a, b) = tokio::join!(
        run(
            &sb,
            "hello-old",
            None,
            r#"{"name":"Ada"}"#,
            LimitOverrides::default()
        ),
        run(
            &sb,
            "hello",
            None,
            r#"{"name":"Bob"}"#,
            LimitOverrides::default()
        ),
    );
    assert_eq!(a.0.end, RunEnd::Ok("hello, Ada".into()), "{}", a.0.log);
    assert_eq!(b.0.end, RunEnd::Ok("hello, Bob".into()), "{}", b.0.log);
    assert_eq!(a.1.0.lock().expect("lock").history.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_values_reach_the_plugin() {
    let side = "[config]\ngreeting = 'hi there'\ncount = 3\n".to_string();
    let (_dir, sb) = plugins_dir(&[("contract", "contract")], &[("contract", side)]);
    let (r, _) = run(
        &sb,
        "contract",
        Some("config"),
        "{}",
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(r.end, RunEnd::Ok("hi there x3".into()), "{}", r.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_leaks_its_secret_has_it_redacted_everywhere() {
    // HOME: a variable every test process has; its value is the secret.
    let secret = std::env::var("HOME").expect("HOME");
    let side = "[secrets]\ntoken = { env = 'HOME' }\n".to_string();
    let (_dir, sb) = plugins_dir(&[("contract", "contract")], &[("contract", side)]);
    let (r, rec) = run(
        &sb,
        "contract",
        Some("leak"),
        "{}",
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(
        r.end,
        RunEnd::Ok("done with [redacted]".into()),
        "{}",
        r.log
    );
    assert!(!r.log.contains(&secret), "log: {}", r.log);
    for want in [
        "the token is [redacted]",
        "stdout token=[redacted]",
        "stderr token=[redacted]",
    ] {
        assert!(r.log.contains(want), "{want:?} missing: {}", r.log);
    }
    assert_eq!(r.result.as_deref(), Some(r#"{"token":"[redacted]"}"#));
    {
        let seen = rec.0.lock().expect("lock");
        assert!(seen.logs.iter().all(|l| !l.contains(&secret)));
        assert!(seen.progress.iter().flatten().all(|p| !p.contains(&secret)));
        assert_eq!(seen.history[0].key.as_deref(), Some("[redacted]"));
        assert_eq!(seen.history[0].comment, "token [redacted]");
    }
    // `plugins NAME` names the secret, never its value.
    let plugin = sb.plugin_async("contract").await.expect("loads");
    assert!(!format!("{:?}", plugin.config).contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_children_retry_after_and_history_ids() {
    let (_dir, sb) = plugins_dir(&[("contract", "contract")], &[]);
    let (r, _) = run(
        &sb,
        "contract",
        Some("children"),
        r#"{"n":3}"#,
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(r.end, RunEnd::Ok("queued 3 children".into()), "{}", r.log);
    assert_eq!(r.children.len(), 3);
    assert_eq!(r.children[2].job_type, "hello");
    assert_eq!(r.children[2].params, r#"{"name":"child 2"}"#);
    assert_eq!(r.result.as_deref(), Some(r#"{"children":3,"parent":11}"#));

    let (r, _) = run(
        &sb,
        "contract",
        Some("retry-after"),
        "{}",
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(failed(&r), (FailKind::Retry, "rate limited"));
    assert_eq!(r.retry_after_secs, Some(42));

    let (r, rec) = run(
        &sb,
        "contract",
        Some("history"),
        "{}",
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(r.end, RunEnd::Ok("recorded".into()));
    let h = rec.0.lock().expect("lock").history[0].clone();
    assert_eq!((h.co_person_id, h.org_identity_id), (Some(7), Some(9)));

    let (r, _) = run(
        &sb,
        "contract",
        Some("bad-result"),
        "{}",
        LimitOverrides::default(),
    )
    .await;
    let (kind, msg) = failed(&r);
    assert_eq!(kind, FailKind::Discard);
    assert!(msg.starts_with("result is not JSON"), "{msg}");
}

// ------------------------------------------------------------------ HTTP

/// A real HTTP/1.1 server on 127.0.0.1 (port 0): one thread per
/// connection, one request per connection.
///
/// - `/doc`: 200, a small JSON object;
/// - `/big`: 200, 64 KiB of JSON;
/// - `/redirect?to=URL`: 302 to URL;
/// - `/hang`: reads the request and never answers;
/// - `/busy`: 429 with `retry-after: 42`.
struct Server {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

fn respond(mut s: TcpStream, hits: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    hits.lock().expect("lock").push(target.clone());
    let (status, extra, body) = if target == "/doc" {
        ("200 OK", String::new(), r#"{"a":1,"b":2}"#.to_string())
    } else if target == "/big" {
        (
            "200 OK",
            String::new(),
            format!("{{\"x\":\"{}\"}}", "y".repeat(64 * 1024)),
        )
    } else if let Some(to) = target.strip_prefix("/redirect?to=") {
        ("302 Found", format!("location: {to}\r\n"), String::new())
    } else if target == "/busy" {
        (
            "429 Too Many Requests",
            "retry-after: 42\r\n".to_string(),
            "{}".to_string(),
        )
    } else if target == "/hang" {
        std::thread::sleep(Duration::from_secs(30));
        return;
    } else {
        ("404 Not Found", String::new(), "{}".to_string())
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = Arc::clone(&hits);
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let h = Arc::clone(&h);
                std::thread::spawn(move || respond(s, &h));
            }
        });
        Server { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Run `fetch` (installed as `name`, with `side`) on `params`, while a
/// `hello` job runs beside it in the same sandbox and must end `OK`.
async fn fetch(name: &str, side: String, params: String, overrides: LimitOverrides) -> RunReport {
    let (_dir, sb) = plugins_dir(&[(name, "fetch"), ("hello", "hello")], &[(name, side)]);
    let (f, h) = tokio::join!(
        run(&sb, name, None, &params, overrides),
        run(
            &sb,
            "hello",
            None,
            r#"{"name":"beside"}"#,
            LimitOverrides::default()
        ),
    );
    assert_eq!(
        h.0.end,
        RunEnd::Ok("hello, beside".into()),
        "hello beside: {}",
        h.0.log
    );
    f.0
}

fn grant(server: &Server, extra: &str) -> String {
    format!(
        "allowed_hosts = ['http://127.0.0.1:{}']\n{extra}",
        server.port
    )
}

fn params(url: &str, times: u32) -> String {
    serde_json::json!({"url": url, "times": times}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_request_succeeds_and_is_logged() {
    let server = Server::start();
    let r = fetch(
        "fetch",
        grant(&server, ""),
        params(&server.url("/doc"), 1),
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(
        r.end,
        RunEnd::Ok(format!("fetched {}: 13 bytes, 2 keys", server.url("/doc"))),
        "{}",
        r.log
    );
    assert_eq!(
        r.result.as_deref(),
        Some(r#"{"bytes":13,"keys":2,"status":200}"#)
    );
    let line = format!("[http] GET {} -> 200, 13 bytes, ", server.url("/doc"));
    assert!(r.log.contains(&line), "{line:?} missing: {}", r.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ports_and_schemes_not_granted_are_denied() {
    let server = Server::start();
    let other_port = format!(
        "http://127.0.0.1:{}/doc",
        server.port.wrapping_add(1).max(1)
    );
    let https = format!("https://127.0.0.1:{}/doc", server.port);
    let other_host = format!("http://127.0.0.2:{}/doc", server.port);
    for url in [other_port, https, other_host] {
        let r = fetch(
            "fetch",
            grant(&server, ""),
            params(&url, 1),
            LimitOverrides::default(),
        )
        .await;
        let (kind, msg) = failed(&r);
        assert_eq!(kind, FailKind::Discard, "{url}: {msg}");
        assert!(msg.starts_with("request denied"), "{url}: {msg}");
        let line = format!("[http] denied GET {url}: scheme, host or port not in allowed_hosts");
        assert!(r.log.contains(&line), "{line:?} missing: {}", r.log);
    }
    // No grant at all.
    let r = fetch(
        "fetch",
        String::new(),
        params(&server.url("/doc"), 1),
        LimitOverrides::default(),
    )
    .await;
    assert!(r.log.contains("granted no hosts"), "{}", r.log);
    assert!(
        server.hits.lock().expect("lock").is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_resolving_to_loopback_is_denied() {
    let server = Server::start();
    let side = format!("allowed_hosts = ['http://localhost:{}']\n", server.port);
    let url = format!("http://localhost:{}/doc", server.port);
    let r = fetch("fetch", side, params(&url, 1), LimitOverrides::default()).await;
    let (kind, msg) = failed(&r);
    assert_eq!(kind, FailKind::Discard, "{msg}");
    assert!(r.log.contains("localhost resolves to"), "{}", r.log);
    assert!(
        server.hits.lock().expect("lock").is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_not_granted_is_denied() {
    let server = Server::start();
    let url = server.url("/redirect?to=http://internal.example.test/secret");
    let r = fetch(
        "fetch",
        grant(&server, ""),
        params(&url, 1),
        LimitOverrides::default(),
    )
    .await;
    let (_, msg) = failed(&r);
    assert!(msg.starts_with("request denied"), "{msg}");
    assert!(
        r.log
            .contains("[http] denied GET http://internal.example.test/secret"),
        "{}",
        r.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_too_many_requests_and_a_silent_server_end_the_job_clearly() {
    let server = Server::start();
    let r = fetch(
        "fetch",
        grant(&server, "max_response_bytes = 1000\n"),
        params(&server.url("/big"), 1),
        LimitOverrides::default(),
    )
    .await;
    let (kind, msg) = failed(&r);
    assert_eq!(
        (kind, msg),
        (
            FailKind::Retry,
            "the response body is over the job's size limit"
        )
    );
    assert!(
        r.log
            .contains("over the job's response limit of 1000 bytes"),
        "{}",
        r.log
    );

    let r = fetch(
        "fetch",
        grant(&server, "max_http_requests = 2\n"),
        params(&server.url("/doc"), 3),
        LimitOverrides::default(),
    )
    .await;
    assert_eq!(failed(&r).1, "the job's HTTP request limit is reached");
    assert!(
        r.log.contains("request limit of 2 per job reached"),
        "{}",
        r.log
    );

    let overrides = LimitOverrides {
        timeout_secs: Some(2),
        ..LimitOverrides::default()
    };
    let r = fetch(
        "fetch",
        grant(&server, ""),
        params(&server.url("/hang"), 1),
        overrides,
    )
    .await;
    assert_eq!(
        failed(&r),
        (FailKind::Timeout, "timed out after 2 s"),
        "{}",
        r.log
    );
}

// ------------------------------------------------- Python and JavaScript

/// The Python and JavaScript examples that make requests: the same plugin
/// in each language (`guest-plugins/python-fetch`, `guest-plugins/js-fetch`).
const SCRIPTED: [&str; 2] = ["python-fetch", "js-fetch"];

/// Run the scripted plugin `name` as built, with side file `side`.
async fn scripted(name: &str, side: String, mode: Option<&str>, params: String) -> RunReport {
    let (_dir, sb) = plugins_dir(&[(name, name)], &[(name, side)]);
    run(&sb, name, mode, &params, LimitOverrides::default())
        .await
        .0
}

fn json(text: Option<&str>) -> serde_json::Value {
    serde_json::from_str(text.expect("a result")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_fetch_a_granted_url_set_a_result_and_queue_a_child() {
    let server = Server::start();
    let url = server.url("/doc");
    for name in SCRIPTED {
        let params = serde_json::json!({"url": url, "notify": "hello"}).to_string();
        let r = scripted(name, grant(&server, ""), None, params).await;
        assert_eq!(
            r.end,
            RunEnd::Ok(format!("fetched {url}: 13 bytes, 2 keys")),
            "{name}: {}",
            r.log
        );
        assert_eq!(
            json(r.result.as_deref()),
            serde_json::json!({"status": 200, "bytes": 13, "keys": 2}),
            "{name}"
        );
        assert_eq!(r.children.len(), 1, "{name}");
        assert_eq!(r.children[0].job_type, "hello", "{name}");
        assert_eq!(
            json(Some(&r.children[0].params)),
            serde_json::json!({"name": format!("{url} answered 200")}),
            "{name}"
        );
        let line = format!("[http] GET {url} -> 200, 13 bytes, ");
        assert!(r.log.contains(&line), "{name}: {line:?} missing: {}", r.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_requests_not_granted_are_denied() {
    let server = Server::start();
    let url = format!(
        "http://127.0.0.1:{}/doc",
        server.port.wrapping_add(1).max(1)
    );
    for name in SCRIPTED {
        let params = serde_json::json!({ "url": url }).to_string();
        let r = scripted(name, grant(&server, ""), None, params).await;
        let (kind, msg) = failed(&r);
        assert!(
            matches!(kind, FailKind::Discard | FailKind::Retry),
            "{name}: {kind:?} {msg}"
        );
        assert!(msg.contains(&url), "{name}: {msg}");
        let line = format!("[http] denied GET {url}: scheme, host or port not in allowed_hosts");
        assert!(r.log.contains(&line), "{name}: {line:?} missing: {}", r.log);
    }
    assert_eq!(
        failed(
            &scripted(
                "python-fetch",
                grant(&server, ""),
                None,
                serde_json::json!({ "url": url }).to_string()
            )
            .await
        )
        .0,
        FailKind::Discard,
        "Python: a denial is for good"
    );
    assert!(
        server.hits.lock().expect("lock").is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_read_config_and_their_secret_is_redacted() {
    // HOME: a variable every test process has; its value is the secret.
    let secret = std::env::var("HOME").expect("HOME");
    let server = Server::start();
    let url = server.url("/doc");
    let side = grant(
        &server,
        &format!("[config]\nurl = '{url}'\n[secrets]\ntoken = {{ env = 'HOME' }}\n"),
    );
    for name in SCRIPTED {
        let r = scripted(name, side.clone(), Some("verbose"), "{}".into()).await;
        assert_eq!(
            r.end,
            RunEnd::Ok(format!("fetched {url}: 13 bytes, 2 keys")),
            "{name}: {}",
            r.log
        );
        assert!(r.log.contains("Bearer [redacted]"), "{name}: {}", r.log);
        assert!(!r.log.contains(&secret), "{name}: {}", r.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_ask_for_a_retry_after_the_servers_delay() {
    let server = Server::start();
    let url = server.url("/busy");
    for name in SCRIPTED {
        let params = serde_json::json!({ "url": url }).to_string();
        let r = scripted(name, grant(&server, ""), None, params).await;
        assert_eq!(
            failed(&r),
            (
                FailKind::Retry,
                format!("{url} answered 429: retry in 42 s").as_str()
            ),
            "{name}: {}",
            r.log
        );
        assert_eq!(r.retry_after_secs, Some(42), "{name}");
        assert!(r.children.is_empty() && r.result.is_none(), "{name}");
    }
}

/// The cost of the HTTP path per request, for docs/performance.md: `fetch`
/// making N requests to the local server in one job, against a plain Rust
/// client (std `TcpStream`, the same requests) in the same run. Not a
/// pass/fail test: run it by hand,
/// `cargo test --release --test contract http_cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn http_cost() {
    const N: u32 = 200;
    let server = Server::start();
    let port = server.port;
    let plain = move || {
        let started = std::time::Instant::now();
        for _ in 0..N {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            write!(
                s,
                "GET /doc HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: application/json\r\n\r\n"
            )
            .expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).expect("read");
            assert!(out.ends_with(br#"{"a":1,"b":2}"#));
        }
        started.elapsed()
    };
    let side = grant(&server, &format!("max_http_requests = {N}\n"));
    let (_dir, sb) = plugins_dir(&[("fetch", "fetch")], &[("fetch", side)]);
    // Warm: compile and first instantiation.
    let _ = run(
        &sb,
        "fetch",
        None,
        &params(&server.url("/doc"), 1),
        LimitOverrides::default(),
    )
    .await;
    for round in 1..=3 {
        let p = tokio::task::spawn_blocking(plain).await.expect("plain");
        let (r, _) = run(
            &sb,
            "fetch",
            None,
            &params(&server.url("/doc"), N),
            LimitOverrides::default(),
        )
        .await;
        assert!(matches!(r.end, RunEnd::Ok(_)), "{:?}", r.end);
        let per_plugin = r.elapsed.as_secs_f64() * 1e6 / f64::from(N);
        let per_plain = p.as_secs_f64() * 1e6 / f64::from(N);
        println!(
            "round {round}: plugin {per_plugin:.0} us/request, plain client {per_plain:.0} us/request, ratio {:.2}",
            per_plugin / per_plain
        );
    }
}
