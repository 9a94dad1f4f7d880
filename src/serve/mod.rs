//! `cojobs serve`: the JSON API (`/api/v1`), the web dashboard (`/`),
//! Prometheus metrics (`/metrics`) and their access control, in one axum
//! server on the store interface (`Arc<dyn JobStore>`: SQLite or
//! PostgreSQL alike) and the sandbox (to check a queued job against its
//! plugin, and to list plugins). It never runs jobs: that is the runner's.
//!
//! - [`auth`]: tokens (the secret, its hash), who a request is
//!   ([`auth::Principal`]), the CSRF token of the dashboard's forms, the
//!   loopback rule of the open mode.
//! - [`api`]: the JSON handlers; [`bulk`]: cancel or retry the jobs of a
//!   filter, with a count confirmation; [`limits`]: pause and limits of
//!   job types and COs; [`error`]: `{error, detail}` answers; [`cache`]:
//!   the counts every request shares for a moment.
//! - [`dashboard`]: server-rendered pages (maud) and the event stream;
//!   [`pages`]: the runners, plugins and COs pages; [`chart`]: the
//!   overview's SVG chart.
//! - [`metrics`]: the Prometheus text.
//!
//! The design (modes, roles, CO scope, CSRF, CSP) is in
//! docs/design.md#cojobs-serve.

pub mod api;
pub mod auth;
pub mod bulk;
pub mod cache;
pub mod chart;
pub mod dashboard;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};

use crate::sandbox::Sandbox;
use crate::store::GroupCount;
use crate::store::driver::JobStore;

/// The largest request body accepted (a job to queue is well under it).
pub const MAX_BODY: usize = 64 * 1024;

/// The API's OpenAPI document, kept by hand beside the router; a test
/// checks that every route of [`router`] is in it and nothing else
/// (docs/design.md#cojobs-serve says why it is not generated).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The Content-Security-Policy of every response: scripts, styles and
/// connections from this server only, nothing inline, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn JobStore>,
    pub sandbox: Arc<Sandbox>,
    /// No tokens existed when the server started: it listens on loopback
    /// only and every request acts as [`Inner::local_user`], an admin.
    pub open: bool,
    /// Who acts in the open mode (the user who started the server).
    pub local_user: String,
    /// A random secret of this process: the key of the CSRF tokens.
    pub secret: [u8; 32],
    /// Ends the event streams when the server stops.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The job counts by CO, type and status, per CO scope, shared by
    /// every request for up to [`cache::MAX_AGE`] ([`cache`] says why).
    pub counts: cache::ScopeCache<Vec<GroupCount>>,
    /// The last hour's activity, per CO scope, shared the same way.
    pub activity: cache::ScopeCache<api::RecentActivity>,
}

