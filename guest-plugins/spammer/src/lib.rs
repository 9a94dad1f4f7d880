//! `spammer`: calls `progress`, `log` and `record_history` `calls` times each,
//! then returns a 10 MB summary. For host hardening tests (rate limits, caps).
use cojobs_plugin::{export_plugin, history, log, progress, Failure, HistoryStatus, Job, ParamSpec, Plugin, PluginInfo};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "million")]
    calls: u64,
}
fn million() -> u64 {
    1_000_000
}

struct Spammer;

impl Plugin for Spammer {
    fn describe() -> PluginInfo {
        PluginInfo::new("spammer", env!("CARGO_PKG_VERSION"), "Floods the host API (test plugin).")
            .param(ParamSpec::integer("calls", "Calls of each host function").default(1_000_000))
    }
    fn run(job: Job) -> Result<String, Failure> {
        let calls = job.params::<Params>()?.calls;
        for i in 0..calls {
            progress((i * 100 / calls.max(1)) as u8, Some(&format!("call {i}")));
            log::info(&format!("log line {i}"));
            history(Some(&format!("k{i}")), &format!("record {i}"), HistoryStatus::Notice);
        }
        let mut summary = format!("made {calls} calls of each; ");
        summary.push_str(&"x".repeat(10 * 1024 * 1024));
        Ok(summary)
    }
}

export_plugin!(Spammer);
