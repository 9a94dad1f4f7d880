//! `cojobs test CASES.toml`: component tests for plugin authors.
//!
//! Each case ([`cases`], which documents the file) runs one job of an
//! installed plugin, as `cojobs exec` would, with no database and no
//! network: the sandbox is built with [`HttpSender::Fixtures`], so a
//! request the plugin is granted is answered from the case's fixtures, and
//! one no fixture answers fails the case. Then the run is held against
//! what the case expects: how it ended, the summary (a regex), a subset of
//! the result's JSON, the retry-after delay, the history records and the
//! child jobs.
//!
//! Prints a line per case (`ok   NAME`, or `FAIL NAME: why`, then the
//! end of the plugin's log) and `N passed, M failed`. Exit 0 when every
//! case passed, 1 when one failed, 2 when the file is malformed (nothing
//! run).

mod cases;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::{Error, Global, printable, runtime};
use crate::sandbox::{
    Fixtures, History, HostEvents, HttpSender, Interrupt, JobInput, LoadedPlugin, LogLevel,
    PluginConfig, RunEnd, RunReport, Sandbox, Secrets,
};
use cases::{Case, ChildExpected, Ending, HistoryExpected, Side};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cases: a TOML file of [[case]] tables (docs/plugins.md).
    #[arg(value_name = "CASES.toml")]
    cases: PathBuf,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    super::run::init_tracing("warn");
    let cases = cases::load(&args.cases)?;
    let rt = runtime()?;
    let mut failed = 0;
    for case in &cases {
        let problems = rt.block_on(run_case(g, case));
        if problems.is_empty() {
            writeln!(out, "ok   {}", printable(&case.name, false))?;
            continue;
        }
        failed += 1;
        let (problems, log) = problems.split();
        writeln!(
            out,
            "FAIL {}: {}",
            printable(&case.name, false),
            printable(&problems.join("; "), false)
        )?;
        for line in log_tail(&log) {
            writeln!(out, "     | {}", printable(line, false))?;
        }
    }
    writeln!(out, "{} passed, {failed} failed", cases.len() - failed)?;
    if failed > 0 {
        return Err(Error::CasesFailed(failed));
    }
    Ok(())
}

/// What was wrong with a case's run, and the run's log.
#[derive(Default)]
struct Problems {
    found: Vec<String>,
    log: String,
}

impl Problems {
    fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    fn split(self) -> (Vec<String>, String) {
        (self.found, self.log)
    }

    fn one(why: String) -> Problems {
        Problems {
            found: vec![why],
            log: String::new(),
        }
    }
}

/// The last lines of a failed case's log, shown under its FAIL line.
fn log_tail(log: &str) -> Vec<&str> {
    const LINES: usize = 20;
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].to_vec()
}

/// Run one case in a sandbox of its own (its fixtures are the sandbox's
/// HTTP sender) and say what did not go as expected.
async fn run_case(g: &Global, case: &Case) -> Problems {
    let fixtures = Arc::new(Fixtures::new(case.fixtures.clone()));
    let mut config = g.sandbox_config();
    config.http = HttpSender::Fixtures(Arc::clone(&fixtures));
    let sandbox = match Sandbox::new(config) {
        Ok(s) => Arc::new(s),
        Err(e) => return Problems::one(e.to_string()),
    };
    let installed = match sandbox.plugin_async(&case.plugin).await {
        Ok(p) => p,
        Err(e) => return Problems::one(format!("cannot load the plugin: {e}")),
    };
    let plugin = with_side(&installed, &case.side);
    let params = match sandbox.describe(&plugin).await {
        Ok(d) => match d.check(case.mode.as_deref(), &case.params) {
            Ok(p) => p,
            Err(e) => return Problems::one(format!("mode or params refused: {e}")),
        },
        Err(e) => return Problems::one(e.to_string()),
    };
    let job = JobInput {
        id: 0,
        co_id: 1,
        job_type: case.plugin.clone(),
        mode: case.mode.clone(),
        params: Value::Object(params).to_string(),
        retry_count: 0,
        requeued_from: None,
    };
    let limits = sandbox.limits_for(&plugin, &case.limits);
    let history = HistoryLog::default();
    let report = sandbox
        .run(
            &plugin,
            &job,
            limits,
            Box::new(history.clone()),
            &Interrupt::new(),
        )
        .await;
    let mut found = check(case, &report, &history.take());
    // The URL keeps its query here: a secret the plugin put in it is
    // redacted like everything else the run wrote.
    let secrets = &plugin.config.secrets;
    found.extend(fixtures.unexpected().into_iter().map(|r| {
        format!(
            "unexpected request {} (no fixture answers it)",
            secrets.redact(&r)
        )
    }));
    Problems {
        found,
        log: report.log,
    }
}

