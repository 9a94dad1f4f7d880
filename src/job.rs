//! The job state machine and the retry/requeue policy.
//!
//! Pure code: no database, no WebAssembly. The store stores what this module
//! decides; the runner asks it what a run's end means for the row.

use std::fmt;
use std::str::FromStr;

/// The status of a `cm_co_jobs` row, stored as the seed's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// `Q`: waiting to be claimed. Entered by `queue`, by a retry or requeue
    /// successor, or by a runner that shut down before the job ended.
    Queued,
    /// `GO`: claimed by a runner, which holds a lease on it.
    InProgress,
    /// `OK`: the plugin returned a summary. Terminal.
    Complete,
    /// `X`: the plugin failed, broke a limit, or its runner died. Terminal.
    Failed,
    /// `CX`: canceled by a user. Terminal, never requeued.
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Complete,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    /// The seed's code for this status.
    pub fn code(self) -> &'static str {
        match self {
            JobStatus::Queued => "Q",
            JobStatus::InProgress => "GO",
            JobStatus::Complete => "OK",
            JobStatus::Failed => "X",
            JobStatus::Canceled => "CX",
        }
    }

    /// True for `OK`, `X` and `CX`: the row will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A status code that is not one of `Q GO OK X CX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status '{0}' (expected one of Q, GO, OK, X, CX)")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// How one run of a job ended, as far as the row is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin returned `ok(summary)`: the row ends `OK`.
    Complete { summary: String },
    /// The row ends `X`; `retry` says whether and when it is retried.
    Failed { summary: String, retry: Retry },
    /// The row ends `CX` (a cancel of a running job).
    Canceled { summary: String },
}

impl Outcome {
    /// The status the row ends in.
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Complete { .. } => JobStatus::Complete,
            Outcome::Failed { .. } => JobStatus::Failed,
            Outcome::Canceled { .. } => JobStatus::Canceled,
        }
    }

    /// The finish summary.
    pub fn summary(&self) -> &str {
        match self {
            Outcome::Complete { summary }
            | Outcome::Failed { summary, .. }
            | Outcome::Canceled { summary } => summary,
        }
    }
}

/// Whether and when a failed run is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// As the row's policy says: after `retry_interval` (or its
    /// [`Backoff`]), while `max_retry` allows.
    #[default]
    Policy,
    /// While the row's policy allows a retry (`retry_interval > 0`,
    /// `max_retry`), but after this many seconds instead of its interval
    /// or backoff: a plugin's `retry-after` (a rate-limited API says when).
    /// Clamped to [`crate::bounds::RETRY_INTERVAL`]'s range.
    After(i64),
    /// Never, whatever the policy: a plugin's `discard`.
    Never,
}

/// A `cm_co_job_history_records.status` code: the seed's `OK X GO NT Q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordStatus {
    /// `OK`: the record's work succeeded.
    Ok,
    /// `X`: the record's work failed.
    Failed,
    /// `GO`: the record's work is under way.
    InProgress,
    /// `NT`: a notice, neither success nor failure.
    Notice,
    /// `Q`: the record's work is queued.
    Queued,
}

impl RecordStatus {
    pub const ALL: [RecordStatus; 5] = [
        RecordStatus::Ok,
        RecordStatus::Failed,
        RecordStatus::InProgress,
        RecordStatus::Notice,
        RecordStatus::Queued,
    ];

    /// The seed's code for this status.
    pub fn code(self) -> &'static str {
        match self {
            RecordStatus::Ok => "OK",
            RecordStatus::Failed => "X",
            RecordStatus::InProgress => "GO",
            RecordStatus::Notice => "NT",
            RecordStatus::Queued => "Q",
        }
    }
}

impl fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A history status code that is not one of `OK X GO NT Q`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown history record status '{0}' (expected one of OK, X, GO, NT, Q)")]
pub struct UnknownRecordStatus(pub String);

impl FromStr for RecordStatus {
    type Err = UnknownRecordStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordStatus::ALL
            .into_iter()
            .find(|st| st.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownRecordStatus(s.to_string()))
    }
}

