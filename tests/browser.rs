//! The dashboard in a real browser: Debian's headless Chromium driven
//! through `chromedriver` (WebDriver, `util/webdriver.rs`) against the
//! real `cojobs serve` on a real SQLite file. `scripts/test.sh` installs
//! `chromium` and `chromium-driver` when missing; without them this test
//! fails saying so (it never skips).
//!
//! Screenshots of the overview, a job page and the runners page are saved
//! under `target/tmp/` (`docs/img/` holds copies).

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
    // Its structured result too: pretty JSON, as text.
    let result = b.wait_for("#result");
    assert!(
        b.text(&result).contains(&format!("\"text\": \"{evil}\"")),
        "{}",
        b.text(&result)
    );
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

    // Pause the job type from the plugins page: the jobs list marks its
    // queued job; resume it.
    b.goto(&format!("{base}/plugins"));
    b.click("#pause-hello");
    b.wait_for_text("#pause-hello", "Resume");
    b.goto(&format!("{base}/?status=Q"));
    b.wait_for_text("#paused", "paused: job types hello");
    b.wait_for("td.status span.paused");
    b.goto(&format!("{base}/plugins"));
    b.click("#pause-hello");
    b.wait_for_text("#pause-hello", "Pause");

    // A CO-scoped token does not see another CO's job.
    b.click("form.logout button");
    b.type_into("#token", &scoped);
    b.click("#login");
    b.wait_for(&format!("a[href='/jobs/{target}']"));
    assert!(b.find(&format!("a[href='/jobs/{other}']")).is_none());
    b.goto(&format!("{base}/jobs/{other}"));
    b.wait_for_text("main p.error", &format!("no job {other}"));
}

/// The progress bar's value on the open job page.
fn progress_of(b: &webdriver::Session) -> i64 {
    b.execute("return document.getElementById('progress').value;")
        .as_i64()
        .unwrap_or(-1)
}

/// Issue 12: a running job's progress moves on its page without a
/// reload; jobs ticked in the table are canceled in bulk after a
/// confirmation of their count; the runners page shows the runner and its
/// running job.
#[test]
fn progress_moves_bulk_cancel_and_runners() {
    let setup = Setup::new(&["cancellable", "hello"]);
    let later: Vec<i64> = (0..2)
        .map(|_| setup.queue(&["hello", "--delay", "3600", "--summary", "bulk me"]))
        .collect();
    let kept = setup.queue(&["hello", "--delay", "3600", "--summary", "keep me"]);
    let slow = setup.queue(&["cancellable", "--params", r#"{"seconds": 40}"#]);
    let mut runner = setup.daemon(&["--workers", "2", "--lease", "3"]);
    let server = Server::start(&setup, &[]);
    let base = format!("http://{}", server.addr);
    let driver = Driver::start();
    let b = driver.session();

    // The running job's page: the bar and the status line follow the
    // plugin's progress through the event stream.
    runner.wait_for(&setup, "the slow job runs", || setup.status(slow) == "GO");
    b.goto(&format!("{base}/jobs/{slow}"));
    b.wait_for_text("#status", "GO");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let first = loop {
        let p = progress_of(&b);
        if p > 0 {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "no progress shown");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let moved = loop {
        let p = progress_of(&b);
        if p > first {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "progress stayed at {first}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(moved > first);
    let line = b.wait_for("#status-line");
    assert!(b.text(&line).starts_with("waiting, "), "{}", b.text(&line));

    // The runners page: this runner, alive, running the slow job.
    let me = format!("-{}", runner.pid());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        b.goto(&format!("{base}/runners"));
        let row = b.wait_for("tr[data-runner]");
        let running = b.find("tr[data-runner] td.running").map(|e| b.text(&e));
        if b.text(&row).contains(&me) && running.as_deref() == Some("1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runner not shown: {}",
            b.source()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    b.wait_for_text("tr[data-runner] td.state", "alive");
    save("runners.png", &b.screenshot());

    // Tick two queued jobs, cancel them in bulk, confirming their count.
    b.goto(&format!("{base}/?status=Q"));
    for id in &later {
        b.click(&format!("input[name='id'][value='{id}']"));
    }
    b.click("#bulk-cancel");
    b.wait_for_text("main h1", "Confirm: cancel 2 job(s)");
    assert_eq!(
        setup.status(later[0]),
        "Q",
        "nothing before the confirmation"
    );
    b.click("#confirm");
    b.wait_for_text("main h1", "Done: cancel 2 job(s)");
    for id in &later {
        assert_eq!(setup.status(*id), "CX");
    }
    assert_eq!(setup.status(kept), "Q");
    b.goto(&format!("{base}/?status=CX"));
    for id in &later {
        b.wait_for(&format!("a[href='/jobs/{id}']"));
    }
    b.wait_for("#chart");
    runner.terminate();
    runner.wait_ok();
}
