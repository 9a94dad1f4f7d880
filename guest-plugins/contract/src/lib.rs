//! `contract`: exercises contract 0.2 without the network (test plugin).
//! Modes:
//! - `leak`: logs, prints, records and returns its `[secrets]` `token`
//!   (the host must redact it everywhere);
//! - `config`: returns the `[config]` values `greeting` and `count`;
//! - `children`: queues `n` child `hello` jobs and sets a result;
//! - `retry-after`: fails asking for a retry in 42 s;
//! - `history`: records history with a co_person_id and org_identity_id;
//! - `bad-result`: tries to set a result that is not JSON.
use cojobs_plugin::prelude::*;
use cojobs_plugin::serde_json::json;

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default)]
    n: u32,
}

struct Contract;

impl Plugin for Contract {
    fn describe() -> PluginInfo {
        PluginInfo::new("contract", env!("CARGO_PKG_VERSION"), "Exercises contract 0.2 (test plugin).")
            .modes(&["leak", "config", "children", "retry-after", "history", "bad-result"])
            .param(ParamSpec::integer("n", "How many children").default(0))
    }

    fn run(job: Job) -> Result<String, Failure> {
        match job.mode().unwrap_or("config") {
            "leak" => {
                let token = config::secret("token").ok_or_else(|| discard("no token"))?;
                log::info(&format!("the token is {token}"));
                println!("stdout token={token}");
                eprintln!("stderr token={token}");
                progress(50, Some(&format!("using {token}")));
                history(Some(&token), &format!("token {token}"), HistoryStatus::Notice);
                set_result(&json!({"token": token}))?;
                Ok(format!("done with {token}"))
            }
            "config" => {
                let greeting = config::get("greeting").unwrap_or_default();
                let count: Option<u32> = config::get_as("count")?;
                Ok(format!("{greeting} x{}", count.unwrap_or(0)))
            }
            "children" => {
                let n = job.params::<Params>()?.n;
                for i in 0..n {
                    queue_job("hello", &json!({"name": format!("child {i}")}), ChildOptions::default())?;
                }
                set_result(&json!({"children": n, "parent": job.id}))?;
                Ok(format!("queued {n} children"))
            }
            "retry-after" => Err(retry_after(42, "rate limited")),
            "history" => {
                history_for(Some("k"), "with ids", HistoryStatus::Ok, Some(7), Some(9));
                Ok("recorded".into())
            }
            "bad-result" => {
                // `set_result` only takes serializable values; go under it.
                match cojobs_plugin::bindings::cojobs::plugin::host::set_result("{not json") {
                    Ok(()) => Ok("accepted?!".into()),
                    Err(e) => Err(discard(e)),
                }
            }
            m => Err(discard(format!("unknown mode {m}"))),
        }
    }
}

export_plugin!(Contract);
