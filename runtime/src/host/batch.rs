//! The WIT `batch` interface: the host-held records of the current call, which a plugin
//! reads and edits by index and resolved path.
//!
//! Edits are made in place (`Doc::make_mut`, so a record shared by fan-out is copied on
//! its first edit, and only then) and logged for undo: when a call traps half-way, the
//! host rolls the batch back before it retries the records one by one, so no record is
//! processed from a half-edited state. The log holds the values the edits replaced, moved
//! out rather than cloned, which keeps the cost of an edit to one `Vec` push.
//!
//! What a plugin can make the host keep is bounded per record: every edit is charged
//! against the node's `max_output` (a `set` by the size of its value, a `set-json` by its
//! text, any edit at least [`EDIT_MIN_BYTES`]); the edit that passes it is refused and the
//! record fails as `output_too_large`. Once a record's whole document has been saved for
//! undo (by `set-json` or an array `remove`), later edits of it log nothing more, since
//! restoring that copy undoes them all. So the undo log of a batch of `n` records holds at
//! most about `n` × (record + `max_output`) bytes, whatever the plugin does.

use ctrflow_plugin_sdk::flatten::Arrays;
use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::Value as Json;

use super::bindings::Value;
use super::bindings::transform::ctrflow::plugin::batch;
use super::bindings::transform::ctrflow::plugin::types::Field;
use super::state::PluginState;
use super::values::{approx_size, from_wit, to_wit};
use crate::doc::Doc;
use crate::record::Record;

/// The least an edit is charged against `max_output`, in bytes: what one undo entry
/// costs the host, so a flood of tiny edits is bounded too.
pub const EDIT_MIN_BYTES: usize = 64;

/// The batch lent to a plugin for one call.
pub struct PluginBatch {
    pub(crate) records: Vec<Record>,
    undo: Vec<Undo>,
    max_output_bytes: usize,
    /// Per record: the bytes its edits have been charged in this call.
    charged: Vec<usize>,
    /// Per record: whether its whole document is already saved in the undo log.
    saved_whole: Vec<bool>,
    /// Records whose edit the host refused for size: they fail as `output_too_large`,
    /// whatever the plugin then decides.
    pub(crate) oversized: Vec<u32>,
}

enum Undo {
    /// Put `old` back in the slot `depth` segments deep along path `path` (or remove the
    /// slot when `old` is `None`).
    Field { index: u32, path: u32, depth: usize, old: Option<Json> },
    /// Put the whole document back.
    Doc { index: u32, old: Doc },
}

impl PluginBatch {
    pub(crate) fn new(records: Vec<Record>, max_output_bytes: usize) -> Self {
        let n = records.len();
        PluginBatch {
            records,
            undo: Vec::new(),
            max_output_bytes,
            charged: vec![0; n],
            saved_whole: vec![false; n],
            oversized: Vec::new(),
        }
    }

    /// Rolls back every edit of the call, newest first, and returns the records. `paths`
    /// are the instance's resolved paths (undo entries name them by id).
    pub(crate) fn rollback(mut self, paths: &[FieldPath]) -> Vec<Record> {
        self.undo_where(paths, |_| true);
        self.records
    }

    /// The records, keeping the edits except those of the records the host refused for
    /// size, which come back as they went in (to be dead-lettered whole).
    pub(crate) fn into_records(mut self, paths: &[FieldPath]) -> Vec<Record> {
        if !self.oversized.is_empty() {
            let oversized = std::mem::take(&mut self.oversized);
            self.undo_where(paths, |i| oversized.contains(&i));
        }
        self.records
    }

    /// Undoes the edits of the records `which` selects, newest first. An edit touches only
    /// its own record, so undoing some records' edits leaves the others' intact.
    fn undo_where(&mut self, paths: &[FieldPath], which: impl Fn(u32) -> bool) {
        for undo in std::mem::take(&mut self.undo).into_iter().rev() {
            let index = match &undo {
                Undo::Field { index, .. } | Undo::Doc { index, .. } => *index,
            };
            if !which(index) {
                continue;
            }
            match undo {
                Undo::Field { index, path, depth, old } => {
                    let Some(full) = paths.get(path as usize) else { continue };
                    // Rare (traps only): building the prefix path here keeps `set` lean.
                    let slot = if depth == full.segments().len() { full.clone() } else { full.prefix(depth) };
                    let doc = self.records[index as usize].doc.make_mut();
                    match old {
                        Some(v) => {
                            let _ = slot.set(doc, v);
                        }
                        None => {
                            slot.remove(doc);
                        }
                    }
                }
                Undo::Doc { index, old } => self.records[index as usize].doc = old,
            }
        }
    }

    /// How many entries the undo log holds (for the tests of its bound).
    #[cfg(test)]
    fn undo_len(&self) -> usize {
        self.undo.len()
    }

