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
    /// The row ends `X`. `retryable` is false for a plugin's `discard`:
    /// then no successor is queued whatever the policy says.
    Failed { summary: String, retryable: bool },
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
