//! The `batch` interface: the host-held records of the current call, which a plugin reads
//! and edits by index and resolved path.
//!
//! Edits are made in place (`Arc::make_mut`, so a record shared by fan-out is copied on
//! its first edit, and only then) and logged for undo: when a call traps half-way, the
//! host rolls the batch back before it retries the records one by one, so no record is
//! processed from a half-edited state. The log holds the values the edits replaced, moved
//! out rather than cloned, which keeps the cost of an edit to one `Vec` push.

use std::sync::Arc;

use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::Value as Json;

use super::bindings::Value;
use super::bindings::transform::ctrflow::plugin::{batch, types};
use super::state::PluginState;
use crate::record::Record;

/// The batch lent to a plugin for one call.
pub struct Batch {
    pub(crate) records: Vec<Record>,
    undo: Vec<Undo>,
    max_output_bytes: usize,
    /// Records whose replacement the host refused for size: they fail as
    /// `output_too_large`, whatever the plugin then decides.
    pub(crate) oversized: Vec<u32>,
}

enum Undo {
    /// Put `old` back in the slot `depth` segments deep along path `path` (or remove the
    /// slot when `old` is `None`).
    Field { index: u32, path: u32, depth: usize, old: Option<Json> },
    /// Put the whole document back.
    Doc { index: u32, old: Arc<Json> },
}

impl Batch {
    pub(crate) fn new(records: Vec<Record>, max_output_bytes: usize) -> Self {
        Batch { records, undo: Vec::new(), max_output_bytes, oversized: Vec::new() }
    }

    /// Rolls back every edit of the call, newest first, and returns the records. `paths`
    /// are the instance's resolved paths (undo entries name them by id).
    pub(crate) fn rollback(mut self, paths: &[FieldPath]) -> Vec<Record> {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Field { index, path, depth, old } => {
                    let Some(full) = paths.get(path as usize) else { continue };
                    // Rare (traps only): building the prefix path here keeps `set` lean.
                    let slot = if depth == full.segments().len() { full.clone() } else { full.prefix(depth) };
                    let doc = Arc::make_mut(&mut self.records[index as usize].doc);
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
        self.records
    }

    /// The records, keeping the edits.
    pub(crate) fn into_records(self) -> Vec<Record> {
        self.records
    }

    fn doc(&self, index: u32) -> Option<&Json> {
        self.records.get(index as usize).map(|r| &*r.doc)
    }
}

/// Converts a JSON value to the contract's typed value.
pub fn to_wit(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.to_string()),
    }
}

/// Converts the contract's typed value to JSON.
pub fn from_wit(value: Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => Json::from(i),
        Value::Float(f) => serde_json::Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null),
        Value::Text(s) => Json::String(s),
        Value::Json(text) => serde_json::from_str(&text).map_err(|e| format!("invalid JSON value: {e}"))?,
    })
}

impl types::Host for PluginState {}

impl PluginState {
    fn doc(&self, index: u32) -> Option<&Json> {
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
        let path = self.paths.get(path as usize)?;
        path.get(self.doc(index)?).map(to_wit)
    }

    fn set(&mut self, index: u32, path: u32, value: Value) -> Result<(), String> {
        // Borrow the paths and the batch apart, so the path is not cloned per call.
        let PluginState { paths, batch, .. } = self;
        let field = paths.get(path as usize).ok_or("unknown path id")?;
        let value = from_wit(value)?;
        let b = batch.as_mut().ok_or("no batch outside process/encode")?;
        let record = b.records.get_mut(index as usize).ok_or("record index out of range")?;
        let replaced = field.set_tracked(Arc::make_mut(&mut record.doc), value).map_err(|e| e.to_string())?;
        b.undo.push(Undo::Field { index, path, depth: replaced.depth, old: replaced.old });
        Ok(())
    }

    fn remove(&mut self, index: u32, path: u32) -> Option<Value> {
        let PluginState { paths, batch, .. } = self;
        let field = paths.get(path as usize)?;
        let b = batch.as_mut()?;
        let record = b.records.get_mut(index as usize)?;
        if field.in_array(&record.doc) {
            // Removing an array element shifts the rest, which a field-level undo cannot
            // express: keep the document as it was (the copy-on-write below copies it).
            field.get(&record.doc)?;
            let before = record.doc.clone();
            let removed = field.remove(Arc::make_mut(&mut record.doc))?;
            b.undo.push(Undo::Doc { index, old: before });
            return Some(to_wit(&removed));
        }
        let removed = field.remove(Arc::make_mut(&mut record.doc))?;
        let wit = to_wit(&removed);
        b.undo.push(Undo::Field { index, path, depth: field.segments().len(), old: Some(removed) });
        Some(wit)
    }

    fn to_json(&mut self, index: u32) -> String {
        self.doc(index).map(Json::to_string).unwrap_or_default()
    }

    fn set_json(&mut self, index: u32, json: String) -> Result<(), String> {
        let b = self.batch.as_mut().ok_or("no batch outside process/encode")?;
        if json.len() > b.max_output_bytes {
            b.oversized.push(index);
            return Err(format!(
                "record of {} bytes exceeds the node's max_output of {} bytes",
                json.len(),
                b.max_output_bytes
            ));
        }
        let doc: Json = serde_json::from_str(&json).map_err(|e| format!("invalid JSON: {e}"))?;
        if !doc.is_object() {
            return Err("a record must be a JSON object".into());
        }
        let record = b.records.get_mut(index as usize).ok_or("record index out of range")?;
        let old = std::mem::replace(&mut record.doc, Arc::new(doc));
        b.undo.push(Undo::Doc { index, old });
        Ok(())
    }
}
