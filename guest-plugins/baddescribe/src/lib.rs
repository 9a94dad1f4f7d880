//! `baddescribe`: its `describe` panics (traps). Tests that `queue` and
//! `plugins` refuse it with a clear message and keep listing the others.
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct BadDescribe;

impl Plugin for BadDescribe {
    fn describe() -> PluginInfo {
        panic!("describe is broken on purpose");
    }
    fn run(_job: Job) -> Result<String, Failure> {
        Ok("ran".into())
    }
}

export_plugin!(BadDescribe);
