//! `GET /metrics`: the Prometheus text format (version 0.0.4), derived
//! from the store at each scrape: jobs by CO, type and status (a gauge),
//! and their sum by status. A CO-scoped token sees its CO's only.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use crate::job::JobStatus;
use crate::store::GroupCount;

/// A label value as the text format wants it: `\`, `"` and newlines
/// escaped (a job type written by plain SQL may hold anything).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The metrics text of `groups`.
pub fn render(groups: &[GroupCount]) -> String {
    let mut out = String::new();
    let mut by_status: BTreeMap<&str, i64> = JobStatus::ALL.iter().map(|s| (s.code(), 0)).collect();
    out.push_str("# HELP cojobs_jobs Jobs in the store, by CO, job type and status.\n");
    out.push_str("# TYPE cojobs_jobs gauge\n");
    for g in groups {
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
    out.push_str("# HELP cojobs_jobs_by_status Jobs in the store, by status.\n");
    out.push_str("# TYPE cojobs_jobs_by_status gauge\n");
    for (status, n) in by_status {
        let _ = writeln!(out, "cojobs_jobs_by_status{{status=\"{status}\"}} {n}");
    }
    out
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let groups = state.store.count_groups(p.co).await?;
    let mut r = render(&groups).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
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
        let text = render(&groups);
        assert!(text.contains(r#"cojobs_jobs{co="1",type="a\"b\\\n",status="Q"} 2"#));
        assert!(text.contains("cojobs_jobs_by_status{status=\"Q\"} 5"));
        assert!(text.contains("cojobs_jobs_by_status{status=\"OK\"} 0"));
    }
}
