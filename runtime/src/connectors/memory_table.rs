//! The `csv` and `json` lookup tables for enrich plugins: files loaded into memory when the
//! pipeline is built, keyed by a column. (DynamoDB tables are in [`super::aws::lookup`].)
//!
//! A table answers [`Lookup::get`] with the row as a JSON object. CSV cells are strings,
//! as written; JSON rows keep their types. Keys are compared as text (a JSON number key
//! `7` is found by `"7"`). Each row's JSON text is written once, when the table is loaded,
//! so [`Lookup::get_json`] (what a plugin's lookup reads) copies it instead of serialising
//! the row on every call.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::contract::{Env, Lookup, LookupError, TableConnector};

/// `type = "csv"` / `type = "json"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileTableOptions {
    /// The file, relative to the pipeline file.
    pub path: String,
    /// The column (CSV) or field (JSON) rows are found by.
    pub key: String,
}

/// `type = "csv"`: a CSV file with a header row.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(transparent)]
pub struct CsvTable(pub FileTableOptions);

/// `type = "json"`: a JSON array of objects, or JSON lines.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(transparent)]
pub struct JsonTable(pub FileTableOptions);

impl TableConnector for CsvTable {
    fn open(&self, env: &Env) -> Result<Arc<dyn Lookup>, String> {
        Ok(Arc::new(MemoryTable::csv(&self.0, env)?))
    }
}

impl TableConnector for JsonTable {
    fn open(&self, env: &Env) -> Result<Arc<dyn Lookup>, String> {
        Ok(Arc::new(MemoryTable::json(&self.0, env)?))
    }
}

/// An in-memory table.
#[derive(Debug, Default)]
pub struct MemoryTable {
    rows: HashMap<String, Row>,
}

/// A row and its JSON text, written once at load.
#[derive(Debug)]
struct Row {
    value: Value,
    text: Box<str>,
}

impl Row {
    fn new(value: Value) -> Self {
        let text = serde_json::to_string(&value).unwrap_or_default().into_boxed_str();
        Row { value, text }
    }
}

impl MemoryTable {
    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Loads a CSV file with a header row.
    pub fn csv(cfg: &FileTableOptions, env: &Env) -> Result<Self, String> {
        let path = env.resolve(&cfg.path);
        let mut reader =
            csv::Reader::from_path(&path).map_err(|e| format!("path: cannot read {}: {e}", path.display()))?;
        let headers = reader.headers().map_err(|e| format!("path: {}: {e}", path.display()))?.clone();
        let key_index = headers.iter().position(|h| h == cfg.key).ok_or_else(|| {
            format!(
                "key: column {:?} is not in {} (columns: {})",
                cfg.key,
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })?;
        let mut rows = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| format!("path: {} row {}: {e}", path.display(), i + 2))?;
            let mut row = Map::new();
            for (h, v) in headers.iter().zip(record.iter()) {
                row.insert(h.to_string(), Value::String(v.to_string()));
            }
            if let Some(key) = record.get(key_index) {
                rows.insert(key.to_string(), Row::new(Value::Object(row)));
            }
        }
        Ok(MemoryTable { rows })
    }

    /// Loads a JSON array of objects, or JSON lines.
    pub fn json(cfg: &FileTableOptions, env: &Env) -> Result<Self, String> {
        let path = env.resolve(&cfg.path);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("path: cannot read {}: {e}", path.display()))?;
        let items: Vec<Value> = if text.trim_start().starts_with('[') {
            serde_json::from_str(&text).map_err(|e| format!("path: {} is not a JSON array: {e}", path.display()))?
        } else {
            serde_json::Deserializer::from_str(&text)
                .into_iter::<Value>()
                .collect::<Result<_, _>>()
                .map_err(|e| format!("path: {}: {e}", path.display()))?
        };
        Ok(MemoryTable::from_rows(items, &cfg.key))
    }

    /// A table of rows given as JSON objects, keyed by their field `key` (rows without it
    /// are left out). `ctrflow test` uses it for rows written inline in a test.
    pub fn from_rows(items: Vec<Value>, key: &str) -> Self {
        let mut rows = HashMap::new();
        for item in items {
            let key = match item.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => continue,
                Some(other) => other.to_string(),
            };
            rows.insert(key, Row::new(item));
        }
        MemoryTable { rows }
    }
}

impl Lookup for MemoryTable {
    fn get(&self, _table: &str, key: &str) -> Result<Option<Value>, LookupError> {
        Ok(self.rows.get(key).map(|row| row.value.clone()))
    }

    fn get_json(&self, _table: &str, key: &str) -> Result<Option<String>, LookupError> {
        Ok(self.rows.get(key).map(|row| row.text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_kept_text_is_the_row_serialised() {
        let t = MemoryTable::from_rows(vec![serde_json::json!({"k": "a", "n": 7, "o": {"x": [1, "é"]}})], "k");
        let text = t.get_json("t", "a").unwrap().expect("the row");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), t.get("t", "a").unwrap().unwrap());
        assert_eq!(t.get_json("t", "b").unwrap(), None);
    }

    fn repo() -> (crate::config::AwsConfig, &'static std::path::Path) {
        (crate::config::AwsConfig::default(), std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")))
    }

    #[test]
    fn the_demo_agents_csv_loads_keyed_by_username() {
        let cfg = FileTableOptions { path: "pipelines/data/agents.csv".into(), key: "username".into() };
        let (aws, base_dir) = repo();
        let t = MemoryTable::csv(&cfg, &Env { id: "agents", base_dir, aws: &aws }).unwrap();
        assert_eq!(t.len(), 40);
        let row = t.get("agents", "agent001").unwrap().unwrap();
        assert!(row.get("full_name").is_some());
    }

    #[test]
    fn a_missing_key_column_names_the_columns() {
        let cfg = FileTableOptions { path: "pipelines/data/agents.csv".into(), key: "user".into() };
        let (aws, base_dir) = repo();
        let err = MemoryTable::csv(&cfg, &Env { id: "agents", base_dir, aws: &aws }).unwrap_err();
        assert!(err.starts_with("key:") && err.contains("username"), "{err}");
    }
}
