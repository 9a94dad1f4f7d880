//! `escapes`: writes its `text` param, as it is, everywhere a plugin can
//! write text: a progress status line, a log line, a history record, stdout,
//! stderr, its structured result (`{"text": …}`) and its summary. Tests
//! that terminal escape sequences in what a plugin writes are shown escaped,
//! never acted on (issue 10, finding 8); that markup is shown as text.
use cojobs_plugin::prelude::*;

#[derive(serde::Deserialize)]
struct Params {
    text: String,
}

struct Escapes;

impl Plugin for Escapes {
    fn describe() -> PluginInfo {
        PluginInfo::new("escapes", env!("CARGO_PKG_VERSION"), "Writes its text everywhere (test plugin).")
            .param(ParamSpec::text("text", "What to write").required())
    }

    fn run(job: Job) -> Result<String, Failure> {
        let text = job.params::<Params>()?.text;
        progress(50, Some(&text));
        log::info(&text);
        history(Some("key"), &text, HistoryStatus::Notice);
        println!("stdout {text}");
        eprintln!("stderr {text}");
        set_result(&cojobs_plugin::serde_json::json!({ "text": text }))?;
        Ok(format!("summary {text}"))
    }
}

export_plugin!(Escapes);
