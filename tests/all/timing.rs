//! Timing: the report covers every node, the hops add up, the HTML stands alone, the
//! Prometheus endpoint serves the histograms, and `annotate` stamps records.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ctrflow_tests::{cache_dir, copy_dir, ctrflow, ctrflow_bin, ctrflow_with, read_jsonl, repo_root, temp_dir};
use serde_json::Value;

fn mean(v: &Value) -> f64 {
    v["mean"].as_f64().unwrap_or_else(|| panic!("no mean in {v}"))
}

#[test]
fn the_reports_cover_every_node_of_the_demo() {
    let dir = temp_dir("timing-demo");
    copy_dir(&repo_root().join("pipelines"), &dir.join("pipelines"));
    let out = ctrflow_with(
        &dir,
        &["run", "pipelines/local-demo.toml", "--report", "r.json", "--report", "r.html"],
        &[("DEMO_COUNT", "2000")],
    );
    let stderr = out.stderr;
    assert!(out.success, "{stderr}");
    assert!(stderr.contains("hop (ms)") && stderr.contains("voice event→ack"), "the table is printed:\n{stderr}");

    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let html = std::fs::read_to_string(dir.join("r.html")).unwrap();
    let ids: Vec<&str> = report["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    for node in ["contacts", "redact", "enrich", "route", "flatten", "voice", "chat", "task", "other", "lake"] {
        assert!(ids.contains(&node), "the JSON report has node {node}: {ids:?}");
        assert!(html.contains(&format!(">{node}<")), "the HTML report shows node {node}");
    }
    for n in report["nodes"].as_array().unwrap() {
        let keys: &[&str] = match n["kind"].as_str().unwrap() {
            "source" => &["process_ms", "event_to_arrival_ms"],
            "transform" => &["queue_wait_ms", "process_ms"],
            _ => &["queue_wait_ms", "deliver_ms"],
        };
        for k in keys {
            for q in ["count", "p50", "p90", "p99", "max"] {
                assert!(n[k][q].is_number(), "{}.{k}.{q} in {n}", n["id"]);
            }
        }
    }
    let redact = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "redact").unwrap();
    assert!(redact["plugin_counters"]["masked"].as_i64().unwrap() > 0, "plugin counters are reported: {redact}");
    let voice = report["sinks"].as_array().unwrap().iter().find(|s| s["id"] == "voice").unwrap();
    assert_eq!(voice["path"], serde_json::json!(["contacts", "redact", "enrich", "route", "voice"]));
    assert!(voice["event_to_ack_ms"]["count"].as_u64().unwrap() > 0);
    // Self-contained: nothing to fetch.
    for needle in ["src=", "href=", "<script", "@import", "url("] {
        assert!(!html.contains(needle), "the HTML report must not reference {needle}");
    }
    assert!(html.contains("<svg") && html.contains("waterfall for voice"), "graph and waterfalls are drawn");
}

#[test]
fn on_a_linear_path_the_mean_hops_add_up_to_read_to_ack() {
    let dir = temp_dir("timing-sum");
    std::fs::write(
        dir.join("p.toml"),
        r#"
[sources.gen]
type = "generator"
count = 20000
seed = 3
[transforms.redact]
plugin = "redact-pii"
inputs = ["gen"]
# One worker each: with several, a batch can also wait for the ones before it to be sent on
# (the order-keeping buffer), a wait no hop counts.
workers = 1
[transforms.flatten]
plugin = "ctr-flatten"
inputs = ["redact"]
workers = 1
[sinks.lake]
type = "file"
inputs = ["flatten"]
path = "lake.jsonl"
"#,
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet", "--report", "r.json"]);
    assert!(out.success, "{}", out.stderr);
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let node = |id: &str| report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();
    // Every record took every hop, so per-record means are over the same records.
    let hops = [
        mean(&node("gen")["process_ms"]),
        mean(&node("redact")["queue_wait_ms"]),
        mean(&node("redact")["process_ms"]),
        mean(&node("flatten")["queue_wait_ms"]),
        mean(&node("flatten")["process_ms"]),
        mean(&node("lake")["queue_wait_ms"]),
        mean(&node("lake")["deliver_ms"]),
    ];
    let sum: f64 = hops.iter().sum();
    let e2e = mean(&report["sinks"][0]["read_to_ack_ms"]);
    let err = (sum - e2e).abs() / e2e;
    assert!(err < 0.01, "the hops {hops:?} sum to {sum:.3} ms, read→ack is {e2e:.3} ms ({:.2}% apart)", err * 100.0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn the_metrics_endpoint_serves_hop_histograms_and_counters_while_running() {
    let dir = temp_dir("timing-metrics");
    let port = free_port();
    std::fs::write(
        dir.join("p.toml"),
        format!(
            r#"
[runtime]
metrics_addr = "127.0.0.1:{port}"
[sources.gen]
type = "generator"
count = 2000
rate = 500
[transforms.redact]
plugin = "redact-pii"
inputs = ["gen"]
[sinks.out]
type = "file"
inputs = ["redact"]
path = "out.jsonl"
"#
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(ctrflow_bin())
        .current_dir(&dir)
        .args(["run", "p.toml", "--quiet"])
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Some(b) = scrape(port)
            && b.contains("ctrflow_records_out_total{node=\"out\"}")
            && !b.contains("ctrflow_records_out_total{node=\"out\"} 0\n")
        {
            body = b;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200"), "no answer from the metrics endpoint:\n{body}");
    for needle in [
        "# TYPE ctrflow_hop_seconds histogram",
        "ctrflow_hop_seconds_bucket{node=\"redact\",hop=\"queue_wait\",le=\"0.001\"}",
        "ctrflow_hop_seconds_count{node=\"out\",hop=\"deliver\"}",
        "ctrflow_end_to_end_seconds_count{sink=\"out\",span=\"event_to_ack\"}",
        "ctrflow_records_in_total{node=\"redact\"}",
        "ctrflow_records_dead_lettered_total{node=\"gen\"}",
    ] {
        assert!(body.contains(needle), "missing {needle} in:\n{body}");
    }
}

#[test]
fn annotate_adds_hop_times_to_records() {
    let dir = temp_dir("timing-annotate");
    std::fs::write(
        dir.join("p.toml"),
        "[timing]\nannotate = true\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[sinks.out]\ntype = \"file\"\ninputs = [\"gen\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    let records = read_jsonl(&dir.join("out.jsonl"));
    assert_eq!(records.len(), 10);
    for r in records {
        let t = &r["_ctrflow_timing"];
        assert!(t["event_ms"].is_i64() && t["read_ms"].is_i64() && t["sink_ms"].is_i64(), "{t}");
        assert!(t["sink_ms"].as_i64() >= t["read_ms"].as_i64());
    }
}
