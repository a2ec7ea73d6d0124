//! The source node that stands in for a pipeline's `kinesis` source under `ctrflow lambda`:
//! its records come from each invocation's event instead of GetRecords.
//!
//! Each Kinesis record of the event becomes one source batch of its own (its KPL
//! sub-records together), so the batch's acknowledgement says whether *that* record was
//! delivered — what a partial batch response needs. The batches' sequence numbers are
//! reported back per record as they are sent ([`Work::progress`]); the completions go to
//! the invocation that waits for them ([`EventSource`] hands the receiver over once).
//!
//! It does not checkpoint or list shards: Lambda's event source mapping owns both. Nor does
//! it filter a KPL record's sub-records by the shard's hash-key range (it does not know the
//! range; after a reshard a sub-record may be delivered by both a parent and a child shard,
//! which newer-wins sinks make harmless).

use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::ack::Completion;
use crate::connectors::aws::kinesis::deaggregate;
use crate::contract::{Env, Source, SourceConnector, SourceContext};

/// One invocation's records, handed to the source thread.
pub struct Work {
    /// The event's records, in order.
    pub records: Vec<KinesisEventRecord>,
    /// `(index of the record in the event, the sequence number of the batch holding its
    /// documents)` per record, as it is sent on; `None` when it held no document (an
    /// aggregated record with no sub-record). Dropped once every record was sent.
    pub progress: mpsc::UnboundedSender<(usize, Option<u64>)>,
}

/// The stand-in's "options": the ends of the channels the invocations use. Opened once per
/// topology.
pub struct EventSource {
    inbox: Mutex<Option<std_mpsc::Receiver<Work>>>,
    completions: Mutex<Option<oneshot::Sender<mpsc::UnboundedReceiver<Completion>>>>,
}

impl std::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSource")
    }
}

/// What the invocations keep: where to send work, and (once the source runs) where its
/// batches' completions arrive.
pub struct EventSourceHandle {
    /// Work for the source thread; dropping it ends the source.
    pub inbox: std_mpsc::Sender<Work>,
    /// Resolves once the source runs.
    pub completions: oneshot::Receiver<mpsc::UnboundedReceiver<Completion>>,
}

impl EventSource {
    /// The stand-in and the invocations' end of it.
    pub fn new() -> (EventSource, EventSourceHandle) {
        let (inbox_tx, inbox_rx) = std_mpsc::channel();
        let (c_tx, c_rx) = oneshot::channel();
        let source = EventSource { inbox: Mutex::new(Some(inbox_rx)), completions: Mutex::new(Some(c_tx)) };
        (source, EventSourceHandle { inbox: inbox_tx, completions: c_rx })
    }
}

impl SourceConnector for EventSource {
    fn open(&self, _env: &Env) -> anyhow::Result<Box<dyn Source>> {
        let inbox = self.inbox.lock().ok().and_then(|mut i| i.take());
        let completions = self.completions.lock().ok().and_then(|mut c| c.take());
        match (inbox, completions) {
            (Some(inbox), Some(completions)) => Ok(Box::new(EventReader { inbox, completions })),
            _ => anyhow::bail!("the invocation source was opened twice"),
        }
    }
}

struct EventReader {
    inbox: std_mpsc::Receiver<Work>,
    completions: oneshot::Sender<mpsc::UnboundedReceiver<Completion>>,
}

/// How often an idle source looks at the stop signal (a sink that halted the run).
const STOP_CHECK: Duration = Duration::from_millis(50);

