//! The parser: serde_json (what ctrflow uses) against sonic-rs and simd-json on contact
//! records, parsing once into a tree (what every source does) and parsing then serializing
//! (what a record costs end to end when no plugin touches it).
//!
//! Inputs, each as the compact JSON text a source receives:
//! - `real`: the published CTR samples in `tests/fixtures/ctr/` (3 records, 1.2–3.2 KB);
//! - `generated`: the first 256 records of the throughput benchmark's input (ctrflow's
//!   generator, about 3 KB each): the file `PARSE_BENCH_INPUT` names, by default
//!   `$CARGO_TARGET_DIR/bench-throughput/ctrs-100000.jsonl`, which `cargo xtask bench
//!   throughput` writes. Without it only `real` runs.
//!
//! Contenders, each a way the runtime could parse:
//! - `serde_json`: `serde_json::from_slice::<serde_json::Value>`, the path before ctrflow's
//!   `json::parse`;
//! - `serde_json/text`: the text checked as UTF-8 once, then `serde_json::from_str`: what
//!   ctrflow's sources do now (`json::parse`), which skips serde_json's check of every string;
//! - `sonic_rs/serde_value`: sonic-rs deserializing into `serde_json::Value` (a drop-in:
//!   the record type, the plugins' host code and every connector stay as they are);
//! - `sonic_rs/own_value`: sonic-rs into its own `sonic_rs::Value` (the record type would change);
//! - `simd_json/serde_value`: simd-json's serde deserializer into `serde_json::Value` (drop-in);
//! - `simd_json/owned_value`: simd-json into its `OwnedValue` (the record type would change).
//!
//! simd-json parses in place, so each of its iterations first copies the text into a
//! scratch buffer (a source's `Bytes` are shared and immutable); the copy is timed, as the
//! runtime would pay it.
//!
//! Before measuring, every contender must give back, on every sample (the real ones, the
//! other strict-JSON fixtures, and the first 2,000 generated records), a tree equal to serde_json's,
//! and its serialized text must parse (with serde_json) to that tree again. A difference
//! stops the bench.
//!
//! Build flags matter: sonic-rs picks its SIMD code at compile time (its README asks for
//! `-C target-cpu=native`), simd-json detects the CPU at run time. This bench uses the
//! workspace's flags, those of the binary a user gets.
//!
//! It lives in the `bench/` crate, not the runtime's, so the parsers' serde features never
//! change how the runtime's dependencies are built.
//!
//! Run: `cargo bench -p ctrflow-bench --bench parse`. It ends with a table of each
//! contender's time relative to serde_json, read back from criterion's estimates.

// The allocator the ctrflow binary uses (`common::alloc`).
#[global_allocator]
static GLOBAL: common::alloc::Allocator = common::alloc::Allocator;

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use serde_json::Value;
use simd_json::prelude::Writable;

/// Records in the `generated` input: about one batch, so the working set is a batch's.
const GENERATED: usize = 256;
/// Generated records the correctness check runs on.
const CHECKED: usize = 2_000;

const CONTENDERS: [&str; 6] = [
    "serde_json",
    "serde_json/text",
    "sonic_rs/serde_value",
    "sonic_rs/own_value",
    "simd_json/serde_value",
    "simd_json/owned_value",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ctr")
}

/// The published CTRs, compact, one text per record.
fn real_ctrs() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in [
        "kyopark-voice-inbound-update-v1.json",
        "kyopark-voice-inbound-update-v2.json",
        "aws-samples-workshop-voice-abandoned-in-queue.json",
    ] {
        let text = std::fs::read(fixtures().join(name)).expect("the fixture exists");
        let doc: Value = serde_json::from_slice(&text).expect("the fixture is JSON");
        out.push(serde_json::to_vec(&doc).expect("serializes"));
    }
    out
}

