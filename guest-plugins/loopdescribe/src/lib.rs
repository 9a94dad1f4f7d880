//! `loopdescribe`: its `describe` loops forever. Tests that queue-time
//! checks are bounded (fuel/time) and fail with a clear message.
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct LoopDescribe;

impl Plugin for LoopDescribe {
    fn describe() -> PluginInfo {
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
    fn run(_job: Job) -> Result<String, Failure> {
        Ok("ran".into())
    }
}

export_plugin!(LoopDescribe);
