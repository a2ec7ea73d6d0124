//! Host-side bindings generated from `wit/`.
//!
//! Transform and enrich plugins are both instantiated through the `enrich` world: a
//! transform simply does not import `lookup`. Sinks use the `sink` world, sharing the
//! `types` and `host` interfaces.

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ctrflow:plugin/enrich",
        // A lookup can be abandoned when the run stops (`lookup.rs`): it may trap.
        imports: { "ctrflow:plugin/lookup.get": trappable },
    });
}

pub mod sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ctrflow:plugin/sink",
        with: {
            "ctrflow:plugin/types": super::transform::ctrflow::plugin::types,
            "ctrflow:plugin/host": super::transform::ctrflow::plugin::host,
            "ctrflow:plugin/batch": super::transform::ctrflow::plugin::batch,
        },
    });
}

pub use transform::ctrflow::plugin::types::{ErrorKind, LogLevel, Outcome, PluginError, Value};
