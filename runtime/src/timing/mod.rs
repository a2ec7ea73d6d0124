//! Hop clocks and histograms: where the time goes, from event to actionable.
//!
//! Stamps are taken per *batch*, not per record (another engine reverted its end-to-end
//! metric because per-record clocks cost too much): a batch is stamped when a source
//! reads it, when it is handed to a channel, and when a node takes it and lets it go.
//! Every record of a batch experiences the same hop, so each batch is one histogram entry
//! weighted by its length. Only the end-to-end figures that depend on each record's own
//! event time (event → ack, arrival → ack) are taken per record, at the sink, where they
//! are one subtraction each.
//!
//! On a linear path the hops telescope: read → ack is exactly the source's batching time,
//! plus each node's queue wait and processing, plus the sink's queue wait and delivery
//! (hand-over → acknowledgement, linger and retries included), so mean hop times add up
//! to the mean end-to-end time.
//!
//! Values are kept in microseconds (HDR histograms, 3 significant digits) and reported in
//! milliseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod html;
pub mod ops_metrics;
pub mod prometheus;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::graph::Section;

/// One latency histogram.
pub struct Series(Mutex<Histogram<u64>>);

impl Default for Series {
    fn default() -> Self {
        // Up to an hour in microseconds, 3 significant digits; auto-resize past that.
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid");
        h.auto(true);
        Series(Mutex::new(h))
    }
}

impl Series {
    /// Records `n` observations of `d`.
    pub fn record(&self, d: Duration, n: u64) {
        self.record_us(d.as_micros() as u64, n);
    }

    /// Records `n` observations of `us` microseconds.
    pub fn record_us(&self, us: u64, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut h) = self.0.lock() {
            let _ = h.record_n(us.max(1), n);
        }
    }

    /// Records many observations under one lock.
    pub fn record_many(&self, values_us: impl IntoIterator<Item = u64>) {
        if let Ok(mut h) = self.0.lock() {
            for v in values_us {
                let _ = h.record(v.max(1));
            }
        }
    }

    /// Count and quantiles, in milliseconds.
    pub fn summary(&self) -> Summary {
        let Ok(h) = self.0.lock() else { return Summary::default() };
        summarize(&h)
    }

    /// A copy of the histogram so far: `summary_since` it gives the figures of what was
    /// recorded in between (one Lambda invocation's), exactly, however long the process ran.
    pub fn snapshot(&self) -> Histogram<u64> {
        match self.0.lock() {
            Ok(h) => h.clone(),
            Err(_) => Histogram::new(3).expect("static histogram bounds are valid"),
        }
    }

    /// Count and quantiles of what was recorded since `before` (a [`Series::snapshot`]).
    pub fn summary_since(&self, before: &Histogram<u64>) -> Summary {
        let mut now = self.snapshot();
        match now.subtract(before) {
            Ok(()) => summarize(&now),
            Err(_) => Summary::default(),
        }
    }

    /// Cumulative bucket counts at these upper bounds (µs), for Prometheus.
    pub fn buckets(&self, bounds_us: &[u64]) -> (Vec<u64>, u64, f64) {
        let Ok(h) = self.0.lock() else { return (vec![0; bounds_us.len()], 0, 0.0) };
        let counts = bounds_us.iter().map(|b| h.count_between(0, *b)).collect();
        (counts, h.len(), h.mean() * h.len() as f64)
    }
}

fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Summary {
        count: h.len(),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

/// A histogram's summary, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Observations (records).
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// Record counters for one node.
#[derive(Default)]
pub struct Counters {
    /// Records received (read, for a source).
    pub records_in: AtomicU64,
    /// Records sent on (written and acknowledged, for a sink).
    pub records_out: AtomicU64,
    /// Records deliberately dropped.
    pub dropped: AtomicU64,
    /// Records sent to the dead letters.
    pub dead_lettered: AtomicU64,
    /// Writes retried after an infrastructure fault (throttling, a 5xx, a busy or full
    /// disk): never a record's fault, so retried without limit.
    pub retries: AtomicU64,
    /// 1 while the node's destination is failing and being retried, 0 once it recovers.
    pub degraded: AtomicU64,
    /// Records a sink gave back unwritten because the run stopped while it was failing.
    pub unwritten: AtomicU64,
    /// Stream sources: how far behind the stream's tip the latest reads are (the largest
    /// `MillisBehindLatest` over the shards read), in ms.
    pub behind_ms: AtomicU64,
    /// Stream sources: the shards this process reads (the leases it holds, in a fleet).
    pub shards: AtomicU64,
    /// Fleet sources (a shared lease table): this process's lease events.
    pub leases: LeaseCounters,
}

/// A fleet source's lease counters, per process: what `/metrics` shows as
/// `ctrflow_lease_*` and what `/ready` waits for.
#[derive(Default)]
pub struct LeaseCounters {
    /// This process's `worker_id` once the source joined a fleet; unset otherwise.
    pub worker: std::sync::OnceLock<String>,
    /// Leases held now.
    pub held: AtomicU64,
    /// Leases taken (unowned, expired, or its own after a restart).
    pub takes: AtomicU64,
    /// Leases stolen from a more loaded worker to even the split.
    pub steals: AtomicU64,
    /// Leases lost: taken by another worker, or not renewed within `lease_duration`.
    pub losses: AtomicU64,
    /// Renewals that failed for an error (not for another owner); retried.
    pub renew_failures: AtomicU64,
    /// 1 once the latest round of the lease thread left this process with its fair share
    /// (or with nothing it could take or steal); 0 before the first round, or when the lease
    /// table has not been read for `lease_duration`.
    pub settled: AtomicU64,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Where a node's plugin keeps its own counters (`count(name, delta)`); the host answers.
pub trait PluginCounters: Send + Sync {
    /// A snapshot, by counter name.
    fn counters(&self) -> std::collections::HashMap<String, i64>;
}

/// Everything timed about one node.
pub struct NodeTiming {
    /// The node's id.
    pub id: String,
    /// Its section.
    pub section: Section,
    /// The node's upstream nodes on its default path, for the report's ordering.
    pub inputs: Vec<String>,
    /// Time batches waited in this node's input channel.
    pub wait: Series,
    /// Time from taking a batch to handing it on (a source: from reading its first record
    /// to handing the batch on). A sink: from hand-over to acknowledgement (`deliver`).
    pub process: Series,
    /// Sinks: event time → acknowledgement, per record.
    pub event_to_ack: Series,
    /// Sinks: arrival in the stream → acknowledgement, per record.
    pub arrival_to_ack: Series,
    /// Sinks: read by the runtime → acknowledgement.
    pub read_to_ack: Series,
    /// Sources: event time → arrival in the stream (the delay before the data reached us).
    pub event_to_arrival: Series,
    /// Record counters.
    pub counters: Counters,
    /// The node's plugin, whose own counters (`host.count`) the report includes.
    pub plugin: std::sync::OnceLock<Arc<dyn PluginCounters>>,
}

impl NodeTiming {
    /// The plugin-defined counters, by name.
    pub fn plugin_counters(&self) -> BTreeMap<String, i64> {
        self.plugin.get().map(|c| c.counters().into_iter().collect()).unwrap_or_default()
    }

    fn new(id: &str, section: Section, inputs: Vec<String>) -> Self {
        NodeTiming {
            id: id.to_string(),
            section,
            inputs,
            wait: Series::default(),
            process: Series::default(),
            event_to_ack: Series::default(),
            arrival_to_ack: Series::default(),
            read_to_ack: Series::default(),
            event_to_arrival: Series::default(),
            counters: Counters::default(),
            plugin: std::sync::OnceLock::new(),
        }
    }
}

/// All of a pipeline's timing.
pub struct Timing {
    /// Whether hop clocks are taken at all.
    pub enabled: bool,
    nodes: BTreeMap<String, Arc<NodeTiming>>,
    order: Vec<String>,
    started: std::time::Instant,
}

impl Timing {
    /// Timing for these nodes `(id, section, inputs)`, in path order.
    pub fn new(enabled: bool, nodes: impl IntoIterator<Item = (String, Section, Vec<String>)>) -> Self {
        let mut map = BTreeMap::new();
        let mut order = Vec::new();
        for (id, section, inputs) in nodes {
            order.push(id.clone());
            map.insert(id.clone(), Arc::new(NodeTiming::new(&id, section, inputs)));
        }
        Timing { enabled, nodes: map, order, started: std::time::Instant::now() }
    }

    /// One node's timing.
    pub fn node(&self, id: &str) -> Arc<NodeTiming> {
        self.nodes.get(id).cloned().unwrap_or_else(|| Arc::new(NodeTiming::new(id, Section::Transform, Vec::new())))
    }

    /// Every node, in path order.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<NodeTiming>> {
        self.order.iter().filter_map(|id| self.nodes.get(id))
    }

    /// The path from a source to `sink`, following each node's first input.
    pub fn path_to(&self, sink: &str) -> Vec<String> {
        let mut path = vec![sink.to_string()];
        let mut cur = sink.to_string();
        while let Some(first) = self.nodes.get(&cur).and_then(|n| n.inputs.first()) {
            if path.contains(first) {
                break;
            }
            path.push(first.clone());
            cur = first.clone();
        }
        path.reverse();
        path
    }

    /// The report as data.
    pub fn report(&self) -> Report {
        let nodes = self
            .nodes()
            .map(|n| {
                let c = &n.counters;
                NodeReport {
                    id: n.id.clone(),
                    kind: match n.section {
                        Section::Source => "source",
                        Section::Transform => "transform",
                        Section::Sink => "sink",
                    },
                    inputs: n.inputs.clone(),
                    records_in: c.records_in.load(Ordering::Relaxed),
                    records_out: c.records_out.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                    queue_wait_ms: (n.section != Section::Source).then(|| n.wait.summary()),
                    process_ms: (n.section != Section::Sink).then(|| n.process.summary()),
                    deliver_ms: (n.section == Section::Sink).then(|| n.process.summary()),
                    event_to_arrival_ms: (n.section == Section::Source).then(|| n.event_to_arrival.summary()),
                    plugin_counters: n.plugin_counters(),
                }
            })
            .collect();
        let sinks = self
            .nodes()
            .filter(|n| n.section == Section::Sink)
            .map(|n| SinkReport {
                id: n.id.clone(),
                path: self.path_to(&n.id),
                event_to_ack_ms: n.event_to_ack.summary(),
                arrival_to_ack_ms: n.arrival_to_ack.summary(),
                read_to_ack_ms: n.read_to_ack.summary(),
            })
            .collect();
        Report { elapsed_s: self.started.elapsed().as_secs_f64(), timing_enabled: self.enabled, nodes, sinks }
    }
}

/// The timing report (`run --report <file>.json`). See the README for the schema.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds since the pipeline started.
    pub elapsed_s: f64,
    /// Whether hop clocks were on.
    pub timing_enabled: bool,
    /// Every node, in path order.
    pub nodes: Vec<NodeReport>,
    /// End-to-end figures per sink.
    pub sinks: Vec<SinkReport>,
}

