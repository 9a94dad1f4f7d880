//! The CASES file of `cojobs test`, read in two stages: the TOML as
//! written ([`RawCase`], unknown keys refused), then checked cases
//! ([`Case`]) whose regexes compiled, limits are in range and fixtures
//! read. Any problem is [`Error::Input`] (exit 2) naming the file and the
//! case.
//!
//! ```toml
//! [[case]]
//! name = "fetch reads the document"        # unique in the file
//! plugin = "fetch"                         # installed in --plugins
//! params = { url = "https://api.example.org/doc" }
//! mode = "fast"                            # optional
//! limits = { fuel = 1000000000, memory_mib = 64, timeout_secs = 5 }
//! allowed_hosts = ["https://api.example.org"]   # else the side file's
//! max_http_requests = 3                    # else the side file's
//! config = { greeting = "hi" }             # over the side file's [config]
//! secrets = { token = "test-token" }       # test values, over [secrets]
//!
//! [[case.http]]                            # one per answered request
//! method = "GET"                           # default GET
//! url = "https://api.example.org/doc"
//! status = 200                             # default 200
//! headers = { content-type = "application/json" }
//! body_file = "fixtures/doc.json"          # relative to the CASES file; or body = "..."
//!
//! [case.expect]
//! outcome = "ok"       # ok, retry, discard, fuel, memory, timeout, trap
//! summary = "^fetched .*: 13 bytes"        # a regex the summary must match
//! result = { keys = 2 }                    # a subset of the result's JSON
//! retry_after = 42                         # the delay a retry-after asked
//! history = [{ key = "Ada", comment = "greeted Ada", status = "ok" }]
//! children = [{ type = "hello", params = { name = "x" } }]
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bounds;
use crate::cli::Error;
use crate::sandbox::{FailKind, Fixture, HostPattern, LimitOverrides, RawLimits};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    plugin: String,
    #[serde(default)]
    params: toml::Table,
    mode: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    allowed_hosts: Option<Vec<String>>,
    max_http_requests: Option<u32>,
    max_response_bytes: Option<u64>,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    http: Vec<RawFixture>,
    expect: RawExpect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    method: Option<String>,
    url: String,
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    outcome: String,
    summary: Option<String>,
    result: Option<toml::Value>,
    retry_after: Option<u32>,
    history: Option<Vec<HistoryExpected>>,
    children: Option<Vec<RawChild>>,
}

/// One expected history record: each field given must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryExpected {
    pub key: Option<String>,
    pub comment: Option<String>,
    /// `ok`, `failed`, `in-progress`, `notice` or `queued`.
    pub status: Option<String>,
    pub co_person_id: Option<i64>,
    pub org_identity_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChild {
    #[serde(rename = "type")]
    job_type: String,
    params: Option<toml::Table>,
    mode: Option<String>,
    delay_seconds: Option<u32>,
}

/// How a case's run must end: `ok`, or failed this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Ok,
    Failed(FailKind),
}

impl Ending {
    const NAMES: &str = "ok, retry, discard, fuel, memory, timeout or trap";

    fn parse(s: &str) -> Option<Ending> {
        Some(match s {
            "ok" => Ending::Ok,
            "retry" => Ending::Failed(FailKind::Retry),
            "discard" => Ending::Failed(FailKind::Discard),
            "fuel" => Ending::Failed(FailKind::Fuel),
            "memory" => Ending::Failed(FailKind::Memory),
            "timeout" => Ending::Failed(FailKind::Timeout),
            "trap" => Ending::Failed(FailKind::Trap),
            _ => return None,
        })
    }

    /// The name a CASES file uses (`load` for a plugin that did not load).
    pub fn name(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::Failed(FailKind::Retry) => "retry",
            Ending::Failed(FailKind::Discard) => "discard",
            Ending::Failed(FailKind::Fuel) => "fuel",
            Ending::Failed(FailKind::Memory) => "memory",
            Ending::Failed(FailKind::Timeout) => "timeout",
            Ending::Failed(FailKind::Trap) => "trap",
            Ending::Failed(FailKind::Load) => "load",
        }
    }
}

/// An expected child job: its type, and each other field given.
#[derive(Debug)]
pub struct ChildExpected {
    pub job_type: String,
    /// A subset of the child's params.
    pub params: Option<Value>,
    pub mode: Option<String>,
    pub delay_seconds: Option<u32>,
}

/// What a case expects.
#[derive(Debug)]
pub struct Expect {
    pub ending: Ending,
    pub summary: Option<regex::Regex>,
    /// A subset of the result's JSON.
    pub result: Option<Value>,
    pub retry_after: Option<u32>,
    pub history: Option<Vec<HistoryExpected>>,
    pub children: Option<Vec<ChildExpected>>,
}

/// What a case changes in the plugin's side file for its run.
#[derive(Debug, Default)]
pub struct Side {
    pub allowed_hosts: Option<Vec<HostPattern>>,
    pub max_http_requests: Option<u32>,
    pub max_response_bytes: Option<u64>,
    pub config: toml::Table,
    pub secrets: BTreeMap<String, String>,
}

