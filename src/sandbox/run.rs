//! Running one job: a fresh `Store`, the limits, the call, and what the
//! way it ended means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::bindings::{v1, v2};
use super::config::SCRATCH_GUEST_PATH;
use super::host::{ChildJob, HostEvents, HostParts, HostState, NoEvents};
use super::http::HttpGate;
use super::limits::{LimitBreach, Limiter, Limits};
use super::output::Capture;
use super::params::PluginDescription;
use super::plugin::Pre;
use super::{LoadedPlugin, Sandbox, SandboxError};
use crate::job::{Outcome, Retry};

/// The job as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInput {
    pub id: i64,
    pub co_id: i64,
    pub job_type: String,
    pub mode: Option<String>,
    /// A JSON object as text.
    pub params: String,
    pub retry_count: u32,
    pub requeued_from: Option<i64>,
}

/// A way for the caller to stop a running job (cancel, shutdown). Cheap to
/// clone; firing it twice keeps the first reason.
#[derive(Debug, Clone)]
pub struct Interrupt {
    tx: Arc<watch::Sender<Option<String>>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt {
            tx: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop the run; `reason` comes back in [`RunEnd::Interrupted`].
    pub fn fire(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    async fn fired(&self) -> String {
        let mut rx = self.tx.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            // The sender lives in `self`: it cannot be gone while we wait.
            None => std::future::pending().await,
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The plugin returned `retry(msg)`.
    Retry,
    /// The plugin returned `discard(msg)`: never retried.
    Discard,
    /// The fuel budget ran out.
    Fuel,
    /// A memory or table grow past the limit.
    Memory,
    /// The wall-clock limit passed.
    Timeout,
    /// The guest trapped: a panic, an uncaught exception, a stack overflow.
    Trap,
    /// The plugin could not be found or loaded.
    Load,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// `ok(summary)`.
    Ok(String),
    /// Any failure, with a message a person understands.
    Failed { kind: FailKind, message: String },
    /// Stopped through the caller's [`Interrupt`], with its reason.
    Interrupted(String),
}

impl RunEnd {
    /// What the run means for the job row. `None` for an interrupted run:
    /// the caller knows whether that is a cancel or a shutdown.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            RunEnd::Ok(s) => Some(Outcome::Complete { summary: s.clone() }),
            RunEnd::Failed { kind, message } => Some(Outcome::Failed {
                summary: message.clone(),
                retry: if *kind == FailKind::Discard {
                    Retry::Never
                } else {
                    Retry::Policy
                },
            }),
            RunEnd::Interrupted(_) => None,
        }
    }

    /// A failure to load the plugin, as a run's end.
    pub fn load_failed(e: &SandboxError) -> Self {
        RunEnd::Failed {
            kind: FailKind::Load,
            message: e.to_string(),
        }
    }
}

/// Everything the caller learns about one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub end: RunEnd,
    /// Fuel consumed by the run (instantiation included).
    pub fuel_used: u64,
    /// The job's captured log: log lines, stdout and stderr, bounded.
    pub log: String,
    pub elapsed: Duration,
    /// The structured result (JSON text) a 0.2 plugin set, kept whatever
    /// the end; the caller stores it with an `OK` end.
    pub result: Option<String>,
    /// Child jobs a 0.2 plugin queued; the caller commits them with an
    /// `OK` end, and only then.
    pub children: Vec<ChildJob>,
    /// A `retry-after(seconds, ...)` failure's delay: the retry, if the
    /// policy allows one, starts after it instead of the retry interval.
    pub retry_after_secs: Option<u32>,
}

impl RunReport {
    /// A run that ended before the plugin was called.
    fn early(end: RunEnd, log: String, started: Instant) -> Self {
        RunReport {
            end,
            fuel_used: 0,
            log,
            elapsed: started.elapsed(),
            result: None,
            children: Vec::new(),
            retry_after_secs: None,
        }
    }
}

/// How `run` returned, whatever the contract version.
enum Returned {
    Ok(String),
    Retry(String),
    Discard(String),
    RetryAfter(u32, String),
}

impl From<v1::cojobs::plugin::types::Failure> for Returned {
    fn from(f: v1::cojobs::plugin::types::Failure) -> Self {
        use v1::cojobs::plugin::types::Failure as F;
        match f {
            F::Retry(m) => Returned::Retry(m),
            F::Discard(m) => Returned::Discard(m),
        }
    }
}

