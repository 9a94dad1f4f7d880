//! A plugin's side file, `plugins/<name>.toml`, written by the operator.
//!
//! ```toml
//! fuel = 2000000000        # the plugin's own default limits (optional)
//! memory_mib = 128
//! timeout_secs = 60
//! scratch = true           # an empty per-job directory at /scratch
//! concurrency = 3          # most jobs of this type running at once, anywhere
//! rate = "100/min"         # most starts per window (s, min, h, day)
//!
//! [[dirs]]                 # host directories granted to the plugin
//! host = "/srv/reports"
//! guest = "/data"
//! writable = false
//!
//! allowed_hosts = ["https://api.example.org", "https://*.example.com"]
//! max_http_requests = 100           # per job (default 100)
//! max_response_bytes = 10485760     # per job (default 10 MiB)
//!
//! [config]                 # read by the plugin (contract 0.2: config.get)
//! base_url = "https://api.example.org/v1"
//! page_size = 50
//!
//! [secrets]                # read from the runner's environment at load
//! token = { env = "GITHUB_TOKEN" }
//! ```
//!
//! Nothing is granted unless this file says so. Secret values live only in
//! memory: never in `Debug` output, and replaced by `[redacted]` in
//! everything a job writes (docs/design.md#config-and-secrets).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::SandboxError;
use super::http::{HostPattern, HttpGrant};
use super::limits::{LimitOverrides, RawLimits};
use crate::throttle::{Rate, TypeLimits};

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
    /// `concurrency` and `rate`: enforced by the claim, across runners
    /// (the runner copies them to the database: [`type_limits`]).
    pub throttle: TypeLimits,
    /// Hosts the plugin may send HTTP requests to, and its HTTP limits.
    pub http: Arc<HttpGrant>,
    /// `[config]`: each value as the plugin reads it (a string as written,
    /// anything else as JSON text).
    pub values: Arc<BTreeMap<String, String>>,
    /// `[secrets]`, read from the environment.
    pub secrets: Secrets,
}

