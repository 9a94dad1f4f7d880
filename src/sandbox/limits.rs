//! Per-job limits: fuel, memory, wall clock and captured output.
//!
//! Each limit has a runner default, may be lowered or raised by the plugin's
//! side file (`plugins/<name>.toml`) and again by the job row itself; the
//! most specific one wins. [`LimitOverrides::apply`] does that layering.
//! A side file's or a row's numbers arrive as [`RawLimits`] and are held to
//! the ranges of [`crate::bounds`] ([`RawLimits::clamped`]).

use std::time::Duration;

use wasmtime::ResourceLimiter;

use crate::bounds::{self, Bound};

/// Default fuel budget: about ten billion WebAssembly instructions, several
/// seconds of CPU. Enough for a Python plugin to do real work.
pub const DEFAULT_FUEL: u64 = 10_000_000_000;
/// Default linear-memory limit per job (all memories of the instance).
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Default wall-clock limit per job.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Default cap on a job's captured log (log lines, stdout and stderr).
pub const DEFAULT_OUTPUT_BYTES: usize = 64 * 1024;
/// The most memory a job may be given: wasm32's whole address space.
pub const MAX_MEMORY_MIB: u64 = bounds::MEMORY_MIB.max.unsigned_abs();
/// The longest wall-clock limit a job may be given.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(bounds::TIMEOUT_SECS.max.unsigned_abs());
/// Elements a table may grow to: far above what real components use
/// (CPython's is ~10k), far below what would hurt the host.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The limits one run is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units (roughly, WebAssembly instructions) the run may consume.
    pub fuel: u64,
    /// Linear memory, in MiB, summed over the instance's memories.
    pub memory_mib: u64,
    /// Wall-clock time, including time spent blocked in host calls.
    pub timeout: Duration,
    /// Bytes of log and output kept with the job.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: DEFAULT_FUEL,
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            output_bytes: DEFAULT_OUTPUT_BYTES,
        }
    }
}

/// Limits a plugin's side file or a job row may set, each within its range
/// ([`crate::bounds`]); `None` keeps the layer below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub memory_mib: Option<u64>,
    pub timeout_secs: Option<u64>,
}

impl LimitOverrides {
    /// `base` with every limit this sets replaced, memory and wall clock
    /// never above their most ([`crate::bounds`]).
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(base.fuel),
            memory_mib: self
                .memory_mib
                .unwrap_or(base.memory_mib)
                .min(MAX_MEMORY_MIB),
            timeout: self
                .timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(base.timeout)
                .min(MAX_TIMEOUT),
            output_bytes: base.output_bytes,
        }
    }
}

/// Limits as written by someone else: a plugin's side file (these are its
/// keys) or a job row's columns. Any number, until [`RawLimits::clamped`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub fuel: Option<i64>,
    pub memory_mib: Option<i64>,
    pub timeout_secs: Option<i64>,
}

impl RawLimits {
    /// Each limit held to its range; one outside it is clamped into it with
    /// a warning that names `source` (the job or side file), the value and
    /// what is used instead.
    pub fn clamped(self, source: std::fmt::Arguments<'_>) -> LimitOverrides {
        let clamp = |bound: Bound, value: Option<i64>| {
            value.map(|v| {
                let used = bound.clamp(v);
                if used != v {
                    let e = bounds::OutOfRange { bound, value: v };
                    tracing::warn!("{source}: {e}; using {used}");
                }
                // `used` is at least `bound.min`, which is positive.
                used.unsigned_abs()
            })
        };
        LimitOverrides {
            fuel: clamp(bounds::FUEL, self.fuel),
            memory_mib: clamp(bounds::MEMORY_MIB, self.memory_mib),
            timeout_secs: clamp(bounds::TIMEOUT_SECS, self.timeout_secs),
        }
    }
}

/// Why a memory or table grow was refused: carried inside the trap so the
/// outcome can name the limit.
#[derive(Debug, thiserror::Error)]
pub enum LimitBreach {
    #[error("memory limit of {mib} MiB exceeded")]
    Memory { mib: u64 },
    #[error("table limit of {elements} elements exceeded")]
    Table { elements: usize },
}

/// The store's resource limiter: refuses to grow past the job's memory
/// limit, counting every memory of the instance together (a component has
/// several core instances, each may have a memory).
#[derive(Debug)]
pub struct Limiter {
    memory_bytes: usize,
    memory_mib: u64,
    /// Bytes currently held by all memories.
    in_use: usize,
}

impl Limiter {
    pub fn new(memory_mib: u64) -> Self {
        Limiter {
            memory_bytes: usize::try_from(memory_mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            memory_mib,
            in_use: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.in_use - current.min(self.in_use) + desired;
        if after > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitBreach::Memory {
                mib: self.memory_mib,
            }));
        }
        self.in_use = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(LimitBreach::Table {
                elements: MAX_TABLE_ELEMENTS,
            }));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_layer_over_defaults() {
        let base = Limits::default();
        let o = LimitOverrides {
            fuel: Some(5),
            memory_mib: None,
            timeout_secs: Some(2),
        };
        let l = o.apply(base);
        assert_eq!(l.fuel, 5);
        assert_eq!(l.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(l.timeout, Duration::from_secs(2));
    }

    #[test]
    fn raw_limits_are_clamped_into_their_ranges() {
        let raw = RawLimits {
            fuel: Some(0),
            memory_mib: Some(i64::MAX),
            timeout_secs: Some(30),
        };
        let o = raw.clamped(format_args!("job 1"));
        assert_eq!(o.fuel, Some(1));
        assert_eq!(o.memory_mib, Some(MAX_MEMORY_MIB));
        assert_eq!(o.timeout_secs, Some(30));
        assert_eq!(
            RawLimits::default().clamped(format_args!("x")),
            LimitOverrides::default()
        );
    }

    #[test]
    fn memory_counts_all_memories_together() {
        let mut l = Limiter::new(1);
        assert!(l.memory_growing(0, 600 * 1024, None).is_ok());
        // A second memory of 600 KiB would bring the total past 1 MiB.
        assert!(l.memory_growing(0, 600 * 1024, None).is_err());
    }
}