/// Every strict-JSON fixture as stored (pretty-printed ones included): the check's extra
/// inputs. The `.jsonc` sample has comments and is not JSON.
fn every_fixture() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(fixtures()).expect("fixtures").flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let text = std::fs::read(&path).expect("readable");
        if name.ends_with(".json") {
            out.push((name, text));
        } else if name.ends_with(".jsonl") {
            for (i, line) in text.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()).enumerate() {
                out.push((format!("{name}:{}", i + 1), line.to_vec()));
            }
        }
    }
    out
}

/// The first `n` lines of the throughput benchmark's generated input, if it is there.
fn generated(n: usize) -> Vec<Vec<u8>> {
    common::generated(n).unwrap_or_else(|path| {
        println!("parse: no {} (run `cargo xtask bench throughput` once): real samples only", path.display());
        Vec::new()
    })
}

/// Parses with `contender` and serializes with the same library.
fn parse_and_serialize(contender: &str, text: &[u8], scratch: &mut Vec<u8>) -> Vec<u8> {
    match contender {
        "serde_json" => serde_json::to_vec(&serde_json::from_slice::<Value>(text).unwrap()).unwrap(),
        "serde_json/text" => serde_json::to_vec(&from_text(text).unwrap()).unwrap(),
        "sonic_rs/serde_value" => sonic_rs::to_vec(&sonic_rs::from_slice::<Value>(text).unwrap()).unwrap(),
        "sonic_rs/own_value" => sonic_rs::to_vec(&sonic_rs::from_slice::<sonic_rs::Value>(text).unwrap()).unwrap(),
        "simd_json/serde_value" => {
            refill(scratch, text);
            simd_json::to_vec(&simd_json::serde::from_slice::<Value>(scratch).unwrap()).unwrap()
        }
        "simd_json/owned_value" => {
            refill(scratch, text);
            let mut out = Vec::with_capacity(text.len());
            simd_json::to_owned_value(scratch).unwrap().write(&mut out).unwrap();
            out
        }
        other => unreachable!("{other}"),
    }
}

/// Parses with `contender` into its tree, then drops it (the tree is what is timed).
fn parse(contender: &str, text: &[u8], scratch: &mut Vec<u8>) {
    match contender {
        "serde_json" => drop(std::hint::black_box(serde_json::from_slice::<Value>(text).unwrap())),
        "serde_json/text" => drop(std::hint::black_box(from_text(text).unwrap())),
        "sonic_rs/serde_value" => drop(std::hint::black_box(sonic_rs::from_slice::<Value>(text).unwrap())),
        "sonic_rs/own_value" => drop(std::hint::black_box(sonic_rs::from_slice::<sonic_rs::Value>(text).unwrap())),
        "simd_json/serde_value" => {
            refill(scratch, text);
            drop(std::hint::black_box(simd_json::serde::from_slice::<Value>(scratch).unwrap()))
        }
        "simd_json/owned_value" => {
            refill(scratch, text);
            drop(std::hint::black_box(simd_json::to_owned_value(scratch).unwrap()))
        }
        other => unreachable!("{other}"),
    }
}

