//! Taps: copies of the records leaving a node, for `ctrflow tap` to watch a running
//! pipeline. Every node output has a [`TapPoint`]; a [`Subscription`] to one or several
//! points receives the documents sent through them into its own bounded buffer.
//!
//! Tapping must never slow the pipeline, so the pipeline's side is one atomic load per
//! batch while nobody taps, and while someone does, an `Arc` clone per record into a
//! buffer it never waits for: a full buffer (or one the reader holds at that moment)
//! drops the record *for the tap* and counts it. The subscriber, not the pipeline, turns
//! documents into JSON.
//!
//! A tap holds the document only, never the record's acknowledgement: a record in a tap's
//! buffer is already acknowledged as usual, and a node that edits a tapped document copies
//! it first (copy-on-write), as for fan-out.
//!
//! Tapped documents are customer data, exactly as they leave the node. This module does not
//! serve them (that is the admin endpoint's job) nor decide who may.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::doc::Doc;
use crate::record::Record;

/// How many documents one subscriber's buffer holds before it drops for the tap.
pub const BUFFER: usize = 1024;

/// A node id and one of its outputs (`None`: the default output).
type PointKey = (String, Option<String>);

/// Every tap point of a pipeline, by node and output.
#[derive(Clone, Default)]
pub struct Taps {
    points: Arc<Mutex<BTreeMap<PointKey, Arc<TapPoint>>>>,
}

impl Taps {
    /// The point on `node`'s `output`, created on first use.
    pub fn point(&self, node: &str, output: Option<&str>) -> Arc<TapPoint> {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points
            .entry((node.to_string(), output.map(str::to_string)))
            .or_insert_with(|| Arc::new(TapPoint::new(output)))
            .clone()
    }

    /// The points of `node`: all of them for `output = None`, else the one named (the
    /// default output is named `""` here).
    fn points_of(&self, node: &str, output: Option<&str>) -> Vec<Arc<TapPoint>> {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points
            .iter()
            .filter(|((n, o), _)| n == node && output.is_none_or(|want| o.as_deref().unwrap_or("") == want))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The outputs of `node` that can be tapped (`""` is the default output).
    pub fn outputs_of(&self, node: &str) -> Vec<String> {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points.keys().filter(|(n, _)| n == node).map(|(_, o)| o.clone().unwrap_or_default()).collect()
    }

    /// Subscribes to `node` (every output, or the one named), or `None` when it has no such
    /// output to tap.
    pub fn subscribe(&self, node: &str, output: Option<&str>, capacity: usize) -> Option<Subscription> {
        let points = self.points_of(node, output);
        if points.is_empty() {
            return None;
        }
        let buffer = Arc::new(Buffer::new(capacity.max(1)));
        for p in &points {
            p.add(buffer.clone());
        }
        Some(Subscription { buffer, points })
    }

    /// Documents dropped for taps so far, over every subscriber that has ended or still runs.
    pub fn dropped(&self) -> u64 {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points.values().map(|p| p.dropped.load(Ordering::Relaxed)).sum()
    }

    /// Subscribers now, over every point.
    pub fn subscribers(&self) -> usize {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points.values().map(|p| p.active.load(Ordering::Relaxed)).sum()
    }

    /// The pipeline has finished: every subscriber sees the end once its buffer is empty.
    pub fn close(&self) {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        for p in points.values() {
            for b in p.subscribers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                b.close();
            }
        }
    }
}

/// One node output's tap: the subscribers currently watching it.
pub struct TapPoint {
    output: Option<Arc<str>>,
    /// Subscribers, kept apart from the list so the pipeline's check is one load.
    active: AtomicUsize,
    subscribers: Mutex<Vec<Arc<Buffer>>>,
    /// Documents dropped for this point's subscribers (all time).
    dropped: AtomicU64,
}

impl TapPoint {
    fn new(output: Option<&str>) -> Self {
        TapPoint {
            output: output.map(Arc::from),
            active: AtomicUsize::new(0),
            subscribers: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether anyone watches: the only cost to the pipeline when nobody does.
    #[inline]
    pub fn is_tapped(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }

    /// Copies `records`' documents to every subscriber with room; never waits.
    pub fn offer(&self, records: &[Record]) {
        self.offer_with(records.len(), |i| records[i].doc.clone());
    }

    /// [`TapPoint::offer`] for documents set aside earlier (a fused chain's hand-over, offered
    /// in order once the batch is sent on).
    pub fn offer_docs(&self, docs: &[Doc]) {
        self.offer_with(docs.len(), |i| docs[i].clone());
    }

    fn offer_with(&self, len: usize, doc: impl Fn(usize) -> Doc) {
        // The list is only locked by (un)subscribing; if that happens now, this batch is
        // not seen by anyone rather than waited for.
        let Ok(subs) = self.subscribers.try_lock() else { return };
        for b in subs.iter() {
            let dropped = b.offer(self.output.as_ref(), len, &doc);
            if dropped > 0 {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
    }

    fn add(&self, buffer: Arc<Buffer>) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(buffer);
        self.active.store(subs.len(), Ordering::Relaxed);
    }

    fn remove(&self, buffer: &Arc<Buffer>) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|b| !Arc::ptr_eq(b, buffer));
        self.active.store(subs.len(), Ordering::Relaxed);
    }
}

/// A document as it left a node: the output it left by (`None`: the default one).
#[derive(Debug, Clone)]
pub struct Tapped {
    /// The output's name, for nodes with named outputs.
    pub output: Option<Arc<str>>,
    /// The document.
    pub doc: Doc,
}

/// One subscriber's bounded buffer.
struct Buffer {
    queue: Mutex<VecDeque<Tapped>>,
    capacity: usize,
    ready: Condvar,
    dropped: AtomicU64,
    closed: AtomicBool,
}

impl Buffer {
    fn new(capacity: usize) -> Self {
        Buffer {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(BUFFER))),
            capacity,
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Takes what fits; returns how many were dropped.
    fn offer(&self, output: Option<&Arc<str>>, len: usize, doc: impl Fn(usize) -> Doc) -> u64 {
        let taken = match self.queue.try_lock() {
            Ok(mut q) => {
                let room = self.capacity.saturating_sub(q.len()).min(len);
                q.extend((0..room).map(|i| Tapped { output: output.cloned(), doc: doc(i) }));
                room
            }
            // The reader holds the buffer right now: this batch is not waited for.
            Err(_) => 0,
        };
        if taken > 0 {
            self.ready.notify_one();
        }
        let dropped = (len - taken) as u64;
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        dropped
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.queue.lock();
        self.ready.notify_all();
    }
}

/// What [`Subscription::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// Documents, oldest first.
    Docs(Vec<Tapped>),
    /// Nothing arrived within the wait.
    Idle,
    /// The pipeline has finished and the buffer is empty.
    Ended,
}

