//! Each invocation's figures as one CloudWatch Embedded Metric Format line on stdout, so
//! Lambda's log delivery turns them into CloudWatch metrics with no agent and no
//! PutMetricData call: records, delivered, retried, dead-lettered, the invocation's time
//! from event to every record acknowledged, and per node the mean time in each hop —
//! exactly this invocation's, the difference of two histogram snapshots.
//!
//! It does not replace the report at shutdown, and sends nothing anywhere itself.

use std::sync::Arc;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::invocation::Delivery;
use crate::graph::Section;
use crate::timing::{NodeTiming, Series, Summary, Timing};

/// CloudWatch takes at most 100 metrics per directive.
const MAX_METRICS: usize = 100;

/// One histogram's snapshot: its metric name, its node, how to find it there, and its
/// counts as the invocation started.
type Mark = (String, Arc<NodeTiming>, fn(&NodeTiming) -> &Series, Histogram<u64>);

/// The hop histograms as an invocation started.
pub struct Marks {
    series: Vec<Mark>,
    dead_lettered: u64,
}

fn dead_lettered(timing: &Timing) -> u64 {
    timing.nodes().map(|n| n.counters.dead_lettered.load(std::sync::atomic::Ordering::Relaxed)).sum()
}

/// Snapshots `timing` before an invocation.
pub fn mark(timing: &Timing) -> Marks {
    let mut series: Vec<Mark> = Vec::new();
    for node in timing.nodes() {
        let mut add = |name: &str, pick: fn(&NodeTiming) -> &Series| {
            series.push((format!("{}.{name}", node.id), node.clone(), pick, pick(node).snapshot()));
        };
        match node.section {
            Section::Source => {
                add("event_to_arrival_ms", |n| &n.event_to_arrival);
                add("process_ms", |n| &n.process);
            }
            Section::Transform => {
                add("queue_wait_ms", |n| &n.wait);
                add("process_ms", |n| &n.process);
            }
            Section::Sink => {
                add("queue_wait_ms", |n| &n.wait);
                add("deliver_ms", |n| &n.process);
                add("event_to_ack_ms", |n| &n.event_to_ack);
                add("arrival_to_ack_ms", |n| &n.arrival_to_ack);
            }
        }
    }
    Marks { series, dead_lettered: dead_lettered(timing) }
}

/// What the line says besides the hop figures.
pub struct Invocation<'a> {
    /// The Lambda request id.
    pub request_id: &'a str,
    /// The metric namespace.
    pub namespace: &'a str,
    /// The pipeline's name (its file stem): the metrics' dimension.
    pub pipeline: &'a str,
    /// Event received → every record settled (or the deadline), in ms.
    pub elapsed_ms: f64,
    /// Whether this was the process's first invocation.
    pub cold: bool,
}

/// The EMF line for one invocation.
pub fn line(marks: &Marks, timing: &Timing, delivery: &Delivery, inv: &Invocation) -> String {
    let mut fields = Map::new();
    let mut metrics: Vec<Value> = Vec::new();
    let mut put = |fields: &mut Map<String, Value>, name: &str, unit: &str, value: Value| {
        if metrics.len() < MAX_METRICS {
            metrics.push(json!({ "Name": name, "Unit": unit }));
        }
        fields.insert(name.to_string(), value);
    };
    put(&mut fields, "Records", "Count", json!(delivery.records));
    put(&mut fields, "Delivered", "Count", json!(delivery.delivered));
    put(&mut fields, "Retried", "Count", json!(delivery.records - delivery.delivered));
    put(&mut fields, "DeadLettered", "Count", json!(dead_lettered(timing).saturating_sub(marks.dead_lettered)));
    put(&mut fields, "EventToAcknowledgedMs", "Milliseconds", json!(round(inv.elapsed_ms)));
    for (name, node, pick, before) in &marks.series {
        let s: Summary = pick(node).summary_since(before);
        if s.count > 0 {
            put(&mut fields, name, "Milliseconds", json!(round(s.mean)));
        }
    }
    fields.insert(
        "_aws".into(),
        json!({
            "Timestamp": crate::record::now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": inv.namespace,
                "Dimensions": [["Pipeline"]],
                "Metrics": metrics,
            }],
        }),
    );
    fields.insert("Pipeline".into(), json!(inv.pipeline));
    fields.insert("RequestId".into(), json!(inv.request_id));
    fields.insert("ColdStart".into(), json!(inv.cold));
    fields.insert("TimedOut".into(), json!(delivery.timed_out));
    if let Some(seq) = &delivery.retry_from {
        fields.insert("RetryFrom".into(), json!(seq));
    }
    Value::Object(fields).to_string()
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_line_holds_only_this_invocations_hops_in_emf() {
        let timing = Timing::new(
            true,
            [
                ("ctrs".to_string(), Section::Source, vec![]),
                ("db".to_string(), Section::Sink, vec!["ctrs".to_string()]),
            ],
        );
        let db = timing.node("db");
        let ctrs = timing.node("ctrs");
        ctrs.event_to_arrival.record_us(60_000_000, 10);
        // An earlier invocation's slow delivery must not show in this one's figures.
        db.process.record(Duration::from_millis(900), 10);
        let marks = mark(&timing);
        db.process.record(Duration::from_millis(20), 4);
        ctrs.event_to_arrival.record_us(5_250_000, 5);
        db.counters.dead_lettered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delivery = Delivery { records: 5, delivered: 4, retry_from: Some("49".into()), timed_out: true };
        let inv = Invocation { request_id: "r", namespace: "ns", pipeline: "p", elapsed_ms: 12.5, cold: false };
        let v: Value = serde_json::from_str(&line(&marks, &timing, &delivery, &inv)).unwrap();
        let deliver = v["db.deliver_ms"].as_f64().unwrap();
        assert!((deliver - 20.0).abs() < 0.1, "{v}");
        assert_eq!(
            (v["Records"].as_u64(), v["Retried"].as_u64(), v["DeadLettered"].as_u64()),
            (Some(5), Some(1), Some(1))
        );
        assert_eq!(v["RetryFrom"], "49");
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ns");
        assert_eq!(directive["Dimensions"], json!([["Pipeline"]]));
        // Every metric named in the directive is a top-level member, as EMF requires.
        for m in directive["Metrics"].as_array().unwrap() {
            assert!(v.get(m["Name"].as_str().unwrap()).is_some(), "{m}");
        }
        assert!(v.get("db.event_to_ack_ms").is_none(), "no observation, no metric");
        // The source's event → arrival (ApproximateArrivalTimestamp): this invocation's only.
        let e2a = v["ctrs.event_to_arrival_ms"].as_f64().unwrap_or_else(|| panic!("{v}"));
        assert!((e2a - 5250.0).abs() < 5.0, "{v}");
    }
}
