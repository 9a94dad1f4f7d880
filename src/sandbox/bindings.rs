//! The one `bindgen!` of the program: Rust types and traits generated from
//! `wit/cojobs.wit`, the contract every plugin is built against.
//!
//! Exports are called async so a guest blocked in a WASI call is an awaited
//! future the host can time out; host imports are plain functions (they
//! never block).

wasmtime::component::bindgen!({
    path: "wit",
    world: "plugin",
    exports: { default: async },
});

pub use cojobs::plugin::types::ParamType;