/// One node's row.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// The node's id.
    pub id: String,
    /// `source`, `transform` or `sink`.
    pub kind: &'static str,
    /// The nodes it reads.
    pub inputs: Vec<String>,
    /// Records in.
    pub records_in: u64,
    /// Records out (for a sink: acknowledged).
    pub records_out: u64,
    /// Records dropped deliberately.
    pub dropped: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Transforms and sinks: time waiting in the input channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<Summary>,
    /// Sources and transforms: time in the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_ms: Option<Summary>,
    /// Sinks: hand-over → acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_ms: Option<Summary>,
    /// Sources: event time → arrival in the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_to_arrival_ms: Option<Summary>,
    /// The counters the node's plugin keeps (`count(name, delta)`), by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plugin_counters: BTreeMap<String, i64>,
}

/// One sink's end-to-end figures.
#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    /// The sink's id.
    pub id: String,
    /// The nodes on its (first-input) path, source first.
    pub path: Vec<String>,
    /// Event → acknowledgement: "event to actionable".
    pub event_to_ack_ms: Summary,
    /// Arrival in the stream → acknowledgement.
    pub arrival_to_ack_ms: Summary,
    /// Read by the runtime → acknowledgement.
    pub read_to_ack_ms: Summary,
}

/// A duration for the terminal table: milliseconds up to 100 s, then in minutes, hours or
/// days, marked. Replaying a month-old file makes every event → arrival about 2.6 billion ms,
/// which nobody reads at a glance; "30.0d" they do.
fn cell(ms: f64) -> String {
    const MINUTE: f64 = 60_000.0;
    const HOUR: f64 = 60.0 * MINUTE;
    const DAY: f64 = 24.0 * HOUR;
    if ms < 100_000.0 {
        format!("{ms:.3}")
    } else if ms < 100.0 * MINUTE {
        format!("{:.1}min", ms / MINUTE)
    } else if ms < 100.0 * HOUR {
        format!("{:.1}h", ms / HOUR)
    } else {
        format!("{:.1}d", ms / DAY)
    }
}

