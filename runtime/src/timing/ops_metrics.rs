//! The operational metrics beyond hop times and record counts, in Prometheus text: how a
//! node fares against the outside world — writes retried after infrastructure faults,
//! whether its destination is failing now, records left unwritten at a stop — and, for
//! stream sources, how far behind the stream they read and how many shards they hold.
//!
//! Appended to [`super::prometheus::render`]'s text; the admin endpoint serves the same.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Counters, LeaseCounters, Timing};
use crate::graph::Section;

/// `(metric, type, help, counter, applies to sources only)`.
type Row = (&'static str, &'static str, &'static str, fn(&Counters) -> &AtomicU64, bool);

const ROWS: [Row; 5] = [
    (
        "ctrflow_write_retries_total",
        "counter",
        "Writes retried after an infrastructure fault (throttling, a 5xx, a busy or full disk).",
        |c| &c.retries,
        false,
    ),
    (
        "ctrflow_degraded",
        "gauge",
        "1 while the node's destination is failing and being retried.",
        |c| &c.degraded,
        false,
    ),
    (
        "ctrflow_records_unwritten_total",
        "counter",
        "Records a sink gave back unwritten (unacknowledged) because the run stopped while it was failing.",
        |c| &c.unwritten,
        false,
    ),
    (
        "ctrflow_source_behind_milliseconds",
        "gauge",
        "Stream sources: MillisBehindLatest of the latest reads, the largest over the shards read.",
        |c| &c.behind_ms,
        true,
    ),
    (
        "ctrflow_source_shards",
        "gauge",
        "Stream sources: shards this process reads (leases held, in a fleet).",
        |c| &c.shards,
        true,
    ),
];

/// `(metric, type, help, counter)` of a fleet source's lease counters.
type LeaseRow = (&'static str, &'static str, &'static str, fn(&LeaseCounters) -> &AtomicU64);

const LEASE_ROWS: [LeaseRow; 6] = [
    ("ctrflow_leases_held", "gauge", "Fleet sources: leases this process holds now.", |l| &l.held),
    (
        "ctrflow_lease_takes_total",
        "counter",
        "Fleet sources: leases taken (unowned, expired, or this worker's own after a restart).",
        |l| &l.takes,
    ),
    (
        "ctrflow_lease_steals_total",
        "counter",
        "Fleet sources: leases stolen from a more loaded worker to even the split.",
        |l| &l.steals,
    ),
    (
        "ctrflow_lease_losses_total",
        "counter",
        "Fleet sources: leases lost (taken by another worker, or not renewed within lease_duration).",
        |l| &l.losses,
    ),
    (
        "ctrflow_lease_renew_failures_total",
        "counter",
        "Fleet sources: lease renewals that failed with an error (retried; the lease is given up after lease_duration).",
        |l| &l.renew_failures,
    ),
    (
        "ctrflow_lease_settled",
        "gauge",
        "Fleet sources: 1 once this process holds its fair share of the leases (or nothing is left to take or steal).",
        |l| &l.settled,
    ),
];

/// Appends the metrics to `out`.
pub fn render(timing: &Timing, out: &mut String) {
    for (metric, kind, help, counter, sources_only) in ROWS {
        out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
        for n in timing.nodes().filter(|n| !sources_only || n.section == Section::Source) {
            let v = counter(&n.counters).load(Ordering::Relaxed);
            out.push_str(&format!("{metric}{{node=\"{}\"}} {v}\n", label(&n.id)));
        }
    }
    // Per process and labelled with its worker id, so a fleet's series are told apart and
    // matched with the lease table's `leaseOwner`; only sources in a fleet have them.
    let fleet: Vec<_> = timing.nodes().filter_map(|n| n.counters.leases.worker.get().map(|w| (n, label(w)))).collect();
    if fleet.is_empty() {
        return;
    }
    for (metric, kind, help, counter) in LEASE_ROWS {
        out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
        for (n, worker) in &fleet {
            let v = counter(&n.counters.leases).load(Ordering::Relaxed);
            out.push_str(&format!("{metric}{{node=\"{}\",worker=\"{worker}\"}} {v}\n", label(&n.id)));
        }
    }
}

/// A Prometheus label value, escaped (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_has_its_fault_metrics_and_sources_their_lag() {
        let t = Timing::new(
            true,
            [("gen".to_string(), Section::Source, vec![]), ("db".to_string(), Section::Sink, vec!["gen".to_string()])],
        );
        Counters::add(&t.node("db").counters.retries, 3);
        t.node("db").counters.degraded.store(1, Ordering::Relaxed);
        t.node("gen").counters.behind_ms.store(1500, Ordering::Relaxed);
        let mut s = String::new();
        render(&t, &mut s);
        assert!(s.contains("ctrflow_write_retries_total{node=\"db\"} 3\n"), "{s}");
        assert!(s.contains("ctrflow_degraded{node=\"db\"} 1\n"), "{s}");
        assert!(s.contains("ctrflow_records_unwritten_total{node=\"gen\"} 0\n"), "{s}");
        assert!(s.contains("ctrflow_source_behind_milliseconds{node=\"gen\"} 1500\n"), "{s}");
        assert!(!s.contains("ctrflow_source_shards{node=\"db\"}"), "{s}");
        assert!(!s.contains("ctrflow_leases_held"), "no fleet, no lease metrics: {s}");
    }

    #[test]
    fn a_fleet_source_has_its_lease_metrics_labelled_with_its_worker() {
        let t = Timing::new(true, [("ctrs".to_string(), Section::Source, vec![])]);
        let l = &t.node("ctrs").counters.leases;
        l.worker.set("host-1:42".into()).unwrap();
        l.held.store(2, Ordering::Relaxed);
        Counters::add(&l.takes, 3);
        Counters::add(&l.steals, 1);
        Counters::add(&l.losses, 1);
        Counters::add(&l.renew_failures, 4);
        l.settled.store(1, Ordering::Relaxed);
        let mut s = String::new();
        render(&t, &mut s);
        for line in [
            "ctrflow_leases_held{node=\"ctrs\",worker=\"host-1:42\"} 2\n",
            "ctrflow_lease_takes_total{node=\"ctrs\",worker=\"host-1:42\"} 3\n",
            "ctrflow_lease_steals_total{node=\"ctrs\",worker=\"host-1:42\"} 1\n",
            "ctrflow_lease_losses_total{node=\"ctrs\",worker=\"host-1:42\"} 1\n",
            "ctrflow_lease_renew_failures_total{node=\"ctrs\",worker=\"host-1:42\"} 4\n",
            "ctrflow_lease_settled{node=\"ctrs\",worker=\"host-1:42\"} 1\n",
        ] {
            assert!(s.contains(line), "{line} missing from:\n{s}");
        }
    }
}
