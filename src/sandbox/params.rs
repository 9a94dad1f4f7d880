//! What a plugin says about itself (`describe`), and the queue-time check
//! of a job's mode and parameters against it.
//!
//! These are the host's own types, independent of the generated bindings,
//! so the CLI and runner can use them without touching wasmtime.

use serde::Serialize;
use serde_json::{Map, Value};

use super::bindings::{self, Contract};

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    Text,
    Integer,
    Boolean,
    Number,
    Json,
}

impl ParamKind {
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Text => "text",
            ParamKind::Integer => "integer",
            ParamKind::Boolean => "boolean",
            ParamKind::Number => "number",
            ParamKind::Json => "json",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ParamKind::Text => v.is_string(),
            ParamKind::Integer => v.is_i64() || v.is_u64(),
            ParamKind::Boolean => v.is_boolean(),
            ParamKind::Number => v.is_number(),
            ParamKind::Json => true,
        }
    }
}

/// One parameter a plugin accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDesc {
    pub name: String,
    pub help: String,
    pub kind: ParamKind,
    pub required: bool,
    /// Allowed values; empty means any value of the type.
    pub choices: Vec<String>,
    /// The default as JSON text.
    pub default: Option<String>,
}

/// A plugin's answer to `describe`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginDescription {
    pub name: String,
    pub version: String,
    pub description: String,
    /// The contract version the plugin implements (`0.1.0`, `0.2.0`).
    pub contract: Contract,
    pub modes: Vec<String>,
    pub params: Vec<ParamDesc>,
}

/// `From<PluginInfo>` of one contract version: the two versions' records
/// have the same fields but are distinct generated types.
macro_rules! from_plugin_info {
    ($v:ident, $contract:expr) => {
        impl From<bindings::$v::cojobs::plugin::types::PluginInfo> for PluginDescription {
            fn from(i: bindings::$v::cojobs::plugin::types::PluginInfo) -> Self {
                use bindings::$v::ParamType;
                PluginDescription {
                    name: i.name,
                    version: i.version,
                    description: i.description,
                    contract: $contract,
                    modes: i.modes,
                    params: i
                        .params
                        .into_iter()
                        .map(|p| ParamDesc {
                            name: p.name,
                            help: p.help,
                            kind: match p.kind {
                                ParamType::Text => ParamKind::Text,
                                ParamType::Integer => ParamKind::Integer,
                                ParamType::Boolean => ParamKind::Boolean,
                                ParamType::Number => ParamKind::Number,
                                ParamType::Json => ParamKind::Json,
                            },
                            required: p.required,
                            choices: p.choices,
                            default: p.default,
                        })
                        .collect(),
                }
            }
        }
    };
}

from_plugin_info!(v1, Contract::V0_1);
from_plugin_info!(v2, Contract::V0_2);

/// Why a job's mode or parameters do not fit the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("plugin '{plugin}' takes no mode, but mode '{mode}' was given")]
    NoModes { plugin: String, mode: String },
    #[error("plugin '{plugin}' has no mode '{mode}' (modes: {modes})")]
    UnknownMode {
        plugin: String,
        mode: String,
        modes: String,
    },
    #[error("plugin '{plugin}' has no parameter '{name}' (parameters: {known})")]
    Unknown {
        plugin: String,
        name: String,
        known: String,
    },
    #[error("parameter '{name}' is required by plugin '{plugin}'")]
    Missing { plugin: String, name: String },
    #[error("parameter '{name}' must be {kind}, got {got}")]
    WrongType {
        name: String,
        kind: &'static str,
        got: String,
    },
    #[error("parameter '{name}' must be one of {choices}, got {got}")]
    NotAChoice {
        name: String,
        choices: String,
        got: String,
    },
    #[error("plugin '{plugin}' declares an invalid default for '{name}': {message}")]
    BadDefault {
        plugin: String,
        name: String,
        message: String,
    },
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl PluginDescription {
    /// Check `mode` and `params` against this description and return the
    /// params with every absent parameter that has a default filled in.
    pub fn check(
        &self,
        mode: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ParamError> {
        if let Some(mode) = mode {
            if self.modes.is_empty() {
                return Err(ParamError::NoModes {
                    plugin: self.name.clone(),
                    mode: mode.to_string(),
                });
            }
            if !self.modes.iter().any(|m| m == mode) {
                return Err(ParamError::UnknownMode {
                    plugin: self.name.clone(),
                    mode: mode.to_string(),
                    modes: self.modes.join(", "),
                });
            }
        }
        for name in params.keys() {
            if !self.params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(ParamError::Unknown {
                    plugin: self.name.clone(),
                    name: name.clone(),
                    known: if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        let mut out = params.clone();
        for spec in &self.params {
            let value = match params.get(&spec.name) {
                Some(v) => v.clone(),
                None => match &spec.default {
                    Some(d) => {
                        let v: Value =
                            serde_json::from_str(d).map_err(|e| ParamError::BadDefault {
                                plugin: self.name.clone(),
                                name: spec.name.clone(),
                                message: e.to_string(),
                            })?;
                        out.insert(spec.name.clone(), v.clone());
                        v
                    }
                    None if spec.required => {
                        return Err(ParamError::Missing {
                            plugin: self.name.clone(),
                            name: spec.name.clone(),
                        });
                    }
                    None => continue,
                },
            };
            if !spec.kind.accepts(&value) {
                return Err(ParamError::WrongType {
                    name: spec.name.clone(),
                    kind: spec.kind.name(),
                    got: value.to_string(),
                });
            }
            if !spec.choices.is_empty() && !spec.choices.contains(&value_text(&value)) {
                return Err(ParamError::NotAChoice {
                    name: spec.name.clone(),
                    choices: spec.choices.join(", "),
                    got: value.to_string(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desc() -> PluginDescription {
        PluginDescription {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            contract: Contract::V0_2,
            modes: vec!["fast".into()],
            params: vec![
                ParamDesc {
                    name: "name".into(),
                    help: String::new(),
                    kind: ParamKind::Text,
                    required: false,
                    choices: vec![],
                    default: Some("\"world\"".into()),
                },
                ParamDesc {
                    name: "n".into(),
                    help: String::new(),
                    kind: ParamKind::Integer,
                    required: true,
                    choices: vec!["1".into(), "2".into()],
                    default: None,
                },
            ],
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn fills_defaults() {
        let out = desc()
            .check(Some("fast"), &obj(json!({"n": 1})))
            .expect("ok");
        assert_eq!(out.get("name"), Some(&json!("world")));
    }

    #[test]
    fn refuses_each_kind_of_bad_input() {
        let d = desc();
        let cases = [
            (Some("slow"), json!({"n": 1}), "no mode 'slow'"),
            (None, json!({}), "'n' is required"),
            (None, json!({"n": "x"}), "'n' must be integer"),
            (None, json!({"n": 3}), "must be one of 1, 2"),
            (None, json!({"n": 1, "zz": 1}), "no parameter 'zz'"),
        ];
        for (mode, params, want) in cases {
            let e = d.check(mode, &obj(params)).expect_err(want);
            assert!(e.to_string().contains(want), "{e} !~ {want}");
        }
    }
}
