//! `GET /metrics`: the Prometheus text format (version 0.0.4), derived
//! from the store at each scrape: jobs by CO, type and status (a gauge),
//! their sum by status, the jobs ended in the last hour by outcome, the
//! queue latency of those jobs (p50, p99), and the live runners. A
//! CO-scoped token sees its CO's jobs only. (The runner's own counters are
//! `cojobs run --metrics`: `crate::runner::metrics`.)

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::{self, Latency};
use super::auth::Principal;
use super::error::ApiError;
use crate::job::JobStatus;
use crate::prom::{self, label};
use crate::store::{GroupCount, MinuteCount, RunnerRow};

/// What a scrape shows.
pub struct Scrape<'a> {
    pub groups: &'a [GroupCount],
    pub per_minute: &'a [MinuteCount],
    pub latency: &'a Latency,
    pub runners: &'a [RunnerRow],
}

/// The metrics text of `s`.
pub fn render(s: &Scrape<'_>) -> String {
    let mut out = String::new();
    let mut by_status: BTreeMap<&str, i64> = JobStatus::ALL.iter().map(|s| (s.code(), 0)).collect();
    prom::header(
        &mut out,
        "cojobs_jobs",
        "gauge",
        "Jobs in the store, by CO, job type and status.",
    );
    for g in s.groups {
        let _ = writeln!(
            out,
            "cojobs_jobs{{co=\"{}\",type=\"{}\",status=\"{}\"}} {}",
            g.co_id,
            label(&g.job_type),
            g.status.code(),
            g.count
        );
        if let Some(n) = by_status.get_mut(g.status.code()) {
            *n = n.saturating_add(g.count);
        }
    }
    prom::header(
        &mut out,
        "cojobs_jobs_by_status",
        "gauge",
        "Jobs in the store, by status.",
    );
    for (status, n) in by_status {
        let _ = writeln!(out, "cojobs_jobs_by_status{{status=\"{status}\"}} {n}");
    }
    render_activity(&mut out, s);
    out
}

/// The last hour's ends, queue latency and runners.
fn render_activity(out: &mut String, s: &Scrape<'_>) {
    let sum =
        |f: fn(&MinuteCount) -> i64| s.per_minute.iter().map(f).fold(0i64, i64::saturating_add);
    prom::header(
        out,
        "cojobs_jobs_finished_last_hour",
        "gauge",
        "Jobs that ended in the last 60 minutes, by outcome.",
    );
    for (outcome, n) in [
        ("ok", sum(|m| m.ok)),
        ("failed", sum(|m| m.failed)),
        ("canceled", sum(|m| m.canceled)),
    ] {
        let _ = writeln!(
            out,
            "cojobs_jobs_finished_last_hour{{outcome=\"{outcome}\"}} {n}"
        );
    }
    prom::header(
        out,
        "cojobs_queue_latency_last_hour_seconds",
        "gauge",
        "From due to start, of the jobs that ended in the last 60 minutes (at most the 10000 newest), by quantile.",
    );
    for (q, v) in [("0.5", s.latency.p50), ("0.99", s.latency.p99)] {
        if let Some(v) = v {
            let _ = writeln!(
                out,
                "cojobs_queue_latency_last_hour_seconds{{quantile=\"{q}\"}} {v}"
            );
        }
    }
    prom::header(
        out,
        "cojobs_runners_alive",
        "gauge",
        "Runners whose heartbeat is within their lease.",
    );
    let alive = s.runners.iter().filter(|r| r.alive).count();
    let _ = writeln!(out, "cojobs_runners_alive {alive}");
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let groups = api::group_counts(&state, p.co).await?;
    let (per_minute, latency) = api::activity_for(&state, &p).await?;
    let runners = state.store.list_runners().await?;
    let text = render(&Scrape {
        groups: &groups,
        per_minute: &per_minute,
        latency: &latency,
        runners: &runners,
    });
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prom::CONTENT_TYPE),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_statuses_summed() {
        let groups = vec![
            GroupCount {
                co_id: 1,
                job_type: "a\"b\\\n".into(),
                status: JobStatus::Queued,
                count: 2,
            },
            GroupCount {
                co_id: 2,
                job_type: "hello".into(),
                status: JobStatus::Queued,
                count: 3,
            },
        ];
        let per_minute = vec![
            MinuteCount {
                minute: "2026-11-29 17:00".into(),
                ok: 2,
                failed: 1,
                canceled: 0,
            },
            MinuteCount {
                minute: "2026-11-29 17:01".into(),
                ok: 3,
                failed: 0,
                canceled: 0,
            },
        ];
        let latency = Latency {
            p50: Some(0.25),
            p99: None,
            jobs: 6,
        };
        let text = render(&Scrape {
            groups: &groups,
            per_minute: &per_minute,
            latency: &latency,
            runners: &[],
        });
        assert!(text.contains(r#"cojobs_jobs{co="1",type="a\"b\\\n",status="Q"} 2"#));
        assert!(text.contains("cojobs_jobs_by_status{status=\"Q\"} 5"));
        assert!(text.contains("cojobs_jobs_by_status{status=\"OK\"} 0"));
        assert!(
            text.contains("cojobs_jobs_finished_last_hour{outcome=\"ok\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("cojobs_queue_latency_last_hour_seconds{quantile=\"0.5\"} 0.25\n"),
            "{text}"
        );
        assert!(!text.contains("quantile=\"0.99\""), "{text}");
        assert!(text.contains("cojobs_runners_alive 0\n"), "{text}");
    }
}
