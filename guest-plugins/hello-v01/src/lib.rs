//! `hello-v01`: a plugin of contract `cojobs:plugin@0.1.0`, bound to the
//! frozen `wit/v0.1` without the SDK. It greets as `hello` does, so the
//! tests can run it beside 0.2 plugins and compare.

wit_bindgen::generate!({
    path: "../../wit/v0.1",
    world: "cojobs:plugin/plugin@0.1.0",
    generate_all,
});

use cojobs::plugin::host;
use cojobs::plugin::types::{HistoryStatus, ParamSpec, ParamType};

struct HelloV01;

impl Guest for HelloV01 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hello-v01".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Greets someone (contract 0.1.0).".into(),
            modes: vec![],
            params: vec![ParamSpec {
                name: "name".into(),
                help: "Who to greet".into(),
                kind: ParamType::Text,
                required: false,
                choices: vec![],
                default: Some("world".into()),
            }],
        }
    }

    fn run(job: Job) -> Result<String, Failure> {
        let name = name_param(&job.params).unwrap_or_else(|| "world".to_string());
        host::record_history(None, "greeting started", HistoryStatus::InProgress);
        host::progress(50, Some(&format!("greeting {name}")));
        host::record_history(None, &format!("greeted {name}"), HistoryStatus::Ok);
        Ok(format!("hello, {name}"))
    }
}

/// The `name` string of a params object such as `{"name":"ada"}`; this
/// plugin has no JSON library, so it reads only that simple shape.
fn name_param(params: &str) -> Option<String> {
    let rest = params.split("\"name\"").nth(1)?;
    let value = rest.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    Some(value.split('"').next()?.to_string())
}

export!(HelloV01);
