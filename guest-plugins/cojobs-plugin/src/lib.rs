//! # cojobs-plugin: write cojobs job plugins in Rust
//!
//! A cojobs plugin is a WebAssembly component implementing the world
//! `cojobs:plugin/plugin@0.2.0` (see `wit/cojobs.wit` in the project). This
//! crate generates the bindings for that world and adds a thin, typed layer
//! on top, so a plugin is a struct, one trait impl and one macro call:
//!
//! ```ignore
//! use cojobs_plugin::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Params { #[serde(default)] name: Option<String> }
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "Says hello.")
//!             .param(ParamSpec::text("name", "Who to greet").default("world"))
//!     }
//!     fn run(job: Job) -> Result<String, Failure> {
//!         let p: Params = job.params()?;           // bad JSON -> discard("bad params: ...")
//!         progress(100, Some("done"));
//!         Ok(format!("hello, {}", p.name.as_deref().unwrap_or("world")))
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! ## Building
//!
//! The plugin crate is a `cdylib` depending on this crate (plus `serde` if it
//! takes parameters):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//! ```
//!
//! and `cargo build --release --target wasm32-wasip2` produces a component in
//! `target/wasm32-wasip2/release/<crate>.wasm` (no `cargo component` needed;
//! `rustup target add wasm32-wasip2` once). Copy it to `plugins/<job_type>.wasm`.
//!
//! ## The contract in short
//!
//! * [`Plugin::describe`] returns a [`PluginInfo`]: name, version,
//!   description, accepted modes and parameter specs. The runner uses it to
//!   list plugins and to check (and fill defaults into) a job's parameters
//!   when the job is queued. Build it with [`PluginInfo::new`] and the
//!   [`ParamSpec`] constructors.
//! * [`Plugin::run`] gets the [`Job`] and returns `Ok(summary)` (the job's
//!   finish summary), or `Err(Failure::Retry(msg))` (retried per the job's
//!   retry policy) or `Err(Failure::Discard(msg))` (never retried). Use
//!   [`retry`] and [`discard`] to build those.
//! * A panic traps the component; its message goes to stderr, which the host
//!   captures and puts in the finish summary ("plugin panicked: ...").
//! * The host offers [`progress`], [`log`], [`history`] and
//!   [`cancel_requested`]. Everything else (files, environment, sockets) is
//!   denied unless the operator granted it; stdout/stderr go to the job's log.
//! * Long-running plugins should call [`cancel_requested`] now and then and
//!   return soon once it is true. The host also enforces fuel, memory and
//!   wall-clock limits, so a plugin that ignores it is stopped anyway.
//!
//! ## New in contract 0.2
//!
//! * [`config::get`] / [`config::get_as`] read the side file's `[config]`,
//!   [`config::secret`] its `[secrets]` (never logged: the host redacts).
//! * [`http`]: requests to the hosts the side file grants (`allowed_hosts`).
//! * [`set_result`]: a JSON result stored with the job beside its summary.
//! * [`queue_job`]: child jobs, committed with this job's `OK` end only.
//! * [`retry_after`]: retry, but not before a delay.
//! * [`history_for`]: a history record with `co_person_id` / `org_identity_id`.

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "cojobs:plugin/plugin-http@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export",
        generate_all,
    });
}

pub mod http;

/// Re-exported so plugins need no direct `serde_json` dependency for simple
/// cases (e.g. `cojobs_plugin::serde_json::json!`).
pub use serde_json;

pub use bindings::cojobs::plugin::types::{
    ChildOptions, Failure, HistoryRecord, HistoryStatus, Job, LogLevel, ParamSpec, ParamType,
    PluginInfo, RetryLater,
};

/// The trait a plugin implements: `describe()` and `run(job)`.
///
/// (It is the world's generated `Guest` trait under a friendlier name.)
pub use bindings::Guest as Plugin;

/// Export a type implementing [`Plugin`] as the component's `describe` and
/// `run`. Call it exactly once, at the crate root of a `cdylib`:
///
/// ```ignore
/// cojobs_plugin::export_plugin!(Hello);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($ty:ident) => {
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

/// Everything a plugin usually needs: `use cojobs_plugin::prelude::*;`
pub mod prelude {
    pub use crate::{
        cancel_requested, config, discard, export_plugin, history, history_for, http, log,
        progress, queue_job, retry, retry_after, set_result, ChildOptions, Failure,
        HistoryStatus, Job, ParamSpec, ParamType, Plugin, PluginInfo,
    };
}

