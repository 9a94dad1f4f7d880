//! `cojobs serve` as its users meet it: the real binary on a loopback
//! port, a real SQLite file, real plugins; requests over a socket. Every
//! refusal is checked to write nothing.

#[path = "util/http.rs"]
mod http;
#[path = "util/procs.rs"]
mod procs;
mod util;

use http::Server;
use procs::Setup;

/// `cojobs token add NAME ARGS`: the secret it prints.
fn token(setup: &Setup, name: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "add", name];
    all.extend_from_slice(args);
    let run = setup.cojobs(&all);
    let secret = run.ok().trim().to_string();
    assert!(secret.starts_with("cjt_") && secret.len() == 68, "{run:?}");
    secret
}

#[test]
fn open_mode_is_loopback_only_and_says_so() {
    let setup = Setup::new(&["hello"]);
    // Not loopback, no tokens: refused before listening.
    setup
        .cojobs(&["serve", "--listen", "0.0.0.0:0"])
        .fails(2, "without tokens");
    let server = Server::start(&setup, &[]);
    assert!(
        server.banner.contains("no tokens: loopback only"),
        "{}",
        server.banner
    );
    let r = server.get("/api/v1/stats", None);
    assert_eq!(r.status, 200, "{r:#?}");
    // A page whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
    let r = server.request("GET", "/api/v1/stats", &["Host: evil.example"], None);
    r.error(403, "forbidden");
    // Security headers on every answer.
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
}

#[test]
fn tokens_roles_and_co_scope() {
    let setup = Setup::new(&["hello"]);
    let co2: i64 = setup
        .cojobs(&["co", "add", "two"])
        .ok()
        .trim()
        .parse()
        .expect("co id");
    let co2s = co2.to_string();
    let admin = token(&setup, "root", &["--role", "admin"]);
    let viewer = token(&setup, "watcher", &["--role", "viewer"]);
    let scoped = token(&setup, "co2-ops", &["--role", "operator", "--co", &co2s]);
    let gone = token(&setup, "old", &["--role", "admin"]);
    setup.cojobs(&["token", "revoke", "old"]).ok();
    setup
        .cojobs(&["token", "add", "x", "--role", "root"])
        .fails(2, "");
    setup
        .cojobs(&["token", "add", "root", "--role", "viewer"])
        .fails(2, "already exists");
    let list = setup.cojobs(&["token", "list"]);
    let text = list.ok();
    assert!(
        text.contains("co2-ops") && text.contains("operator"),
        "{text}"
    );
    assert!(!text.contains("cjt_"), "secrets are never listed: {text}");
    let stored = setup.int("SELECT count(*) FROM cojobs_tokens WHERE token_hash LIKE 'cjt_%'");
    assert_eq!(stored, 0, "only hashes are stored");

    let j1 = setup.queue(&["hello", "--co", "1"]);
    let j2 = setup.queue(&["hello", "--co", &co2s]);
    let server = Server::start(&setup, &[]);
    assert!(
        server.banner.contains("3 live token(s)"),
        "{}",
        server.banner
    );

    // No token, a wrong one, a revoked one: 401.
    server.get("/api/v1/jobs", None).error(401, "unauthorized");
    server
        .get("/api/v1/jobs", Some("cjt_nope"))
        .error(401, "unauthorized");
    server
        .get("/api/v1/jobs", Some(&gone))
        .error(401, "unauthorized");
    server.get("/metrics", None).error(401, "unauthorized");
    // A browser without a token is sent to the login page.
    let r = server.get("/", None);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login")),
        "{r:#?}"
    );

    // A viewer reads, and may not act.
    assert_eq!(
        server
            .get(&format!("/api/v1/jobs/{j1}"), Some(&viewer))
            .status,
        200
    );
    server
        .post(&format!("/api/v1/jobs/{j1}/cancel"), Some(&viewer), "{}")
        .error(403, "forbidden");
    server
        .post("/api/v1/jobs", Some(&viewer), r#"{"type": "hello"}"#)
        .error(403, "forbidden");

    // A CO-scoped token sees its CO only: another CO's job is not found.
    server
        .get(&format!("/api/v1/jobs/{j1}"), Some(&scoped))
        .error(404, "not_found");
    server
        .post(&format!("/api/v1/jobs/{j1}/cancel"), Some(&scoped), "{}")
        .error(404, "not_found");
    assert_eq!(setup.status(j1), "Q", "nothing written");
    server
        .post(
            "/api/v1/jobs",
            Some(&scoped),
            r#"{"type": "hello", "co": 1}"#,
        )
        .error(404, "not_found");
    let page = server.get("/api/v1/jobs", Some(&scoped)).json();
    let ids: Vec<i64> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![j2]);
    let other = server.get("/api/v1/jobs?co=1", Some(&scoped)).json();
    assert_eq!(other["jobs"].as_array().map(Vec::len), Some(0));
    let stats = server.get("/api/v1/stats", Some(&scoped)).json();
    assert_eq!(stats["by_status"]["Q"], 1, "{stats}");
    let cos = server.get("/api/v1/cos", Some(&scoped)).json();
    assert_eq!(cos.as_array().map(Vec::len), Some(1), "{cos}");
    let metrics = server.get("/metrics", Some(&scoped));
    assert!(!metrics.body.contains("co=\"1\""), "{}", metrics.body);
    let r = server.get(&format!("/jobs/{j1}"), Some(&scoped));
    assert_eq!(r.status, 404, "the dashboard too: {r:#?}");
    // It acts on its own CO, and is named on the row.
    let r = server.post(&format!("/api/v1/jobs/{j2}/cancel"), Some(&scoped), "{}");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.json()["job"]["cancel_requested_by"], "co2-ops");
    assert_eq!(r.json()["job"]["status"], "CX");
    // The admin sees everything.
    let all = server.get("/api/v1/jobs", Some(&admin)).json();
    assert_eq!(all["jobs"].as_array().map(Vec::len), Some(2));
}

