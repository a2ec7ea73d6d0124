//! What a different record type would save: the throughput graph's work on the record tree,
//! done natively on one thread, with `serde_json::Value` (ctrflow's record type) and with
//! `sonic_rs::Value` (the fastest parser of `benches/parse.rs`, which needs its own tree).
//!
//! Per record, the tree work of the demo graph and nothing else (no plugins, no threads, no
//! SQLite, no files):
//! 1. parse the line (serde_json: the text checked as UTF-8 once, as ctrflow's sources do);
//! 2. redact: replace `CustomerEndpoint.Address` with its last four characters behind `*`;
//! 3. enrich: read `Agent.Username`, parse an agents-table row's JSON text, insert it as
//!    `AgentInfo` (what the host does with a looked-up row);
//! 4. route: read `Channel`;
//! 5. the SQLite row: every top-level object or array serialised to JSON text (the columns
//!    the newer-wins table binds as text);
//! 6. flatten: every nested field to a `Parent_Child` column, arrays as JSON text, sorted;
//! 7. the lake line: the flat record serialised;
//! 8. drop both trees.
//!
//! Both must write the same lake line (compared as parsed JSON) and the same column texts
//! before anything is timed. sonic-rs is built with `sort_keys`: an object it has to edit
//! becomes a map, and without `sort_keys` that map is unordered (`AHashMap`), so the lines'
//! key order would change from run to run.
//!
//! Run: `cargo xtask bench throughput --records 2000` once (the generated input), then
//! `cargo bench --manifest-path bench/Cargo.toml --bench record_type`.

// The allocator the ctrflow binary uses (`common::alloc`).
#[global_allocator]
static GLOBAL: common::alloc::Allocator = common::alloc::Allocator;

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use serde_json::Value as Json;
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait};

/// How many generated records one iteration works through.
const RECORDS: usize = 256;

/// An agents-table row as the CSV table keeps it: its JSON text.
const ROW: &str = r#"{"full_name":"Olivia Bennett","site":"Seattle","team":"Billing","username":"agent001"}"#;

fn input() -> Vec<Vec<u8>> {
    common::generated(RECORDS).unwrap_or_else(|path| {
        panic!("{}: missing (run `cargo xtask bench throughput --records 2000` once)", path.display())
    })
}

fn masked(address: &str) -> String {
    let keep = address.chars().count().saturating_sub(4);
    address.chars().enumerate().map(|(i, c)| if i < keep { '*' } else { c }).collect()
}

/// What one record leaves behind: its column texts and its lake line.
#[derive(Default)]
struct Out {
    columns: Vec<u8>,
    line: Vec<u8>,
}

fn with_serde_json(text: &[u8], out: &mut Out) {
    let mut doc: Json = serde_json::from_str(std::str::from_utf8(text).unwrap()).unwrap();
    if let Some(address) = doc.pointer_mut("/CustomerEndpoint/Address")
        && let Some(s) = address.as_str()
    {
        *address = Json::String(masked(s));
    }
    if doc.pointer("/Agent/Username").and_then(Json::as_str).is_some() {
        let row: Json = serde_json::from_str(ROW).unwrap();
        doc.as_object_mut().unwrap().insert("AgentInfo".into(), row);
    }
    black_box(doc.get("Channel").and_then(Json::as_str));
    for value in doc.as_object().unwrap().values() {
        if value.is_object() || value.is_array() {
            serde_json::to_writer(&mut out.columns, value).unwrap();
            out.columns.push(b'\n');
        }
    }
    let mut columns = Vec::with_capacity(128);
    let mut name = String::with_capacity(64);
    for (key, value) in doc.as_object().unwrap() {
        name.clear();
        name.push_str(key);
        flatten_serde(&mut columns, &mut name, value);
    }
    columns.sort_by(|a: &(String, Json), b| a.0.cmp(&b.0));
    let flat: serde_json::Map<String, Json> = columns.into_iter().collect();
    serde_json::to_writer(&mut out.line, &flat).unwrap();
}

