//! Record faults and infrastructure faults at the sinks, through the real binary: a record
//! the destination cannot hold is dead-lettered alone and its batch-mates are written; a
//! destination that keeps failing is retried (never dead-lettered), and a run that stops
//! with records unwritten exits non-zero and says so — the next run writes them.

use std::time::{Duration, Instant};

use ctrflow_tests::{cache_dir, ctrflow, ctrflow_bin, read_jsonl, temp_dir};

fn ctr(id: &str, extra: &str) -> String {
    format!(
        r#"{{"ContactId":"{id}","Channel":"VOICE","LastUpdateTimestamp":"2024-02-03T04:05:06Z","Queue":{{"Name":"q"}}{extra}}}"#
    )
}

fn sqlite_pipeline(mode: &str) -> String {
    format!(
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
         [sinks.db]\ntype = \"sqlite\"\ninputs = [\"in\"]\npath = \"out.db\"\ntable = \"ctr\"\nmode = \"{mode}\"\n"
    )
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

// Issue: a record with both `channel` and `Channel` failed the whole SQLite batch ("duplicate
// column name"), eight retries, zero rows, nothing dead-lettered, exit 0 — and the same again
// on every restart.
#[test]
fn a_record_with_fields_differing_only_by_case_is_dead_lettered_alone() {
    for mode in ["newer-wins", "append"] {
        let dir = temp_dir("case-twins");
        let lines = [ctr("c1", ""), ctr("c2", ""), ctr("c3", r#","channel":"voice""#), ctr("c4", ""), ctr("c5", "")];
        std::fs::write(dir.join("in.jsonl"), lines.join("\n")).unwrap();
        std::fs::write(dir.join("p.toml"), sqlite_pipeline(mode)).unwrap();
        let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
        assert!(out.success, "{mode}: {}", out.stderr);
        assert_eq!(count(&dir.join("out.db"), "SELECT COUNT(*) FROM ctr"), 4, "{mode}");
        let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
        assert_eq!(dead.len(), 1, "{mode}: {dead:?}");
        assert_eq!(dead[0]["contact_id"], "c3");
        // The sink let the record's tree go when it staged its row: the dead letter still
        // holds the record as it was read.
        assert_eq!(dead[0]["original"], lines[2].as_str(), "{mode}");
        assert_eq!(dead[0]["kind"], "unwritable");
        assert_eq!(dead[0]["node"], "sinks.db");
        assert!(dead[0]["reason"].as_str().unwrap().contains("differ only by case"), "{}", dead[0]["reason"]);
    }
}

#[test]
fn a_field_named_like_an_existing_column_in_another_case_lands_in_it() {
    let dir = temp_dir("case-fold");
    let b = r#"{"ContactId":"b","LastUpdateTimestamp":"2024-02-03T04:05:06Z","queue":"other"}"#;
    std::fs::write(dir.join("in.jsonl"), [ctr("a", ""), b.to_string()].join("\n")).unwrap();
    std::fs::write(dir.join("p.toml"), sqlite_pipeline("append")).unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(count(&dir.join("out.db"), "SELECT COUNT(*) FROM ctr"), 2);
    assert_eq!(count(&dir.join("out.db"), "SELECT COUNT(*) FROM ctr WHERE Queue = 'other'"), 1);
}

#[test]
fn a_record_past_sqlites_column_limit_is_dead_lettered_alone() {
    let dir = temp_dir("too-many-columns");
    let wide: String = (0..2100).map(|i| format!(r#","f{i}":{i}"#)).collect();
    std::fs::write(dir.join("in.jsonl"), [ctr("ok1", ""), ctr("wide", &wide), ctr("ok2", "")].join("\n")).unwrap();
    std::fs::write(dir.join("p.toml"), sqlite_pipeline("newer-wins")).unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(count(&dir.join("out.db"), "SELECT COUNT(*) FROM ctr"), 2);
    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["contact_id"], "wide");
    assert_eq!(dead[0]["kind"], "unwritable");
}

// Newer-wins replaces the whole row: a column only the older version had does not survive.
#[test]
fn sqlite_newer_wins_keeps_no_column_of_an_older_version() {
    let dir = temp_dir("newer-wins-row");
    let old = r#"{"ContactId":"k","LastUpdateTimestamp":"2024-02-03T04:05:06Z","OnlyOld":"x"}"#;
    let new = r#"{"ContactId":"k","LastUpdateTimestamp":"2024-02-03T04:06:06Z","OnlyNew":"y"}"#;
    let older_again = r#"{"ContactId":"k","LastUpdateTimestamp":"2024-02-03T04:05:30Z","OnlyOld":"z"}"#;
    std::fs::write(dir.join("in.jsonl"), [old, new, older_again].join("\n")).unwrap();
    std::fs::write(dir.join("p.toml"), sqlite_pipeline("newer-wins")).unwrap();
    let out = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(out.success, "{}", out.stderr);
    let db = dir.join("out.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM ctr"), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM ctr WHERE OnlyNew = 'y' AND OnlyOld IS NULL"), 1);
}

// A locked database is the destination's fault, not the records': the sink retries, and a
// run stopped meanwhile leaves the records unacknowledged and exits non-zero; the next run
// writes them.
#[test]
fn a_locked_database_is_retried_and_a_stopped_run_exits_non_zero_then_resumes() {
    let dir = temp_dir("locked");
    let lines: Vec<String> = (0..20).map(|i| ctr(&format!("c{i}"), "")).collect();
    std::fs::write(dir.join("in.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(dir.join("p.toml"), sqlite_pipeline("append")).unwrap();
    // Create the table, then hold an exclusive lock on the database.
    let db = dir.join("out.db");
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE ctr (_ctrflow_written_at INTEGER); BEGIN EXCLUSIVE;")
        .unwrap();
    let log = dir.join("stderr.txt");
    let mut child = spawn_logged(&dir, &log);
    // Each attempt waits out SQLite's 5 s busy timeout before it reports the failure.
    wait_for_degraded(&log, &mut child);
    // SIGTERM: stop reading and drain — but the destination still fails.
    signal(child.id(), 15);
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "a run with records unwritten must fail: {stderr}");
    assert!(stderr.contains("sinks.db") && stderr.contains("left unwritten"), "{stderr}");
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing dead-lettered for a locked database");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let again = ctrflow(&dir, &["run", "p.toml", "--quiet"]);
    assert!(again.success, "{}", again.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM ctr"), 20, "the next run wrote them");
}

fn signal(pid: u32, signal: i32) {
    let status = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// A small tmpfs mounted for one test (unmounted when dropped), to fill a disk for real.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// `None` (and a note on stderr) where this process may not mount: tests that need a
    /// full disk are then not run. CI runs as root, where they are.
    fn mount(path: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("cannot mount a tmpfs here (not root?): the full-disk test does not run");
            return None;
        }
        Some(SmallDisk { path: path.to_path_buf() })
    }

    fn grow(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Starts `ctrflow run p.toml` in `dir`, its log going to `log`.
fn spawn_logged(dir: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(ctrflow_bin())
        .current_dir(dir)
        .args(["run", "p.toml", "--quiet"])
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the run reports its destination failing.
fn wait_for_degraded(log: &std::path::Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log).unwrap_or_default().contains("Destination failing") {
        assert!(Instant::now() < deadline, "the sink never reported its destination failing");
        assert!(child.try_wait().unwrap().is_none(), "the run ended while its destination was failing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// A full disk is not the records' fault: the file and SQLite sinks wait (degraded) until
// there is room, then write everything — nothing dead-lettered, no torn line.
#[test]
fn a_full_disk_is_waited_out_by_the_file_and_sqlite_sinks() {
    let dir = temp_dir("disk-full");
    let Some(disk) = SmallDisk::mount(&dir.join("small"), "256k") else { return };
    let n = 3000;
    let lines: Vec<String> =
        (0..n).map(|i| ctr(&format!("c{i}"), r#","Padding":"0123456789abcdef0123456789abcdef""#)).collect();
    std::fs::write(dir.join("in.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n\
         [sinks.lake]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"small/lake.jsonl\"\n\
         [sinks.db]\ntype = \"sqlite\"\ninputs = [\"in\"]\npath = \"small/out.db\"\ntable = \"ctr\"\nmode = \"newer-wins\"\n",
    )
    .unwrap();
    let log = dir.join("stderr.txt");
    let mut child = spawn_logged(&dir, &log);
    wait_for_degraded(&log, &mut child);
    disk.grow("64m");
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("recovered"), "{stderr}");
    let lake = std::fs::read_to_string(dir.join("small/lake.jsonl")).unwrap();
    assert!(lake.ends_with('\n'), "no half line at the end");
    let ids: std::collections::BTreeSet<String> = lake
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole lines only")["ContactId"].to_string())
        .collect();
    assert_eq!(ids.len(), n, "every record in the lake");
    assert_eq!(lake.lines().count(), n, "and none twice");
    assert_eq!(count(&dir.join("small/out.db"), "SELECT COUNT(*) FROM ctr"), n as i64);
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing dead-lettered for a full disk");
    drop(disk);
}
