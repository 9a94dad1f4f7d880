//! The command line: the `Cli` parser, one file per subcommand, and the
//! error type whose [`Error::exit_code`] `main` exits with.
//!
//! To add a subcommand: a file with an `Args` struct (clap derive) and a
//! `run(ctx, args, out)` function, a variant in [`Command`], an arm in
//! [`run`].

mod bench;
mod cancel;
mod co;
mod exec;
mod history;
mod list;
mod log;
mod migrate;
mod pause;
mod plugins;
mod prune;
mod queue;
mod run;
mod schedule;
mod serve;
mod show;
mod test;
mod text;
mod time;
mod token;
mod watch;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};
use crate::store::driver::{self, ErrorKind, JobStore};
use crate::store::postgres::PgStore;
use crate::store::sqlite::{Options, SqliteStore};
use crate::store::{Access, JobId, StoreError};
pub use text::printable;

/// A durable background-job runner whose jobs run as sandboxed
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "cojobs", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The job database (created and migrated on first use).
    #[arg(long, global = true, env = "COJOBS_DB", default_value = "cojobs.db")]
    pub db: PathBuf,
    /// The folder of plugin components (<job type>.wasm).
    #[arg(long, global = true, env = "COJOBS_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,
    /// How long to wait for another process's lock on the database before
    /// giving up (exit 1), in seconds.
    #[arg(
        long,
        global = true,
        env = "COJOBS_WAIT",
        value_name = "SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(0..=MAX_WAIT_SECS)
    )]
    pub wait: u64,
}

/// The longest `--wait` (SQLite counts its busy timeout in milliseconds in
/// an `int`).
const MAX_WAIT_SECS: u64 = 2_000_000;

impl Global {
    /// Open the job store named by `--db` to read and write it (created
    /// and migrated if need be).
    pub fn open_store(&self) -> Result<Db, Error> {
        self.open(Access::Write)
    }

    /// Open the job store named by `--db` to read it only: on SQLite no
    /// write lock is taken, and a read-only file works (issue 10, finding
    /// 10).
    pub fn open_reader(&self) -> Result<Db, Error> {
        self.open(Access::Read)
    }

    /// `--db` as the driver it selects: a PostgreSQL connection string
    /// (`postgres://`, `postgresql://`, libpq's `host=… dbname=…`), else
    /// the path of a SQLite file.
    pub fn target(&self) -> Target<'_> {
        Target::of(&self.db)
    }

    /// Open the store on a current-thread runtime a command's calls block
    /// on. [`Access::Inspect`] leaves a schema that is behind as it is, on
    /// either driver (`migrate --status`).
    pub(crate) fn open(&self, access: Access) -> Result<Db, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let store: Arc<dyn JobStore> = match self.target() {
            Target::Postgres(url) if access == Access::Inspect => {
                Arc::new(rt.block_on(PgStore::connect_unmigrated(url, 1))?)
            }
            Target::Postgres(url) => Arc::new(rt.block_on(PgStore::connect_with(url, 1))?),
            Target::Sqlite(path) => Arc::new(SqliteStore::open_with(
                path,
                Options::command(access, self.wait()),
            )?),
        };
        Ok(Db { rt, store })
    }

    /// The store `--db` names, for a runner (inside its runtime): on
    /// SQLite, locks are waited out however long they last.
    pub async fn runner_store(&self) -> Result<Arc<dyn JobStore>, Error> {
        self.target().runner_store().await
    }

    /// `--wait` as a duration.
    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.wait)
    }

    /// A sandbox over the `--plugins` folder, for commands that load
    /// plugins once (`queue`, `exec`, `plugins`). Sized for a couple of
    /// instances; the compiled-code cache is used only when the folder
    /// exists (`exec FILE.wasm` must not create a `plugins/` folder).
    pub fn sandbox(&self) -> Result<Sandbox, Error> {
        Ok(Sandbox::new(self.sandbox_config())?)
    }

    /// The configuration of [`Global::sandbox`].
    pub fn sandbox_config(&self) -> SandboxConfig {
        let mut config = SandboxConfig::new(&self.plugins);
        config.max_instances = 2;
        if !self.plugins.is_dir() {
            config.cache_dir = None;
        }
        config
    }
}

