//! [`Record`]: one record of a batch, as a plugin sees it.
//!
//! In a plugin running in the host, a `Record` is an index into the host-held batch (the
//! WIT `batch` interface) and
//! every read or write is one call across the boundary with a typed value, so the record
//! is never copied whole. In a native `cargo test` it wraps a `serde_json::Value` and walks
//! it with the same [`crate::path`] code the host uses.

use crate::{Error, Field, Path, Value, ctr};

/// One record, reached through [`Path`]s.
pub struct Record<'a> {
    inner: Inner<'a>,
}

#[cfg(target_arch = "wasm32")]
struct Inner<'a> {
    index: u32,
    _batch: std::marker::PhantomData<&'a ()>,
}

#[cfg(target_arch = "wasm32")]
use crate::bindings::enrich::ctrflow::plugin::batch;

#[cfg(not(target_arch = "wasm32"))]
struct Inner<'a> {
    json: &'a mut serde_json::Value,
}

impl<'a> Record<'a> {
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn in_batch(index: u32) -> Self {
        Record { inner: Inner { index, _batch: std::marker::PhantomData } }
    }

    /// Wraps a JSON record, for native tests (see [`crate::testing`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn native(json: &'a mut serde_json::Value) -> Self {
        Record { inner: Inner { json } }
    }

    /// The value at `path`, or `None` when a segment is missing.
    pub fn get(&self, path: &Path) -> Option<Value> {
        #[cfg(target_arch = "wasm32")]
        return batch::get(self.inner.index, path.id);
        #[cfg(not(target_arch = "wasm32"))]
        return path.field.get(self.inner.json).map(Value::from_json);
    }

    /// The text at `path`, when it is a string.
    pub fn get_str(&self, path: &Path) -> Option<String> {
        match self.get(path)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value at `path` as JSON.
    pub fn get_json(&self, path: &Path) -> Option<serde_json::Value> {
        self.get(path).map(|v| v.to_json())
    }

    /// Sets the value at `path`, creating missing objects on the way.
    pub fn set(&mut self, path: &Path, value: impl Into<Value>) -> Result<(), Error> {
        let value = value.into();
        #[cfg(target_arch = "wasm32")]
        return batch::set(self.inner.index, path.id, &value).map_err(Error::bad_record);
        #[cfg(not(target_arch = "wasm32"))]
        return path.field.set(self.inner.json, value.to_json()).map_err(|e| Error::bad_record(e.to_string()));
    }

    /// Removes the value at `path`, returning it.
    pub fn remove(&mut self, path: &Path) -> Option<Value> {
        #[cfg(target_arch = "wasm32")]
        return batch::remove(self.inner.index, path.id);
        #[cfg(not(target_arch = "wasm32"))]
        return path.field.remove(self.inner.json).map(|v| Value::from_json(&v));
    }

    /// The whole record as JSON. This copies the record across the boundary: prefer
    /// [`Record::get`] on the per-record path.
    pub fn to_json(&self) -> serde_json::Value {
        #[cfg(target_arch = "wasm32")]
        return serde_json::from_str(&batch::to_json(self.inner.index)).unwrap_or(serde_json::Value::Null);
        #[cfg(not(target_arch = "wasm32"))]
        return self.inner.json.clone();
    }

    /// Replaces the whole record (it must be a JSON object).
    pub fn replace_json(&mut self, json: &serde_json::Value) -> Result<(), Error> {
        if !json.is_object() {
            return Err(Error::bad_record("a record must be a JSON object"));
        }
        #[cfg(target_arch = "wasm32")]
        return batch::set_json(self.inner.index, &json.to_string()).map_err(Error::bad_record);
        #[cfg(not(target_arch = "wasm32"))]
        {
            *self.inner.json = json.clone();
            Ok(())
        }
    }

    /// Every field of the record, depth first, each object's fields in key order: the whole
    /// record without a JSON round trip. An object is a [`Field`] without a value, its
    /// fields following one level deeper; arrays come whole as [`Value::Json`].
    pub fn walk(&self) -> Vec<Field> {
        #[cfg(target_arch = "wasm32")]
        return batch::walk(self.inner.index);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut out = Vec::new();
            if let Some(object) = self.inner.json.as_object() {
                walk_into(&mut out, object, 0);
            }
            out
        }
    }

    /// Replaces the whole record with an object of these fields, in this order (a later
    /// duplicate key wins): a new record without a JSON round trip.
    pub fn set_fields(&mut self, fields: &[(String, Value)]) -> Result<(), Error> {
        #[cfg(target_arch = "wasm32")]
        return batch::set_fields(self.inner.index, fields).map_err(Error::bad_record);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let object = fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            *self.inner.json = serde_json::Value::Object(object);
            Ok(())
        }
    }

    /// Replaces the record with its flat form (see [`crate::flatten`]): nested objects'
    /// fields become `Parent<separator>Child` columns, sorted. The host does the work, so no
    /// field crosses the boundary. On a collision the record stays as it was and the error
    /// (a bad record) names the column.
    pub fn flatten(&mut self, separator: &str, arrays: crate::flatten::Arrays) -> Result<(), Error> {
        #[cfg(target_arch = "wasm32")]
        {
            let arrays = match arrays {
                crate::flatten::Arrays::Json => batch::ArrayColumns::Json,
                crate::flatten::Arrays::First => batch::ArrayColumns::First,
            };
            return batch::flatten(self.inner.index, separator, arrays).map_err(Error::bad_record);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let Some(object) = self.inner.json.as_object() else {
                return Err(Error::bad_record("a record must be a JSON object"));
            };
            let flat = crate::flatten::flatten(object, separator, arrays).map_err(Error::bad_record)?;
            *self.inner.json = serde_json::Value::Object(flat);
            Ok(())
        }
    }

    /// The record as the typed contact trace record model (a whole-record copy).
    pub fn ctr(&self) -> Result<ctr::ContactTraceRecord, Error> {
        ctr::ContactTraceRecord::from_value(self.to_json()).map_err(|e| Error::bad_record(e.to_string()))
    }
}

/// The native [`Record::walk`]: the host's walk, over a JSON object.
#[cfg(not(target_arch = "wasm32"))]
fn walk_into(out: &mut Vec<Field>, object: &serde_json::Map<String, serde_json::Value>, depth: u32) {
    for (key, value) in object {
        match value {
            serde_json::Value::Object(inner) => {
                out.push(Field { depth, key: key.clone(), value: None });
                walk_into(out, inner, depth + 1);
            }
            other => out.push(Field { depth, key: key.clone(), value: Some(Value::from_json(other)) }),
        }
    }
}
