//! The dashboard in a real browser: Debian's headless Chromium driven
//! through `chromedriver` (WebDriver, `util/webdriver.rs`) against the
//! real `cojobs serve` on a real SQLite file. `scripts/test.sh` installs
//! `chromium` and `chromium-driver` when missing; without them this test
//! fails saying so (it never skips).
//!
//! Screenshots of the overview and a job page are saved under
//! `target/tmp/` (`docs/img/` holds copies).

#[path = "util/http.rs"]
mod http;
#[path = "util/procs.rs"]
mod procs;
mod util;
#[path = "util/webdriver.rs"]
mod webdriver;

use http::Server;
use procs::Setup;
use webdriver::Driver;

fn save(name: &str, png: &[u8]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join(name), png).expect("save screenshot");
}

#[test]
fn log_in_see_cancel_retry_and_escape() {
    let setup = Setup::new(&["escapes", "hello"]);
    let co2 = setup.cojobs(&["co", "add", "two"]).ok().trim().to_string();
    // A plugin whose summary, log, status line and history are <script>.
    let evil = "<script>window.pwned=1</script>";
    let params = serde_json::json!({ "text": evil }).to_string();
    let ran = setup.queue(&["escapes", "--params", &params]);
    setup.run_ok(&["--once"]);
    let target = setup.queue(&["hello", "--summary", "cancel me"]);
    let other = setup.queue(&["hello", "--co", &co2, "--summary", "CO two's"]);
    let admin = setup
        .cojobs(&["token", "add", "ada", "--role", "admin"])
        .ok()
        .trim()
        .to_string();
    let scoped = setup
        .cojobs(&["token", "add", "co1", "--role", "operator", "--co", "1"])
        .ok()
        .trim()
        .to_string();
    let server = Server::start(&setup, &[]);
    let base = format!("http://{}", server.addr);
    let driver = Driver::start();
    let b = driver.session();

    // Not logged in: the login page; a wrong token stays there.
    b.goto(&format!("{base}/"));
    b.type_into("#token", "cjt_wrong");
    b.click("#login");
    b.wait_for_text("main p.error", "That token is not a live token.");
    // Log in: the overview lists the jobs, the counts are live.
    b.type_into("#token", &admin);
    b.click("#login");
    b.wait_for(&format!("a[href='/jobs/{target}']"));
    b.wait_for_text("[data-count='Q']", "2");
    save("overview.png", &b.screenshot());

    // The plugin's <script> is text on the page, and never ran.
    b.goto(&format!("{base}/jobs/{ran}"));
    let cell = b.wait_for("td[data-column='finish_summary']");
    assert_eq!(b.text(&cell), format!("summary {evil}"));
    let log = b.wait_for("pre.log");
    assert!(b.text(&log).contains(evil));
    assert_eq!(b.execute("return typeof window.pwned;"), "undefined");
    save("job.png", &b.screenshot());

    // Filter by status from the form.
    b.goto(&format!("{base}/?status=OK"));
    b.wait_for(&format!("a[href='/jobs/{ran}']"));
    assert!(b.find(&format!("a[href='/jobs/{target}']")).is_none());

    // Cancel from the job page: it turns CX, by whom.
    b.goto(&format!("{base}/jobs/{target}"));
    b.wait_for_text("#status", "Q");
    b.click("#cancel");
    b.wait_for_text("#status", "CX");
    assert_eq!(setup.status(target), "CX");
    b.wait_for_text("td[data-column='cancel_requested_by']", "ada");
    // Retry it: a new queued job, linked to it.
    b.click("#retry");
    b.wait_for_text(
        "td[data-column='requeued_from_co_job_id']",
        &target.to_string(),
    );
    b.wait_for_text("#status", "Q");

    // A CO-scoped token does not see another CO's job.
    b.click("form.logout button");
    b.type_into("#token", &scoped);
    b.click("#login");
    b.wait_for(&format!("a[href='/jobs/{target}']"));
    assert!(b.find(&format!("a[href='/jobs/{other}']")).is_none());
    b.goto(&format!("{base}/jobs/{other}"));
    b.wait_for_text("main p.error", &format!("no job {other}"));
}