/// Which database `--db` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL connection string (may hold a password: never printed).
    Postgres(&'a str),
}

impl<'a> Target<'a> {
    /// The driver `db` selects: a PostgreSQL connection string
    /// (`postgres://`, `postgresql://`, libpq's `host=… dbname=…`), else
    /// the path of a SQLite file.
    pub fn of(db: &'a Path) -> Target<'a> {
        match db.to_str() {
            Some(url) if crate::store::postgres::is_postgres_url(url) => Target::Postgres(url),
            _ => Target::Sqlite(db),
        }
    }

    /// The store, opened as a runner uses it (inside its runtime): on
    /// SQLite, locks are waited out however long they last.
    pub async fn runner_store(self) -> Result<Arc<dyn JobStore>, Error> {
        Ok(match self {
            Target::Postgres(url) => Arc::new(PgStore::connect(url).await?),
            Target::Sqlite(path) => Arc::new(SqliteStore::open_with(path, Options::runner())?),
        })
    }
}

/// A command's store, with the runtime its calls block on. Derefs to the
/// store interface: `db.wait(db.get(id))`.
pub struct Db {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn JobStore>,
}

impl Db {
    /// Run one store call to its end.
    pub fn wait<T>(&self, call: impl Future<Output = driver::Result<T>>) -> Result<T, Error> {
        Ok(self.rt.block_on(call)?)
    }

    /// A job by id; an unknown id is bad input (exit 2).
    pub fn require(&self, id: JobId) -> Result<crate::store::Job, Error> {
        self.wait(self.store.get(id))?
            .ok_or(Error::Store(StoreError::NoJob(id)))
    }
}

impl std::ops::Deref for Db {
    type Target = dyn JobStore;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

/// The tokio runtime a command that calls into the (async) sandbox blocks
/// on: two workers, enough for a guest and a signal handler.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| SandboxError::Engine(format!("cannot start the async runtime: {e}")))?)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Queue a job; prints its id.
    Queue(Box<queue::Args>),
    /// List jobs, newest first.
    List(list::Args),
    /// Show every column of a job, its history records and retry chain.
    Show(show::Args),
    /// Cancel a job (queued: at once; running: asks its runner to stop).
    Cancel(cancel::Args),
    /// Show the history records of a job.
    History(history::Args),
    /// Delete ended jobs (OK, X, CX) that ended before a given age.
    Prune(prune::Args),
    /// Run due jobs: the daemon (until SIGINT/SIGTERM) or, with --once, cron mode.
    Run(run::Args),
    /// Watch running jobs live: a progress bar each, counts by status.
    Watch(watch::Args),
    /// Measure throughput and latency end to end against the sandbox alone.
    Bench(bench::Args),
    /// Bring the database's schema up to date (also done on first use);
    /// --status says where it stands and changes nothing.
    Migrate(migrate::Args),
    /// Cron schedules: queue a job at every tick (kept in the database;
    /// every runner queues due ticks, each once).
    #[command(subcommand)]
    Schedule(schedule::Command),
    /// Pause a job type or a CO: its queued jobs wait, running ones finish.
    Pause(pause::Args),
    /// Resume a paused job type or CO.
    Resume(pause::Args),
    /// Manage COs (the organizations that own jobs).
    #[command(subcommand)]
    Co(co::Command),
    /// Run one job now, without the queue or the database (for plugin
    /// authors); exits 0 when it ends OK.
    Exec(exec::Args),
    /// List the plugins in the plugins folder, or show one's modes and
    /// parameters.
    Plugins(plugins::Args),
    /// Run a plugin's component tests: each case of a CASES.toml file runs
    /// one job, HTTP answered from fixtures, and is held against what it
    /// expects; exits 0 when all pass.
    Test(test::Args),
    /// Serve the HTTP API, the web dashboard and metrics.
    Serve(serve::Args),
    /// Manage the access tokens of `serve`.
    #[command(subcommand)]
    Token(token::Command),
}

/// Why a command failed, and so which exit code it gets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input was wrong (exit 2).
    #[error("{0}")]
    Input(String),
    /// `queue --unique` found a live twin (exit 3).
    #[error("job {0} with the same CO, type, mode and params is already queued or running")]
    Duplicate(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A store operation failed (bad input: exit 2).
    #[error(transparent)]
    Db(#[from] driver::Error),
    #[error("cannot write output: {0}")]
    Io(#[from] io::Error),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A plugin could not be loaded or described (exit 1).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// `exec`'s job did not end OK; the command already printed how it
    /// ended, so `main` prints nothing more (exit 1).
    #[error("the job did not end OK")]
    JobFailed,
    /// `test`: this many cases failed; the command already said which
    /// (exit 1).
    #[error("{0} test cases failed")]
    CasesFailed(usize),
    #[error(transparent)]
    Runner(#[from] crate::runner::RunnerError),
    /// Another process held the database's lock for all of `--wait`.
    #[error(
        "database {} was locked by another process for {secs} s; nothing was done \
         (try again, or wait longer with --wait SECS)",
        db.display()
    )]
    Locked { db: PathBuf, secs: u64 },
}

impl Error {
    /// 2 for bad input, 3 for a refused duplicate, 1 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Duplicate(_) => 3,
            Error::Store(e) if e.is_input() => 2,
            // Bad input, or a request the job's state refuses (cancel of
            // an ended job).
            Error::Db(e) if matches!(e.kind(), ErrorKind::Input | ErrorKind::Conflict) => 2,
            _ => 1,
        }
    }

