//! The dashboard's pages about the fleet rather than one job: the runners
//! the store knows of, the installed plugins (their `describe`, limits and
//! grants) and the COs. Rendered as the JSON API answers them, so a page
//! and the API never disagree.

use axum::Extension;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::AppState;
use super::api::{self, PluginInfo};
use super::auth::Principal;
use super::dashboard::{cell, error_page, layout};
use super::error::ApiError;
use crate::store::RunnerRow;

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
    let body = api::plugin_infos(&state).await.map(|infos| plugins(&infos));
    page(&p, "plugins", body)
}

fn plugins(infos: &[PluginInfo]) -> Markup {
    html! {
        h1 { "Plugins" }
        @if infos.is_empty() { p { "No plugin is installed." } }
        @for info in infos {
            section.plugin data-plugin=(info.plugin) {
                h2 { (info.plugin) }
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

/// `GET /cos`: the COs the principal may see, with their jobs by status.
pub async fn cos_page(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    let body = async {
        let cos = api::cos_for(&state, &p).await?;
        let stats = api::stats_for(&state, &p).await?;
        Ok::<_, ApiError>(html! {
            h1 { "COs" }
            table.cos {
                thead { tr { th { "id" } th { "name" } th { "description" } th { "status" } th { "created" } th { "jobs by status" } } }
                tbody {
                    @for co in &cos {
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
                        }
                    }
                }
            }
        })
    }
    .await;
    page(&p, "COs", body)
}
