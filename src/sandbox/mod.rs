//! The sandbox: runs one job in a fresh instance of its WebAssembly
//! component, under fuel, memory, wall-clock and output limits, and says
//! how the run ended.
//!
//! One [`Sandbox`] per process holds the `wasmtime::Engine`, the `Linker`
//! (WASI Preview 2 with nothing granted, `wasi:http` behind the side
//! file's allowlist, and the host interfaces of both contract versions,
//! `wit/v0.1/cojobs.wit` and `wit/cojobs.wit`), the epoch ticker thread and
//! the plugin cache. Each job
//! gets a new `Store`. The sandbox knows nothing of the database: host calls
//! leave through [`HostEvents`], which the caller supplies.
//!
//! Runs are async: a guest blocked in a WASI call (a sleep, a poll) is an
//! awaited future, so the wall-clock timeout and an [`Interrupt`] stop it as
//! surely as a busy loop, which the epoch ticker makes yield every
//! [`TICK`].

mod bindings;
mod cache;
mod config;
mod engine;
mod fixtures;
mod host;
mod http;
mod limits;
mod output;
mod params;
mod plugin;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::throttle::TypeLimits;
pub use bindings::Contract;
pub use config::{DirGrant, PluginConfig, REDACTED, SCRATCH_GUEST_PATH, Secrets};
pub use fixtures::{Fixture, Fixtures, HttpSender};
pub use host::{
    ChildJob, History, HistoryStatus, HostEvents, LogLevel, MAX_CHILDREN, MAX_RESULT_BYTES,
    NoEvents,
};
pub use http::{DEFAULT_HTTP_REQUESTS, DEFAULT_RESPONSE_BYTES, HostPattern, HttpGrant, is_public};
pub use limits::{
    DEFAULT_FUEL, DEFAULT_MEMORY_MIB, DEFAULT_OUTPUT_BYTES, DEFAULT_TIMEOUT_SECS, LimitOverrides,
    Limits, MAX_MEMORY_MIB, RawLimits,
};
pub use params::{ParamDesc, ParamError, ParamKind, PluginDescription};
pub use plugin::{LoadStats, LoadedPlugin};
pub use run::{FailKind, Interrupt, JobInput, RunEnd, RunReport};

/// How often the epoch ticker ticks: the granularity of timeouts and
/// interrupts of a busy guest.
pub const TICK: Duration = Duration::from_millis(10);

/// A plugin's name and the limits of its side file, or why they do not
/// read ([`Sandbox::type_limits`]).
pub type SideFileLimits = (String, Result<TypeLimits, SandboxError>);

/// What can go wrong setting up the sandbox or loading a plugin. A job
/// whose plugin cannot be loaded fails with the message of one of these.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no plugin named '{name}' in {dir}")]
    NoPlugin { name: String, dir: String },
    #[error("{0}")]
    BadName(#[from] crate::job::InvalidJobType),
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{} is {message}", path.display())]
    NotAComponent { path: PathBuf, message: String },
    #[error("{} does not implement cojobs:plugin/plugin@0.1.0 or @0.2.0: {message}", path.display())]
    WrongWorld { path: PathBuf, message: String },
    #[error("{} failed to compile: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("plugin {name}: describe failed: {message}")]
    Describe { name: String, message: String },
    #[error("could not set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// How a sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where `<job_type>.wasm` and `<job_type>.toml` live.
    pub plugins_dir: PathBuf,
    /// Compiled-code cache directory; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// The runner's default limits.
    pub defaults: Limits,
    /// Most instances alive at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// Count fuel. Only `cojobs bench` turns it off, to measure what
    /// counting costs; without it the fuel limit is not enforced.
    pub consume_fuel: bool,
    /// Where granted HTTP requests go: the network, or (`cojobs test`)
    /// fixtures.
    pub http: HttpSender,
}

impl SandboxConfig {
    /// Defaults for a plugins directory: cache in `<dir>/.cache`.
    pub fn new(plugins_dir: impl Into<PathBuf>) -> Self {
        let plugins_dir = plugins_dir.into();
        SandboxConfig {
            cache_dir: Some(plugins_dir.join(".cache")),
            plugins_dir,
            defaults: Limits::default(),
            max_instances: 64,
            consume_fuel: true,
            http: HttpSender::Network,
        }
    }
}

/// One per process: the engine, the linker, the plugin cache.
pub struct Sandbox {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<host::HostState>,
    config: SandboxConfig,
    pooling: bool,
    /// Loaded plugins by name. A std mutex: it is held only to look up or
    /// insert, never across an await or a compile.
    plugins: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    /// Serializes loads, so two jobs of a new plugin compile it once.
    loading: Mutex<()>,
    _ticker: engine::Ticker,
}