#[test]
fn queue_list_show_cancel_retry() {
    let setup = Setup::new(&["hello", "echo"]);
    let server = Server::start(&setup, &[]);
    // Queue: 201 with the row, checked against the plugin.
    let r = server.post(
        "/api/v1/jobs",
        None,
        r#"{"type": "hello", "summary": "first", "retry_interval": 60, "fuel": 1000000}"#,
    );
    assert_eq!(r.status, 201, "{r:#?}");
    let job = r.json();
    let id = job["id"].as_i64().expect("id");
    assert_eq!(job["status"], "Q");
    assert_eq!(job["queued_by"], "ada");
    assert_eq!(job["fuel_limit"], 1_000_000);

    // Bad input: the right 4xx, and nothing written.
    let before = setup.int("SELECT count(*) FROM cm_co_jobs");
    let cases: [(&str, u16, &str); 8] = [
        ("not json", 400, "bad_request"),
        (r#"{"type": "hello", "colour": 1}"#, 400, "bad_request"),
        (r#"{"type": "hello", "params": [1]}"#, 400, "bad_request"),
        (r#"{"type": "hello", "fuel": 0}"#, 400, "bad_request"),
        (r#"{"type": "../etc/passwd"}"#, 400, "bad_request"),
        (r#"{"type": "nosuchplugin"}"#, 400, "bad_request"),
        (r#"{"type": "hello", "co": 42}"#, 404, "not_found"),
        (
            r#"{"type": "hello", "mode": "xxxxxxxxxxxxxxxxx"}"#,
            400,
            "bad_request",
        ),
    ];
    for (body, status, code) in cases {
        let detail = server.post("/api/v1/jobs", None, body).error(status, code);
        assert!(!detail.is_empty(), "{body}");
    }
    let r = server.request(
        "POST",
        "/api/v1/jobs",
        &["Content-Type: text/plain"],
        Some(r#"{"type": "hello"}"#),
    );
    r.error(415, "unsupported_media_type");
    let big = format!(
        r#"{{"type": "hello", "summary": "{}"}}"#,
        "x".repeat(70_000)
    );
    let r = server.post("/api/v1/jobs", None, &big);
    assert_eq!(r.status, 413, "{r:#?}");
    assert_eq!(setup.int("SELECT count(*) FROM cm_co_jobs"), before);
    // unique: a live twin is a 409 naming it.
    let r = server.post(
        "/api/v1/jobs?unique=true",
        None,
        r#"{"type": "echo", "params": {"target": "x"}}"#,
    );
    assert_eq!(r.status, 201, "{r:#?}");
    let detail = server
        .post(
            "/api/v1/jobs?unique=true",
            None,
            r#"{"type": "echo", "params": {"target": "x"}}"#,
        )
        .error(409, "duplicate");
    assert!(detail.contains(&r.json()["id"].to_string()), "{detail}");

    // List: filters, text, bounded pages with a cursor.
    for _ in 0..3 {
        assert_eq!(
            server
                .post("/api/v1/jobs", None, r#"{"type": "hello"}"#)
                .status,
            201
        );
    }
    let page = server.get("/api/v1/jobs?type=hello&limit=2", None).json();
    let first: Vec<i64> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(first.len(), 2);
    assert!(first[0] > first[1], "newest first");
    let next = page["next"].as_i64().expect("a next page");
    let page2 = server
        .get(
            &format!("/api/v1/jobs?type=hello&limit=2&before={next}"),
            None,
        )
        .json();
    let second: Vec<i64> = page2["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(second.len(), 2);
    assert!(second[0] < first[1]);
    let found = server.get("/api/v1/jobs?q=FIRST", None).json();
    assert_eq!(found["jobs"][0]["id"], id);
    for bad in [
        "limit=0",
        "limit=501",
        "status=ZZ",
        "co=x",
        "queued_after=yesterday",
        "colour=red",
    ] {
        server
            .get(&format!("/api/v1/jobs?{bad}"), None)
            .error(400, "bad_request");
    }
    // Ids: only a positive integer is a job.
    for path in [
        "abc",
        "-1",
        "0",
        "1.5",
        "..%2F..%2Fetc",
        "99999999999999999999",
    ] {
        server
            .get(&format!("/api/v1/jobs/{path}"), None)
            .error(404, "not_found");
    }

    // Cancel: CX, by whom; a second cancel conflicts.
    let r = server.post(&format!("/api/v1/jobs/{id}/cancel"), None, "{}");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.json()["result"], "canceled");
    assert_eq!(setup.status(id), "CX");
    server
        .post(&format!("/api/v1/jobs/{id}/cancel"), None, "{}")
        .error(409, "conflict");
    let r = server.request("POST", &format!("/api/v1/jobs/{id}/cancel"), &[], None);
    r.error(415, "unsupported_media_type");
    // Retry now: a new Q row linked to it; the retried row names who.
    let r = server.post(&format!("/api/v1/jobs/{id}/retry"), None, "{}");
    assert_eq!(r.status, 201, "{r:#?}");
    let new = r.json()["id"].as_i64().expect("id");
    assert_eq!(r.json()["requeued_from_co_job_id"], id);
    assert_eq!(
        setup
            .text(&format!(
                "SELECT retried_by FROM cm_co_jobs WHERE id = {id}"
            ))
            .as_deref(),
        Some("ada")
    );
    server
        .post(&format!("/api/v1/jobs/{new}/retry"), None, "{}")
        .error(409, "conflict");
    // One job: every column, history, chain (paged).
    let detail = server.get(&format!("/api/v1/jobs/{new}"), None).json();
    assert_eq!(detail["job"]["register_summary"], "first");
    assert!(
        detail["job"]
            .as_object()
            .expect("job")
            .contains_key("job_log")
    );
    let chain: Vec<i64> = detail["chain"]["jobs"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(chain, vec![id, new]);
    let paged = server
        .get(&format!("/api/v1/jobs/{new}/chain?limit=1"), None)
        .json();
    assert_eq!(paged["next"], id);
    let rest = server
        .get(
            &format!("/api/v1/jobs/{new}/chain?limit=1&after={id}"),
            None,
        )
        .json();
    assert_eq!(rest["jobs"][0]["id"], new);
    assert_eq!(rest["next"], serde_json::Value::Null);
    // Plugins, COs, stats, metrics.
    let plugins = server.get("/api/v1/plugins", None).json();
    let names: Vec<&str> = plugins
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["plugin"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["echo", "hello"]);
    assert!(plugins[1]["limits"]["fuel"].as_u64().is_some(), "{plugins}");
    let stats = server.get("/api/v1/stats", None).json();
    assert_eq!(stats["by_status"]["CX"], 1, "{stats}");
    let m = server.get("/metrics", None);
    assert!(
        m.body.contains("cojobs_jobs_by_status{status=\"CX\"} 1"),
        "{}",
        m.body
    );
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    server.get("/nowhere", None).error(404, "not_found");
}

#[test]
fn dashboard_escapes_plugin_text_and_checks_csrf() {
    let setup = Setup::new(&["escapes"]);
    let evil = "<script>window.pwned=1</script>";
    let params = serde_json::json!({ "text": evil }).to_string();
    let id = setup.queue(&["escapes", "--params", &params]);
    setup.run_ok(&["--once"]);
    assert_eq!(setup.status(id), "OK");
    let queued = setup.queue(&["escapes", "--params", &params, "--summary", evil]);
    let server = Server::start(&setup, &[]);
    for path in [
        "/".to_string(),
        format!("/jobs/{id}"),
        format!("/jobs/{queued}"),
    ] {
        let r = server.get(&path, None);
        assert_eq!(r.status, 200, "{r:#?}");
        assert!(
            !r.body.contains("<script>window"),
            "{path} has raw markup: {}",
            r.body
        );
        assert!(
            r.body
                .contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
            "{path}: {}",
            r.body
        );
        assert!(r.header("content-security-policy").is_some());
    }
    // A forged form (no or a wrong CSRF token) changes nothing.
    for body in ["", "csrf=forged"] {
        let r = server.request(
            "POST",
            &format!("/jobs/{queued}/cancel"),
            &["Content-Type: application/x-www-form-urlencoded"],
            Some(body),
        );
        assert_eq!(r.status, 403, "{r:#?}");
    }
    assert_eq!(setup.status(queued), "Q");
    // The page's own token works.
    let page = server.get(&format!("/jobs/{queued}"), None).body;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page");
    let r = server.request(
        "POST",
        &format!("/jobs/{queued}/cancel"),
        &["Content-Type: application/x-www-form-urlencoded"],
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(r.status, 303, "{r:#?}");
    assert_eq!(setup.status(queued), "CX");
}

/// The ids of a bulk answer's results with `result`.
fn bulk_ids(v: &serde_json::Value, result: &str) -> Vec<i64> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|i| i["result"] == result)
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// Every job's (id, status), to check that a refusal wrote nothing.
fn statuses(setup: &Setup) -> String {
    let conn = setup.conn();
    let mut stmt = conn
        .prepare("SELECT id || ':' || status FROM cm_co_jobs ORDER BY id")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join(" ")
}

/// Issue 12: bulk cancel and retry act only when the caller's count is
/// what matches now, within the token's CO, and every refusal writes
/// nothing.
#[test]
fn bulk_cancel_and_retry_need_the_count() {
    let setup = Setup::new(&["hello"]);
    let co2 = setup.cojobs(&["co", "add", "two"]).ok().trim().to_string();
    let admin = token(&setup, "root", &["--role", "admin"]);
    let viewer = token(&setup, "watcher", &["--role", "viewer"]);
    let scoped = token(&setup, "co2-ops", &["--role", "operator", "--co", &co2]);
    let mine: Vec<i64> = (0..3)
        .map(|_| setup.queue(&["hello", "--co", "1"]))
        .collect();
    let theirs: Vec<i64> = (0..2)
        .map(|_| setup.queue(&["hello", "--co", &co2]))
        .collect();
    let server = Server::start(&setup, &[]);
    let before = statuses(&setup);

    // Refusals, none of which writes anything.
    let refusals: [(&str, Option<&str>, &str, u16, &str); 9] = [
        (
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"filter": {"status": "Q"}, "expected": 4}"#,
            409,
            "count_mismatch",
        ),
        (
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"filter": {"status": "OK"}, "expected": 0}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"filter": {}, "ids": [1], "expected": 1}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"expected": 1}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"ids": [], "expected": 0}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"filter": {"status": "Q"}}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/jobs/retry",
            Some(&admin),
            r#"{"filter": {"nope": 1}, "expected": 0}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/jobs/cancel",
            Some(&viewer),
            r#"{"filter": {}, "expected": 5}"#,
            403,
            "forbidden",
        ),
        (
            "/api/v1/jobs/cancel",
            None,
            r#"{"filter": {}, "expected": 5}"#,
            401,
            "unauthorized",
        ),
    ];
    for (path, tok, body, status, code) in refusals {
        let detail = server.post(path, tok, body).error(status, code);
        if status == 409 {
            assert!(detail.contains("5 job(s) match now, not the 4"), "{detail}");
        }
    }
    let many = format!(
        r#"{{"ids": {:?}, "expected": 1001}}"#,
        (1..=1001).collect::<Vec<i64>>()
    );
    server
        .post("/api/v1/jobs/cancel", Some(&admin), &many)
        .error(400, "bad_request");
    let r = server.request(
        "POST",
        "/api/v1/jobs/cancel",
        &[
            &format!("Authorization: Bearer {admin}"),
            "Content-Type: text/plain",
        ],
        Some(r#"{"filter": {}, "expected": 5}"#),
    );
    r.error(415, "unsupported_media_type");
    // The dashboard's bulk form without this session's CSRF token.
    let r = server.request(
        "POST",
        "/jobs/bulk",
        &[
            &format!("Authorization: Bearer {admin}"),
            "Content-Type: application/x-www-form-urlencoded",
        ],
        Some(&format!(
            "csrf=forged&action=cancel&id={}&expected=1",
            mine[0]
        )),
    );
    assert_eq!(r.status, 403, "{r:#?}");
    assert_eq!(statuses(&setup), before, "nothing was written");

    // A CO-scoped token counts and acts on its CO only.
    let v = server
        .post(
            "/api/v1/jobs/cancel",
            Some(&scoped),
            r#"{"filter": {"co": 1}, "expected": 0}"#,
        )
        .json();
    assert_eq!(v["matched"], 0, "{v}");
    let ids = format!(r#"{{"ids": [{}, {}], "expected": 1}}"#, mine[0], theirs[0]);
    let v = server
        .post("/api/v1/jobs/cancel", Some(&scoped), &ids)
        .json();
    assert_eq!(bulk_ids(&v, "canceled"), vec![theirs[0]], "{v}");
    let v = server
        .post(
            "/api/v1/jobs/cancel",
            Some(&scoped),
            r#"{"filter": {}, "expected": 1}"#,
        )
        .json();
    assert_eq!(bulk_ids(&v, "canceled"), vec![theirs[1]], "{v}");
    assert_eq!(setup.status(mine[0]), "Q", "CO 1's jobs untouched");

    // The admin cancels CO 1's three with the count it saw, then retries them.
    let v = server
        .post(
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"filter": {"co": 1, "status": "Q"}, "expected": 3}"#,
        )
        .json();
    let mut canceled = bulk_ids(&v, "canceled");
    canceled.sort_unstable();
    assert_eq!(canceled, mine, "{v}");
    for id in &mine {
        assert_eq!(setup.status(*id), "CX");
        let summary = setup.text(&format!(
            "SELECT finish_summary FROM cm_co_jobs WHERE id = {id}"
        ));
        assert_eq!(summary.as_deref(), Some("canceled by root"));
    }
    let v = server
        .post(
            "/api/v1/jobs/retry",
            Some(&admin),
            r#"{"filter": {"co": 1}, "expected": 3}"#,
        )
        .json();
    assert_eq!(v["action"], "retry", "{v}");
    let retried = bulk_ids(&v, "retried");
    assert_eq!(retried.len(), 3, "{v}");
    for item in v["results"].as_array().expect("results") {
        let (old, new) = (
            item["id"].as_i64().expect("id"),
            item["new_id"].as_i64().expect("new"),
        );
        assert_eq!(setup.status(new), "Q");
        assert_eq!(
            setup.int(&format!(
                "SELECT requeued_from_co_job_id FROM cm_co_jobs WHERE id = {new}"
            )),
            old
        );
        assert_eq!(
            setup
                .text(&format!(
                    "SELECT retried_by FROM cm_co_jobs WHERE id = {old}"
                ))
                .as_deref(),
            Some("root")
        );
    }
    // A count that was true before the retries is stale now: the three
    // new rows are queued, so a cancel expecting none does nothing.
    let detail = server
        .post(
            "/api/v1/jobs/cancel",
            Some(&admin),
            r#"{"filter": {"co": 1}, "expected": 0}"#,
        )
        .error(409, "count_mismatch");
    assert!(detail.contains("3 job(s) match now"), "{detail}");
    assert_eq!(setup.int("SELECT count(*) FROM cm_co_jobs"), 8);
    assert_eq!(
        setup.int("SELECT count(*) FROM cm_co_jobs WHERE status = 'Q'"),
        3
    );
}

/// The address a runner's log says its metrics are on.
fn metrics_addr(log: &str) -> Option<String> {
    let at = log.find("metrics on http://")?;
    let rest = &log[at + "metrics on http://".len()..];
    rest.split("/metrics").next().map(str::to_string)
}

/// The value of the sample line `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Issue 12: `cojobs run --metrics` serves the runner's own counters,
/// which say what it ran; the runner records itself in the store while it
/// runs and removes its row when it exits; `serve` lists it, and shows
/// the last hour's ends and latencies.
#[test]
fn runner_metrics_runners_and_activity() {
    let setup = Setup::new(&["hello", "discard"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    setup
        .cojobs(&["run", "--metrics", &taken])
        .fails(2, "cannot listen");
    setup.cojobs(&["run", "--metrics", "nowhere"]).fails(2, "");
    let hello: Vec<i64> = (0..3).map(|_| setup.queue(&["hello"])).collect();
    let bad = setup.queue(&["discard"]);
    let mut d = setup.daemon(&["--metrics", "127.0.0.1:0", "--workers", "2", "--lease", "3"]);
    d.wait_for(&setup, "all ended", || {
        setup.int("SELECT count(*) FROM cm_co_jobs WHERE status IN ('Q', 'GO')") == 0
    });
    assert_eq!(setup.status(bad), "X");
    let addr = metrics_addr(&d.log()).unwrap_or_else(|| panic!("no metrics address: {}", d.log()));
    let r = http::request_at(&addr, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let t = &r.body;
    let fuel = setup.int("SELECT sum(fuel_used) FROM cm_co_jobs WHERE job_type = 'hello'");
    for (series, want) in [
        (r#"cojobs_jobs_started_total{type="hello"}"#, 3.0),
        (
            r#"cojobs_jobs_finished_total{type="hello",outcome="ok"}"#,
            3.0,
        ),
        (
            r#"cojobs_jobs_finished_total{type="hello",outcome="failed"}"#,
            0.0,
        ),
        (
            r#"cojobs_jobs_finished_total{type="discard",outcome="failed"}"#,
            1.0,
        ),
        (r#"cojobs_job_run_seconds_count{type="hello"}"#, 3.0),
        (
            r#"cojobs_job_queue_latency_seconds_count{type="hello"}"#,
            3.0,
        ),
        (
            r#"cojobs_job_run_seconds_bucket{type="discard",le="+Inf"}"#,
            1.0,
        ),
        (r#"cojobs_fuel_used_total{type="hello"}"#, fuel as f64),
        ("cojobs_jobs_claimed_total", 4.0),
        ("cojobs_jobs_rescued_total", 0.0),
        ("cojobs_runner_workers", 2.0),
        ("cojobs_runner_workers_busy", 0.0),
    ] {
        assert_eq!(sample(t, series), Some(want), "{series} in:\n{t}");
    }
    assert!(fuel > 0, "hello uses fuel");
    assert!(
        sample(t, "cojobs_claims_total").is_some_and(|n| n >= 1.0),
        "{t}"
    );
    assert_eq!(
        http::request_at(&addr, "GET", "/other", &[], None).status,
        404
    );

    // The runner's row, as `serve` lists it; the last hour's activity.
    let me = format!("-{}", d.pid());
    let server = Server::start(&setup, &[]);
    let runners = server.get("/api/v1/runners", None).json();
    let list = runners.as_array().expect("runners");
    assert_eq!(list.len(), 1, "{runners}");
    assert!(
        list[0]["id"].as_str().is_some_and(|id| id.ends_with(&me)),
        "{runners}"
    );
    assert_eq!(
        (list[0]["pid"].as_i64(), list[0]["workers"].as_i64()),
        (Some(i64::from(d.pid())), Some(2))
    );
    assert_eq!(list[0]["alive"], true, "{runners}");
    let page = server.get("/runners", None);
    assert!(
        page.body.contains(&me) && page.body.contains("alive"),
        "{}",
        page.body
    );
    let stats = server.get("/api/v1/stats", None).json();
    let minutes = stats["finished_per_minute"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 60);
    let sum = |k: &str| {
        minutes
            .iter()
            .map(|m| m[k].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    assert_eq!(
        (sum("ok"), sum("failed"), sum("canceled")),
        (3, 1, 0),
        "{stats}"
    );
    assert_eq!(stats["queue_latency"]["jobs"], 4, "{stats}");
    assert!(
        stats["queue_latency"]["p99"]
            .as_f64()
            .is_some_and(|p| p >= 0.0),
        "{stats}"
    );
    let m = server.get("/metrics", None).body;
    assert_eq!(sample(&m, "cojobs_runners_alive"), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, r#"cojobs_jobs_finished_last_hour{outcome="ok"}"#),
        Some(3.0),
        "{m}"
    );
    let overview = server.get("/", None).body;
    assert!(
        overview.contains("id=\"chart\"") && overview.contains("data-total=\"4\""),
        "{overview}"
    );
    let plugins = server.get("/api/v1/plugins", None).json();
    assert!(
        plugins
            .as_array()
            .expect("plugins")
            .iter()
            .all(|p| p["grants"]["http_hosts"] == serde_json::json!([])),
        "{plugins}"
    );
    for (path, text) in [("/plugins", "discard"), ("/cos", "default")] {
        let r = server.get(path, None);
        assert!(r.status == 200 && r.body.contains(text), "{path}: {r:#?}");
    }

    // A clean exit removes the row.
    d.terminate();
    d.wait_ok();
    assert_eq!(setup.int("SELECT count(*) FROM cojobs_runners"), 0);
    assert_eq!(
        server.get("/api/v1/runners", None).json(),
        serde_json::json!([])
    );
    assert_eq!(hello.len(), 3);
}

/// Every row of the limits tables, to check that a refusal wrote nothing.
fn throttle_rows(setup: &Setup) -> String {
    let conn = setup.conn();
    let mut out = Vec::new();
    for sql in [
        "SELECT job_type || ':' || coalesce(paused_by, '-') FROM cojobs_type_limits \
         ORDER BY job_type",
        "SELECT co_id || ':' || coalesce(max_running, '-') || ':' || coalesce(paused_by, '-') \
         FROM cojobs_co_limits ORDER BY co_id",
    ] {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("query");
        out.extend(rows.map(|r| r.expect("row")));
    }
    out.join(" ")
}

/// The entry of `list` (a JSON array) whose `key` is `value`.
fn entry<'a>(
    list: &'a serde_json::Value,
    key: &str,
    value: serde_json::Value,
) -> &'a serde_json::Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {list}"))
}

/// Issue 14 over HTTP: pause and resume a job type (an operator without a
/// CO) and a CO (a CO-scoped token only its own), set a CO's most running
/// jobs (an admin without a CO); the plugins and COs answers show the
/// limits, the pause and the jobs running now; every refusal is a 4xx
/// `{error, detail}` that writes nothing.
#[test]
fn pause_resume_and_limits_over_the_api() {
    let setup = Setup::new(&["hello"]);
    let co2 = setup.cojobs(&["co", "add", "two"]).ok().trim().to_string();
    let admin = token(&setup, "root", &["--role", "admin"]);
    let ops = token(&setup, "ops", &["--role", "operator"]);
    let viewer = token(&setup, "watcher", &["--role", "viewer"]);
    let scoped = token(&setup, "co2-ops", &["--role", "operator", "--co", &co2]);
    let scoped_admin = token(&setup, "co2-root", &["--role", "admin", "--co", &co2]);
    setup.queue(&["hello", "--co", "1"]);
    let running = setup.queue(&["hello", "--co", &co2]);
    // One job "running", as a runner's claim leaves it (counted, not run).
    setup
        .conn()
        .execute(
            "UPDATE cm_co_jobs SET status = 'GO', runner_id = 'elsewhere' WHERE id = ?1",
            [running],
        )
        .expect("update");
    let server = Server::start(&setup, &[]);

    // Nothing limited or paused yet; the running job is counted.
    let plugins = server.get("/api/v1/plugins", Some(&viewer)).json();
    let hello = &entry(&plugins, "plugin", "hello".into())["throttle"];
    assert_eq!(
        hello,
        &serde_json::json!({"concurrency": null, "rate": null, "paused": false,
            "paused_by": null, "paused_at": null, "running": 1}),
        "{plugins}"
    );

    // Refusals: none writes anything.
    let before = throttle_rows(&setup);
    let refusals: [(&str, Option<&str>, &str, u16, &str); 13] = [
        (
            "/api/v1/plugins/hello/pause",
            None,
            "{}",
            401,
            "unauthorized",
        ),
        (
            "/api/v1/plugins/hello/pause",
            Some(&viewer),
            "{}",
            403,
            "forbidden",
        ),
        (
            "/api/v1/plugins/hello/pause",
            Some(&scoped),
            "{}",
            403,
            "forbidden",
        ),
        (
            "/api/v1/plugins/hello/pause",
            Some(&scoped_admin),
            "{}",
            403,
            "forbidden",
        ),
        (
            "/api/v1/plugins/..%2Fx/pause",
            Some(&ops),
            "{}",
            400,
            "bad_request",
        ),
        ("/api/v1/cos/1/pause", Some(&viewer), "{}", 403, "forbidden"),
        ("/api/v1/cos/1/pause", Some(&scoped), "{}", 404, "not_found"),
        ("/api/v1/cos/99/pause", Some(&ops), "{}", 404, "not_found"),
        ("/api/v1/cos/x/pause", Some(&ops), "{}", 404, "not_found"),
        (
            "/api/v1/cos/1/max-running",
            Some(&ops),
            r#"{"max_running": 2}"#,
            403,
            "forbidden",
        ),
        (
            "/api/v1/cos/1/max-running",
            Some(&scoped_admin),
            r#"{"max_running": 2}"#,
            404,
            "not_found",
        ),
        (
            &format!("/api/v1/cos/{co2}/max-running"),
            Some(&scoped_admin),
            r#"{"max_running": 9}"#,
            403,
            "forbidden",
        ),
        (
            "/api/v1/cos/99/max-running",
            Some(&admin),
            r#"{"max_running": 2}"#,
            404,
            "not_found",
        ),
    ];
    for (path, tok, body, status, code) in refusals {
        let detail = server.post(path, tok, body).error(status, code);
        assert!(!detail.is_empty(), "{path}");
    }
    for body in [
        "{}",
        "not json",
        r#"{"max_running": 0}"#,
        r#"{"max_running": 1000001}"#,
        r#"{"max_running": "3"}"#,
        r#"{"max_running": 3, "colour": 1}"#,
    ] {
        server
            .post("/api/v1/cos/1/max-running", Some(&admin), body)
            .error(400, "bad_request");
    }
    for path in ["/api/v1/plugins/hello/pause", "/api/v1/cos/1/pause"] {
        let r = server.request(
            "POST",
            path,
            &[
                &format!("Authorization: Bearer {ops}"),
                "Content-Type: text/plain",
            ],
            Some("{}"),
        );
        r.error(415, "unsupported_media_type");
    }
    assert_eq!(throttle_rows(&setup), before, "nothing was written");

    // An operator pauses the type (again: nothing changes), by name.
    let r = server.post("/api/v1/plugins/hello/pause", Some(&ops), "{}");
    assert_eq!(
        r.json(),
        serde_json::json!({"job_type": "hello", "co": null, "paused": true, "changed": true}),
        "{r:#?}"
    );
    let again = server
        .post("/api/v1/plugins/hello/pause", Some(&admin), "{}")
        .json();
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(
        setup
            .text("SELECT paused_by FROM cojobs_type_limits WHERE job_type = 'hello'")
            .as_deref(),
        Some("ops")
    );
    let plugins = server.get("/api/v1/plugins", Some(&scoped)).json();
    let hello = &entry(&plugins, "plugin", "hello".into())["throttle"];
    assert_eq!(
        (&hello["paused"], &hello["paused_by"]),
        (&true.into(), &"ops".into()),
        "{plugins}"
    );
    assert!(hello["paused_at"].is_string(), "{plugins}");
    // The jobs list marks the queued jobs that wait for it.
    let page = server.get("/", Some(&ops)).body;
    assert!(page.contains("paused: job types hello"), "{page}");
    assert!(page.contains("title=\"its job type is paused\""), "{page}");
    let r = server
        .post("/api/v1/plugins/hello/resume", Some(&ops), "{}")
        .json();
    assert_eq!(
        (&r["paused"], &r["changed"]),
        (&false.into(), &true.into()),
        "{r}"
    );
    let r = server
        .post("/api/v1/plugins/hello/resume", Some(&ops), "{}")
        .json();
    assert_eq!(r["changed"], false, "{r}");
    assert!(
        !server.get("/", Some(&ops)).body.contains("paused: "),
        "resumed"
    );

    // A CO-scoped operator pauses and resumes its own CO.
    let path = format!("/api/v1/cos/{co2}/pause");
    let r = server.post(&path, Some(&scoped), "{}").json();
    assert_eq!(
        (&r["co"], &r["paused"], &r["changed"]),
        (
            &co2.parse::<i64>().expect("id").into(),
            &true.into(),
            &true.into()
        ),
        "{r}"
    );
    let cos = server.get("/api/v1/cos", Some(&scoped)).json();
    assert_eq!(cos.as_array().map(Vec::len), Some(1), "{cos}");
    assert_eq!(
        (&cos[0]["paused"], &cos[0]["paused_by"], &cos[0]["running"]),
        (&true.into(), &"co2-ops".into(), &1.into()),
        "{cos}"
    );
    let all = server.get("/api/v1/cos", Some(&viewer)).json();
    let one = entry(&all, "id", 1.into());
    assert_eq!(
        (&one["paused"], &one["running"], &one["max_running"]),
        (&false.into(), &0.into(), &serde_json::Value::Null),
        "{all}"
    );
    assert_eq!(one["name"], "default", "the CO's own columns stay: {all}");
    let r = server
        .post(&format!("/api/v1/cos/{co2}/resume"), Some(&scoped), "{}")
        .json();
    assert_eq!(r["changed"], true, "{r}");

    // An admin without a CO sets a CO's limit, and clears it.
    let co = server.post(
        "/api/v1/cos/1/max-running",
        Some(&admin),
        r#"{"max_running": 3}"#,
    );
    assert_eq!(co.status, 200, "{co:#?}");
    assert_eq!(
        (&co.json()["id"], &co.json()["max_running"]),
        (&1.into(), &3.into())
    );
    assert_eq!(
        setup.int("SELECT max_running FROM cojobs_co_limits WHERE co_id = 1"),
        3
    );
    let all = server.get("/api/v1/cos", Some(&admin)).json();
    assert_eq!(entry(&all, "id", 1.into())["max_running"], 3, "{all}");
    let co = server
        .post(
            "/api/v1/cos/1/max-running",
            Some(&admin),
            r#"{"max_running": null}"#,
        )
        .json();
    assert_eq!(co["max_running"], serde_json::Value::Null, "{co}");
    assert_eq!(
        setup.text("SELECT max_running FROM cojobs_co_limits WHERE co_id = 1"),
        None
    );
    // `cojobs co list` sees what the API set.
    let r = server.post(
        "/api/v1/cos/1/max-running",
        Some(&admin),
        r#"{"max_running": 7}"#,
    );
    assert_eq!(r.status, 200, "{r:#?}");
    let list = setup.cojobs(&["co", "list"]).ok().to_string();
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().next() == Some("1")
                && l.split_whitespace().nth(3) == Some("7")),
        "{list}"
    );
}

/// The CSRF token in a dashboard page's first form.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_string()
}

/// Issue 14 in the dashboard: the plugins and COs pages show pause and
/// limits with pause/resume buttons and the limit's form, all of which
/// need the session's CSRF token; a viewer gets no buttons.
#[test]
fn dashboard_pause_buttons_and_limit_form() {
    let setup = Setup::new(&["hello"]);
    let admin = token(&setup, "root", &["--role", "admin"]);
    let viewer = token(&setup, "watcher", &["--role", "viewer"]);
    let server = Server::start(&setup, &[]);
    let form = |path: &str, body: &str| {
        server.request(
            "POST",
            path,
            &[
                &format!("Authorization: Bearer {admin}"),
                "Content-Type: application/x-www-form-urlencoded",
            ],
            Some(body),
        )
    };
    let seen = server.get("/plugins", Some(&viewer)).body;
    assert!(
        seen.contains("running now") && !seen.contains("id=\"pause-hello\""),
        "{seen}"
    );
    let seen = server.get("/cos", Some(&viewer)).body;
    assert!(
        !seen.contains("pause-co-1") && !seen.contains("max-running-1"),
        "{seen}"
    );

    // Forged forms change nothing.
    for (path, body) in [
        ("/plugins/hello/pause", "csrf=forged"),
        ("/plugins/hello/pause", ""),
        ("/cos/1/pause", "csrf=forged"),
        ("/cos/1/max-running", "csrf=forged&max_running=2"),
    ] {
        assert_eq!(form(path, body).status, 403, "{path}");
    }
    assert_eq!(throttle_rows(&setup), "", "nothing was written");

    // The page's own buttons work.
    let page = server.get("/plugins", Some(&admin)).body;
    assert!(page.contains("id=\"pause-hello\""), "{page}");
    let csrf = csrf_of(&page);
    let r = form("/plugins/hello/pause", &format!("csrf={csrf}"));
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/plugins")),
        "{r:#?}"
    );
    let page = server.get("/plugins", Some(&admin)).body;
    assert!(
        page.contains("class=\"paused\"") && page.contains(">Resume<"),
        "{page}"
    );
    assert_eq!(
        form("/plugins/hello/resume", &format!("csrf={csrf}")).status,
        303
    );
    assert_eq!(throttle_rows(&setup), "hello:-");

    let page = server.get("/cos", Some(&admin)).body;
    assert!(
        page.contains("id=\"pause-co-1\"") && page.contains("id=\"max-running-1\""),
        "{page}"
    );
    assert_eq!(form("/cos/1/pause", &format!("csrf={csrf}")).status, 303);
    assert_eq!(throttle_rows(&setup), "hello:- 1:-:root");
    let bad = form(
        "/cos/1/max-running",
        &format!("csrf={csrf}&max_running=lots"),
    );
    assert_eq!(bad.status, 400, "{bad:#?}");
    assert!(
        bad.body.contains("max running 'lots' is not a number"),
        "{}",
        bad.body
    );
    assert_eq!(
        form("/cos/1/max-running", &format!("csrf={csrf}&max_running=0")).status,
        400
    );
    assert_eq!(
        throttle_rows(&setup),
        "hello:- 1:-:root",
        "nothing was written"
    );
    assert_eq!(
        form("/cos/1/max-running", &format!("csrf={csrf}&max_running=4")).status,
        303
    );
    assert_eq!(form("/cos/1/resume", &format!("csrf={csrf}")).status, 303);
    assert_eq!(throttle_rows(&setup), "hello:- 1:4:-");
    let page = server.get("/cos", Some(&admin)).body;
    assert!(page.contains("td class=\"max-running\">4"), "{page}");
    assert_eq!(
        form(
            "/cos/1/max-running",
            &format!("csrf={csrf}&max_running=none")
        )
        .status,
        303
    );
    assert_eq!(throttle_rows(&setup), "hello:- 1:-:-");
}

/// Issue 13's data on the job page and in the API: a contract 0.2 job's
/// result (pretty, escaped), its children (paged), their parent link,
/// and the plugin's SHA-256 and contract.
#[test]
fn job_page_shows_result_children_and_plugin() {
    let setup = Setup::new(&["contract", "hello", "escapes"]);
    let parent = setup.queue(&["contract", "--mode", "children", "--params", r#"{"n": 3}"#]);
    let evil = "<script>window.pwned=1</script>";
    let params = serde_json::json!({ "text": evil }).to_string();
    let escaped = setup.queue(&["escapes", "--params", &params]);
    setup.run_ok(&["--once"]);
    assert_eq!(setup.status(parent), "OK", "{}", setup.dump());
    assert_eq!(setup.status(escaped), "OK", "{}", setup.dump());
    let kids: Vec<i64> = {
        let conn = setup.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM cm_co_jobs WHERE parent_co_job_id = ?1 ORDER BY id")
            .expect("prepare");
        stmt.query_map([parent], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    assert_eq!(kids.len(), 3);
    let server = Server::start(&setup, &[]);

    // The API: the first page of children in the job, then paged.
    let detail = server.get(&format!("/api/v1/jobs/{parent}"), None).json();
    let ids: Vec<i64> = detail["children"]["jobs"]
        .as_array()
        .expect("children")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, kids, "{detail}");
    assert_eq!(detail["children"]["next"], serde_json::Value::Null);
    let result: serde_json::Value =
        serde_json::from_str(detail["job"]["result"].as_str().expect("a result")).expect("JSON");
    assert_eq!(result, serde_json::json!({"children": 3, "parent": parent}));
    let page = server
        .get(&format!("/api/v1/jobs/{parent}/children?limit=2"), None)
        .json();
    assert_eq!(page["next"], kids[1], "{page}");
    let rest = server
        .get(
            &format!("/api/v1/jobs/{parent}/children?limit=2&after={}", kids[1]),
            None,
        )
        .json();
    assert_eq!(rest["jobs"][0]["id"], kids[2], "{rest}");
    assert_eq!(rest["next"], serde_json::Value::Null, "{rest}");
    for bad in ["limit=0", "limit=501", "after=x", "colour=1"] {
        server
            .get(&format!("/api/v1/jobs/{parent}/children?{bad}"), None)
            .error(400, "bad_request");
    }
    server
        .get("/api/v1/jobs/99999/children", None)
        .error(404, "not_found");

    // The parent's page: result, children, plugin; a child's: its parent.
    let body = server.get(&format!("/jobs/{parent}"), None).body;
    assert!(
        body.contains("&quot;children&quot;: 3"),
        "pretty JSON: {body}"
    );
    for kid in &kids {
        assert!(body.contains(&format!("data-child=\"{kid}\"")), "{body}");
    }
    assert!(body.contains("id=\"contract\">0.2.0<"), "{body}");
    let sha = setup
        .text(&format!(
            "SELECT plugin_sha256 FROM cm_co_jobs WHERE id = {parent}"
        ))
        .expect("a SHA-256");
    assert!(body.contains(&format!("id=\"sha256\">{sha}<")), "{body}");
    let body = server.get(&format!("/jobs/{}", kids[0]), None).body;
    assert!(
        body.contains(&format!("id=\"parent\" href=\"/jobs/{parent}\"")),
        "{body}"
    );
    assert!(body.contains("No child jobs."), "{body}");
    let r = server.get(&format!("/jobs/{parent}?children_after=x"), None);
    assert_eq!(r.status, 400, "{r:#?}");

    // A result holding markup is text.
    let body = server.get(&format!("/jobs/{escaped}"), None).body;
    assert!(!body.contains("<script>window"), "{body}");
    assert!(
        body.contains("&quot;text&quot;: &quot;&lt;script&gt;window.pwned=1&lt;/script&gt;&quot;"),
        "{body}"
    );
}

/// The counts `/api/v1/stats` gives are shared for a moment: a change this
/// server makes shows at once, one made elsewhere (the CLI) within the
/// moment.
#[test]
fn stats_are_shared_briefly_and_fresh_after_our_writes() {
    let setup = Setup::new(&["hello"]);
    let server = Server::start(&setup, &[]);
    let queued = |s: &serde_json::Value| s["by_status"]["Q"].as_i64().expect("Q");
    assert_eq!(queued(&server.get("/api/v1/stats", None).json()), 0);
    let r = server.post("/api/v1/jobs", None, r#"{"type": "hello"}"#);
    assert_eq!(r.status, 201, "{r:#?}");
    assert_eq!(
        queued(&server.get("/api/v1/stats", None).json()),
        1,
        "ours, at once"
    );
    setup.queue(&["hello"]);
    assert!(
        procs::wait_until(std::time::Duration::from_secs(10), || {
            queued(&server.get("/api/v1/stats", None).json()) == 2
        }),
        "the CLI's job never showed"
    );
}