/// How the delay before a retry grows (`queue --backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backoff {
    /// Every retry waits `retry_interval` (the seed's rule).
    #[default]
    Fixed,
    /// Retry *n* (counting from 0) waits a random time between 0 and
    /// `min(backoff_max, retry_interval * 2^n)`: exponential growth with
    /// full jitter, so many jobs failing together do not retry together.
    Exponential,
}

impl Backoff {
    pub const ALL: [Backoff; 2] = [Backoff::Fixed, Backoff::Exponential];

    /// The name stored in `cm_co_jobs.backoff` and typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backoff::Fixed => "fixed",
            Backoff::Exponential => "exponential",
        }
    }

    /// The stored name; NULL or anything unknown (a plain-SQL row) is
    /// [`Backoff::Fixed`], the seed's rule.
    pub fn from_column(text: Option<&str>) -> Backoff {
        text.and_then(|t| t.parse().ok()).unwrap_or_default()
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backoff name that is not `fixed` or `exponential`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backoff '{0}' (expected fixed or exponential)")]
pub struct UnknownBackoff(pub String);

impl FromStr for Backoff {
    type Err = UnknownBackoff;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backoff::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownBackoff(s.to_string()))
    }
}

/// The longest exponential backoff delay unless a job sets its own
/// (`--backoff-max`): one hour.
pub const DEFAULT_BACKOFF_MAX_SECS: i64 = 3600;

/// The retry/requeue columns of a row that just ended (`cm_co_jobs`'
/// `requeue_interval`, `retry_interval`, `max_retry`, `max_retry_count`,
/// and cojobs' `backoff`, `backoff_max`), and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Seconds after an `OK` end to start a fresh copy; NULL or 0 = never.
    pub requeue_interval: Option<i64>,
    /// Seconds after an `X` end to start a retry; NULL or 0 = never.
    pub retry_interval: Option<i64>,
    /// Most retries allowed: NULL = no limit, 0 = never retry.
    pub max_retry: Option<i64>,
    /// Retries that came before this row (NULL in a plain-SQL row reads as 0).
    pub max_retry_count: i64,
    /// How the retry delay grows.
    pub backoff: Backoff,
    /// The longest exponential delay, seconds; NULL = [`DEFAULT_BACKOFF_MAX_SECS`].
    pub backoff_max: Option<i64>,
    /// The row's id: seeds the jitter, so the delay is a pure function of
    /// the row (the runner and the store compute the same one) while rows
    /// failing together still spread out.
    pub id: i64,
}

/// The delay before the retry of a row with `policy`, `base` being its
/// `retry_interval` (> 0): [`Backoff`] says how.
pub fn retry_delay(policy: &Policy, base: i64) -> i64 {
    match policy.backoff {
        Backoff::Fixed => base,
        Backoff::Exponential => {
            let cap = policy
                .backoff_max
                .unwrap_or(DEFAULT_BACKOFF_MAX_SECS)
                .max(1);
            let attempt = u32::try_from(policy.max_retry_count.clamp(0, 62)).unwrap_or(62);
            let ceiling = base.saturating_mul(1i64 << attempt).min(cap);
            let fraction = unit_fraction(policy.id, policy.max_retry_count);
            // Full jitter: uniform in [0, ceiling], whole seconds.
            (fraction * (ceiling as f64 + 1.0))
                .floor()
                .min(ceiling as f64) as i64
        }
    }
}

