//! `ctrflow schema`: the generated JSON Schema validates every pipeline in `pipelines/` (as
//! read, after `${VAR}` interpolation), refuses what `validate` refuses for its keys, and
//! the copy editors use (`docs/pipeline.schema.json`) is the generated one.
//!
//! The validator is Python's `jsonschema`, from the virtual environment `cargo xtask moto`
//! installs (moto depends on it), so a fresh machine has it.

use std::path::{Path, PathBuf};

use ctrflow_tests::{ctrflow, repo_root, temp_dir};
use serde_json::{Value, json};

fn schema() -> Value {
    let out = ctrflow(&repo_root(), &["schema"]);
    assert!(out.success, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("ctrflow schema prints JSON")
}

/// A pipeline's text as the runtime reads it: interpolated (defaults), as JSON.
fn as_json(text: &str) -> Value {
    let table = ctrflow::config::interpolate(text, &|_| None).expect("the pipeline interpolates");
    serde_json::to_value(&table).unwrap()
}

/// Validates each document; returns, per name, the validator's messages (none: valid).
fn validate(schema: &Value, documents: &[(String, Value)]) -> Value {
    let dir = temp_dir("schema");
    std::fs::write(dir.join("schema.json"), schema.to_string()).unwrap();
    let docs: serde_json::Map<String, Value> = documents.iter().cloned().collect();
    std::fs::write(dir.join("docs.json"), Value::Object(docs).to_string()).unwrap();
    let python = crate::moto::server_path().with_file_name("python3");
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
docs = json.load(open(sys.argv[2]))
print(json.dumps({name: [e.message for e in v.iter_errors(doc)] for name, doc in docs.items()}))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(dir.join("schema.json"))
        .arg(dir.join("docs.json"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask moto` to install it)", python.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pipelines() -> Vec<PathBuf> {
    ctrflow_tests::example_pipelines()
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_schema_validates_every_example_pipeline() {
    let docs: Vec<(String, Value)> =
        pipelines().iter().map(|p| (name(p), as_json(&std::fs::read_to_string(p).unwrap()))).collect();
    assert!(docs.len() >= 4);
    let results = validate(&schema(), &docs);
    for (name, _) in &docs {
        assert_eq!(results[name], json!([]), "{name} does not validate against the schema");
    }
}

#[test]
fn the_schema_refuses_misspelt_keys_wrong_types_and_unknown_connectors() {
    let demo = std::fs::read_to_string(repo_root().join("pipelines/local-demo.toml")).unwrap();
    let bad = |from: &str, to: &str| {
        assert!(demo.contains(from), "{from}");
        as_json(&demo.replacen(from, to, 1))
    };
    let docs = vec![
        ("misspelt sink key".to_string(), bad("table = \"voice\"", "tabel = \"voice\"")),
        ("unknown sink type".to_string(), bad("type = \"sqlite\"", "type = \"sqlit\"")),
        ("wrong mode".to_string(), bad("mode = \"newer-wins\"", "mode = \"put\"")),
        ("count as text".to_string(), bad("count = ${DEMO_COUNT:-5000}", "count = \"many\"")),
        ("misspelt transform key".to_string(), bad("inputs = [\"contacts\"]", "input = [\"contacts\"]")),
        ("bad on_error".to_string(), bad("[transforms.flatten]", "[transforms.flatten]\non_error = \"ignore\"")),
        ("unknown section".to_string(), bad("[runtime]", "[runtim]")),
    ];
    let results = validate(&schema(), &docs);
    for (name, _) in &docs {
        let errors = results[name].as_array().unwrap();
        assert!(!errors.is_empty(), "the schema accepted the pipeline with a {name}");
    }
}

#[test]
fn the_committed_copy_is_the_generated_schema() {
    let committed = repo_root().join("docs/pipeline.schema.json");
    let text = std::fs::read_to_string(&committed).unwrap_or_default();
    let generated = ctrflow(&repo_root(), &["schema"]).stdout;
    assert!(
        text == generated,
        "{} is stale: regenerate it with `ctrflow schema > docs/pipeline.schema.json`",
        committed.display()
    );
}

#[test]
fn every_connector_type_has_a_branch() {
    let s = schema();
    let branches = |section: &str| -> Vec<String> {
        s["properties"][section]["additionalProperties"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["properties"]["type"]["const"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(branches("sources").len(), ctrflow::connectors::registry::SOURCES.len());
    assert_eq!(branches("sinks").len(), ctrflow::connectors::registry::SINKS.len());
    assert_eq!(branches("tables").len(), ctrflow::connectors::registry::TABLES.len());
    assert!(branches("sinks").contains(&"sqlite".to_string()));
    // A sink branch carries the keys every sink has, with their descriptions.
    let sqlite = &s["properties"]["sinks"]["additionalProperties"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["title"] == "sqlite")
        .unwrap()["properties"];
    assert!(sqlite["inputs"].is_object() && sqlite["linger"].is_object() && sqlite["path"].is_object(), "{sqlite}");
}
