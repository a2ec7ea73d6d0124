//! What a different record type would save: the throughput graph's work on the record tree,
//! done natively on one thread, four ways:
//! - `serde_json`: `serde_json::Value` parsed and written by serde_json;
//! - `ctrflow`: the same tree parsed and written by the runtime's own `json` module (its
//!   source file compiled in), the flat record written from column names gathered in one
//!   buffer rather than built as a tree: the runtime's tree work today, except that the
//!   runtime walks in column order where this sorts the columns (both rows sort alike);
//! - `sonic_rs`: `sonic_rs::Value` (the fastest parser of `benches/parse.rs`, which needs its
//!   own tree);
//! - `spans`: a prototype ([`spans`]): objects as sorted vectors of fields, strings and
//!   numbers as spans of the record's own copy of its text, one allocation per object or
//!   array besides that copy and the strings it decodes or edits.
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
//! All must write the same lake line (compared as parsed JSON, its keys in strictly
//! increasing order; `ctrflow`'s byte for byte) and the same column texts before anything is
//! timed. sonic-rs is built with `sort_keys`: an object it has to edit
//! becomes a map, and without `sort_keys` that map is unordered (`AHashMap`), so the lines'
//! key order would change from run to run.
//!
//! Run: `cargo xtask bench throughput --records 2000` once (the generated input), then
//! `cargo bench --manifest-path bench/Cargo.toml --bench record_type`.

// The allocator the ctrflow binary uses (`common::alloc`).
#[global_allocator]
static GLOBAL: common::alloc::Allocator = common::alloc::Allocator;

mod common;
#[path = "record_type/spans.rs"]
mod spans;

// The runtime's JSON module (parser and writer), from its source directory. (A bench is
// built with `cfg(test)` but without the harness: its tests' imports go unused.)
#[path = "../../runtime/src"]
mod runtime {
    #[allow(dead_code, unused_imports)]
    pub mod json;
}
use runtime::json;

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
    edit(&mut doc, || serde_json::from_str(ROW).unwrap());
    nested_columns(&doc, &mut out.columns, |out, value| serde_json::to_writer(out, value).unwrap());
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

/// `with_serde_json`'s work with the runtime's parser and writer (`json::parse`,
/// `json::write_value`): the tree work as the runtime does it today.
fn with_ctrflow(text: &[u8], out: &mut Out) {
    let mut doc: Json = json::parse(text).unwrap();
    edit(&mut doc, || json::parse(ROW.as_bytes()).unwrap());
    nested_columns(&doc, &mut out.columns, json::write_value);
    let mut columns = Columns::default();
    for (key, value) in doc.as_object().unwrap() {
        columns.stem.clear();
        columns.stem.push_str(key);
        flatten_ctrflow(&mut columns, value);
    }
    columns.write(&mut out.line, |out, value: &&Json| json::write_value(out, value));
}

/// The flat record without building a tree for it, as the runtime writes its text: each column's
/// name in one shared buffer, with the value it takes (a node of the record, `null` for an
/// empty object, or an array's JSON text), sorted by name, then written.
struct Columns<V> {
    names: String,
    cells: Vec<(u32, u32, Cell<V>)>,
    /// The name being built.
    stem: String,
}

impl<V> Default for Columns<V> {
    fn default() -> Self {
        Columns { names: String::with_capacity(4096), cells: Vec::with_capacity(192), stem: String::with_capacity(64) }
    }
}

/// A flat column's value.
enum Cell<V> {
    Node(V),
    Null,
    /// An array's JSON text.
    Text(String),
}

impl<V> Columns<V> {
    fn push(&mut self, cell: Cell<V>) {
        let start = self.names.len() as u32;
        self.names.push_str(&self.stem);
        self.cells.push((start, self.names.len() as u32, cell));
    }

