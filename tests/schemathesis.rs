//! The running `cojobs serve` against its own OpenAPI document, checked by
//! schemathesis (PyPI, installed in `.cache/venv-st` by
//! `scripts/install-schemathesis.sh`, which `scripts/test.sh` runs): it
//! generates requests from the document (valid and not) and checks that
//! no answer is a 5xx, and that every status code, content type and body
//! is one the document allows. Missing schemathesis fails the test.

#[path = "util/http.rs"]
mod http;
#[path = "util/procs.rs"]
mod procs;
mod util;

use std::path::Path;
use std::process::Command;

use http::Server;
use procs::Setup;

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let st = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv-st/bin/schemathesis");
    assert!(
        st.is_file(),
        "{} is missing: run scripts/install-schemathesis.sh (scripts/test.sh does)",
        st.display()
    );
    let setup = Setup::new(&["hello", "echo"]);
    let token = setup
        .cojobs(&["token", "add", "fuzz", "--role", "admin"])
        .ok()
        .trim()
        .to_string();
    // Rows in every shape the answers can take: queued, canceled, a chain.
    let a = setup.queue(&["hello", "--summary", "first"]);
    setup.queue(&["echo", "--params", r#"{"target": "x"}"#]);
    setup.cojobs(&["cancel", &a.to_string()]).ok();
    let server = Server::start(&setup, &[]);
    let reports = tempfile::tempdir().expect("tempdir");
    let out = Command::new(&st)
        .arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", server.addr))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--max-examples",
            "25",
            "--seed",
            "12",
            "--generation-database",
            "none",
            "--report-dir",
        ])
        .arg(reports.path())
        .current_dir(reports.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // It did test the operations (not a run that found nothing to do).
    assert!(
        text.contains("listJobs") || text.contains("/api/v1/jobs"),
        "{text}"
    );
}
