//! Runs a test's records through a built pipeline, in this thread, and notes what was seen
//! where: what left each source and transform (and by which output), what reached each
//! sink (and what its plugin encoded), what was dead-lettered or dropped.
//!
//! The plugins are the pipeline's own, run by the real host with their limits; the
//! decisions they return are followed as the transform and sink nodes follow them
//! (`on_error` included). What it does not do: open a source or a sink's connector (no
//! destination is written to), batch by time, or write dead letters anywhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::OnError;
use crate::contract::Encoding;
use crate::contract::source::check_ctr;
use crate::dead_letter::{DeadLetter, DeadLetterKind};
use crate::doc::Doc;
use crate::graph::Section;
use crate::host::{Decision, Failure};
use crate::pipeline::Pipeline;
use crate::record::{Meta, Record};
use crate::transform::dead_letter_kind;

/// The places a test can look at, and the records seen at each.
#[derive(Debug, Default)]
pub struct Seen {
    /// By place: `node` (left a source or transform, or reached a sink), `node.output`,
    /// `dead_letters`, `dropped`.
    pub places: BTreeMap<String, Vec<Sighting>>,
    /// Why the pipeline would have stopped (a node with `on_error = "halt"` refused a record).
    pub halted: Option<String>,
}

/// One record seen somewhere.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The record (for `dead_letters` and `dropped`, a description of it).
    pub doc: Value,
    /// What a sink's plugin encoded it as.
    pub encoded: Option<Value>,
}

impl Seen {
    fn note(&mut self, place: &str, doc: Value, encoded: Option<Value>) {
        self.places.entry(place.to_string()).or_default().push(Sighting { doc, encoded });
    }

    /// How many records were seen at each place, for a failure's context.
    pub fn summary(&self) -> String {
        let parts: Vec<String> =
            self.places.iter().map(|(place, records)| format!("{place} {}", records.len())).collect();
        if parts.is_empty() { "nothing".into() } else { parts.join(" · ") }
    }
}

/// What `Pipeline` holds that a walk needs, borrowed.
struct Walk<'a> {
    pipeline: &'a Pipeline,
    pending: HashMap<String, Vec<Record>>,
    seen: Seen,
}

/// Puts `inputs` (node id, documents) into the pipeline and follows them to the end.
pub fn walk(pipeline: &Pipeline, inputs: Vec<(String, Vec<Value>)>) -> Result<Seen, String> {
    let mut w = Walk { pipeline, pending: HashMap::new(), seen: Seen::default() };
    for (node, docs) in inputs {
        let Some(n) = pipeline.graph.node(&node) else {
            let ids = pipeline.graph.nodes.iter().map(|n| n.id.as_str());
            let hint = crate::graph::suggest(&node, ids).map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default();
            return Err(format!("inputs: {node:?} is not a node of the pipeline{hint}"));
        };
        if n.section == Section::Source {
            w.read_source(&node, docs);
        } else {
            let records: Vec<Record> = docs.into_iter().enumerate().map(|(i, d)| record(&node, i, d, None)).collect();
            w.pending.entry(node).or_default().extend(records);
        }
    }
    // Sources first, then transforms in dependency order, then sinks: a node's input is
    // complete when its turn comes.
    for n in &pipeline.graph.nodes {
        if w.seen.halted.is_some() {
            break;
        }
        let Some(records) = w.pending.remove(&n.id).filter(|r| !r.is_empty()) else { continue };
        match n.section {
            Section::Source => {}
            Section::Transform => w.transform(&n.id, records),
            Section::Sink => w.sink(&n.id, records),
        }
    }
    Ok(w.seen)
}

fn record(source: &str, i: usize, doc: Value, raw: Option<Bytes>) -> Record {
    let meta = Meta { source: Arc::from(source), position: format!("test input {}", i + 1), raw, ..Meta::default() };
    Record { doc: Doc::new(doc), meta: Arc::new(meta), ack: crate::ack::AckRef::detached() }
}