/// The installed plugin with the case's settings over its side file's.
fn with_side(installed: &LoadedPlugin, side: &Side) -> LoadedPlugin {
    let mut config: PluginConfig = installed.config.clone();
    config.put_config(side.config.clone());
    if !side.secrets.is_empty() {
        let mut all: Vec<(String, String)> = config
            .secrets
            .names()
            .filter(|n| !side.secrets.contains_key(*n))
            .filter_map(|n| Some((n.to_string(), config.secrets.get(n)?.to_string())))
            .collect();
        all.extend(side.secrets.clone());
        config.secrets = Secrets::from_pairs(all);
    }
    let mut grant = (*config.http).clone();
    if let Some(hosts) = &side.allowed_hosts {
        grant.allowed = hosts.clone();
    }
    grant.max_requests = side.max_http_requests.unwrap_or(grant.max_requests);
    grant.max_response_bytes = side.max_response_bytes.unwrap_or(grant.max_response_bytes);
    config.http = Arc::new(grant);
    installed.with_config(config)
}

/// The history records a run made (the one host call `test` checks that
/// the report does not carry).
#[derive(Clone, Default)]
struct HistoryLog(Arc<Mutex<Vec<History>>>);

impl HistoryLog {
    fn take(&self) -> Vec<History> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl HostEvents for HistoryLog {
    fn progress(&mut self, _: u8, _: Option<String>) {}
    fn log(&mut self, _: LogLevel, _: String) {}
    fn cancel_requested(&mut self) -> bool {
        false
    }
    fn record_history(&mut self, record: History) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }
}

/// Most of a plugin's text quoted in a problem.
const QUOTED: usize = 200;

fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED) {
        Some((at, _)) => format!("'{}...'", &text[..at]),
        None => format!("'{text}'"),
    }
}

/// Everything in `report` (and the history) that the case did not expect.
fn check(case: &Case, report: &RunReport, history: &[History]) -> Vec<String> {
    let e = &case.expect;
    let (ending, text) = match &report.end {
        RunEnd::Ok(s) => (Ending::Ok, s.as_str()),
        RunEnd::Failed { kind, message } => (Ending::Failed(*kind), message.as_str()),
        RunEnd::Interrupted(why) => return vec![format!("interrupted: {why}")],
    };
    let mut found = Vec::new();
    if ending != e.ending {
        found.push(format!(
            "expected {}, got {}: {}",
            e.ending.name(),
            ending.name(),
            quote(text)
        ));
    }
    if let Some(re) = &e.summary
        && !re.is_match(text)
    {
        found.push(format!("summary {} does not match /{re}/", quote(text)));
    }
    if let Some(want) = &e.result {
        found.extend(check_result(want, report.result.as_deref()));
    }
    if e.retry_after.is_some() && e.retry_after != report.retry_after_secs {
        found.push(format!(
            "expected a retry after {} s, got {}",
            e.retry_after.unwrap_or(0),
            report
                .retry_after_secs
                .map_or_else(|| "none".to_string(), |s| format!("{s} s"))
        ));
    }
    if let Some(want) = &e.history {
        found.extend(check_history(want, history));
    }
    if let Some(want) = &e.children {
        found.extend(check_children(want, report));
    }
    found
}

