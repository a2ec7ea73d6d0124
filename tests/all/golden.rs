//! Golden cases: `tests/golden/<case>/` holds `pipeline.toml`, `input.jsonl` and
//! `expected/`. The case is copied to a temporary directory and run; every file under
//! `expected/` must match what the run wrote under `out/`:
//! - `<name>.jsonl` ↔ `out/<name>.jsonl` (lines compared as JSON, in any order; volatile
//!   dead-letter fields `time`/`time_ms` removed);
//! - `<db>.<table>.rows.jsonl` ↔ the rows of `<table>` in `out/<db>.db`.
//!
//! On a mismatch the test prints both sides; re-bless with `CTRFLOW_BLESS=1 cargo xtask test`.

use std::path::Path;

use ctrflow_tests::{copy_dir, ctrflow, read_jsonl, repo_root, temp_dir};
use serde_json::Value;

fn normalise(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.remove("time");
        map.remove("time_ms");
        map.remove("_ctrflow_written_at");
        if let Some(Value::String(p)) = map.get_mut("position") {
            // Positions name the file by its temporary path; keep the offset only.
            if let Some((_, offset)) = p.rsplit_once(':') {
                *p = format!("input.jsonl:{offset}");
            }
        }
    }
    v
}

fn sorted(values: Vec<Value>) -> Vec<String> {
    let mut lines: Vec<String> = values.into_iter().map(|v| normalise(v).to_string()).collect();
    lines.sort();
    lines
}

fn sqlite_rows(db: &Path, table: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).expect("select");
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let rows = stmt
        .query_map([], |row| {
            let mut obj = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let v = match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(n) => Value::from(n),
                    rusqlite::types::ValueRef::Real(f) => Value::from(f),
                    rusqlite::types::ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                    rusqlite::types::ValueRef::Blob(b) => Value::String(format!("{b:?}")),
                };
                obj.insert(name.clone(), v);
            }
            Ok(Value::Object(obj))
        })
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

fn run_case(name: &str) {
    let case = repo_root().join("tests/golden").join(name);
    let dir = temp_dir(&format!("golden-{name}"));
    copy_dir(&case, &dir);
    let out = ctrflow(&dir, &["run", "pipeline.toml", "--quiet"]);
    assert!(out.success, "golden case {name} failed to run:\n{}", out.stderr);

    let bless = std::env::var_os("CTRFLOW_BLESS").is_some();
    let expected_dir = case.join("expected");
    let mut failures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&expected_dir)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with CTRFLOW_BLESS=1 after creating it)", expected_dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for expected_file in files {
        let file_name = expected_file.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        let actual: Vec<Value> = if let Some(stem) = file_name.strip_suffix(".rows.jsonl") {
            let (db, table) = stem.split_once('.').expect("<db>.<table>.rows.jsonl");
            sqlite_rows(&dir.join("out").join(format!("{db}.db")), table)
        } else {
            let path = dir.join("out").join(&file_name);
            if path.exists() { read_jsonl(&path) } else { Vec::new() }
        };
        let actual = sorted(actual);
        if bless {
            std::fs::write(&expected_file, actual.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("bless");
            continue;
        }
        let expected = sorted(read_jsonl(&expected_file));
        if expected != actual {
            failures.push(format!(
                "{name}/expected/{file_name} differs.\n--- expected\n{}\n+++ actual\n{}\n",
                expected.join("\n"),
                actual.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nIf the new output is right: CTRFLOW_BLESS=1 cargo xtask test",
        failures.join("\n")
    );
}

#[test]
fn golden_routing_sends_each_channel_to_its_output() {
    run_case("routing");
}

#[test]
fn golden_fan_out_keeps_the_raw_branch_unredacted() {
    run_case("fan-out");
}

#[test]
fn golden_newer_wins_keeps_the_newest_version_per_contact() {
    run_case("newer-wins");
}

#[test]
fn golden_dead_letters_record_kind_node_and_original_bytes() {
    run_case("dead-letters");
}
