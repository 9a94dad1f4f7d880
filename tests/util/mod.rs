//! Helpers for driving the real `cojobs` binary against a database file in
//! a temporary directory.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A temporary directory with a database path, and a way to run `cojobs`
/// against it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Assert success and return stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Assert the exit code and that stderr contains `msg`.
    #[track_caller]
    pub fn fails(&self, code: i32, msg: &str) {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        assert!(
            self.stderr.starts_with("cojobs: ") || code == 2,
            "stderr does not start with 'cojobs: ': {self:#?}"
        );
        assert!(self.stderr.contains(msg), "stderr lacks {msg:?}: {self:#?}");
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("jobs.db");
        Env { dir, db }
    }

    /// Run `cojobs ARGS --db <db>` in the temp dir, with a fixed `$USER`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// [`Env::run`] with these environment variables set as well.
    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_cojobs"))
            .args(args)
            .envs(vars.iter().copied())
            .arg("--db")
            .arg(&self.db)
            .current_dir(self.dir.path())
            .env("USER", "ada")
            .env_remove("COJOBS_DB")
            .env_remove("COJOBS_PLUGINS")
            .output()
            .expect("run cojobs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Queue a job and return its id.
    #[track_caller]
    pub fn queue(&self, args: &[&str]) -> i64 {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        run.ok().trim().parse().expect("id on stdout")
    }

    pub fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).expect("open db")
    }

    /// Run SQL directly (as COmanage's own code would).
    pub fn sql(&self, sql: &str) {
        self.conn().execute_batch(sql).expect("sql");
    }

    /// Rows in `cm_co_jobs`.
    pub fn job_count(&self) -> i64 {
        self.scalar("SELECT count(*) FROM cm_co_jobs")
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        self.conn()
            .query_row(sql, [], |r| r.get(0))
            .expect("scalar")
    }

    pub fn text(&self, sql: &str) -> Option<String> {
        self.conn().query_row(sql, [], |r| r.get(0)).expect("text")
    }
}
