//! The data plane through the real binary: a transform with several workers keeps its
//! input's order, a fused chain of transforms (linear, or fanning out) gives what separate
//! threads give, the file source streams large inputs (gzip too) in bounded pieces, and a
//! flattened record (held as its text) reads the same to every kind of consumer.

use std::io::Write;

use ctrflow_tests::{ctrflow, read_jsonl, temp_dir};

fn input(dir: &std::path::Path, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("c-{i:06}")).collect();
    let text: String = ids
        .iter()
        .map(|id| {
            format!(
                "{{\"ContactId\":\"{id}\",\"Channel\":\"VOICE\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:00Z\",\"CustomerEndpoint\":{{\"Address\":\"+447700900123\",\"Type\":\"TELEPHONE_NUMBER\"}}}}\n"
            )
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    ids
}

#[test]
fn a_transform_with_several_workers_keeps_its_input_order() {
    let dir = temp_dir("workers-order");
    let ids = input(&dir, 20_000);
    std::fs::write(
        dir.join("p.toml"),
        "[runtime]\nbatch_size = 64\n\
         [sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
         [transforms.redact]\nplugin = \"redact-pii\"\ninputs = [\"in\"]\nworkers = 4\n\
         [transforms.flatten]\nplugin = \"ctr-flatten\"\ninputs = [\"redact\"]\nworkers = 3\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"flatten\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    let rows = read_jsonl(&dir.join("out.jsonl"));
    let got: Vec<&str> = rows.iter().map(|r| r["ContactId"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>(), "same records, same order");
    assert!(rows.iter().all(|r| !r.to_string().contains("+447700900123")), "redacted on every worker");
}

/// Runs `redact → flatten` on three workers each, batches of 64, fused or not, reading
/// `in.jsonl` in `dir`, with the nodes `rest` adds; what the run printed.
fn run_fusable(dir: &std::path::Path, fuse: bool, rest: &str) -> String {
    std::fs::write(
        dir.join("p.toml"),
        format!(
            "[runtime]\nbatch_size = 64\nfuse_transforms = {fuse}\n\
             [sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
             [transforms.redact]\nplugin = \"redact-pii\"\ninputs = [\"in\"]\nworkers = 3\n\
             [transforms.flatten]\nplugin = \"ctr-flatten\"\ninputs = [\"redact\"]\nworkers = 3\n{rest}"
        ),
    )
    .unwrap();
    let out = ctrflow(dir, &["run", "p.toml", "--quiet", "--log", "ctrflow=debug"]);
    assert!(out.success, "{}", out.stderr);
    out.stderr
}

/// `redact → flatten` into one file, fused or not; what the run printed and wrote.
fn run_chain(name: &str, fuse: bool) -> (String, Vec<serde_json::Value>) {
    let dir = temp_dir(name);
    input(&dir, 20_000);
    let log = run_fusable(&dir, fuse, "[sinks.out]\ntype = \"file\"\ninputs = [\"flatten\"]\npath = \"out.jsonl\"\n");
    (log, read_jsonl(&dir.join("out.jsonl")))
}

#[test]
fn a_fused_chain_of_transforms_keeps_order_and_gives_what_separate_threads_give() {
    let (log, fused) = run_chain("fused-chain", true);
    assert!(log.contains("Transforms fused") && log.contains("redact → flatten"), "{log}");
    let (log, separate) = run_chain("separate-chain", false);
    assert!(!log.contains("Transforms fused"), "{log}");
    // (With one worker each, a chain is left apart: two nodes work on two batches at once.)
    assert_eq!(fused.len(), 20_000);
    assert_eq!(fused, separate, "same records, same order, same fields");
    let first = &fused[0];
    assert_eq!(first["ContactId"], "c-000000");
    assert_eq!(first["CustomerEndpoint_Address"], "*********0123", "redacted, then flattened");
}

/// `redact → {flatten, route}` on three workers each, fused or not: 20,000 records whose
/// channel alternates (VOICE, CHAT, VOICE, TASK), so that `route` splits each batch three
/// ways. What the run printed, and each sink's lines.
fn run_fan_out(name: &str, fuse: bool) -> (String, [Vec<serde_json::Value>; 3]) {
    let dir = temp_dir(name);
    let channels = ["VOICE", "CHAT", "VOICE", "TASK"];
    let text: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"ContactId\":\"c-{i:06}\",\"Channel\":\"{}\",\"CustomerEndpoint\":{{\"Address\":\"+447700900123\"}}}}\n",
                channels[i % 4]
            )
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    let log = run_fusable(
        &dir,
        fuse,
        "[transforms.route]\nplugin = \"route-by-field\"\ninputs = [\"redact\"]\nworkers = 3\n\
         config = { field = \"Channel\", routes = [\"VOICE\"], default = \"other\" }\n\
         [sinks.lake]\ntype = \"file\"\ninputs = [\"flatten\"]\npath = \"lake.jsonl\"\n\
         [sinks.voice]\ntype = \"file\"\ninputs = [\"route.VOICE\"]\npath = \"voice.jsonl\"\n\
         [sinks.other]\ntype = \"file\"\ninputs = [\"route.other\"]\npath = \"other.jsonl\"\n",
    );
    let read = |f: &str| read_jsonl(&dir.join(f));
    (log, [read("lake.jsonl"), read("voice.jsonl"), read("other.jsonl")])
}

#[test]
fn a_fused_fan_out_gives_every_reader_every_record_in_order_as_separate_threads_do() {
    let (log, fused) = run_fan_out("fused-fan-out", true);
    assert!(log.contains("redact → {flatten, route}"), "{log}");
    let (log, separate) = run_fan_out("separate-fan-out", false);
    assert!(!log.contains("Transforms fused"), "{log}");
    let [lake, voice, other] = &fused;
    let ids = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter().map(|r| r["ContactId"].as_str().unwrap().to_owned()).collect()
    };
    let all: Vec<String> = (0..20_000).map(|i| format!("c-{i:06}")).collect();
    assert_eq!(ids(lake), all, "the lake gets every record, in order");
    assert_eq!(ids(voice), all.iter().step_by(2).cloned().collect::<Vec<_>>(), "VOICE, in order");
    assert_eq!(ids(other), all.iter().skip(1).step_by(2).cloned().collect::<Vec<_>>(), "the rest, in order");
    assert!(lake.iter().all(|r| r["CustomerEndpoint_Address"] == "*********0123"), "redacted, then flattened");
    assert!(
        voice.iter().chain(other).all(|r| r["CustomerEndpoint"]["Address"] == "*********0123"),
        "redacted, not flattened"
    );
    assert_eq!(fused, separate, "the same lines to each sink as separate threads write");
}

#[test]
fn a_trap_in_the_second_node_of_a_fused_chain_dead_letters_that_record_under_its_node() {
    let dir = temp_dir("fused-trap");
    std::fs::write(dir.join("panic.wasm"), ctrflow_tests::test_plugin("hostile-panic")).unwrap();
    let mut text = String::new();
    for i in 0..50 {
        let hostile = if i == 7 { r#","hostile":"panic""# } else { "" };
        text.push_str(&format!(
            r#"{{"ContactId":"c{i:02}","Channel":"VOICE","CustomerEndpoint":{{"Address":"+447700900123"}},"Attributes":{{"n":"{i}"{hostile}}}}}"#
        ));
        text.push('\n');
    }
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
         [transforms.redact]\nplugin = \"redact-pii\"\ninputs = [\"in\"]\nworkers = 2\n\
         [transforms.p]\nplugin = \"panic.wasm\"\ninputs = [\"redact\"]\nworkers = 2\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"p\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet", "--log", "ctrflow=debug"]);
    assert!(out.success, "{}", out.stderr);
    assert!(out.stderr.contains("redact → p"), "the chain was fused: {}", out.stderr);
    let rows = read_jsonl(&dir.join("out.jsonl"));
    let ids: Vec<String> = (0..50).filter(|i| *i != 7).map(|i| format!("c{i:02}")).collect();
    assert_eq!(rows.iter().map(|r| r["ContactId"].as_str().unwrap()).collect::<Vec<_>>(), ids);
    assert!(rows.iter().all(|r| r["CustomerEndpoint"]["Address"] == "*********0123"), "redacted first");
    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "panic");
    assert_eq!(dead[0]["node"], "transforms.p");
    assert_eq!(dead[0]["contact_id"], "c07");
}

#[test]
fn zero_workers_is_refused_naming_the_key() {
    let dir = temp_dir("workers-zero");
    input(&dir, 1);
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
         [transforms.redact]\nplugin = \"redact-pii\"\ninputs = [\"in\"]\nworkers = 0\n\
         [sinks.out]\ntype = \"stdout\"\ninputs = [\"redact\"]\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["validate", "p.toml"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("transforms.redact: workers: must be at least 1"), "{}", out.stderr);
}

#[test]
fn a_gzip_file_larger_than_a_read_is_streamed_whole_and_resumed_after_a_restart() {
    let dir = temp_dir("gzip-stream");
    let ids = input(&dir, 30_000);
    let text = std::fs::read(dir.join("in.jsonl")).unwrap();
    std::fs::remove_file(dir.join("in.jsonl")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    std::fs::write(dir.join("in.jsonl.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl.gz\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), ids.len());
    // A second run finds the file read to its end: nothing again.
    let again = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(again.success, "{}", again.stderr);
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), ids.len(), "nothing read twice");
}

// Issue: a checkpoint named files by the path as given, so running once by a relative and
// once by an absolute path read everything again; a late file that sorts earlier was skipped.
#[test]
fn a_file_source_knows_its_files_by_identity_not_by_name() {
    let dir = temp_dir("file-identity");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let line = |id: &str| format!("{{\"ContactId\":\"{id}\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:00Z\"}}\n");
    std::fs::write(dir.join("in/b.jsonl"), line("b1") + &line("b2")).unwrap();
    let pipeline = |path: &str| {
        format!(
            "[runtime]\nstate_dir = \"state\"\n[sources.in]\ntype = \"file\"\npath = \"{path}\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.jsonl\"\n"
        )
    };
    std::fs::write(dir.join("p.toml"), pipeline("in/*.jsonl")).unwrap();
    assert!(ctrflow(&dir, &["run", "p.toml", "--quiet"]).success);
    // The same files by an absolute path: nothing new.
    std::fs::write(dir.join("p.toml"), pipeline(&format!("{}/in/*.jsonl", dir.display()))).unwrap();
    assert!(ctrflow(&dir, &["run", "p.toml", "--quiet"]).success);
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), 2, "the absolute path is the same file");
    // A late file whose name sorts earlier is read, not skipped.
    std::fs::write(dir.join("in/a.jsonl"), line("a1")).unwrap();
    assert!(ctrflow(&dir, &["run", "p.toml", "--quiet"]).success);
    let ids: Vec<String> =
        read_jsonl(&dir.join("out.jsonl")).iter().map(|r| r["ContactId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["b1", "b2", "a1"]);
}

/// A flattened record travels as its JSON text (`ctrflow::doc::Doc`); every kind of reader
/// after it must see the same record a tree would give: a file sink partitioning by the date
/// field, a SQLite sink's columns, a plugin routing on a field, and `ctr-flatten` picking
/// columns (which walks the flat record).
#[test]
fn a_flattened_record_reads_the_same_to_every_kind_of_consumer() {
    let dir = temp_dir("flat-text");
    let mut text = String::new();
    for (i, channel) in ["VOICE", "CHAT", "VOICE"].iter().enumerate() {
        text.push_str(&format!(
            r#"{{"ContactId":"c{i}","Channel":"{channel}","LastUpdateTimestamp":"2024-03-0{d}T10:00:00Z","Agent":{{"Username":"a\"{i}","Hours":[1,2]}},"Note":"{{\"LastUpdateTimestamp\":\"1999-01-01T00:00:00Z\"}}"}}"#,
            d = i + 1
        ));
        text.push('\n');
    }
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
         [transforms.flatten]\nplugin = \"ctr-flatten\"\ninputs = [\"in\"]\n\
         [transforms.pick]\nplugin = \"ctr-flatten\"\ninputs = [\"in\"]\nconfig = { exclude = [\"Note\"] }\n\
         [transforms.route]\nplugin = \"route-by-field\"\ninputs = [\"flatten\"]\nconfig = { field = \"Channel\", routes = [\"VOICE\"], default = \"other\" }\n\
         [sinks.lake]\ntype = \"file\"\ninputs = [\"flatten\"]\npath = \"lake/%Y/%m/%d/out.jsonl\"\n\
         [sinks.db]\ntype = \"sqlite\"\ninputs = [\"flatten\"]\npath = \"out.db\"\ntable = \"flat\"\nmode = \"newer-wins\"\n\
         [sinks.voice]\ntype = \"file\"\ninputs = [\"route.VOICE\"]\npath = \"voice.jsonl\"\n\
         [sinks.other]\ntype = \"file\"\ninputs = [\"route.other\"]\npath = \"other.jsonl\"\n\
         [sinks.picked]\ntype = \"file\"\ninputs = [\"pick\"]\npath = \"picked.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    let flat = |i: usize, channel: &str| {
        serde_json::json!({
            "Agent_Hours": "[1,2]", "Agent_Username": format!("a\"{i}"), "Channel": channel, "ContactId": format!("c{i}"),
            "LastUpdateTimestamp": format!("2024-03-0{}T10:00:00Z", i + 1),
            "Note": "{\"LastUpdateTimestamp\":\"1999-01-01T00:00:00Z\"}",
        })
    };
    // The lake: each record under its own date (read from the text, not from the string
    // that looks like the field), byte for byte what the tree would write.
    for i in 0..3 {
        let path = dir.join(format!("lake/2024/03/0{}/out.jsonl", i + 1));
        let line = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want = flat(i, ["VOICE", "CHAT", "VOICE"][i]);
        assert_eq!(line, format!("{}\n", serde_json::to_string(&want).unwrap()));
    }
    // The routing plugin read `Channel` from the flat record.
    let ids = |name: &str| -> Vec<String> {
        read_jsonl(&dir.join(name)).iter().map(|r| r["ContactId"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids("voice.jsonl"), ["c0", "c2"]);
    assert_eq!(ids("other.jsonl"), ["c1"]);
    // Picking columns walked the flat record.
    let picked = read_jsonl(&dir.join("picked.jsonl"));
    assert_eq!(picked.len(), 3);
    assert!(picked.iter().all(|r| r.get("Note").is_none() && r["Agent_Hours"] == "[1,2]"), "{picked:?}");
    // SQLite got one column per flat field.
    let conn = rusqlite::Connection::open(dir.join("out.db")).unwrap();
    let row: (String, String, String) = conn
        .query_row("SELECT Agent_Username, Agent_Hours, Channel FROM flat WHERE ContactId = 'c1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(row, ("a\"1".to_string(), "[1,2]".to_string(), "CHAT".to_string()));
}
