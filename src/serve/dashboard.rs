//! The web dashboard: server-rendered pages (maud, which escapes every
//! value it is given: a plugin's `<script>` is shown as text), a small
//! vanilla script and a stylesheet embedded in the binary, and one
//! Server-Sent Events stream per open page for live counts and the
//! running job's progress. Forms that change something carry the
//! session's CSRF token.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures_util::Stream;
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::{self, IdPath, ListParams};
use super::auth::{self, COOKIE, Principal};
use super::bulk::{self, BulkAction};
use super::chart::chart;
use super::error::ApiError;
use crate::job::JobStatus;
use crate::store::{JOB_COLUMN_NAMES, Job, JobId, Role, Throttles};

const SCRIPT: &str = include_str!("assets/app.js");
const STYLESHEET: &str = include_str!("assets/app.css");

/// How often an event stream looks at the store.
pub const EVENT_TICK: Duration = Duration::from_secs(1);

/// `GET /assets/app.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /assets/app.css`.
pub async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

/// A page: the header (who is logged in), the body, the script.
pub(super) fn layout(
    title: &str,
    p: Option<&Principal>,
    job: Option<JobId>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "cojobs · " (title) }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body data-job=[job.map(|j| j.to_string())] {
                header {
                    a.brand href="/" { "cojobs" }
                    @if p.is_some() {
                        nav {
                            a href="/" { "Jobs" }
                            a href="/runners" { "Runners" }
                            a href="/plugins" { "Plugins" }
                            a href="/cos" { "COs" }
                        }
                    }
                    @if let Some(p) = p {
                        span.who {
                            (p.name) " · " (p.role)
                            @if let Some(co) = p.co { " · CO " (co) }
                        }
                        form.logout method="post" action="/logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error as a page.
pub(super) fn error_page(p: Option<&Principal>, e: ApiError) -> Response {
    let body = html! {
        h1 { "Error" }
        p.error { (e.detail) }
        p { a href="/" { "Back to the jobs" } }
    };
    (e.status, Html(layout("error", p, None, body).into_string())).into_response()
}

/// The text of a nullable cell.
pub(super) fn cell(v: Option<&str>) -> &str {
    v.unwrap_or("–")
}

/// A query string of `pairs` (values percent-encoded), without the `?`.
fn query_string(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// `GET /`: counts by status, the filter form, a page of jobs.
pub async fn overview(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(e) => return error_page(Some(&p), ApiError::bad_request(e.body_text())),
    };
    let result = async {
        let q = params.to_query(&p)?;
        let page = api::page(&state, q).await?;
        let stats = api::stats_for(&state, &p).await?;
        let activity = api::activity_for(&state, &p).await?;
        let runners = state.store.list_runners().await?;
        let throttles = state.store.throttles().await?;
        Ok::<_, ApiError>((page, stats, activity, runners, throttles))
    }
    .await;
    let (page, stats, (per_minute, latency), runners, throttles) = match result {
        Ok(x) => x,
        Err(e) => return error_page(Some(&p), e),
    };
    let alive = runners.iter().filter(|r| r.alive).count();
    let filters = [
        ("status", params.status.clone().unwrap_or_default()),
        ("type", params.job_type.clone().unwrap_or_default()),
        ("co", params.co.clone().unwrap_or_default()),
        ("q", params.q.clone().unwrap_or_default()),
    ];
    let older = page.next.map(|next| {
        let mut pairs = filters.to_vec();
        pairs.push(("before", next.to_string()));
        format!("/?{}", query_string(&pairs))
    });
    let body = html! {
        section.counts {
            @for (status, n) in &stats.by_status {
                a.count href={"/?" (query_string(&[("status", status.clone())]))} {
                    span.label { (status) }
                    span.n data-count=(status) { (n) }
                }
            }
        }
        section.activity {
            div {
                h2 { "Ended per minute, last hour" }
                (chart(&per_minute))
                p.latency {
                    "Queue latency p50 " span id="p50" { (seconds(latency.p50)) }
                    " · p99 " span id="p99" { (seconds(latency.p99)) }
                    " (" (latency.jobs) " jobs)"
                }
            }
            div {
                h2 { "Failing most" }
                (failing_most(&stats))
                h2 { "Runners" }
                p { a href="/runners" id="runners-alive" { (alive) " alive" } }
            }
        }
        @if let Some(line) = throttles.paused_line() {
            p.paused-line { span id="paused" { (line) } " — their queued jobs wait (" a href="/plugins" { "plugins" } ", " a href="/cos" { "COs" } ")" }
        }
        form.filters method="get" action="/" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for st in JobStatus::ALL {
                        option value=(st.code()) selected[params.status.as_deref() == Some(st.code())] { (st.code()) }
                    }
                }
            }
            label { "Type " input type="text" name="type" value=[params.job_type.as_deref()]; }
            label { "CO " input type="number" name="co" value=[params.co.as_deref()]; }
            label { "Search " input type="search" name="q" value=[params.q.as_deref()]; }
            button type="submit" { "Filter" }
        }
        (jobs_table(&page.jobs, &throttles, (p.role >= Role::Operator).then(|| p.csrf(&state.secret)).as_deref()))
        @if let Some(href) = &older {
            p.pager { a id="older" href=(href) { "Older jobs →" } }
        }
    };
    Html(layout("jobs", Some(&p), None, body).into_string()).into_response()
}