impl Walk<'_> {
    /// Checks documents as a source checks what it reads, and sends the records on.
    fn read_source(&mut self, id: &str, docs: Vec<Value>) {
        let limit = self.pipeline.settings.max_record_size;
        let mut ok = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let raw = Bytes::from(doc.to_string());
            if raw.len() > limit {
                let message = format!("record of {} bytes exceeds runtime.max_record_size ({limit} bytes)", raw.len());
                let r = record(id, i, Value::Null, Some(raw));
                self.dead_letter(&format!("sources.{id}"), r, DeadLetterKind::Oversized, message);
                continue;
            }
            match check_ctr(doc) {
                Ok(doc) => ok.push(record(id, i, doc, Some(raw))),
                Err(refusal) => {
                    let r = record(id, i, Value::Null, Some(raw));
                    self.dead_letter(&format!("sources.{id}"), r, refusal.kind(), refusal.message());
                }
            }
        }
        self.send(id, None, ok);
    }

    /// Notes what left `id` by `output` and hands it to the nodes reading that output.
    fn send(&mut self, id: &str, output: Option<&str>, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        for r in &records {
            self.seen.note(id, (*r.doc).clone(), None);
            if let Some(o) = output {
                self.seen.note(&format!("{id}.{o}"), (*r.doc).clone(), None);
            }
        }
        let readers: Vec<String> = self
            .pipeline
            .graph
            .readers(id)
            .filter(|(_, input)| input.output.as_deref() == output)
            .map(|(n, _)| n.id.clone())
            .collect();
        if readers.is_empty() {
            // An output nobody reads: the records end here, deliberately (as in a run).
            let section = self.pipeline.graph.node(id).map_or("transforms", |n| n.section.key());
            for r in records {
                self.dropped(&format!("{section}.{id}"), &r);
            }
            return;
        }
        for reader in readers {
            self.pending.entry(reader).or_default().extend(records.iter().cloned());
        }
    }

    fn transform(&mut self, id: &str, records: Vec<Record>) {
        let pipeline = self.pipeline;
        let t = &pipeline.transforms[id];
        let key = format!("transforms.{id}");
        let outputs = t.plugin.outputs().to_vec();
        let mut default = Vec::new();
        let mut named: Vec<Vec<Record>> = vec![Vec::new(); outputs.len()];
        for (record, decision) in t.plugin.process(records) {
            match decision {
                Decision::Keep => default.push(record),
                Decision::Route(i) => named[i as usize].push(record),
                Decision::Drop => self.dropped(&key, &record),
                Decision::Split(docs) => default.extend(docs.into_iter().map(|doc| Record {
                    doc: Doc::new(doc),
                    meta: record.meta.clone(),
                    ack: record.ack.clone(),
                })),
                Decision::Fail(f) => self.refused(&key, t.on_error, record, f),
            }
        }
        self.send(id, None, default);
        for (output, records) in outputs.iter().zip(named) {
            self.send(id, Some(output), records);
        }
    }

    fn sink(&mut self, id: &str, records: Vec<Record>) {
        let pipeline = self.pipeline;
        let s = &pipeline.sinks[id];
        let key = format!("sinks.{id}");
        let Some(plugin) = &s.plugin else {
            for r in records {
                self.seen.note(id, (*r.doc).clone(), None);
            }
            return;
        };
        for (record, encoding) in plugin.encode(records) {
            match encoding {
                Ok(e) => self.seen.note(id, (*record.doc).clone(), Some(encoded(&e))),
                Err(f) => self.refused(&key, s.on_error, record, f),
            }
        }
    }

    /// A record a plugin refused, handled as the node's `on_error` says.
    fn refused(&mut self, key: &str, on_error: OnError, record: Record, f: Failure) {
        match on_error {
            OnError::DeadLetter => self.dead_letter(key, record, dead_letter_kind(f.kind), f.message),
            OnError::Drop => self.dropped(key, &record),
            OnError::Halt => {
                let why = format!("{key} (on_error = \"halt\") refused a record ({}): {}", f.kind, f.message);
                self.seen.halted.get_or_insert(why);
            }
        }
    }

    fn dead_letter(&mut self, key: &str, record: Record, kind: DeadLetterKind, reason: String) {
        let letter = DeadLetter::new(record, key.to_string(), kind, reason).to_json();
        self.seen.note("dead_letters", letter, None);
    }

    fn dropped(&mut self, key: &str, record: &Record) {
        let doc = json!({ "node": key, "contact_id": record.contact_id(), "record": &*record.doc });
        self.seen.note("dropped", doc, None);
    }
}

/// A sink plugin's encoding as the JSON a test's `encoded` looks at.
fn encoded(e: &Encoding) -> Value {
    let columns: Map<String, Value> = e.columns.iter().cloned().collect();
    json!({
        "partition_key": e.partition_key,
        "sort_key": e.sort_key,
        "columns": columns,
        "payload": e.payload.as_ref().map(|p| String::from_utf8_lossy(p).into_owned()),
    })
}