    fn doc(&self, index: u32) -> Option<&Doc> {
        self.records.get(index as usize).map(|r| &r.doc)
    }

    /// Charges an edit of `bytes` to record `index`; refuses it (and marks the record
    /// oversized) when the record's edits would pass `max_output`.
    fn charge(&mut self, index: u32, bytes: usize) -> Result<(), String> {
        let i = index as usize;
        let Some(charged) = self.charged.get_mut(i) else { return Err("record index out of range".into()) };
        let total = charged.saturating_add(bytes.max(EDIT_MIN_BYTES));
        if total > self.max_output_bytes {
            if !self.oversized.contains(&index) {
                self.oversized.push(index);
            }
            return Err(format!(
                "this edit takes the record's edits to {total} bytes, over the node's max_output of {} bytes",
                self.max_output_bytes
            ));
        }
        *charged = total;
        Ok(())
    }

    /// Logs an undo entry, unless the record's whole document is already saved.
    fn log(&mut self, index: u32, undo: Undo) {
        if self.saved_whole[index as usize] {
            return;
        }
        if matches!(undo, Undo::Doc { .. }) {
            self.saved_whole[index as usize] = true;
        }
        self.undo.push(undo);
    }
}

impl PluginState {
    fn doc(&self, index: u32) -> Option<&Doc> {
        self.batch.as_ref()?.doc(index)
    }
}

/// Every call names the batch implicitly: it is the one the host lent for the current
/// `process` / `encode` (none outside it, and then every call finds nothing).
impl batch::Host for PluginState {
    fn len(&mut self) -> u32 {
        self.batch.as_ref().map_or(0, |b| b.records.len() as u32)
    }

    fn get(&mut self, index: u32, path: u32) -> Option<Value> {
        let path = self.paths.get(path)?;
        // `Doc::field`: one field of a flattened record is read from its text.
        self.doc(index)?.field(path).map(|value| to_wit(&value))
    }

    fn set(&mut self, index: u32, path: u32, value: Value) -> Result<(), String> {
        // Borrow the paths and the batch apart, so the path is not cloned per call.
        let PluginState { paths, batch, .. } = self;
        let field = paths.get(path).ok_or("unknown path id")?;
        let b = batch.as_mut().ok_or("no batch outside process/encode")?;
        b.charge(index, approx_size(&value))?;
        let value = from_wit(value)?;
        let record = b.records.get_mut(index as usize).ok_or("record index out of range")?;
        let replaced = field.set_tracked(record.doc.make_mut(), value).map_err(|e| e.to_string())?;
        b.log(index, Undo::Field { index, path, depth: replaced.depth, old: replaced.old });
        Ok(())
    }

    fn remove(&mut self, index: u32, path: u32) -> Option<Value> {
        let PluginState { paths, batch, .. } = self;
        let field = paths.get(path)?;
        let b = batch.as_mut()?;
        let record = b.records.get(index as usize)?;
        field.get(&record.doc)?;
        b.charge(index, EDIT_MIN_BYTES).ok()?;
        let record = &mut b.records[index as usize];
        if field.in_array(&record.doc) {
            // Removing an array element shifts the rest, which a field-level undo cannot
            // express: keep the document as it was (the copy-on-write below copies it).
            // (Once the document is saved, no copy is needed: that copy undoes this too.)
            let before = (!b.saved_whole[index as usize]).then(|| record.doc.clone());
            let removed = field.remove(record.doc.make_mut())?;
            if let Some(old) = before {
                b.log(index, Undo::Doc { index, old });
            }
            return Some(to_wit(&removed));
        }
        let removed = field.remove(record.doc.make_mut())?;
        let wit = to_wit(&removed);
        b.log(index, Undo::Field { index, path, depth: field.segments().len(), old: Some(removed) });
        Some(wit)
    }

    fn to_json(&mut self, index: u32) -> String {
        let Some(doc) = self.doc(index) else { return String::new() };
        let mut out = Vec::new();
        doc.write_json(&mut out);
        String::from_utf8(out).expect("JSON text written from str is UTF-8")
    }

    fn set_json(&mut self, index: u32, json: String) -> Result<(), String> {
        let b = self.batch.as_mut().ok_or("no batch outside process/encode")?;
        if json.len() > b.max_output_bytes {
            if (index as usize) < b.records.len() && !b.oversized.contains(&index) {
                b.oversized.push(index);
            }
            return Err(format!(
                "record of {} bytes exceeds the node's max_output of {} bytes",
                json.len(),
                b.max_output_bytes
            ));
        }
        b.charge(index, json.len())?;
        let doc: Json = serde_json::from_str(&json).map_err(|e| format!("invalid JSON: {e}"))?;
        if !doc.is_object() {
            return Err("a record must be a JSON object".into());
        }
        let record = b.records.get_mut(index as usize).ok_or("record index out of range")?;
        let old = std::mem::replace(&mut record.doc, Doc::new(doc));
        b.log(index, Undo::Doc { index, old });
        Ok(())
    }