impl Report {
    /// The terminal table: one row per hop in path order, end-to-end rows below.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let header = format!("{:<34} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "hop (ms)", "count", "p50", "p90", "p99", "max");
        s.push_str(&header);
        let row = |s: &mut String, name: String, m: &Summary| {
            s.push_str(&format!(
                "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                truncate(&name, 34),
                m.count,
                cell(m.p50),
                cell(m.p90),
                cell(m.p99),
                cell(m.max)
            ));
        };
        for n in &self.nodes {
            if let Some(m) = &n.event_to_arrival_ms
                && m.count > 0
            {
                row(&mut s, format!("{} event→arrival", n.id), m);
            }
            if let Some(m) = &n.queue_wait_ms {
                row(&mut s, format!("{} queue wait", n.id), m);
            }
            if let Some(m) = &n.process_ms {
                row(&mut s, format!("{} {}", n.id, if n.kind == "source" { "read" } else { "process" }), m);
            }
            if let Some(m) = &n.deliver_ms {
                row(&mut s, format!("{} deliver", n.id), m);
            }
        }
        s.push_str(&"-".repeat(header.len() - 1));
        s.push('\n');
        for k in &self.sinks {
            row(&mut s, format!("{} event→ack", k.id), &k.event_to_ack_ms);
            row(&mut s, format!("{} arrival→ack", k.id), &k.arrival_to_ack_ms);
            row(&mut s, format!("{} read→ack", k.id), &k.read_to_ack_ms);
        }
        s.push('\n');
        s.push_str(&format!("{:<34} {:>9} {:>9} {:>9} {:>9}\n", "records", "in", "out", "dropped", "dead"));
        for n in &self.nodes {
            s.push_str(&format!(
                "{:<34} {:>9} {:>9} {:>9} {:>9}\n",
                truncate(&format!("{} ({})", n.id, n.kind), 34),
                n.records_in,
                n.records_out,
                n.dropped,
                n.dead_lettered
            ));
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_durations_in_the_table_are_in_minutes_hours_or_days_and_fit_the_column() {
        assert_eq!(cell(0.125), "0.125");
        assert_eq!(cell(99_999.5), "99999.500");
        assert_eq!(cell(150_000.0), "2.5min");
        assert_eq!(cell(7_200_000.0), "2.0h");
        // A year-old event, as replaying an archive gives.
        assert_eq!(cell(28_501_402_976.255), "329.9d");
        for ms in [0.001, 99_999.999, 5_999_999.0, 359_999_999.0, 8.64e9] {
            assert!(cell(ms).len() <= 9, "{ms}: {}", cell(ms));
        }
    }

    #[test]
    fn a_series_summarises_in_milliseconds() {
        let s = Series::default();
        s.record(Duration::from_millis(2), 99);
        s.record(Duration::from_millis(100), 1);
        let m = s.summary();
        assert_eq!(m.count, 100);
        assert!((m.p50 - 2.0).abs() < 0.01, "{m:?}");
        assert!((m.max - 100.0).abs() < 0.1, "{m:?}");
    }

    #[test]
    fn the_path_to_a_sink_follows_first_inputs() {
        let t = Timing::new(
            true,
            [
                ("gen".to_string(), Section::Source, vec![]),
                ("a".to_string(), Section::Transform, vec!["gen".to_string()]),
                ("db".to_string(), Section::Sink, vec!["a".to_string()]),
            ],
        );
        assert_eq!(t.path_to("db"), ["gen", "a", "db"]);
        let table = t.report().table();
        assert!(table.contains("a queue wait") && table.contains("db event→ack"), "{table}");
    }
}
