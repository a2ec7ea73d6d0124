//! A transform node: takes batches from its input, runs them through its plugin, and sends
//! each record where the plugin decided — the default output, a named one, split into
//! several, dropped, or refused (per the node's `on_error`).
//!
//! With `workers > 1` the node works on that many batches at once, each worker a thread with
//! its own plugin instance from the node's pool. Batches are numbered as they are taken and
//! sent on in that order (a worker that finishes early parks its result until the ones
//! before it are sent, and at most `workers` results are parked), so a node's output order
//! is its input's whatever the workers: a Kinesis sink still sees one partition key's
//! records in order.
//!
//! The transforms fused after this one (`then`, see [`crate::topology`]: the next of a linear
//! chain, or every reader of a fan-out) run on the same workers: `carry` takes each batch
//! through all of them, a share of it to each reader, and the order, the acknowledgements,
//! the counters, the timing and the dead letters stay each node's own.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::contract::{Health, NodeHandle};
use crate::dead_letter::DeadLetterKind;
use crate::doc::Doc;
use crate::flow::{Batch, Output};
use crate::host::{Decision, FailureKind, TransformPlugin};
use crate::record::Record;
use crate::timing::Counters;

/// A transform node, ready to run on its own thread.
pub struct TransformNode {
    /// Its key, dead letters, clocks, stop signal and `on_error`.
    pub node: NodeHandle,
    /// The plugin, with its pool of instances.
    pub plugin: TransformPlugin,
    /// Where kept records go.
    pub default: Output,
    /// Where routed records go, in the order of the plugin's declared outputs.
    pub named: Vec<Output>,
    /// The transforms that take this one's kept records on the same worker, when they are
    /// fused to it (see [`crate::topology`]): each gets its share of every batch, as the
    /// readers of a fan-out do, and `default` sends nowhere and only stamps the batch and
    /// feeds its tap. Empty for a transform that sends its records on.
    pub then: Vec<TransformNode>,
}

/// The dead-letter kind of a plugin's refusal or trap.
pub fn dead_letter_kind(kind: FailureKind) -> DeadLetterKind {
    match kind {
        FailureKind::BadRecord => DeadLetterKind::BadRecord,
        FailureKind::InvalidConfig => DeadLetterKind::InvalidConfig,
        FailureKind::LookupFailed => DeadLetterKind::LookupFailed,
        FailureKind::Internal => DeadLetterKind::PluginError,
        FailureKind::Deadline => DeadLetterKind::Deadline,
        FailureKind::MemoryLimit => DeadLetterKind::MemoryLimit,
        FailureKind::Panic => DeadLetterKind::Panic,
        FailureKind::Trap => DeadLetterKind::Trap,
        FailureKind::OutputTooLarge => DeadLetterKind::OutputTooLarge,
        // Never dead-lettered: `process` leaves such a record unacknowledged.
        FailureKind::Stopped => DeadLetterKind::PluginError,
    }
}

/// What one batch became: a batch per output (the default first, then the named ones).
type Routed = Vec<Batch>;

/// What one batch became after a chain: the [`Routed`] of each node that sends its records
/// on, and the documents each node handed on within the chain while someone tapped its
/// output, to be offered to the taps in order when the batch is sent.
struct Carried<'a> {
    routed: Vec<(&'a TransformNode, Routed)>,
    taps: Vec<(&'a TransformNode, Vec<Doc>)>,
}

/// Results waiting for the batches before them to be sent.
struct Reorder<'a> {
    next: u64,
    ready: BTreeMap<u64, Carried<'a>>,
    /// A worker is sending results on (in order); the others leave theirs to it.
    sending: bool,
    /// A worker stopped on an error: the others stop waiting for their turn.
    failed: bool,
}