impl From<v2::cojobs::plugin::types::Failure> for Returned {
    fn from(f: v2::cojobs::plugin::types::Failure) -> Self {
        use v2::cojobs::plugin::types::Failure as F;
        match f {
            F::Retry(m) => Returned::Retry(m),
            F::Discard(m) => Returned::Discard(m),
            F::RetryAfter(r) => Returned::RetryAfter(r.seconds, r.message),
        }
    }
}

/// The job record of one contract version (the same fields in each).
macro_rules! wit_job {
    ($v:ident, $job:expr) => {
        $v::cojobs::plugin::types::Job {
            id: $job.id,
            co_id: $job.co_id,
            job_type: $job.job_type.clone(),
            mode: $job.mode.clone(),
            params: $job.params.clone(),
            retry_count: $job.retry_count,
            requeued_from: $job.requeued_from,
        }
    };
}

/// Instantiate the plugin and call its `run`.
async fn call_run(
    pre: &Pre,
    store: &mut Store<HostState>,
    job: &JobInput,
) -> wasmtime::Result<Returned> {
    Ok(match pre {
        Pre::V1(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            match instance.call_run(&mut *store, &wit_job!(v1, job)).await? {
                Ok(summary) => Returned::Ok(summary),
                Err(f) => f.into(),
            }
        }
        Pre::V2(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            match instance.call_run(&mut *store, &wit_job!(v2, job)).await? {
                Ok(summary) => Returned::Ok(summary),
                Err(f) => f.into(),
            }
        }
    })
}

/// Instantiate the plugin and call its `describe`.
async fn call_describe(
    pre: &Pre,
    store: &mut Store<HostState>,
) -> wasmtime::Result<PluginDescription> {
    Ok(match pre {
        Pre::V1(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_describe(&mut *store).await?.into()
        }
        Pre::V2(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_describe(&mut *store).await?.into()
        }
    })
}

/// The wall clock ran out (raised from the epoch callback).
#[derive(Debug, thiserror::Error)]
#[error("timed out")]
struct TimedOut;

fn timeout_message(timeout: Duration) -> String {
    let secs = timeout.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("timed out after {} s", timeout.as_secs())
    } else {
        format!("timed out after {secs:.1} s")
    }
}

/// The panic message in what a guest wrote to stderr.
///
/// - Rust: "thread '<unnamed>' (1) panicked at FILE:LINE:COL:\nMESSAGE\nnote: ...".
/// - componentize-py: the traceback's last line, then a Rust panic saying
///   only "Python function threw an unexpected exception".
/// - componentize-js: "... (received `Error: MESSAGE`) specified for ...".
/// - Anything else: the last meaningful line.
fn panic_message(stderr: &str) -> Option<String> {
    if let Some(at) = stderr.find("(received `") {
        let rest = &stderr[at + "(received `".len()..];
        if let Some(end) = rest.find("`)") {
            return Some(rest[..end].to_string());
        }
    }
    let last_line = |text: &str| {
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("note: "))
            .map(str::to_string)
    };
    if let Some(at) = stderr.rfind("panicked at ") {
        let line_start = stderr[..at].rfind('\n').map_or(0, |i| i + 1);
        let before = &stderr[..line_start];
        let rest = &stderr[at..];
        if let Some(nl) = rest.find('\n') {
            let msg = &rest[nl + 1..];
            let end = msg.find("\nnote: ").unwrap_or(msg.len());
            let msg = msg[..end].trim();
            if msg.starts_with("Python function threw")
                && let Some(m) = last_line(before)
            {
                return Some(m);
            }
            if !msg.is_empty() {
                return Some(msg.to_string());
            }
        }
    }
    last_line(stderr)
}

/// The summary of an out-of-bounds memory access.
pub const OUT_OF_BOUNDS: &str = "plugin trapped: out of bounds memory access \
     (its stack in linear memory overflowed, or it used a bad pointer)";

