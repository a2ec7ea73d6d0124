//! Test plugin: on records whose `Attributes.hostile` is `"huge"`, splits the record into
//! one 16 MiB record; on `"flood"`, into 100,000 records; on `"huge-set"`, replaces the
//! record with a 16 MiB one. Keeps every other record. The host must refuse the output
//! (the node's `max_output` / `max_split`) and go on.
use ctrflow_plugin_sdk::serde_json::{Value, json};
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Output {
    hostile: Path,
}

impl Transform for Output {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Output { hostile: init.path("Attributes.hostile")? })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        match record.get_str(&self.hostile).as_deref() {
            Some("huge") => Outcome::Split(vec![json!({"ContactId": "huge", "Blob": "x".repeat(16 << 20)})]),
            Some("flood") => {
                Outcome::Split((0..100_000).map(|i| json!({"ContactId": format!("f{i}")})).collect::<Vec<Value>>())
            }
            Some("huge-set") => {
                match record.replace_json(&json!({"ContactId": "huge", "Blob": "x".repeat(16 << 20)})) {
                    Ok(()) => Outcome::Keep,
                    Err(e) => Outcome::Fail(e),
                }
            }
            _ => Outcome::Keep,
        }
    }
}

ctrflow_plugin_sdk::export_transform!(Output);
