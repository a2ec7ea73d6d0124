//! Running a sink: batching by count and linger, encoding (a sink plugin, or the record
//! itself), writing through a connector, then acknowledging — only after the write
//! succeeded — and timing delivery and end to end.
//!
//! A connector ([`crate::connectors`]) only writes: it chunks to its API's limits, retries
//! transient failures with capped exponential backoff and full jitter, and says per item
//! whether it was written, refused for good (→ dead letters, per `on_error`), or left
//! unwritten because the run is stopping (→ not acknowledged, so it is read again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::OnError;
use crate::connectors::Writer;
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::host::{Encoding, SinkPlugin};
use crate::record::{Record, now_ms};
use crate::timing::{Counters, NodeTiming};
use crate::topology::{Batch, Shutdown};

/// One record on its way out.
pub struct Item {
    /// The record.
    pub record: Record,
    /// Its encoding by the sink plugin, when the sink has one.
    pub encoding: Option<Encoding>,
}

impl Item {
    /// The bytes a byte-oriented destination writes: the plugin's payload, or the
    /// record's JSON.
    pub fn payload(&self) -> Vec<u8> {
        match self.encoding.as_ref().and_then(|e| e.payload.clone()) {
            Some(p) => p,
            None => serde_json::to_vec(&*self.record.doc).unwrap_or_default(),
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written and acknowledged by the destination.
    Ok,
    /// Refused for good (too large, rejected by the destination): dead-letter it.
    Refused { kind: &'static str, reason: String },
    /// Not written because the run is stopping: leave it unacknowledged.
    Unwritten,
}

/// Capped exponential backoff with full jitter (the AWS Architecture Blog's "full jitter").
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(50), cap: Duration::from_secs(10), attempt: 0 }
    }
}

impl Backoff {
    /// The next wait: uniform in `[0, min(cap, base * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        let ceiling = exp.min(self.cap);
        ceiling.mul_f64(jitter_fraction())
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniform float in [0, 1) from a per-thread xorshift generator seeded by the clock;
/// jitter needs spread, not cryptographic quality.
fn jitter_fraction() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// A sink node, ready to run.
pub struct SinkNode {
    /// Its id.
    pub id: String,
    /// Its input.
    pub rx: mpsc::Receiver<Batch>,
    /// The connector.
    pub writer: Writer,
    /// The encoding plugin, if any.
    pub plugin: Option<SinkPlugin>,
    /// What to do with refused records.
    pub on_error: OnError,
    /// Most records per write.
    pub max_records: usize,
    /// How long a partial batch waits for more.
    pub linger: Duration,
    /// Dead letters.
    pub dead: DeadLetters,
    /// Clocks and counters.
    pub timing: Arc<NodeTiming>,
    /// Whether hop clocks are on.
    pub timing_enabled: bool,
    /// Add hop times to records under `_ctrflow_timing`.
    pub annotate: bool,
    /// The stop signal.
    pub shutdown: Shutdown,
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
                    if self.timing_enabled {
                        self.timing
                            .wait
                            .record(now.saturating_duration_since(batch.sent_at), batch.records.len() as u64);
                    }
                    Counters::add(&self.timing.counters.records_in, batch.records.len() as u64);
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
        self.writer.close().await
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
                        Err(f) => self.refuse(record, f.kind.as_str(), f.message).await,
                    }
                }
            }
        }

        let results = self.writer.write(&items).await;
        let acked_at = Instant::now();
        let acked_ms = now_ms();
        let mut event_us = Vec::new();
        let mut arrival_us = Vec::new();
        let mut ok = 0u64;
        let mut unwritten = 0u64;
        for (item, result) in items.into_iter().zip(results) {
            match result {
                Written::Ok => {
                    ok += 1;
                    if self.timing_enabled {
                        let meta = &item.record.meta;
                        if let Some(e) = meta.event_ms {
                            event_us.push(((acked_ms - e).max(0) as u64) * 1000);
                        }
                        arrival_us.push(((acked_ms - meta.arrival_ms).max(0) as u64) * 1000);
                    }
                    item.record.ack.complete();
                }
                Written::Refused { kind, reason } => self.refuse(item.record, kind, reason).await,
                Written::Unwritten => unwritten += 1,
            }
        }
        if unwritten > 0 {
            // Unacknowledged: the source's checkpoint stays before them.
            tracing::warn!(sink = %self.id, records = unwritten, "Records left unwritten and unacknowledged.");
        }
        Counters::add(&self.timing.counters.records_out, ok);
        if self.timing_enabled {
            for (arrived, read_at, n) in groups {
                self.timing.process.record(acked_at.saturating_duration_since(arrived), n as u64);
                self.timing.read_to_ack.record(acked_at.saturating_duration_since(read_at), n as u64);
            }
            self.timing.event_to_ack.record_many(event_us);
            self.timing.arrival_to_ack.record_many(arrival_us);
        }
        Ok(())
    }

    fn annotated(&self, mut record: Record) -> Record {
        let meta = record.meta.clone();
        if let Value::Object(map) = Arc::make_mut(&mut record.doc) {
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

    async fn refuse(&self, record: Record, kind: &str, reason: String) {
        match self.on_error {
            OnError::DeadLetter => {
                Counters::add(&self.timing.counters.dead_lettered, 1);
                self.dead.send(DeadLetter::new(record, format!("sinks.{}", self.id), kind, reason)).await;
            }
            OnError::Drop => {
                Counters::add(&self.timing.counters.dropped, 1);
                record.ack.complete();
            }
            OnError::Halt => {
                self.shutdown.halt(format!("sinks.{}: {kind}: {reason} (on_error = \"halt\")", self.id));
                drop(record); // unacknowledged: it will be read again
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        let mut b = Backoff::default();
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(10));
        }
        assert_eq!(b.attempts(), 20);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(50));
    }
}
