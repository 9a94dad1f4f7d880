//! `chatty`: prints to stdout and stderr forever. Tests that captured output
//! is bounded (and that the plugin is stopped by fuel or the timeout).
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct Chatty;

impl Plugin for Chatty {
    fn describe() -> PluginInfo {
        PluginInfo::new("chatty", env!("CARGO_PKG_VERSION"), "Prints without end (test plugin).")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        let mut n: u64 = 0;
        loop {
            println!("stdout line {n}: the quick brown fox jumps over the lazy dog");
            eprintln!("stderr line {n}: the quick brown fox jumps over the lazy dog");
            n += 1;
        }
    }
}

export_plugin!(Chatty);
