//! `sleepy`: sleeps forever, blocked in a WASI call (not burning fuel).
//! Tests the wall-clock timeout for a plugin stuck in a host call.
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct Sleepy;

impl Plugin for Sleepy {
    fn describe() -> PluginInfo {
        PluginInfo::new("sleepy", env!("CARGO_PKG_VERSION"), "Sleeps forever (test plugin).")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

export_plugin!(Sleepy);
