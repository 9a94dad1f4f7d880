//! `memhog`: allocates and touches 1 MiB chunks forever, keeping them all.
//! Tests the linear-memory limit.
use cojobs_plugin::{export_plugin, Failure, Job, Plugin, PluginInfo};

struct Memhog;

impl Plugin for Memhog {
    fn describe() -> PluginInfo {
        PluginInfo::new("memhog", env!("CARGO_PKG_VERSION"), "Allocates memory until stopped (test plugin).")
    }
    fn run(_job: Job) -> Result<String, Failure> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            // Touch every page so the memory is really used.
            for i in (0..chunk.len()).step_by(4096) {
                chunk[i] = chunks.len() as u8 | 1;
            }
            chunks.push(core::hint::black_box(chunk));
        }
    }
}

export_plugin!(Memhog);
