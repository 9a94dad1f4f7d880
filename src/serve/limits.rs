//! Limits and pause over HTTP (issue 14, docs/design.md#limits-and-pause):
//! pause and resume a job type or a CO, set a CO's most running jobs, and
//! what the plugins and COs answers say about them. The values live in
//! the store, as `cojobs pause` and `cojobs co set` write them; every
//! runner obeys them at its next claim.
//!
//! Who may do what:
//! - pause or resume a CO: an operator; a CO-scoped token only its own CO
//!   (another CO is "not found", as for its jobs);
//! - pause or resume a job type: an operator without a CO scope. A type
//!   is shared by every CO, so a CO-scoped token may not hold back the
//!   other COs' jobs (403; it may pause its own CO instead);
//! - set a CO's most running jobs: an admin without a CO scope. The limit
//!   protects the other COs' share of the runners, so a CO's own token
//!   does not lift it (403 for its own CO, 404 for another).

use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use super::AppState;
use super::api::require_json;
use super::auth::Principal;
use super::error::ApiError;
use crate::job::JobStatus;
use crate::store::{Co, GroupCount, Role, Throttles};
use crate::throttle::PauseTarget;

/// A job type's limits and pause as every claim obeys them: the
/// `concurrency` and `rate` the runners copied from its side file, and
/// its pause.
#[derive(Debug, Default, Serialize)]
pub struct TypeState {
    pub concurrency: Option<i64>,
    /// As written in the side file (`100/min`).
    pub rate: Option<String>,
    pub paused: bool,
    pub paused_by: Option<String>,
    pub paused_at: Option<String>,
    /// Its jobs running now (`GO`), in every CO: its `concurrency` counts
    /// them all.
    pub running: i64,
}

/// A CO with its limit, pause and running jobs.
#[derive(Debug, Serialize)]
pub struct CoInfo {
    #[serde(flatten)]
    pub co: Co,
    pub max_running: Option<i64>,
    pub paused: bool,
    pub paused_by: Option<String>,
    pub paused_at: Option<String>,
    /// Its jobs running now (`GO`).
    pub running: i64,
}

/// What a pause or resume did.
#[derive(Debug, Serialize)]
pub struct PauseAnswer {
    /// The job type paused or resumed, or `null` for a CO.
    pub job_type: Option<String>,
    /// The CO paused or resumed, or `null` for a job type.
    pub co: Option<i64>,
    /// Whether it is paused now.
    pub paused: bool,
    /// False when it already was as asked (nothing was written).
    pub changed: bool,
}

/// Rows of `GO` in `groups` that `keep` selects.
fn running(groups: &[GroupCount], keep: impl Fn(&GroupCount) -> bool) -> i64 {
    groups
        .iter()
        .filter(|g| g.status == JobStatus::InProgress && keep(g))
        .fold(0i64, |n, g| n.saturating_add(g.count))
}

/// `job_type`'s state in `throttles`, with its running jobs in `groups`.
pub fn type_state(throttles: &Throttles, groups: &[GroupCount], job_type: &str) -> TypeState {
    let running = running(groups, |g| g.job_type == job_type);
    match throttles.types.iter().find(|t| t.job_type == job_type) {
        Some(t) => TypeState {
            concurrency: t.concurrency,
            rate: t.rate.clone(),
            paused: t.paused_by.is_some(),
            paused_by: t.paused_by.clone(),
            paused_at: t.paused_at.clone(),
            running,
        },
        None => TypeState {
            running,
            ..TypeState::default()
        },
    }
}

/// `co` with its state in `throttles` and its running jobs in `groups`.
pub fn co_info(throttles: &Throttles, groups: &[GroupCount], co: Co) -> CoInfo {
    let lim = throttles.cos.iter().find(|l| l.co_id == co.id);
    CoInfo {
        running: running(groups, |g| g.co_id == co.id),
        max_running: lim.and_then(|l| l.max_running),
        paused: lim.is_some_and(|l| l.paused_by.is_some()),
        paused_by: lim.and_then(|l| l.paused_by.clone()),
        paused_at: lim.and_then(|l| l.paused_at.clone()),
        co,
    }
}

/// The COs `p` may see, each with its limit, pause and running jobs
/// (`GET /api/v1/cos` and the COs page).
pub async fn cos_for(state: &AppState, p: &Principal) -> Result<Vec<CoInfo>, ApiError> {
    let cos = state.store.list_cos().await?;
    let throttles = state.store.throttles().await?;
    let groups = super::api::group_counts(state, p.co).await?;
    Ok(cos
        .into_iter()
        .filter(|c| p.sees(c.id))
        .map(|c| co_info(&throttles, &groups, c))
        .collect())
}

/// Refuse unless `p` may pause or resume `target` (see the module's
/// rules); an invalid type name is a 400.
fn may_pause(p: &Principal, target: &PauseTarget) -> Result<(), ApiError> {
    p.require(Role::Operator)?;
    match target {
        PauseTarget::Type(t) => {
            crate::job::validate_job_type(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
            match p.co {
                None => Ok(()),
                Some(mine) => Err(ApiError::forbidden(format!(
                    "token '{}' is for CO {mine}; job type '{t}' is shared by every CO, so \
                     only a token without a CO may pause it (pause CO {mine} instead)",
                    p.name
                ))),
            }
        }
        PauseTarget::Co(id) if p.sees(*id) => Ok(()),
        PauseTarget::Co(id) => Err(ApiError::not_found(format!("no CO {id}"))),
    }
}

/// Pause (`pause` true) or resume `target` as `p` (shared with the
/// dashboard).
pub async fn set_paused(
    state: &AppState,
    p: &Principal,
    target: PauseTarget,
    pause: bool,
) -> Result<PauseAnswer, ApiError> {
    may_pause(p, &target)?;
    let changed = if pause {
        state.store.pause(&target, &p.name).await?
    } else {
        state.store.resume(&target).await?
    };
    let (job_type, co) = match target {
        PauseTarget::Type(t) => (Some(t), None),
        PauseTarget::Co(id) => (None, Some(id)),
    };
    Ok(PauseAnswer {
        job_type,
        co,
        paused: pause,
        changed,
    })
}

/// A job type in the path, as written (checked by [`set_paused`]).
pub struct TypePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TypePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| TypePath(p.0))
            .map_err(|_| ApiError::bad_request("the path names no job type"))
    }
}

