//! Running a sink: batching by count and linger, encoding (a sink plugin, or the record
//! itself), writing through a connector, then acknowledging — only after the write
//! succeeded — and timing delivery and end to end.
//!
//! A connector's [`Writer`] only writes: it chunks to its API's limits, retries transient
//! failures with capped exponential backoff and full jitter, and says per item whether it
//! was written, refused for good (→ dead letters, per `on_error`), or left unwritten
//! because the run is stopping (→ not acknowledged, so it is read again).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::contract::{Item, NodeHandle, Writer, Written};
use crate::flow::Batch;
use crate::host::SinkPlugin;
use crate::record::{Record, now_ms};
use crate::timing::Counters;
use crate::transform::dead_letter_kind;

/// A sink node, ready to run.
pub struct SinkNode {
    /// Its key, dead letters, clocks, stop signal and `on_error`.
    pub node: NodeHandle,
    /// Its id.
    pub id: String,
    /// Its input.
    pub rx: mpsc::Receiver<Batch>,
    /// The connector.
    pub writer: Box<dyn Writer>,
    /// The encoding plugin, if any.
    pub plugin: Option<SinkPlugin>,
    /// Most records per write.
    pub max_records: usize,
    /// How long a partial batch waits for more.
    pub linger: Duration,
    /// Add hop times to records under `_ctrflow_timing`.
    pub annotate: bool,
}

/// Records waiting for the next write, with when they arrived (per input batch).
struct Pending {
    records: Vec<Record>,
    /// (arrived at the sink, read by the source, number of records)
    groups: Vec<(Instant, Instant, usize)>,
    first_at: Option<Instant>,
}

impl SinkNode {
    /// Runs until the input closes and everything is written.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut pending = Pending { records: Vec::new(), groups: Vec::new(), first_at: None };
        loop {
            let deadline = pending.first_at.map(|t| t + self.linger);
            let next = match deadline {
                // `None` when the linger expired first.
                Some(d) => tokio::time::timeout_at(d.into(), self.rx.recv()).await.ok(),
                None => Some(self.rx.recv().await),
            };
            match next {
                Some(Some(batch)) => {
                    let now = Instant::now();
                    if self.node.timing_enabled {
                        self.node
                            .timing
                            .wait
                            .record(now.saturating_duration_since(batch.sent_at), batch.records.len() as u64);
                    }
                    Counters::add(&self.node.timing.counters.records_in, batch.records.len() as u64);
                    pending.groups.push((now, batch.read_at, batch.records.len()));
                    pending.first_at.get_or_insert(now);
                    pending.records.extend(batch.records);
                    if pending.records.len() >= self.max_records {
                        self.flush(&mut pending).await?;
                    }
                }
                Some(None) => {
                    self.flush(&mut pending).await?;
                    break;
                }
                None => self.flush(&mut pending).await?,
            }
        }
        self.writer.close()?;
        let unwritten = self.node.timing.counters.unwritten.load(std::sync::atomic::Ordering::Relaxed);
        if unwritten > 0 {
            anyhow::bail!(
                "{unwritten} record(s) left unwritten and unacknowledged (the destination kept failing while the run stopped); they are read again on the next run"
            );
        }
        Ok(())
    }

    async fn flush(&mut self, pending: &mut Pending) -> anyhow::Result<()> {
        pending.first_at = None;
        if pending.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut pending.records);
        let groups = std::mem::take(&mut pending.groups);
        let records = if self.annotate { records.into_iter().map(|r| self.annotated(r)).collect() } else { records };

        let mut items = Vec::with_capacity(records.len());
        match &self.plugin {
            None => items.extend(records.into_iter().map(|record| Item { record, encoding: None })),
            Some(plugin) => {
                for (record, enc) in plugin.encode(records) {
                    match enc {
                        Ok(e) => items.push(Item { record, encoding: Some(e) }),
                        Err(f) => self.node.refuse(record, dead_letter_kind(f.kind), f.message).await,
                    }
                }
            }
        }

        let results = self.writer.write(&items).await;
        let timed = self.node.timing_enabled;
        let (acked_at, acked_ms) = if timed { (Some(Instant::now()), now_ms()) } else { (None, 0) };
        let mut event_us = Vec::new();
        let mut arrival_us = Vec::new();
        let mut ok = 0u64;
        let mut unwritten = 0u64;
        for (item, result) in items.into_iter().zip(results) {
            match result {
                Written::Ok => {
                    ok += 1;
                    if timed {
                        let meta = &item.record.meta;
                        if let Some(e) = meta.event_ms {
                            event_us.push(((acked_ms - e).max(0) as u64) * 1000);
                        }
                        arrival_us.push(((acked_ms - meta.arrival_ms).max(0) as u64) * 1000);
                    }
                    item.record.ack.complete();
                }
                Written::Refused { kind, reason } => self.node.refuse(item.record, kind, reason).await,
                Written::Unwritten => unwritten += 1,
                Written::Skipped => self.node.drop_record(item.record),
            }
        }
        if unwritten > 0 {
            // Unacknowledged: the source's checkpoint stays before them.
            Counters::add(&self.node.timing.counters.unwritten, unwritten);
            tracing::warn!(sink = %self.id, records = unwritten, "Records left unwritten and unacknowledged.");
        }
        Counters::add(&self.node.timing.counters.records_out, ok);
        if let Some(acked_at) = acked_at {
            for (arrived, read_at, n) in groups {
                self.node.timing.process.record(acked_at.saturating_duration_since(arrived), n as u64);
                self.node.timing.read_to_ack.record(acked_at.saturating_duration_since(read_at), n as u64);
            }
            self.node.timing.event_to_ack.record_many(event_us);
            self.node.timing.arrival_to_ack.record_many(arrival_us);
        }
        Ok(())
    }

    fn annotated(&self, mut record: Record) -> Record {
        let meta = record.meta.clone();
        if let Value::Object(map) = record.doc.make_mut() {
            map.insert(
                "_ctrflow_timing".into(),
                json!({
                    "sink": self.id,
                    "event_ms": meta.event_ms,
                    "arrival_ms": meta.arrival_ms,
                    "read_ms": meta.read_ms,
                    "sink_ms": now_ms(),
                }),
            );
        }
        record
    }
}
