//! The admin endpoint (`[runtime] admin_addr`): what an operator asks a running process.
//!
//! - `/metrics`: the Prometheus text of `metrics_addr`, plus queue fill and tap counts;
//! - `/health`: 200 while the process lives (liveness), with the sinks now failing;
//! - `/ready`: 200 while the pipeline runs and every fleet source holds its fair share of
//!   the leases; 503 before that, and once it is stopping (readiness);
//! - `/stats`: a JSON snapshot of every node, what `ctrflow top` shows;
//! - `/tap?node=…[&output=…][&limit=N]`: the records leaving a node, as JSON lines.
//!
//! Off by default, and meant for loopback: the tap serves customer data, so the endpoint
//! has no authentication of its own and must be reached through something that has
//! (a port-forward, an SSH tunnel, a sidecar). A non-loopback address is accepted because
//! containers need one, and is logged as a warning.
//!
//! This module serves and reads the endpoint ([`server`], [`top`], [`tap`]); the counters
//! it shows are kept by [`crate::timing`] and the taps by [`crate::tap`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::flow::{Batch, Shutdown};
use crate::graph::Section;
use crate::tap::Taps;
use crate::timing::Timing;

pub mod client;
pub mod server;
pub mod tap;
pub mod top;

/// What the endpoint reads from the running pipeline.
pub struct State {
    timing: Arc<Timing>,
    taps: Taps,
    /// Each transform's and sink's input channel, weakly: the endpoint must never keep a
    /// channel open, or the pipeline would not drain.
    queues: HashMap<String, mpsc::WeakSender<Batch>>,
    shutdown: Shutdown,
    started: std::time::Instant,
}

/// The running endpoint. Dropping it (at the end of the run) ends every tap, so each tap
/// client learns how many records it saw and missed.
pub struct Admin {
    taps: Taps,
    /// The bound address (port 0 in the configuration picks a free one).
    pub addr: SocketAddr,
}