/// Why queued job `j` waits whatever its due time: its type or its CO is
/// paused.
fn held_back(throttles: &Throttles, j: &Job) -> Option<&'static str> {
    if j.status != JobStatus::Queued {
        return None;
    }
    let type_paused = throttles
        .types
        .iter()
        .any(|t| t.job_type == j.job_type && t.paused_by.is_some());
    let co_paused = throttles
        .cos
        .iter()
        .any(|c| c.co_id == j.co_id && c.paused_by.is_some());
    match (type_paused, co_paused) {
        (true, true) => Some("its job type and its CO are paused"),
        (true, false) => Some("its job type is paused"),
        (false, true) => Some("its CO is paused"),
        (false, false) => None,
    }
}

/// The jobs table of the overview, queued jobs of a paused type or CO
/// marked; with a CSRF token (an operator), a box per row and the bulk
/// buttons, which lead to a confirmation page.
fn jobs_table(jobs: &[Job], throttles: &Throttles, csrf: Option<&str>) -> Markup {
    html! {
        @if let Some(csrf) = csrf {
            form.bulk id="bulk" method="post" action="/jobs/bulk" {
                input type="hidden" name="csrf" value=(csrf);
                button id="bulk-cancel" type="submit" name="action" value="cancel" { "Cancel selected" }
                button id="bulk-retry" type="submit" name="action" value="retry" { "Retry selected" }
            }
        }
        table.jobs {
            thead { tr {
                @if csrf.is_some() { th { "" } }
                th { "id" } th { "CO" } th { "type" } th { "status" } th { "queued" } th { "ended" } th { "summary" }
            } }
            tbody {
                @for j in jobs {
                    tr data-status=(j.status.code()) {
                        @if csrf.is_some() {
                            td { input type="checkbox" name="id" value=(j.id) form="bulk" aria-label={"select job " (j.id)}; }
                        }
                        td { a href={"/jobs/" (j.id)} { (j.id) } }
                        td { (j.co_id) }
                        td { (j.job_type) }
                        td.status {
                            (j.status.code())
                            @if let Some(why) = held_back(throttles, j) {
                                " " span.paused title=(why) { "paused" }
                            }
                        }
                        td { (cell(j.queue_time.as_deref())) }
                        td { (cell(j.complete_time.as_deref())) }
                        td.summary { (cell(j.finish_summary.as_deref().or(j.status_line.as_deref()).or(j.register_summary.as_deref()))) }
                    }
                }
                @if jobs.is_empty() { tr { td colspan="8" { "No jobs." } } }
            }
        }
    }
}

/// `GET /jobs/{id}`'s query: the children page's cursor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPageParams {
    pub children_after: Option<i64>,
}

/// The most of a result the job page shows, pretty-printed (a result is at
/// most [`crate::store::RESULT_MAX_BYTES`] as stored; its indentation can
/// make it longer). The API gives it whole.
pub const RESULT_SHOWN: usize = 64 * 1024;

/// A job's result for a person: its JSON pretty-printed (as stored when
/// it does not read as JSON), cut to [`RESULT_SHOWN`] bytes at a character
/// boundary, and how many bytes were cut.
pub fn result_text(result: &str) -> (String, usize) {
    let mut text = serde_json::from_str::<serde_json::Value>(result)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| result.to_string());
    let mut cut = text.len().min(RESULT_SHOWN);
    while !text.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    let more = text.len().saturating_sub(cut);
    text.truncate(cut);
    (text, more)
}

