//! What moves between nodes: [`Batch`]es on bounded channels ([`Output`]), and the run's
//! stop signal ([`Shutdown`]). Wiring the channels is [`crate::topology`]'s job.
//!
//! Every transform and sink has one input channel of `channel_capacity` batches; every
//! upstream output holds a sender to each node that reads it. A full channel blocks the
//! sender, so a slow sink slows the nodes before it and, in the end, the source's reads:
//! memory stays bounded whatever the input rate. Fan-out sends each reader its own `Vec`
//! of the same `Arc`'d records (copy-on-write: only a node that edits a shared record
//! copies it).
//!
//! Shutdown is a drain: sources stop reading, close their outputs, and every node ends
//! when its input is closed and empty, so everything read is written (or dead-lettered)
//! and acknowledged before the process exits. A node with `on_error = "halt"` asks for the
//! same drain and makes the run fail.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::doc::Doc;
use crate::record::Record;
use crate::tap::TapPoint;

/// Records moving together, with the clocks of their path.
#[derive(Debug)]
pub struct Batch {
    /// The records.
    pub records: Vec<Record>,
    /// When the source read the batch's first record.
    pub read_at: Instant,
    /// When the batch was handed to the channel it is in.
    pub sent_at: Instant,
}

impl Batch {
    /// A batch read at `read_at`.
    pub fn new(records: Vec<Record>, read_at: Instant) -> Self {
        Batch { records, read_at, sent_at: read_at }
    }

    /// The same clocks, other records (routing splits a batch by output).
    pub fn with_records(&self, records: Vec<Record>) -> Self {
        Batch { records, read_at: self.read_at, sent_at: self.sent_at }
    }
}

/// The downstream channels was closed: the reader is gone (the pipeline is halting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// One output of a node: a sender to every node reading it.
#[derive(Clone, Default)]
pub struct Output {
    senders: Vec<mpsc::Sender<Batch>>,
    /// Where `ctrflow tap` watches this output (see [`crate::tap`]).
    tap: Option<Arc<TapPoint>>,
    /// Whether batches are stamped as they are sent (for the next node's queue wait):
    /// not when hop timing is off.
    timed: bool,
}

impl Output {
    /// An output feeding these channels.
    pub fn new(senders: Vec<mpsc::Sender<Batch>>) -> Self {
        Output { senders, tap: None, timed: true }
    }

    /// The same output, watched by `tap`: one atomic load per batch while nobody taps.
    pub fn tapped(mut self, tap: Arc<TapPoint>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The same output, sending batches without stamping them (hop timing is off).
    pub fn untimed(mut self) -> Self {
        self.timed = false;
        self
    }

    /// Whether anything reads this output.
    pub fn is_connected(&self) -> bool {
        !self.senders.is_empty()
    }

    /// One batch per reader: clones (of `Arc`s) for all but the last.
    fn fan(&self, batch: Batch) -> Vec<(mpsc::Sender<Batch>, Batch)> {
        let batch = self.stamp(batch);
        if let Some(tap) = &self.tap
            && tap.is_tapped()
        {
            tap.offer(&batch.records);
        }
        let mut out = Vec::with_capacity(self.senders.len());
        if let Some((last, rest)) = self.senders.split_last() {
            for s in rest {
                out.push((s.clone(), Batch { records: batch.records.clone(), ..batch }));
            }
            out.push((last.clone(), batch));
        }
        out
    }

    /// Stamps a batch as sent (for the next node's queue wait), unless hop timing is off.
    pub fn stamp(&self, mut batch: Batch) -> Batch {
        if self.timed {
            batch.sent_at = Instant::now();
        }
        batch
    }

    /// The documents of `records` for this output's tap, when someone taps it: a fused
    /// chain sets them aside as it hands a batch on, to offer them in order
    /// ([`Output::offer_to_tap`]) when the batch is sent.
    pub fn tap_copy(&self, records: &[Record]) -> Option<Vec<Doc>> {
        let tapped = self.tap.as_ref().is_some_and(|t| t.is_tapped());
        tapped.then(|| records.iter().map(|r| r.doc.clone()).collect())
    }

    /// Offers documents set aside by [`Output::tap_copy`] to this output's tap.
    pub fn offer_to_tap(&self, docs: &[Doc]) {
        if let Some(tap) = &self.tap {
            tap.offer_docs(docs);
        }
    }

    /// Sends from a thread, blocking while a reader's channel is full.
    pub fn send_blocking(&self, batch: Batch) -> Result<(), Closed> {
        let mut result = Ok(());
        for (s, b) in self.fan(batch) {
            if s.blocking_send(b).is_err() {
                result = Err(Closed);
            }
        }
        result
    }

    /// Sends from async code, waiting while a reader's channel is full.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let mut result = Ok(());
        for (s, b) in self.fan(batch) {
            if s.send(b).await.is_err() {
                result = Err(Closed);
            }
        }
        result
    }
}

/// The run's stop signal, and the reason when a node halted it.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
    halted: Arc<Mutex<Option<String>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown { tx: Arc::new(tx), rx, halted: Arc::new(Mutex::new(None)) }
    }
}

impl Shutdown {
    /// Whether sources should stop reading.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Asks sources to stop reading; everything read is still drained.
    pub fn request(&self) {
        let _ = self.tx.send(true);
    }

    /// Stops the run because of `reason`; the run will fail with it.
    pub fn halt(&self, reason: String) {
        if let Ok(mut h) = self.halted.lock() {
            h.get_or_insert(reason);
        }
        self.request();
    }

    /// Why the run was halted, if it was.
    pub fn halted(&self) -> Option<String> {
        self.halted.lock().ok().and_then(|h| h.clone())
    }

    /// Resolves when a stop is requested.
    pub async fn requested(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
