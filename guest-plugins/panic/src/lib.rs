//! `panic`: panics with `message` (default "boom"). Tests that a guest panic
//! traps and its message (printed on stderr) reaches the finish summary.
use cojobs_plugin::{export_plugin, Failure, Job, ParamSpec, Plugin, PluginInfo};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "boom")]
    message: String,
}
fn boom() -> String {
    "boom".into()
}

struct Panic;

impl Plugin for Panic {
    fn describe() -> PluginInfo {
        PluginInfo::new("panic", env!("CARGO_PKG_VERSION"), "Panics (test plugin).")
            .param(ParamSpec::text("message", "The panic message").default("boom"))
    }
    fn run(job: Job) -> Result<String, Failure> {
        let p: Params = job.params()?;
        panic!("{}", p.message);
    }
}

export_plugin!(Panic);
