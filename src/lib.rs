//! cojobs: a durable background-job runner whose jobs run as sandboxed
//! WebAssembly components.
//!
//! The modules, and the one direction imports run in
//! (`cli -> runner -> (store, sandbox) -> job`):
//!
//! - [`job`]: the job state machine (`JobStatus`), how a run ends
//!   ([`job::Outcome`]) and the retry/requeue policy. Pure code, no I/O.
//! - [`schedule`]: cron schedules: when ticks fall (time zones, DST) and
//!   which due ticks a pass queues (catch-up). Pure code, no I/O.
//! - [`bounds`]: the range of every number a user sets on a job (limits,
//!   intervals), checked when given and clamped when read. Pure code.
//! - [`throttle`]: limits on starting jobs (per-type concurrency and
//!   rate, per-CO cap, pause): their values and parsing. Pure code; the
//!   claim enforces them in the database.
//! - [`store`]: the SQLite job store: schema, migrations and every SQL
//!   statement of the program. Knows nothing of WebAssembly.
//! - [`sandbox`]: the wasmtime host: the WIT bindings, the plugin cache,
//!   the limits (fuel, memory, wall clock, output). Knows nothing of the
//!   database; host calls leave through [`sandbox::HostEvents`].
//! - [`runner`]: the daemon, the one place where store and sandbox meet.
//! - [`submit`]: a job as someone submits it (a `queue --from` line, a
//!   `POST /api/v1/jobs` body) and its checks, shared by `cli` and `serve`.
//! - [`serve`]: `cojobs serve`: the HTTP API, the dashboard, metrics and
//!   access tokens, on the store interface.
//! - [`prom`]: the Prometheus text format, shared by `serve`'s `/metrics`
//!   and the runner's own (`cojobs run --metrics`).
//! - [`cli`]: the command line.

pub mod bounds;
pub mod cli;
pub mod job;
pub mod prom;
pub mod runner;
pub mod sandbox;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod submit;
pub mod throttle;
