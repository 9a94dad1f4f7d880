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
