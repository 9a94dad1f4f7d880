//! The store's data for one job and the host functions a plugin calls.
//!
//! Host calls never touch the database: they go to the caller's
//! [`HostEvents`], which must return at once (the runner keeps progress in
//! memory and writes it at a bounded rate). The counts here bound what a
//! plugin calling `log` or `record-history` a million times can cost.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{self, v2::cojobs::plugin as v2};
use super::config::Secrets;
use super::http::HttpGate;
use super::limits::Limiter;
use super::output::Capture;
use crate::bounds;

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Status of a history record, as the seed's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStatus {
    Ok,
    Failed,
    InProgress,
    Notice,
    Queued,
}

impl HistoryStatus {
    /// The contract's name: `ok`, `failed`, `in-progress`, `notice`, `queued`.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryStatus::Ok => "ok",
            HistoryStatus::Failed => "failed",
            HistoryStatus::InProgress => "in-progress",
            HistoryStatus::Notice => "notice",
            HistoryStatus::Queued => "queued",
        }
    }

    /// The `cm_co_job_history_records.status` code.
    pub fn code(self) -> &'static str {
        match self {
            HistoryStatus::Ok => "OK",
            HistoryStatus::Failed => "X",
            HistoryStatus::InProgress => "GO",
            HistoryStatus::Notice => "NT",
            HistoryStatus::Queued => "Q",
        }
    }
}

/// One history record a plugin asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub key: Option<String>,
    pub comment: String,
    pub status: HistoryStatus,
    /// `co_person_id` (contract 0.2).
    pub co_person_id: Option<i64>,
    /// `org_identity_id` (contract 0.2).
    pub org_identity_id: Option<i64>,
}

/// Where a plugin's host calls go. Implemented by the runner (buffered
/// writes to the store) and by `cojobs exec` (printing to the terminal).
/// Every method must return promptly: it runs on the guest's thread.
/// Secrets are already redacted from everything passed here.
pub trait HostEvents: Send {
    /// `percent` is already clamped to 0..=100.
    fn progress(&mut self, percent: u8, summary: Option<String>);
    /// A log line (at most [`MAX_LOG_MESSAGE`] bytes; it is also in the
    /// job's captured log).
    fn log(&mut self, level: LogLevel, message: String);
    /// Has a stop of this job been asked for?
    fn cancel_requested(&mut self) -> bool;
    /// A history record for the job.
    fn record_history(&mut self, record: History);
}

/// Host events that go nowhere (used for `describe`).
pub struct NoEvents;

impl HostEvents for NoEvents {
    fn progress(&mut self, _: u8, _: Option<String>) {}
    fn log(&mut self, _: LogLevel, _: String) {}
    fn cancel_requested(&mut self) -> bool {
        false
    }
    fn record_history(&mut self, _: History) {}
}

/// Log lines passed on to [`HostEvents::log`] per job; later ones are only
/// kept in the (bounded) captured log.
pub const MAX_LOG_EVENTS: u32 = 1_000;
/// History records per job; later ones are dropped, with a note in the log.
pub const MAX_HISTORY_RECORDS: u32 = 1_000;
/// Longest log message passed on; longer ones are cut.
pub const MAX_LOG_MESSAGE: usize = 4096;

/// Results larger than this are refused (`set-result` returns an error).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Child jobs one run may queue.
pub const MAX_CHILDREN: usize = 1_000;

/// A job queued by a running job (contract 0.2 `queue-job`), committed
/// with the parent's `OK` end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildJob {
    pub job_type: String,
    /// A JSON object as text.
    pub params: String,
    pub mode: Option<String>,
    pub delay_secs: Option<u32>,
    pub max_retry: Option<u32>,
    pub retry_interval: Option<u32>,
}

/// Everything one job's `Store` holds.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) capture: Capture,
    http_ctx: WasiHttpCtx,
    http: HttpGate,
    /// `[config]` of the side file.
    values: Arc<BTreeMap<String, String>>,
    secrets: Secrets,
    /// What `set-result` last set.
    pub(super) result: Option<String>,
    /// What `queue-job` queued, in order.
    pub(super) children: Vec<ChildJob>,
    events: Box<dyn HostEvents>,
    log_events: u32,
    history_records: u32,
}

/// What a job's host state is made of, beside WASI.
pub(super) struct HostParts {
    pub limiter: Limiter,
    pub capture: Capture,
    pub events: Box<dyn HostEvents>,
    pub config: Arc<BTreeMap<String, String>>,
    pub secrets: Secrets,
    pub http: HttpGate,
}