/// What a trap or host error during instantiate or call means.
fn classify(err: &wasmtime::Error, limits: &Limits, capture: &Capture) -> RunEnd {
    let failed = |kind, message| RunEnd::Failed { kind, message };
    if let Some(b) = err.downcast_ref::<LimitBreach>() {
        return failed(FailKind::Memory, b.to_string());
    }
    if err.downcast_ref::<TimedOut>().is_some() {
        return failed(FailKind::Timeout, timeout_message(limits.timeout));
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            return failed(
                FailKind::Fuel,
                format!("fuel budget of {} exhausted", limits.fuel),
            );
        }
        Some(Trap::StackOverflow) => {
            return failed(FailKind::Trap, "plugin overflowed its stack".to_string());
        }
        Some(Trap::Interrupt) => {
            return failed(FailKind::Timeout, timeout_message(limits.timeout));
        }
        // Compiled languages keep their own stack in linear memory (Rust
        // and C on wasm32 put it first, growing down to address 0), so
        // deep recursion there ends as an out-of-bounds access, not as
        // wasmtime's `StackOverflow`: say so.
        Some(Trap::MemoryOutOfBounds) if panic_message(&capture.stderr_tail()).is_none() => {
            return failed(FailKind::Trap, OUT_OF_BOUNDS.to_string());
        }
        _ => {}
    }
    match panic_message(&capture.stderr_tail()) {
        Some(m) => failed(FailKind::Trap, format!("plugin panicked: {m}")),
        None => {
            let what = err
                .downcast_ref::<Trap>()
                .map(|t| t.to_string())
                .unwrap_or_else(|| format!("{err:#}"));
            failed(FailKind::Trap, format!("plugin trapped: {what}"))
        }
    }
}

