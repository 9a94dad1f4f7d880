//! `fetch`: reads a JSON document over HTTP and summarises it (contract
//! 0.2). The URL is the `url` parameter, or the side file's `[config]` `url`;
//! a `[secrets]` `token`, when set, is sent as a bearer token. Redirects are
//! followed up to 5 times, each one a new request the host checks against
//! `allowed_hosts`. `times` repeats the request (to meet the job's request
//! limit). The result is `{status, bytes, keys}`.
use cojobs_plugin::prelude::*;
use cojobs_plugin::serde_json::{json, Value};

#[derive(serde::Deserialize)]
struct Params {
    url: Option<String>,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

/// GET `url`, following redirects (each checked by the host again).
fn get(url: &str, token: Option<&str>) -> Result<http::Response, Failure> {
    let mut url = url.to_string();
    for _ in 0..=5 {
        let mut req = http::Request::get(&url).header("accept", "application/json");
        if let Some(t) = token {
            req = req.bearer(t);
        }
        let resp = req.send()?;
        match (resp.status, resp.header("location")) {
            (300..=399, Some(next)) => {
                log::info(&format!("redirected to {next}"));
                url = next;
            }
            _ => return Ok(resp),
        }
    }
    Err(discard("more than 5 redirects"))
}

struct Fetch;

impl Plugin for Fetch {
    fn describe() -> PluginInfo {
        PluginInfo::new("fetch", env!("CARGO_PKG_VERSION"), "Reads a JSON document over HTTP and summarises it.")
            .param(ParamSpec::text("url", "The document's URL (else the side file's config url)"))
            .param(ParamSpec::integer("times", "How many times to fetch it").default(1))
    }

    fn run(job: Job) -> Result<String, Failure> {
        let p: Params = job.params()?;
        let url = p.url.or_else(|| config::get("url")).ok_or_else(|| discard("no url: give the url parameter or config url"))?;
        let token = config::secret("token");
        let mut last = None;
        for i in 0..p.times {
            progress((i * 100 / p.times.max(1)) as u8, Some(&format!("fetching {url}")));
            last = Some(get(&url, token.as_deref())?);
        }
        let resp = last.ok_or_else(|| discard("times must be at least 1"))?;
        if resp.status >= 400 {
            return Err(retry(format!("{url} answered {}", resp.status)));
        }
        let doc: Value = resp.json()?;
        let keys = doc.as_object().map_or(0, |o| o.len());
        set_result(&json!({"status": resp.status, "bytes": resp.body.len(), "keys": keys}))?;
        Ok(format!("fetched {url}: {} bytes, {keys} keys", resp.body.len()))
    }
}

export_plugin!(Fetch);
