//! The dead-letter output: every record a node refuses, with why, where, when, and the
//! original bytes — never silently lost.
//!
//! By default dead letters are appended to a JSON-lines file; with `[dead_letter] sink`
//! they are sent, as JSON objects, to a sink of the pipeline instead. A dead letter's
//! acknowledgement completes only once it is written and synced to disk, so a source never
//! checkpoints past a refused record that was not recorded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::ack::AckRef;
use crate::doc::Doc;
use crate::flow::{Batch, Output};
use crate::record::{Record, now_ms};

/// Why a record was refused: the `kind` field of a dead letter. These names are stable
/// (dashboards and replay scripts match on them); add kinds, never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterKind {
    /// A source read bytes that are not JSON.
    MalformedJson,
    /// JSON, but not a contact record (no `ContactId`).
    NotACtr,
    /// Larger than a limit (`runtime.max_record_size`, a destination's record limit).
    Oversized,
    /// A keyed write found no key (`ContactId`, or the plugin's item key).
    NoKey,
    /// A Kinesis sink found no partition key.
    NoPartitionKey,
    /// The destination refused the record itself (not a fault of the destination).
    Rejected,
    /// The destination cannot hold this record as it is (SQLite: two fields whose names
    /// differ only by case, more columns than the table may have).
    Unwritable,
    /// A plugin said the record is bad.
    BadRecord,
    /// A plugin refused its configuration for this record.
    InvalidConfig,
    /// A plugin's lookup failed.
    LookupFailed,
    /// A plugin returned an error of its own.
    PluginError,
    /// A plugin ran past its time limit.
    Deadline,
    /// A plugin hit its memory cap.
    MemoryLimit,
    /// A plugin panicked.
    Panic,
    /// A plugin trapped otherwise.
    Trap,
    /// A plugin produced more than its output limit.
    OutputTooLarge,
    /// An HTTP endpoint answered with a status that refuses the record (a 4xx other than 429).
    HttpStatus,
}

impl DeadLetterKind {
    /// The stable name written in the dead letter's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::MalformedJson => "malformed_json",
            DeadLetterKind::NotACtr => "not_a_ctr",
            DeadLetterKind::Oversized => "oversized",
            DeadLetterKind::NoKey => "no_key",
            DeadLetterKind::NoPartitionKey => "no_partition_key",
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::Unwritable => "unwritable",
            DeadLetterKind::BadRecord => "bad_record",
            DeadLetterKind::InvalidConfig => "invalid_config",
            DeadLetterKind::LookupFailed => "lookup_failed",
            DeadLetterKind::PluginError => "plugin_error",
            DeadLetterKind::Deadline => "deadline",
            DeadLetterKind::MemoryLimit => "memory_limit",
            DeadLetterKind::Panic => "panic",
            DeadLetterKind::Trap => "trap",
            DeadLetterKind::OutputTooLarge => "output_too_large",
            DeadLetterKind::HttpStatus => "http_status",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One refused record.
#[derive(Debug)]
pub struct DeadLetter {
    /// The record, as it was when refused (its document is `null` if it never parsed).
    pub record: Record,
    /// The node that refused it, as the pipeline names it (`transforms.redact`).
    pub node: String,
    /// Why, as a stable kind.
    pub kind: DeadLetterKind,
    /// What happened.
    pub reason: String,
    /// When, Unix epoch ms.
    pub at_ms: i64,
}

impl DeadLetter {
    /// A dead letter for `record`, refused now by `node`.
    pub fn new(record: Record, node: String, kind: DeadLetterKind, reason: String) -> Self {
        DeadLetter { record, node, kind, reason, at_ms: now_ms() }
    }

    /// One `debug` line naming the record, never showing it: the reason may quote record
    /// contents, so it stays in the dead letter itself.
    fn log(&self) {
        tracing::debug!(
            node = %self.node,
            contact_id = self.record.contact_id(),
            position = %self.record.meta.position,
            kind = self.kind.as_str(),
            "Record dead-lettered."
        );
    }