/// A CO id in the path: a positive integer, or the CO is not found.
pub struct CoPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for CoPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        match raw.parse::<i64>() {
            Ok(n) if n > 0 => Ok(CoPath(n)),
            _ => {
                let shown: String = raw.chars().take(64).collect();
                Err(ApiError::not_found(format!("no CO '{shown}'")))
            }
        }
    }
}

/// `POST /api/v1/plugins/{type}/pause`.
pub async fn pause_type(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    TypePath(t): TypePath,
    headers: HeaderMap,
) -> Result<Json<PauseAnswer>, ApiError> {
    require_json(&headers)?;
    Ok(Json(
        set_paused(&state, &p, PauseTarget::Type(t), true).await?,
    ))
}

/// `POST /api/v1/plugins/{type}/resume`.
pub async fn resume_type(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    TypePath(t): TypePath,
    headers: HeaderMap,
) -> Result<Json<PauseAnswer>, ApiError> {
    require_json(&headers)?;
    Ok(Json(
        set_paused(&state, &p, PauseTarget::Type(t), false).await?,
    ))
}

/// `POST /api/v1/cos/{id}/pause`.
pub async fn pause_co(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    CoPath(id): CoPath,
    headers: HeaderMap,
) -> Result<Json<PauseAnswer>, ApiError> {
    require_json(&headers)?;
    Ok(Json(
        set_paused(&state, &p, PauseTarget::Co(id), true).await?,
    ))
}

/// `POST /api/v1/cos/{id}/resume`.
pub async fn resume_co(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    CoPath(id): CoPath,
    headers: HeaderMap,
) -> Result<Json<PauseAnswer>, ApiError> {
    require_json(&headers)?;
    Ok(Json(
        set_paused(&state, &p, PauseTarget::Co(id), false).await?,
    ))
}

/// `POST /api/v1/cos/{id}/max-running`'s body: `{"max_running": N}`, or
/// `null` for no limit; the key is required, so `{}` clears nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxRunningBody {
    #[serde(deserialize_with = "present")]
    pub max_running: Option<i64>,
}

/// A value that must be present, and may be `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<i64>::deserialize(d)
}

/// Set CO `id`'s most running jobs as `p` (shared with the dashboard):
/// the CO after it.
pub async fn set_max_running(
    state: &AppState,
    p: &Principal,
    id: i64,
    max: Option<i64>,
) -> Result<CoInfo, ApiError> {
    p.require(Role::Admin)?;
    if let Some(mine) = p.co {
        if mine != id {
            return Err(ApiError::not_found(format!("no CO {id}")));
        }
        return Err(ApiError::forbidden(format!(
            "token '{}' is for CO {mine}: a CO's limit is set by a token without a CO",
            p.name
        )));
    }
    crate::bounds::MAX_RUNNING
        .check_opt(max)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.store.set_co_max_running(id, max).await?;
    cos_for(state, p)
        .await?
        .into_iter()
        .find(|c| c.co.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no CO {id}")))
}

/// `POST /api/v1/cos/{id}/max-running`: 200 with the CO.
pub async fn max_running(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    CoPath(id): CoPath,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CoInfo>, ApiError> {
    require_json(&headers)?;
    let b: MaxRunningBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not {{\"max_running\": N or null}}: {e}"
        ))
    })?;
    Ok(Json(set_max_running(&state, &p, id, b.max_running).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, co: Option<i64>) -> Principal {
        Principal {
            name: "t".into(),
            role,
            co,
            session: "s".into(),
        }
    }

    #[test]
    fn who_may_pause_what() {
        let ty = PauseTarget::Type("hello".into());
        assert!(may_pause(&who(Role::Operator, None), &ty).is_ok());
        assert!(may_pause(&who(Role::Operator, None), &PauseTarget::Co(3)).is_ok());
        assert_eq!(
            may_pause(&who(Role::Viewer, None), &ty)
                .err()
                .map(|e| e.status),
            Some(axum::http::StatusCode::FORBIDDEN)
        );
        let scoped = who(Role::Admin, Some(2));
        assert_eq!(
            may_pause(&scoped, &ty).err().map(|e| e.status),
            Some(axum::http::StatusCode::FORBIDDEN)
        );
        assert!(may_pause(&scoped, &PauseTarget::Co(2)).is_ok());
        assert_eq!(
            may_pause(&scoped, &PauseTarget::Co(1))
                .err()
                .map(|e| e.status),
            Some(axum::http::StatusCode::NOT_FOUND)
        );
        let bad = PauseTarget::Type("../x".into());
        assert_eq!(
            may_pause(&who(Role::Admin, None), &bad)
                .err()
                .map(|e| e.status),
            Some(axum::http::StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn max_running_must_be_given() {
        let parse = |s: &str| serde_json::from_str::<MaxRunningBody>(s).map(|b| b.max_running);
        assert_eq!(parse(r#"{"max_running": 4}"#).ok(), Some(Some(4)));
        assert_eq!(parse(r#"{"max_running": null}"#).ok(), Some(None));
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"max_running": 1, "x": 1}"#).is_err());
    }
}
