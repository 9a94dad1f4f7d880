//! The `bindgen!`s of the program, one per contract version the host runs:
//! Rust types and traits generated from `wit/v0.1/cojobs.wit`
//! (`cojobs:plugin@0.1.0`, frozen) and `wit/cojobs.wit`
//! (`cojobs:plugin@0.2.0`). Both are linked into one `Linker`, so plugins of
//! either version run side by side (docs/design.md#contract-versions).
//!
//! Exports are called async so a guest blocked in a WASI call is an awaited
//! future the host can time out; host imports are plain functions (they
//! never block).

/// `cojobs:plugin@0.1.0`: describe, run, and the `host` interface.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "wit/v0.1",
        world: "plugin",
        exports: { default: async },
    });

    pub use cojobs::plugin::types::ParamType;
}

/// `cojobs:plugin@0.2.0`: 0.1 plus config and secrets, child jobs, a
/// structured result, retry-after and richer history records. Outbound
/// HTTP is `wasi:http`, linked beside it.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "plugin",
        exports: { default: async },
    });

    pub use cojobs::plugin::types::ParamType;
}

/// Which contract a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Contract {
    #[serde(rename = "0.1.0")]
    V0_1,
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl Contract {
    /// The package version, `0.1.0` or `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// The world's full name, `cojobs:plugin/plugin@<version>`.
    pub fn world(self) -> String {
        format!("cojobs:plugin/plugin@{}", self.version())
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}
