//! The range of every number a user sets on a job: its limits (fuel,
//! memory, wall clock) and its policy (retry and requeue intervals, most
//! retries, delay).
//!
//! One table, used two ways. Where a person gives the number (`cojobs
//! queue`, `queue --from`, `run`, `exec`, `Store::queue`) a value outside
//! its range is refused: exit 2, nothing written. Where the number was
//! written by someone else (a row inserted by plain SQL, a plugin's side
//! file) it is clamped into its range with a warning, so an absurd value
//! can neither overflow a clock nor strand a job.
//!
//! Pure code, like [`crate::job`]: every other module may import it.

use std::fmt;

/// Seconds in 10 years (of 365 days): the longest interval or delay.
pub const TEN_YEARS_SECS: i64 = 10 * 365 * 86_400;
/// Seconds in 7 days: the longest wall-clock limit of one run.
pub const SEVEN_DAYS_SECS: i64 = 7 * 86_400;

/// The allowed range of one numeric setting, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The setting's name: the `queue --from` key, and with `-` for `_`
    /// the command-line option.
    pub name: &'static str,
    pub min: i64,
    pub max: i64,
    /// What the number counts, for messages.
    pub unit: &'static str,
}

/// Fuel budget of one run. Fuel is roughly one unit per WebAssembly
/// instruction; 10^15 is more than a core executes in the longest allowed
/// timeout (7 days), so a larger budget could never be spent.
pub const FUEL: Bound = Bound {
    name: "fuel",
    min: 1,
    max: 1_000_000_000_000_000,
    unit: "fuel units",
};

/// Linear memory of one run: wasm32's whole address space at most.
pub const MEMORY_MIB: Bound = Bound {
    name: "memory",
    min: 1,
    max: 4096,
    unit: "MiB",
};

/// Wall-clock limit of one run.
pub const TIMEOUT_SECS: Bound = Bound {
    name: "timeout",
    min: 1,
    max: SEVEN_DAYS_SECS,
    unit: "seconds (7 days)",
};

/// `retry_interval`: 0 = never retry.
pub const RETRY_INTERVAL: Bound = Bound {
    name: "retry_interval",
    min: 0,
    max: TEN_YEARS_SECS,
    unit: "seconds (10 years)",
};

/// `requeue_interval`: 0 = never requeue.
pub const REQUEUE_INTERVAL: Bound = Bound {
    name: "requeue_interval",
    min: 0,
    max: TEN_YEARS_SECS,
    unit: "seconds (10 years)",
};

/// `max_retry`: 0 = never retry; unset = no limit.
pub const MAX_RETRY: Bound = Bound {
    name: "max_retry",
    min: 0,
    max: 1_000_000,
    unit: "retries",
};

/// `backoff_max`: the longest exponential retry delay.
pub const BACKOFF_MAX: Bound = Bound {
    name: "backoff_max",
    min: 1,
    max: TEN_YEARS_SECS,
    unit: "seconds (10 years)",
};

/// How long from now a queued job waits before it is due.
pub const DELAY: Bound = Bound {
    name: "delay",
    min: 0,
    max: TEN_YEARS_SECS,
    unit: "seconds (10 years)",
};

/// A job's priority: a smaller number runs first. 1 to 9, so that the
/// default, [`DEFAULT_PRIORITY`], sits in the middle with room either
/// side; the claim seeks each level once (docs/design.md#priorities),
/// so the range is kept short.
pub const PRIORITY: Bound = Bound {
    name: "priority",
    min: 1,
    max: 9,
    unit: "(1 runs first)",
};

/// The priority of a job that names none (and of a row inserted by plain
/// SQL): the middle of [`PRIORITY`].
pub const DEFAULT_PRIORITY: i64 = 5;

/// `concurrency = N` in a side file: most `GO` rows of one job type.
pub const CONCURRENCY: Bound = Bound {
    name: "concurrency",
    min: 1,
    max: 1_000_000,
    unit: "running jobs",
};

/// `cojobs co set --max-running N`: most `GO` rows of one CO.
pub const MAX_RUNNING: Bound = Bound {
    name: "max_running",
    min: 1,
    max: 1_000_000,
    unit: "running jobs",
};