// ---------------------------------------------------------------- failures

/// `Failure::Retry(msg)`: the run failed and the runner retries it according
/// to the job's retry policy.
pub fn retry(msg: impl Into<String>) -> Failure {
    Failure::Retry(msg.into())
}

/// `Failure::Discard(msg)`: the run failed for good, never retried.
pub fn discard(msg: impl Into<String>) -> Failure {
    Failure::Discard(msg.into())
}

/// `Failure::RetryAfter`: the run failed; retry it per the job's policy,
/// but not sooner than `seconds` from now (e.g. an API's `Retry-After`).
pub fn retry_after(seconds: u32, msg: impl Into<String>) -> Failure {
    Failure::RetryAfter(RetryLater {
        seconds,
        message: msg.into(),
    })
}

// ----------------------------------------------------------- 0.2 additions

/// The side file's `[config]` and `[secrets]`.
pub mod config {
    use crate::{discard, Failure};

    /// A `[config]` value: a string as written, anything else as JSON text.
    pub fn get(name: &str) -> Option<String> {
        crate::bindings::cojobs::plugin::config::get(name)
    }

    /// A `[config]` value parsed into `T` (a number, a table, a string...);
    /// `Ok(None)` when it is not set, `discard("bad config ...")` when it
    /// does not parse.
    pub fn get_as<T: serde::de::DeserializeOwned>(name: &str) -> Result<Option<T>, Failure> {
        let Some(text) = get(name) else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .or_else(|_| serde_json::from_value(serde_json::Value::String(text)))
            .map(Some)
            .map_err(|e| discard(format!("bad config value '{name}': {e}")))
    }

    /// A `[secrets]` value. The host hides it in everything the job
    /// writes (log, summary, history, result): use it, do not print it.
    pub fn secret(name: &str) -> Option<String> {
        crate::bindings::cojobs::plugin::config::secret(name)
    }
}

/// Set the job's structured result (any serializable value, at most
/// 64 KiB as JSON), stored with the job when it ends `OK`.
pub fn set_result(value: &impl serde::Serialize) -> Result<(), Failure> {
    let json = serde_json::to_string(value).map_err(|e| discard(format!("result: {e}")))?;
    bindings::cojobs::plugin::host::set_result(&json).map_err(discard)
}

/// Queue a child job of `job_type` with `params` (serialized to a JSON
/// object). It is committed with this job's `OK` end, and only then.
/// Returns the child's number in this run (1, 2, ...).
pub fn queue_job(
    job_type: &str,
    params: &impl serde::Serialize,
    options: ChildOptions,
) -> Result<u32, Failure> {
    let json = serde_json::to_string(params).map_err(|e| discard(format!("child params: {e}")))?;
    bindings::cojobs::plugin::jobs::queue_job(job_type, &json, &options).map_err(discard)
}

impl Default for ChildOptions {
    fn default() -> Self {
        ChildOptions {
            mode: None,
            delay_seconds: None,
            max_retry: None,
            retry_interval: None,
        }
    }
}

// --------------------------------------------------------------------- job

impl Job {
    /// Parse the job's JSON parameters into `T`.
    ///
    /// The runner fills declared defaults in at queue time, but `cojobs exec`
    /// or `--no-check` may not: give optional fields `#[serde(default)]`.
    /// A parse error becomes `discard("bad params: ...")`, so `?` is enough:
    ///
    /// ```ignore
    /// let p: MyParams = job.params()?;
    /// ```
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        let text = if self.params.trim().is_empty() { "{}" } else { &self.params };
        serde_json::from_str(text).map_err(|e| discard(format!("bad params: {e}")))
    }

    /// The parameters as a generic JSON value (`{}` when empty).
    pub fn params_json(&self) -> Result<serde_json::Value, Failure> {
        self.params()
    }

    /// The job's mode, if it has one.
    pub fn mode(&self) -> Option<&str> {
        self.mode.as_deref()
    }
}

// ------------------------------------------------------------ host helpers

/// Report progress (`percent` is clamped to 0..=100 by the host); a
/// `summary`, when given, becomes the job's current status line. Cheap to
/// call often: the host rate-limits what it writes.
pub fn progress(percent: u8, summary: Option<&str>) {
    bindings::cojobs::plugin::host::progress(percent.min(100), summary)
}