impl TransformNode {
    /// Runs until its input closes.
    pub fn run(self, rx: mpsc::Receiver<Batch>, workers: usize) -> anyhow::Result<()> {
        // Lookups retry a table that does not answer for as long as the run lasts.
        for t in self.nodes() {
            let health = Health::lookups(t.node.key.clone(), t.node.timing.clone());
            t.plugin.context().lookup_retry.attach(health, t.node.shutdown.clone());
        }
        let input = Mutex::new((rx, 0u64));
        let reorder =
            (Mutex::new(Reorder { next: 0, ready: BTreeMap::new(), sending: false, failed: false }), Condvar::new());
        let workers = workers.max(1);
        // Workers are named for the node (`tf:redact.1`, `tf:redact.2`), so `top -H` tells
        // them apart from other nodes' workers.
        let name = std::thread::current().name().unwrap_or("tf").to_owned();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|i| {
                    // As `scope.spawn` does, a thread the system will not start is a panic.
                    std::thread::Builder::new()
                        .name(format!("{name}.{}", i + 1))
                        .spawn_scoped(scope, || {
                            let result = self.work(&input, &reorder, workers);
                            if result.is_err()
                                && let Ok(mut order) = reorder.0.lock()
                            {
                                order.failed = true;
                                reorder.1.notify_all();
                            }
                            result
                        })
                        .expect("failed to spawn a worker thread")
                })
                .collect();
            let mut result = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")));
                if result.is_ok() {
                    result = r;
                }
            }
            // Named by node: in a fused chain the run reports under the head's key, and the
            // table that failed may be another node's.
            let unwritten: Vec<String> = self
                .nodes()
                .enumerate()
                .filter_map(|(position, t)| {
                    let n = t.node.timing.counters.unwritten.load(std::sync::atomic::Ordering::Relaxed);
                    match (n, position) {
                        (0, _) => None,
                        (n, 0) => Some(format!("{n} record(s)")),
                        (n, _) => Some(format!("{n} record(s) in {}", t.node.key)),
                    }
                })
                .collect();
            if result.is_ok() && !unwritten.is_empty() {
                result = Err(anyhow::anyhow!(
                    "{} left unprocessed and unacknowledged (a lookup table kept failing while the run stopped); they are read again on the next run",
                    unwritten.join(", ")
                ));
            }
            result
        })
    }

    /// One worker: take the next batch, process it, send what is next in order.
    ///
    /// Results parked for their turn are bounded by the number of workers: a worker that
    /// finds that many parked waits for the batch at the front (being processed by another
    /// worker) to be sent before it takes another, so a slow batch (a lookup table that
    /// does not answer) holds at most `workers` results behind it, not the whole input.
    fn work<'a>(
        &'a self,
        input: &Mutex<(mpsc::Receiver<Batch>, u64)>,
        reorder: &(Mutex<Reorder<'a>>, Condvar),
        workers: usize,
    ) -> anyhow::Result<()> {
        let (reorder, turn) = reorder;
        loop {
            let (seq, batch) = {
                let mut guard = input.lock().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
                let Some(batch) = guard.0.blocking_recv() else { return Ok(()) };
                guard.1 += 1;
                (guard.1 - 1, batch)
            };
            let carried = self.carry(batch);
            let mut order = reorder.lock().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
            order.ready.insert(seq, carried);
            if !order.sending {
                // This worker sends everything that is next in line, in order, one batch at
                // a time without the lock: the others go on working meanwhile (up to the
                // bound on parked results) and leave what they finish to it, so a reader
                // slow to take a batch (a sink whose write is syncing) holds up only the
                // sending, not the work.
                order.sending = true;
                while let Some(carried) = {
                    let next = order.next;
                    order.ready.remove(&next)
                } {
                    order.next += 1;
                    drop(order);
                    turn.notify_all();
                    Self::send_carried(carried)?;
                    order = reorder.lock().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
                }
                order.sending = false;
            }
            turn.notify_all();
            while order.ready.len() >= workers && !order.failed {
                order = turn.wait(order).map_err(|_| anyhow::anyhow!("a worker panicked"))?;
            }
            if order.failed {
                // The worker that failed reports why.
                return Ok(());
            }
        }
    }

    /// Sends one batch's results on: the documents set aside for taps first, then what each
    /// node that sends on kept, to each of its outputs.
    fn send_carried(Carried { routed, taps }: Carried<'_>) -> anyhow::Result<()> {
        for (t, docs) in taps {
            t.default.offer_to_tap(&docs);
        }
        for (t, routed) in routed {
            for (output, batch) in std::iter::once(&t.default).chain(&t.named).zip(routed) {
                t.send(output, batch)?;
            }
        }
        Ok(())
    }

    /// This node and the ones fused after it, each before those it carries, in order.
    fn nodes(&self) -> impl Iterator<Item = &TransformNode> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.then.iter().rev());
            Some(node)
        })
    }

    /// Runs one batch through this node and those fused after it.
    fn carry(&self, batch: Batch) -> Carried<'_> {
        let mut carried = Carried { routed: Vec::new(), taps: Vec::new() };
        self.carry_into(batch, &mut carried);
        carried
    }

    /// Runs one batch through this node and on through those it carries.
    fn carry_into<'a>(&'a self, batch: Batch, carried: &mut Carried<'a>) {
        let mut routed = self.process(batch);
        if self.then.is_empty() {
            carried.routed.push((self, routed));
            return;
        }
        // A fused node has no named outputs: `routed` is its kept records alone.
        let kept = routed.swap_remove(0);
        if kept.records.is_empty() {
            // Nothing for the nodes after it, and nothing to send.
            return;
        }
        Counters::add(&self.node.timing.counters.records_out, kept.records.len() as u64);
        if let Some(docs) = self.default.tap_copy(&kept.records) {
            carried.taps.push((self, docs));
        }
        let kept = self.default.stamp(kept);
        // Each reader its share, as a fan-out sends: the records cloned (their documents
        // shared) for all but the last, which takes the batch itself.
        let (last, first) = self.then.split_last().expect("not empty");
        for next in first {
            next.carry_into(kept.with_records(kept.records.clone()), carried);
        }
        last.carry_into(kept, carried);
    }

    /// Runs one batch through the plugin and sorts its records by output.
    fn process(&self, mut batch: Batch) -> Routed {
        let timing = &self.node.timing;
        // No clock is read when hop timing is off.
        let start = self.node.timing_enabled.then(Instant::now);
        let n = batch.records.len() as u64;
        if let Some(start) = start {
            timing.wait.record(start.saturating_duration_since(batch.sent_at), n);
        }
        Counters::add(&timing.counters.records_in, n);
        let records = std::mem::take(&mut batch.records);
        let mut default = Vec::with_capacity(records.len());
        let mut named: Vec<Vec<Record>> = vec![Vec::new(); self.named.len()];
        for (record, decision) in self.plugin.process(records) {
            match decision {
                Decision::Keep => default.push(record),
                Decision::Route(i) => named[i as usize].push(record),
                Decision::Drop => self.node.drop_record(record),
                Decision::Split(docs) => {
                    for doc in docs {
                        default.push(Record { doc: Doc::new(doc), meta: record.meta.clone(), ack: record.ack.clone() });
                    }
                    record.ack.complete();
                }
                Decision::Fail(f) if f.kind == FailureKind::Stopped => {
                    // Not the record's fault: it stays unacknowledged (its batch is not
                    // checkpointed) and is read again on the next run.
                    Counters::add(&self.node.timing.counters.unwritten, 1);
                    drop(record);
                }
                Decision::Fail(f) => self.node.refuse_blocking(record, dead_letter_kind(f.kind), f.message),
            }
        }
        if let Some(start) = start {
            timing.process.record(start.elapsed(), n);
        }
        std::iter::once(default).chain(named).map(|records| batch.with_records(records)).collect()
    }

    fn send(&self, output: &Output, batch: Batch) -> anyhow::Result<()> {
        if batch.records.is_empty() {
            return Ok(());
        }
        Counters::add(&self.node.timing.counters.records_out, batch.records.len() as u64);
        if !output.is_connected() {
            // An output nobody reads: the records end here, deliberately.
            for r in batch.records {
                self.node.drop_record(r);
            }
            return Ok(());
        }
        output.send_blocking(batch).map_err(|_| self.node.stopped_reading())
    }
}
