//! `counter`: records one history record "ran" keyed by the job id and
//! succeeds. Used to check every job runs exactly once across runners.
use cojobs_plugin::{export_plugin, history, Failure, HistoryStatus, Job, Plugin, PluginInfo};

struct Counter;

impl Plugin for Counter {
    fn describe() -> PluginInfo {
        PluginInfo::new("counter", env!("CARGO_PKG_VERSION"), "Records that it ran (test plugin).")
    }
    fn run(job: Job) -> Result<String, Failure> {
        history(Some(&job.id.to_string()), "ran", HistoryStatus::Ok);
        Ok(format!("counted job {}", job.id))
    }
}

export_plugin!(Counter);
