//! The Prometheus text-format endpoint (`[runtime] metrics_addr`): hop histograms labelled
//! by node and hop, end-to-end histograms per sink, and record counters per node.
//!
//! Every label value is escaped ([`label`]): node ids come from the pipeline and counter
//! names from plugins, which must not be able to forge series or break the exposition.
//!
//! A deliberately small HTTP/1.1 responder on its own thread — every request gets the
//! current metrics — rather than a web framework: one endpoint does not justify one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Series, Timing};
use crate::graph::Section;

/// Bucket upper bounds, in seconds: half a millisecond to five minutes, since "event to
/// actionable" spans both.
const BUCKETS_S: [f64; 18] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// A label value escaped as the text format requires: backslash, double quote and newline.
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn histogram(out: &mut String, name: &str, labels: &str, series: &Series) {
    let bounds_us: Vec<u64> = BUCKETS_S.iter().map(|s| (s * 1e6) as u64).collect();
    let (counts, total, sum_us) = series.buckets(&bounds_us);
    for (b, c) in BUCKETS_S.iter().zip(counts) {
        out.push_str(&format!("{name}_bucket{{{labels},le=\"{b}\"}} {c}\n"));
    }
    out.push_str(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} {total}\n"));
    out.push_str(&format!("{name}_sum{{{labels}}} {}\n", sum_us / 1e6));
    out.push_str(&format!("{name}_count{{{labels}}} {total}\n"));
}

/// The metrics, in Prometheus text format 0.0.4.
pub fn render(timing: &Timing) -> String {
    let mut s = String::new();
    s.push_str("# HELP ctrflow_hop_seconds Time records spent in each hop: queue_wait before a node, process in a node, deliver in a sink (hand-over to acknowledgement).\n");
    s.push_str("# TYPE ctrflow_hop_seconds histogram\n");
    for n in timing.nodes() {
        if n.section != Section::Source {
            histogram(&mut s, "ctrflow_hop_seconds", &format!("node=\"{}\",hop=\"queue_wait\"", label(&n.id)), &n.wait);
        }
        let hop = match n.section {
            Section::Source => "read",
            Section::Transform => "process",
            Section::Sink => "deliver",
        };
        histogram(&mut s, "ctrflow_hop_seconds", &format!("node=\"{}\",hop=\"{hop}\"", label(&n.id)), &n.process);
    }
    s.push_str("# HELP ctrflow_end_to_end_seconds Per sink: event time, stream arrival, or read by the runtime, to acknowledgement.\n");
    s.push_str("# TYPE ctrflow_end_to_end_seconds histogram\n");
    for n in timing.nodes().filter(|n| n.section == Section::Sink) {
        for (span, series) in
            [("event_to_ack", &n.event_to_ack), ("arrival_to_ack", &n.arrival_to_ack), ("read_to_ack", &n.read_to_ack)]
        {
            histogram(
                &mut s,
                "ctrflow_end_to_end_seconds",
                &format!("sink=\"{}\",span=\"{span}\"", label(&n.id)),
                series,
            );
        }
    }
    s.push_str(
        "# HELP ctrflow_upstream_seconds Per source: event time to arrival in the stream (before ctrflow saw it).\n",
    );
    s.push_str("# TYPE ctrflow_upstream_seconds histogram\n");
    for n in timing.nodes().filter(|n| n.section == Section::Source) {
        histogram(&mut s, "ctrflow_upstream_seconds", &format!("source=\"{}\"", label(&n.id)), &n.event_to_arrival);
    }
    for (metric, help) in [
        ("ctrflow_records_in_total", "Records received by the node (read, for a source)."),
        ("ctrflow_records_out_total", "Records sent on by the node (written and acknowledged, for a sink)."),
        ("ctrflow_records_dropped_total", "Records the node dropped deliberately."),
        ("ctrflow_records_dead_lettered_total", "Records the node sent to the dead letters."),
        ("ctrflow_node_retries_total", "Writes retried after an infrastructure fault (never a record's)."),
        ("ctrflow_node_degraded", "1 while the node's destination is failing and being retried."),
        ("ctrflow_records_unwritten_total", "Records a sink left unwritten because the run stopped while failing."),
    ] {
        let kind = if metric.ends_with("_total") { "counter" } else { "gauge" };
        s.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
        for n in timing.nodes() {
            let c = &n.counters;
            let v = match metric {
                "ctrflow_records_in_total" => &c.records_in,
                "ctrflow_records_out_total" => &c.records_out,
                "ctrflow_records_dropped_total" => &c.dropped,
                "ctrflow_node_retries_total" => &c.retries,
                "ctrflow_node_degraded" => &c.degraded,
                "ctrflow_records_unwritten_total" => &c.unwritten,
                _ => &c.dead_lettered,
            };
            s.push_str(&format!("{metric}{{node=\"{}\"}} {}\n", label(&n.id), v.load(Ordering::Relaxed)));
        }
    }
    s.push_str("# HELP ctrflow_plugin_counter_total Counters plugins keep (host.count), by node and name.\n");
    s.push_str("# TYPE ctrflow_plugin_counter_total counter\n");
    for n in timing.nodes() {
        for (name, v) in n.plugin_counters() {
            let (node, name) = (label(&n.id), label(&name));
            s.push_str(&format!("ctrflow_plugin_counter_total{{node=\"{node}\",name=\"{name}\"}} {v}\n"));
        }
    }
    super::ops_metrics::render(timing, &mut s);
    s
}

/// Serves the metrics on `addr` until the process exits. Returns the bound address.
pub fn serve(addr: &str, timing: Arc<Timing>) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("ctrflow-metrics".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = respond(stream, &timing);
        }
    })?;
    Ok(bound)
}

fn respond(mut stream: TcpStream, timing: &Timing) -> std::io::Result<()> {
    // Read the request head; its content does not matter: every path answers the metrics.
    read_head(&mut stream, Duration::from_secs(2))?;
    let body = render(timing);
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Reads an HTTP request's head (up to the blank line, at most 64 KiB) within `timeout`.
pub fn read_head(stream: &mut TcpStream, timeout: Duration) -> std::io::Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("plain.name"), "plain.name");
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        // A forged series: closing the label, then a new line with its own metric.
        let forged = "x\"} 1\nctrflow_records_out_total{node=\"victim\"} 999999\n#";
        let escaped = label(forged);
        assert!(!escaped.contains('\n'), "{escaped}");
        assert!(!escaped.replace("\\\"", "").contains('"'), "an unescaped quote: {escaped}");
    }
}
