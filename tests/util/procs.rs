//! Process helpers shared by the runner, fault and hostile-plugin tests: a
//! [`Setup`] (temp database + plugins directory), a [`Daemon`] (`cojobs run`
//! in the background, SIGKILLed on drop) and [`wait_until`].
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rusqlite::params;

use crate::util::{self, Env};

/// How long any wait may take on a slow, loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

/// The example plugins built by `scripts/build-plugins.sh`.
pub fn built_plugins() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    assert!(
        dir.join("hello.wasm").is_file(),
        "example plugins are missing: run scripts/build-plugins.sh (the README's test command does)"
    );
    dir
}

/// A test's database plus a plugins directory holding copies of `names`.
pub struct Setup {
    pub env: Env,
    pub plugins: tempfile::TempDir,
}

impl Setup {
    pub fn new(names: &[&str]) -> Setup {
        let plugins = tempfile::tempdir().expect("tempdir");
        for n in names {
            std::fs::copy(
                built_plugins().join(format!("{n}.wasm")),
                plugins.path().join(format!("{n}.wasm")),
            )
            .expect("copy plugin");
        }
        Setup {
            env: Env::new(),
            plugins,
        }
    }

    pub fn plugins(&self) -> &str {
        self.plugins.path().to_str().expect("utf-8 temp path")
    }

    /// `cojobs --plugins <ours> ARGS --db <db>`, to the end.
    pub fn cojobs(&self, args: &[&str]) -> util::Run {
        let mut all = vec!["--plugins", self.plugins()];
        all.extend_from_slice(args);
        self.env.run(&all)
    }

    /// Queue a job (checked against our plugins); its id.
    #[track_caller]
    pub fn queue(&self, args: &[&str]) -> i64 {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        self.cojobs(&all)
            .ok()
            .trim()
            .parse()
            .expect("queue prints the new id")
    }

    /// `cojobs run ARGS` to the end, asserting it exited 0.
    #[track_caller]
    pub fn run_ok(&self, args: &[&str]) -> util::Run {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let run = self.cojobs(&all);
        run.ok();
        run
    }

    /// Start `cojobs run ARGS` in the background.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        Daemon::start(self, args)
    }

    pub fn conn(&self) -> rusqlite::Connection {
        let conn = self.env.conn();
        conn.busy_timeout(Duration::from_secs(30))
            .expect("busy timeout");
        conn
    }

    /// One integer from SQL.
    pub fn int(&self, sql: &str) -> i64 {
        self.conn()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// One optional text from SQL.
    pub fn text(&self, sql: &str) -> Option<String> {
        self.conn()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn status(&self, id: i64) -> String {
        self.text(&format!("SELECT status FROM cm_co_jobs WHERE id = {id}"))
            .expect("status")
    }

    /// The whole table, for failure messages.
    pub fn dump(&self) -> String {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, co_id, job_type, status, max_retry_count, requeued_from_co_job_id, \
                 start_time, complete_time, start_summary, finish_summary, runner_id \
                 FROM cm_co_jobs ORDER BY id LIMIT 50",
            )
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                let mut cols = Vec::new();
                for i in 0..11 {
                    let v: rusqlite::types::Value = r.get(i)?;
                    cols.push(format!("{v:?}"));
                }
                Ok(cols.join(" | "))
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
    }
}

/// Poll `cond` every 100 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `cojobs run` process. Killed (SIGKILL) on drop if still running, so a
/// failing test never leaks processes. Its stderr (the tracing log) goes to
/// a file, never a pipe nobody reads.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(setup: &Setup, args: &[&str]) -> Daemon {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = setup.env.dir.path().join(format!("runner-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_cojobs"))
            .arg("--plugins")
            .arg(setup.plugins.path())
            .arg("--db")
            .arg(&setup.env.db)
            .arg("run")
            .args(args)
            .current_dir(setup.env.dir.path())
            .env("USER", "ada")
            .env("RUST_LOG", "info")
            .env_remove("COJOBS_DB")
            .env_remove("COJOBS_PLUGINS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start cojobs run");
        Daemon { child, log }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own child, which has not been
        // reaped (we hold its `Child` and only reap it in `wait`/`kill9`,
        // after which no test signals it), so the pid cannot be reused.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill -{sig} {}", self.pid());
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Send SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait for the process to exit, up to `timeout`.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        let exited = wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(
            exited,
            "cojobs run did not exit within {timeout:?}; log:\n{}",
            self.log()
        );
        status.expect("exited")
    }

    /// Wait for the process to exit 0.
    #[track_caller]
    pub fn wait_ok(&mut self) {
        let status = self.wait(DEADLINE * 3);
        assert!(
            status.success(),
            "cojobs run exited {status}; log:\n{}",
            self.log()
        );
    }

    /// [`wait_until`], with this daemon's log and the table in the panic.
    #[track_caller]
    pub fn wait_for(&self, setup: &Setup, what: &str, cond: impl FnMut() -> bool) {
        assert!(
            wait_until(DEADLINE, cond),
            "timed out waiting until {what}\nrows:\n{}\nlog:\n{}",
            setup.dump(),
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A stopped process dies of SIGKILL too; SIGCONT is harmless.
            self.signal(libc::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Insert `n` due rows of `job_type` for `co` by plain SQL, in one
/// transaction (as fast as queueing gets); their ids, in order.
pub fn insert_jobs(setup: &Setup, co: i64, job_type: &str, n: usize, queue_time: &str) -> Vec<i64> {
    let mut conn = setup.conn();
    let tx = conn.transaction().expect("begin");
    let mut ids = Vec::with_capacity(n);
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
                 VALUES (?1, ?2, NULL, 'Q', ?3)",
            )
            .expect("prepare");
        for _ in 0..n {
            stmt.execute(params![co, job_type, queue_time])
                .expect("insert");
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit().expect("commit");
    ids
}