/// True once the job has been asked to stop; return soon after.
pub fn cancel_requested() -> bool {
    bindings::cojobs::plugin::host::cancel_requested()
}

/// Append a record to the job's history (`cm_co_job_history_records`).
/// The host cuts `key` and `comment` at 256 characters.
pub fn history(key: Option<&str>, comment: &str, status: HistoryStatus) {
    history_for(key, comment, status, None, None)
}

/// [`history`] with the record's `co_person_id` and `org_identity_id`.
pub fn history_for(
    key: Option<&str>,
    comment: &str,
    status: HistoryStatus,
    co_person_id: Option<i64>,
    org_identity_id: Option<i64>,
) {
    bindings::cojobs::plugin::host::record_history(&HistoryRecord {
        record_key: key.map(str::to_string),
        comment: comment.to_string(),
        status,
        co_person_id,
        org_identity_id,
    })
}

/// Write lines to the job's log (and the runner's log).
pub mod log {
    use super::LogLevel;

    /// Log `message` at `level`.
    pub fn log(level: LogLevel, message: &str) {
        crate::bindings::cojobs::plugin::host::log(level, message)
    }
    /// Log at `trace` level.
    pub fn trace(message: &str) {
        log(LogLevel::Trace, message)
    }
    /// Log at `debug` level.
    pub fn debug(message: &str) {
        log(LogLevel::Debug, message)
    }
    /// Log at `info` level.
    pub fn info(message: &str) {
        log(LogLevel::Info, message)
    }
    /// Log at `warn` level.
    pub fn warn(message: &str) {
        log(LogLevel::Warn, message)
    }
    /// Log at `error` level.
    pub fn error(message: &str) {
        log(LogLevel::Error, message)
    }
}

// ---------------------------------------------------------------- builders

impl PluginInfo {
    /// A plugin with no modes and no parameters; add them with
    /// [`mode`](Self::mode)/[`modes`](Self::modes) and [`param`](Self::param).
    /// Pass `env!("CARGO_PKG_VERSION")` as the version.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            modes: Vec::new(),
            params: Vec::new(),
        }
    }
    /// Accept one more mode in the job's `mode`.
    pub fn mode(mut self, mode: &str) -> Self {
        self.modes.push(mode.into());
        self
    }
    /// Accept these modes in the job's `mode`.
    pub fn modes(mut self, modes: &[&str]) -> Self {
        self.modes.extend(modes.iter().map(|m| m.to_string()));
        self
    }
    /// Declare one more parameter.
    pub fn param(mut self, spec: ParamSpec) -> Self {
        self.params.push(spec);
        self
    }
}

impl ParamSpec {
    /// An optional parameter of type `kind` with no default and no choices.
    pub fn new(name: &str, kind: ParamType, help: &str) -> Self {
        ParamSpec {
            name: name.into(),
            help: help.into(),
            kind,
            required: false,
            choices: Vec::new(),
            default: None,
        }
    }
    /// A string parameter.
    pub fn text(name: &str, help: &str) -> Self {
        Self::new(name, ParamType::Text, help)
    }
    /// An integer parameter.
    pub fn integer(name: &str, help: &str) -> Self {
        Self::new(name, ParamType::Integer, help)
    }
    /// A boolean parameter.
    pub fn boolean(name: &str, help: &str) -> Self {
        Self::new(name, ParamType::Boolean, help)
    }
    /// A floating-point parameter.
    pub fn number(name: &str, help: &str) -> Self {
        Self::new(name, ParamType::Number, help)
    }
    /// A parameter taking any JSON value.
    pub fn json(name: &str, help: &str) -> Self {
        Self::new(name, ParamType::Json, help)
    }
    /// Mark the parameter required (queueing a job without it is refused).
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// The value used when the parameter is absent, given as a Rust value
    /// (`"world"`, `100000`, `true`, `json!({...})`); stored as JSON text.
    pub fn default(mut self, value: impl Into<serde_json::Value>) -> Self {
        self.default = Some(value.into().to_string());
        self
    }
    /// Restrict the parameter to these values (written as plain strings,
    /// e.g. `&["fast", "slow"]` or `&["1", "2"]`).
    pub fn choices(mut self, choices: &[&str]) -> Self {
        self.choices = choices.iter().map(|c| c.to_string()).collect();
        self
    }
}
