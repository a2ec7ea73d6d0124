//! The local connectors through the real binary: gzip and glob file input, stdin,
//! rotation, dead letters sent to a sink, and `on_error` drop / halt.

use std::io::Write;

use ctrflow_tests::{cache_dir, ctrflow, ctrflow_bin, fixture, read_jsonl, temp_dir};

fn ctr(id: &str, channel: &str) -> String {
    format!(
        r#"{{"ContactId":"{id}","Channel":"{channel}","LastUpdateTimestamp":"2024-02-03T04:05:06Z","Attributes":{{"customerName":"Zed"}}}}"#
    )
}

#[test]
fn file_source_reads_gzip_and_globs_in_name_order() {
    let dir = temp_dir("gz-glob");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in/a.jsonl"), format!("{}\n{}", ctr("a1", "VOICE"), ctr("a2", "CHAT"))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("[{}, {}]", ctr("b1", "VOICE"), ctr("b2", "TASK")).as_bytes()).unwrap();
    std::fs::write(dir.join("in/b.json.gz"), gz.finish().unwrap()).unwrap();
    // A real, pretty-printed sample: documents need not be one per line.
    std::fs::copy(fixture("ctr/kyopark-voice-inbound-update-v1.json"), dir.join("in/c.json")).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in/*\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    let ids: Vec<String> =
        read_jsonl(&dir.join("out.jsonl")).iter().map(|r| r["ContactId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["a1", "a2", "b1", "b2", "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"]);
}

#[test]
fn stdin_source_reads_json_lines() {
    let dir = temp_dir("stdin");
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"in\"]\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(ctrflow_bin())
        .current_dir(&dir)
        .args(["run", "p.toml", "--quiet"])
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}\nnot json\n\n{}", ctr("s1", "VOICE"), ctr("s2", "CHAT")).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ContactId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "malformed_json");
    assert_eq!(dead[0]["original"], "not json");
}

#[test]
fn file_sink_rotates_by_size() {
    let dir = temp_dir("rotate");
    std::fs::write(
        dir.join("p.toml"),
        "[sources.gen]\ntype = \"generator\"\ncount = 200\n[sinks.out]\ntype = \"file\"\ninputs = [\"gen\"]\npath = \"lake/ctr.jsonl\"\nrotate_bytes = \"100KiB\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    let mut files: Vec<_> = std::fs::read_dir(dir.join("lake")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 3, "200 records of ~3KB in 100KiB files: {files:?}");
    assert!(files[0].ends_with("ctr-00000.jsonl"), "{files:?}");
    let total: usize = files.iter().map(|f| read_jsonl(f).len()).sum();
    assert_eq!(total, 200);
}

#[test]
fn dead_letters_can_go_to_a_sink() {
    let dir = temp_dir("dl-sink");
    std::fs::write(dir.join("in.jsonl"), format!("{}\n{{\"nope\": 1}}\n", ctr("ok", "VOICE"))).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        r#"
[dead_letter]
sink = "rejects"
[sources.in]
type = "file"
path = "in.jsonl"
[sinks.out]
type = "file"
inputs = ["in"]
path = "out.jsonl"
[sinks.rejects]
type = "sqlite"
inputs = []
path = "rejects.db"
table = "dead_letters"
"#,
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    assert!(!dir.join("dead-letters.jsonl").exists(), "dead letters went to the sink, not the file");
    let conn = rusqlite::Connection::open(dir.join("rejects.db")).unwrap();
    let (kind, original): (String, String) =
        conn.query_row("SELECT kind, original FROM dead_letters", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(kind, "not_a_ctr");
    assert_eq!(original, "{\"nope\": 1}");
}

fn failing_pipeline(dir: &std::path::Path, on_error: &str) {
    // enrich-lookup with on_miss = "fail" refuses records whose agent is not in the table.
    std::fs::write(dir.join("agents.json"), "[]").unwrap();
    std::fs::write(
        dir.join("p.toml"),
        format!(
            r#"
[sources.gen]
type = "generator"
count = 50
[tables.agents]
type = "json"
path = "agents.json"
key = "username"
[transforms.enrich]
plugin = "enrich-lookup"
inputs = ["gen"]
tables = ["agents"]
config = {{ table = "agents", key = "Agent.Username", target = "AgentInfo", on_miss = "fail" }}
on_error = "{on_error}"
[sinks.out]
type = "file"
inputs = ["enrich"]
path = "out.jsonl"
"#
        ),
    )
    .unwrap();
}

#[test]
fn on_error_drop_counts_and_goes_on() {
    let dir = temp_dir("on-error-drop");
    failing_pipeline(&dir, "drop");
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet", "--report", "r.json"]);
    assert!(out.success, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let enrich = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "enrich").unwrap();
    assert_eq!(enrich["dropped"], 50);
    assert!(!dir.join("dead-letters.jsonl").exists());
}

#[test]
fn on_error_halt_stops_the_run_naming_the_node() {
    let dir = temp_dir("on-error-halt");
    failing_pipeline(&dir, "halt");
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("transforms.enrich") && out.stderr.contains("halt"), "{}", out.stderr);
}

#[test]
fn a_trapping_plugin_in_a_pipeline_dead_letters_one_record_and_the_rest_arrive() {
    let dir = temp_dir("trap-in-pipeline");
    let wasm = ctrflow_tests::test_plugin("hostile-panic");
    std::fs::write(dir.join("panic.wasm"), wasm).unwrap();
    let mut input = String::new();
    for i in 0..20 {
        let hostile = if i == 7 { r#","hostile":"panic""# } else { "" };
        input.push_str(&format!(r#"{{"ContactId":"c{i}","Channel":"VOICE","Attributes":{{"n":"{i}"{hostile}}}}}"#));
        input.push('\n');
    }
    std::fs::write(dir.join("in.jsonl"), input).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n[transforms.p]\nplugin = \"panic.wasm\"\ninputs = [\"in\"]\n[sinks.out]\ntype = \"file\"\ninputs = [\"p\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), 19);
    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "panic");
    assert_eq!(dead[0]["node"], "transforms.p");
    assert_eq!(dead[0]["contact_id"], "c7");
}
