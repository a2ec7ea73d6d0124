//! [`Record`]: one contact record as it travels through a pipeline.
//!
//! A record is parsed once, at its source, into a `serde_json::Value` held in a [`Doc`]
//! (behind an `Arc`), and serialized once, at its sink (a flattened record is held as the
//! text the host wrote for it, which a sink copies; see [`crate::doc`]). Fan-out clones the
//! `Arc`, not the document; a node that changes a shared record copies it then
//! ([`Doc::make_mut`]), so untouched records are never copied. Everything the runtime knows
//! about where a record came from lives in [`Meta`], shared by all copies. A sink sends the
//! documents it has written back to their source, which frees them on the thread that built
//! them ([`Returns`]).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::ack::{AckRef, Home};
use crate::doc::Doc;

/// One record in flight.
#[derive(Debug, Clone)]
pub struct Record {
    /// The document (a JSON object).
    pub doc: Doc,
    /// Where it came from; immutable, shared by fan-out copies.
    pub meta: Arc<Meta>,
    /// Its share of its source batch's acknowledgement.
    pub ack: AckRef,
}

/// What the runtime knows about a record's origin.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// The source node's id.
    pub source: Arc<str>,
    /// Its position in the source: a shard and sequence number, a file and byte offset.
    pub position: String,
    /// The original bytes as read, for the dead letters (`None` for generated records).
    pub raw: Option<Bytes>,
    /// Event time, Unix epoch ms (the pipeline's event-time field, by default
    /// `LastUpdateTimestamp`), when the record has one.
    pub event_ms: Option<i64>,
    /// When the record reached its stream (Kinesis `ApproximateArrivalTimestamp`), or when
    /// it was read for sources without one; Unix epoch ms.
    pub arrival_ms: i64,
    /// When the runtime read it, Unix epoch ms.
    pub read_ms: i64,
}

impl Record {
    /// A record with no origin and an acknowledgement nobody waits for (tests, benchmarks).
    pub fn detached(doc: Value) -> Record {
        Record { doc: Doc::new(doc), meta: Arc::new(Meta::default()), ack: AckRef::detached() }
    }

    /// The document's `ContactId`, when it has one.
    pub fn contact_id(&self) -> Option<&str> {
        self.doc.get("ContactId").and_then(Value::as_str)
    }

    /// The original bytes, or the document serialized when there are none.
    pub fn original_bytes(&self) -> Bytes {
        match &self.meta.raw {
            Some(raw) => raw.clone(),
            None => {
                let mut out = Vec::new();
                self.doc.write_json(&mut out);
                Bytes::from(out)
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Written records' documents on their way back to the sources that read them, to be freed
/// there: a record's tree is built on its source's thread, and the allocator frees a block
/// about twice as fast on the thread that allocated it as on another (measured in
/// docs/performance.md). A sink completes its written records through this and sends the
/// documents on once per write, one message per source.
#[derive(Default)]
pub struct Returns {
    homes: Vec<(Home, Vec<Doc>)>,
}

impl Returns {
    /// Completes the record's acknowledgement and keeps its document for its source (or
    /// frees it here, when its source does not take documents back).
    pub fn complete(&mut self, record: Record) {
        let Record { doc, meta: _, ack } = record;
        if let Some(home) = ack.home() {
            self.keep(home, doc);
        }
        ack.complete();
    }

    /// Takes the document of a record still waiting for its write, once its writer has
    /// staged it ([`crate::contract::Stager`]), leaving in its place only its `ContactId`:
    /// a dead letter takes the rest from the original bytes, so the record must have them
    /// (`meta.raw`).
    pub fn release(&mut self, record: &mut Record) {
        debug_assert!(record.meta.raw.is_some(), "a released record's dead letter needs its original bytes");
        let stand_in = Doc::stand_in(record.contact_id());
        let doc = std::mem::replace(&mut record.doc, stand_in);
        if let Some(home) = record.ack.home() {
            self.keep(home, doc);
        }
    }

    fn keep(&mut self, home: &Home, doc: Doc) {
        match self.homes.iter_mut().find(|(h, _)| h.same_channel(home)) {
            Some((_, docs)) => docs.push(doc),
            None => self.homes.push((home.clone(), vec![doc])),
        }
    }

    /// Sends each source its documents. (A source that has stopped leaves them to be freed
    /// here.)
    pub fn send(self) {
        for (home, docs) in self.homes {
            let _ = home.send(docs);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;
    use crate::ack::{AckBatch, Completion};

    fn record(doc: Value, batch: &AckBatch) -> Record {
        Record { doc: Doc::new(doc), meta: Arc::new(Meta::default()), ack: batch.record() }
    }

    #[test]
    fn written_documents_go_back_to_their_source_in_one_message_each_and_are_acknowledged() {
        let (done, mut completions) = mpsc::unbounded_channel();
        let (home_a, mut back_a) = mpsc::unbounded_channel();
        let (home_b, mut back_b) = mpsc::unbounded_channel();
        let a = AckBatch::returning(0, done.clone(), home_a);
        let b = AckBatch::returning(1, done.clone(), home_b);
        let elsewhere = AckBatch::new(2, done);
        let mut returns = Returns::default();
        for r in [
            record(json!({"n": 1}), &a),
            record(json!({"n": 2}), &b),
            record(json!({"n": 3}), &a),
            record(json!({"n": 4}), &elsewhere),
        ] {
            returns.complete(r);
        }
        drop((a, b, elsewhere));
        returns.send();
        let ns = |docs: Vec<Doc>| docs.iter().map(|d| d["n"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(ns(back_a.try_recv().unwrap()), vec![1, 3]);
        assert!(back_a.try_recv().is_err(), "one message per source");
        assert_eq!(ns(back_b.try_recv().unwrap()), vec![2]);
        let mut seen: Vec<Completion> = std::iter::from_fn(|| completions.try_recv().ok()).collect();
        seen.sort_by_key(|c| c.seq);
        assert_eq!(seen, (0..3).map(|seq| Completion { seq, ok: true }).collect::<Vec<_>>());
    }
}