impl Inner {
    /// What every `Inner` starts with but the store, sandbox and mode.
    pub fn new(
        store: Arc<dyn JobStore>,
        sandbox: Arc<Sandbox>,
        open: bool,
        local_user: String,
        secret: [u8; 32],
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Inner {
        Inner {
            store,
            sandbox,
            open,
            local_user,
            secret,
            shutdown,
            counts: cache::ScopeCache::new(cache::MAX_AGE),
            activity: cache::ScopeCache::new(cache::MAX_AGE),
        }
    }

    /// After a change this server made: the next reads of the counts and
    /// the activity see it.
    pub async fn forget_counts(&self) {
        self.counts.forget().await;
        self.activity.forget().await;
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

/// The API's routes as (path, method, handler): the router is built from
/// this list, and a test checks it against the OpenAPI document both ways.
/// The last one, the document itself, needs no token.
pub fn api_routes() -> Vec<(&'static str, Method, MethodRouter<AppState>)> {
    vec![
        ("/api/v1/jobs", Method::GET, get(api::list_jobs)),
        ("/api/v1/jobs", Method::POST, post(api::queue_job)),
        ("/api/v1/jobs/cancel", Method::POST, post(bulk::cancel_jobs)),
        ("/api/v1/jobs/retry", Method::POST, post(bulk::retry_jobs)),
        ("/api/v1/jobs/{id}", Method::GET, get(api::get_job)),
        ("/api/v1/jobs/{id}/chain", Method::GET, get(api::job_chain)),
        (
            "/api/v1/jobs/{id}/children",
            Method::GET,
            get(api::job_children),
        ),
        (
            "/api/v1/jobs/{id}/cancel",
            Method::POST,
            post(api::cancel_job),
        ),
        (
            "/api/v1/jobs/{id}/retry",
            Method::POST,
            post(api::retry_job),
        ),
        ("/api/v1/plugins", Method::GET, get(api::plugins)),
        (
            "/api/v1/plugins/{type}/pause",
            Method::POST,
            post(limits::pause_type),
        ),
        (
            "/api/v1/plugins/{type}/resume",
            Method::POST,
            post(limits::resume_type),
        ),
        ("/api/v1/cos", Method::GET, get(api::cos)),
        (
            "/api/v1/cos/{id}/pause",
            Method::POST,
            post(limits::pause_co),
        ),
        (
            "/api/v1/cos/{id}/resume",
            Method::POST,
            post(limits::resume_co),
        ),
        (
            "/api/v1/cos/{id}/max-running",
            Method::POST,
            post(limits::max_running),
        ),
        ("/api/v1/runners", Method::GET, get(api::runners)),
        ("/api/v1/stats", Method::GET, get(api::stats)),
        (OPENAPI_PATH, Method::GET, get(openapi)),
    ]
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Every route, with its access rules and limits: the API, the dashboard,
/// metrics, then what needs no token (login, assets, the OpenAPI document).
pub fn router(state: AppState) -> Router {
    let mut guarded = Router::new();
    let mut public = Router::new();
    for (path, _, handler) in api_routes() {
        if path == OPENAPI_PATH {
            public = public.route(path, handler);
        } else {
            guarded = guarded.route(path, handler);
        }
    }
    let guarded = guarded
        .route("/metrics", get(metrics::metrics))
        .route("/", get(dashboard::overview))
        .route("/jobs/{id}", get(dashboard::job_page))
        .route("/jobs/{id}/cancel", post(dashboard::cancel))
        .route("/jobs/{id}/retry", post(dashboard::retry))
        .route("/jobs/bulk", post(dashboard::bulk))
        .route("/runners", get(pages::runners_page))
        .route("/plugins", get(pages::plugins_page))
        .route("/plugins/{type}/pause", post(pages::pause_type))
        .route("/plugins/{type}/resume", post(pages::resume_type))
        .route("/cos", get(pages::cos_page))
        .route("/cos/{id}/pause", post(pages::pause_co))
        .route("/cos/{id}/resume", post(pages::resume_co))
        .route("/cos/{id}/max-running", post(pages::max_running))
        .route("/events", get(dashboard::events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    public
        .merge(guarded)
        .route("/login", get(dashboard::login_form).post(dashboard::login))
        .route("/logout", post(dashboard::logout))
        .route("/assets/app.js", get(dashboard::script))
        .route("/assets/app.css", get(dashboard::stylesheet))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::loopback_host,
        ))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// `GET /api/v1/openapi.json`.
async fn openapi() -> Response {
    let mut r = Response::new(OPENAPI.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The headers every answer carries: the CSP, no sniffing, no framing, no
/// referrer, no caching of pages that show jobs.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// Serve `state` on `listen` until SIGINT or SIGTERM; `ready` is told the
/// address bound (port 0 picks a free one) before the first request.
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    stop: tokio::sync::watch::Sender<bool>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr()?;
    ready(bound);
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            // Event streams end, so the graceful shutdown does not wait
            // for pages left open.
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The OpenAPI document names every API route of the router, and
    /// nothing else.
    #[test]
    fn openapi_document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.insert((path.clone(), method.to_uppercase()));
            }
        }
        let routed: BTreeSet<(String, String)> = api_routes()
            .into_iter()
            .map(|(p, m, _)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(documented, routed);
    }
}
