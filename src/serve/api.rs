//! The JSON API, `/api/v1` (the OpenAPI document is `openapi.json`
//! beside this file). Every handler gets the request's
//! [`Principal`]; a CO-scoped one sees its CO only (others' jobs are 404).
//! Bad input is a 4xx `{error, detail}` and writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::limits::{CoInfo, TypeState, cos_for, type_state};
use crate::job::JobStatus;
use crate::sandbox::LoadedPlugin;
use crate::sandbox::{LimitOverrides, PluginDescription};
use crate::store::{
    CancelResult, GroupCount, HistoryRecord, Job, JobId, JobQuery, MinuteCount, Queued, Role,
    RunnerRow,
};
use crate::submit::{CheckError, JobSpec, check_against_plugins};

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// The longest search text.
const MAX_TEXT: usize = 256;

/// A query string whose every error is a 400 `{error, detail}`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A job id in the path: a positive integer, or the job is not found.
pub struct IdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        match raw.parse::<i64>() {
            Ok(n) if n > 0 => Ok(IdPath(JobId(n))),
            _ => {
                let shown: String = raw.chars().take(64).collect();
                Err(ApiError::not_found(format!("no job '{shown}'")))
            }
        }
    }
}

/// The job `id` if the principal may see it; 404 otherwise (also for
/// another CO's job: it is not told apart from a missing one).
pub async fn visible_job(state: &AppState, p: &Principal, id: JobId) -> Result<Job, ApiError> {
    match state.store.get(id).await? {
        Some(job) if p.sees(job.co_id) => Ok(job),
        _ => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// `GET /api/v1/jobs`'s query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    /// Text, so that an empty form field means "any".
    pub co: Option<String>,
    pub queued_after: Option<String>,
    pub queued_before: Option<String>,
    pub finished_after: Option<String>,
    pub finished_before: Option<String>,
    /// Text in the summaries or status line.
    pub q: Option<String>,
    /// The cursor: the `next` of the previous page.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

impl ListParams {
    /// The store query these ask for, as `p` may see it; `None` when they
    /// ask for a CO `p` may not see (an empty page).
    pub fn to_query(&self, p: &Principal) -> Result<Option<JobQuery>, ApiError> {
        let time = |name: &str, v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    crate::submit::parse_time(s)
                        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
                })
                .transpose()
        };
        let limit = page_size(self.limit)?;
        let text = self.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
        if text.is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(ApiError::bad_request(format!(
                "q is longer than {MAX_TEXT} characters"
            )));
        }
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
                ApiError::bad_request(format!("status '{s}' is not one of Q, GO, OK, X, CX"))
            })?),
        };
        let asked = match self.co.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("co '{s}' is not a CO id (an integer)"))
            })?),
        };
        let co_id = match (p.co, asked) {
            (Some(mine), Some(asked)) if mine != asked => return Ok(None),
            (Some(mine), _) => Some(mine),
            (None, asked) => asked,
        };
        Ok(Some(JobQuery {
            status,
            job_type: self.job_type.clone().filter(|t| !t.is_empty()),
            co_id,
            queued_after: time("queued_after", &self.queued_after)?,
            queued_before: time("queued_before", &self.queued_before)?,
            finished_after: time("finished_after", &self.finished_after)?,
            finished_before: time("finished_before", &self.finished_before)?,
            text: text.map(str::to_string),
            before: self.before.map(JobId),
            limit,
        }))
    }
}

/// A page of jobs, newest first; `next` is the cursor of the next page
/// (`before=next`), `null` on the last.
#[derive(Debug, Serialize)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next: Option<JobId>,
}

