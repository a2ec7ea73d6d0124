//! Field paths: parsing, and the set-then-undo the host performs when a plugin traps
//! (`FieldPath::set_tracked`, then `prefix(depth)` set back or removed). The input is a
//! path, a line break, and a JSON object. Checks: after a successful set the path reads
//! the value set; undoing restores the document exactly; a failed set changes nothing.
#![no_main]

use ctrflow_plugin_sdk::path::FieldPath;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, doc) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(path) = FieldPath::parse(path) else { return };
    assert!(!path.segments().is_empty());
    let Ok(original @ Value::Object(_)) = serde_json::from_str::<Value>(doc) else { return };
    let _ = path.get(&original);
    let _ = path.in_array(&original);

    let marker = json!({"fuzz-marker": true});
    let mut doc = original.clone();
    match path.set_tracked(&mut doc, marker.clone()) {
        Ok(replaced) => {
            assert_eq!(path.get(&doc), Some(&marker), "{path} reads what was set");
            let slot = path.prefix(replaced.depth);
            match replaced.old {
                Some(old) => slot.set(&mut doc, old).expect("undo sets the old value back"),
                None => {
                    slot.remove(&mut doc).expect("undo removes what the set created");
                }
            }
            assert_eq!(doc, original, "undoing a set of {path} restores the document");
        }
        Err(_) => assert_eq!(doc, original, "a failed set of {path} changes nothing"),
    }

    let mut doc = original.clone();
    if let Some(removed) = path.remove(&mut doc) {
        assert_eq!(path.get(&original), Some(&removed), "remove returns what get saw");
    }
});
