//! `echo`: declares one parameter of every kind (a required one, one with
//! choices, defaults) and no modes, and returns its params as its summary.
//! Tests the queue-time and `exec` parameter checks: what the plugin
//! receives is exactly what the check let through, defaults filled in.
use cojobs_plugin::prelude::*;
use cojobs_plugin::serde_json;

struct Echo;

impl Plugin for Echo {
    fn describe() -> PluginInfo {
        PluginInfo::new("echo", env!("CARGO_PKG_VERSION"), "Returns its params; one parameter of each kind.")
            .param(ParamSpec::text("target", "Who the echo is for").required())
            .param(ParamSpec::integer("count", "How many times").default(3))
            .param(ParamSpec::text("level", "How loud").choices(&["low", "high"]).default("low"))
            .param(ParamSpec::number("ratio", "Any number"))
            .param(ParamSpec::boolean("verbose", "Log each param").default(false))
            .param(ParamSpec::json("extra", "Any JSON value"))
    }

    fn run(job: Job) -> Result<String, Failure> {
        let params = job.params_json()?;
        // verbose: each param as a log line, and the whole on stdout.
        if params.get("verbose") == Some(&serde_json::Value::Bool(true)) {
            if let Some(map) = params.as_object() {
                for (k, v) in map {
                    log::info(&format!("{k} = {v}"));
                }
            }
            println!("echo: {params}");
        }
        Ok(params.to_string())
    }
}

export_plugin!(Echo);
