//! A job as someone submits it: one line of `cojobs queue --from` or the
//! body of `POST /api/v1/jobs` ([`JobSpec`]), its checks (every number in
//! its range, params a JSON object, a due time that can be read) and the
//! check against what the plugin declares in `describe`
//! ([`check_against_plugins`]). The CLI and `serve` both queue through
//! here, so a job is refused for the same reasons, in the same words,
//! however it arrives.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::bounds;
use crate::sandbox::{Sandbox, SandboxError};
use crate::store::{NewJob, StoreError};

/// One job to queue, as JSON: `{"type": ..., "params": {...}, ...}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    #[serde(rename = "type")]
    pub job_type: String,
    pub params: Option<Value>,
    pub mode: Option<String>,
    pub co: Option<i64>,
    pub retry_interval: Option<i64>,
    pub max_retry: Option<i64>,
    pub requeue_interval: Option<i64>,
    /// Seconds from now.
    pub delay: Option<i64>,
    /// RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC).
    pub start_after: Option<String>,
    pub summary: Option<String>,
    pub fuel: Option<i64>,
    pub memory: Option<i64>,
    pub timeout: Option<i64>,
    /// `fixed` (the default) or `exponential`.
    pub backoff: Option<String>,
    /// The longest exponential retry delay, seconds.
    pub backoff_max: Option<i64>,
    /// 1 to 9, smaller runs first within its CO (default 5).
    pub priority: Option<i64>,
}

impl JobSpec {
    /// The first number outside its range ([`crate::bounds`]).
    fn check_numbers(&self) -> Result<(), bounds::OutOfRange> {
        for (bound, value) in [
            (bounds::FUEL, self.fuel),
            (bounds::MEMORY_MIB, self.memory),
            (bounds::TIMEOUT_SECS, self.timeout),
            (bounds::RETRY_INTERVAL, self.retry_interval),
            (bounds::MAX_RETRY, self.max_retry),
            (bounds::REQUEUE_INTERVAL, self.requeue_interval),
            (bounds::DELAY, self.delay),
            (bounds::BACKOFF_MAX, self.backoff_max),
            (bounds::PRIORITY, self.priority),
        ] {
            bound.check_opt(value)?;
        }
        Ok(())
    }

    /// The job to queue, queued by `who` at `now` (for `delay`); the CO
    /// is 1 when none is given. The error says what is wrong, in words.
    pub fn into_new_job(self, now: DateTime<Utc>, who: &str) -> Result<NewJob, String> {
        self.check_numbers().map_err(|e| e.to_string())?;
        let params = match self.params {
            None => None,
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(other) => return Err(format!("params must be a JSON object, not {other}")),
        };
        let start_after = match (self.delay, self.start_after) {
            (Some(_), Some(_)) => return Err("give delay or start_after, not both".into()),
            (Some(secs), None) => Some(
                now.checked_add_signed(TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX))
                    .ok_or_else(|| format!("delay of {secs} s is too long"))?,
            ),
            (None, Some(t)) => Some(parse_time(&t)?),
            (None, None) => None,
        };
        let backoff = self
            .backoff
            .as_deref()
            .map(str::parse::<crate::job::Backoff>)
            .transpose()
            .map_err(|e| e.to_string())?
            .filter(|b| *b != crate::job::Backoff::Fixed);
        Ok(NewJob {
            co_id: self.co.unwrap_or(1),
            job_type: self.job_type,
            job_mode: self.mode,
            job_params: params,
            requeue_interval: self.requeue_interval,
            retry_interval: self.retry_interval,
            max_retry: self.max_retry,
            start_after,
            register_summary: self.summary,
            fuel_limit: self.fuel,
            memory_limit_mib: self.memory,
            timeout_secs: self.timeout,
            queued_by: Some(who.to_string()),
            backoff,
            backoff_max: self.backoff_max,
            priority: self.priority,
        })
    }
}

/// RFC 3339 (`2030-01-02T03:04:05Z`, any offset) or `YYYY-MM-DD HH:MM:SS`
/// (with optional fraction, also with a `T`), taken as UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "cannot read time '{s}': use RFC 3339 (2030-01-02T03:04:05Z) or 'YYYY-MM-DD HH:MM:SS' (UTC)"
    ))
}

/// Why a job does not fit its plugin.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The job type is not a plugin name.
    #[error("{0}")]
    BadName(String),
    /// The plugin is missing, or failed to load or to describe itself.
    #[error("{0}")]
    Plugin(SandboxError),
    /// The mode or params do not fit what the plugin declares.
    #[error("{0}")]
    Params(String),
    /// The params are not a JSON object.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Check each job's mode and params against what its plugin
/// (`<plugins>/<job_type>.wasm`) declares in `describe`, describing each
/// plugin once, and fill in the defaults of absent parameters. The error
/// carries the index of the first job that does not fit.
pub async fn check_against_plugins(
    sandbox: &Arc<Sandbox>,
    jobs: &mut [NewJob],
) -> Result<(), (usize, CheckError)> {
    let mut descriptions = HashMap::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        if !descriptions.contains_key(&job.job_type) {
            let desc = async {
                let plugin = sandbox.plugin_async(&job.job_type).await?;
                sandbox.describe(&plugin).await
            }
            .await
            .map_err(|e| {
                (
                    i,
                    match e {
                        SandboxError::BadName(e) => CheckError::BadName(e.to_string()),
                        e => CheckError::Plugin(e),
                    },
                )
            })?;
            descriptions.insert(job.job_type.clone(), desc);
        }
        let Some(desc) = descriptions.get(&job.job_type) else {
            continue;
        };
        let params = match &job.job_params {
            Some(text) => {
                crate::store::parse_params(text).map_err(|e| (i, CheckError::Store(e)))?
            }
            None => serde_json::Map::new(),
        };
        let checked = desc
            .check(job.job_mode.as_deref(), &params)
            .map_err(|e| (i, CheckError::Params(e.to_string())))?;
        if checked != params {
            job.job_params = Some(Value::Object(checked).to_string());
        }
    }
    Ok(())
}
