//! `cancellable`: waits up to `seconds` in 50 ms steps, honouring
//! `cancel_requested()` (returning `ok`, or `retry` with
//! `retry_on_cancel: true`, as a plugin stopping for a shutdown should);
//! with `ignore_cancel: true` it never checks, to test that the host
//! interrupts a plugin that ignores the request.
use cojobs_plugin::{cancel_requested, export_plugin, progress, retry, Failure, Job, ParamSpec, Plugin, PluginInfo};
use std::time::{Duration, Instant};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "sixty")]
    seconds: u64,
    #[serde(default)]
    ignore_cancel: bool,
    #[serde(default)]
    retry_on_cancel: bool,
}
fn sixty() -> u64 {
    60
}

struct Cancellable;

impl Plugin for Cancellable {
    fn describe() -> PluginInfo {
        PluginInfo::new("cancellable", env!("CARGO_PKG_VERSION"), "Waits, stopping when cancelled (test plugin).")
            .param(ParamSpec::integer("seconds", "How long to wait").default(60))
            .param(ParamSpec::boolean("ignore_cancel", "Never check for cancellation").default(false))
            .param(ParamSpec::boolean("retry_on_cancel", "Return retry, not ok, when asked to stop").default(false))
    }
    fn run(job: Job) -> Result<String, Failure> {
        let p: Params = job.params()?;
        let start = Instant::now();
        let total = Duration::from_secs(p.seconds);
        let mut last_pct = u8::MAX;
        while start.elapsed() < total {
            if !p.ignore_cancel && cancel_requested() {
                let said = format!("stopped on request after {} ms", start.elapsed().as_millis());
                return if p.retry_on_cancel { Err(retry(&said)) } else { Ok(said) };
            }
            let pct = (start.elapsed().as_millis() * 100 / total.as_millis().max(1)) as u8;
            if pct != last_pct {
                progress(pct, Some(&format!("waiting, {} s left", (total - start.elapsed().min(total)).as_secs())));
                last_pct = pct;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        progress(100, Some("done"));
        Ok(format!("waited {} s", p.seconds))
    }
}

export_plugin!(Cancellable);
