//! `cojobs plugins [NAME] [--json]`: what the plugins in the plugins folder
//! say about themselves (`describe`).
//!
//! Without NAME, one row per `<name>.wasm`: a plugin that fails to load or
//! to describe itself is listed with its error, and the command still
//! succeeds (one broken file must not hide the others). With NAME (or a
//! component file), its modes, limits and parameters; failing to load it is
//! then the command's error (exit 1).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::{Error, Global, cell, runtime, write_table};
use crate::sandbox::{
    LimitOverrides, LoadedPlugin, ParamKind, PluginDescription, Sandbox, SandboxError,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show this plugin's modes and parameters (a name in the plugins
    /// folder, or a component file).
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// Print JSON: the plugin's description, or one line per plugin.
    #[arg(long)]
    json: bool,
}

/// One row of the listing, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Entry {
    /// The file's name: the job type that runs it.
    plugin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<PluginDescription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    super::run::init_tracing("warn");
    let sandbox = Arc::new(g.sandbox()?);
    let rt = runtime()?;
    match args.name {
        Some(name) => {
            let (plugin, desc) = rt.block_on(load_and_describe(&sandbox, &name))?;
            if args.json {
                serde_json::to_writer(&mut *out, &desc)?;
                writeln!(out)?;
            } else {
                write_details(out, &sandbox, &plugin, &desc)?;
            }
        }
        None => {
            let mut entries = Vec::new();
            for name in sandbox.plugin_names()? {
                let entry = match rt.block_on(load_and_describe(&sandbox, &name)) {
                    Ok((_, d)) => Entry {
                        plugin: name,
                        description: Some(d),
                        error: None,
                    },
                    Err(e) => Entry {
                        plugin: name,
                        description: None,
                        error: Some(e.to_string()),
                    },
                };
                entries.push(entry);
            }
            if args.json {
                for e in &entries {
                    serde_json::to_writer(&mut *out, e)?;
                    writeln!(out)?;
                }
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| match (&e.description, &e.error) {
                        (Some(d), _) => vec![
                            e.plugin.clone(),
                            cell(Some(&d.version)),
                            d.contract.to_string(),
                            cell(Some(&d.description)),
                        ],
                        (None, err) => vec![
                            e.plugin.clone(),
                            "-".to_string(),
                            "-".to_string(),
                            cell(Some(&format!("error: {}", err.as_deref().unwrap_or("?")))),
                        ],
                    })
                    .collect();
                write_table(out, &["NAME", "VERSION", "CONTRACT", "DESCRIPTION"], &rows)?;
            }
        }
    }
    Ok(())
}

/// Load a plugin by name (or from a file, like `exec`) and describe it.
async fn load_and_describe(
    sandbox: &Arc<Sandbox>,
    name: &str,
) -> Result<(Arc<LoadedPlugin>, PluginDescription), SandboxError> {
    let plugin = if name.ends_with(".wasm") || name.contains('/') {
        let sb = Arc::clone(sandbox);
        let path = name.to_string();
        tokio::task::spawn_blocking(move || sb.plugin_from_file(Path::new(&path)))
            .await
            .map_err(|e| SandboxError::Engine(format!("plugin loader stopped: {e}")))??
    } else {
        sandbox.plugin_async(name).await?
    };
    let desc = sandbox.describe(&plugin).await?;
    Ok((plugin, desc))
}

fn kind_name(k: ParamKind) -> &'static str {
    match k {
        ParamKind::Text => "text",
        ParamKind::Integer => "integer",
        ParamKind::Boolean => "boolean",
        ParamKind::Number => "number",
        ParamKind::Json => "json",
    }
}

/// What the side file grants beyond the defaults: hosts, config names and
/// secret names (never a secret's value).
fn write_grants(out: &mut dyn Write, plugin: &LoadedPlugin) -> Result<(), Error> {
    let c = &plugin.config;
    if !c.http.allowed.is_empty() {
        let hosts: Vec<String> = c.http.allowed.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "http:         {} (at most {} requests, {} response bytes per job)",
            hosts.join(", "),
            c.http.max_requests,
            c.http.max_response_bytes
        )?;
    }
    if !c.values.is_empty() {
        let names: Vec<&str> = c.values.keys().map(String::as_str).collect();
        writeln!(out, "config:       {}", names.join(", "))?;
    }
    let secrets: Vec<&str> = c.secrets.names().collect();
    if !secrets.is_empty() {
        writeln!(out, "secrets:      {} (values hidden)", secrets.join(", "))?;
    }
    Ok(())
}

fn write_details(
    out: &mut dyn Write,
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    d: &PluginDescription,
) -> Result<(), Error> {
    let limits = sandbox.limits_for(plugin, &LimitOverrides::default());
    let modes = if d.modes.is_empty() {
        "(none)".to_string()
    } else {
        d.modes.join(", ")
    };
    writeln!(out, "name:         {}", cell(Some(&d.name)))?;
    writeln!(out, "version:      {}", cell(Some(&d.version)))?;
    writeln!(out, "description:  {}", cell(Some(&d.description)))?;
    writeln!(out, "contract:     cojobs:plugin@{}", d.contract)?;
    writeln!(out, "file:         {}", plugin.path.display())?;
    writeln!(out, "modes:        {}", cell(Some(&modes)))?;
    writeln!(
        out,
        "limits:       fuel {}, memory {} MiB, timeout {} s",
        limits.fuel,
        limits.memory_mib,
        limits.timeout.as_secs()
    )?;
    write_grants(out, plugin)?;
    if d.params.is_empty() {
        writeln!(out, "parameters:   (none)")?;
        return Ok(());
    }
    writeln!(out, "parameters:")?;
    let rows: Vec<Vec<String>> = d
        .params
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                kind_name(p.kind).to_string(),
                if p.required { "yes" } else { "no" }.to_string(),
                cell(p.default.as_deref()),
                if p.choices.is_empty() {
                    "-".to_string()
                } else {
                    cell(Some(&p.choices.join(", ")))
                },
                cell(Some(&p.help)),
            ]
        })
        .collect();
    write_table(
        out,
        &["NAME", "TYPE", "REQUIRED", "DEFAULT", "CHOICES", "HELP"],
        &rows,
    )?;
    Ok(())
}
