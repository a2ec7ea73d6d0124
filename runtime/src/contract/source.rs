//! The source side of the contract: a [`SourceConnector`] (a source's options) opens into
//! a [`Source`], which runs on its own thread with a [`SourceContext`] — what every source
//! shares: turning bytes into records (parsed once, here), batching, dead-lettering what is
//! not a contact record, and checkpoint files.
//!
//! A source reads its medium and calls [`SourceContext::ingest`] per document and
//! [`SourceContext::flush`] per batch; it learns which batches were fully handled from the
//! [`AckBatch`] completions and persists its position with [`CheckpointFile`]. It does not
//! know what is downstream.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ctrflow_plugin_sdk::ctr;
use ctrflow_plugin_sdk::path::FieldPath;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Env, NodeHandle};
use crate::ack::{AckBatch, AckRef, Completion, Home};
use crate::dead_letter::DeadLetterKind;
use crate::doc::Doc;
use crate::flow::{Batch, Closed, Output, Shutdown};
use crate::record::{Meta, Record, now_ms};
use crate::timing::Counters;

/// A source type's options (the keys of `[sources.<id>]` besides `type`), read from TOML
/// by the registry.
pub trait SourceConnector: std::fmt::Debug + Send + Sync {
    /// Problems the schema cannot catch, each naming its key.
    fn validate(&self, _env: &Env) -> Vec<String> {
        Vec::new()
    }

    /// Prepares to read before any record moves; fails fast if the medium is unusable.
    fn open(&self, env: &Env) -> anyhow::Result<Box<dyn Source>>;

    /// How many records it will read, when that is known up front (for a progress bar).
    fn expected_records(&self) -> Option<u64> {
        None
    }
}

/// An opened source: reads until its medium ends or a stop is requested.
pub trait Source: Send {
    /// Runs on the source's own thread.
    fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()>;
}

/// The pipeline-wide settings every source reads by.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Records per batch.
    pub batch_size: usize,
    /// Source bytes per batch: a batch also closes once its records' text reaches this.
    pub batch_bytes: usize,
    /// The largest record accepted, in bytes.
    pub max_record_size: usize,
    /// The field holding the event time.
    pub event_field: FieldPath,
    /// The pipeline's state directory (checkpoints).
    pub state_dir: PathBuf,
}

/// Everything a source needs from the runtime while it runs.
pub struct SourceContext {
    /// The source's id (`contacts` for `[sources.contacts]`).
    pub id: Arc<str>,
    /// Its key, dead letters, clocks and stop signal.
    pub node: NodeHandle,
    /// Where its batches go.
    pub output: Output,
    /// Batch size, record size limit, event-time field, state directory.
    pub settings: SourceSettings,
    /// Batch completions arrive here.
    pub completions: mpsc::UnboundedReceiver<Completion>,
    completions_tx: mpsc::UnboundedSender<Completion>,
    /// Written records' documents come back here, to be freed on this thread, which built
    /// them ([`crate::record::Returns`]).
    returned: mpsc::UnboundedReceiver<Vec<Doc>>,
    home: Home,
    pending: Vec<Record>,
    /// The source text of `pending`'s records, in bytes.
    pending_bytes: usize,
    batch_ack: Option<AckBatch>,
    batch_read_at: Option<Instant>,
    /// The wall-clock time the current batch began, in ms: every record's read time when
    /// hop timing is off (one clock read per batch, not per record).
    batch_read_ms: i64,
    next_seq: u64,
}

/// Why a document was refused at the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than `max_record_size`.
    TooLarge { size: usize, limit: usize },
    /// Not JSON.
    Malformed(String),
    /// JSON, but not a contact record.
    NotACtr(String),
}

impl Refusal {
    /// The dead-letter kind.
    pub fn kind(&self) -> DeadLetterKind {
        match self {
            Refusal::TooLarge { .. } => DeadLetterKind::Oversized,
            Refusal::Malformed(_) => DeadLetterKind::MalformedJson,
            Refusal::NotACtr(_) => DeadLetterKind::NotACtr,
        }
    }

    /// The dead-letter reason.
    pub fn message(&self) -> String {
        match self {
            Refusal::TooLarge { size, limit } => {
                format!("record of {size} bytes exceeds runtime.max_record_size ({limit} bytes)")
            }
            Refusal::Malformed(e) => format!("not valid JSON: {e}"),
            Refusal::NotACtr(e) => e.clone(),
        }
    }
}

