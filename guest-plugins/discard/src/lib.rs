//! `discard`: always fails with `Failure::Discard`; tests that the job is never retried.
use cojobs_plugin::{discard, export_plugin, Failure, Job, Plugin, PluginInfo};

struct Discard;

impl Plugin for Discard {
    fn describe() -> PluginInfo {
        PluginInfo::new("discard", env!("CARGO_PKG_VERSION"), "Always fails for good (test plugin).")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        Err(discard("bad input: this job can never succeed"))
    }
}

export_plugin!(Discard);
