//! Loading plugins: the component file, its side file, the compiled-code
//! cache on disk and the in-memory cache of ready-to-instantiate plugins.
//!
//! A plugin is compiled once and kept as a `PluginPre` (an `InstancePre`
//! with its exports checked). Its file's size and modification time are
//! checked before each job, so a replaced file is picked up without a
//! restart. Compiled code is also kept on disk ([`super::cache`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::SandboxError;
use super::bindings::{Contract, v1, v2};
use super::cache::{Cache, engine_key};
use super::config::PluginConfig;
use super::host::HostState;
use super::params::PluginDescription;

/// What identifies a version of a plugin file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    pub(super) fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

/// A plugin ready to run.
pub struct LoadedPlugin {
    /// The job type (or file stem, for a plugin run from a path).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Its side file's settings.
    pub config: PluginConfig,
    /// The component file's SHA-256, 64 hex digits: recorded on each row
    /// it runs (`plugin_sha256`).
    pub sha256: String,
    /// How long compiling or loading took, and whether it came from the
    /// on-disk cache.
    pub load: LoadStats,
    pub(super) stamp: FileStamp,
    pub(super) side_stamp: Option<FileStamp>,
    pub(super) pre: Pre,
    pub(super) description: OnceLock<PluginDescription>,
}

/// A pre-instantiated plugin of one contract version.
#[derive(Clone)]
pub(super) enum Pre {
    V1(v1::PluginPre<HostState>),
    V2(v2::PluginPre<HostState>),
}

impl Pre {
    pub(super) fn contract(&self) -> Contract {
        match self {
            Pre::V1(_) => Contract::V0_1,
            Pre::V2(_) => Contract::V0_2,
        }
    }
}

/// How a plugin came to be loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadStats {
    pub from_disk_cache: bool,
    pub seconds: f64,
}

/// The side file that goes with a component file.
pub(super) fn side_file(path: &Path) -> PathBuf {
    path.with_extension("toml")
}

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    let not = |message: &str| SandboxError::NotAComponent {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not("not a WebAssembly file"));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(not(
            "a core WebAssembly module, not a component (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)",
        )),
        [0x0d, 0, 1, 0] => Ok(()),
        _ => Err(not("an unsupported WebAssembly version")),
    }
}

/// The compiled component: from the on-disk cache when a sound entry is
/// there (then `true`), else compiled and written to the cache.
fn compile_or_load(
    engine: &Engine,
    cache_dir: Option<&Path>,
    name: &str,
    path: &Path,
    bytes: &[u8],
    digest: &[u8],
) -> Result<(Component, bool), SandboxError> {
    let compile = || {
        Component::new(engine, bytes).map_err(|e| SandboxError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })
    };
    let Some(cache) = cache_dir.and_then(Cache::open) else {
        return Ok((compile()?, false));
    };
    let hex = hex(&digest[..digest.len().min(16)]);
    let prefix = format!("{}-", name.replace(['/', '\\'], "_"));
    let file = format!("{prefix}{hex}-{}.cwasm", engine_key(engine));
    if let Some(c) = cache.load(engine, &file, digest) {
        return Ok((c, true));
    }
    let component = compile()?;
    cache.store(&file, &prefix, digest, &component);
    Ok((component, false))
}

/// Bytes as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read, compile (or load from the cache) and pre-instantiate a plugin.
pub(super) fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    cache_dir: Option<&Path>,
    name: &str,
    path: &Path,
) -> Result<Arc<LoadedPlugin>, SandboxError> {
    let started = std::time::Instant::now();
    let stamp = FileStamp::of(path).map_err(|e| SandboxError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let side = side_file(path);
    let config = PluginConfig::load(&side)?;
    let side_stamp = FileStamp::of(&side).ok();
    let bytes = std::fs::read(path).map_err(|e| SandboxError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    check_header(path, &bytes)?;
    let digest = Sha256::digest(&bytes);
    let (component, from_disk_cache) =
        compile_or_load(engine, cache_dir, name, path, &bytes, &digest)?;
    let wrong_world = |e: wasmtime::Error| SandboxError::WrongWorld {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
    // The exports' types tell the versions apart (0.2's `failure` has a
    // third case); the newest that fits wins.
    let pre = match v2::PluginPre::new(instance_pre.clone()) {
        Ok(p) => Pre::V2(p),
        Err(_) => Pre::V1(v1::PluginPre::new(instance_pre).map_err(wrong_world)?),
    };
    Ok(Arc::new(LoadedPlugin {
        name: name.to_string(),
        path: path.to_path_buf(),
        config,
        sha256: hex(&digest),
        load: LoadStats {
            from_disk_cache,
            seconds: started.elapsed().as_secs_f64(),
        },
        stamp,
        side_stamp,
        pre,
        description: OnceLock::new(),
    }))
}

impl LoadedPlugin {
    /// The contract version the plugin implements.
    pub fn contract(&self) -> Contract {
        self.pre.contract()
    }

    /// This plugin (the same compiled code) with `config` in place of its
    /// side file's settings: a `cojobs test` case's.
    pub fn with_config(&self, config: PluginConfig) -> LoadedPlugin {
        LoadedPlugin {
            name: self.name.clone(),
            path: self.path.clone(),
            config,
            sha256: self.sha256.clone(),
            load: self.load,
            stamp: self.stamp,
            side_stamp: self.side_stamp,
            pre: self.pre.clone(),
            description: self.description.clone(),
        }
    }

    /// Is the loaded version still the one on disk?
    pub(super) fn is_current(&self) -> bool {
        FileStamp::of(&self.path).ok() == Some(self.stamp)
            && FileStamp::of(&side_file(&self.path)).ok() == self.side_stamp
    }
}
