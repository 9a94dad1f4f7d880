//! The dashboard's pages about the fleet rather than one job: the runners
//! the store knows of, the installed plugins (their `describe`, limits,
//! grants and pause) and the COs (their limit and pause), with the forms
//! that pause and resume them. Rendered as the JSON API answers them, so
//! a page and the API never disagree; the forms act through the same
//! functions as the API ([`limits`]), with the session's CSRF token.

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::AppState;
use super::api::{self, PluginInfo};
use super::auth::Principal;
use super::dashboard::{ActionForm, cell, csrf_ok, error_page, forged, layout};
use super::error::ApiError;
use super::limits::{self, CoPath, TypePath, TypeState};
use crate::store::{Role, RunnerRow};
use crate::throttle::PauseTarget;

/// A page of `title` whose body is `body`, or the error page.
fn page(p: &Principal, title: &str, body: Result<Markup, ApiError>) -> Response {
    match body {
        Ok(body) => Html(layout(title, Some(p), None, body).into_string()).into_response(),
        Err(e) => error_page(Some(p), e),
    }
}

/// `GET /runners`.
pub async fn runners_page(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    let body = state
        .store
        .list_runners()
        .await
        .map(|r| runners(&r))
        .map_err(Into::into);
    page(&p, "runners", body)
}

fn runners(runners: &[RunnerRow]) -> Markup {
    html! {
        h1 { "Runners" }
        p.hint { "A runner records itself when it starts and at every heartbeat, and removes its row when it exits; one whose heartbeat is older than its lease is shown as not answering (it is forgotten after an hour)." }
        table.runners {
            thead { tr { th { "id" } th { "host" } th { "pid" } th { "started" } th { "workers" } th { "running" } th { "last heartbeat" } th { "state" } } }
            tbody {
                @for r in runners {
                    tr data-runner=(r.id) {
                        td { (r.id) }
                        td { (r.host) }
                        td { (r.pid) }
                        td { (r.started) }
                        td { (r.workers) }
                        td.running { (r.running) }
                        td { (r.heartbeat) " (" (r.heartbeat_age_secs) " s ago)" }
                        td.state { @if r.alive { "alive" } @else { "not answering" } }
                    }
                }
                @if runners.is_empty() { tr { td colspan="8" { "No runner is recorded." } } }
            }
        }
    }
}

/// `GET /plugins`.
pub async fn plugins_page(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    // Pausing a type holds back every CO's jobs: an operator without a CO.
    let csrf = (p.role >= Role::Operator && p.co.is_none()).then(|| p.csrf(&state.secret));
    let body = api::plugin_infos(&state)
        .await
        .map(|infos| plugins(&infos, csrf.as_deref()));
    page(&p, "plugins", body)
}

/// A pause or resume button posting to `action` (`…/pause` or `…/resume`).
fn pause_button(action: &str, paused: bool, csrf: &str, id: &str) -> Markup {
    html! {
        form.pause method="post" action={(action) "/" (if paused { "resume" } else { "pause" })} {
            input type="hidden" name="csrf" value=(csrf);
            button id=(id) type="submit" { (if paused { "Resume" } else { "Pause" }) }
        }
    }
}

/// A type's limits in force, pause and running jobs.
fn type_state(t: &TypeState) -> Markup {
    html! {
        p.throttle {
            @if t.paused {
                span.paused { "paused" }
                " by " (cell(t.paused_by.as_deref())) " at " (cell(t.paused_at.as_deref())) " · "
            }
            "running now " span.running { (t.running) }
            " · concurrency " (t.concurrency.map(|n| n.to_string()).unwrap_or_else(|| "none".into()))
            " · rate " (cell(t.rate.as_deref()))
        }
    }
}