/// A number in [0, 1) that looks random, from the row id and the attempt
/// (splitmix64).
fn unit_fraction(id: i64, attempt: i64) -> f64 {
    let mut z = (id as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(attempt as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The row to queue after a row ends: starts `delay_secs` after now and
/// carries `max_retry_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Successor {
    pub delay_secs: i64,
    pub max_retry_count: i64,
    /// Why: a retry of a failure or a requeue of a success.
    pub kind: SuccessorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessorKind {
    Retry,
    Requeue,
}

/// The seed's retry/requeue rule, made exact
/// (`docs/design.md#retry-and-requeue`).
///
/// - `X` that is not [`Retry::Never`], with `retry_interval > 0`: a retry with
///   `max_retry_count + 1`, unless `max_retry` is set and
///   `max_retry_count >= max_retry` (NULL = no limit, 0 = never); it waits
///   [`retry_delay`] (the interval, or exponential with full jitter), or
///   for [`Retry::After`] the plugin's delay, whatever the backoff.
/// - `OK` with `requeue_interval > 0`: a fresh copy with count 0.
/// - `CX`: never.
pub fn successor(policy: &Policy, outcome: &Outcome) -> Option<Successor> {
    match outcome {
        Outcome::Complete { .. } => match policy.requeue_interval {
            Some(secs) if secs > 0 => Some(Successor {
                delay_secs: secs,
                max_retry_count: 0,
                kind: SuccessorKind::Requeue,
            }),
            _ => None,
        },
        Outcome::Failed { retry, .. } => {
            let secs = policy.retry_interval.filter(|&s| s > 0)?;
            if let Some(max) = policy.max_retry
                && policy.max_retry_count >= max
            {
                return None;
            }
            let delay_secs = match retry {
                Retry::Never => return None,
                Retry::Policy => retry_delay(policy, secs),
                Retry::After(after) => crate::bounds::RETRY_INTERVAL.clamp(*after),
            };
            Some(Successor {
                delay_secs,
                max_retry_count: policy.max_retry_count.saturating_add(1),
                kind: SuccessorKind::Retry,
            })
        }
        Outcome::Canceled { .. } => None,
    }
}

/// Most characters in a `*_summary`, `comment` or `record_key` column
/// (the seed's varchar(256)).
pub const SUMMARY_MAX_CHARS: usize = 256;

/// Cut `s` to at most [`SUMMARY_MAX_CHARS`] characters, on a character
/// boundary. Longer text is cut, never refused.
pub fn truncate_summary(s: &str) -> String {
    match s.char_indices().nth(SUMMARY_MAX_CHARS) {
        Some((at, _)) => s[..at].to_string(),
        None => s.to_string(),
    }
}

/// Most characters in a job type.
pub const JOB_TYPE_MAX_LEN: usize = 64;

/// A job type that is not `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid job type '{0}': use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
)]
pub struct InvalidJobType(pub String);

/// Check a job type (= plugin name): `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
/// It names a file in the plugin folder, so it must never be a path.
pub fn validate_job_type(s: &str) -> Result<(), InvalidJobType> {
    let bytes = s.as_bytes();
    let ok = match bytes.split_first() {
        None => false,
        Some((first, rest)) => {
            bytes.len() <= JOB_TYPE_MAX_LEN
                && first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(InvalidJobType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(retryable: bool) -> Outcome {
        Outcome::Failed {
            summary: "boom".into(),
            retry: if retryable {
                Retry::Policy
            } else {
                Retry::Never
            },
        }
    }

    fn ok() -> Outcome {
        Outcome::Complete {
            summary: "done".into(),
        }
    }

    fn retry_policy(max_retry: Option<i64>, count: i64) -> Policy {
        Policy {
            retry_interval: Some(60),
            max_retry,
            max_retry_count: count,
            ..Policy::default()
        }
    }

    #[test]
    fn status_codes_round_trip() {
        for st in JobStatus::ALL {
            assert_eq!(st.code().parse::<JobStatus>(), Ok(st));
            assert_eq!(st.to_string(), st.code());
        }
        assert!("Z".parse::<JobStatus>().is_err());
        assert_eq!("go".parse::<JobStatus>(), Ok(JobStatus::InProgress));
        for st in RecordStatus::ALL {
            assert_eq!(st.code().parse::<RecordStatus>(), Ok(st));
        }
        assert!("CX".parse::<RecordStatus>().is_err());
    }

    #[test]
    fn failure_without_retry_interval_has_no_successor() {
        for interval in [None, Some(0)] {
            let p = Policy {
                retry_interval: interval,
                ..Policy::default()
            };
            assert_eq!(successor(&p, &failed(true)), None);
        }
    }

    #[test]
    fn failure_with_no_limit_always_retries() {
        for count in [0, 1, 1000] {
            let s = successor(&retry_policy(None, count), &failed(true)).expect("retry");
            assert_eq!(s.delay_secs, 60);
            assert_eq!(s.max_retry_count, count + 1);
            assert_eq!(s.kind, SuccessorKind::Retry);
        }
    }

    #[test]
    fn max_retry_zero_never_retries() {
        assert_eq!(successor(&retry_policy(Some(0), 0), &failed(true)), None);
    }

    #[test]
    fn max_retry_n_allows_n_retries() {
        // Rows with counts 0, 1 retry; the row with count 2 (the second
        // retry) does not: three rows in all for max_retry = 2.
        assert_eq!(
            successor(&retry_policy(Some(2), 0), &failed(true)).map(|s| s.max_retry_count),
            Some(1)
        );
        assert_eq!(
            successor(&retry_policy(Some(2), 1), &failed(true)).map(|s| s.max_retry_count),
            Some(2)
        );
        assert_eq!(successor(&retry_policy(Some(2), 2), &failed(true)), None);
        assert_eq!(successor(&retry_policy(Some(2), 7), &failed(true)), None);
    }

    #[test]
    fn discarded_failure_never_retries() {
        assert_eq!(successor(&retry_policy(None, 0), &failed(false)), None);
    }

    #[test]
    fn failure_ignores_requeue_interval() {
        let p = Policy {
            requeue_interval: Some(3600),
            ..Policy::default()
        };
        assert_eq!(successor(&p, &failed(true)), None);
    }

    #[test]
    fn success_requeues_with_count_zero() {
        let p = Policy {
            requeue_interval: Some(3600),
            retry_interval: Some(60),
            max_retry: Some(3),
            max_retry_count: 2,
            ..Policy::default()
        };
        let s = successor(&p, &ok()).expect("requeue");
        assert_eq!(
            s,
            Successor {
                delay_secs: 3600,
                max_retry_count: 0,
                kind: SuccessorKind::Requeue
            }
        );
    }

    #[test]
    fn success_without_requeue_interval_has_no_successor() {
        for interval in [None, Some(0)] {
            let p = Policy {
                requeue_interval: interval,
                retry_interval: Some(60),
                ..Policy::default()
            };
            assert_eq!(successor(&p, &ok()), None);
        }
    }

    #[test]
    fn cancel_never_has_a_successor() {
        let p = Policy {
            requeue_interval: Some(10),
            retry_interval: Some(10),
            max_retry: None,
            max_retry_count: 0,
            ..Policy::default()
        };
        let cx = Outcome::Canceled {
            summary: "canceled by ada".into(),
        };
        assert_eq!(successor(&p, &cx), None);
    }

    /// A plugin's retry-after sets the delay, overriding the interval and
    /// the exponential backoff, and stays within the policy and the bounds.
    #[test]
    fn retry_after_overrides_interval_and_backoff_within_the_policy() {
        let after = |secs| Outcome::Failed {
            summary: "rate limited".into(),
            retry: Retry::After(secs),
        };
        let p = retry_policy(Some(2), 0);
        let s = successor(&p, &after(42)).expect("a retry");
        assert_eq!((s.delay_secs, s.max_retry_count), (42, 1));
        let expo = Policy {
            backoff: Backoff::Exponential,
            id: 9,
            ..p
        };
        assert_eq!(successor(&expo, &after(7)).map(|s| s.delay_secs), Some(7));
        assert_eq!(successor(&p, &after(0)).map(|s| s.delay_secs), Some(0));
        // Bounded: never past 10 years, never negative.
        assert_eq!(
            successor(&p, &after(i64::MAX)).map(|s| s.delay_secs),
            Some(crate::bounds::TEN_YEARS_SECS)
        );
        assert_eq!(successor(&p, &after(-5)).map(|s| s.delay_secs), Some(0));
        // Within the policy: no retries left, or none allowed, means none.
        assert_eq!(successor(&retry_policy(Some(2), 2), &after(42)), None);
        assert_eq!(successor(&Policy::default(), &after(42)), None);
    }

    #[test]
    fn backoff_names_round_trip() {
        for b in Backoff::ALL {
            assert_eq!(b.name().parse::<Backoff>(), Ok(b));
        }
        assert!("linear".parse::<Backoff>().is_err());
        assert_eq!(Backoff::from_column(None), Backoff::Fixed);
        assert_eq!(Backoff::from_column(Some("odd")), Backoff::Fixed);
        assert_eq!(
            Backoff::from_column(Some("exponential")),
            Backoff::Exponential
        );
    }

    /// The chain of a job retried until `max_retry`: its delays, in order.
    fn chain_delays(policy: Policy) -> Vec<i64> {
        let mut p = policy;
        let mut delays = Vec::new();
        while let Some(s) = successor(&p, &failed(true)) {
            delays.push(s.delay_secs);
            p.max_retry_count = s.max_retry_count;
            p.id += 1; // the successor is a new row
        }
        delays
    }

    #[test]
    fn exponential_backoff_grows_within_bounds_with_jitter() {
        let fixed = Policy {
            retry_interval: Some(10),
            max_retry: Some(6),
            ..Policy::default()
        };
        assert_eq!(chain_delays(fixed), vec![10; 6], "fixed: the seed's rule");
        let expo = Policy {
            backoff: Backoff::Exponential,
            ..fixed
        };
        let mut all = Vec::new();
        for id in 1..200 {
            let delays = chain_delays(Policy { id, ..expo });
            assert_eq!(delays.len(), 6);
            for (n, d) in delays.iter().enumerate() {
                let ceiling = 10 * (1 << n);
                assert!(
                    (0..=ceiling).contains(d),
                    "retry {n}: {d} not in 0..={ceiling}"
                );
            }
            all.push(delays);
        }
        // Jitter: delays of one attempt differ between rows, and spread
        // over the whole range (means near half the ceiling).
        for n in 0..6 {
            let of_n: Vec<i64> = all.iter().map(|d| d[n]).collect();
            let distinct: std::collections::HashSet<_> = of_n.iter().collect();
            assert!(distinct.len() > 5, "attempt {n}: {of_n:?}");
            let mean = of_n.iter().sum::<i64>() as f64 / of_n.len() as f64;
            let half = f64::from(10 * (1 << n)) / 2.0;
            assert!(
                (mean - half).abs() < half * 0.35,
                "attempt {n}: mean {mean}"
            );
        }
        // The cap: never more than backoff_max (default an hour).
        let long = Policy {
            max_retry: Some(40),
            max_retry_count: 0,
            ..expo
        };
        assert!(
            chain_delays(long)
                .iter()
                .all(|d| *d <= DEFAULT_BACKOFF_MAX_SECS)
        );
        let capped = Policy {
            backoff_max: Some(25),
            ..long
        };
        assert!(chain_delays(capped).iter().all(|d| *d <= 25));
    }

    #[test]
    fn truncate_cuts_at_char_boundary() {
        assert_eq!(truncate_summary("short"), "short");
        let exact = "a".repeat(256);
        assert_eq!(truncate_summary(&exact), exact);
        assert_eq!(truncate_summary(&"a".repeat(300)).len(), 256);
        let wide = "é".repeat(300);
        let cut = truncate_summary(&wide);
        assert_eq!(cut.chars().count(), 256);
        assert_eq!(cut.len(), 512);
        let mixed = format!("{}🦀🦀", "x".repeat(255));
        assert_eq!(truncate_summary(&mixed), format!("{}🦀", "x".repeat(255)));
        assert_eq!(truncate_summary(""), "");
    }

    #[test]
    fn job_types() {
        for good in [
            "hello",
            "a",
            "A9",
            "x.y-z_1",
            "9lives",
            "a".repeat(64).as_str(),
        ] {
            assert_eq!(validate_job_type(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "é",
            "a\0",
            "a".repeat(65).as_str(),
        ] {
            assert!(validate_job_type(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn truncate_is_a_bounded_prefix(s in any::<String>()) {
            let cut = truncate_summary(&s);
            prop_assert!(s.starts_with(&cut));
            prop_assert_eq!(cut.chars().count(), s.chars().count().min(SUMMARY_MAX_CHARS));
        }

        #[test]
        fn job_type_check_matches_the_pattern(s in "[A-Za-z0-9_./ -]{0,70}") {
            let want = !s.is_empty()
                && s.len() <= 64
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            prop_assert_eq!(validate_job_type(&s).is_ok(), want);
        }

        #[test]
        fn retries_never_exceed_max_retry(max in 0i64..10, count in 0i64..20) {
            let p = Policy { retry_interval: Some(1), max_retry: Some(max), max_retry_count: count, ..Policy::default() };
            let out = Outcome::Failed { summary: String::new(), retry: Retry::Policy };
            match successor(&p, &out) {
                Some(s) => prop_assert!(count < max && s.max_retry_count == count + 1 && s.max_retry_count <= max),
                None => prop_assert!(count >= max),
            }
        }
    }
}
