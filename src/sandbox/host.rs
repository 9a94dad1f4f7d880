//! The store's data for one job and the host functions a plugin calls.
//!
//! Host calls never touch the database: they go to the caller's
//! [`HostEvents`], which must return at once (the runner keeps progress in
//! memory and writes it at a bounded rate). The counts here bound what a
//! plugin calling `log` or `record-history` a million times can cost.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::cojobs::plugin::{host, types};
use super::limits::Limiter;
use super::output::Capture;

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

/// Where a plugin's host calls go. Implemented by the runner (buffered
/// writes to the store) and by `cojobs exec` (printing to the terminal).
/// Every method must return promptly: it runs on the guest's thread.
pub trait HostEvents: Send {
    /// `percent` is already clamped to 0..=100.
    fn progress(&mut self, percent: u8, summary: Option<String>);
    /// A log line (at most [`MAX_LOG_MESSAGE`] bytes; it is also in the
    /// job's captured log).
    fn log(&mut self, level: LogLevel, message: String);
    /// Has a stop of this job been asked for?
    fn cancel_requested(&mut self) -> bool;
    /// A history record for the job.
    fn record_history(&mut self, key: Option<String>, comment: String, status: HistoryStatus);
}

/// Host events that go nowhere (used for `describe`).
pub struct NoEvents;

impl HostEvents for NoEvents {
    fn progress(&mut self, _: u8, _: Option<String>) {}
    fn log(&mut self, _: LogLevel, _: String) {}
    fn cancel_requested(&mut self) -> bool {
        false
    }
    fn record_history(&mut self, _: Option<String>, _: String, _: HistoryStatus) {}
}

/// Log lines passed on to [`HostEvents::log`] per job; later ones are only
/// kept in the (bounded) captured log.
pub const MAX_LOG_EVENTS: u32 = 1_000;
/// History records per job; later ones are dropped, with a note in the log.
pub const MAX_HISTORY_RECORDS: u32 = 1_000;
/// Longest log message passed on; longer ones are cut.
pub const MAX_LOG_MESSAGE: usize = 4096;

/// Everything one job's `Store` holds.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) capture: Capture,
    events: Box<dyn HostEvents>,
    log_events: u32,
    history_records: u32,
}

impl HostState {
    pub(super) fn new(
        wasi: WasiCtx,
        limiter: Limiter,
        capture: Capture,
        events: Box<dyn HostEvents>,
    ) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            capture,
            events,
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

/// Cut `s` to at most `max` bytes at a character boundary.
pub(super) fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        let summary = summary.map(|s| cut(s, MAX_LOG_MESSAGE));
        self.events.progress(percent.min(100), summary);
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        let level = match level {
            types::LogLevel::Trace => LogLevel::Trace,
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        };
        let message = cut(message, MAX_LOG_MESSAGE);
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

    fn record_history(
        &mut self,
        record_key: Option<String>,
        comment: String,
        status: types::HistoryStatus,
    ) {
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
        let status = match status {
            types::HistoryStatus::Ok => HistoryStatus::Ok,
            types::HistoryStatus::Failed => HistoryStatus::Failed,
            types::HistoryStatus::InProgress => HistoryStatus::InProgress,
            types::HistoryStatus::Notice => HistoryStatus::Notice,
            types::HistoryStatus::Queued => HistoryStatus::Queued,
        };
        // The store cuts both to 256 characters; cutting here bounds memory.
        let record_key = record_key.map(|k| cut(k, 1024));
        self.events
            .record_history(record_key, cut(comment, 1024), status);
    }
}