    fn walk(&mut self, index: u32) -> Vec<Field> {
        let mut out = Vec::new();
        if let Some(Json::Object(object)) = self.doc(index).map(|d| &**d) {
            walk_into(&mut out, object, 0);
        }
        out
    }

    fn set_fields(&mut self, index: u32, fields: Vec<(String, Value)>) -> Result<(), String> {
        let b = self.batch.as_mut().ok_or("no batch outside process/encode")?;
        // Charged as the JSON text of the object would be: keys, quotes, colons, commas.
        let bytes = fields.iter().map(|(k, v)| k.len() + 4 + approx_size(v)).sum::<usize>() + 2;
        b.charge(index, bytes)?;
        // Collected, not inserted one by one: a map built from an iterator sorts once and
        // builds its tree in bulk (cheap for the key-ordered fields `walk` users send back),
        // keeping the last of duplicate keys, as the contract says.
        let object = fields
            .into_iter()
            .map(|(key, value)| Ok((key, from_wit(value)?)))
            .collect::<Result<serde_json::Map<String, Json>, String>>()?;
        let record = b.records.get_mut(index as usize).ok_or("record index out of range")?;
        let old = std::mem::replace(&mut record.doc, Doc::new(Json::Object(object)));
        b.log(index, Undo::Doc { index, old });
        Ok(())
    }

    fn flatten(&mut self, index: u32, separator: String, arrays: batch::ArrayColumns) -> Result<(), String> {
        let b = self.batch.as_mut().ok_or("no batch outside process/encode")?;
        let record = b.records.get(index as usize).ok_or("record index out of range")?;
        let Json::Object(object) = &*record.doc else { return Err("a record must be a JSON object".into()) };
        if separator.is_empty() {
            // `Agent` + `Username` and `AgentU` + `sername` would collide unnoticed.
            return Err("the separator is empty".into());
        }
        let arrays = match arrays {
            batch::ArrayColumns::Json => Arrays::Json,
            batch::ArrayColumns::First => Arrays::First,
        };
        // Written straight to JSON text: no column becomes a string or a copied value of
        // its own, and a sink that writes JSON copies the text as it is (`Doc`).
        let flat = Doc::flatten(object, &separator, arrays)?;
        b.charge(index, flat.text().map_or(0, <[u8]>::len))?;
        let record = &mut b.records[index as usize];
        let old = std::mem::replace(&mut record.doc, flat);
        b.log(index, Undo::Doc { index, old });
        Ok(())
    }
}

/// Appends the fields of `object`, `depth` deep, and of its objects below them, depth first.
fn walk_into(out: &mut Vec<Field>, object: &serde_json::Map<String, Json>, depth: u32) {
    for (key, value) in object {
        match value {
            Json::Object(inner) => {
                out.push(Field { depth, key: key.clone(), value: None });
                walk_into(out, inner, depth + 1);
            }
            other => out.push(Field { depth, key: key.clone(), value: Some(to_wit(other)) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn batch_of(n: usize, max_output: usize) -> PluginBatch {
        PluginBatch::new((0..n).map(|i| Record::detached(json!({"i": i, "a": [1, 2, 3]}))).collect(), max_output)
    }

    #[test]
    fn set_fields_collects_keeping_the_last_of_duplicate_keys() {
        // `set-fields` builds its object with `collect`; the contract says a later duplicate wins.
        let fields = [("b", json!(1)), ("a", json!(2)), ("b", json!(3))].map(|(k, v)| (k.to_string(), v));
        let object: serde_json::Map<String, Json> = fields.into_iter().collect();
        assert_eq!(Json::Object(object), json!({"a": 2, "b": 3}));
    }

    #[test]
    fn edits_past_max_output_are_refused_and_the_log_stays_bounded() {
        let mut b = batch_of(2, 10 * EDIT_MIN_BYTES);
        for _ in 0..10 {
            b.charge(0, 1).unwrap();
        }
        assert!(b.charge(0, 1).is_err(), "the 11th minimal edit passes max_output");
        assert_eq!(b.oversized, vec![0]);
        assert!(b.charge(1, 1).is_ok(), "the budget is per record");
        assert!(b.charge(7, 1).is_err(), "out of range");
    }

    #[test]
    fn once_the_whole_document_is_saved_edits_log_nothing_more() {
        let mut b = batch_of(1, 1 << 20);
        let old = b.records[0].doc.clone();
        b.log(0, Undo::Doc { index: 0, old });
        for _ in 0..1000 {
            b.log(0, Undo::Field { index: 0, path: 0, depth: 1, old: None });
            b.log(0, Undo::Doc { index: 0, old: Doc::new(json!({})) });
        }
        assert_eq!(b.undo_len(), 1);
    }
}
