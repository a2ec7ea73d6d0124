//! Several real `ctrflow` processes on one Kinesis stream, sharing one KCL lease table, all
//! against one real moto server: the shards split evenly, a killed process's shards are taken
//! over within the lease duration with no record lost, a SIGTERM mid-load hands leases over at
//! once without a duplicate,
//! a process that lost a lease stops checkpointing it (fencing), a lease table written by the
//! KCL is taken over at its checkpoint (`checkpointSubSequenceNumber` included), and a run
//! killed many times at random points still delivers everything.
//!
//! Each test polls with deadlines (no fixed sleeps) and prints what it measured (takeover
//! times) on its standard output: `cargo test … -- fleet:: --nocapture` shows them.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use ctrflow::connectors::aws::kinesis::deaggregate::{SubRecord, aggregate};
use ctrflow::connectors::aws::kinesis::lease::LeaseTable;
use ctrflow_tests::{repo_root, temp_dir};
use serde_json::Value;

use crate::aws::{command, create_stream, rt, s, scan, versions};
use crate::moto::Moto;

const STREAM: &str = "fleet";
const LEASES: &str = "fleet-leases";

/// Loads `count` generated CTRs (seed `seed`) onto `stream`.
fn load(moto: &Moto, dir: &Path, stream: &str, count: usize, seed: u64) {
    let env = [
        ("LOAD_COUNT", count.to_string()),
        ("LOAD_SEED", seed.to_string()),
        ("CTR_STREAM", stream.to_string()),
        ("CTRFLOW_STATE_DIR", dir.join(format!("load-state-{seed}")).display().to_string()),
        ("CTRFLOW_DEAD_LETTERS", dir.join("load-dead-letters.jsonl").display().to_string()),
    ];
    let out = command(moto, &repo_root(), &["run", "pipelines/load-kinesis.toml", "--quiet"], &env).output().unwrap();
    assert!(out.status.success(), "loading failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A fleet member: a `ctrflow run` whose log lines are collected with the time they arrived.
struct Worker {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Worker {
    fn start(moto: &Moto, dir: &Path, name: &str, lease_duration: &str) -> Worker {
        let pipeline = format!(
            "[runtime]\nstate_dir = \"state-{name}\"\nadmin_addr = \"127.0.0.1:0\"\n[dead_letter]\npath = \"dead-{name}.jsonl\"\n\
             [sources.in]\ntype = \"kinesis\"\nstream = \"{STREAM}\"\npoll_interval = \"100ms\"\n\
             checkpoint = {{ dynamodb = \"{LEASES}\" }}\nworker_id = \"{name}\"\nlease_duration = \"{lease_duration}\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out-{name}.jsonl\"\n"
        );
        let file = format!("pipeline-{name}.toml");
        std::fs::write(dir.join(&file), pipeline).unwrap();
        let mut child = command(moto, dir, &["run", &file], &[("RUST_LOG", "info".into())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Worker { name: name.to_string(), child, log }
    }

    /// When the log first said something containing every one of `parts` after `since`.
    fn logged(&self, since: Instant, parts: &[&str]) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(t, l)| *t >= since && parts.iter().all(|p| l.contains(p)))
            .map(|(t, _)| *t)
    }

    /// The admin endpoint's address, from its start-up log line.
    fn admin_addr(&self) -> String {
        until(Duration::from_secs(60), "the admin endpoint is served", || {
            let log = self.log.lock().unwrap();
            let line = log.iter().map(|(_, l)| l).find(|l| l.contains("admin endpoint"))?;
            let at = line.find("127.0.0.1:")?;
            let port: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
            Some(format!("127.0.0.1:{port}"))
        })
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM; waits for a clean exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        // The log thread has the whole log once the pipe closes; give it a moment via the poll.
        assert!(status.success(), "{} did not stop cleanly:\n{}", self.name, self.log_text());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` at the deadline.
fn until<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Shard → owner (None: released) in the lease table.
fn owners(rt: &tokio::runtime::Runtime, sdk: &SdkConfig) -> BTreeMap<String, Option<String>> {
    rt.block_on(scan(sdk, LEASES))
        .iter()
        .map(|l| (s(l, "leaseKey"), Some(s(l, "leaseOwner")).filter(|o| !o.is_empty())))
        .collect()
}

fn held_by(owners: &BTreeMap<String, Option<String>>, who: &str) -> Vec<String> {
    owners.iter().filter(|(_, o)| o.as_deref() == Some(who)).map(|(k, _)| k.clone()).collect()
}

/// Every complete line of every `out-*.jsonl` in `dir`, parsed (a torn line fails the test).
///
/// A line is complete once its newline is written: the tests read these files while the
/// workers write them, and a reader can see the first part of a line being written. So text
/// after the last newline is left out here; once the writers have exited,
/// [`assert_whole_lines`] checks that there is none.
fn outputs(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, text) in output_files(dir) {
        for line in complete_lines(&text).lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("a torn line in {name}: {e}: {line:?}")));
        }
    }
    out
}

/// `text` up to its last newline: what a file sink has finished writing (the rest is a
/// line in progress, or one a killed process left half written, which the sink cuts off when
/// it next opens the file).
fn complete_lines(text: &str) -> &str {
    text.rfind('\n').map_or("", |end| &text[..end])
}

/// Every `out-*.jsonl` in `dir`: its name and text.
fn output_files(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("out-") && name.ends_with(".jsonl") {
            files.push((name, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
    files
}

/// With every writer exited, no output ends in part of a line.
fn assert_whole_lines(dir: &Path) {
    for (name, text) in output_files(dir) {
        assert!(text.is_empty() || text.ends_with('\n'), "{name} ends in a torn line: {:?}", text.rsplit('\n').next());
    }
}

/// Every (ContactId, LastUpdateTimestamp) on the stream.
fn on_stream(rt: &tokio::runtime::Runtime, sdk: &SdkConfig) -> HashSet<(String, String)> {
    let records: Vec<Value> = rt
        .block_on(crate::aws::stream_records(sdk, STREAM))
        .iter()
        .map(|d| serde_json::from_slice(d).unwrap())
        .collect();
    versions(&records).0
}

fn delivered(dir: &Path) -> HashSet<(String, String)> {
    versions(&outputs(dir)).0
}

/// Waits until every record on the stream is in some worker's output.
fn until_delivered(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, dir: &Path, limit: Duration) {
    let want = on_stream(rt, sdk);
    until(limit, "every record on the stream reaches a worker's output", || {
        let got = delivered(dir);
        want.is_subset(&got).then_some(())
    });
}

/// Starts loading `count` generated CTRs (seed `seed`) at `rate` a second, in the background.
fn start_loader(moto: &Moto, dir: &Path, count: usize, rate: usize, seed: u64) -> Child {
    command(
        moto,
        &repo_root(),
        &["run", "pipelines/load-kinesis.toml", "--quiet"],
        &[
            ("LOAD_COUNT", count.to_string()),
            ("LOAD_RATE", rate.to_string()),
            ("LOAD_SEED", seed.to_string()),
            ("CTR_STREAM", STREAM.into()),
            ("CTRFLOW_STATE_DIR", dir.join(format!("load-state-{seed}")).display().to_string()),
            ("CTRFLOW_DEAD_LETTERS", dir.join("load-dead-letters.jsonl").display().to_string()),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

/// Per record version (ContactId, LastUpdateTimestamp), the lines in the workers' outputs
/// beyond its copies on the stream, with the total number of lines.
fn duplicates(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, dir: &Path) -> (usize, BTreeMap<(String, String), usize>) {
    let mut on_stream: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in rt.block_on(crate::aws::stream_records(sdk, STREAM)) {
        let v: Value = serde_json::from_slice(&d).unwrap();
        *on_stream.entry((s_of(&v, "ContactId"), s_of(&v, "LastUpdateTimestamp"))).or_default() += 1;
    }
    let mut in_sinks: BTreeMap<(String, String), usize> = BTreeMap::new();
    for v in outputs(dir) {
        *in_sinks.entry((s_of(&v, "ContactId"), s_of(&v, "LastUpdateTimestamp"))).or_default() += 1;
    }
    let lines = in_sinks.values().sum();
    let extra = in_sinks
        .into_iter()
        .filter_map(|(key, n)| {
            let extra = n.saturating_sub(on_stream.get(&key).copied().unwrap_or(0));
            (extra > 0).then_some((key, extra))
        })
        .collect();
    (lines, extra)
}

/// Waits until each worker is ready (`/ready`), settled on its share, and its metrics hold
/// what the lease table says it owns: a lease it lost has been noticed and let go.
fn until_settled<'a>(
    rt: &tokio::runtime::Runtime,
    sdk: &SdkConfig,
    workers: impl IntoIterator<Item = (&'a str, &'a Worker)>,
) {
    for (name, w) in workers {
        let addr = w.admin_addr();
        until(Duration::from_secs(20), "each process is ready with its lease metrics", || {
            let want = held_by(&owners(rt, sdk), name).len();
            let (status, body) = crate::ops::get(&addr, "/ready");
            let (_, metrics) = crate::ops::get(&addr, "/metrics");
            let held = format!("ctrflow_leases_held{{node=\"in\",worker=\"{name}\"}} {want}\n");
            let settled = format!("ctrflow_lease_settled{{node=\"in\",worker=\"{name}\"}} 1\n");
            (status == 200 && body.contains("\"ready\":true") && metrics.contains(&held) && metrics.contains(&settled))
                .then_some(())
        });
    }
}

fn setup(shards: i32) -> (Moto, tokio::runtime::Runtime, SdkConfig) {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_stream(&sdk, STREAM, shards));
    (moto, rt, sdk)
}

#[test]
fn two_processes_split_the_shards_and_a_killed_ones_are_taken_over_without_loss() {
    let (moto, rt, sdk) = setup(4);
    let dir = temp_dir("fleet-kill");
    load(&moto, &dir, STREAM, 400, 1);
    let mut a = Worker::start(&moto, &dir, "a", "3s");
    let b = Worker::start(&moto, &dir, "b", "3s");
    // Even split: two each.
    until(Duration::from_secs(30), "the shards split 2/2", || {
        let o = owners(&rt, &sdk);
        (o.len() == 4 && held_by(&o, "a").len() == 2 && held_by(&o, "b").len() == 2).then_some(())
    });
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(30));

    let a_shards = held_by(&owners(&rt, &sdk), "a");
    let killed = Instant::now();
    a.kill();
    load(&moto, &dir, STREAM, 200, 2); // written while a's shards have no reader
    let taken = until(Duration::from_secs(20), "b takes a's leases", || {
        let o = owners(&rt, &sdk);
        (held_by(&o, "b").len() == 4).then(Instant::now)
    });
    let reading = until(Duration::from_secs(5), "b reads a's shards", || {
        let times: Option<Vec<Instant>> =
            a_shards.iter().map(|shard| b.logged(killed, &["Reading shard (lease taken)", shard])).collect();
        times.map(|t| t.into_iter().max().unwrap())
    });
    println!(
        "fleet: kill -9 → leases taken over in {:?}, the other process reading them in {:?} (lease_duration 3s)",
        taken - killed,
        reading - killed
    );
    // Expiry is seen on b's own clock: lease_duration after the last counter change it saw,
    // plus up to two rounds (lease_duration / 3 each); the rest is slack for a loaded machine.
    assert!(reading - killed < Duration::from_secs(10), "takeover took {:?}", reading - killed);
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(30));
    drop(b);
}

#[test]
fn a_sigterm_hands_leases_over_at_once_and_a_restart_evens_the_split_again() {
    let (moto, rt, sdk) = setup(4);
    let dir = temp_dir("fleet-term");
    load(&moto, &dir, STREAM, 300, 1);
    let mut a = Worker::start(&moto, &dir, "a", "6s");
    let mut b = Worker::start(&moto, &dir, "b", "6s");
    until(Duration::from_secs(40), "the shards split 2/2", || {
        let o = owners(&rt, &sdk);
        (o.len() == 4 && held_by(&o, "a").len() == 2 && held_by(&o, "b").len() == 2).then_some(())
    });
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(30));
    // SIGTERM mid-load: a finishes and checkpoints what it has before it lets go.
    // A steal is noticed by its loser at its next renewal, and what the loser read until then
    // is delivered twice (as with the KCL): let the two settle before the load, and count
    // only the duplicates that appear after the SIGTERM.
    until_settled(&rt, &sdk, [("a", &a), ("b", &b)]);
    const N: usize = 1200;
    let mut loader = start_loader(&moto, &dir, N, 200, 3);
    until(Duration::from_secs(60), "a quarter of the load reaches the sinks", || {
        (outputs(&dir).len() >= 300 + N / 4).then_some(())
    });
    let (_, settling) = duplicates(&rt, &sdk, &dir);
    let signalled = Instant::now();
    a.terminate();
    let exited = Instant::now();
    let released = held_by(&owners(&rt, &sdk), "a");
    assert!(released.is_empty(), "a released its leases on SIGTERM: still holds {released:?}");
    let taken = until(Duration::from_secs(20), "b takes the released leases", || {
        (held_by(&owners(&rt, &sdk), "b").len() == 4).then(Instant::now)
    });
    println!(
        "fleet: SIGTERM → leases taken over in {:?} ({:?} after the process exited; lease_duration 6s)",
        taken - signalled,
        taken - exited
    );
    assert!(taken - exited < Duration::from_secs(6), "a released lease is taken before it could expire");
    assert!(wait_exit(&mut loader, Duration::from_secs(60)).success(), "the loader failed");
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(60));
    let (lines, mut extra) = duplicates(&rt, &sdk, &dir);
    println!(
        "fleet: SIGTERM mid-load: {} records, {lines} lines in the sinks, {} duplicates ({} of them before the SIGTERM)",
        300 + N,
        extra.values().sum::<usize>(),
        settling.values().sum::<usize>()
    );
    extra.retain(|key, n| *n > settling.get(key).copied().unwrap_or(0));
    assert!(extra.is_empty(), "a graceful handoff re-delivered {extra:?}");

    // a comes back: it steals one lease at a time until the split is even.
    load(&moto, &dir, STREAM, 200, 2);
    let _a = Worker::start(&moto, &dir, "a", "6s");
    until(Duration::from_secs(30), "the split evens out after the restart", || {
        let o = owners(&rt, &sdk);
        (held_by(&o, "a").len() == 2 && held_by(&o, "b").len() == 2).then_some(())
    });
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(30));
    b.terminate();
}

/// Fencing, at the table: a checkpoint, renewal or release with a lease's old counter, after
/// another worker took it, writes nothing.
#[test]
fn a_lost_lease_cannot_be_checkpointed_renewed_or_released() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(async {
        let table = LeaseTable::open(aws_sdk_dynamodb::Client::new(&sdk), LEASES).await.unwrap();
        assert!(table.create("shardId-000000000000", &[], "TRIM_HORIZON").await.unwrap());
        assert!(!table.create("shardId-000000000000", &[], "TRIM_HORIZON").await.unwrap(), "created once");
        let lease = table.list().await.unwrap().pop().unwrap();
        let a = table.take(&lease, "a").await.unwrap().expect("a takes the unowned lease");
        let a = table.checkpoint("shardId-000000000000", "a", a, "5", 0).await.unwrap().expect("a checkpoints");
        let seen = table.list().await.unwrap().pop().unwrap();
        assert_eq!(seen.owner.as_deref(), Some("a"));
        let b = table.take(&seen, "b").await.unwrap().expect("b takes it over");
        assert_eq!(table.take(&seen, "c").await.unwrap(), None, "a take on a stale counter loses");
        assert_eq!(table.checkpoint("shardId-000000000000", "a", a, "9", 0).await.unwrap(), None);
        assert_eq!(table.renew("shardId-000000000000", "a", a).await.unwrap(), None);
        assert!(!table.release("shardId-000000000000", "a", a).await.unwrap());
        let now = table.list().await.unwrap().pop().unwrap();
        assert_eq!((now.owner.as_deref(), now.checkpoint.as_deref(), now.counter), (Some("b"), Some("5"), b));
        assert_eq!(now.owner_switches, 1, "one owner switch since a's checkpoint");
        assert!(table.checkpoint("shardId-000000000000", "b", b, "9", 0).await.unwrap().is_some());
    });
}

/// Fencing, in a running process: once another worker holds the lease, the process stops
/// reading the shard and its checkpoint in the table no longer moves.
#[test]
fn a_process_that_lost_its_lease_stops_reading_and_checkpointing_it() {
    let (moto, rt, sdk) = setup(1);
    let dir = temp_dir("fleet-fence");
    load(&moto, &dir, STREAM, 100, 1);
    let mut a = Worker::start(&moto, &dir, "a", "3s");
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(30));
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let lease = |rt: &tokio::runtime::Runtime| rt.block_on(scan(&sdk, LEASES)).pop().unwrap();
    let counter = |item: &std::collections::HashMap<String, AttributeValue>| -> i64 {
        item["leaseCounter"].as_n().unwrap().parse().unwrap()
    };
    // Wait for a's checkpoint of everything read, then take the lease as another worker would.
    let checkpoint = until(Duration::from_secs(10), "a checkpoints what it read", || {
        let l = lease(&rt);
        let cp = s(&l, "checkpoint");
        cp.parse::<u64>().is_ok_and(|n| n >= 100).then_some(cp)
    });
    let steal = |rt: &tokio::runtime::Runtime| {
        let l = lease(rt);
        let c = counter(&l);
        rt.block_on(
            ddb.update_item()
                .table_name(LEASES)
                .key("leaseKey", AttributeValue::S(s(&l, "leaseKey")))
                .update_expression("SET leaseOwner = :me, leaseCounter = :next")
                .condition_expression("leaseCounter = :seen")
                .expression_attribute_values(":me", AttributeValue::S("intruder".into()))
                .expression_attribute_values(":seen", AttributeValue::N(c.to_string()))
                .expression_attribute_values(":next", AttributeValue::N((c + 1).to_string()))
                .send(),
        )
        .is_ok()
    };
    let stolen = Instant::now();
    until(Duration::from_secs(5), "the intruder takes the lease", || steal(&rt).then_some(()));
    // The intruder keeps its lease alive from now on, as a live worker would, so a must
    // never see it expire.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (stop, ddb, sdk) = (stop.clone(), ddb.clone(), sdk.clone());
        std::thread::spawn(move || {
            let rt = crate::aws::rt();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let l = rt.block_on(scan(&sdk, LEASES)).pop().unwrap();
                let c: i64 = l["leaseCounter"].as_n().unwrap().parse().unwrap();
                rt.block_on(
                    ddb.update_item()
                        .table_name(LEASES)
                        .key("leaseKey", AttributeValue::S(s(&l, "leaseKey")))
                        .update_expression("SET leaseCounter = :next")
                        .condition_expression("leaseCounter = :seen AND leaseOwner = :me")
                        .expression_attribute_values(":me", AttributeValue::S("intruder".into()))
                        .expression_attribute_values(":seen", AttributeValue::N(c.to_string()))
                        .expression_attribute_values(":next", AttributeValue::N((c + 1).to_string()))
                        .send(),
                )
                .expect("the intruder keeps its lease: nobody else may write it");
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    until(Duration::from_secs(10), "a notices the loss", || a.logged(stolen, &["Lease lost"]));
    let lines_before = outputs(&dir).len();
    load(&moto, &dir, STREAM, 50, 2);
    // Past a's lease duration: a neither reads on, nor writes a checkpoint, nor takes the
    // live lease back.
    let until_t = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until_t {
        let l = lease(&rt);
        assert_eq!(s(&l, "leaseOwner"), "intruder", "a took back a live lease");
        assert_eq!(s(&l, "checkpoint"), checkpoint, "a wrote a checkpoint after losing the lease");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(outputs(&dir).len(), lines_before, "a read nothing more of a shard it lost");
    a.terminate();
    assert_eq!(s(&lease(&rt), "checkpoint"), checkpoint, "nothing checkpointed at the stop either");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renewer.join().expect("the intruder's lease stayed its own");
}

/// A table the KCL wrote (its exact attribute names), whose owner died holding a lease with a
/// checkpoint inside a KPL aggregated record: ctrflow takes the lease once it expires and
/// resumes after the checkpoint's sub-record.
#[test]
fn a_kcl_lease_table_is_taken_over_at_its_checkpoint_and_sub_sequence_number() {
    let (moto, rt, sdk) = setup(1);
    let k = aws_sdk_kinesis::Client::new(&sdk);
    let put = |data: Vec<u8>, key: &str| {
        rt.block_on(k.put_record().stream_name(STREAM).partition_key(key).data(Blob::new(data)).send())
            .unwrap()
            .sequence_number
    };
    let doc = |id: &str| format!("{{\"ContactId\":\"{id}\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:00Z\"}}");
    put(doc("before").into_bytes(), "before");
    let subs: Vec<SubRecord> = (0..4)
        .map(|i| SubRecord {
            partition_key: format!("kpl-{i}"),
            explicit_hash_key: None,
            data: doc(&format!("kpl-{i}")).into_bytes(),
        })
        .collect();
    let aggregated = put(aggregate(&subs), "kpl");
    put(doc("after").into_bytes(), "after");

    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    rt.block_on(async {
        LeaseTable::open(ddb.clone(), LEASES).await.unwrap();
        let item = [
            ("leaseKey", AttributeValue::S("shardId-000000000000".into())),
            ("leaseOwner", AttributeValue::S("kcl-worker-1:8d3c4a".into())),
            ("leaseCounter", AttributeValue::N("41".into())),
            ("checkpoint", AttributeValue::S(aggregated.clone())),
            ("checkpointSubSequenceNumber", AttributeValue::N("1".into())),
            ("ownerSwitchesSinceCheckpoint", AttributeValue::N("0".into())),
        ];
        let mut put = ddb.put_item().table_name(LEASES);
        for (k, v) in item {
            put = put.item(k, v);
        }
        put.send().await.unwrap();
    });
    let dir = temp_dir("fleet-kcl");
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "[sources.in]\ntype = \"kinesis\"\nstream = \"{STREAM}\"\nstop_at_end = true\npoll_interval = \"100ms\"\n\
             checkpoint = {{ dynamodb = \"{LEASES}\" }}\nlease_duration = \"1s\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out-kcl.jsonl\"\n"
        ),
    )
    .unwrap();
    let out = command(&moto, &dir, &["run", "pipeline.toml"], &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ids: Vec<String> = outputs(&dir).iter().map(|r| r["ContactId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["kpl-2", "kpl-3", "after"], "resumed after sub-record 1 of the aggregated record");
    let lease = rt.block_on(scan(&sdk, LEASES)).pop().unwrap();
    assert!(!lease.contains_key("leaseOwner"), "released at the stop: {lease:?}");
    let counter: i64 = lease["leaseCounter"].as_n().unwrap().parse().unwrap();
    assert!(counter > 41, "taken with the KCL's counter: {lease:?}");
    assert!(s(&lease, "checkpoint") > aggregated, "checkpointed past the aggregated record: {lease:?}");
    assert_eq!(lease["checkpointSubSequenceNumber"].as_n().unwrap(), "0", "a plain record's checkpoint");
}

/// kill -9 at random points, many times, over one stream (file checkpoints), then one run to
/// the end: every contact is in SQLite with its newest version, and the file lake has every
/// record at least once and no torn line.
#[test]
fn killed_many_times_at_random_points_a_kinesis_run_still_delivers_everything() {
    const N: usize = 4000;
    const KILLS: usize = 7;
    let (moto, rt, sdk) = setup(2);
    let dir = temp_dir("fleet-kills");
    // Records keep arriving (400 a second) while the runs are killed, so kills land mid-read.
    let mut loader = start_loader(&moto, &dir, N, 400, 7);
    let pipeline = |stop_at_end: bool| {
        format!(
            "[runtime]\nstate_dir = \"state\"\nbatch_size = 50\n[dead_letter]\npath = \"dead.jsonl\"\n\
             [sources.in]\ntype = \"kinesis\"\nstream = \"{STREAM}\"\npoll_interval = \"100ms\"\nstop_at_end = {stop_at_end}\n\
             [sinks.db]\ntype = \"sqlite\"\ninputs = [\"in\"]\npath = \"contacts.db\"\ntable = \"ctr\"\nmode = \"newer-wins\"\n\
             [sinks.lake]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out-lake.jsonl\"\n"
        )
    };
    std::fs::write(dir.join("pipeline.toml"), pipeline(false)).unwrap();
    let lake = dir.join("out-lake.jsonl");
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64: the kill points, reproducible from the printed seed.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    println!("fleet: kill points from seed {seed}");
    let started = Instant::now();
    for round in 0..KILLS {
        let mut child = command(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the lake has grown (the run is mid-stream) or after 3 s, plus a random
        // extra delay.
        let before = size(&lake);
        let t = Instant::now();
        while size(&lake) == before && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let extra = Duration::from_millis(next() % 700);
        let t = Instant::now();
        while t.elapsed() < extra {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(child.try_wait().unwrap().is_none(), "a run without stop_at_end ended by itself");
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        println!("fleet: round {round}: killed at +{extra:?} after progress, lake {} bytes", size(&lake));
    }
    assert!(wait_exit(&mut loader, Duration::from_secs(30)).success(), "the loader failed");
    std::fs::write(dir.join("pipeline.toml"), pipeline(true)).unwrap();
    let out = command(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[]).output().unwrap();
    assert!(out.status.success(), "the last run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    println!("fleet: {KILLS} kills and a final run took {:?}", started.elapsed());

    let stream: Vec<Value> = rt
        .block_on(crate::aws::stream_records(&sdk, STREAM))
        .iter()
        .map(|d| serde_json::from_slice(d).unwrap())
        .collect();
    assert_eq!(stream.len(), N);
    let (all, newest) = versions(&stream);
    assert_whole_lines(&dir);
    let lines = outputs(&dir); // panics on a torn line
    let (in_lake, _) = versions(&lines);
    let missing: Vec<_> = all.difference(&in_lake).take(5).collect();
    assert!(missing.is_empty(), "records missing from the lake (of {}): {missing:?}", all.len());
    println!("fleet: lake holds {} lines for {N} records ({} re-delivered)", lines.len(), lines.len() - N);
    let conn = rusqlite::Connection::open(dir.join("contacts.db")).unwrap();
    let mut stmt = conn.prepare("SELECT ContactId, LastUpdateTimestamp FROM ctr").unwrap();
    let rows: BTreeMap<String, String> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows.len(), newest.len(), "one row per contact");
    for (id, lut) in &newest {
        assert_eq!(rows.get(id), Some(lut), "{id}: the newest version won");
    }
    assert!(!dir.join("dead.jsonl").exists(), "nothing dead-lettered");
}

/// Three processes on four shards while records arrive: the shards spread 2/1/1 and each
/// process says so on its admin endpoint (`/ready`, the `ctrflow_lease_*` metrics); one
/// holding two is killed -9 mid-load and the other two take its shards over (2/2); every
/// record reaches a sink, and the only duplicates are records the killed process wrote and
/// had not checkpointed (its crash window), at most a few seconds of its shards' traffic;
/// restarted, it gets its share back (2/1/1).
#[test]
fn three_processes_share_four_shards_and_a_kill_costs_only_its_crash_windows_duplicates() {
    const N: usize = 2400;
    const RATE: usize = 200;
    let (moto, rt, sdk) = setup(4);
    let dir = temp_dir("fleet-three");
    let names = ["a", "b", "c"];
    let mut workers: BTreeMap<&str, Worker> = names.iter().map(|n| (*n, Worker::start(&moto, &dir, n, "3s"))).collect();
    let split = |o: &BTreeMap<String, Option<String>>, who: &[&str]| -> Vec<usize> {
        who.iter().map(|n| held_by(o, n).len()).collect()
    };
    let spread = until(Duration::from_secs(60), "the shards spread over three processes (2/1/1)", || {
        let o = owners(&rt, &sdk);
        let counts = split(&o, &names);
        (o.len() == 4 && counts.iter().sum::<usize>() == 4 && counts.iter().all(|c| (1..=2).contains(c)))
            .then_some(counts)
    });
    println!("fleet: three processes hold {spread:?} of four shards");
    // Each process is ready once settled on its share, and its metrics say what it holds.
    until_settled(&rt, &sdk, workers.iter().map(|(n, w)| (*n, w)));

    let mut loader = start_loader(&moto, &dir, N, RATE, 5);
    // Mid-load: a quarter of the records are through.
    until(Duration::from_secs(60), "a quarter of the records reach the sinks", || {
        (outputs(&dir).len() >= N / 4).then_some(())
    });
    let o = owners(&rt, &sdk);
    let victim = *names.iter().find(|n| held_by(&o, n).len() == 2).expect("one process holds two shards");
    let survivors: Vec<&str> = names.iter().copied().filter(|n| *n != victim).collect();
    let killed = Instant::now();
    workers.get_mut(victim).unwrap().kill();
    let taken = until(Duration::from_secs(30), "the two survivors take the killed one's shards (2/2)", || {
        (split(&owners(&rt, &sdk), &survivors) == [2, 2]).then(Instant::now)
    });
    println!("fleet: kill -9 of {victim} (2 shards) → 2/2 between {survivors:?} after {:?}", taken - killed);
    assert!(wait_exit(&mut loader, Duration::from_secs(60)).success(), "the loader failed");
    until_delivered(&rt, &sdk, &dir, Duration::from_secs(60));

    // Duplicates: per record version, lines in the sinks beyond its copies on the stream.
    let (lines, extra) = duplicates(&rt, &sdk, &dir);
    let victim_text = std::fs::read_to_string(dir.join(format!("out-{victim}.jsonl"))).unwrap();
    let victim_wrote: HashSet<(String, String)> = complete_lines(&victim_text)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (s_of(&v, "ContactId"), s_of(&v, "LastUpdateTimestamp")))
        .collect();
    for key in extra.keys() {
        assert!(victim_wrote.contains(key), "{key:?} is duplicated but the killed process never wrote it");
    }
    let duplicates: usize = extra.values().sum();
    // The killed process checkpoints once a second; its two shards carry about half of the
    // stream's RATE. Three seconds of that is a generous bound for a loaded machine.
    let bound = RATE / 2 * 3;
    println!(
        "fleet: {N} records loaded at {RATE}/s, {lines} lines in the sinks, {duplicates} duplicates (all from {victim}'s crash window; bound {bound})"
    );
    assert!(duplicates <= bound, "{duplicates} duplicates after one kill");

    // The killed process comes back under its own name and gets its share again.
    workers.insert(victim, Worker::start(&moto, &dir, victim, "3s"));
    let back = until(Duration::from_secs(40), "the split evens out again (2/1/1)", || {
        let counts = split(&owners(&rt, &sdk), &names);
        (counts.iter().sum::<usize>() == 4 && counts.iter().all(|c| (1..=2).contains(c))).then_some(counts)
    });
    println!("fleet: after the restart the three hold {back:?}");
    for w in workers.values_mut() {
        w.terminate();
    }
    assert!(owners(&rt, &sdk).values().all(Option::is_none), "every lease released at the stop");
}

/// A string field of a record.
fn s_of(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}