/// `GET /jobs/{id}`: every column, progress, the parent, the plugin, the
/// result, the log, history, chain, children, and the cancel or retry
/// button.
pub async fn job_page(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<IdPath, ApiError>,
    params: Result<Query<JobPageParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let IdPath(id) = id?;
        let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let job = api::visible_job(&state, &p, id).await?;
        let history = state.store.history(id).await?;
        let chain = api::chain_page(&state, &p, id, None, api::DEFAULT_PAGE).await?;
        let after = params.children_after.map(JobId);
        let children = api::children_page(&state, &p, id, after, api::DEFAULT_PAGE).await?;
        Ok::<_, ApiError>((job, history, chain, children))
    }
    .await;
    let (job, history, chain, children) = match result {
        Ok(x) => x,
        Err(e) => return error_page(Some(&p), e),
    };
    let csrf = p.csrf(&state.secret);
    let operator = p.role >= Role::Operator;
    let body = html! {
        h1 { "Job " (job.id) " " span.status id="status" data-status=(job.status.code()) { (job.status.code()) } }
        p.progress {
            progress id="progress" max="100" value=(job.percent_complete.unwrap_or(0)) {}
            " " span id="status-line" { (cell(job.status_line.as_deref())) }
        }
        (origin(&job))
        @if operator {
            div.actions {
                @if matches!(job.status, JobStatus::Queued | JobStatus::InProgress) {
                    form method="post" action={"/jobs/" (job.id) "/cancel"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button id="cancel" type="submit" { "Cancel" }
                    }
                }
                @if matches!(job.status, JobStatus::Failed | JobStatus::Canceled) {
                    form method="post" action={"/jobs/" (job.id) "/retry"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button id="retry" type="submit" { "Retry now" }
                    }
                }
            }
        }
        @if let Some(result) = &job.result {
            @let (text, more) = result_text(result);
            h2 { "Result" }
            pre.result id="result" { (text) }
            @if more > 0 {
                p.hint { "(" (more) " more bytes not shown: " a href={"/api/v1/jobs/" (job.id)} { "the API" } " has it whole)" }
            }
        }
        h2 { "Columns" }
        table.columns {
            @for (name, value) in JOB_COLUMN_NAMES.iter().zip(job.column_values()) {
                @if *name != "job_log" && *name != "result" {
                    tr { th { (name) } td data-column=(name) { (cell(value.as_deref())) } }
                }
            }
        }
        h2 { "Log" }
        pre.log { (job.job_log.as_deref().unwrap_or("")) }
        h2 { "History" }
        table.history {
            thead { tr { th { "id" } th { "key" } th { "status" } th { "comment" } th { "created" } } }
            tbody {
                @for h in &history {
                    tr { td { (h.id) } td { (cell(h.record_key.as_deref())) } td { (cell(h.status.as_deref())) } td { (cell(h.comment.as_deref())) } td { (cell(h.created.as_deref())) } }
                }
            }
        }
        h2 { "Retry chain" }
        table.chain {
            thead { tr { th { "id" } th { "from" } th { "status" } th { "ended" } th { "summary" } } }
            tbody {
                @for j in &chain.jobs {
                    tr {
                        td { a href={"/jobs/" (j.id)} { (j.id) } }
                        td { (j.requeued_from_co_job_id.map(|f| f.to_string()).unwrap_or_default()) }
                        td { (j.status.code()) }
                        td { (cell(j.complete_time.as_deref())) }
                        td { (cell(j.finish_summary.as_deref())) }
                    }
                }
            }
        }
        h2 { "Child jobs" }
        (children_table(job.id, &children))
    };
    Html(layout(&format!("job {}", job.id), Some(&p), Some(job.id), body).into_string())
        .into_response()
}

/// Where a job came from and what ran it: its parent (the job whose run
/// queued it), its schedule, the plugin's SHA-256 and contract.
fn origin(job: &Job) -> Markup {
    html! {
        ul.origin {
            @if let Some(parent) = job.parent_co_job_id {
                li { "child of job " a id="parent" href={"/jobs/" (parent)} { (parent) } }
            }
            @if let Some(from) = job.requeued_from_co_job_id {
                li { "retry or requeue of job " a href={"/jobs/" (from)} { (from) } }
            }
            @if let Some(name) = &job.schedule_name {
                li { "queued by schedule " (name) " for " (cell(job.schedule_tick.as_deref())) }
            }
            li {
                "plugin " (job.job_type)
                @if let Some(contract) = &job.plugin_contract { " · contract cojobs:plugin@" span id="contract" { (contract) } }
                @if let Some(sha) = &job.plugin_sha256 { " · sha256 " code id="sha256" { (sha) } }
                @if job.plugin_sha256.is_none() { " (not run yet)" }
            }
        }
    }
}