/// One checked case.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub plugin: String,
    pub params: Map<String, Value>,
    pub mode: Option<String>,
    pub limits: LimitOverrides,
    pub side: Side,
    pub fixtures: Vec<Fixture>,
    pub expect: Expect,
}

/// Read and check the CASES file at `path`.
pub fn load(path: &Path) -> Result<Vec<Case>, Error> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {shown}: {e}")))?;
    let raw: RawFile = toml::from_str(&text).map_err(|e| Error::Input(format!("{shown}: {e}")))?;
    if raw.cases.is_empty() {
        return Err(Error::Input(format!(
            "{shown}: no cases (write one [[case]] table per case)"
        )));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = HashSet::new();
    let mut cases = Vec::with_capacity(raw.cases.len());
    for (i, raw) in raw.cases.into_iter().enumerate() {
        let name = raw.name.clone();
        let bad =
            |what: String| Error::Input(format!("{shown}: case {} ('{name}'): {what}", i + 1));
        if !names.insert(raw.name.clone()) {
            return Err(bad("another case has this name".into()));
        }
        cases.push(check(raw, base).map_err(bad)?);
    }
    Ok(cases)
}

/// A TOML table as a JSON object.
fn json_object(table: toml::Table) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(table).map_err(|e| e.to_string())? {
        Value::Object(m) => Ok(m),
        _ => Err("not a table".into()),
    }
}

fn check(raw: RawCase, base: &Path) -> Result<Case, String> {
    if raw.name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    crate::job::validate_job_type(&raw.plugin).map_err(|e| e.to_string())?;
    let fixtures = raw
        .http
        .into_iter()
        .enumerate()
        .map(|(i, f)| fixture(f, base).map_err(|e| format!("http fixture {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Case {
        params: json_object(raw.params).map_err(|e| format!("params: {e}"))?,
        limits: limits(raw.limits)?,
        side: Side {
            allowed_hosts: raw
                .allowed_hosts
                .map(|hosts| {
                    hosts
                        .iter()
                        .map(|h| h.parse::<HostPattern>())
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            max_http_requests: raw.max_http_requests,
            max_response_bytes: raw.max_response_bytes,
            config: raw.config,
            secrets: raw.secrets,
        },
        fixtures,
        expect: expect(raw.expect)?,
        name: raw.name,
        plugin: raw.plugin,
        mode: raw.mode,
    })
}

fn limits(raw: RawLimits) -> Result<LimitOverrides, String> {
    let unsigned = |bound: bounds::Bound, v| {
        bound
            .check_opt(v)
            .map(|v| v.map(i64::unsigned_abs))
            .map_err(|e| format!("limits: {e}"))
    };
    Ok(LimitOverrides {
        fuel: unsigned(bounds::FUEL, raw.fuel)?,
        memory_mib: unsigned(bounds::MEMORY_MIB, raw.memory_mib)?,
        timeout_secs: unsigned(bounds::TIMEOUT_SECS, raw.timeout_secs)?,
    })
}

fn fixture(raw: RawFixture, base: &Path) -> Result<Fixture, String> {
    let body = match (raw.body, raw.body_file) {
        (Some(_), Some(_)) => return Err("give body or body_file, not both".into()),
        (Some(text), None) => text.into_bytes(),
        (None, Some(file)) => {
            let path = base.join(&file);
            std::fs::read(&path).map_err(|e| format!("body_file {}: {e}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let headers: Vec<(String, String)> = raw.headers.into_iter().collect();
    Fixture::new(
        raw.method.as_deref().unwrap_or("GET"),
        &raw.url,
        raw.status.unwrap_or(200),
        &headers,
        body.into(),
    )
}

const HISTORY_STATUSES: [&str; 5] = ["ok", "failed", "in-progress", "notice", "queued"];

fn expect(raw: RawExpect) -> Result<Expect, String> {
    let ending = Ending::parse(&raw.outcome).ok_or_else(|| {
        format!(
            "expect.outcome '{}' is not one of {}",
            raw.outcome,
            Ending::NAMES
        )
    })?;
    let summary = raw
        .summary
        .map(|re| regex::Regex::new(&re).map_err(|e| format!("expect.summary is not a regex: {e}")))
        .transpose()?;
    let result = raw
        .result
        .map(|v| serde_json::to_value(v).map_err(|e| format!("expect.result: {e}")))
        .transpose()?;
    if let Some(bad) = raw
        .history
        .iter()
        .flatten()
        .filter_map(|r| r.status.as_deref())
        .find(|s| !HISTORY_STATUSES.contains(s))
    {
        return Err(format!(
            "expect.history: status '{bad}' is not one of {}",
            HISTORY_STATUSES.join(", ")
        ));
    }
    let children = raw
        .children
        .map(|cs| cs.into_iter().map(child).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    Ok(Expect {
        ending,
        summary,
        result,
        retry_after: raw.retry_after,
        history: raw.history,
        children,
    })
}

fn child(raw: RawChild) -> Result<ChildExpected, String> {
    Ok(ChildExpected {
        params: raw
            .params
            .map(|t| json_object(t).map(Value::Object))
            .transpose()
            .map_err(|e| format!("expect.children params: {e}"))?,
        job_type: raw.job_type,
        mode: raw.mode,
        delay_seconds: raw.delay_seconds,
    })
}
