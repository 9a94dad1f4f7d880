//! `webhook`: POSTs the job's parameters as JSON to the side file's
//! `[config]` `url` (contract 0.2), with the `[secrets]` `token`, when set,
//! as a bearer token. A 429 or 503 with `Retry-After` asks to be retried
//! after that many seconds.
use cojobs_plugin::prelude::*;

struct Webhook;

impl Plugin for Webhook {
    fn describe() -> PluginInfo {
        PluginInfo::new("webhook", env!("CARGO_PKG_VERSION"), "POSTs the job's parameters as JSON to the configured URL.")
            .param(ParamSpec::json("event", "What to send (any JSON)"))
    }

    fn run(job: Job) -> Result<String, Failure> {
        let url = config::get("url").ok_or_else(|| discard("no url in the side file's [config]"))?;
        let params = job.params_json()?;
        let mut req = http::Request::post(&url).json(&params);
        if let Some(token) = config::secret("token") {
            req = req.bearer(&token);
        }
        let resp = req.send()?;
        match resp.status {
            200..=299 => Ok(format!("posted to {url}: {}", resp.status)),
            429 | 503 => {
                let secs = resp.header("retry-after").and_then(|s| s.trim().parse().ok()).unwrap_or(60);
                Err(retry_after(secs, format!("{url} answered {}: retry in {secs} s", resp.status)))
            }
            s => Err(retry(format!("{url} answered {s}"))),
        }
    }
}

export_plugin!(Webhook);