/// Run a list query (`None`: an empty page).
pub async fn page(state: &AppState, q: Option<JobQuery>) -> Result<JobPage, ApiError> {
    let Some(q) = q else {
        return Ok(JobPage {
            jobs: Vec::new(),
            next: None,
        });
    };
    let jobs = state.store.search(&q).await?;
    let full = i64::try_from(jobs.len()).unwrap_or(i64::MAX) >= q.limit;
    let next = if full {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

/// `GET /api/v1/jobs`.
pub async fn list_jobs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let q = params.to_query(&p)?;
    Ok(Json(page(&state, q).await?))
}

/// One job with every column, its history, and the first pages of its
/// retry chain and of its child jobs.
#[derive(Debug, Serialize)]
pub struct JobDetail {
    pub job: Job,
    pub history: Vec<HistoryRecord>,
    pub chain: ChainPage,
    pub children: ChainPage,
}

/// A page of a job's retry chain or of its child jobs, oldest first (rows
/// without their logs and results); `next` is the cursor of the next page
/// (`after=next`).
#[derive(Debug, Serialize)]
pub struct ChainPage {
    pub jobs: Vec<Job>,
    pub next: Option<JobId>,
}

impl ChainPage {
    /// A page of up to `limit` of `rows` (read with one more, to know
    /// whether there is a next page), as `p` may see them.
    fn of(mut rows: Vec<Job>, limit: i64, p: &Principal) -> ChainPage {
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let next = if more {
            rows.last().map(|j| j.id)
        } else {
            None
        };
        let jobs = rows
            .into_iter()
            .filter(|j| p.sees(j.co_id))
            .map(|mut j| {
                j.job_log = None;
                j.result = None;
                j
            })
            .collect();
        ChainPage { jobs, next }
    }
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get_job(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    IdPath(id): IdPath,
) -> Result<Json<JobDetail>, ApiError> {
    let job = visible_job(&state, &p, id).await?;
    let history = state.store.history(id).await?;
    let chain = chain_page(&state, &p, id, None, DEFAULT_PAGE).await?;
    let children = children_page(&state, &p, id, None, DEFAULT_PAGE).await?;
    Ok(Json(JobDetail {
        job,
        history,
        chain,
        children,
    }))
}

/// Up to `limit` rows of `id`'s chain after `after`, as `p` may see them.
pub async fn chain_page(
    state: &AppState,
    p: &Principal,
    id: JobId,
    after: Option<JobId>,
    limit: i64,
) -> Result<ChainPage, ApiError> {
    let rows = state
        .store
        .retry_chain(id, after, limit.saturating_add(1))
        .await?;
    Ok(ChainPage::of(rows, limit, p))
}

/// Up to `limit` of the jobs `id`'s run queued, after `after`, as `p` may
/// see them.
pub async fn children_page(
    state: &AppState,
    p: &Principal,
    id: JobId,
    after: Option<JobId>,
    limit: i64,
) -> Result<ChainPage, ApiError> {
    let rows = state
        .store
        .children(id, after, limit.saturating_add(1))
        .await?;
    Ok(ChainPage::of(rows, limit, p))
}

/// `GET /api/v1/jobs/{id}/chain`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// A page size given in a query: [`DEFAULT_PAGE`] unless said, at most
/// [`MAX_PAGE`].
pub fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE} (got {limit})"
        )))
    }
}

/// `GET /api/v1/jobs/{id}/chain`.
pub async fn job_chain(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    IdPath(id): IdPath,
    ApiQuery(params): ApiQuery<ChainParams>,
) -> Result<Json<ChainPage>, ApiError> {
    visible_job(&state, &p, id).await?;
    let limit = page_size(params.limit)?;
    Ok(Json(
        chain_page(&state, &p, id, params.after.map(JobId), limit).await?,
    ))
}

/// `GET /api/v1/jobs/{id}/children`: the jobs its run queued, oldest
/// first, paged like the chain.
pub async fn job_children(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    IdPath(id): IdPath,
    ApiQuery(params): ApiQuery<ChainParams>,
) -> Result<Json<ChainPage>, ApiError> {
    visible_job(&state, &p, id).await?;
    let limit = page_size(params.limit)?;
    Ok(Json(
        children_page(&state, &p, id, params.after.map(JobId), limit).await?,
    ))
}

/// `POST /api/v1/jobs`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    /// Refuse (409) when the same CO, type, mode and params is queued or
    /// running (`queue --unique`).
    pub unique: Option<bool>,
}

/// Refuse a state-changing API request that is not JSON (415): a
/// cross-site form cannot send `application/json`.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ))
    }
}

/// `POST /api/v1/jobs`: the object a `queue --from` line holds, checked as
/// `cojobs queue` checks it (ranges, plugin `describe`, params, mode, CO);
/// 201 with the new row.
pub async fn queue_job(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(params): ApiQuery<QueueParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    require_json(&headers)?;
    let spec: JobSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a job: {e}")))?;
    let mut job = spec
        .into_new_job(chrono::Utc::now(), &p.name)
        .map_err(ApiError::bad_request)?;
    if !p.sees(job.co_id) {
        return Err(ApiError::not_found(format!("no CO {}", job.co_id)));
    }
    check_against_plugins(&state.sandbox, std::slice::from_mut(&mut job))
        .await
        .map_err(|(_, e)| match e {
            CheckError::Store(e) => ApiError::bad_request(e.to_string()),
            e => ApiError::bad_request(e.to_string()),
        })?;
    let id = if params.unique.unwrap_or(false) {
        match state.store.queue_unique(&job).await? {
            Queued::New(id) => id,
            Queued::Existing(id, status) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "duplicate",
                    format!(
                        "job {id} ({status}) with the same CO, type, mode and params is \
                         already queued or running"
                    ),
                ));
            }
        }
    } else {
        state.store.queue(&job).await?
    };
    state.forget_counts().await;
    let row = visible_job(&state, &p, id).await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