impl HostState {
    pub(super) fn new(wasi: WasiCtx, parts: HostParts) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: parts.limiter,
            capture: parts.capture,
            http_ctx: WasiHttpCtx::new(),
            http: parts.http,
            values: parts.config,
            secrets: parts.secrets,
            result: None,
            children: Vec::new(),
            events: parts.events,
            log_events: 0,
            history_records: 0,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// The host calls of both contract versions, once: each version's
/// generated `Host` trait converts its types and calls these.
impl HostState {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        let summary = summary.map(|s| self.secrets.redact_head(&s, MAX_LOG_MESSAGE));
        self.events.progress(percent.min(100), summary);
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let message = self.secrets.redact_head(&message, MAX_LOG_MESSAGE);
        self.capture
            .append(format!("[{}] {}\n", level.as_str(), message).as_bytes());
        if self.log_events < MAX_LOG_EVENTS {
            self.log_events += 1;
            self.events.log(level, message);
        }
    }

    fn cancel_requested(&mut self) -> bool {
        self.events.cancel_requested()
    }

    fn record_history(&mut self, mut record: History) {
        self.history_records = self.history_records.saturating_add(1);
        if self.history_records > MAX_HISTORY_RECORDS {
            if self.history_records == MAX_HISTORY_RECORDS + 1 {
                self.capture.append(
                    format!(
                        "[cojobs] more than {MAX_HISTORY_RECORDS} history records: the rest are dropped\n"
                    )
                    .as_bytes(),
                );
            }
            return;
        }
        // The store cuts both to 256 characters; cutting here bounds memory.
        record.key = record.key.map(|k| self.secrets.redact_head(&k, 1024));
        record.comment = self.secrets.redact_head(&record.comment, 1024);
        self.events.record_history(record);
    }

    fn set_result(&mut self, json: String) -> Result<(), String> {
        if json.len() > MAX_RESULT_BYTES {
            return Err(format!(
                "result of {} bytes is over the limit of {MAX_RESULT_BYTES} bytes",
                json.len()
            ));
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
            return Err(format!("result is not JSON: {e}"));
        }
        self.result = Some(self.secrets.redact(&json));
        Ok(())
    }

    fn config_get(&mut self, name: String) -> Option<String> {
        self.values.get(&name).cloned()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.secrets.get(&name).map(str::to_string)
    }

    fn queue_job(&mut self, child: ChildJob) -> Result<u32, String> {
        if self.children.len() >= MAX_CHILDREN {
            return Err(format!("more than {MAX_CHILDREN} child jobs in one run"));
        }
        check_child(&child)?;
        let child = ChildJob {
            params: self.secrets.redact(&child.params),
            ..child
        };
        self.children.push(child);
        u32::try_from(self.children.len()).map_err(|e| e.to_string())
    }
}

/// Why `child` cannot be queued, if it cannot: what `cojobs queue` would
/// refuse (type, params, mode, delay and policy ranges), and a mode with
/// control characters (a database may refuse them at commit, failing the
/// parent's end with it).
fn check_child(child: &ChildJob) -> Result<(), String> {
    crate::job::validate_job_type(&child.job_type).map_err(|e| e.to_string())?;
    match serde_json::from_str::<serde_json::Value>(&child.params) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Err("child params must be a JSON object".into()),
        Err(e) => return Err(format!("child params are not JSON: {e}")),
    }
    if let Some(m) = &child.mode {
        if m.chars().count() > 16 {
            return Err("child mode is longer than 16 characters".into());
        }
        if m.chars().any(char::is_control) {
            return Err("child mode holds a control character".into());
        }
    }
    let bounded = [
        (bounds::DELAY, child.delay_secs),
        (bounds::MAX_RETRY, child.max_retry),
        (bounds::RETRY_INTERVAL, child.retry_interval),
    ];
    for (bound, value) in bounded {
        bound
            .check_opt(value.map(i64::from))
            .map_err(|e| format!("child {e}"))?;
    }
    Ok(())
}

