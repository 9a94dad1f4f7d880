//! Bulk cancel and retry (`POST /api/v1/jobs/cancel`, `POST
//! /api/v1/jobs/retry`, and the dashboard's selection): the jobs matching
//! a filter, or a list of ids, acted on only when the caller says how many
//! it expects and that is how many match now — so a filter that matches
//! more than the person saw does nothing. At most [`MAX_BULK`] jobs; each
//! job is its own transition (a job that ended meanwhile is skipped, as a
//! single cancel or retry of it would be refused).

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::{ListParams, require_json};
use super::auth::Principal;
use super::error::ApiError;
use crate::job::JobStatus;
use crate::store::driver::ErrorKind;
use crate::store::{CancelResult, Job, JobId, Role};

/// The most jobs one bulk request may act on.
pub const MAX_BULK: usize = 1000;

/// What a bulk request does to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// `Q` rows end `CX`; `GO` rows get a stop request.
    Cancel,
    /// `X` and `CX` rows get a new `Q` row each (retry now).
    Retry,
}

impl BulkAction {
    /// The statuses it applies to.
    pub fn statuses(self) -> [JobStatus; 2] {
        match self {
            BulkAction::Cancel => [JobStatus::Queued, JobStatus::InProgress],
            BulkAction::Retry => [JobStatus::Failed, JobStatus::Canceled],
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
        }
    }
}

/// Which jobs: those of the list's filters (`status`, `type`, `co`, `q`,
/// time ranges; no cursor), of which only the ones the action applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    pub co: Option<i64>,
    pub queued_after: Option<String>,
    pub queued_before: Option<String>,
    pub finished_after: Option<String>,
    pub finished_before: Option<String>,
    pub q: Option<String>,
}

/// A bulk request's body: a filter or ids (one of the two), and how many
/// jobs the caller expects to act on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub filter: Option<BulkFilter>,
    pub ids: Option<Vec<i64>>,
    pub expected: i64,
}

/// What became of one job.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BulkItem {
    pub id: JobId,
    /// `canceled`, `stop_requested`, `retried` or `skipped`.
    pub result: &'static str,
    /// The new row of a retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<JobId>,
    /// Why it was skipped (it changed between the count and the action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The answer: how many matched, and each job's result.
#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    pub action: BulkAction,
    pub matched: usize,
    pub results: Vec<BulkItem>,
}

/// The jobs `req` selects for `action`, as `p` sees them now, newest first.
pub async fn matching(
    state: &AppState,
    p: &Principal,
    action: BulkAction,
    filter: Option<&BulkFilter>,
    ids: Option<&[i64]>,
) -> Result<Vec<Job>, ApiError> {
    match (filter, ids) {
        (Some(_), Some(_)) | (None, None) => Err(ApiError::bad_request(
            "give either a filter or ids, not both and not neither",
        )),
        (None, Some(ids)) => by_ids(state, p, action, ids).await,
        (Some(f), None) => by_filter(state, p, action, f).await,
    }
}

async fn by_ids(
    state: &AppState,
    p: &Principal,
    action: BulkAction,
    ids: &[i64],
) -> Result<Vec<Job>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "ids must hold 1 to {MAX_BULK} job ids (got {})",
            ids.len()
        )));
    }
    let unique: HashSet<i64> = ids.iter().copied().collect();
    let mut sorted: Vec<i64> = unique.into_iter().filter(|id| *id > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for id in sorted {
        if let Some(job) = state.store.get(JobId(id)).await?
            && p.sees(job.co_id)
            && action.statuses().contains(&job.status)
        {
            out.push(job);
        }
    }
    Ok(out)
}