impl Sandbox {
    /// A fresh store for one run of `plugin`.
    fn store(
        &self,
        plugin: &LoadedPlugin,
        limits: &Limits,
        events: Box<dyn HostEvents>,
        capture: &Capture,
        scratch: Option<&std::path::Path>,
    ) -> Result<Store<HostState>, SandboxError> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(capture.stream(false))
            .stderr(capture.stream(true))
            .arg(&plugin.name)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let grant_err = |host: &std::path::Path, e: wasmtime::Error| SandboxError::Config {
            path: super::plugin::side_file(&plugin.path),
            message: format!("cannot open granted directory '{}': {e:#}", host.display()),
        };
        for g in &plugin.config.dirs {
            let perms = if g.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&g.host, &g.guest, perms)
                .map_err(|e| grant_err(&g.host, e))?;
        }
        if let Some(dir) = scratch {
            wasi.preopened_dir(dir, SCRATCH_GUEST_PATH, FsPerms::ReadWrite)
                .map_err(|e| grant_err(dir, e))?;
        }
        // A timeout too large to add to now (a plain-SQL row may hold any
        // number) means no deadline: `checked_add`, never a panic.
        let deadline = Instant::now().checked_add(limits.timeout);
        let state = HostState::new(
            wasi.build(),
            HostParts {
                limiter: Limiter::new(limits.memory_mib),
                capture: capture.clone(),
                events,
                config: std::sync::Arc::clone(&plugin.config.values),
                secrets: plugin.config.secrets.clone(),
                http: HttpGate::new(
                    std::sync::Arc::clone(&plugin.config.http),
                    capture.clone(),
                    deadline,
                    self.config.http.clone(),
                ),
            },
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.consumes_fuel() {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        }
        store.epoch_deadline_callback(move |_| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                Err(wasmtime::Error::new(TimedOut))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// Run one job of `plugin` under `limits`. Never panics and never
    /// hangs past `limits.timeout` (plus a tick) whatever the guest does.
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        job: &JobInput,
        limits: Limits,
        events: Box<dyn HostEvents>,
        interrupt: &Interrupt,
    ) -> RunReport {
        let started = Instant::now();
        let secrets = &plugin.config.secrets;
        let capture = Capture::redacting(limits.output_bytes, secrets.clone());
        // The scratch directory lives as long as this call: removed on drop.
        let scratch = if plugin.config.scratch {
            match tempfile::Builder::new().prefix("cojobs-scratch-").tempdir() {
                Ok(d) => Some(d),
                Err(e) => {
                    let end = RunEnd::Failed {
                        kind: FailKind::Load,
                        message: format!("cannot create scratch directory: {e}"),
                    };
                    return RunReport::early(end, String::new(), started);
                }
            }
        } else {
            None
        };
        let mut store = match self.store(
            plugin,
            &limits,
            events,
            &capture,
            scratch.as_ref().map(|d| d.path()),
        ) {
            Ok(s) => s,
            Err(e) => return RunReport::early(RunEnd::load_failed(&e), capture.text(), started),
        };
        let call = call_run(&plugin.pre, &mut store, job);
        let mut retry_after_secs = None;
        let failed = |kind, message: String| RunEnd::Failed {
            kind,
            message: secrets.redact(&message),
        };
        let end = tokio::select! {
            r = tokio::time::timeout(limits.timeout, call) => match r {
                Ok(Ok(Returned::Ok(summary))) => RunEnd::Ok(secrets.redact(&summary)),
                Ok(Ok(Returned::Retry(m))) => failed(FailKind::Retry, m),
                Ok(Ok(Returned::Discard(m))) => failed(FailKind::Discard, m),
                Ok(Ok(Returned::RetryAfter(secs, m))) => {
                    retry_after_secs = Some(secs);
                    failed(FailKind::Retry, m)
                }
                Ok(Err(e)) => classify(&e, &limits, &capture),
                Err(_elapsed) => failed(FailKind::Timeout, timeout_message(limits.timeout)),
            },
            reason = interrupt.fired() => RunEnd::Interrupted(reason),
        };
        let fuel_used = match store.get_fuel() {
            Ok(left) => limits.fuel.saturating_sub(left),
            Err(_) => 0, // fuel not counted
        };
        let state = store.into_data();
        let (result, children) = (state.result, state.children);
        drop(scratch);
        RunReport {
            end,
            fuel_used,
            log: capture.text(),
            elapsed: started.elapsed(),
            result,
            children,
            retry_after_secs,
        }
    }

    /// Ask a plugin to describe itself, under small limits (a `describe`
    /// that loops or traps is an error, not a hang). Cached per loaded
    /// version of the plugin.
    pub async fn describe(&self, plugin: &LoadedPlugin) -> Result<PluginDescription, SandboxError> {
        if let Some(d) = plugin.description.get() {
            return Ok(d.clone());
        }
        let limits = Limits {
            fuel: 2_000_000_000,
            memory_mib: self.config.defaults.memory_mib,
            timeout: Duration::from_secs(10),
            output_bytes: 16 * 1024,
        };
        let capture = Capture::new(limits.output_bytes);
        let fail = |message: String| SandboxError::Describe {
            name: plugin.name.clone(),
            message,
        };
        let mut store = self.store(plugin, &limits, Box::new(NoEvents), &capture, None)?;
        let call = call_describe(&plugin.pre, &mut store);
        let d = match tokio::time::timeout(limits.timeout, call).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                return Err(fail(match classify(&e, &limits, &capture) {
                    RunEnd::Failed { message, .. } => message,
                    other => format!("{other:?}"),
                }));
            }
            Err(_) => return Err(fail(timeout_message(limits.timeout))),
        };
        let _ = plugin.description.set(d.clone());
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rust_panic_message() {
        let s = "thread '<unnamed>' panicked at src/lib.rs:9:5:\nboom here\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(panic_message(s).as_deref(), Some("boom here"));
    }

    #[test]
    fn finds_python_and_js_exceptions() {
        let py = "Traceback (most recent call last):\n  File \"/0/app.py\", line 74, in run\nRuntimeError: python exploded: Ada\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(py).as_deref(),
            Some("RuntimeError: python exploded: Ada")
        );
        let js = "invalid variant tag value `undefined` (received `Error: js exploded: Ada`) specified for `Failure`\nStack:\n  export_run@/tmp/x.js:476:17\n\nRedirecting call to abort() to mozalloc_abort\n";
        assert_eq!(
            panic_message(js).as_deref(),
            Some("Error: js exploded: Ada")
        );
    }

    #[test]
    fn falls_back_to_last_line() {
        let s = "Traceback (most recent call last):\n  File \"app.py\", line 3\nRuntimeError: python exploded\n";
        assert_eq!(
            panic_message(s).as_deref(),
            Some("RuntimeError: python exploded")
        );
        assert_eq!(panic_message("\n \n"), None);
    }

    #[test]
    fn interrupt_keeps_first_reason() {
        let i = Interrupt::new();
        i.fire("a");
        i.fire("b");
        assert_eq!(i.reason().as_deref(), Some("a"));
    }

    #[test]
    fn discard_is_not_retryable() {
        let end = RunEnd::Failed {
            kind: FailKind::Discard,
            message: "m".into(),
        };
        assert_eq!(
            end.outcome(),
            Some(Outcome::Failed {
                summary: "m".into(),
                retry: Retry::Never
            })
        );
    }
}