fn plugins(infos: &[PluginInfo], csrf: Option<&str>) -> Markup {
    html! {
        h1 { "Plugins" }
        @if infos.is_empty() { p { "No plugin is installed." } }
        @for info in infos {
            section.plugin data-plugin=(info.plugin) {
                h2 { (info.plugin) }
                (type_state(&info.throttle))
                @if let Some(csrf) = csrf {
                    (pause_button(&format!("/plugins/{}", info.plugin), info.throttle.paused, csrf, &format!("pause-{}", info.plugin)))
                }
                @if let Some(e) = &info.error { p.error { (e) } }
                @if let Some(d) = &info.description {
                    p { (d.description) }
                    p { "version " (d.version) " · contract cojobs:plugin@" (d.contract) }
                    p { "modes: " @if d.modes.is_empty() { "(none)" } @else { (d.modes.join(", ")) } }
                    @if !d.params.is_empty() {
                        table.params {
                            thead { tr { th { "parameter" } th { "type" } th { "required" } th { "choices" } th { "default" } th { "help" } } }
                            tbody {
                                @for prm in &d.params {
                                    tr {
                                        td { (prm.name) }
                                        td { (prm.kind.name()) }
                                        td { @if prm.required { "yes" } @else { "no" } }
                                        td { (prm.choices.join(", ")) }
                                        td { (cell(prm.default.as_deref())) }
                                        td { (prm.help) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(l) = &info.limits {
                    p.limits { "limits: fuel " (l.fuel) ", memory " (l.memory_mib) " MiB, timeout " (l.timeout_secs) " s" }
                }
                @if let Some(g) = &info.grants {
                    ul.grants {
                        li { "http: " @if g.http_hosts.is_empty() { "none" } @else { (g.http_hosts.join(", ")) " (at most " (g.max_http_requests) " requests, " (g.max_response_bytes) " response bytes per job)" } }
                        li { "directories: " @if g.dirs.is_empty() && !g.scratch { "none" } @else {
                            @for d in &g.dirs { (d.guest) @if d.writable { " (writable)" } " " }
                            @if g.scratch { "/scratch (per job)" }
                        } }
                        li { "config: " @if g.config.is_empty() { "none" } @else { (g.config.join(", ")) } }
                        li { "secrets: " @if g.secrets.is_empty() { "none" } @else { (g.secrets.join(", ")) " (values hidden)" } }
                    }
                }
            }
        }
    }
}

/// `GET /cos`: the COs the principal may see, with their jobs by status,
/// limit, pause and running jobs; pause and resume for an operator, the
/// limit's form for an admin without a CO.
pub async fn cos_page(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    let csrf = p.csrf(&state.secret);
    let operator = p.role >= Role::Operator;
    let admin = p.role >= Role::Admin && p.co.is_none();
    let body = async {
        let cos = limits::cos_for(&state, &p).await?;
        let stats = api::stats_for(&state, &p).await?;
        Ok::<_, ApiError>(html! {
            h1 { "COs" }
            table.cos {
                thead { tr { th { "id" } th { "name" } th { "description" } th { "status" } th { "created" } th { "jobs by status" } th { "running" } th { "max running" } th { "paused" } } }
                tbody {
                    @for c in &cos {
                        @let co = &c.co;
                        tr data-co=(co.id) {
                            td { a href={"/?co=" (co.id)} { (co.id) } }
                            td { (co.name) }
                            td { (cell(co.description.as_deref())) }
                            td { (co.status) }
                            td { (cell(co.created.as_deref())) }
                            td {
                                @if let Some(by) = stats.by_co.get(&co.id.to_string()) {
                                    @for (st, n) in by { (st) " " (n) " " }
                                } @else { "none" }
                            }
                            td.running { (c.running) }
                            td.max-running {
                                (c.max_running.map(|n| n.to_string()).unwrap_or_else(|| "none".into()))
                                @if admin {
                                    form.max-running method="post" action={"/cos/" (co.id) "/max-running"} {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="text" name="max_running" size="6" placeholder="N or none" aria-label={"most running jobs of CO " (co.id)};
                                        button id={"max-running-" (co.id)} type="submit" { "Set" }
                                    }
                                }
                            }
                            td.paused {
                                @if c.paused {
                                    span.paused { "paused" } " by " (cell(c.paused_by.as_deref())) " at " (cell(c.paused_at.as_deref()))
                                } @else { "no" }
                                @if operator {
                                    (pause_button(&format!("/cos/{}", co.id), c.paused, &csrf, &format!("pause-co-{}", co.id)))
                                }
                            }
                        }
                    }
                }
            }
        })
    }
    .await;
    page(&p, "COs", body)
}

/// After a dashboard form changed something: back to `to`, or the error.
fn done(p: &Principal, result: Result<(), ApiError>, to: &str) -> Response {
    match result {
        Ok(()) => Redirect::to(to).into_response(),
        Err(e) => error_page(Some(p), e),
    }
}

/// `POST /plugins/{type}/pause` and `…/resume` (`pause` false).
async fn type_form(
    state: AppState,
    p: Principal,
    t: Result<TypePath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
    pause: bool,
) -> Response {
    if !csrf_ok(&state, &p, form) {
        return forged(&p);
    }
    let result = async {
        let TypePath(t) = t?;
        limits::set_paused(&state, &p, PauseTarget::Type(t), pause).await
    }
    .await;
    done(&p, result.map(drop), "/plugins")
}

/// `POST /plugins/{type}/pause`.
pub async fn pause_type(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    t: Result<TypePath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    type_form(state, p, t, form, true).await
}

/// `POST /plugins/{type}/resume`.
pub async fn resume_type(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    t: Result<TypePath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    type_form(state, p, t, form, false).await
}

/// `POST /cos/{id}/pause` and `…/resume` (`pause` false).
async fn co_form(
    state: AppState,
    p: Principal,
    id: Result<CoPath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
    pause: bool,
) -> Response {
    if !csrf_ok(&state, &p, form) {
        return forged(&p);
    }
    let result = async {
        let CoPath(id) = id?;
        limits::set_paused(&state, &p, PauseTarget::Co(id), pause).await
    }
    .await;
    done(&p, result.map(drop), "/cos")
}

/// `POST /cos/{id}/pause`.
pub async fn pause_co(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<CoPath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    co_form(state, p, id, form, true).await
}

/// `POST /cos/{id}/resume`.
pub async fn resume_co(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<CoPath, ApiError>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    co_form(state, p, id, form, false).await
}

/// The max-running form: `N`, or `none` (or nothing) for no limit.
#[derive(Debug, Deserialize)]
pub struct MaxRunningForm {
    pub csrf: String,
    pub max_running: String,
}

/// `POST /cos/{id}/max-running`.
pub async fn max_running(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: Result<CoPath, ApiError>,
    form: Result<Form<MaxRunningForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) if p.csrf_ok(&state.secret, &f.csrf) => f,
        _ => return forged(&p),
    };
    let result = async {
        let CoPath(id) = id?;
        let text = f.max_running.trim();
        let max = match text {
            "" | "none" => None,
            n => Some(n.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "max running '{}' is not a number or 'none'",
                    n.chars().take(32).collect::<String>()
                ))
            })?),
        };
        limits::set_max_running(&state, &p, id, max).await
    }
    .await;
    done(&p, result.map(drop), "/cos")
}