async fn by_filter(
    state: &AppState,
    p: &Principal,
    action: BulkAction,
    f: &BulkFilter,
) -> Result<Vec<Job>, ApiError> {
    let params = ListParams {
        status: f.status.clone(),
        job_type: f.job_type.clone(),
        co: f.co.map(|c| c.to_string()),
        queued_after: f.queued_after.clone(),
        queued_before: f.queued_before.clone(),
        finished_after: f.finished_after.clone(),
        finished_before: f.finished_before.clone(),
        q: f.q.clone(),
        before: None,
        limit: Some(1),
    };
    let Some(mut q) = params.to_query(p)? else {
        return Ok(Vec::new());
    };
    let statuses: Vec<JobStatus> = match q.status {
        Some(s) if action.statuses().contains(&s) => vec![s],
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "bulk {} applies to {} jobs; status {s} never matches",
                action.verb(),
                action.statuses().map(|s| s.code()).join(" and ")
            )));
        }
        None => action.statuses().to_vec(),
    };
    q.limit = i64::try_from(MAX_BULK)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let mut out = Vec::new();
    for s in statuses {
        q.status = Some(s);
        out.extend(state.store.search(&q).await?);
        if out.len() > MAX_BULK {
            break;
        }
    }
    out.sort_unstable_by_key(|j| std::cmp::Reverse(j.id));
    Ok(out)
}

/// Check `expected` against what matches now, then act on each job.
pub async fn run(
    state: &AppState,
    p: &Principal,
    action: BulkAction,
    req: &BulkRequest,
) -> Result<BulkResult, ApiError> {
    p.require(Role::Operator)?;
    let jobs = matching(state, p, action, req.filter.as_ref(), req.ids.as_deref()).await?;
    if jobs.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "more than {MAX_BULK} jobs match; narrow the filter (a bulk {} acts on at most \
             {MAX_BULK})",
            action.verb()
        )));
    }
    let matched = jobs.len();
    if i64::try_from(matched).ok() != Some(req.expected) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "count_mismatch",
            format!(
                "{matched} job(s) match now, not the {} expected: nothing was done; look \
                 again and send the count you confirm",
                req.expected
            ),
        ));
    }
    let results = act_on_each(state, p, action, &jobs).await;
    // Also after a failure part-way: the jobs before it changed.
    state.forget_counts().await;
    let results = results?;
    Ok(BulkResult {
        action,
        matched,
        results,
    })
}

/// Act on each of `jobs` in turn, stopping at a store failure.
async fn act_on_each(
    state: &AppState,
    p: &Principal,
    action: BulkAction,
    jobs: &[Job],
) -> Result<Vec<BulkItem>, ApiError> {
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(act(state, p, action, job.id).await?);
    }
    Ok(results)
}

/// Act on one job; a job that changed since it was counted is skipped.
async fn act(
    state: &AppState,
    p: &Principal,
    action: BulkAction,
    id: JobId,
) -> Result<BulkItem, ApiError> {
    let item = |result, new_id, detail| BulkItem {
        id,
        result,
        new_id,
        detail,
    };
    let done = match action {
        BulkAction::Cancel => state.store.cancel(id, &p.name).await.map(|r| match r {
            CancelResult::Canceled => item("canceled", None, None),
            CancelResult::StopRequested => item("stop_requested", None, None),
        }),
        BulkAction::Retry => state
            .store
            .retry_now(id, &p.name)
            .await
            .map(|new| item("retried", Some(new), None)),
    };
    match done {
        Ok(i) => Ok(i),
        Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Input) => {
            Ok(item("skipped", None, Some(e.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

/// A bulk request's body, checked.
fn body(headers: &HeaderMap, body: &Bytes) -> Result<BulkRequest, ApiError> {
    require_json(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a bulk request: {e}")))
}

/// `POST /api/v1/jobs/cancel`.
pub async fn cancel_jobs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Json<BulkResult>, ApiError> {
    let req = body(&headers, &raw)?;
    Ok(Json(run(&state, &p, BulkAction::Cancel, &req).await?))
}

/// `POST /api/v1/jobs/retry`.
pub async fn retry_jobs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Json<BulkResult>, ApiError> {
    let req = body(&headers, &raw)?;
    Ok(Json(run(&state, &p, BulkAction::Retry, &req).await?))
}