/// The count of `rate = "N/unit"` in a side file: most starts per window.
pub const RATE_COUNT: Bound = Bound {
    name: "rate",
    min: 1,
    max: 1_000_000_000,
    unit: "starts per window",
};

/// `cojobs run --lease`: how long a row stays a runner's without a
/// heartbeat.
pub const LEASE_SECS: Bound = Bound {
    name: "lease",
    min: 1,
    max: 86_400,
    unit: "seconds (1 day)",
};

/// `cojobs run --grace`: how long running jobs may take to finish after a
/// shutdown signal.
pub const GRACE_SECS: Bound = Bound {
    name: "grace",
    min: 0,
    max: 86_400,
    unit: "seconds (1 day)",
};

/// A value outside its [`Bound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} {value} is out of range: {}", bound.name, bound.range())]
pub struct OutOfRange {
    pub bound: Bound,
    pub value: i64,
}

/// The range as words: `1 to 604800 seconds (7 days)`.
pub struct Range(Bound);

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {} {}", self.0.min, self.0.max, self.0.unit)
    }
}

impl Bound {
    /// `value` if it is in range.
    pub fn check(self, value: i64) -> Result<i64, OutOfRange> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(OutOfRange { bound: self, value })
        }
    }

    /// [`Bound::check`] of a setting that may be absent.
    pub fn check_opt(self, value: Option<i64>) -> Result<Option<i64>, OutOfRange> {
        value.map(|v| self.check(v)).transpose()
    }

    /// `value` moved into range.
    pub fn clamp(self, value: i64) -> i64 {
        value.clamp(self.min, self.max)
    }

    /// The range, for messages.
    pub fn range(self) -> Range {
        Range(self)
    }

    /// The command-line option: `--retry-interval`.
    pub fn option(self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_accepts_both_ends_and_refuses_beyond() {
        assert_eq!(TIMEOUT_SECS.check(1), Ok(1));
        assert_eq!(TIMEOUT_SECS.check(SEVEN_DAYS_SECS), Ok(SEVEN_DAYS_SECS));
        for bad in [0, -1, SEVEN_DAYS_SECS + 1, i64::MAX, i64::MIN] {
            assert_eq!(
                TIMEOUT_SECS.check(bad),
                Err(OutOfRange {
                    bound: TIMEOUT_SECS,
                    value: bad
                })
            );
        }
        assert_eq!(MAX_RETRY.check_opt(None), Ok(None));
        assert_eq!(RETRY_INTERVAL.check_opt(Some(0)), Ok(Some(0)));
    }

    #[test]
    fn clamp_moves_into_range() {
        assert_eq!(TIMEOUT_SECS.clamp(i64::MAX), SEVEN_DAYS_SECS);
        assert_eq!(MEMORY_MIB.clamp(0), 1);
        assert_eq!(FUEL.clamp(-5), 1);
        assert_eq!(FUEL.clamp(1000), 1000);
    }

    #[test]
    fn messages_name_the_setting_and_its_range() {
        let e = TIMEOUT_SECS
            .check(9_223_372_036_854_775_807)
            .expect_err("out of range");
        assert_eq!(
            e.to_string(),
            "timeout 9223372036854775807 is out of range: 1 to 604800 seconds (7 days)"
        );
        assert_eq!(RETRY_INTERVAL.option(), "--retry-interval");
    }

    #[test]
    fn default_priority_is_the_middle_of_the_range() {
        assert_eq!(PRIORITY.check(DEFAULT_PRIORITY), Ok(DEFAULT_PRIORITY));
        assert_eq!(
            DEFAULT_PRIORITY - PRIORITY.min,
            PRIORITY.max - DEFAULT_PRIORITY
        );
    }

    #[test]
    fn every_range_is_sane() {
        for b in [
            FUEL,
            MEMORY_MIB,
            TIMEOUT_SECS,
            RETRY_INTERVAL,
            REQUEUE_INTERVAL,
            MAX_RETRY,
            DELAY,
            BACKOFF_MAX,
            LEASE_SECS,
            GRACE_SECS,
            PRIORITY,
            CONCURRENCY,
            MAX_RUNNING,
            RATE_COUNT,
        ] {
            assert!(0 <= b.min && b.min < b.max, "{b:?}");
        }
    }
}
