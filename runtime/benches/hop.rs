//! One hop: a plugin that reads two fields of a ~3.5 KB CTR and writes one, per record, at
//! batch sizes 1, 64 and 256, three ways in the same run:
//!
//! - `wasm_resource/<batch>`: the `bench-edit` plugin through [`TransformPlugin::process`]
//!   (two `batch.get` and one `batch.set` across the boundary, paths resolved at init);
//! - `native/<batch>`: the same edit in Rust on the host's record (`FieldPath` get/get/set
//!   on `record.doc.make_mut()`), the floor the host could reach;
//! - `wasm_json_bytes/<batch>`: the `bench-json` plugin, the whole record crossing the
//!   boundary as JSON text both ways, as engines that ship JSON to wasm do;
//! - `python_sdk/<batch>` and `js_sdk/<batch>`: the same edit as `bench-edit`, written in
//!   Python (componentize-py) and JavaScript (componentize-js) with their guest libraries
//!   (`plugins/lang-testing/`), built here by `plugin-sdk/tools/build-plugin.sh`, which
//!   installs the pinned tools on first use (docs/plugins-in-other-languages.md).
//!
//! Throughput is in records, so criterion's `thrpt` is records per second and `time / batch`
//! is the per-record cost. Records are built fresh for every iteration (a clone of the parsed
//! document into `Record::detached`) outside the timed section, and dropped outside it too.
//!
//! Run: `cargo bench -p ctrflow --bench hop` (add `-- --quick` while iterating).

#[global_allocator]
static GLOBAL: ctrflow::Allocator = ctrflow::Allocator;

mod common;

use std::path::PathBuf;

use common::ctr;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ctrflow::host::{Decision, Host, Limits, NodeContext, TEST_PLUGIN_DIR, TransformPlugin};
use ctrflow::record::Record;
use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::Value as Json;

const BATCHES: [usize; 3] = [1, 64, 256];

/// How many fresh records criterion holds for one timed run of iterations: about one batch,
/// as a pipeline holds a batch it has just parsed, so the records are in cache. (Criterion's
/// `SmallInput` would hold a tenth of all iterations; a working set of 4096 records
/// measured 2.5x slower for native and wasm alike, being DRAM-bound on `BTreeMap` key
/// compares rather than measuring the hop.)
const RECORDS_PER_BATCH: usize = 256;

fn plugin(host: &Host, name: &str) -> TransformPlugin {
    let file = PathBuf::from(TEST_PLUGIN_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    let wasm =
        std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e} (the runtime's build.rs builds it)", file.display()));
    instantiate(host, name, &wasm)
}

/// A Python or JavaScript plugin of `plugins/lang-testing/`, built by the script plugin
/// authors use.
fn lang_plugin(host: &Host, lang: &str, name: &str) -> TransformPlugin {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = PathBuf::from(TEST_PLUGIN_DIR).join("lang").join(format!("{}.wasm", name.replace('-', "_")));
    let status = std::process::Command::new("bash")
        .arg(root.join("plugin-sdk/tools/build-plugin.sh"))
        .args([lang, "transform"])
        .arg(root.join("plugins/lang-testing").join(name))
        .arg(&out)
        .status()
        .expect("run build-plugin.sh");
    assert!(status.success(), "building {name} failed ({status})");
    instantiate(host, name, &std::fs::read(&out).expect("the build wrote the component"))
}

fn instantiate(host: &Host, name: &str, wasm: &[u8]) -> TransformPlugin {
    let compiled = host.compile(name, wasm).unwrap_or_else(|e| panic!("{name}: {e}"));
    host.transform(&compiled, NodeContext::new("bench", name), &Json::Null, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `bench-edit`'s edit, natively: `Attributes.route_key = "<Channel>:<Agent.Username>"`.
struct NativeEdit {
    channel: FieldPath,
    user: FieldPath,
    out: FieldPath,
}

impl NativeEdit {
    fn new() -> Self {
        let path = |p| FieldPath::parse(p).expect("a valid path");
        NativeEdit { channel: path("Channel"), user: path("Agent.Username"), out: path("Attributes.route_key") }
    }

    fn process(&self, mut records: Vec<Record>) -> Vec<Record> {
        for record in &mut records {
            let doc = record.doc.make_mut();
            // Owned copies, as the plugin gets them across the boundary.
            let channel = self.channel.get(doc).and_then(Json::as_str).unwrap_or_default().to_string();
            let user = self.user.get(doc).and_then(Json::as_str).unwrap_or_default().to_string();
            self.out.set(doc, Json::String(format!("{channel}:{user}"))).expect("Attributes is an object");
        }
        records
    }
}

fn fresh(doc: &Json, n: usize) -> Vec<Record> {
    (0..n).map(|_| Record::detached(doc.clone())).collect()
}

fn hop(c: &mut Criterion) {
    let doc = ctr();
    let host = Host::new(None).expect("the engine starts");
    let resource = plugin(&host, "bench-edit");
    let json_bytes = plugin(&host, "bench-json");
    let python = lang_plugin(&host, "python", "bench-edit-py");
    let js = lang_plugin(&host, "js", "bench-edit-js");
    let native = NativeEdit::new();

    // All three must do the same edit, or the comparison means nothing.
    let kept = |out: Vec<(Record, Decision)>| -> Json {
        let (record, decision) = out.into_iter().next().expect("one record");
        assert!(matches!(decision, Decision::Keep), "{decision:?}");
        Json::clone(&record.doc)
    };
    let expected = Json::clone(&native.process(fresh(&doc, 1))[0].doc);
    assert_eq!(expected["Attributes"]["route_key"], "VOICE:Steve.Lusk");
    assert_eq!(kept(resource.process(fresh(&doc, 1))), expected, "bench-edit differs from the native edit");
    assert_eq!(kept(json_bytes.process(fresh(&doc, 1))), expected, "bench-json differs from the native edit");
    assert_eq!(kept(python.process(fresh(&doc, 1))), expected, "bench-edit-py differs from the native edit");
    assert_eq!(kept(js.process(fresh(&doc, 1))), expected, "bench-edit-js differs from the native edit");

    group(c, "wasm_resource", &doc, SamplingMode::Auto, |records| resource.process(records));
    group(c, "native", &doc, SamplingMode::Auto, |records| native.process(records));
    // Milliseconds per iteration: flat sampling, as criterion advises for long iterations,
    // instead of linear sampling's 5050 iterations per benchmark.
    group(c, "wasm_json_bytes", &doc, SamplingMode::Flat, |records| json_bytes.process(records));
    group(c, "python_sdk", &doc, SamplingMode::Flat, |records| python.process(records));
    group(c, "js_sdk", &doc, SamplingMode::Flat, |records| js.process(records));
}

/// One benchmark group: `run` on fresh batches of every size. Its output is returned to
/// criterion, which drops it after the clock stops.
fn group<O>(c: &mut Criterion, name: &str, doc: &Json, sampling: SamplingMode, run: impl Fn(Vec<Record>) -> O) {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(sampling);
    for batch in BATCHES {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter_batched(
                || fresh(doc, batch),
                &run,
                BatchSize::NumIterations((RECORDS_PER_BATCH / batch).max(1) as u64),
            )
        });
    }
    g.finish();
}

criterion_group!(benches, hop);
criterion_main!(benches);
