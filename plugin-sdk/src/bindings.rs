//! The bindings generated from `wit/` — the contract itself.
//!
//! Plugin authors rarely need these directly: the SDK's [`crate::Transform`] and
//! [`crate::Sink`] traits and the `export_*!` macros sit on top. They
//! are public so a plugin can drop down to the raw interface when it wants to.

#![allow(missing_docs, clippy::all)]

/// The `enrich` world; transforms use it too (a transform simply never calls `lookup`, and
/// the component it compiles to does not import it).
pub mod enrich {
    wit_bindgen::generate!({
        path: "../wit",
        world: "ctrflow:plugin/enrich",
        pub_export_macro: true,
        export_macro_name: "__ctrflow_export_enrich",
        default_bindings_module: "ctrflow_plugin_sdk::bindings::enrich",
        generate_all,
    });
}

/// The `sink` world, sharing the `types` and `host` interfaces with [`enrich`].
pub mod sink {
    wit_bindgen::generate!({
        path: "../wit",
        world: "ctrflow:plugin/sink",
        pub_export_macro: true,
        export_macro_name: "__ctrflow_export_sink",
        default_bindings_module: "ctrflow_plugin_sdk::bindings::sink",
        with: {
            "ctrflow:plugin/types@0.1.0": crate::bindings::enrich::ctrflow::plugin::types,
            "ctrflow:plugin/host@0.1.0": crate::bindings::enrich::ctrflow::plugin::host,
            "ctrflow:plugin/batch@0.1.0": crate::bindings::enrich::ctrflow::plugin::batch,
        },
    });
}

pub use enrich::ctrflow::plugin::types;