/// Secret values by name. Its `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Arc<BTreeMap<String, String>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// Secrets from (name, value) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Secrets {
        Secrets(Arc::new(pairs.into_iter().collect()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `text` with every secret value replaced by `[redacted]` (where
    /// occurrences overlap, the whole overlap is one `[redacted]`).
    pub fn redact(&self, text: &str) -> String {
        self.redact_window(text.as_bytes(), 0..text.len())
    }

    /// At most `max` bytes of `text` (cut at a character boundary), secrets
    /// redacted BEFORE the cut: a secret the cut would halve is replaced
    /// whole, so no part of it survives (the `[redacted]` may take the
    /// result a few bytes past `max`).
    pub fn redact_head(&self, text: &str, max: usize) -> String {
        let mut end = max.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // A secret the cut halves ends within the overhang: no need to
        // look further.
        let seen = end.saturating_add(self.overhang()).min(text.len());
        self.redact_window(&text.as_bytes()[..seen], 0..end)
    }

    /// The bytes `window` of `raw`, as text, with every secret that
    /// overlaps the window replaced by `[redacted]` — also one that begins
    /// before the window or ends after it, so a cut never leaves part of a
    /// secret. A caller that keeps a bounded buffer keeps
    /// [`Secrets::overhang`] bytes more than it shows, so that a secret
    /// crossing its cut is still seen whole.
    pub fn redact_window(&self, raw: &[u8], window: std::ops::Range<usize>) -> String {
        let end = window.end.min(raw.len());
        let start = window.start.min(end);
        let mut out = String::with_capacity(end - start);
        let mut at = start;
        for span in self.spans(raw) {
            if span.end <= start || span.start >= end {
                continue;
            }
            if span.start > at {
                out.push_str(&String::from_utf8_lossy(&raw[at..span.start]));
            }
            out.push_str(REDACTED);
            at = at.max(span.end);
        }
        if at < end {
            out.push_str(&String::from_utf8_lossy(&raw[at..end]));
        }
        out
    }

    /// How many bytes past a cut a secret that begins before it can reach:
    /// the longest secret's length less one (0 without secrets).
    pub fn overhang(&self) -> usize {
        self.0
            .values()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .saturating_sub(1)
    }

    /// Where secret values occur in `raw`, in order, overlapping
    /// occurrences merged.
    fn spans(&self, raw: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut spans = Vec::new();
        for value in self.0.values().map(String::as_bytes) {
            if value.is_empty() {
                continue;
            }
            let mut i = 0;
            while i + value.len() <= raw.len() {
                if raw[i..].starts_with(value) {
                    spans.push(i..i + value.len());
                    i += value.len();
                } else {
                    i += 1;
                }
            }
        }
        spans.sort_by_key(|s| (s.start, s.end));
        let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(spans.len());
        for s in spans {
            match merged.last_mut() {
                Some(last) if s.start < last.end => last.end = last.end.max(s.end),
                _ => merged.push(s),
            }
        }
        merged
    }
}

/// What a secret's value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Where a secret comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSource {
    /// The runner's environment variable holding the value.
    env: String,
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
    #[serde(flatten)]
    throttle: RawThrottle,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_http_requests: Option<u32>,
    max_response_bytes: Option<u64>,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
}

/// `concurrency` and `rate` as written. Read on their own too (by
/// [`type_limits`], which ignores every other key).
#[derive(Debug, Default, Deserialize)]
struct RawThrottle {
    concurrency: Option<i64>,
    rate: Option<String>,
}

impl RawThrottle {
    fn check(&self, path: &Path) -> Result<TypeLimits, SandboxError> {
        let bad = |message: String| SandboxError::Config {
            path: path.to_path_buf(),
            message,
        };
        Ok(TypeLimits {
            concurrency: crate::bounds::CONCURRENCY
                .check_opt(self.concurrency)
                .map_err(|e| bad(e.to_string()))?,
            rate: self
                .rate
                .as_deref()
                .map(str::parse::<Rate>)
                .transpose()
                .map_err(|e| bad(e.to_string()))?,
        })
    }
}

/// The `concurrency` and `rate` of the side file at `path` (none when
/// there is no file), other keys unread: what the runner copies to the
/// database, so that a plugin whose grants cannot be loaded (a secret's
/// variable unset on this machine) still has its limits enforced.
pub fn type_limits(path: &Path) -> Result<TypeLimits, SandboxError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TypeLimits::default()),
        Err(e) => {
            return Err(SandboxError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let raw: RawThrottle = toml::from_str(&text).map_err(|e| SandboxError::Config {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    raw.check(path)
}

/// A `[config]` value as the plugin reads it.
fn config_text(v: toml::Value) -> String {
    match v {
        toml::Value::String(s) => s,
        other => serde_json::to_string(&other).unwrap_or_else(|_| other.to_string()),
    }
}

/// Each secret's value from the environment; a missing variable is an
/// error that names the variable, never a value.
fn read_secrets(path: &Path, raw: BTreeMap<String, SecretSource>) -> Result<Secrets, SandboxError> {
    let mut out = BTreeMap::new();
    for (name, source) in raw {
        let value = std::env::var(&source.env).map_err(|_| SandboxError::Config {
            path: path.to_path_buf(),
            message: format!(
                "secret '{name}': environment variable {} is not set (or not UTF-8)",
                source.env
            ),
        })?;
        out.insert(name, value);
    }
    Ok(Secrets(Arc::new(out)))
}

fn http_grant(path: &Path, raw: &RawConfig) -> Result<HttpGrant, SandboxError> {
    let allowed = raw
        .allowed_hosts
        .iter()
        .map(|e| e.parse::<HostPattern>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| SandboxError::Config {
            path: path.to_path_buf(),
            message,
        })?;
    let defaults = HttpGrant::default();
    Ok(HttpGrant {
        allowed,
        max_requests: raw.max_http_requests.unwrap_or(defaults.max_requests),
        max_response_bytes: raw
            .max_response_bytes
            .unwrap_or(defaults.max_response_bytes),
    })
}

/// Where the scratch directory appears in the guest.
pub const SCRATCH_GUEST_PATH: &str = "/scratch";

impl PluginConfig {
    /// Put `table`'s values over this config's `[config]` (a `cojobs test`
    /// case's settings).
    pub fn put_config(&mut self, table: toml::Table) {
        if table.is_empty() {
            return;
        }
        let mut values = (*self.values).clone();
        values.extend(table.into_iter().map(|(k, v)| (k, config_text(v))));
        self.values = Arc::new(values);
    }

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
        let http = Arc::new(http_grant(path, &raw)?);
        let throttle = raw.throttle.check(path)?;
        let config = PluginConfig {
            throttle,
            limits: raw
                .limits
                .clamped(format_args!("plugin side file {}", path.display())),
            scratch: raw.scratch,
            http,
            values: Arc::new(
                raw.config
                    .into_iter()
                    .map(|(k, v)| (k, config_text(v)))
                    .collect(),
            ),
            secrets: read_secrets(path, raw.secrets)?,
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
    fn config_secrets_and_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        // A variable every test process has (setting one needs `unsafe`).
        let home = std::env::var("HOME").expect("HOME is set");
        std::fs::write(
            &path,
            "allowed_hosts = ['https://api.example.org']\nmax_http_requests = 3\n\
             [config]\nurl = 'https://x'\nn = 5\n\
             [secrets]\ntoken = { env = 'HOME' }\n",
        )
        .expect("write");
        let c = PluginConfig::load(&path).expect("parse");
        assert_eq!(c.values["url"], "https://x");
        assert_eq!(c.values["n"], "5");
        assert_eq!(c.secrets.get("token"), Some(home.as_str()));
        assert!(!format!("{c:?}").contains(&home), "Debug hides values");
        assert_eq!(c.secrets.redact(&format!("a {home} b")), "a [redacted] b");
        assert_eq!(c.http.max_requests, 3);
        assert_eq!(c.http.allowed.len(), 1);
        std::fs::write(&path, "[secrets]\nt = { env = 'COJOBS_NO_SUCH_VAR_X' }\n").expect("write");
        let e = PluginConfig::load(&path).expect_err("missing variable");
        assert!(e.to_string().contains("COJOBS_NO_SUCH_VAR_X"), "{e}");
        std::fs::write(&path, "allowed_hosts = ['api.example.org']\n").expect("write");
        assert!(PluginConfig::load(&path).is_err(), "no scheme");
    }

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn redaction_hides_overlapping_and_repeated_secrets() {
        let s = secrets(&[("a", "tok-123"), ("b", "123-xyz"), ("empty", "")]);
        assert_eq!(s.redact("x tok-123 y"), "x [redacted] y");
        assert_eq!(s.redact("tok-123-xyz!"), "[redacted]!", "overlap is one");
        assert_eq!(s.redact("tok-123tok-123"), "[redacted][redacted]");
        assert_eq!(s.redact("nothing"), "nothing");
        assert_eq!(s.overhang(), 6);
        assert_eq!(Secrets::default().overhang(), 0);
    }

    /// A cut through a secret must not leave its first part in clear
    /// (issue 13: the output cap cut before redacting).
    #[test]
    fn a_cut_through_a_secret_leaves_none_of_it() {
        let s = secrets(&[("t", "SECRETVALUE")]);
        let text = "0123456789SECRETVALUE tail";
        for max in 0..text.len() {
            let head = s.redact_head(text, max);
            assert!(!head.contains("SECR"), "max {max}: {head}");
            let expected = if max <= 10 {
                &text[..max]
            } else {
                "0123456789[redacted]"
            };
            assert!(head.starts_with(expected), "max {max}: {head}");
        }
        // The window's start cuts too: the tail of a secret is hidden.
        let tail = s.redact_window(text.as_bytes(), 15..text.len());
        assert_eq!(tail, "[redacted] tail");
        assert_eq!(s.redact_head("é", 1), "", "character boundary");
    }

    #[test]
    fn concurrency_and_rate_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "fuel = 7\nconcurrency = 3\nrate = '100/min'\n").expect("write");
        let want = TypeLimits {
            concurrency: Some(3),
            rate: Some(Rate {
                max: 100,
                window_secs: 60,
            }),
        };
        assert_eq!(PluginConfig::load(&path).expect("parse").throttle, want);
        assert_eq!(type_limits(&path).expect("parse"), want);
        // The runner's reader ignores what it does not need.
        std::fs::write(
            &path,
            "concurrency = 2\n[secrets]\nt = { env = 'COJOBS_NO_SUCH_VAR_X' }\n",
        )
        .expect("write");
        assert_eq!(type_limits(&path).expect("parse").concurrency, Some(2));
        for (text, says) in [
            ("concurrency = 0\n", "concurrency 0 is out of range"),
            ("rate = '100/week'\n", "COUNT/UNIT"),
            ("rate = 5\n", "invalid type"),
        ] {
            std::fs::write(&path, text).expect("write");
            let e = type_limits(&path).expect_err(text);
            assert!(e.to_string().contains(says), "{text}: {e}");
            let e = PluginConfig::load(&path).expect_err(text);
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        assert_eq!(
            type_limits(&dir.path().join("none.toml")).expect("no file"),
            TypeLimits::default()
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "fule = 7\n").expect("write");
        assert!(PluginConfig::load(&path).is_err());
    }
}