/// Parses one document into a contact record's JSON; the single place records are parsed.
pub fn parse_ctr(bytes: &[u8], max_record_size: usize) -> Result<Value, Refusal> {
    if bytes.len() > max_record_size {
        return Err(Refusal::TooLarge { size: bytes.len(), limit: max_record_size });
    }
    let doc = crate::json::parse(bytes).map_err(|e| Refusal::Malformed(e.to_string()))?;
    check_ctr(doc)
}

/// Accepts a parsed document that is a contact record (an object with a string
/// `ContactId`); explains what it looks like otherwise.
pub fn check_ctr(doc: Value) -> Result<Value, Refusal> {
    match doc.get("ContactId") {
        Some(Value::String(id)) if !id.is_empty() => Ok(doc),
        // The SDK's model knows how to explain what a document is instead (a contact
        // event, an agent event…); only refused documents pay for it.
        _ => Err(Refusal::NotACtr(match ctr::ContactTraceRecord::from_value(doc) {
            Err(e) => e.to_string(),
            Ok(_) => "not a contact record".to_string(),
        })),
    }
}

impl SourceContext {
    /// A context for source `id`.
    pub fn new(id: &str, node: NodeHandle, output: Output, mut settings: SourceSettings) -> Self {
        let (completions_tx, completions) = mpsc::unbounded_channel();
        let (home, returned) = mpsc::unbounded_channel();
        settings.batch_size = settings.batch_size.max(1);
        SourceContext {
            id: Arc::from(id),
            node,
            output,
            settings,
            completions,
            completions_tx,
            returned,
            home,
            pending: Vec::new(),
            pending_bytes: 0,
            batch_ack: None,
            batch_read_at: None,
            batch_read_ms: 0,
            next_seq: 0,
        }
    }

    /// The run's stop signal: a source stops reading once it is requested.
    pub fn shutdown(&self) -> &Shutdown {
        &self.node.shutdown
    }

    /// The sequence number the next flushed batch will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The record's share of the current batch's acknowledgement, and its read time.
    fn ack(&mut self) -> (AckRef, i64) {
        if self.batch_ack.is_none() {
            self.batch_ack = Some(AckBatch::returning(self.next_seq, self.completions_tx.clone(), self.home.clone()));
            self.batch_read_at = Some(Instant::now());
            self.batch_read_ms = now_ms();
        }
        let read_ms = if self.node.timing_enabled { now_ms() } else { self.batch_read_ms };
        (self.batch_ack.as_ref().expect("set above").record(), read_ms)
    }

    /// Takes one document as read. `arrival_ms` is the stream's arrival time, when the
    /// medium has one. A document that is not a contact record is dead-lettered (and its
    /// batch still completes once the dead letter is written).
    pub fn ingest(&mut self, bytes: Bytes, position: String, arrival_ms: Option<i64>) {
        let (ack, read_ms) = self.ack();
        Counters::add(&self.node.timing.counters.records_in, 1);
        match parse_ctr(&bytes, self.settings.max_record_size) {
            Ok(doc) => self.push(doc, Some(bytes), position, arrival_ms, read_ms, ack),
            Err(refusal) => self.refuse(refusal, bytes, position, arrival_ms, read_ms, ack),
        }
    }

    /// Takes one document its reader has parsed already (`raw` is its text), so it is not
    /// parsed twice.
    pub fn ingest_parsed(&mut self, doc: Value, raw: Bytes, position: String, arrival_ms: Option<i64>) {
        let (ack, read_ms) = self.ack();
        Counters::add(&self.node.timing.counters.records_in, 1);
        let checked = if raw.len() > self.settings.max_record_size {
            Err(Refusal::TooLarge { size: raw.len(), limit: self.settings.max_record_size })
        } else {
            check_ctr(doc)
        };
        match checked {
            Ok(doc) => self.push(doc, Some(raw), position, arrival_ms, read_ms, ack),
            Err(refusal) => self.refuse(refusal, raw, position, arrival_ms, read_ms, ack),
        }
    }

    /// Takes one already-parsed document (the generator's).
    pub fn ingest_doc(&mut self, doc: Value, position: String) {
        let (ack, read_ms) = self.ack();
        Counters::add(&self.node.timing.counters.records_in, 1);
        match check_ctr(doc) {
            Ok(doc) => self.push(doc, None, position, None, read_ms, ack),
            Err(refusal) => self.refuse(refusal, Bytes::new(), position, None, read_ms, ack),
        }
    }

    /// Dead-letters bytes that could not even be split into documents (`message`: the
    /// parser's error).
    pub fn refuse_bytes(&mut self, bytes: Bytes, position: String, message: String) {
        let (ack, read_ms) = self.ack();
        Counters::add(&self.node.timing.counters.records_in, 1);
        self.refuse(Refusal::Malformed(message), bytes, position, None, read_ms, ack);
    }