/// A page of the jobs `parent`'s run queued, with a link to the next.
fn children_table(parent: JobId, children: &api::ChainPage) -> Markup {
    html! {
        table.children {
            thead { tr { th { "id" } th { "CO" } th { "type" } th { "status" } th { "queued" } th { "ended" } th { "summary" } } }
            tbody {
                @for j in &children.jobs {
                    tr data-child=(j.id) {
                        td { a href={"/jobs/" (j.id)} { (j.id) } }
                        td { (j.co_id) }
                        td { (j.job_type) }
                        td { (j.status.code()) }
                        td { (cell(j.queue_time.as_deref())) }
                        td { (cell(j.complete_time.as_deref())) }
                        td.summary { (cell(j.finish_summary.as_deref().or(j.register_summary.as_deref()))) }
                    }
                }
                @if children.jobs.is_empty() { tr { td colspan="7" { "No child jobs." } } }
            }
        }
        @if let Some(next) = children.next {
            p.pager { a id="more-children" href={"/jobs/" (parent) "?children_after=" (next)} { "More child jobs →" } }
        }
    }
}

/// A dashboard form that changes something: its CSRF token.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub csrf: String,
}

/// Whether a form carries this session's CSRF token.
pub(super) fn csrf_ok(
    state: &AppState,
    p: &Principal,
    form: Result<Form<ActionForm>, FormRejection>,
) -> bool {
    matches!(form, Ok(Form(f)) if p.csrf_ok(&state.secret, &f.csrf))
}

/// The page a form without this session's CSRF token gets (403).
pub(super) fn forged(p: &Principal) -> Response {
    error_page(
        Some(p),
        ApiError::forbidden(
            "this form is stale or was not sent by this dashboard; reload the page",
        ),
    )
}

/// `POST /jobs/{id}/cancel`, then back to the job page.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<IdPath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if !csrf_ok(&state, &p, form) {
        return forged(&p);
    }
    let result = async {
        let IdPath(id) = id?;
        api::cancel(&state, &p, id).await
    }
    .await;
    match result {
        Ok(c) => Redirect::to(&format!("/jobs/{}", c.job.id)).into_response(),
        Err(e) => error_page(Some(&p), e),
    }
}

/// `POST /jobs/{id}/retry`, then to the new job's page.
pub async fn retry(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<IdPath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if !csrf_ok(&state, &p, form) {
        return forged(&p);
    }
    let result = async {
        let IdPath(id) = id?;
        api::retry(&state, &p, id).await
    }
    .await;
    match result {
        Ok(job) => Redirect::to(&format!("/jobs/{}", job.id)).into_response(),
        Err(e) => error_page(Some(&p), e),
    }
}

/// The fields of the bulk form: `csrf`, `action`, `id` (repeated), and
/// `expected` once confirmed.
struct BulkForm {
    action: BulkAction,
    ids: Vec<i64>,
    expected: Option<i64>,
}

impl BulkForm {
    /// Read the fields (the CSRF token was checked by the caller).
    fn read(fields: &[(String, String)]) -> Result<BulkForm, ApiError> {
        let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let action = match field("action") {
            Some("cancel") => BulkAction::Cancel,
            Some("retry") => BulkAction::Retry,
            _ => return Err(ApiError::bad_request("say what to do: cancel or retry")),
        };
        let mut ids = Vec::new();
        for (_, v) in fields.iter().filter(|(n, _)| n == "id") {
            let id = v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "'{}' is not a job id",
                    v.chars().take(32).collect::<String>()
                ))
            })?;
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(ApiError::bad_request(
                "no jobs selected: tick the jobs to act on",
            ));
        }
        let expected = match field("expected") {
            None => None,
            Some(e) => Some(
                e.parse::<i64>()
                    .map_err(|_| ApiError::bad_request("expected is not a count"))?,
            ),
        };
        Ok(BulkForm {
            action,
            ids,
            expected,
        })
    }
}