/// The SDK's flattening (`plugin-sdk/src/flatten.rs`, what `batch.flatten` runs), restated
/// here so this crate stays free of the runtime's dependencies; `flatten_sonic` is the same
/// for sonic-rs's tree.
fn flatten_serde(out: &mut Vec<(String, Json)>, name: &mut String, value: &Json) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            let len = name.len();
            for (child, inner) in map {
                name.truncate(len);
                name.push('_');
                name.push_str(child);
                flatten_serde(out, name, inner);
            }
            name.truncate(len);
        }
        Json::Object(_) => out.push((name.clone(), Json::Null)),
        Json::Array(_) => out.push((name.clone(), Json::String(serde_json::to_string(value).unwrap()))),
        scalar => out.push((name.clone(), scalar.clone())),
    }
}

fn with_sonic_rs(text: &[u8], out: &mut Out) {
    let mut doc: sonic_rs::Value = sonic_rs::from_slice(text).unwrap();
    if let Some(address) = doc.pointer_mut(&["CustomerEndpoint", "Address"])
        && let Some(s) = address.as_str()
    {
        *address = sonic_rs::Value::from(masked(s).as_str());
    }
    if doc.pointer(&["Agent", "Username"]).and_then(|v| v.as_str()).is_some() {
        let row: sonic_rs::Value = sonic_rs::from_str(ROW).unwrap();
        doc.as_object_mut().unwrap().insert("AgentInfo", row);
    }
    black_box(doc.get("Channel").and_then(|v| v.as_str()));
    for (_, value) in doc.as_object().unwrap().iter() {
        if value.is_object() || value.is_array() {
            sonic_rs::to_writer(&mut out.columns, value).unwrap();
            out.columns.push(b'\n');
        }
    }
    let mut columns = Vec::with_capacity(128);
    let mut name = String::with_capacity(64);
    for (key, value) in doc.as_object().unwrap().iter() {
        name.clear();
        name.push_str(key);
        flatten_sonic(&mut columns, &mut name, value);
    }
    columns.sort_by(|a: &(String, sonic_rs::Value), b| a.0.cmp(&b.0));
    let mut flat = sonic_rs::Object::with_capacity(columns.len());
    for (name, value) in columns {
        flat.insert(&name, value);
    }
    sonic_rs::to_writer(&mut out.line, &flat).unwrap();
}

fn flatten_sonic(out: &mut Vec<(String, sonic_rs::Value)>, name: &mut String, value: &sonic_rs::Value) {
    if let Some(map) = value.as_object() {
        if map.is_empty() {
            out.push((name.clone(), sonic_rs::Value::new()));
            return;
        }
        let len = name.len();
        for (child, inner) in map.iter() {
            name.truncate(len);
            name.push('_');
            name.push_str(child);
            flatten_sonic(out, name, inner);
        }
        name.truncate(len);
    } else if value.is_array() {
        out.push((name.clone(), sonic_rs::Value::from(sonic_rs::to_string(value).unwrap().as_str())));
    } else {
        out.push((name.clone(), value.clone()));
    }
}

/// Both trees must leave the same columns and the same line, or the timing means nothing.
fn check(records: &[Vec<u8>]) {
    for (i, text) in records.iter().enumerate() {
        let (mut a, mut b) = (Out::default(), Out::default());
        with_serde_json(text, &mut a);
        with_sonic_rs(text, &mut b);
        let parsed = |bytes: &[u8]| -> Vec<Json> {
            bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
        };
        assert_eq!(parsed(&a.columns), parsed(&b.columns), "record {i}: the column texts differ");
        assert_eq!(parsed(&a.line), parsed(&b.line), "record {i}: the lake lines differ");
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !["record_type/serde_json", "record_type/sonic_rs"].iter().any(|id| id.contains(&f))) {
        return;
    }
    let records = input();
    check(&records);
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("record_type");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    for (name, work) in [("serde_json", with_serde_json as fn(&[u8], &mut Out)), ("sonic_rs", with_sonic_rs)] {
        let mut out = Out::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                for text in &records {
                    out.columns.clear();
                    out.line.clear();
                    work(text, &mut out);
                }
            })
        });
    }
    g.finish();
    c.final_summary();
}