    /// Dead-letters bytes as `kind` (a document too large even to be framed whole).
    pub fn refuse_bytes_as(&mut self, bytes: Bytes, position: String, kind: DeadLetterKind, message: String) {
        let (ack, read_ms) = self.ack();
        Counters::add(&self.node.timing.counters.records_in, 1);
        let meta =
            Meta { source: self.id.clone(), position, raw: Some(bytes), event_ms: None, arrival_ms: read_ms, read_ms };
        let record = Record { doc: Doc::new(Value::Null), meta: Arc::new(meta), ack };
        self.node.dead_letter_blocking(record, kind, message);
    }

    fn push(
        &mut self,
        doc: Value,
        raw: Option<Bytes>,
        position: String,
        arrival_ms: Option<i64>,
        read_ms: i64,
        ack: AckRef,
    ) {
        // The event time feeds only the hop clocks (and `annotate`, which needs them on).
        let event_ms = if self.node.timing_enabled {
            self.settings.event_field.get(&doc).and_then(Value::as_str).and_then(ctr::parse_timestamp)
        } else {
            None
        };
        let arrival_ms = arrival_ms.unwrap_or(read_ms);
        if self.node.timing_enabled
            && let Some(e) = event_ms
        {
            self.node.timing.event_to_arrival.record_us(((arrival_ms - e).max(0) as u64) * 1000, 1);
        }
        self.pending_bytes += raw.as_ref().map_or(0, Bytes::len);
        let meta = Meta { source: self.id.clone(), position, raw, event_ms, arrival_ms, read_ms };
        self.pending.push(Record { doc: Doc::new(doc), meta: Arc::new(meta), ack });
    }

    fn refuse(
        &mut self,
        refusal: Refusal,
        bytes: Bytes,
        position: String,
        arrival_ms: Option<i64>,
        read_ms: i64,
        ack: AckRef,
    ) {
        let meta = Meta {
            source: self.id.clone(),
            position,
            raw: Some(bytes),
            event_ms: None,
            arrival_ms: arrival_ms.unwrap_or(read_ms),
            read_ms,
        };
        let record = Record { doc: Doc::new(Value::Null), meta: Arc::new(meta), ack };
        self.node.dead_letter_blocking(record, refusal.kind(), refusal.message());
    }

    /// Whether the current batch is full: `batch_size` records, or `batch_bytes` of their
    /// source text.
    pub fn batch_full(&self) -> bool {
        self.pending.len() >= self.settings.batch_size || self.pending_bytes >= self.settings.batch_bytes
    }

    /// Sends the current batch on (from a thread). Returns its sequence number, or `None`
    /// when nothing was read since the last flush.
    pub fn flush_blocking(&mut self) -> Result<Option<u64>, Closed> {
        match self.take_batch() {
            None => Ok(None),
            Some((seq, batch)) => {
                if let Some(b) = batch {
                    self.output.send_blocking(b)?;
                }
                Ok(Some(seq))
            }
        }
    }

    /// Sends the current batch on (from a thread); an error once the nodes after it are gone.
    pub fn flush_or_stop(&mut self) -> anyhow::Result<Option<u64>> {
        self.flush_blocking().map_err(|_| self.node.stopped_reading())
    }

    /// Sends the current batch on (from async code).
    pub async fn flush(&mut self) -> Result<Option<u64>, Closed> {
        match self.take_batch() {
            None => Ok(None),
            Some((seq, batch)) => {
                if let Some(b) = batch {
                    self.output.send(b).await?;
                }
                Ok(Some(seq))
            }
        }
    }

    /// Frees the documents the sinks have sent back since the last batch (every batch does;
    /// a source that waits for a while between batches calls it too).
    pub fn free_returned(&mut self) {
        while let Ok(docs) = self.returned.try_recv() {
            drop(docs);
        }
    }

    /// Closes the current batch: its sequence number, and the batch to send (none when every
    /// document of it was dead-lettered).
    fn take_batch(&mut self) -> Option<(u64, Option<Batch>)> {
        self.free_returned();
        let ack = self.batch_ack.take()?;
        let read_at = self.batch_read_at.take().unwrap_or_else(Instant::now);
        let seq = self.next_seq;
        self.next_seq += 1;
        drop(ack); // the records hold their shares
        let records = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        Counters::add(&self.node.timing.counters.records_out, records.len() as u64);
        if self.node.timing_enabled {
            self.node.timing.process.record(read_at.elapsed(), records.len() as u64);
        }
        Some((seq, (!records.is_empty()).then(|| Batch::new(records, read_at))))
    }
}