/// What a cancel did, and the row after it.
#[derive(Debug, Serialize)]
pub struct Canceled {
    /// `canceled` (it ended `CX`) or `stop_requested` (its runner will
    /// end it `CX`).
    pub result: &'static str,
    pub job: Job,
}

/// Cancel job `id` as `p` (shared with the dashboard).
pub async fn cancel(state: &AppState, p: &Principal, id: JobId) -> Result<Canceled, ApiError> {
    p.require(Role::Operator)?;
    visible_job(state, p, id).await?;
    let result = match state.store.cancel(id, &p.name).await? {
        CancelResult::Canceled => "canceled",
        CancelResult::StopRequested => "stop_requested",
    };
    state.forget_counts().await;
    let job = visible_job(state, p, id).await?;
    Ok(Canceled { result, job })
}

/// Retry job `id` now as `p` (shared with the dashboard): the new row.
pub async fn retry(state: &AppState, p: &Principal, id: JobId) -> Result<Job, ApiError> {
    p.require(Role::Operator)?;
    visible_job(state, p, id).await?;
    let new = state.store.retry_now(id, &p.name).await?;
    state.forget_counts().await;
    visible_job(state, p, new).await
}

/// `POST /api/v1/jobs/{id}/cancel`.
pub async fn cancel_job(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Json<Canceled>, ApiError> {
    require_json(&headers)?;
    Ok(Json(cancel(&state, &p, id).await?))
}

/// `POST /api/v1/jobs/{id}/retry`: 201 with the new row.
pub async fn retry_job(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let job = retry(&state, &p, id).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// One installed plugin: its `describe`, limits and grants, or why it
/// failed.
#[derive(Debug, Serialize)]
pub struct PluginInfo {
    pub plugin: String,
    pub description: Option<PluginDescription>,
    pub limits: Option<PluginLimits>,
    pub grants: Option<PluginGrants>,
    pub error: Option<String>,
    /// Its limits in force and pause, and its jobs running now.
    pub throttle: TypeState,
}

/// What a plugin's side file grants beyond the defaults (nothing by
/// default): names only, never a secret's value nor a host path.
#[derive(Debug, Serialize)]
pub struct PluginGrants {
    /// `allowed_hosts` entries (`scheme://host:port` patterns).
    pub http_hosts: Vec<String>,
    pub max_http_requests: u32,
    pub max_response_bytes: u64,
    /// Directories, as the plugin sees them.
    pub dirs: Vec<DirInfo>,
    /// A per-job `/scratch` directory.
    pub scratch: bool,
    /// `[config]` names.
    pub config: Vec<String>,
    /// `[secrets]` names.
    pub secrets: Vec<String>,
}

/// A granted directory as the plugin sees it.
#[derive(Debug, Serialize)]
pub struct DirInfo {
    pub guest: String,
    pub writable: bool,
}

impl PluginGrants {
    fn of(plugin: &LoadedPlugin) -> PluginGrants {
        let c = &plugin.config;
        PluginGrants {
            http_hosts: c.http.allowed.iter().map(ToString::to_string).collect(),
            max_http_requests: c.http.max_requests,
            max_response_bytes: c.http.max_response_bytes,
            dirs: c
                .dirs
                .iter()
                .map(|d| DirInfo {
                    guest: d.guest.clone(),
                    writable: d.writable,
                })
                .collect(),
            scratch: c.scratch,
            config: c.values.keys().cloned().collect(),
            secrets: c.secrets.names().map(str::to_string).collect(),
        }
    }
}

/// A plugin's limits (its side file's, else the defaults).
#[derive(Debug, Serialize)]
pub struct PluginLimits {
    pub fuel: u64,
    pub memory_mib: u64,
    pub timeout_secs: u64,
}

/// `GET /api/v1/plugins`.
pub async fn plugins(State(state): State<AppState>) -> Result<Json<Vec<PluginInfo>>, ApiError> {
    Ok(Json(plugin_infos(&state).await?))
}

/// Every installed plugin, described (shared with the dashboard).
pub async fn plugin_infos(state: &AppState) -> Result<Vec<PluginInfo>, ApiError> {
    let names = state.sandbox.plugin_names().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot list plugins: {e}"),
        )
    })?;
    let throttles = state.store.throttles().await?;
    let groups = group_counts(state, None).await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let throttle = type_state(&throttles, &groups, &name);
        let described = async {
            let plugin = state.sandbox.plugin_async(&name).await?;
            let desc = state.sandbox.describe(&plugin).await?;
            Ok::<_, crate::sandbox::SandboxError>((plugin, desc))
        }
        .await;
        out.push(match described {
            Ok((plugin, desc)) => {
                let l = state
                    .sandbox
                    .limits_for(&plugin, &LimitOverrides::default());
                PluginInfo {
                    plugin: name,
                    description: Some(desc),
                    limits: Some(PluginLimits {
                        fuel: l.fuel,
                        memory_mib: l.memory_mib,
                        timeout_secs: l.timeout.as_secs(),
                    }),
                    grants: Some(PluginGrants::of(&plugin)),
                    error: None,
                    throttle,
                }
            }
            Err(e) => PluginInfo {
                plugin: name,
                description: None,
                limits: None,
                grants: None,
                error: Some(e.to_string()),
                throttle,
            },
        });
    }
    Ok(out)
}

