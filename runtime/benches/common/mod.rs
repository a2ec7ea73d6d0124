//! What the plugin benchmarks share: the record they measure on and how they load plugins.

#![allow(dead_code)] // each bench uses its own share

use std::path::{Path, PathBuf};

use ctrflow::host::{Host, Limits, NodeContext, TEST_PLUGIN_DIR, TransformPlugin};
use serde_json::Value as Json;

/// The record size (JSON bytes) the targets are stated for.
pub const RECORD_BYTES: usize = 3500;

/// The real v1 sample (3.1 KB), its attributes padded to [`RECORD_BYTES`] of JSON.
pub fn ctr() -> Json {
    let text = include_str!("../../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json");
    let mut doc: Json = serde_json::from_str(text).expect("the fixture is JSON");
    doc["Attributes"]["notes"] = Json::String(String::new());
    let pad = RECORD_BYTES.saturating_sub(doc.to_string().len());
    doc["Attributes"]["notes"] = Json::String("n".repeat(pad));
    assert_eq!(doc.to_string().len(), RECORD_BYTES);
    doc
}

/// A plugin from `plugins/testing/` (built by the runtime's build script).
pub fn test_plugin(host: &Host, name: &str) -> TransformPlugin {
    let file = PathBuf::from(TEST_PLUGIN_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    let wasm =
        std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e} (the runtime's build.rs builds it)", file.display()));
    let compiled = host.compile(name, &wasm).unwrap_or_else(|e| panic!("{name}: {e}"));
    host.transform(&compiled, NodeContext::new("bench", name), &Json::Null, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A bundled plugin, by name.
pub fn bundled(host: &Host, name: &str) -> TransformPlugin {
    bundled_with(host, name, &Json::Null)
}

/// A bundled plugin with a node `config`.
pub fn bundled_with(host: &Host, name: &str, config: &Json) -> TransformPlugin {
    let compiled = host.load(name, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e}"));
    host.transform(&compiled, NodeContext::new("bench", name), config, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}
