//! [`Record`]: one contact record as it travels through a pipeline.
//!
//! A record is parsed once, at its source, into a `serde_json::Value` held in a [`Doc`]
//! (behind an `Arc`), and serialized once, at its sink (a flattened record is held as the
//! text the host wrote for it, which a sink copies; see [`crate::doc`]). Fan-out clones the
//! `Arc`, not the document; a node that changes a shared record copies it then
//! ([`Doc::make_mut`]), so untouched records are never copied. Everything the runtime knows
//! about where a record came from lives in [`Meta`], shared by all copies.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::ack::AckRef;
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
