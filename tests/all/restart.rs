//! A file source stopped in the middle of a run resumes from its checkpoint: nothing lost,
//! and — after a graceful stop — nothing duplicated.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctrflow_tests::{cache_dir, ctrflow_bin, temp_dir};

const N: usize = 300_000;

/// Small synthetic CTRs (made for this test), one per line.
fn write_input(dir: &Path) {
    let mut text = String::with_capacity(N * 120);
    for i in 0..N {
        text.push_str(&format!(
            "{{\"ContactId\":\"synthetic-{i:07}\",\"Channel\":\"VOICE\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:00Z\",\"Attributes\":{{\"n\":\"{i}\"}}}}\n"
        ));
    }
    std::fs::write(dir.join("input.jsonl"), text).unwrap();
}

fn pipeline(dir: &Path, sink: &str) {
    let text = format!(
        r#"
[runtime]
state_dir = "state"
batch_size = 100
[dead_letter]
path = "dead-letters.jsonl"
[sources.in]
type = "file"
path = "input.jsonl"
[transforms.redact]
plugin = "redact-pii"
inputs = ["in"]
[sinks.out]
inputs = ["redact"]
{sink}
"#
    );
    std::fs::write(dir.join("pipeline.toml"), text).unwrap();
}

fn start(dir: &Path) -> Child {
    Command::new(ctrflow_bin())
        .current_dir(dir)
        .args(["run", "pipeline.toml", "--quiet"])
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read(path).map(|b| b.iter().filter(|c| **c == b'\n').count()).unwrap_or(0)
}

/// Waits until `progress()` passes `at`, or the deadline; returns whether it did.
fn wait_for(mut progress: impl FnMut() -> usize, at: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if progress() >= at {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn contact_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ContactId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigterm_mid_run_then_restart_loses_nothing_and_duplicates_nothing() {
    let dir = temp_dir("restart-term");
    write_input(&dir);
    pipeline(&dir, "type = \"file\"\npath = \"out.jsonl\"");
    let out = dir.join("out.jsonl");

    let child = start(&dir);
    assert!(wait_for(|| lines(&out), 5_000), "the first run wrote nothing");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let (ok, stderr) = finish(child);
    assert!(ok, "a graceful stop exits 0:\n{stderr}");
    let first = lines(&out);
    assert!(first < N, "the run ended before the stop ({first} lines); the test needs a larger input");
    assert!(dir.join("state/in.checkpoint.json").exists(), "a checkpoint was written");

    let (ok, stderr) = finish(start(&dir));
    assert!(ok, "{stderr}");
    let ids = contact_ids(&out);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), N, "every record arrived");
    assert_eq!(ids.len(), N, "nothing arrived twice after a graceful stop");
}

#[test]
fn sigkill_mid_run_then_restart_loses_nothing_and_newer_wins_stays_exact() {
    let dir = temp_dir("restart-kill");
    write_input(&dir);
    pipeline(&dir, "type = \"sqlite\"\npath = \"out.db\"\ntable = \"ctr\"\nmode = \"newer-wins\"");
    let db = dir.join("out.db");
    let count = || -> usize {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM ctr", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as usize)
            .unwrap_or(0)
    };

    let mut child = start(&dir);
    assert!(wait_for(count, 5_000), "the first run wrote nothing");
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let first = count();
    assert!(first < N, "the run ended before the kill ({first} rows); the test needs a larger input");

    let (ok, stderr) = finish(start(&dir));
    assert!(ok, "{stderr}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row("SELECT COUNT(*), COUNT(DISTINCT ContactId) FROM ctr", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(distinct as usize, N, "every record arrived");
    assert_eq!(rows, distinct, "newer-wins keeps one row per contact through re-delivery");
}
