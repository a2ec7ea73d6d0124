//! The WebAssembly host through its public API: hostile plugins are stopped within their
//! limits while the host goes on serving their batch-mates, the bundled plugins do what their
//! READMEs say on the real CTR samples, setup errors are the right [`HostError`], and the
//! compile cache never serves a stale or corrupt entry.
//!
//! What this does not cover: pipelines (the topology tests run plugins inside a graph).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ctrflow::config::PipelineConfig;
use ctrflow::graph::Section;
use ctrflow::host::{
    BUNDLED, COUNTERS_REFUSED, CacheOutcome, CompileCache, Compiled, Decision, EDIT_MIN_BYTES, Failure, FailureKind,
    Host, HostError, LOG_BURST, LOG_PER_SECOND, LOG_SUPPRESSED, Limits, Lookup, LookupError, MAX_COUNTERS, MAX_PATHS,
    NodeContext, PluginKind,
};
use ctrflow::record::Record;
use ctrflow::timing::Timing;
use ctrflow_tests::{fixture, test_plugin};
use serde_json::{Value as Json, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// One host for the tests that do not test the cache, with each plugin compiled once.
static HOST: LazyLock<Host> = LazyLock::new(|| Host::new(None).expect("the engine starts"));
static COMPILED: LazyLock<Mutex<HashMap<String, Compiled>>> = LazyLock::new(Default::default);

/// A test plugin (`plugins/testing/<name>`) or a bundled one, compiled by the shared host.
fn compiled(name: &str) -> Compiled {
    if let Some(c) = COMPILED.lock().unwrap().get(name) {
        return c.clone();
    }
    let c = if BUNDLED.iter().any(|(n, _)| *n == name) {
        HOST.load(name, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e}"))
    } else {
        HOST.compile(name, &test_plugin(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    COMPILED.lock().unwrap().insert(name.to_string(), c.clone());
    c
}

fn transform(name: &str, config: Json, limits: Limits) -> ctrflow::host::TransformPlugin {
    HOST.transform(&compiled(name), NodeContext::new("test", name), &config, limits)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn limits(time_per_record: Duration) -> Limits {
    Limits { time_per_record, ..Limits::default() }
}

/// A real CTR sample from `tests/fixtures/ctr/`.
fn ctr(file: &str) -> Json {
    let path = fixture(&format!("ctr/{file}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const V1: &str = "kyopark-voice-inbound-update-v1.json";
const V2: &str = "kyopark-voice-inbound-update-v2.json";
const ABANDONED: &str = "aws-samples-workshop-voice-abandoned-in-queue.json";

/// Every real CTR sample, by file name.
fn samples() -> Vec<(&'static str, Json)> {
    [V1, V2, ABANDONED].into_iter().map(|f| (f, ctr(f))).collect()
}

fn records(docs: &[Json]) -> Vec<Record> {
    docs.iter().cloned().map(Record::detached).collect()
}

/// `n` copies of the v1 sample numbered by `Attributes.seq`; the one at `hostile` (if any)
/// carries `Attributes.hostile = what`.
fn batch(n: usize, hostile: Option<usize>, what: &str) -> Vec<Json> {
    let base = ctr(V1);
    (0..n)
        .map(|i| {
            let mut doc = base.clone();
            doc["Attributes"]["seq"] = json!(i);
            if hostile == Some(i) {
                doc["Attributes"]["hostile"] = json!(what);
            }
            doc
        })
        .collect()
}

/// The failure of a record, panicking on any other decision.
fn failure(decision: &Decision) -> &Failure {
    match decision {
        Decision::Fail(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Runs a batch of 5 with the hostile record in the middle: checks the hostile one fails
/// with `kind` and comes back as it went in (so it can be dead-lettered), its batch-mates
/// are kept unchanged and in order, and a following batch is served normally.
fn hostile_in_the_middle(plugin: &ctrflow::host::TransformPlugin, what: &str, kind: FailureKind) -> Failure {
    let docs = batch(5, Some(2), what);
    let out = plugin.process(records(&docs));
    assert_eq!(out.len(), docs.len());
    let mut failed = None;
    for (i, ((record, decision), doc)) in out.iter().zip(&docs).enumerate() {
        assert_eq!(*record.doc, *doc, "record #{i} must come back as it went in");
        if i == 2 {
            let f = failure(decision);
            assert_eq!(f.kind, kind, "{f:?}");
            failed = Some(f.clone());
        } else {
            assert!(matches!(decision, Decision::Keep), "record #{i}: {decision:?}");
        }
    }
    let after = plugin.process(records(&batch(4, None, "")));
    assert!(after.iter().all(|(_, d)| matches!(d, Decision::Keep)), "the next batch: {after:?}");
    failed.expect("record #2 was checked")
}

/// A lookup table answered by a closure.
struct TableFn<F>(F);

impl<F> Lookup for TableFn<F>
where
    F: Fn(&str, &str) -> Result<Option<Json>, LookupError> + Send + Sync,
{
    fn get(&self, table: &str, key: &str) -> Result<Option<Json>, LookupError> {
        (self.0)(table, key)
    }
}

fn enrich(config: Json, limits: Limits, table: &str, lookup: impl Lookup + 'static) -> ctrflow::host::TransformPlugin {
    let mut ctx = NodeContext::new("enrich", "enrich-lookup");
    ctx.tables.insert(table.to_string(), Arc::new(lookup));
    HOST.transform(&compiled("enrich-lookup"), ctx, &config, limits).expect("enrich-lookup starts")
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ctrflow-host-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Hostile plugins
// ---------------------------------------------------------------------------------------

#[test]
fn an_infinite_loop_is_stopped_at_its_deadline() {
    let plugin = transform("hostile-loop", Json::Null, limits(Duration::from_millis(20)));
    let started = Instant::now();
    hostile_in_the_middle(&plugin, "loop", FailureKind::Deadline);
    // The batch's budget is 5 × 20 ms, then the loop alone gets 20 ms: far under 5 s.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_memory_bomb_is_stopped_at_its_cap() {
    let limits = Limits { memory_bytes: 16 << 20, time_per_record: Duration::from_secs(2), ..Limits::default() };
    let plugin = transform("hostile-memory", Json::Null, limits);
    hostile_in_the_middle(&plugin, "memory", FailureKind::MemoryLimit);
}

#[test]
fn a_panic_is_contained() {
    let plugin = transform("hostile-panic", Json::Null, limits(Duration::from_secs(2)));
    let f = hostile_in_the_middle(&plugin, "panic", FailureKind::Panic);
    assert!(f.kind.is_trap());
}

#[test]
fn the_filesystem_is_denied() {
    const PROBE: &str = "/tmp/ctrflow-hostile-fs";
    let _ = std::fs::remove_file(PROBE);
    let plugin = transform("hostile-fs", Json::Null, limits(Duration::from_secs(2)));
    let out = plugin.process(records(&batch(3, None, "")));
    for (record, decision) in &out {
        assert!(matches!(decision, Decision::Keep), "{decision:?}");
        for field in ["fs_read", "fs_write"] {
            let seen = record.doc["Attributes"][field].as_str().unwrap_or_default();
            assert!(seen.starts_with("denied"), "{field}: {seen:?}");
        }
    }
    assert!(!Path::new(PROBE).exists(), "the plugin created {PROBE}");
}

#[test]
fn the_environment_and_arguments_are_empty() {
    let plugin = transform("hostile-env", Json::Null, limits(Duration::from_secs(2)));
    let out = plugin.process(records(&batch(2, None, "")));
    for (record, decision) in &out {
        assert!(matches!(decision, Decision::Keep), "{decision:?}");
        let attrs = &record.doc["Attributes"];
        assert_eq!(attrs["env_vars"], json!(0));
        assert_eq!(attrs["args"], json!(0));
        let home = attrs["env_home"].as_str().unwrap_or_default();
        assert!(home.starts_with("unset"), "HOME is visible: {home:?}");
    }
}

/// Output tests get room in memory and time, so it is the output limit that stops them.
fn output_plugin() -> ctrflow::host::TransformPlugin {
    let limits = Limits { memory_bytes: 256 << 20, time_per_record: Duration::from_secs(5), ..Limits::default() };
    transform("hostile-output", Json::Null, limits)
}

#[test]
fn a_huge_split_record_is_output_too_large() {
    hostile_in_the_middle(&output_plugin(), "huge", FailureKind::OutputTooLarge);
}

#[test]
fn a_flood_of_split_records_is_output_too_large() {
    hostile_in_the_middle(&output_plugin(), "flood", FailureKind::OutputTooLarge);
}

#[test]
fn a_huge_set_json_is_refused_and_the_record_fails() {
    // `set-json` over `max_output` returns an error to the plugin (WIT `result<_, string>`);
    // the host also remembers the refusal, so the record fails as too large whatever the
    // plugin decides after it.
    let f = hostile_in_the_middle(&output_plugin(), "huge-set", FailureKind::OutputTooLarge);
    assert!(f.message.contains("max_output"), "the message must name the limit: {}", f.message);
}

/// A lookup that takes longer than the whole batch's budget (the time in a lookup is the
/// host's, so it never makes the plugin trap; see below).
const SLOW: Duration = Duration::from_millis(800);
const BUDGET: Duration = Duration::from_millis(50);

/// A plugin whose memory cannot hold [`HUGE_ROW`]: the row is copied into its memory as the
/// lookup returns, and the instance traps on the cap (`memory_limit`) — a trap in the
/// middle of a batch, after the records before it were edited.
fn small_memory() -> Limits {
    Limits { memory_bytes: 16 << 20, ..Limits::default() }
}
const HUGE_ROW: usize = 24 << 20;

/// An enrich plugin whose lookups retry through a node health, as in a run.
fn enrich_retrying(
    table: impl Lookup + 'static,
    budget: Duration,
) -> (ctrflow::host::TransformPlugin, Arc<ctrflow::timing::NodeTiming>, ctrflow::flow::Shutdown) {
    let config = json!({"table": "agents", "key": "Agent.Username", "target": "AgentInfo"});
    let plugin = enrich(config, limits(budget), "agents", table);
    let timing = Timing::new(true, [("enrich".to_string(), Section::Transform, vec![])]).node("enrich");
    let shutdown = ctrflow::flow::Shutdown::default();
    let health = ctrflow::contract::Health::lookups("transforms.enrich".into(), timing.clone());
    plugin.context().lookup_retry.attach(health, shutdown.clone());
    (plugin, timing, shutdown)
}

#[test]
fn a_lookup_table_that_does_not_answer_is_retried_and_its_time_is_not_the_plugins() {
    // The table fails twice for an infrastructure reason, slowly, then answers: the plugin
    // sees the row (never `lookup-failed`), and the time lost — well past the 50 ms budget —
    // does not trap it.
    let failures = Arc::new(Mutex::new(0));
    let seen = failures.clone();
    let table = TableFn(move |_: &str, _: &str| {
        let mut n = seen.lock().unwrap();
        if *n < 2 {
            *n += 1;
            std::thread::sleep(SLOW);
            return Err(LookupError::Unavailable("ThrottlingException: slow down".into()));
        }
        Ok(Some(json!({"team": "Refrigeration"})))
    });
    let (plugin, timing, _shutdown) = enrich_retrying(table, BUDGET);
    let out = plugin.process(records(&[ctr(V1)]));
    let (record, decision) = &out[0];
    assert!(matches!(decision, Decision::Keep), "{decision:?}");
    assert_eq!(record.doc["AgentInfo"], json!({"team": "Refrigeration"}));
    assert_eq!(*failures.lock().unwrap(), 2);
    let retries = timing.counters.retries.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(retries, 2, "each failed attempt is counted as a retry");
    assert_eq!(timing.counters.degraded.load(std::sync::atomic::Ordering::Relaxed), 0, "recovered");
}

#[test]
fn a_slow_lookup_is_the_hosts_time_not_the_plugins() {
    // The answer takes 16x the batch's budget: the plugin still gets it, untrapped.
    let table = TableFn(|_: &str, _: &str| {
        std::thread::sleep(SLOW);
        Ok(Some(json!({"team": "Refrigeration"})))
    });
    let (plugin, _, _) = enrich_retrying(table, BUDGET);
    let out = plugin.process(records(&[ctr(V1)]));
    assert!(matches!(out[0].1, Decision::Keep), "{:?}", out[0].1);
    assert_eq!(out[0].0.doc["AgentInfo"], json!({"team": "Refrigeration"}));
}

#[test]
fn a_refusal_from_the_table_reaches_the_plugin_as_lookup_failed() {
    let table = TableFn(|_: &str, _: &str| Err(LookupError::Failed("ValidationException: bad key".into())));
    let (plugin, _, _) = enrich_retrying(table, Limits::default().time_per_record);
    let out = plugin.process(records(&[ctr(V1)]));
    let f = failure(&out[0].1);
    assert_eq!(f.kind, FailureKind::LookupFailed, "{f:?}");
    assert!(f.message.contains("ValidationException"), "{f:?}");
}

#[test]
fn a_run_stopping_while_the_table_is_down_leaves_the_batch_unprocessed_not_failed() {
    let table = TableFn(|_: &str, _: &str| Err(LookupError::Unavailable("connection refused".into())));
    let (plugin, timing, shutdown) = enrich_retrying(table, Limits::default().time_per_record);
    let stop = shutdown.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        stop.request();
    });
    let docs = batch(3, None, "");
    let out = plugin.process(records(&docs));
    stopper.join().unwrap();
    assert_eq!(out.len(), 3);
    for (i, (record, decision)) in out.iter().enumerate() {
        assert_eq!(failure(decision).kind, FailureKind::Stopped, "record #{i}");
        assert_eq!(*record.doc, docs[i], "record #{i} comes back unchanged");
    }
    assert!(timing.counters.retries.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(timing.counters.degraded.load(std::sync::atomic::Ordering::Relaxed), 1, "still degraded");
}

#[test]
fn edits_of_a_trapped_batch_are_rolled_back_before_the_retry() {
    // `key` and `target` are the same field: a record enriched once has an object as its
    // key, which enrich-lookup refuses as a bad record. So a record retried alone after the
    // trap succeeds only if its first enrichment (in the trapped batch) was rolled back.
    let table = TableFn(|_: &str, key: &str| {
        if key == "huge" {
            return Ok(Some(json!({"row": "x".repeat(HUGE_ROW)})));
        }
        Ok(Some(json!({"row": key})))
    });
    let config = json!({"table": "t", "key": "Attributes.k", "target": "Attributes.k"});
    let plugin = enrich(config, small_memory(), "t", table);
    let mut docs = batch(3, None, "");
    for (doc, key) in docs.iter_mut().zip(["a", "b", "huge"]) {
        doc["Attributes"]["k"] = json!(key);
    }
    let out = plugin.process(records(&docs));
    for (i, (record, decision)) in out.iter().take(2).enumerate() {
        assert!(matches!(decision, Decision::Keep), "record #{i} was not rolled back: {decision:?}");
        let mut expected = docs[i].clone();
        expected["Attributes"]["k"] = json!({"row": docs[i]["Attributes"]["k"]});
        assert_eq!(*record.doc, expected);
    }
    let (record, decision) = &out[2];
    assert_eq!(failure(decision).kind, FailureKind::MemoryLimit);
    assert_eq!(*record.doc, docs[2]);
}

#[test]
fn rollback_removes_objects_the_trapped_batch_created() {
    // The first lookup of "a" finds a row, later ones miss (and a miss keeps the record
    // unchanged). Enriching into `Enriched.Row` creates `Enriched`; after the trap, the
    // record retried alone misses, so it must come back exactly as it went in — with no
    // empty `Enriched` left behind by a leaf-only undo.
    let served = Mutex::new(false);
    let table = TableFn(move |_: &str, key: &str| match key {
        "huge" => Ok(Some(json!({"row": "x".repeat(HUGE_ROW)}))),
        _ if !std::mem::replace(&mut *served.lock().unwrap(), true) => Ok(Some(json!({"row": key}))),
        _ => Ok(None),
    });
    let config = json!({"table": "t", "key": "Attributes.k", "target": "Enriched.Row"});
    let plugin = enrich(config, small_memory(), "t", table);
    let mut docs = batch(2, None, "");
    docs[0]["Attributes"]["k"] = json!("a");
    docs[1]["Attributes"]["k"] = json!("huge");
    let out = plugin.process(records(&docs));
    assert!(matches!(out[0].1, Decision::Keep), "{:?}", out[0].1);
    assert_eq!(*out[0].0.doc, docs[0]);
    assert_eq!(failure(&out[1].1).kind, FailureKind::MemoryLimit);
    assert_eq!(*out[1].0.doc, docs[1]);
}

// ---------------------------------------------------------------------------------------
// Hostile plugins: waiting in WASI, and flooding the host's services
// ---------------------------------------------------------------------------------------

#[test]
fn a_sleep_in_wasi_is_stopped_at_its_deadline() {
    // `std::thread::sleep` waits in a host call, where an epoch deadline cannot fire: the
    // host's `wasi:io/poll` waits no longer than the call's deadline.
    let plugin = transform("hostile-sleep", Json::Null, limits(Duration::from_millis(20)));
    let started = Instant::now();
    let f = hostile_in_the_middle(&plugin, "sleep", FailureKind::Deadline);
    assert!(f.message.contains("wasi:io/poll"), "{}", f.message);
    // The plugin asked for an hour; the budget is 5 × 20 ms, then 20 ms alone.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_poll_in_wasi_is_stopped_at_its_deadline() {
    let plugin = transform("hostile-sleep", Json::Null, limits(Duration::from_millis(20)));
    let started = Instant::now();
    hostile_in_the_middle(&plugin, "poll", FailureKind::Deadline);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn reading_the_clocks_and_a_short_wait_still_work() {
    // Every record reads both clocks; the one in the middle sleeps 1 ms of its 2 s.
    let plugin = transform("hostile-sleep", Json::Null, limits(Duration::from_secs(2)));
    let docs = batch(5, Some(2), "nap");
    let out = plugin.process(records(&docs));
    for (i, ((record, decision), doc)) in out.iter().zip(&docs).enumerate() {
        assert!(matches!(decision, Decision::Keep), "record #{i}: {decision:?}");
        assert_eq!(*record.doc, *doc);
    }
}

/// Flood tests get room in time and memory, so the bound under test is what stops them.
fn host_flood_plugin() -> ctrflow::host::TransformPlugin {
    let limits = Limits { memory_bytes: 128 << 20, time_per_record: Duration::from_secs(20), ..Limits::default() };
    transform("hostile-host", Json::Null, limits)
}

/// Runs a batch of 3 with the hostile record in the middle; checks every record comes
/// back unchanged and kept, and a next batch is served.
fn flood_is_absorbed(plugin: &ctrflow::host::TransformPlugin, what: &str) {
    let docs = batch(3, Some(1), what);
    let out = plugin.process(records(&docs));
    for (i, ((record, decision), doc)) in out.iter().zip(&docs).enumerate() {
        assert!(matches!(decision, Decision::Keep), "record #{i}: {decision:?}");
        assert_eq!(*record.doc, *doc, "record #{i}");
    }
    let after = plugin.process(records(&batch(2, None, "")));
    assert!(after.iter().all(|(_, d)| matches!(d, Decision::Keep)), "the next batch: {after:?}");
}

#[test]
fn a_log_flood_is_rate_limited_and_counted() {
    let plugin = host_flood_plugin();
    let started = Instant::now();
    flood_is_absorbed(&plugin, "log");
    // 20,000 lines: at most the burst plus the rate for the time taken got through; the
    // rest were dropped (not queued: the host keeps no line) and counted.
    let elapsed = started.elapsed().as_secs_f64();
    let through = (LOG_BURST + LOG_PER_SECOND * (elapsed + 1.0)) as i64;
    let suppressed = plugin.context().counters()[LOG_SUPPRESSED];
    assert!(suppressed >= 20_000 - through && suppressed <= 20_000, "suppressed {suppressed} after {elapsed:.1}s");
}

#[test]
fn a_counter_name_flood_is_bounded() {
    let plugin = host_flood_plugin();
    flood_is_absorbed(&plugin, "count");
    let counters = plugin.context().counters();
    // The host keeps at most MAX_COUNTERS names (plus its own two): that is all the
    // memory 100,000 names can take.
    assert!(counters.len() <= MAX_COUNTERS + 2, "{} names kept", counters.len());
    assert_eq!(counters[COUNTERS_REFUSED], (100_000 - MAX_COUNTERS) as i64);
}

#[test]
fn a_path_flood_is_bounded() {
    let plugin = host_flood_plugin();
    let f = hostile_in_the_middle(&plugin, "paths", FailureKind::BadRecord);
    let accepted: usize =
        f.message.trim_start_matches("the host accepted ").trim_end_matches(" paths").parse().unwrap();
    // Three paths were resolved at init; the host keeps at most MAX_PATHS per instance.
    assert_eq!(accepted, MAX_PATHS - 3, "{}", f.message);
}

#[test]
fn a_flood_of_large_sets_is_output_too_large_with_a_bounded_undo_log() {
    let plugin = host_flood_plugin();
    let f = hostile_in_the_middle(&plugin, "set-big", FailureKind::OutputTooLarge);
    assert!(f.message.contains("max_output"), "{}", f.message);
    // Each accepted set of 1 KiB may leave its predecessor in the undo log: what the host
    // kept for this record is at most max_output.
    let accepted = plugin.context().counters()["sets_accepted"] as usize;
    assert!(accepted > 0 && accepted * 1024 <= Limits::default().max_output_bytes, "{accepted} sets accepted");
}

#[test]
fn a_flood_of_tiny_edits_is_output_too_large_with_a_bounded_undo_log() {
    let plugin = host_flood_plugin();
    hostile_in_the_middle(&plugin, "set-tiny", FailureKind::OutputTooLarge);
    // Every edit costs at least EDIT_MIN_BYTES of the budget, so 1,000,000 tiny sets leave
    // at most max_output / EDIT_MIN_BYTES undo entries.
    let accepted = plugin.context().counters()["edits_accepted"] as usize;
    assert_eq!(accepted, Limits::default().max_output_bytes / EDIT_MIN_BYTES);
}

#[test]
fn a_counter_name_cannot_forge_a_metric() {
    let plugin = host_flood_plugin();
    flood_is_absorbed(&plugin, "metrics");
    let timing = Timing::new(true, [("flood".to_string(), Section::Transform, Vec::new())]);
    let _ = timing.node("flood").plugin.set(plugin.context().clone());
    let text = ctrflow::timing::prometheus::render(&timing);
    let counter_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("ctrflow_plugin_counter_total")).collect();
    assert_eq!(counter_lines.len(), 1, "the name made lines of its own:\n{text}");
    assert!(!text.lines().any(|l| l.contains("node=\"victim\"") && !l.starts_with("ctrflow_plugin")), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // Every series line is `name{labels} value`, with the value a number.
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "a broken line: {line:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Hostile pipeline input: `${VAR}` values
// ---------------------------------------------------------------------------------------

#[test]
fn an_environment_value_cannot_change_the_pipeline_structure() {
    let hostile = "x\"\n[sinks.evil]\ntype = \"stdout\"\ninputs = [\"t\"]\n]\\";
    let text = "[sources.s]\ntype = \"generator\"\ncount = 1\n\
                [transforms.t]\nplugin = \"redact-pii\"\ninputs = [\"s\"]\nconfig_env = [\"FIELD\"]\n\
                config = { field = \"${FIELD}\" }\n\
                [sinks.out]\ntype = \"file\"\ninputs = [\"t\"]\npath = \"${FIELD}.jsonl\"\n";
    let env = |v: &str| (v == "FIELD").then(|| hostile.to_string());
    let cfg = PipelineConfig::parse(text, Path::new("."), &env).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(cfg.sinks.keys().map(String::as_str).collect::<Vec<_>>(), ["out"], "the value added a sink");
    let config = cfg.transforms["t"].config.as_ref().unwrap();
    assert_eq!(config["field"].as_str(), Some(hostile), "the value arrives intact");
}

#[test]
fn a_secret_reaches_a_plugin_config_only_when_allowed() {
    let text = "[sources.s]\ntype = \"generator\"\n\
                [transforms.t]\nplugin = \"redact-pii\"\ninputs = [\"s\"]\n\
                config = { field = \"${AWS_SECRET_ACCESS_KEY:-none}\" }\n";
    let env = |v: &str| (v == "AWS_SECRET_ACCESS_KEY").then(|| "wJalrXUtnFEMI".to_string());
    let errs = PipelineConfig::parse(text, Path::new("."), &env).expect_err("refused");
    let text_of = errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text_of.contains("transforms.t.config.field") && text_of.contains("config_env"), "{text_of}");
    assert!(!text_of.contains("wJalrXUtnFEMI"), "the error leaks the secret: {text_of}");
}

// ---------------------------------------------------------------------------------------
// Bundled plugins on the real CTR samples
// ---------------------------------------------------------------------------------------

fn run_on_samples(plugin: &ctrflow::host::TransformPlugin) -> Vec<(&'static str, Json, Record, Decision)> {
    let samples = samples();
    let docs: Vec<Json> = samples.iter().map(|(_, d)| d.clone()).collect();
    let out = plugin.process(records(&docs));
    assert_eq!(out.len(), samples.len());
    samples.into_iter().zip(out).map(|((file, before), (record, decision))| (file, before, record, decision)).collect()
}

#[test]
fn redact_pii_masks_the_customer_number_keeping_the_last_4() {
    let plugin = transform("redact-pii", Json::Null, Limits::default());
    for (file, before, record, decision) in run_on_samples(&plugin) {
        assert!(matches!(decision, Decision::Keep), "{file}: {decision:?}");
        let number = before["CustomerEndpoint"]["Address"].as_str().unwrap();
        let n = number.chars().count();
        let masked = format!("{}{}", "*".repeat(n - 4), &number[number.len() - 4..]);
        let mut expected = before.clone();
        expected["CustomerEndpoint"]["Address"] = json!(masked);
        assert_eq!(*record.doc, expected, "{file}: only the number changes");
    }
    assert_eq!(plugin.context().counters().get("masked"), Some(&3));
}

#[test]
fn route_by_field_routes_every_sample_to_voice() {
    let plugin = transform("route-by-field", json!({"routes": ["VOICE", "CHAT", "TASK"]}), Limits::default());
    assert_eq!(plugin.outputs(), ["VOICE", "CHAT", "TASK", "other"]);
    for (file, before, record, decision) in run_on_samples(&plugin) {
        let Decision::Route(i) = decision else { panic!("{file}: {decision:?}") };
        assert_eq!(plugin.outputs()[i as usize], "VOICE", "{file}");
        assert_eq!(*record.doc, before, "{file}: routing changes nothing");
    }
}

#[test]
fn enrich_lookup_joins_a_row_on_every_sample() {
    let queues = HashMap::from([
        ("TCC Refrig AC LLA".to_string(), json!({"team": "Refrigeration", "site": "Louisville"})),
        ("BasicQueue".to_string(), json!({"team": "Front desk", "site": "Sydney"})),
    ]);
    let table = TableFn(move |table: &str, key: &str| {
        assert_eq!(table, "queues");
        Ok(queues.get(key).cloned())
    });
    let config = json!({"table": "queues", "key": "Queue.Name", "target": "QueueInfo"});
    let plugin = enrich(config, Limits::default(), "queues", table);
    for (file, before, record, decision) in run_on_samples(&plugin) {
        assert!(matches!(decision, Decision::Keep), "{file}: {decision:?}");
        let team = if file == ABANDONED { "Front desk" } else { "Refrigeration" };
        let mut expected = before.clone();
        expected["QueueInfo"] = record.doc["QueueInfo"].clone();
        assert_eq!(*record.doc, expected, "{file}: only QueueInfo is added");
        assert_eq!(record.doc["QueueInfo"]["team"], json!(team), "{file}");
    }
    assert_eq!(plugin.context().counters().get("hits"), Some(&3));
}

#[test]
fn enrich_lookup_writes_null_on_a_miss_when_asked() {
    // The abandoned contact never reached an agent (`Agent: null`): a miss.
    let table = TableFn(|_: &str, key: &str| Ok((key == "Steve.Lusk").then(|| json!({"team": "Refrigeration"}))));
    let config = json!({"table": "agents", "key": "Agent.Username", "target": "AgentInfo", "on_miss": "null"});
    let plugin = enrich(config, Limits::default(), "agents", table);
    for (file, _, record, decision) in run_on_samples(&plugin) {
        assert!(matches!(decision, Decision::Keep), "{file}: {decision:?}");
        let expected = if file == ABANDONED { Json::Null } else { json!({"team": "Refrigeration"}) };
        assert_eq!(record.doc["AgentInfo"], expected, "{file}");
    }
    let counters = plugin.context().counters();
    assert_eq!((counters.get("hits"), counters.get("misses")), (Some(&2), Some(&1)));
}

/// How many flat columns `doc` should give: one per leaf, where an array, a `null`, a
/// scalar and an empty object are leaves.
fn leaf_count(doc: &Json) -> usize {
    match doc {
        Json::Object(map) if !map.is_empty() => map.values().map(leaf_count).sum(),
        _ => 1,
    }
}

#[test]
fn ctr_flatten_leaves_no_nested_value() {
    let plugin = transform("ctr-flatten", Json::Null, Limits::default());
    for (file, before, record, decision) in run_on_samples(&plugin) {
        assert!(matches!(decision, Decision::Keep), "{file}: {decision:?}");
        let flat = record.doc.as_object().expect("still an object");
        for (column, value) in flat {
            assert!(!value.is_object() && !value.is_array(), "{file}: {column} is nested: {value}");
        }
        assert_eq!(flat.len(), leaf_count(&before), "{file}");
        assert_eq!(flat["Queue_Name"], before["Queue"]["Name"], "{file}");
        assert_eq!(flat["ContactId"], before["ContactId"], "{file}");
    }
}

#[test]
fn ctr_item_keys_by_contact_id_with_a_timestamp_number() {
    let sink = HOST
        .sink(&compiled("ctr-item"), NodeContext::new("items", "ctr-item"), &Json::Null, Limits::default())
        .expect("ctr-item starts");
    // `LastUpdateTimestamp` of each sample, in epoch ms.
    let last_update =
        HashMap::from([(V1, 1_641_404_915_000_i64), (V2, 1_641_872_492_000), (ABANDONED, 1_541_142_131_000)]);
    let samples = samples();
    let docs: Vec<Json> = samples.iter().map(|(_, d)| d.clone()).collect();
    let out = sink.encode(records(&docs));
    assert_eq!(out.len(), samples.len());
    for ((file, before), (record, encoding)) in samples.iter().zip(out) {
        let e = encoding.unwrap_or_else(|f| panic!("{file}: {f:?}"));
        assert_eq!(e.partition_key.as_deref(), before["ContactId"].as_str(), "{file}");
        assert_eq!(e.sort_key, None);
        let column = |name: &str| e.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(column("LastUpdateTimestampMs"), Some(json!(last_update[file])), "{file}");
        assert_eq!(column("ContactId"), Some(before["ContactId"].clone()), "{file}");
        let payload: Json = serde_json::from_slice(e.payload.as_deref().expect("a payload")).unwrap();
        assert_eq!(payload, *before, "{file}: the payload is the record");
        assert_eq!(*record.doc, *before, "{file}: encoding changes nothing");
    }
}

// ---------------------------------------------------------------------------------------
// Setup errors
// ---------------------------------------------------------------------------------------

#[test]
fn a_misspelt_config_key_is_an_init_error_naming_it() {
    let err = HOST
        .transform(
            &compiled("redact-pii"),
            NodeContext::new("redact", "redact-pii"),
            &json!({"keep_lst": 2}),
            Limits::default(),
        )
        .err()
        .expect("the config is refused");
    match &err {
        HostError::Init { kind, message, .. } => {
            assert_eq!(*kind, FailureKind::InvalidConfig);
            assert!(message.contains("keep_lst"), "{message}");
        }
        other => panic!("expected Init, got {other:?}"),
    }
    assert!(err.to_string().contains("keep_lst"), "{err}");
}

#[test]
fn a_sink_plugin_as_a_transform_is_the_wrong_world() {
    let item = compiled("ctr-item");
    assert_eq!(item.kind(), PluginKind::Sink);
    let err = HOST.transform(&item, NodeContext::new("t", "ctr-item"), &Json::Null, Limits::default()).err();
    assert!(matches!(err, Some(HostError::WrongWorld { .. })), "{err:?}");

    let redact = compiled("redact-pii");
    assert_eq!(redact.kind(), PluginKind::Transform);
    let err = HOST.sink(&redact, NodeContext::new("s", "redact-pii"), &Json::Null, Limits::default()).err();
    assert!(matches!(err, Some(HostError::WrongWorld { .. })), "{err:?}");
}

#[test]
fn garbage_bytes_are_a_compile_error() {
    for bytes in [&b"definitely not WebAssembly"[..], b"", b"\0asm\x01\0\0\0"] {
        let err = HOST.compile("garbage", bytes).err();
        assert!(matches!(err, Some(HostError::Compile { .. })), "{bytes:?}: {err:?}");
    }
}

#[test]
fn an_unknown_plugin_is_not_found_listing_the_bundled_ones() {
    let dir = TempDir::new("not-found");
    let err = HOST.load("no-such-plugin", &dir.0).err().expect("nothing to load");
    let HostError::NotFound { name, bundled, .. } = &err else { panic!("expected NotFound, got {err:?}") };
    assert_eq!(name, "no-such-plugin");
    let text = err.to_string();
    for (plugin, _) in BUNDLED {
        assert!(bundled.contains(plugin), "{plugin} missing from {bundled:?}");
        assert!(text.contains(plugin), "{plugin} missing from {text:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Compile cache
// ---------------------------------------------------------------------------------------

fn cached_host(dir: &Path) -> Host {
    Host::new(Some(CompileCache::new(dir))).expect("the engine starts")
}

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// What a compiled transform does to one v1 record.
fn run_once(host: &Host, compiled: &Compiled) -> Json {
    let plugin = host
        .transform(compiled, NodeContext::new("t", compiled.name()), &Json::Null, Limits::default())
        .expect("the plugin starts");
    let mut out = plugin.process(vec![Record::detached(ctr(V1))]);
    let (record, decision) = out.pop().unwrap();
    assert!(matches!(decision, Decision::Keep), "{decision:?}");
    Json::clone(&record.doc)
}

#[test]
fn the_compile_cache_misses_then_hits() {
    let dir = TempDir::new("cache-hit");
    let wasm = test_plugin("bench-edit");
    let first = cached_host(&dir.0).compile("bench-edit", &wasm).unwrap();
    assert_eq!(first.cache_outcome(), CacheOutcome::Miss);
    assert_eq!(cache_entries(&dir.0).len(), 1);

    let host = cached_host(&dir.0);
    let second = host.compile("bench-edit", &wasm).unwrap();
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(run_once(&host, &second)["Attributes"]["route_key"], json!("VOICE:Steve.Lusk"));
}

#[test]
fn a_changed_wasm_file_is_recompiled_never_served_stale() {
    let dir = TempDir::new("cache-changed");
    let cache = dir.0.join("cache");
    let file = dir.0.join("plugin.wasm");

    std::fs::write(&file, test_plugin("bench-edit")).unwrap();
    assert_eq!(cached_host(&cache).load("plugin.wasm", &dir.0).unwrap().cache_outcome(), CacheOutcome::Miss);
    assert_eq!(cached_host(&cache).load("plugin.wasm", &dir.0).unwrap().cache_outcome(), CacheOutcome::Hit);

    // Same path, other bytes: a different plugin, which must be what runs.
    std::fs::write(&file, test_plugin("hostile-env")).unwrap();
    let host = cached_host(&cache);
    let changed = host.load("plugin.wasm", &dir.0).unwrap();
    assert_eq!(changed.cache_outcome(), CacheOutcome::Miss);
    let doc = run_once(&host, &changed);
    assert_eq!(doc["Attributes"]["env_vars"], json!(0), "the new plugin ran");
    assert!(doc["Attributes"].get("route_key").is_none(), "the stale plugin ran: {doc}");
    assert_eq!(cache_entries(&cache).len(), 2);
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let dir = TempDir::new("cache-corrupt");
    let wasm = test_plugin("bench-edit");
    assert_eq!(cached_host(&dir.0).compile("bench-edit", &wasm).unwrap().cache_outcome(), CacheOutcome::Miss);
    let [entry] = cache_entries(&dir.0).try_into().expect("one entry");
    let good = std::fs::read(&entry).unwrap();

    let truncated = good[..good.len() / 2].to_vec();
    // A flipped bit in the code passes wasmtime's own header checks; the checksum must not.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    for corrupt in [b"garbage".to_vec(), Vec::new(), truncated, flipped] {
        std::fs::write(&entry, &corrupt).unwrap();
        let host = cached_host(&dir.0);
        let compiled = host.compile("bench-edit", &wasm).expect("a corrupt entry is not an error");
        assert_eq!(
            compiled.cache_outcome(),
            CacheOutcome::Miss,
            "a corrupt entry of {} bytes was served",
            corrupt.len()
        );
        assert_eq!(run_once(&host, &compiled)["Attributes"]["route_key"], json!("VOICE:Steve.Lusk"));
        // …and replaced by a good one.
        assert_eq!(cached_host(&dir.0).compile("bench-edit", &wasm).unwrap().cache_outcome(), CacheOutcome::Hit);
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[test]
fn the_cache_folder_and_its_key_are_created_private() {
    let dir = TempDir::new("cache-private");
    let cache = dir.0.join("deep").join("plugins");
    assert_eq!(
        cached_host(&cache).compile("bench-edit", &test_plugin("bench-edit")).unwrap().cache_outcome(),
        CacheOutcome::Miss
    );
    assert_eq!(mode(&cache), 0o700);
    let [entry] = cache_entries(&cache).try_into().expect("one entry");
    assert_eq!(mode(&entry), 0o600);
    let key = CompileCache::new(&cache).key_path();
    assert!(!key.starts_with(&cache), "the key must be outside the folder: {}", key.display());
    assert_eq!(mode(&key), 0o600);
}

#[cfg(unix)]
#[test]
fn a_cache_others_can_write_is_not_loaded_from() {
    let dir = TempDir::new("cache-writable");
    let cache = dir.0.join("plugins");
    let wasm = test_plugin("bench-edit");
    assert_eq!(cached_host(&cache).compile("bench-edit", &wasm).unwrap().cache_outcome(), CacheOutcome::Miss);
    assert_eq!(cached_host(&cache).compile("bench-edit", &wasm).unwrap().cache_outcome(), CacheOutcome::Hit);
    let [entry] = cache_entries(&cache).try_into().expect("one entry");

    // A group-writable folder: anyone in the group could have planted the entry.
    chmod(&cache, 0o770);
    let host = cached_host(&cache);
    let compiled = host.compile("bench-edit", &wasm).unwrap();
    assert_eq!(compiled.cache_outcome(), CacheOutcome::Miss, "loaded from a group-writable folder");
    assert_eq!(run_once(&host, &compiled)["Attributes"]["route_key"], json!("VOICE:Steve.Lusk"));
    chmod(&cache, 0o700);

    // A world-writable entry in a private folder.
    chmod(&entry, 0o666);
    assert_eq!(cached_host(&cache).compile("bench-edit", &wasm).unwrap().cache_outcome(), CacheOutcome::Miss);
}

#[test]
fn an_entry_copied_from_another_cache_is_not_loaded() {
    // Two caches, two keys. An entry (with its tag) copied from one into the other — a
    // restored CI cache, a planted file — does not authenticate under the other's key.
    let dir = TempDir::new("cache-foreign");
    let (ours, theirs) = (dir.0.join("ours"), dir.0.join("theirs"));
    let (bench, env) = (test_plugin("bench-edit"), test_plugin("hostile-env"));
    cached_host(&ours).compile("bench-edit", &bench).unwrap();
    cached_host(&theirs).compile("hostile-env", &env).unwrap();
    let [our_entry] = cache_entries(&ours).try_into().expect("one entry");
    let [their_entry] = cache_entries(&theirs).try_into().expect("one entry");
    // Their compiled code and tag, under our entry's name: if it loaded, `bench-edit`
    // would run `hostile-env`'s code.
    std::fs::copy(&their_entry, &our_entry).unwrap();
    std::fs::copy(their_entry.with_extension("cwasm.hmac"), our_entry.with_extension("cwasm.hmac")).unwrap();
    let host = cached_host(&ours);
    let compiled = host.compile("bench-edit", &bench).unwrap();
    assert_eq!(compiled.cache_outcome(), CacheOutcome::Miss, "a foreign entry was loaded");
    assert_eq!(run_once(&host, &compiled)["Attributes"]["route_key"], json!("VOICE:Steve.Lusk"));
}