/// `GET /api/v1/cos`: the COs the principal may see, with their limits,
/// pause and running jobs.
pub async fn cos(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<CoInfo>>, ApiError> {
    Ok(Json(cos_for(&state, &p).await?))
}

/// `GET /api/v1/runners`: the runners recorded in the store, live ones
/// (heartbeat younger than their lease) and those that stopped answering
/// within the last hour (`alive` false). Runners serve every CO, so a
/// CO-scoped token sees them too.
pub async fn runners(State(state): State<AppState>) -> Result<Json<Vec<RunnerRow>>, ApiError> {
    Ok(Json(state.store.list_runners().await?))
}

/// How many minutes of activity the stats cover.
pub const ACTIVITY_MINUTES: i64 = 60;

/// Counts of the jobs the principal may see.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Every status, zeros too.
    pub by_status: BTreeMap<String, i64>,
    /// Per job type, per status.
    pub by_type: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per CO id, per status.
    pub by_co: BTreeMap<String, BTreeMap<String, i64>>,
    /// Jobs ended in each of the last 60 minutes, oldest first.
    pub finished_per_minute: Vec<MinuteCount>,
    /// Queue latency of the jobs that ended in the last hour.
    pub queue_latency: Latency,
}

/// Seconds from when jobs were due to when they started: quantiles over
/// the jobs that ended in the last hour (at most the 10,000 newest).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Jobs measured.
    pub jobs: usize,
}

/// The last hour's ends per minute and queue latency, as the shared
/// cache holds them (summarised once per read, not per request).
pub type RecentActivity = (Vec<MinuteCount>, Latency);

/// The last hour's activity `p` may see, read at most once per
/// [`super::cache::MAX_AGE`] for all requests.
pub async fn activity_for(state: &AppState, p: &Principal) -> Result<RecentActivity, ApiError> {
    let read = || async {
        let a = state.store.activity(p.co, ACTIVITY_MINUTES).await?;
        let latency = Latency {
            p50: a.latency_quantile(0.5),
            p99: a.latency_quantile(0.99),
            jobs: a.latencies.len(),
        };
        Ok::<_, crate::store::driver::Error>((a.per_minute, latency))
    };
    let shared = state.activity.get(p.co, read).await?;
    Ok(shared.as_ref().clone())
}

/// The job counts of CO `co` (`None`: of every CO), read at most once
/// per [`super::cache::MAX_AGE`] for all requests.
pub async fn group_counts(
    state: &AppState,
    co: Option<i64>,
) -> Result<Arc<Vec<GroupCount>>, ApiError> {
    Ok(state
        .counts
        .get(co, || state.store.count_groups(co))
        .await?)
}

/// The counts `p` may see (without the activity: the event streams
/// read these every second).
pub async fn stats_for(state: &AppState, p: &Principal) -> Result<Stats, ApiError> {
    let groups = group_counts(state, p.co).await?;
    let mut s = Stats {
        by_status: JobStatus::ALL
            .iter()
            .map(|st| (st.code().to_string(), 0))
            .collect(),
        by_type: BTreeMap::new(),
        by_co: BTreeMap::new(),
        finished_per_minute: Vec::new(),
        queue_latency: Latency {
            p50: None,
            p99: None,
            jobs: 0,
        },
    };
    for g in groups.iter() {
        let code = g.status.code().to_string();
        let add = |m: &mut BTreeMap<String, i64>| {
            let slot = m.entry(code.clone()).or_insert(0);
            *slot = slot.saturating_add(g.count);
        };
        add(&mut s.by_status);
        add(s.by_type.entry(g.job_type.clone()).or_default());
        add(s.by_co.entry(g.co_id.to_string()).or_default());
    }
    Ok(s)
}

/// `GET /api/v1/stats`: counts, and the last hour's activity.
pub async fn stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Stats>, ApiError> {
    let mut s = stats_for(&state, &p).await?;
    (s.finished_per_minute, s.queue_latency) = activity_for(&state, &p).await?;
    Ok(Json(s))
}