/// `POST /jobs/bulk`: the jobs ticked in the table and an action. Without
/// `expected`, a page saying how many of them the action applies to now,
/// with a button to confirm that count; with it, the action (refused if
/// the count changed meanwhile), then a page of what became of each job.
pub async fn bulk(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match form {
        Ok(Form(f)) => f,
        Err(_) => Vec::new(),
    };
    let csrf = fields
        .iter()
        .find(|(n, _)| n == "csrf")
        .map(|(_, v)| v.as_str());
    if !csrf.is_some_and(|c| p.csrf_ok(&state.secret, c)) {
        return forged(&p);
    }
    let result = async {
        p.require(Role::Operator)?;
        let f = BulkForm::read(&fields)?;
        match f.expected {
            None => {
                let jobs =
                    bulk::matching(&state, &p, f.action, None, Some(f.ids.as_slice())).await?;
                Ok(bulk_confirm(&state, &p, f.action, &jobs))
            }
            Some(expected) => {
                let req = bulk::BulkRequest {
                    filter: None,
                    ids: Some(f.ids),
                    expected,
                };
                let done = bulk::run(&state, &p, f.action, &req).await?;
                Ok(bulk_done(&done))
            }
        }
    }
    .await;
    match result {
        Ok(body) => Html(layout("bulk", Some(&p), None, body).into_string()).into_response(),
        Err(e) => error_page(Some(&p), e),
    }
}

/// The confirmation of a bulk action: the jobs it applies to now.
fn bulk_confirm(state: &AppState, p: &Principal, action: BulkAction, jobs: &[Job]) -> Markup {
    let verb = action.verb();
    html! {
        h1 { "Confirm: " (verb) " " (jobs.len()) " job(s)" }
        @if jobs.is_empty() {
            p { "None of the selected jobs can be " (if action == BulkAction::Cancel { "canceled" } else { "retried" }) " now." }
        } @else {
            p { "Of the jobs selected, these " (jobs.len()) " can be " (if action == BulkAction::Cancel { "canceled" } else { "retried" }) " now:" }
            ul.bulk-jobs { @for j in jobs { li { a href={"/jobs/" (j.id)} { (j.id) } " " (j.job_type) " " (j.status.code()) } } }
            form method="post" action="/jobs/bulk" {
                input type="hidden" name="csrf" value=(p.csrf(&state.secret));
                input type="hidden" name="action" value=(verb);
                input type="hidden" name="expected" value=(jobs.len());
                @for j in jobs { input type="hidden" name="id" value=(j.id); }
                button id="confirm" type="submit" { (if action == BulkAction::Cancel { "Cancel " } else { "Retry " }) (jobs.len()) " job(s)" }
            }
        }
        p { a href="/" { "Back to the jobs" } }
    }
}

/// What a bulk action did to each job.
fn bulk_done(done: &bulk::BulkResult) -> Markup {
    html! {
        h1 { "Done: " (done.action.verb()) " " (done.matched) " job(s)" }
        table.bulk-results {
            thead { tr { th { "job" } th { "result" } th { "new job" } th { "detail" } } }
            tbody {
                @for i in &done.results {
                    tr {
                        td { a href={"/jobs/" (i.id)} { (i.id) } }
                        td.result { (i.result) }
                        td { @if let Some(n) = i.new_id { a href={"/jobs/" (n)} { (n) } } }
                        td { (cell(i.detail.as_deref())) }
                    }
                }
            }
        }
        p { a id="back" href="/" { "Back to the jobs" } }
    }
}

/// A number of seconds for a person, `–` when there is none.
fn seconds(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.1} s"),
    }
}