fn valid_plugin_name(name: &str) -> bool {
    crate::job::validate_job_type(name).is_ok()
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let (engine, pooling) = engine::build(&config)?;
        let linker = engine::linker(&engine)?;
        let ticker = engine::Ticker::start(engine.clone());
        Ok(Sandbox {
            engine,
            linker,
            config,
            pooling,
            plugins: Mutex::new(HashMap::new()),
            loading: Mutex::new(()),
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Whether the pooling allocator is in use (else on-demand allocation).
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    pub(crate) fn consumes_fuel(&self) -> bool {
        self.config.consume_fuel
    }

    /// The component file for a job type.
    pub fn plugin_path(&self, name: &str) -> Result<PathBuf, SandboxError> {
        crate::job::validate_job_type(name)?;
        Ok(self.config.plugins_dir.join(format!("{name}.wasm")))
    }

    /// The loaded plugin for `name` if it is loaded and its file has not
    /// changed. Cheap (two `stat`s): safe to call on an async thread.
    pub fn cached(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let p = self
            .plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()?;
        p.is_current().then_some(p)
    }

    /// The plugin for job type `name`, loading (compiling) it if needed.
    /// Blocking: may compile for seconds. Async callers use
    /// [`Sandbox::plugin_async`].
    pub fn plugin(&self, name: &str) -> Result<Arc<LoadedPlugin>, SandboxError> {
        if let Some(p) = self.cached(name) {
            return Ok(p);
        }
        let path = self.plugin_path(name)?;
        if !path.is_file() {
            self.forget(name);
            return Err(SandboxError::NoPlugin {
                name: name.to_string(),
                dir: self.config.plugins_dir.display().to_string(),
            });
        }
        self.load_as(name, &path)
    }

    /// [`Sandbox::plugin`] off the async threads when a compile is needed.
    pub async fn plugin_async(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Arc<LoadedPlugin>, SandboxError> {
        if let Some(p) = self.cached(name) {
            return Ok(p);
        }
        let this = Arc::clone(self);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || this.plugin(&name))
            .await
            .map_err(|e| SandboxError::Engine(format!("plugin loader stopped: {e}")))?
    }

    /// Load a component from any path (for `cojobs exec FILE.wasm`). Its
    /// side file, if any, is the `.toml` beside it.
    pub fn plugin_from_file(&self, path: &Path) -> Result<Arc<LoadedPlugin>, SandboxError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = format!("file:{}", path.display());
        if let Some(p) = self.cached(&key) {
            return Ok(p);
        }
        let p = self.load_as(&name, path)?;
        self.plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&p));
        Ok(p)
    }

    fn forget(&self, name: &str) {
        self.plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    fn load_as(&self, name: &str, path: &Path) -> Result<Arc<LoadedPlugin>, SandboxError> {
        let _one_at_a_time = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = self.cached(name) {
            return Ok(p);
        }
        let result = plugin::load(
            &self.engine,
            &self.linker,
            self.config.cache_dir.as_deref(),
            name,
            path,
        );
        match &result {
            Ok(p) => {
                tracing::debug!(
                    plugin = name,
                    seconds = p.load.seconds,
                    from_disk_cache = p.load.from_disk_cache,
                    "plugin loaded"
                );
                self.plugins
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.to_string(), Arc::clone(p));
            }
            Err(_) => self.forget(name),
        }
        result
    }

    /// The names of the `.wasm` files in the plugins directory, sorted.
    pub fn plugin_names(&self) -> Result<Vec<String>, SandboxError> {
        let dir = &self.config.plugins_dir;
        let entries = std::fs::read_dir(dir).map_err(|e| SandboxError::Io {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "wasm")
                    .then(|| p.file_stem()?.to_str().map(str::to_string))
                    .flatten()
            })
            .filter(|n| valid_plugin_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The `concurrency` and `rate` of every plugin in the plugins
    /// directory, from its side file (none without one), by name; a side
    /// file that does not read gives its error instead. Reads the files
    /// each time (a few small files): the runner calls this now and then
    /// to copy them to the database.
    pub fn type_limits(&self) -> Result<Vec<SideFileLimits>, SandboxError> {
        Ok(self
            .plugin_names()?
            .into_iter()
            .map(|name| {
                let side = self.config.plugins_dir.join(format!("{name}.toml"));
                let limits = config::type_limits(&side);
                (name, limits)
            })
            .collect())
    }

    /// The limits for a job of `plugin`: runner defaults, then the plugin's
    /// side file, then the job's own overrides.
    pub fn limits_for(&self, plugin: &LoadedPlugin, job: &LimitOverrides) -> Limits {
        job.apply(plugin.config.limits.apply(self.config.defaults))
    }
}
