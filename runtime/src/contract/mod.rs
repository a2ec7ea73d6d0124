//! The contract between the runtime and its connectors: what a connector implements, and
//! what the runtime hands it.
//!
//! A connector is one module under [`crate::connectors`] that owns its options struct (the
//! keys of its TOML table besides `type`), implements one role trait on it —
//! [`SourceConnector`], [`SinkConnector`] or [`TableConnector`] — and is named by one line
//! of the registry ([`crate::connectors::registry`]). The runtime calls, in order:
//!
//! 1. `validate` while the pipeline is checked (`ctrflow validate` stops here): every
//!    problem the schema cannot catch, each naming its key, without the node's key — the
//!    runtime adds `sinks.<id>:` once;
//! 2. `open` before any record moves, where a connector checks the outside world (the
//!    stream exists, the file can be created) and fails fast;
//! 3. the opened [`Source`] runs on its own thread with a [`SourceContext`]; an opened
//!    [`Writer`] is driven by the runtime's sink node, which batches, encodes, acknowledges
//!    and dead-letters around it.
//!
//! This module is below both the connectors and the runtime's nodes: it imports neither.

pub mod sink;
pub mod source;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{AwsConfig, OnError, clean};
use crate::dead_letter::{DeadLetter, DeadLetterKind, DeadLetters};
use crate::flow::Shutdown;
use crate::record::Record;
use crate::timing::{Counters, NodeTiming};

pub use sink::{
    Backoff, Destination, Encoding, Health, Item, LOCAL_MAX_RECORDS, SQLITE_MAX_RECORDS, SinkConnector, SinkOptions,
    Staged, Stager, WriteFuture, Writer, Written,
};
pub use source::{CheckpointFile, Refusal, SAVE_EVERY, Source, SourceConnector, SourceContext, SourceSettings};
pub use table::{Lookup, LookupError, TableConnector};

/// What a connector may see of the pipeline when it validates and opens.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The node's id (`db` for `[sinks.db]`).
    pub id: &'a str,
    /// The pipeline file's directory: relative paths are relative to it.
    pub base_dir: &'a Path,
    /// `[aws]`, for the AWS connectors.
    pub aws: &'a AwsConfig,
}

impl Env<'_> {
    /// A path from the pipeline file, relative to its directory, `..` folded away.
    pub fn resolve(&self, path: &str) -> PathBuf {
        clean(&self.base_dir.join(path))
    }
}

/// What every running node gets: its key, the dead letters, its clocks, the stop signal,
/// and what to do with a record it refuses. The shared "refuse / drop" steps live here so
/// sources, transforms and sinks treat a refused record the same way.
#[derive(Clone)]
pub struct NodeHandle {
    /// `sources.<id>`, `transforms.<id>` or `sinks.<id>`, as the pipeline names it.
    pub key: Arc<str>,
    /// Where refused records go.
    pub dead: DeadLetters,
    /// The node's clocks and counters.
    pub timing: Arc<NodeTiming>,
    /// Whether hop clocks are on.
    pub timing_enabled: bool,
    /// The run's stop signal.
    pub shutdown: Shutdown,
    /// What happens to a refused record.
    pub on_error: OnError,
}

impl NodeHandle {
    /// A record ends here on purpose: counted and acknowledged.
    pub fn drop_record(&self, record: Record) {
        Counters::add(&self.timing.counters.dropped, 1);
        record.ack.complete();
    }

    /// A refused record, from a thread: dead-lettered, dropped or halting, per `on_error`.
    pub fn refuse_blocking(&self, record: Record, kind: DeadLetterKind, reason: String) {
        if let Some(letter) = self.route(record, kind, reason) {
            self.dead.send_blocking(letter);
        }
    }

    /// A refused record, from async code.
    pub async fn refuse(&self, record: Record, kind: DeadLetterKind, reason: String) {
        if let Some(letter) = self.route(record, kind, reason) {
            self.dead.send(letter).await;
        }
    }

    /// A record dead-lettered whatever `on_error` says (a source's unreadable input: there
    /// is nothing to drop or halt on that the user chose).
    pub fn dead_letter_blocking(&self, record: Record, kind: DeadLetterKind, reason: String) {
        Counters::add(&self.timing.counters.dead_lettered, 1);
        self.dead.send_blocking(DeadLetter::new(record, self.key.to_string(), kind, reason));
    }

    /// The error a node returns when the nodes after it are gone (the run is halting).
    pub fn stopped_reading(&self) -> anyhow::Error {
        anyhow::anyhow!("the pipeline stopped reading")
    }

    fn route(&self, record: Record, kind: DeadLetterKind, reason: String) -> Option<DeadLetter> {
        match self.on_error {
            OnError::DeadLetter => {
                Counters::add(&self.timing.counters.dead_lettered, 1);
                Some(DeadLetter::new(record, self.key.to_string(), kind, reason))
            }
            OnError::Drop => {
                self.drop_record(record);
                None
            }
            OnError::Halt => {
                self.shutdown.halt(format!("{}: {kind}: {reason} (on_error = \"halt\")", self.key));
                drop(record); // unacknowledged: it will be read again
                None
            }
        }
    }
}
