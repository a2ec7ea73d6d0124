//! Operating a running process: the admin endpoint (off by default, loopback unless the
//! address says otherwise), `ctrflow top`, `ctrflow tap`, and JSON log lines — all against
//! the real binary running real pipelines.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctrflow_tests::{cache_dir, ctrflow_bin, temp_dir};
use serde_json::Value;

/// A pipeline process, killed if the test ends early. Its stderr (JSON log lines) is kept
/// in a file, where the admin endpoint's bound address is read from.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, pipeline: &str, env: &[(&str, &str)]) -> Running {
        std::fs::write(dir.join("p.toml"), pipeline).unwrap();
        let log = dir.join("stderr.jsonl");
        let child = Command::new(ctrflow_bin())
            .current_dir(dir)
            .args(["run", "p.toml", "--quiet", "--log-format", "json"])
            .env("CTRFLOW_CACHE_DIR", cache_dir())
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Running { child, log }
    }

    fn log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}")))
            .collect()
    }

    /// The admin endpoint's address, from its start-up log line.
    fn admin_addr(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(addr) = self
                .log_lines()
                .iter()
                .find(|l| l["message"].as_str().is_some_and(|m| m.contains("admin endpoint")))
                .and_then(|l| l["addr"].as_str().map(str::to_string))
            {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the pipeline exited ({status}) before serving:\n{}",
                    std::fs::read_to_string(&self.log).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no admin endpoint was served:\n{}", std::fs::read_to_string(&self.log).unwrap());
    }

    /// Stops the pipeline (SIGTERM: it drains) and waits for it.
    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait()
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the pipeline did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn stats(addr: &str) -> Value {
    let (status, body) = get(addr, "/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn node<'a>(stats: &'a Value, key: &str) -> &'a Value {
    stats["nodes"].as_array().unwrap().iter().find(|n| n["key"] == key).unwrap_or_else(|| panic!("no {key}: {stats}"))
}

/// `ctrflow <args>` against a running process; (success, stdout, stderr).
fn client(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(ctrflow_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An endless, rate-limited stream: generator → redact → route by channel → files.
fn endless(admin: &str) -> String {
    format!(
        r#"
[runtime]
admin_addr = "{admin}"
batch_size = 50
[sources.gen]
type = "generator"
count = 0
rate = 2000
seed = 7
[transforms.redact]
plugin = "redact-pii"
inputs = ["gen"]
[transforms.route]
plugin = "route-by-field"
inputs = ["redact"]
config = {{ field = "Channel", routes = ["VOICE", "CHAT", "TASK"], default = "other" }}
[sinks.voice]
type = "file"
inputs = ["route.VOICE"]
path = "voice.jsonl"
[sinks.rest]
type = "file"
inputs = ["route.CHAT", "route.TASK", "route.other"]
path = "rest.jsonl"
"#
    )
}

/// The inodes of the sockets `pid` has open that are listening (from `/proc`).
fn listening_sockets(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_string_lossy().strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; column 9 is the inode.
            if cols.len() > 9 && cols[3] == "0A" && inodes.iter().any(|i| i == cols[9]) {
                listening.push(cols[1].to_string());
            }
        }
    }
    listening
}

#[test]
fn the_admin_endpoint_is_off_by_default_and_on_loopback_when_no_host_is_given() {
    // No admin_addr: the process listens on nothing.
    let dir = temp_dir("ops-off");
    let mut off = Running::start(&dir, &endless("x").replace("admin_addr = \"x\"\n", ""), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Running: records reach a sink.
    while !dir.join("voice.jsonl").metadata().is_ok_and(|m| m.len() > 0) {
        assert!(Instant::now() < deadline, "the pipeline did not run");
        assert!(off.child.try_wait().unwrap().is_none(), "the pipeline exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listening_sockets(off.child.id()), Vec::<String>::new(), "nothing listens without admin_addr");
    assert!(off.stop().success());

    // A port without a host: loopback.
    let dir = temp_dir("ops-loopback");
    let mut on = Running::start(&dir, &endless(":0"), &[]);
    let addr = on.admin_addr();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (status, body) = get(&addr, "/ready");
    assert_eq!((status, body.trim()), (200, "{\"ready\":true}"));
    let (status, body) = get(&addr, "/health");
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    for needle in [
        "ctrflow_records_in_total{node=\"redact\"}",
        "ctrflow_write_retries_total{node=\"voice\"} 0",
        "ctrflow_degraded{node=\"voice\"} 0",
        "ctrflow_records_unwritten_total{node=\"rest\"} 0",
        "ctrflow_queue_capacity_batches{node=\"voice\"} 2",
        "ctrflow_tap_dropped_total 0",
        "ctrflow_ready 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    assert_eq!(get(&addr, "/nothing").0, 404);
    assert!(on.stop().success());
    // A host that is not loopback is served, with a warning that the tap serves customer data.
    let dir = temp_dir("ops-any");
    let mut any = Running::start(&dir, &endless("0.0.0.0:0"), &[]);
    let addr = any.admin_addr();
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
    let warned = any
        .log_lines()
        .iter()
        .any(|l| l["level"] == "WARN" && l["message"].as_str().unwrap().contains("customer data"));
    assert!(warned, "{:?}", any.log_lines());
}

#[test]
fn top_once_lists_every_node_of_each_process_of_a_fleet_with_its_rates() {
    let (dir_a, dir_b) = (temp_dir("ops-top-a"), temp_dir("ops-top-b"));
    let mut a = Running::start(&dir_a, &endless("127.0.0.1:0"), &[]);
    let mut b = Running::start(&dir_b, &endless("127.0.0.1:0"), &[]);
    let (addr_a, addr_b) = (a.admin_addr(), b.admin_addr());
    // Wait until records reach the sinks of both, so every node has moved some.
    for addr in [&addr_a, &addr_b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while node(&stats(addr), "sinks.rest")["records_out"].as_u64().unwrap() == 0 {
            assert!(Instant::now() < deadline, "no records reached the sinks");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (ok, screen, err) = client(&["top", "--once", "--interval", "2s", "--addr", &addr_a, "--addr", &addr_b]);
    assert!(ok, "{err}");
    assert!(screen.contains(&format!("{addr_a}  pid {}", a.child.id())), "{screen}");
    assert!(screen.contains(&format!("{addr_b}  pid {}", b.child.id())), "{screen}");
    assert!(screen.contains("fleet: 2 of 2 processes answering"), "{screen}");
    for key in ["sources.gen", "transforms.redact", "transforms.route", "sinks.voice", "sinks.rest"] {
        let rows: Vec<&str> = screen.lines().filter(|l| l.split_whitespace().next() == Some(key)).collect();
        assert_eq!(rows.len(), 3, "{key}: a row per process and one for the fleet:\n{screen}");
        for row in rows {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (rate_in, rate_out): (f64, f64) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
            // The sources are rate-limited to 2000/s; every node passes records on.
            assert!(rate_in > 0.0 && rate_out > 0.0, "{key} has no rate: {row}\n{screen}");
            assert!(row.trim_end().ends_with("ok"), "{row}");
        }
    }
    assert!(a.stop().success() && b.stop().success());
}

#[test]
fn tap_returns_the_records_as_they_leave_the_node_named() {
    let dir = temp_dir("ops-tap");
    let mut p = Running::start(&dir, &endless("127.0.0.1:0"), &[]);
    let addr = p.admin_addr();
    let tap = |args: &[&str]| {
        let mut all = vec!["tap", "--addr", &addr];
        all.extend_from_slice(args);
        let (ok, out, err) = client(&all);
        assert!(ok, "{err}");
        let records: Vec<Value> =
            out.lines().map(|l| serde_json::from_str(l).expect("a JSON record per line")).collect();
        (records, err)
    };
    let voice_caller = |records: &[Value]| -> Vec<String> {
        records.iter().filter_map(|r| r["CustomerEndpoint"]["Address"].as_str().map(str::to_string)).collect()
    };

    // Before redact: the callers' numbers as generated.
    let (before, summary) = tap(&["gen", "--limit", "40"]);
    assert_eq!(before.len(), 40);
    assert!(summary.contains("40 records from gen (limit)"), "{summary}");
    let numbers = voice_caller(&before);
    assert!(!numbers.is_empty() && numbers.iter().all(|n| !n.contains('*')), "{numbers:?}");

    // After redact: masked but the last four digits.
    let (after, _) = tap(&["transforms.redact", "--limit", "5"]);
    assert_eq!(after.len(), 5);
    assert!(after.iter().all(|r| r["ContactId"].is_string()), "whole records: {after:?}");
    let (after, _) = tap(&["redact", "--limit", "40"]);
    let masked = voice_caller(&after);
    assert!(!masked.is_empty(), "{after:?}");
    for m in &masked {
        let (hidden, shown) = m.split_at(m.len() - 4);
        assert!(hidden.chars().all(|c| c == '*') && shown.chars().all(|c| c.is_ascii_digit()), "{m}");
    }

    // A named output: only what the router sent there.
    let (voice, _) = tap(&["route.VOICE", "--limit", "5"]);
    assert_eq!(voice.len(), 5);
    assert!(voice.iter().all(|r| r["Channel"] == "VOICE"), "{voice:?}");
    let (chat, _) = tap(&["route", "--output", "CHAT", "--limit", "3"]);
    assert!(chat.iter().all(|r| r["Channel"] == "CHAT"), "{chat:?}");

    // What cannot be tapped says why.
    let (ok, _, err) = client(&["tap", "--addr", &addr, "voice"]);
    assert!(!ok && err.contains("sinks.voice sends nothing on"), "{err}");
    let (ok, _, err) = client(&["tap", "--addr", &addr, "route", "--output", "FAX"]);
    assert!(!ok && err.contains("no output \"FAX\""), "{err}");
    let (ok, _, err) = client(&["tap", "--addr", &addr, "nowhere"]);
    assert!(!ok && err.contains("no node \"nowhere\""), "{err}");

    assert!(p.stop().success());
    // Nothing about a record's contents reached the log at info or above.
    for line in p.log_lines() {
        assert!(!line.to_string().contains("CustomerEndpoint"), "{line}");
    }
}

#[test]
fn a_tap_that_stops_reading_drops_for_itself_and_never_holds_up_the_pipeline() {
    let dir = temp_dir("ops-tap-slow");
    let count = 60_000;
    let pipeline = format!(
        "[runtime]\nadmin_addr = \"127.0.0.1:0\"\n[sources.gen]\ntype = \"generator\"\ncount = {count}\nrate = 15000\n\
         [transforms.redact]\nplugin = \"redact-pii\"\ninputs = [\"gen\"]\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"redact\"]\npath = \"out.jsonl\"\n"
    );
    let mut p = Running::start(&dir, &pipeline, &[]);
    let addr = p.admin_addr();
    // A tap client that reads the response head and then nothing: its socket fills, then
    // its buffer, and from then on every record passes it by.
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    write!(stuck, "GET /tap?node=redact HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = String::new();
    BufReader::new(&stuck).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dropped = 0;
    while dropped == 0 {
        assert!(Instant::now() < deadline, "the tap never dropped");
        let Ok(s) = std::panic::catch_unwind(|| stats(&addr)) else { break };
        dropped = s["tap_dropped"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dropped > 0, "the pipeline ended before the tap filled up");
    // The pipeline carries on to the end and writes everything.
    let status = p.wait();
    assert!(status.success(), "{}", std::fs::read_to_string(&p.log).unwrap());
    let written = std::fs::read_to_string(dir.join("out.jsonl")).unwrap().lines().count();
    assert_eq!(written, count);
    drop(stuck.shutdown(std::net::Shutdown::Both));
}

#[test]
fn log_lines_are_json_objects_filtered_per_module_by_rust_log() {
    // Per module: only the admin module's lines at info.
    let dir = temp_dir("ops-logs");
    let mut p = Running::start(&dir, &endless("127.0.0.1:0"), &[("RUST_LOG", "warn,ctrflow::admin=info")]);
    p.admin_addr();
    assert!(p.stop().success());
    let lines = p.log_lines();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(), "{l}");
        let info = l["level"] == "INFO";
        assert!(!info || l["target"] == "ctrflow::admin", "an info line from outside ctrflow::admin: {l}");
    }
    // A node's lines carry its key, and a record's its contact id (dead letters, at debug).
    let dir = temp_dir("ops-logs-node");
    std::fs::write(dir.join("panic.wasm"), ctrflow_tests::test_plugin("hostile-panic")).unwrap();
    std::fs::write(
        dir.join("in.jsonl"),
        "{\"ContactId\":\"c-1\"}\n{\"ContactId\":\"c-2\",\"Attributes\":{\"hostile\":\"panic\"}}\nnot json\n",
    )
    .unwrap();
    let pipeline = "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\ncheckpoint = false\n\
                    [transforms.p]\nplugin = \"panic.wasm\"\ninputs = [\"in\"]\n\
                    [sinks.out]\ntype = \"file\"\ninputs = [\"p\"]\npath = \"out.jsonl\"\n";
    let mut p = Running::start(&dir, pipeline, &[("RUST_LOG", "ctrflow=debug")]);
    assert!(p.wait().success(), "{}", std::fs::read_to_string(&p.log).unwrap());
    let lines = p.log_lines();
    let dead: Vec<&Value> = lines.iter().filter(|l| l["message"] == "Record dead-lettered.").collect();
    assert_eq!(dead.len(), 2, "{lines:?}");
    let panicked = dead.iter().find(|l| l["node"] == "transforms.p").unwrap_or_else(|| panic!("{dead:?}"));
    assert_eq!(panicked["contact_id"], "c-2", "{panicked}");
    assert_eq!(panicked["kind"], "panic", "{panicked}");
    let unreadable = dead.iter().find(|l| l["node"] == "sources.in").unwrap_or_else(|| panic!("{dead:?}"));
    assert!(unreadable.get("contact_id").is_none(), "{unreadable}");
    // Lines logged on a node's thread carry its key from the span, even when the event
    // does not name it.
    assert!(
        lines.iter().any(|l| l["node"] == "sinks.out" && l["target"] == "ctrflow::connectors::file::sink"),
        "{lines:?}"
    );
    for dead in dead {
        assert!(dead.get("reason").is_none() && !dead.to_string().contains("not json"), "no record content: {dead}");
    }
}

/// A plugin's own `info` line with a phone number, an e-mail address and a quoted name:
/// masked by default (and marked `redacted`), verbatim at `debug`, and verbatim at `info`
/// only when the node says `plugin_log = "verbatim"`.
#[test]
fn a_plugins_info_lines_carry_no_customer_data_unless_the_node_asks() {
    let dir = temp_dir("ops-plugin-log");
    std::fs::write(dir.join("leak.wasm"), ctrflow_tests::test_plugin("hostile-host")).unwrap();
    std::fs::write(
        dir.join("in.jsonl"),
        "{\"ContactId\":\"c-1\",\"CustomerEndpoint\":{\"Address\":\"+61401004854\"},\"Attributes\":{\"hostile\":\"leak\"}}\n",
    )
    .unwrap();
    let pipeline = |extra: &str| {
        format!(
            "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\ncheckpoint = false\n\
             [transforms.p]\nplugin = \"leak.wasm\"\ninputs = [\"in\"]\n{extra}\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"p\"]\npath = \"out.jsonl\"\n"
        )
    };
    let plugin_lines = |p: &Running| -> Vec<Value> {
        p.log_lines().into_iter().filter(|l| l["plugin"] == "leak.wasm").collect::<Vec<_>>()
    };
    let secrets = ["+61401004854", "jane.doe@example.com", "Jane Doe"];

    let mut p = Running::start(&dir, &pipeline(""), &[("RUST_LOG", "info")]);
    assert!(p.wait().success(), "{}", std::fs::read_to_string(&p.log).unwrap());
    let lines = plugin_lines(&p);
    assert_eq!(lines.len(), 1, "the info line only: {lines:?}");
    assert_eq!(lines[0]["message"], "caller <number> wrote from <email> as \"…\"", "{}", lines[0]);
    assert_eq!(lines[0]["redacted"], true, "{}", lines[0]);
    let whole = std::fs::read_to_string(&p.log).unwrap();
    for s in secrets {
        assert!(!whole.contains(s), "{s} in the info log:\n{whole}");
    }

    let mut p = Running::start(&dir, &pipeline(""), &[("RUST_LOG", "debug")]);
    assert!(p.wait().success());
    let debug: Vec<Value> = plugin_lines(&p).into_iter().filter(|l| l["level"] == "DEBUG").collect();
    assert!(debug[0]["message"].as_str().unwrap().contains("+61401004854"), "debug lines are verbatim: {debug:?}");

    let mut p = Running::start(&dir, &pipeline("plugin_log = \"verbatim\""), &[("RUST_LOG", "info")]);
    assert!(p.wait().success(), "{}", std::fs::read_to_string(&p.log).unwrap());
    let lines = plugin_lines(&p);
    assert_eq!(
        lines[0]["message"], "caller +61401004854 wrote from jane.doe@example.com as \"Jane Doe\"",
        "verbatim when the node asks: {lines:?}"
    );
}
