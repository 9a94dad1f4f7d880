//! `retry`: always fails with `Failure::Retry`; tests that the runner retries per policy.
use cojobs_plugin::{export_plugin, retry, Failure, Job, Plugin, PluginInfo};

struct Retry;

impl Plugin for Retry {
    fn describe() -> PluginInfo {
        PluginInfo::new("retry", env!("CARGO_PKG_VERSION"), "Always fails, retryably (test plugin).")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        Err(retry("temporary: upstream unavailable"))
    }
}

export_plugin!(Retry);
