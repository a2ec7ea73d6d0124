//! Every example pipeline validates, and the hermetic ones run.

use ctrflow_tests::{copy_dir, ctrflow, ctrflow_with, repo_root, temp_dir};

/// The example pipelines' file names.
fn pipelines() -> Vec<String> {
    ctrflow_tests::example_pipelines().iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect()
}

/// Pipelines that need nothing outside the machine (no AWS).
fn hermetic(text: &str) -> bool {
    !["\"kinesis\"", "\"dynamodb\"", "\"firehose\"", "\"sns\"", "\"http\""]
        .iter()
        .any(|t| text.contains(&format!("type = {t}")))
}

#[test]
fn every_example_pipeline_opens_with_a_comment_and_validates() {
    let names = pipelines();
    assert!(names.contains(&"local-demo.toml".to_string()), "{names:?}");
    for name in names {
        let text = std::fs::read_to_string(repo_root().join("pipelines").join(&name)).unwrap();
        assert!(
            text.starts_with('#'),
            "pipelines/{name} must open with a comment saying what it shows and how to run it"
        );
        let out = ctrflow(&repo_root(), &["validate", &format!("pipelines/{name}")]);
        assert!(out.success, "pipelines/{name} does not validate:\n{}", out.stderr);
    }
}

#[test]
fn every_hermetic_example_pipeline_runs() {
    for name in pipelines() {
        let text = std::fs::read_to_string(repo_root().join("pipelines").join(&name)).unwrap();
        if !hermetic(&text) {
            continue;
        }
        // Run a copy, so outputs land in a temporary directory, not in the checkout.
        let dir = temp_dir("example");
        copy_dir(&repo_root().join("pipelines"), &dir.join("pipelines"));
        let report = dir.join("report.json");
        let pipeline = format!("pipelines/{name}");
        let out =
            ctrflow_with(&dir, &["run", &pipeline, "--report", report.to_str().unwrap()], &[("DEMO_COUNT", "500")]);
        let stderr = out.stderr;
        assert!(out.success, "pipelines/{name} failed:\n{stderr}");
        assert!(stderr.contains("Where the data went"), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let read: u64 = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "source")
            .map(|n| n["records_in"].as_u64().unwrap())
            .sum();
        assert!(read > 0, "pipelines/{name} read nothing");
    }
}

#[test]
fn the_demo_ends_with_a_query_that_works() {
    let dir = temp_dir("demo");
    copy_dir(&repo_root().join("pipelines"), &dir.join("pipelines"));
    let out = ctrflow_with(&dir, &["run", "pipelines/local-demo.toml"], &[("DEMO_COUNT", "300")]);
    let stderr = out.stderr;
    assert!(out.success, "{stderr}");
    let query_line = stderr.lines().find(|l| l.trim_start().starts_with("sqlite3 ")).expect("a sqlite3 query to paste");
    let db = query_line.split_whitespace().nth(1).unwrap();
    let conn = rusqlite::Connection::open(dir.join(db)).unwrap();
    let voice: i64 = conn.query_row("SELECT COUNT(*) FROM voice", [], |r| r.get(0)).unwrap();
    let distinct: i64 = conn.query_row("SELECT COUNT(DISTINCT ContactId) FROM voice", [], |r| r.get(0)).unwrap();
    assert!(voice > 0 && voice == distinct, "newer-wins keeps one row per contact: {voice} rows, {distinct} contacts");
    let masked: String = conn
        .query_row("SELECT json_extract(CustomerEndpoint, '$.Address') FROM voice LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert!(masked.starts_with('*'), "phone numbers are redacted: {masked}");
}