    fn write(mut self, out: &mut Vec<u8>, node: impl Fn(&mut Vec<u8>, &V)) {
        let names = &self.names;
        self.cells.sort_by(|a, b| names[a.0 as usize..a.1 as usize].cmp(&names[b.0 as usize..b.1 as usize]));
        out.push(b'{');
        for (i, (start, end, cell)) in self.cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::write_str(out, &names[*start as usize..*end as usize]);
            out.push(b':');
            match cell {
                Cell::Node(value) => node(out, value),
                Cell::Null => out.extend_from_slice(b"null"),
                Cell::Text(text) => json::write_str(out, text),
            }
        }
        out.push(b'}');
    }
}

fn flatten_ctrflow<'a>(out: &mut Columns<&'a Json>, value: &'a Json) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            let len = out.stem.len();
            for (child, inner) in map {
                out.stem.truncate(len);
                out.stem.push('_');
                out.stem.push_str(child);
                flatten_ctrflow(out, inner);
            }
            out.stem.truncate(len);
        }
        Json::Object(_) => out.push(Cell::Null),
        Json::Array(_) => out.push(Cell::Text(json::to_string(value))),
        scalar => out.push(Cell::Node(scalar)),
    }
}

/// The same work on the prototype tree.
fn with_spans(text: &[u8], out: &mut Out) {
    let mut doc = spans::Doc::parse(text);
    if let Some(address) = doc.get(&["CustomerEndpoint", "Address"])
        && let spans::Node::Str(s) = address
    {
        let masked = masked(doc.str(s));
        *doc.get_mut(&["CustomerEndpoint", "Address"]).unwrap() = spans::Node::Str(spans::Str::Owned(masked.into()));
    }
    if matches!(doc.get(&["Agent", "Username"]), Some(spans::Node::Str(_))) {
        let row = spans::Doc::owned(ROW.as_bytes());
        doc.insert("AgentInfo", row);
    }
    black_box(matches!(doc.get(&["Channel"]), Some(spans::Node::Str(_))));
    let spans::Node::Object(fields) = &doc.root else { panic!("a record is an object") };
    for (_, value) in fields {
        if matches!(value, spans::Node::Object(_) | spans::Node::Array(_)) {
            doc.write(&mut out.columns, value);
            out.columns.push(b'\n');
        }
    }
    let mut columns = Columns::default();
    for (key, value) in fields {
        columns.stem.clear();
        columns.stem.push_str(doc.str(key));
        flatten_spans(&doc, &mut columns, value);
    }
    columns.write(&mut out.line, |out, node: &&spans::Node| doc.write(out, node));
}

fn flatten_spans<'a>(doc: &'a spans::Doc, out: &mut Columns<&'a spans::Node>, node: &'a spans::Node) {
    match node {
        spans::Node::Object(fields) if !fields.is_empty() => {
            let len = out.stem.len();
            for (child, inner) in fields {
                out.stem.truncate(len);
                out.stem.push('_');
                out.stem.push_str(doc.str(child));
                flatten_spans(doc, out, inner);
            }
            out.stem.truncate(len);
        }
        spans::Node::Object(_) => out.push(Cell::Null),
        spans::Node::Array(_) => {
            let mut text = Vec::new();
            doc.write(&mut text, node);
            out.push(Cell::Text(String::from_utf8(text).unwrap()));
        }
        scalar => out.push(Cell::Node(scalar)),
    }
}

/// Steps 2–4 on a `serde_json` tree: redact, enrich with the row `row` parses, route.
fn edit(doc: &mut Json, row: impl FnOnce() -> Json) {
    if let Some(address) = doc.pointer_mut("/CustomerEndpoint/Address")
        && let Some(s) = address.as_str()
    {
        *address = Json::String(masked(s));
    }
    if doc.pointer("/Agent/Username").and_then(Json::as_str).is_some() {
        doc.as_object_mut().unwrap().insert("AgentInfo".into(), row());
    }
    black_box(doc.get("Channel").and_then(Json::as_str));
}

/// Step 5 on a `serde_json` tree: every top-level object or array written by `write`, a line each.
fn nested_columns(doc: &Json, out: &mut Vec<u8>, write: impl Fn(&mut Vec<u8>, &Json)) {
    for value in doc.as_object().unwrap().values() {
        if value.is_object() || value.is_array() {
            write(out, value);
            out.push(b'\n');
        }
    }
}

