//! A plugin that must visit the whole record: the bundled `ctr-flatten` (walks the record
//! with `batch.walk`, hands the flat one back with `batch.set-fields`: no JSON text crosses
//! the boundary but arrays') against the same flattening done natively by the host on its
//! record, and against the whole record crossing the boundary as JSON text both ways
//! (`bench-json`, which flattens nothing: the floor of the JSON round trip the plugin made
//! before `walk` existed). Batches of 256 real-sized CTRs (~3.5 KB).
//!
//! `cargo bench -p ctrflow --bench flatten` (add `-- --quick` while iterating). Criterion's
//! `thrpt` is records per second; `time / 256` is the per-record cost.

#[global_allocator]
static GLOBAL: ctrflow::Allocator = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ctrflow::host::{Decision, Host, Limits, NodeContext, TEST_PLUGIN_DIR, TransformPlugin};
use ctrflow::record::Record;
use serde_json::{Map, Value as Json};

const BATCH: usize = 256;
const RECORD_BYTES: usize = 3500;

/// The real v1 sample (3.1 KB), its attributes padded to [`RECORD_BYTES`] of JSON.
fn ctr() -> Json {
    let text = include_str!("../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json");
    let mut doc: Json = serde_json::from_str(text).expect("the fixture is JSON");
    doc["Attributes"]["notes"] = Json::String(String::new());
    let pad = RECORD_BYTES.saturating_sub(doc.to_string().len());
    doc["Attributes"]["notes"] = Json::String("n".repeat(pad));
    doc
}

fn bundled(host: &Host, name: &str) -> TransformPlugin {
    let compiled = host.load(name, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e}"));
    host.transform(&compiled, NodeContext::new("bench", name), &Json::Null, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn test_plugin(host: &Host, name: &str) -> TransformPlugin {
    let file = PathBuf::from(TEST_PLUGIN_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    let wasm = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let compiled = host.compile(name, &wasm).unwrap_or_else(|e| panic!("{name}: {e}"));
    host.transform(&compiled, NodeContext::new("bench", name), &Json::Null, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `ctr-flatten`'s default flattening, natively on the host's record: nested objects to
/// `Parent_Child` columns, arrays to their JSON text, an empty object to null, sorted.
fn flatten_native(records: &mut [Record]) {
    fn into(out: &mut BTreeMap<String, Json>, key: String, value: &Json) {
        match value {
            Json::Object(map) if !map.is_empty() => {
                for (child, v) in map {
                    into(out, format!("{key}_{child}"), v);
                }
            }
            Json::Object(_) => {
                out.insert(key, Json::Null);
            }
            Json::Array(_) => {
                out.insert(key, Json::String(serde_json::to_string(value).unwrap_or_default()));
            }
            scalar => {
                out.insert(key, scalar.clone());
            }
        }
    }
    for record in records {
        let mut flat = BTreeMap::new();
        if let Json::Object(map) = &*record.doc {
            for (k, v) in map {
                into(&mut flat, k.clone(), v);
            }
        }
        record.doc = Arc::new(Json::Object(flat.into_iter().collect::<Map<_, _>>()));
    }
}

fn fresh(doc: &Json) -> Vec<Record> {
    (0..BATCH).map(|_| Record::detached(doc.clone())).collect()
}

fn flatten(c: &mut Criterion) {
    let doc = ctr();
    let host = Host::new(None).expect("the engine starts");
    let wasm = bundled(&host, "ctr-flatten");
    let json = test_plugin(&host, "bench-json");

    // The plugin and the native flattening must agree, or the comparison means nothing.
    let mut native = fresh(&doc);
    flatten_native(&mut native);
    let (record, decision) = wasm.process(fresh(&doc)).into_iter().next().expect("one record");
    assert!(matches!(decision, Decision::Keep), "{decision:?}");
    assert_eq!(*record.doc, *native[0].doc, "ctr-flatten differs from the native flattening");

    let mut g = c.benchmark_group("flatten");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("wasm_walk", |b| b.iter_batched(|| fresh(&doc), |r| wasm.process(r), BatchSize::PerIteration));
    g.bench_function("native", |b| {
        b.iter_batched(
            || fresh(&doc),
            |mut r| {
                flatten_native(&mut r);
                r
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("wasm_json_round_trip", |b| {
        b.iter_batched(|| fresh(&doc), |r| json.process(r), BatchSize::PerIteration)
    });
    g.finish();
}

criterion_group!(benches, flatten);
criterion_main!(benches);
