//! `hello`: the minimal example plugin. Demonstrates typed params with a
//! default, modes, progress with status lines, history records and a summary.
use cojobs_plugin::{export_plugin, history, progress, HistoryStatus, Job, ParamSpec, Plugin, PluginInfo, Failure};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "world")]
    name: String,
}
fn world() -> String {
    "world".into()
}

struct Hello;

impl Plugin for Hello {
    fn describe() -> PluginInfo {
        PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "Greets someone, with progress and history.")
            .modes(&["fast", "slow"])
            .param(ParamSpec::text("name", "Who to greet").default("world"))
    }

    fn run(job: Job) -> Result<String, Failure> {
        let p: Params = job.params()?;
        progress(0, Some("starting"));
        history(Some(&p.name), "greeting started", HistoryStatus::InProgress);
        if job.mode() == Some("slow") {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        progress(50, Some("greeting"));
        history(Some(&p.name), &format!("greeted {}", p.name), HistoryStatus::Ok);
        progress(100, Some("done"));
        Ok(match job.mode() {
            Some(mode) => format!("hello, {} ({mode})", p.name),
            None => format!("hello, {}", p.name),
        })
    }
}

export_plugin!(Hello);
