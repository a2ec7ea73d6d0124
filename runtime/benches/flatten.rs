//! A plugin that must visit the whole record: the bundled `ctr-flatten`, measured three ways
//! against the host flattening its own record natively (`native`: `Doc::flatten`, the SDK's
//! `flatten`, which is what `batch.flatten` runs):
//! - `wasm_host_flatten`: its default config, which asks the host to flatten
//!   (`batch.flatten`: no field crosses the boundary);
//! - `wasm_walk`: with an `exclude`, which makes it pick columns: the host flattens, then
//!   the plugin walks the flat record (`batch.walk`) and hands the kept columns back
//!   (`batch.set-fields`), so every column's name and value crosses twice;
//! - `wasm_json_round_trip`: the whole record crossing as JSON text both ways
//!   (`bench-json`, which flattens nothing: the floor of the round trip plugins made before
//!   `walk` existed).
//!
//! Batches of 256 real-sized CTRs (~3.5 KB).
//!
//! `cargo bench -p ctrflow --bench flatten` (add `-- --quick` while iterating). Criterion's
//! `thrpt` is records per second; `time / 256` is the per-record cost.

#[global_allocator]
static GLOBAL: ctrflow::Allocator = ctrflow::Allocator;

mod common;

use common::{bundled, bundled_with, ctr, test_plugin};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ctrflow::doc::Doc;
use ctrflow::host::{Decision, Host};
use ctrflow::record::Record;
use ctrflow_plugin_sdk::flatten::Arrays;
use serde_json::Value as Json;

const BATCH: usize = 256;

/// The host's flattening, natively on its records: what `batch.flatten` does for a plugin.
fn flatten_native(records: &mut [Record]) {
    for record in records {
        if let Json::Object(map) = &*record.doc {
            record.doc = Doc::flatten(map, "_", Arrays::Json).expect("no collisions");
        }
    }
}

fn fresh(doc: &Json) -> Vec<Record> {
    (0..BATCH).map(|_| Record::detached(doc.clone())).collect()
}

fn flatten(c: &mut Criterion) {
    let doc = ctr();
    let host = Host::new(None).expect("the engine starts");
    let wasm = bundled(&host, "ctr-flatten");
    // An `exclude` of a column no record has: the same output, through the picking path.
    let walk = bundled_with(&host, "ctr-flatten", &serde_json::json!({"exclude": ["NoSuchColumn"]}));
    let json = test_plugin(&host, "bench-json");

    // The plugin and the native flattening must agree, or the comparison means nothing.
    let mut native = fresh(&doc);
    flatten_native(&mut native);
    let (record, decision) = wasm.process(fresh(&doc)).into_iter().next().expect("one record");
    assert!(matches!(decision, Decision::Keep), "{decision:?}");
    assert_eq!(*record.doc, *native[0].doc, "ctr-flatten differs from the native flattening");
    let (record, _) = walk.process(fresh(&doc)).into_iter().next().expect("one record");
    assert_eq!(*record.doc, *native[0].doc, "ctr-flatten's walk differs from the native flattening");

    let mut g = c.benchmark_group("flatten");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("wasm_host_flatten", |b| {
        b.iter_batched(|| fresh(&doc), |r| wasm.process(r), BatchSize::PerIteration)
    });
    g.bench_function("wasm_walk", |b| b.iter_batched(|| fresh(&doc), |r| walk.process(r), BatchSize::PerIteration));
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
