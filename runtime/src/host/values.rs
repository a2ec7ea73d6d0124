//! The WIT `types` interface: its `value` converted to and from JSON. (`types` declares
//! no functions, so the host implements nothing else for it.)

use serde_json::Value as Json;

use super::bindings::Value;
use super::bindings::transform::ctrflow::plugin::types;
use super::state::PluginState;

impl types::Host for PluginState {}

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
        // The runtime's JSON writer, not `Display` (which writes through a `fmt::Formatter`).
        other => Value::Json(crate::json::to_string(other)),
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

/// About how many bytes a value adds to a record's JSON text; what the host charges an
/// edit against the node's `max_output` without serialising the record.
pub fn approx_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Boolean(_) => 5,
        Value::Integer(_) | Value::Float(_) => 20,
        Value::Text(s) => s.len() + 2,
        Value::Json(s) => s.len(),
    }
}