/// The SDK's flattening rules (`plugin-sdk/src/flatten.rs`), restated
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

type Work = fn(&[u8], &mut Out);

const WAYS: [(&str, Work); 4] =
    [("serde_json", with_serde_json), ("ctrflow", with_ctrflow), ("sonic_rs", with_sonic_rs), ("spans", with_spans)];
/// Parse and drop, with the runtime's parser and with the prototype's.
fn parse_ctrflow(text: &[u8], _out: &mut Out) {
    black_box(json::parse(text).unwrap());
}
fn parse_spans(text: &[u8], _out: &mut Out) {
    black_box(spans::Doc::parse(text));
}
/// Parse, write the whole record back and drop (the native limit's work without the file).
fn parse_write_ctrflow(text: &[u8], out: &mut Out) {
    let doc = json::parse(text).unwrap();
    json::write_value(&mut out.line, &doc);
}
fn parse_write_spans(text: &[u8], out: &mut Out) {
    let doc = spans::Doc::parse(text);
    doc.write(&mut out.line, &doc.root);
}

/// Parts of the work, timed alone (not checked against each other: no output, or the whole
/// record's: `check` covers the prototype's on pretty-printed records).
const PARTS: [(&str, Work); 4] = [
    ("ctrflow/parse", parse_ctrflow),
    ("spans/parse", parse_spans),
    ("ctrflow/parse_write", parse_write_ctrflow),
    ("spans/parse_write", parse_write_spans),
];

/// Every tree must leave the same columns and the same line as serde_json's, or the timing
/// means nothing.
fn check(records: &[Vec<u8>]) {
    let parsed = |bytes: &[u8]| -> Vec<Json> {
        bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    };
    for (i, text) in records.iter().enumerate() {
        let mut expected = Out::default();
        with_serde_json(text, &mut expected);
        for (name, work) in &WAYS[1..] {
            let mut out = Out::default();
            work(text, &mut out);
            assert_eq!(parsed(&expected.columns), parsed(&out.columns), "record {i}, {name}: the column texts differ");
            assert_eq!(parsed(&expected.line), parsed(&out.line), "record {i}, {name}: the lake lines differ");
            let keys = line_keys(&out.line);
            assert!(keys.is_sorted_by(|a, b| a < b), "record {i}, {name}: the lake line's keys are not in order");
            if *name == "ctrflow" {
                assert_eq!(expected.line, out.line, "record {i}: the runtime's writer gives serde_json's bytes");
                assert_eq!(expected.columns, out.columns, "record {i}: the runtime's writer gives serde_json's bytes");
            }
        }
        // The prototype's parser on white space: the record pretty-printed reads back the same.
        let tree: Json = serde_json::from_slice(text).unwrap();
        let pretty = serde_json::to_vec_pretty(&tree).unwrap();
        assert_eq!(through_spans(&pretty), tree, "record {i}: spans on pretty-printed text");
    }
    let spaced = br#" { "b" : [ 1 , "x\"y" , { } ] , "a" : { "c" : null } , "d" : [ ] } "#;
    assert_eq!(through_spans(spaced), serde_json::from_slice::<Json>(spaced).unwrap());
}

/// `text` parsed by the prototype, written back and read by serde_json.
fn through_spans(text: &[u8]) -> Json {
    let doc = spans::Doc::parse(text);
    let mut written = Vec::new();
    doc.write(&mut written, &doc.root);
    serde_json::from_slice(&written).unwrap()
}

/// A JSON object's keys in the order its text holds them (`serde_json::Value` sorts them).
fn line_keys(line: &[u8]) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    serde::Deserializer::deserialize_map(&mut serde_json::Deserializer::from_slice(line), Keys).unwrap()
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !WAYS.iter().chain(&PARTS).any(|(name, _)| format!("record_type/{name}").contains(&f))) {
        return;
    }
    let records = input();
    check(&records);
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("record_type");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    for (name, work) in WAYS.into_iter().chain(PARTS) {
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
