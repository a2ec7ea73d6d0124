//! The test file format (`pipelines/<name>.tests.toml`), read into plain structs. Nothing
//! here runs a pipeline; docs/testing-pipelines.md is the user's reference for every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// A whole test file: `[[tests]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The test cases, run in order, each on a freshly built pipeline.
    pub tests: Vec<TestCase>,
}

/// One `[[tests]]` case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What it shows, printed with its result.
    pub name: String,
    /// Tables answered by rows given here instead of their declaration.
    #[serde(default)]
    pub tables: BTreeMap<String, InlineTable>,
    /// Records put into nodes.
    pub inputs: Vec<Input>,
    /// What must be true of what came out.
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

/// `[tests.tables.<id>]`: rows for a declared table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineTable {
    /// The field rows are found by. Default: the declared table's `key`.
    pub key: Option<String>,
    /// The rows.
    pub rows: Vec<toml::Table>,
}

/// `[[tests.inputs]]`: records entering one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A source (the records are checked as it would check what it reads, then go to its
    /// readers), a transform or a sink (they enter its input).
    pub node: String,
    /// Records written inline.
    #[serde(default)]
    pub records: Vec<toml::Table>,
    /// A file of records (JSON lines, a JSON array, or concatenated documents), relative to
    /// the test file.
    pub file: Option<String>,
}

/// `[[tests.expect]]`: conditions on the records seen at one place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Where: a sink (what reached it), a transform (what left it, by any output),
    /// `node.output` (what left by that output), `dead_letters` or `dropped`.
    pub at: String,
    /// Only the records whose fields equal these (paths as keys).
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, toml::Value>,
    /// How many records (after `where`) must be there.
    pub count: Option<usize>,
    /// Fields every selected record must have, with these values.
    #[serde(default)]
    pub equals: BTreeMap<String, toml::Value>,
    /// Fields no selected record may have.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Fields every selected record must have, whatever their value.
    #[serde(default)]
    pub present: Vec<String>,
    /// For a sink with a plugin: fields of what the plugin encoded (`partition_key`,
    /// `sort_key`, `columns.<name>`, `payload`) and their values.
    #[serde(default)]
    pub encoded: BTreeMap<String, toml::Value>,
}

impl TestFile {
    /// Reads a test file; the error names the file and the key.
    pub fn load(path: &Path) -> Result<TestFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))
    }

    /// The sidecar test file of a pipeline: `x.toml` → `x.tests.toml`.
    pub fn sidecar(pipeline: &Path) -> PathBuf {
        let stem = pipeline.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        pipeline.with_file_name(format!("{stem}.tests.toml"))
    }
}

/// A TOML value as the JSON a record holds.
pub fn json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Reads a file of records: a JSON array, JSON lines, or documents one after another.
pub fn read_records(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(|e| format!("{} is not a JSON array: {e}", path.display()));
    }
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}