impl Source for EventReader {
    fn run(self: Box<Self>, mut ctx: SourceContext) -> anyhow::Result<()> {
        let EventReader { inbox, completions } = *self;
        // The invocations wait for the completions themselves; the context keeps a sender.
        let (_, unused) = mpsc::unbounded_channel();
        let _ = completions.send(std::mem::replace(&mut ctx.completions, unused));
        loop {
            let work = match inbox.recv_timeout(STOP_CHECK) {
                Ok(w) => w,
                Err(std_mpsc::RecvTimeoutError::Timeout) if !ctx.shutdown().is_requested() => {
                    // Between invocations: the documents the sinks wrote last are freed
                    // now, not in the next invocation's time.
                    ctx.free_returned();
                    continue;
                }
                // Stopped, or the function is tearing this topology down.
                Err(_) => return Ok(()),
            };
            for (i, record) in work.records.into_iter().enumerate() {
                ingest(&mut ctx, record);
                let seq = ctx.flush_or_stop()?;
                let _ = work.progress.send((i, seq));
            }
        }
    }
}

/// One Kinesis record: its KPL sub-records, or itself. Positions read like the long-running
/// source's (`shardId-…:<sequence number>[:<sub-record>]`, the event's `eventID`).
fn ingest(ctx: &mut SourceContext, record: KinesisEventRecord) {
    let k = record.kinesis;
    let position = record.event_id.unwrap_or_else(|| k.sequence_number.clone());
    let arrival = Some(k.approximate_arrival_timestamp.0.timestamp_millis());
    let data = k.data.0;
    match deaggregate::deaggregate(&data) {
        Some(subs) => {
            for (i, sub) in subs.into_iter().enumerate() {
                ctx.ingest(Bytes::from(sub.data), format!("{position}:{i}"), arrival);
            }
        }
        None => ctx.ingest(Bytes::from(data), position, arrival),
    }
}

/// The event's records, each `approximateArrivalTimestamp` read exactly.
///
/// `aws_lambda_events` 0.18 reads the digits after a seconds timestamp's point as a count of
/// milliseconds, whatever their number: `1706933111.25` (250 ms past the second) becomes
/// 25 ms past it, and `….5` 5 ms — off whenever the milliseconds end in a zero, which JSON
/// numbers drop. Here the number is read as a number and the record's time set from it.
pub fn records(event: serde_json::Value) -> Result<Vec<KinesisEventRecord>, serde_json::Error> {
    let arrivals: Vec<Option<i64>> = match event.get("Records").and_then(serde_json::Value::as_array) {
        Some(records) => records
            .iter()
            .map(|r| {
                let t = r.pointer("/kinesis/approximateArrivalTimestamp")?;
                let seconds = t.as_f64().or_else(|| t.as_str()?.parse().ok())?;
                Some((seconds * 1000.0).round() as i64)
            })
            .collect(),
        None => Vec::new(),
    };
    let mut event: KinesisEvent = serde_json::from_value(event)?;
    for (record, arrival_ms) in event.records.iter_mut().zip(arrivals) {
        let Some(ms) = arrival_ms else { continue };
        let at = &mut record.kinesis.approximate_arrival_timestamp.0;
        let off = ms - at.timestamp_millis();
        if off >= 0 {
            *at += Duration::from_millis(off as u64);
        } else {
            *at -= Duration::from_millis(off.unsigned_abs());
        }
    }
    Ok(event.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_times_keep_their_milliseconds() {
        let record = |t: serde_json::Value| {
            serde_json::json!({
                "kinesis": { "kinesisSchemaVersion": "1.0", "partitionKey": "pk", "sequenceNumber": "1",
                             "data": "e30=", "approximateArrivalTimestamp": t },
                "eventSource": "aws:kinesis", "eventID": "shardId-0:1",
            })
        };
        let event = serde_json::json!({ "Records": [
            record(serde_json::json!(1706933111.25)),
            record(serde_json::json!(1706933111.025)),
            record(serde_json::json!(1706933111.987)),
            record(serde_json::json!(1706933111)),
        ]});
        let ms: Vec<i64> = records(event)
            .unwrap()
            .iter()
            .map(|r| r.kinesis.approximate_arrival_timestamp.0.timestamp_millis())
            .collect();
        assert_eq!(ms, [1706933111250, 1706933111025, 1706933111987, 1706933111000]);
    }
}