/// The `Host` traits of one contract version, delegating to the calls
/// above.
macro_rules! host_calls {
    ($v:ident) => {
        impl bindings::$v::cojobs::plugin::types::Host for HostState {}

        impl From<bindings::$v::cojobs::plugin::types::LogLevel> for LogLevel {
            fn from(l: bindings::$v::cojobs::plugin::types::LogLevel) -> Self {
                use bindings::$v::cojobs::plugin::types::LogLevel as L;
                match l {
                    L::Trace => LogLevel::Trace,
                    L::Debug => LogLevel::Debug,
                    L::Info => LogLevel::Info,
                    L::Warn => LogLevel::Warn,
                    L::Error => LogLevel::Error,
                }
            }
        }

        impl From<bindings::$v::cojobs::plugin::types::HistoryStatus> for HistoryStatus {
            fn from(s: bindings::$v::cojobs::plugin::types::HistoryStatus) -> Self {
                use bindings::$v::cojobs::plugin::types::HistoryStatus as S;
                match s {
                    S::Ok => HistoryStatus::Ok,
                    S::Failed => HistoryStatus::Failed,
                    S::InProgress => HistoryStatus::InProgress,
                    S::Notice => HistoryStatus::Notice,
                    S::Queued => HistoryStatus::Queued,
                }
            }
        }
    };
}

host_calls!(v1);
host_calls!(v2);

impl bindings::v1::cojobs::plugin::host::Host for HostState {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        HostState::progress(self, percent, summary)
    }

    fn log(&mut self, level: bindings::v1::cojobs::plugin::types::LogLevel, message: String) {
        HostState::log(self, level.into(), message)
    }

    fn cancel_requested(&mut self) -> bool {
        HostState::cancel_requested(self)
    }

    fn record_history(
        &mut self,
        record_key: Option<String>,
        comment: String,
        status: bindings::v1::cojobs::plugin::types::HistoryStatus,
    ) {
        HostState::record_history(
            self,
            History {
                key: record_key,
                comment,
                status: status.into(),
                co_person_id: None,
                org_identity_id: None,
            },
        )
    }
}

impl v2::host::Host for HostState {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        HostState::progress(self, percent, summary)
    }

    fn log(&mut self, level: v2::types::LogLevel, message: String) {
        HostState::log(self, level.into(), message)
    }

    fn cancel_requested(&mut self) -> bool {
        HostState::cancel_requested(self)
    }

    fn record_history(&mut self, r: v2::types::HistoryRecord) {
        HostState::record_history(
            self,
            History {
                key: r.record_key,
                comment: r.comment,
                status: r.status.into(),
                co_person_id: r.co_person_id,
                org_identity_id: r.org_identity_id,
            },
        )
    }

    fn set_result(&mut self, json: String) -> Result<(), String> {
        HostState::set_result(self, json)
    }
}

impl v2::config::Host for HostState {
    fn get(&mut self, name: String) -> Option<String> {
        self.config_get(name)
    }

    fn secret(&mut self, name: String) -> Option<String> {
        HostState::secret(self, name)
    }
}

impl v2::jobs::Host for HostState {
    fn queue_job(
        &mut self,
        job_type: String,
        params: String,
        o: v2::types::ChildOptions,
    ) -> Result<u32, String> {
        HostState::queue_job(
            self,
            ChildJob {
                job_type,
                params,
                mode: o.mode,
                delay_secs: o.delay_seconds,
                max_retry: o.max_retry,
                retry_interval: o.retry_interval,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child() -> ChildJob {
        ChildJob {
            job_type: "hello".into(),
            params: r#"{"name":"x"}"#.into(),
            mode: Some("fast".into()),
            delay_secs: Some(60),
            max_retry: Some(3),
            retry_interval: Some(30),
        }
    }

    /// A plugin's `queue-job` is refused what `cojobs queue` would refuse.
    #[test]
    fn child_jobs_are_checked_as_queue_checks_jobs() {
        assert_eq!(check_child(&child()), Ok(()));
        let refused = |c: ChildJob, why: &str| {
            let e = check_child(&c).expect_err(why);
            assert!(e.contains(why), "{e}");
        };
        refused(
            ChildJob {
                job_type: "../x".into(),
                ..child()
            },
            "invalid job type",
        );
        refused(
            ChildJob {
                params: "[1]".into(),
                ..child()
            },
            "a JSON object",
        );
        refused(
            ChildJob {
                params: "{".into(),
                ..child()
            },
            "not JSON",
        );
        refused(
            ChildJob {
                mode: Some("m".repeat(17)),
                ..child()
            },
            "16 characters",
        );
        refused(
            ChildJob {
                mode: Some("a\0b".into()),
                ..child()
            },
            "control character",
        );
        refused(
            ChildJob {
                delay_secs: Some(u32::MAX),
                ..child()
            },
            "child delay",
        );
        refused(
            ChildJob {
                max_retry: Some(2_000_000),
                ..child()
            },
            "child max_retry",
        );
        refused(
            ChildJob {
                retry_interval: Some(u32::MAX),
                ..child()
            },
            "child retry_interval",
        );
    }
}