fn check_result(want: &Value, got: Option<&str>) -> Option<String> {
    let Some(got) = got else {
        return Some("expected a result, the plugin set none".into());
    };
    let got: Value = match serde_json::from_str(got) {
        Ok(v) => v,
        Err(e) => return Some(format!("the result is not JSON: {e}")),
    };
    subset(want, &got, "result").map(|d| format!("{d} (result {})", quote(&got.to_string())))
}

/// Where `want` is not a subset of `got`: objects need each of `want`'s
/// keys (with a subset value), arrays the same length and each element a
/// subset, anything else equality.
fn subset(want: &Value, got: &Value, at: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, wv)| match g.get(k) {
            Some(gv) => subset(wv, gv, &format!("{at}.{k}")),
            None => Some(format!("{at}.{k} is missing")),
        }),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (wv, gv))| subset(wv, gv, &format!("{at}[{i}]"))),
        _ if want == got => None,
        _ => Some(format!("{at} is {got}, expected {want}")),
    }
}

fn check_history(want: &[HistoryExpected], got: &[History]) -> Vec<String> {
    if want.len() != got.len() {
        let seen: Vec<String> = got.iter().map(|h| quote(&h.comment)).collect();
        return vec![format!(
            "expected {} history records, got {}: [{}]",
            want.len(),
            got.len(),
            seen.join(", ")
        )];
    }
    let mut found = Vec::new();
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let mut differs = |field: &str, want: String, got: String| {
            if want != got {
                found.push(format!(
                    "history record {}: {field} is {got}, expected {want}",
                    i + 1
                ));
            }
        };
        if let Some(k) = &w.key {
            differs(
                "key",
                quote(k),
                g.key.as_deref().map_or("none".into(), quote),
            );
        }
        if let Some(c) = &w.comment {
            differs("comment", quote(c), quote(&g.comment));
        }
        if let Some(s) = &w.status {
            differs("status", s.clone(), g.status.as_str().to_string());
        }
        if w.co_person_id.is_some() {
            differs(
                "co_person_id",
                format!("{:?}", w.co_person_id),
                format!("{:?}", g.co_person_id),
            );
        }
        if w.org_identity_id.is_some() {
            differs(
                "org_identity_id",
                format!("{:?}", w.org_identity_id),
                format!("{:?}", g.org_identity_id),
            );
        }
    }
    found
}

fn check_children(want: &[ChildExpected], report: &RunReport) -> Vec<String> {
    let got = &report.children;
    if want.len() != got.len() {
        let seen: Vec<&str> = got.iter().map(|c| c.job_type.as_str()).collect();
        return vec![format!(
            "expected {} child jobs, got {}: [{}]",
            want.len(),
            got.len(),
            seen.join(", ")
        )];
    }
    let mut found = Vec::new();
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let n = i + 1;
        if w.job_type != g.job_type {
            found.push(format!(
                "child {n}: type is '{}', expected '{}'",
                g.job_type, w.job_type
            ));
        }
        if let Some(p) = &w.params {
            let params: Value = serde_json::from_str(&g.params).unwrap_or(Value::Null);
            if let Some(d) = subset(p, &params, "params") {
                found.push(format!("child {n}: {d}"));
            }
        }
        if w.mode.is_some() && w.mode != g.mode {
            found.push(format!(
                "child {n}: mode is {:?}, expected {:?}",
                g.mode, w.mode
            ));
        }
        if w.delay_seconds.is_some() && w.delay_seconds != g.delay_secs {
            found.push(format!(
                "child {n}: delay is {:?} s, expected {:?} s",
                g.delay_secs, w.delay_seconds
            ));
        }
    }
    found
}