/// How often a source writes its checkpoint while it reads (and always when it stops). Each
/// save writes, syncs and renames a file and syncs its directory: the file source saving
/// after every batch made 155 saves and 415 `fsync` calls per 100,000 records, on the thread
/// that reads, so the whole pipeline waited on them. A crash re-delivers at most this much
/// more (at least once either way, and newer-wins sinks take re-deliveries as no-ops).
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// A source's checkpoint, in `<state_dir>/<source id>.checkpoint.json`, written atomically.
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The checkpoint file of source `id`.
    pub fn new(state_dir: &std::path::Path, id: &str) -> Self {
        CheckpointFile { path: state_dir.join(format!("{id}.checkpoint.json")) }
    }

    /// The saved position, if any.
    pub fn load<P: DeserializeOwned>(&self) -> anyhow::Result<Option<P>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("checkpoint {} is unreadable ({e}); delete it to start over", self.path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read checkpoint {}: {e}", self.path.display())),
        }
    }

    /// Saves a position atomically: write a temporary file, sync it, rename it into place,
    /// sync the directory.
    pub fn save<P: Serialize>(&self, position: &P) -> anyhow::Result<()> {
        use std::io::Write;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(position)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        // The rename is durable only once the directory is.
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_event_is_refused_as_not_a_ctr() {
        let bytes =
            include_bytes!("../../../tests/fixtures/ctr/aws-docs-contact-event-connected-to-agent.NOT-A-CTR.json");
        let err = parse_ctr(bytes, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), DeadLetterKind::NotACtr);
        assert!(err.message().contains("contact event"), "{}", err.message());
    }

    /// A context reading into a channel of 16 batches, with these batch bounds.
    fn context(batch_size: usize, batch_bytes: usize) -> (SourceContext, tokio::sync::mpsc::Receiver<Batch>) {
        use crate::config::OnError;
        use crate::dead_letter::DeadLetters;
        use crate::flow::Shutdown;
        use crate::graph::Section;
        use crate::timing::Timing;

        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (dead, _letters) = DeadLetters::channel(8);
        let timing = Timing::new(false, [("in".to_string(), Section::Source, Vec::new())]);
        let node = NodeHandle {
            key: "sources.in".into(),
            dead,
            timing: timing.node("in"),
            timing_enabled: false,
            shutdown: Shutdown::default(),
            on_error: OnError::default(),
        };
        let settings = SourceSettings {
            batch_size,
            batch_bytes,
            max_record_size: 1 << 20,
            event_field: FieldPath::parse("LastUpdateTimestamp").unwrap(),
            state_dir: std::env::temp_dir(),
        };
        (SourceContext::new("in", node, Output::new(vec![tx]), settings), rx)
    }

    /// A contact record of about `size` bytes of JSON text.
    fn ctr_of(n: usize, size: usize) -> Bytes {
        Bytes::from(format!("{{\"ContactId\":\"c{n}\",\"Pad\":\"{}\"}}", "x".repeat(size.saturating_sub(40))))
    }

    #[test]
    fn a_batch_closes_at_batch_size_records_or_at_batch_bytes_of_their_text() {
        // Small records: the record count closes the batch.
        let (mut ctx, _rx) = context(3, 1000);
        for n in 0..3 {
            assert!(!ctx.batch_full(), "full after {n} small records");
            ctx.ingest(ctr_of(n, 100), n.to_string(), None);
        }
        assert!(ctx.batch_full());
        // Large ones: their bytes do, well before the count.
        let (mut ctx, mut rx) = context(100, 1000);
        ctx.ingest(ctr_of(0, 400), "0".into(), None);
        ctx.ingest(ctr_of(1, 400), "1".into(), None);
        assert!(!ctx.batch_full(), "800 bytes of 1000");
        ctx.ingest(ctr_of(2, 400), "2".into(), None);
        assert!(ctx.batch_full(), "1200 bytes of 1000");
        ctx.flush_blocking().unwrap();
        assert_eq!(rx.try_recv().unwrap().records.len(), 3);
        // The count starts again with the next batch.
        ctx.ingest(ctr_of(3, 400), "3".into(), None);
        assert!(!ctx.batch_full(), "a new batch counts its own bytes");
    }

    #[test]
    fn oversized_and_malformed_documents_are_refused_with_their_kind() {
        assert_eq!(parse_ctr(b"{\"ContactId\":\"x\"}", 5).unwrap_err().kind(), DeadLetterKind::Oversized);
        assert_eq!(parse_ctr(b"{\"ContactId\":", 100).unwrap_err().kind(), DeadLetterKind::MalformedJson);
        assert!(parse_ctr(b"{\"ContactId\":\"x\"}", 100).is_ok());
    }
}
