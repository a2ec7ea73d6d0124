//! Benchmark baseline: the same edit as `bench-edit`, over a JSON-bytes interface — the
//! whole record crosses the boundary as JSON text, is parsed, edited and serialized in the
//! guest, and is parsed again by the host. This is how engines that ship JSON to wasm work.
use ctrflow_plugin_sdk::serde_json::Value;
use ctrflow_plugin_sdk::{Error, Init, Outcome, Record, Transform};

pub struct JsonEdit;

impl Transform for JsonEdit {
    fn init(_init: &mut Init) -> Result<Self, Error> {
        Ok(JsonEdit)
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let mut doc: Value = record.to_json();
        let channel = doc["Channel"].as_str().unwrap_or_default().to_string();
        let user = doc["Agent"]["Username"].as_str().unwrap_or_default().to_string();
        if let Some(attrs) = doc.get_mut("Attributes").and_then(Value::as_object_mut) {
            attrs.insert("route_key".into(), Value::String(format!("{channel}:{user}")));
        }
        // `replace_json` serializes in the guest; the host parses the text back.
        match record.replace_json(&doc) {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Fail(e),
        }
    }
}

ctrflow_plugin_sdk::export_transform!(JsonEdit);