impl Admin {
    /// Serves on `addr` when one is configured.
    pub fn start(
        addr: Option<&str>,
        timing: &Arc<Timing>,
        taps: &Taps,
        senders: &HashMap<String, mpsc::Sender<Batch>>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Option<Admin>> {
        let Some(addr) = addr else { return Ok(None) };
        let addr = &loopback_unless_named(addr);
        let state = Arc::new(State {
            timing: timing.clone(),
            taps: taps.clone(),
            queues: senders.iter().map(|(id, s)| (id.clone(), s.downgrade())).collect(),
            shutdown: shutdown.clone(),
            started: std::time::Instant::now(),
        });
        let bound = server::serve(addr, state)
            .map_err(|e| anyhow::anyhow!("runtime.admin_addr: cannot listen on {addr}: {e}"))?;
        if bound.ip().is_loopback() {
            tracing::info!(addr = %bound, "Serving the admin endpoint (metrics, health, ready, stats, tap).");
        } else {
            tracing::warn!(addr = %bound, "Serving the admin endpoint on a non-loopback address: its tap serves customer data to anyone who can reach it.");
        }
        Ok(Some(Admin { taps: taps.clone(), addr: bound }))
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.taps.close();
        // Give each tap a moment to send what it holds and its closing count before the
        // process exits; a tap client that stopped reading is not waited for long.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.taps.subscribers() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// One process's snapshot (`/stats`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// The process id.
    pub pid: u32,
    /// Seconds since the pipeline started.
    pub elapsed_s: f64,
    /// Whether the process is ready: running (not stopping), and every fleet source
    /// settled on its share of the leases. See [`State::readiness`].
    pub ready: bool,
    /// Why it is not ready (`stopping`, or the fleet sources waiting for their leases).
    #[serde(default)]
    pub not_ready: Option<String>,
    /// Documents dropped for taps, all time.
    pub tap_dropped: u64,
    /// Every node, in path order.
    pub nodes: Vec<NodeStats>,
}

/// One node in a [`Stats`] snapshot. Counters are totals since the start; `top` turns them
/// into rates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's key, e.g. `transforms.redact`.
    pub key: String,
    /// Records received (read, for a source).
    pub records_in: u64,
    /// Records sent on (written and acknowledged, for a sink).
    pub records_out: u64,
    /// Records dropped deliberately.
    pub dropped: u64,
    /// Records sent to the dead letters.
    pub dead_lettered: u64,
    /// Writes retried after infrastructure faults.
    pub retries: u64,
    /// Whether the node's destination is failing now.
    pub degraded: bool,
    /// Records given back unwritten because the run stopped while failing.
    pub unwritten: u64,
    /// Batches waiting in the input channel (transforms and sinks).
    pub queue: Option<u64>,
    /// The input channel's capacity, in batches.
    pub queue_capacity: Option<u64>,
    /// Median time in the node (processing; delivery for a sink), ms.
    pub p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_ms: f64,
    /// Stream sources: how far behind the stream's tip the latest reads are
    /// (`MillisBehindLatest`, the largest over the shards read), ms.
    pub behind_ms: Option<u64>,
    /// Stream sources: shards read by this process (leases held, in a fleet).
    pub shards: Option<u64>,
}

impl State {
    /// The snapshot `/stats` serves.
    pub fn stats(&self) -> Stats {
        let nodes = self
            .timing
            .nodes()
            .map(|n| {
                let c = &n.counters;
                let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let summary = n.process.summary();
                let (queue, queue_capacity) = match self.queues.get(&n.id).and_then(|w| w.upgrade()) {
                    Some(s) => {
                        let max = s.max_capacity() as u64;
                        (Some(max - s.capacity() as u64), Some(max))
                    }
                    None => (None, None),
                };
                let shards = load(&c.shards);
                NodeStats {
                    key: format!("{}.{}", n.section.key(), n.id),
                    records_in: load(&c.records_in),
                    records_out: load(&c.records_out),
                    dropped: load(&c.dropped),
                    dead_lettered: load(&c.dead_lettered),
                    retries: load(&c.retries),
                    degraded: load(&c.degraded) != 0,
                    unwritten: load(&c.unwritten),
                    queue,
                    queue_capacity,
                    p50_ms: summary.p50,
                    p99_ms: summary.p99,
                    behind_ms: (n.section == Section::Source && shards > 0).then(|| load(&c.behind_ms)),
                    shards: (n.section == Section::Source && shards > 0).then_some(shards),
                }
            })
            .collect();
        let readiness = self.readiness();
        Stats {
            pid: std::process::id(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            ready: readiness.is_ok(),
            not_ready: readiness.err(),
            tap_dropped: self.taps.dropped(),
            nodes,
        }
    }

    /// Whether the process is ready for traffic, and if not, why: it is stopping, or a
    /// source in a fleet has not yet settled on its share of the leases (see
    /// [`crate::timing::LeaseCounters::settled`]). A source outside a fleet is ready once
    /// the pipeline runs.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutdown.is_requested() {
            return Err("stopping".into());
        }
        let waiting: Vec<String> = self
            .timing
            .nodes()
            .filter(|n| {
                n.counters.leases.worker.get().is_some() && n.counters.leases.settled.load(Ordering::Relaxed) == 0
            })
            .map(|n| format!("{}.{}", n.section.key(), n.id))
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for its share of the leases: {}", waiting.join(", ")))
        }
    }

    /// The node a tap names: `redact`, `transforms.redact`, or `route.VOICE` (a named
    /// output). Returns its id and output.
    fn resolve(&self, name: &str, output: Option<&str>) -> Result<(String, Option<String>), String> {
        let find = |id: &str| self.timing.nodes().find(|n| n.id == id).map(|n| n.section);
        let (id, output) = match name.split_once('.') {
            Some((section, id)) if ["sources", "transforms", "sinks"].contains(&section) => {
                (id.to_string(), output.map(str::to_string))
            }
            Some((id, out)) if output.is_none() && find(id).is_some() => (id.to_string(), Some(out.to_string())),
            _ => (name.to_string(), output.map(str::to_string)),
        };
        match find(&id) {
            None => Err(format!("no node {name:?}")),
            Some(Section::Sink) => {
                Err(format!("sinks.{id} sends nothing on: tap the node before it to see what it receives"))
            }
            Some(_) => Ok((id, output)),
        }
    }

    /// Prometheus lines the endpoint adds to the metrics of `metrics_addr`.
    fn extra_metrics(&self) -> String {
        let stats = self.stats();
        // Labelled by node id, as the rest of the metrics are.
        let id = |key: &str| label(key.split_once('.').map_or(key, |(_, id)| id));
        let mut s = String::new();
        s.push_str("# HELP ctrflow_queue_batches Batches waiting in the node's input channel.\n");
        s.push_str("# TYPE ctrflow_queue_batches gauge\n");
        for n in stats.nodes.iter() {
            if let Some(q) = n.queue {
                s.push_str(&format!("ctrflow_queue_batches{{node=\"{}\"}} {q}\n", id(&n.key)));
            }
        }
        s.push_str("# HELP ctrflow_queue_capacity_batches The node's input channel capacity.\n");
        s.push_str("# TYPE ctrflow_queue_capacity_batches gauge\n");
        for n in stats.nodes.iter() {
            if let Some(q) = n.queue_capacity {
                s.push_str(&format!("ctrflow_queue_capacity_batches{{node=\"{}\"}} {q}\n", id(&n.key)));
            }
        }
        s.push_str("# HELP ctrflow_tap_subscribers Taps watching the pipeline now.\n");
        s.push_str("# TYPE ctrflow_tap_subscribers gauge\n");
        s.push_str(&format!("ctrflow_tap_subscribers {}\n", self.taps.subscribers()));
        s.push_str("# HELP ctrflow_tap_dropped_total Records a tap missed because its buffer was full (never the pipeline's).\n");
        s.push_str("# TYPE ctrflow_tap_dropped_total counter\n");
        s.push_str(&format!("ctrflow_tap_dropped_total {}\n", stats.tap_dropped));
        s.push_str("# HELP ctrflow_ready 1 while the pipeline runs (in a fleet: once it holds its share of the leases), 0 before and once it is stopping.\n");
        s.push_str("# TYPE ctrflow_ready gauge\n");
        s.push_str(&format!("ctrflow_ready {}\n", u8::from(stats.ready)));
        s
    }
}

/// `":9601"` or `"9601"` (no host) means loopback; an address with a host is taken as is.
fn loopback_unless_named(addr: &str) -> String {
    let port = addr.strip_prefix(':').unwrap_or(addr);
    if port.chars().all(|c| c.is_ascii_digit()) { format!("127.0.0.1:{port}") } else { addr.to_string() }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_host_is_loopback() {
        assert_eq!(loopback_unless_named(":9601"), "127.0.0.1:9601");
        assert_eq!(loopback_unless_named("9601"), "127.0.0.1:9601");
        assert_eq!(loopback_unless_named("0.0.0.0:9601"), "0.0.0.0:9601");
        assert_eq!(loopback_unless_named("[::1]:9601"), "[::1]:9601");
    }
}
