//! `runaway`: spins forever in pure guest code, never calling the host.
//! Tests that fuel (and epoch interruption) stop a runaway plugin.
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct Runaway;

impl Plugin for Runaway {
    fn describe() -> PluginInfo {
        PluginInfo::new("runaway", env!("CARGO_PKG_VERSION"), "Loops forever (test plugin).")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        let mut n: u64 = 0;
        loop {
            // black_box keeps the optimizer from proving the loop side-effect free.
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_plugin!(Runaway);