    /// The dead letter as the JSON object that is written.
    pub fn to_json(&self) -> Value {
        let meta = &self.record.meta;
        let original = self.record.original_bytes();
        let (original, encoding) = match std::str::from_utf8(&original) {
            Ok(text) => (Value::String(text.to_string()), "utf8"),
            Err(_) => (Value::String(hex(&original)), "hex"),
        };
        json!({
            "time": ctrflow_plugin_sdk::ctr::format_timestamp(self.at_ms),
            "time_ms": self.at_ms,
            "node": self.node,
            "kind": self.kind.as_str(),
            "reason": self.reason,
            "source": &*meta.source,
            "position": meta.position,
            "contact_id": self.record.contact_id(),
            "original": original,
            "original_encoding": encoding,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where nodes send dead letters.
#[derive(Clone)]
pub struct DeadLetters {
    tx: mpsc::Sender<DeadLetter>,
}

impl DeadLetters {
    /// A channel for dead letters and its receiving end.
    pub fn channel(capacity: usize) -> (DeadLetters, mpsc::Receiver<DeadLetter>) {
        let (tx, rx) = mpsc::channel(capacity);
        (DeadLetters { tx }, rx)
    }

    /// Sends from a thread (blocks while the writer is behind).
    pub fn send_blocking(&self, letter: DeadLetter) {
        letter.log();
        if let Err(e) = self.tx.blocking_send(letter) {
            // The writer is gone (the run is ending): the record is not written, so its
            // acknowledgement is abandoned when it drops here, and nothing is checkpointed
            // past it.
            tracing::error!(node = %e.0.node, "Dead-letter output closed; record not written.");
        }
    }

    /// Sends from async code.
    pub async fn send(&self, letter: DeadLetter) {
        letter.log();
        if let Err(e) = self.tx.send(letter).await {
            tracing::error!(node = %e.0.node, "Dead-letter output closed; record not written.");
        }
    }
}

/// Where dead letters end up.
pub enum DeadLetterTarget {
    /// Appended to this JSON-lines file.
    File(PathBuf),
    /// Sent to a sink's input.
    Sink(Output),
}

/// Writes dead letters until every sender is gone. Returns how many it wrote.
pub fn run_writer(mut rx: mpsc::Receiver<DeadLetter>, target: DeadLetterTarget) -> anyhow::Result<u64> {
    let mut written = 0;
    match target {
        DeadLetterTarget::File(path) => {
            let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
            while let Some(first) = rx.blocking_recv() {
                let f = match &mut file {
                    Some(f) => f,
                    None => {
                        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                        std::fs::create_dir_all(dir)?;
                        let existed = path.exists();
                        let opened =
                            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| {
                                anyhow::anyhow!("dead_letter.path: cannot open {}: {e}", path.display())
                            })?;
                        if !existed {
                            // The new file's directory entry must survive a power loss too.
                            std::fs::File::open(dir)?.sync_all()?;
                        }
                        file.insert(std::io::BufWriter::new(opened))
                    }
                };
                // Take what is waiting too, and write it in one flush.
                let mut letters = vec![first];
                while let Ok(more) = rx.try_recv() {
                    letters.push(more);
                }
                let mut acks: Vec<AckRef> = Vec::with_capacity(letters.len());
                for letter in letters {
                    serde_json::to_writer(&mut *f, &letter.to_json())?;
                    f.write_all(b"\n")?;
                    acks.push(letter.record.ack);
                }
                f.flush()?;
                // On disk before the records are acknowledged (and their source checkpointed).
                f.get_ref().sync_data()?;
                written += acks.len() as u64;
                acks.into_iter().for_each(AckRef::complete);
            }
        }
        DeadLetterTarget::Sink(output) => {
            while let Some(letter) = rx.blocking_recv() {
                let doc = letter.to_json();
                let record = Record { doc: Doc::new(doc), meta: letter.record.meta, ack: letter.record.ack };
                written += 1;
                if output.send_blocking(Batch::new(vec![record], Instant::now())).is_err() {
                    anyhow::bail!("the dead-letter sink stopped");
                }
            }
        }
    }
    Ok(written)
}
