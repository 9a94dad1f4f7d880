//! `hello`: the minimal example plugin. Demonstrates typed params with a
//! default, modes, progress with status lines, history records and a summary.
use cojobs_plugin::prelude::*;
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Params {
    name: Option<String>,
}

struct Hello;

impl Plugin for Hello {
    fn describe() -> PluginInfo {
        PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "Greets someone, with progress and history.")
            .modes(&["fast", "slow"])
            .param(ParamSpec::text("name", "Who to greet").default("world"))
    }

    fn run(job: Job) -> Result<String, Failure> {
        let name = job.params::<Params>()?.name.unwrap_or_else(|| "world".into());
        progress(0, Some("starting"));
        history(Some(&name), "greeting started", HistoryStatus::InProgress);
        if job.mode() == Some("slow") {
            std::thread::sleep(Duration::from_millis(500));
        }
        progress(50, Some(&format!("greeting {name}")));
        history(Some(&name), &format!("greeted {name}"), HistoryStatus::Ok);
        progress(100, Some("done"));
        Ok(match job.mode() {
            Some(mode) => format!("hello, {name} ({mode})"),
            None => format!("hello, {name}"),
        })
    }
}

export_plugin!(Hello);