/// A live tap; unsubscribes when dropped, after which the pipeline pays nothing for it.
pub struct Subscription {
    buffer: Arc<Buffer>,
    points: Vec<Arc<TapPoint>>,
}

impl Subscription {
    /// Up to `max` documents, waiting at most `wait` for the first.
    pub fn take(&self, max: usize, wait: Duration) -> Taken {
        let b = &self.buffer;
        let mut q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() && !b.closed.load(Ordering::Acquire) {
            q = b.ready.wait_timeout(q, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
        if q.is_empty() {
            return if b.closed.load(Ordering::Acquire) { Taken::Ended } else { Taken::Idle };
        }
        let n = max.min(q.len());
        Taken::Docs(q.drain(..n).collect())
    }

    /// Documents this subscriber missed because its buffer was full.
    pub fn dropped(&self) -> u64 {
        self.buffer.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for p in &self.points {
            p.remove(&self.buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn records(n: usize) -> Vec<Record> {
        (0..n).map(|i| Record::detached(json!({ "ContactId": format!("c{i}") }))).collect()
    }

    #[test]
    fn an_untapped_point_costs_a_load_and_keeps_nothing() {
        let taps = Taps::default();
        let p = taps.point("redact", None);
        assert!(!p.is_tapped());
        p.offer(&records(3));
        assert_eq!(taps.dropped(), 0);
    }

    #[test]
    fn a_subscriber_gets_documents_until_full_then_counts_drops() {
        let taps = Taps::default();
        let p = taps.point("redact", None);
        let sub = taps.subscribe("redact", None, 4).expect("the point exists");
        assert!(p.is_tapped());
        p.offer(&records(3));
        p.offer(&records(3));
        assert_eq!(sub.dropped(), 2);
        assert_eq!(taps.dropped(), 2);
        let Taken::Docs(docs) = sub.take(10, Duration::ZERO) else { panic!("documents were buffered") };
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[3].doc["ContactId"], "c0");
        assert!(matches!(sub.take(10, Duration::from_millis(1)), Taken::Idle));
        drop(sub);
        assert!(!p.is_tapped(), "dropping the subscription unsubscribes");
    }

    #[test]
    fn a_node_is_tapped_on_every_output_or_the_one_named() {
        let taps = Taps::default();
        let voice = taps.point("route", Some("VOICE"));
        let chat = taps.point("route", Some("CHAT"));
        let all = taps.subscribe("route", None, 10).expect("route has outputs");
        let only_chat = taps.subscribe("route", Some("CHAT"), 10).expect("route has CHAT");
        assert!(taps.subscribe("route", Some("TASK"), 10).is_none());
        assert!(taps.subscribe("db", None, 10).is_none());
        voice.offer(&records(1));
        chat.offer(&records(2));
        let Taken::Docs(d) = all.take(10, Duration::ZERO) else { panic!() };
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].output.as_deref(), Some("VOICE"));
        let Taken::Docs(d) = only_chat.take(10, Duration::ZERO) else { panic!() };
        assert_eq!(d.len(), 2);
        assert_eq!(taps.outputs_of("route"), ["CHAT", "VOICE"]);
    }

    #[test]
    fn closing_ends_a_subscription_once_it_is_drained() {
        let taps = Taps::default();
        let p = taps.point("gen", None);
        let sub = taps.subscribe("gen", None, 10).unwrap();
        p.offer(&records(1));
        taps.close();
        assert!(matches!(sub.take(10, Duration::ZERO), Taken::Docs(_)));
        assert!(matches!(sub.take(10, Duration::from_secs(5)), Taken::Ended));
    }

    #[test]
    fn a_tap_does_not_hold_the_acknowledgement() {
        let taps = Taps::default();
        let p = taps.point("gen", None);
        let _sub = taps.subscribe("gen", None, 10).unwrap();
        let r = records(1);
        p.offer(&r);
        // The tap keeps the document alive, never the record (and so never its ack share).
        assert_eq!(r[0].doc.share_count(), 2);
        assert_eq!(Arc::strong_count(&r[0].meta), 1);
    }
}
