//! `noop`: returns `ok("")` at once; no params. Measures the host's per-job overhead.
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct Noop;

impl Plugin for Noop {
    fn describe() -> PluginInfo {
        PluginInfo::new("noop", env!("CARGO_PKG_VERSION"), "Does nothing, successfully.")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        Ok(String::new())
    }
}

export_plugin!(Noop);