/// What ctrflow's `json::parse` does: one UTF-8 check of the whole text, then `from_str`.
fn from_text(text: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn refill(scratch: &mut Vec<u8>, text: &[u8]) {
    scratch.clear();
    scratch.extend_from_slice(text);
}

/// Each contender's tree, through its own serializer, must read back (with serde_json) as
/// serde_json's tree; the drop-in contenders' trees must also equal it directly.
fn check(samples: &[(String, Vec<u8>)]) {
    let mut scratch = Vec::new();
    for (name, text) in samples {
        let expected: Value = serde_json::from_slice(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        refill(&mut scratch, text);
        let direct = [
            ("serde_json/text", from_text(text)),
            ("sonic_rs/serde_value", sonic_rs::from_slice::<Value>(text).map_err(|e| e.to_string())),
            ("simd_json/serde_value", simd_json::serde::from_slice::<Value>(&mut scratch).map_err(|e| e.to_string())),
        ];
        for (contender, tree) in direct {
            match tree {
                Ok(tree) if tree == expected => {}
                Ok(_) => panic!("{contender}: {name}: the tree differs from serde_json's"),
                Err(e) => panic!("{contender}: {name}: {e}"),
            }
        }
        for contender in CONTENDERS {
            let out = parse_and_serialize(contender, text, &mut scratch);
            let back: Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{contender}: {name}: its output is not JSON: {e}"));
            assert!(back == expected, "{contender}: {name}: the round trip differs from serde_json's tree");
        }
    }
}

fn bench_group(c: &mut Criterion, group: &str, records: &[Vec<u8>]) {
    let bytes: usize = records.iter().map(Vec::len).sum();
    for (what, serialize) in [("parse", false), ("parse_serialize", true)] {
        let mut g = c.benchmark_group(format!("{what}/{group}"));
        // Bytes per second, so the rows compare as parser throughput.
        g.throughput(Throughput::Bytes(bytes as u64));
        g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
        for contender in CONTENDERS {
            let mut scratch = Vec::with_capacity(16 << 10);
            g.bench_function(contender, |b| {
                b.iter(|| {
                    for text in records {
                        if serialize {
                            drop(std::hint::black_box(parse_and_serialize(contender, text, &mut scratch)));
                        } else {
                            parse(contender, text, &mut scratch);
                        }
                    }
                })
            });
        }
        g.finish();
    }
}

/// Criterion's point estimate (mean, ns) of one benchmark, from its saved estimates.
fn estimate(dir: &Path, group: &str, id: &str) -> Option<f64> {
    let file = dir.join(group.replace('/', "_")).join(id.replace('/', "_")).join("new/estimates.json");
    let v: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn summary(groups: &[(&str, usize, usize)]) {
    let dir =
        std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| common::target_dir().join("criterion"));
    println!("\nparse: mean time per record and speed-up over serde_json (criterion means, this run)");
    println!("{:<34} {:<22} {:>12} {:>10} {:>9}", "group", "contender", "µs/record", "MB/s", "speed-up");
    for (group, records, bytes) in groups {
        for what in ["parse", "parse_serialize"] {
            let g = format!("{what}/{group}");
            let Some(base) = estimate(&dir, &g, "serde_json") else { continue };
            for contender in CONTENDERS {
                let Some(ns) = estimate(&dir, &g, contender) else { continue };
                println!(
                    "{:<34} {:<22} {:>12.2} {:>10.0} {:>8.2}x",
                    g,
                    contender,
                    ns / *records as f64 / 1e3,
                    *bytes as f64 / ns * 1e3,
                    base / ns
                );
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter matching none of ours means "not this bench"
    // (criterion applies it to the benchmarks themselves).
    let ids = ["parse/real/", "parse/generated/", "parse_serialize/real/", "parse_serialize/generated/"]
        .iter()
        .flat_map(|g| CONTENDERS.iter().map(move |c| format!("{g}{c}")))
        .collect::<Vec<_>>();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !ids.iter().any(|id| id.contains(&f))) {
        return;
    }
    let real = real_ctrs();
    let checked = generated(CHECKED);
    let generated_records: Vec<Vec<u8>> = checked.iter().take(GENERATED).cloned().collect();
    let mut samples = every_fixture();
    let fixtures = samples.len();
    samples.extend(checked.into_iter().enumerate().map(|(i, t)| (format!("generated #{i}"), t)));
    check(&samples);
    println!(
        "parse: all {} contenders give serde_json's tree on all {} samples ({fixtures} fixtures, {} generated)",
        CONTENDERS.len(),
        samples.len(),
        samples.len() - fixtures
    );

    let mut c = Criterion::default().configure_from_args();
    bench_group(&mut c, "real", &real);
    if !generated_records.is_empty() {
        bench_group(&mut c, "generated", &generated_records);
    }
    c.final_summary();
    let size = |r: &[Vec<u8>]| r.iter().map(Vec::len).sum::<usize>();
    summary(&[("real", real.len(), size(&real)), ("generated", generated_records.len(), size(&generated_records))]);
}