    /// True when the command has already told the user what went wrong.
    pub fn is_reported(&self) -> bool {
        matches!(self, Error::JobFailed | Error::CasesFailed(_))
    }

    /// True when output went to a closed pipe (`cojobs list | head`):
    /// `main` treats that as success.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Run a parsed command, writing its output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Error> {
    let g = cli.global.clone();
    run_command(&g, cli.command, out).map_err(|e| match e {
        Error::Store(e) if e.is_busy() => Error::Locked {
            db: g.db.clone(),
            secs: g.wait,
        },
        e => e,
    })
}

fn run_command(g: &Global, command: Command, out: &mut dyn Write) -> Result<(), Error> {
    match command {
        Command::Queue(args) => queue::run(g, *args, out),
        Command::List(args) => list::run(g, args, out),
        Command::Show(args) => show::run(g, args, out),
        Command::Cancel(args) => cancel::run(g, args, out),
        Command::History(args) => history::run(g, args, out),
        Command::Prune(args) => prune::run(g, args, out),
        Command::Co(cmd) => co::run(g, cmd, out),
        Command::Pause(args) => pause::run(g, args, true, out),
        Command::Resume(args) => pause::run(g, args, false, out),
        Command::Migrate(args) => migrate::run(g, args, out),
        Command::Schedule(cmd) => schedule::run(g, cmd, out),
        Command::Exec(args) => exec::run(g, args, out),
        Command::Plugins(args) => plugins::run(g, args, out),
        Command::Test(args) => test::run(g, args, out),
        Command::Run(args) => run::run(g, args, out),
        Command::Watch(args) => watch::run(g, args, out),
        Command::Bench(args) => bench::run(g, args, out),
        Command::Serve(args) => serve::run(g, args, out),
        Command::Token(cmd) => token::run(g, cmd, out),
    }
}

/// The user running the command: `$USER`, else "unknown".
pub fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Print rows as an aligned table (last column not padded), every cell
/// [`printable`].
pub(crate) fn write_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let rows: Vec<Vec<_>> = rows
        .iter()
        .map(|row| row.iter().map(|c| printable(c, false)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    write_row(out, &widths, header.iter().copied())?;
    for row in &rows {
        write_row(out, &widths, row.iter().map(|c| c.as_ref()))?;
    }
    Ok(())
}

fn write_row<'a>(
    out: &mut dyn Write,
    widths: &[usize],
    cells: impl Iterator<Item = &'a str>,
) -> io::Result<()> {
    let mut text = String::new();
    for (i, (cell, &w)) in cells.zip(widths).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        text.push_str(cell);
        if i + 1 < widths.len() {
            let pad = w.saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", text.trim_end())
}

/// Text for a table cell or a one-line value: NULL as "-", newlines
/// flattened, control characters escaped ([`printable`]).
pub(crate) fn cell(v: Option<&str>) -> String {
    match v {
        None => "-".to_string(),
        Some(s) => printable(&s.replace(['\n', '\r', '\t'], " "), false).into_owned(),
    }
}
