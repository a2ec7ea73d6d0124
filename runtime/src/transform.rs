//! A transform node: takes batches from its input, runs them through its plugin, and sends
//! each record where the plugin decided — the default output, a named one, split into
//! several, dropped, or refused (per the node's `on_error`).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::contract::NodeHandle;
use crate::dead_letter::DeadLetterKind;
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
    }
}

impl TransformNode {
    /// Runs until its input closes.
    pub fn run(self, mut rx: mpsc::Receiver<Batch>) -> anyhow::Result<()> {
        let timing = self.node.timing.clone();
        while let Some(mut batch) = rx.blocking_recv() {
            let start = Instant::now();
            let n = batch.records.len() as u64;
            if self.node.timing_enabled {
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
                            default.push(Record {
                                doc: Arc::new(doc),
                                meta: record.meta.clone(),
                                ack: record.ack.clone(),
                            });
                        }
                        record.ack.complete();
                    }
                    Decision::Fail(f) => self.node.refuse_blocking(record, dead_letter_kind(f.kind), f.message),
                }
            }
            if self.node.timing_enabled {
                timing.process.record(start.elapsed(), n);
            }
            self.send(&self.default, batch.with_records(default))?;
            for (output, records) in self.named.iter().zip(named) {
                self.send(output, batch.with_records(records))?;
            }
        }
        Ok(())
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