/// The job types with the most failed (`X`) rows, at most five.
fn failing_most(stats: &api::Stats) -> Markup {
    let mut failing: Vec<(&String, i64)> = stats
        .by_type
        .iter()
        .map(|(t, by)| (t, by.get("X").copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    failing.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    html! {
        @if failing.is_empty() { p { "No failed jobs." } }
        @else {
            ol.failing {
                @for (t, n) in failing.iter().take(5) {
                    li { a href={"/?" (query_string(&[("status", "X".to_string()), ("type", (*t).clone())]))} { (t) } " " (n) }
                }
            }
        }
    }
}

fn login_markup(message: Option<&str>) -> Markup {
    html! {
        h1 { "Log in" }
        @if let Some(m) = message { p.error { (m) } }
        form.login method="post" action="/login" {
            label { "Token " input id="token" type="password" name="token" autocomplete="off"; }
            button id="login" type="submit" { "Log in" }
        }
        p.hint { "A token comes from " code { "cojobs token add NAME --role viewer" } "." }
    }
}

/// `GET /login`.
pub async fn login_form(State(state): State<AppState>) -> Response {
    if state.open {
        return Redirect::to("/").into_response();
    }
    Html(layout("log in", None, None, login_markup(None)).into_string()).into_response()
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub token: String,
}

/// `POST /login`: a live token sets the session cookie.
pub async fn login(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let secret = match form {
        Ok(Form(f)) => f.token.trim().to_string(),
        Err(_) => String::new(),
    };
    match auth::principal_for(&state, &secret).await {
        Ok(Some(_)) => {
            let mut r = Redirect::to("/").into_response();
            // The token is `cjt_` and hex: nothing to escape in a cookie.
            let cookie = format!("{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            Html(
                layout(
                    "log in",
                    None,
                    None,
                    login_markup(Some("That token is not a live token.")),
                )
                .into_string(),
            ),
        )
            .into_response(),
        Err(e) => error_page(None, e),
    }
}

/// `POST /logout`: the cookie is cleared.
pub async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cojobs_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

/// `GET /events`'s query: the job page names its job.
#[derive(Debug, Deserialize)]
pub struct EventParams {
    pub job: Option<i64>,
}

/// What an `update` event carries.
#[derive(Debug, Serialize, PartialEq)]
struct Update {
    counts: std::collections::BTreeMap<String, i64>,
    job: Option<JobLive>,
}

/// The live part of a job.
#[derive(Debug, Serialize, PartialEq)]
struct JobLive {
    id: JobId,
    status: &'static str,
    percent: Option<i64>,
    status_line: Option<String>,
}

/// `GET /events`: one stream per open page; an `update` event (counts by
/// status, and the page's job) whenever they change, looked at every
/// second; it ends when the server stops.
pub async fn events(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let job = params.job.filter(|id| *id > 0).map(JobId);
    let stream = futures_util::stream::unfold(
        (state, p, job, String::new(), true),
        |(state, p, job, last, first)| async move {
            let mut shutdown = state.shutdown.clone();
            let mut last = last;
            let mut first = first;
            loop {
                if !first {
                    tokio::select! {
                        () = tokio::time::sleep(EVENT_TICK) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
                first = false;
                if *shutdown.borrow() {
                    return None;
                }
                let Ok(update) = snapshot(&state, &p, job).await else {
                    continue;
                };
                let Ok(text) = serde_json::to_string(&update) else {
                    continue;
                };
                if text != last {
                    let event = Event::default().event("update").data(text.clone());
                    return Some((Ok(event), (state, p, job, text, false)));
                }
                last = text;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The counts and the job as `p` sees them now.
async fn snapshot(state: &AppState, p: &Principal, job: Option<JobId>) -> Result<Update, ApiError> {
    let counts = api::stats_for(state, p).await?.by_status;
    let job = match job {
        Some(id) => api::visible_job(state, p, id).await.ok().map(|j| JobLive {
            id: j.id,
            status: j.status.code(),
            percent: j.percent_complete,
            status_line: j.status_line,
        }),
        None => None,
    };
    Ok(Update { counts, job })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_encoded() {
        assert_eq!(
            query_string(&[
                ("q", "a b&c<".into()),
                ("co", String::new()),
                ("before", "5".into())
            ]),
            "q=a%20b%26c%3C&before=5"
        );
    }

    #[test]
    fn plugin_text_is_escaped() {
        let job = Job {
            id: JobId(1),
            co_id: 1,
            job_type: "x".into(),
            job_type_fk: None,
            job_mode: None,
            job_params: None,
            requeue_interval: None,
            retry_interval: None,
            max_retry: None,
            max_retry_count: None,
            requeued_from_co_job_id: None,
            status: JobStatus::Complete,
            register_summary: None,
            start_summary: None,
            finish_summary: Some("<script>alert(1)</script>".into()),
            queue_time: None,
            start_after_time: None,
            start_time: None,
            complete_time: None,
            percent_complete: None,
            runner_id: None,
            lease_expires_at: None,
            fuel_limit: None,
            memory_limit_mib: None,
            timeout_secs: None,
            fuel_used: None,
            job_log: None,
            cancel_requested_by: None,
            cancel_requested_at: None,
            queued_by: None,
            status_line: None,
            retried_by: None,
            schedule_name: None,
            schedule_tick: None,
            backoff: None,
            backoff_max: None,
            result: None,
            parent_co_job_id: None,
            plugin_sha256: None,
            plugin_contract: None,
            priority: 5,
        };
        let html = jobs_table(&[job], &Throttles::default(), Some("t")).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
