//! A plugin's side file, `plugins/<name>.toml`, written by the operator.
//!
//! ```toml
//! fuel = 2000000000        # the plugin's own default limits (optional)
//! memory_mib = 128
//! timeout_secs = 60
//! scratch = true           # an empty per-job directory at /scratch
//!
//! [[dirs]]                 # host directories granted to the plugin
//! host = "/srv/reports"
//! guest = "/data"
//! writable = false
//! ```
//!
//! Nothing is granted unless this file says so.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SandboxError;
use super::limits::{LimitOverrides, RawLimits};

/// One host directory granted to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the plugin sees it (an absolute guest path such as `/data`).
    pub guest: String,
    /// Read-write when true; read-only by default.
    #[serde(default)]
    pub writable: bool,
}

/// The parsed side file. The default grants nothing and sets no limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginConfig {
    /// The plugin's own default limits, each within its range.
    pub limits: LimitOverrides,
    /// Give each job an empty scratch directory at `/scratch`, removed when
    /// the job ends.
    pub scratch: bool,
    pub dirs: Vec<DirGrant>,
}

/// The side file as written: its limits may be any number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(flatten)]
    limits: RawLimits,
    #[serde(default)]
    scratch: bool,
    #[serde(default)]
    dirs: Vec<DirGrant>,
}

/// Where the scratch directory appears in the guest.
pub const SCRATCH_GUEST_PATH: &str = "/scratch";

impl PluginConfig {
    /// Read `path` if it exists. A missing file means the default; a file
    /// that does not parse, or grants a directory that does not exist, is an
    /// error now rather than a job that half-runs later.
    pub fn load(path: &Path) -> Result<Self, SandboxError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(SandboxError::Config {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        let raw: RawConfig = toml::from_str(&text).map_err(|e| SandboxError::Config {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let config = PluginConfig {
            limits: raw
                .limits
                .clamped(format_args!("plugin side file {}", path.display())),
            scratch: raw.scratch,
            dirs: raw.dirs,
        };
        for grant in &config.dirs {
            if !grant.host.is_dir() {
                return Err(SandboxError::Config {
                    path: path.to_path_buf(),
                    message: format!(
                        "granted directory '{}' does not exist or is not a directory",
                        grant.host.display()
                    ),
                });
            }
            if !grant.guest.starts_with('/') || grant.guest.split('/').any(|c| c == "..") {
                return Err(SandboxError::Config {
                    path: path.to_path_buf(),
                    message: format!(
                        "guest path '{}' must be absolute and must not contain '..'",
                        grant.guest
                    ),
                });
            }
            if config.scratch && grant.guest == SCRATCH_GUEST_PATH {
                return Err(SandboxError::Config {
                    path: path.to_path_buf(),
                    message: format!("guest path '{SCRATCH_GUEST_PATH}' is the scratch directory"),
                });
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_grants_nothing() {
        let c = PluginConfig::load(Path::new("/nonexistent/x.toml")).expect("default");
        assert_eq!(c, PluginConfig::default());
    }

    #[test]
    fn parses_limits_and_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            format!(
                "fuel = 7\nscratch = true\n[[dirs]]\nhost = '{}'\nguest = '/data'\n",
                dir.path().display()
            ),
        )
        .expect("write");
        let c = PluginConfig::load(&path).expect("parse");
        assert_eq!(c.limits.fuel, Some(7));
        assert!(c.scratch);
        assert!(!c.dirs[0].writable);
    }

    #[test]
    fn missing_granted_dir_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[[dirs]]\nhost = '/no/such/dir'\nguest = '/data'\n").expect("write");
        let e = PluginConfig::load(&path).expect_err("must fail");
        assert!(e.to_string().contains("/no/such/dir"), "{e}");
    }

    #[test]
    fn out_of_range_limits_are_clamped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "timeout_secs = 9223372036854775807\nmemory_mib = 0\n",
        )
        .expect("write");
        let c = PluginConfig::load(&path).expect("clamped, not refused");
        assert_eq!(c.limits.timeout_secs, Some(604_800));
        assert_eq!(c.limits.memory_mib, Some(1));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "fule = 7\n").expect("write");
        assert!(PluginConfig::load(&path).is_err());
    }
}
