//! The HTML report (`run --report <file>.html`): one self-contained page — no scripts,
//! fonts or styles fetched — with the pipeline graph and, for each sink's path, a
//! waterfall of where the time goes (each hop's median as a bar, its p99 as a whisker),
//! then the tables.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Report, Summary};
use crate::graph::{Graph, Section};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the page.
pub fn render(report: &Report, graph: &Graph) -> String {
    let mut h = String::new();
    h.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ctrflow timing report</title><style>\
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2330;max-width:1100px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.muted{color:#667}\
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #e3e6ec;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f4f6fa}\
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
svg text{font:12px system-ui,sans-serif}</style></head><body>",
    );
    let _ = write!(
        h,
        "<h1>Where the time goes</h1><p class=\"muted\">{} node(s), {} sink path(s), {:.1} s of running. Times in milliseconds; bars are medians, whiskers p99.</p>",
        report.nodes.len(),
        report.sinks.len(),
        report.elapsed_s
    );
    h.push_str("<h2>Pipeline</h2>");
    h.push_str(&graph_svg(graph));
    for sink in &report.sinks {
        let _ = write!(h, "<h2>Path to <code>{}</code></h2>", esc(&sink.id));
        if sink.read_to_ack_ms.count == 0 {
            h.push_str("<p class=\"muted\">No records reached this sink.</p>");
            continue;
        }
        // The time before the stream is often seconds while the hops are milliseconds:
        // state it, and draw the waterfall of ctrflow's own hops at their own scale.
        if let Some(up) = sink
            .path
            .first()
            .and_then(|s| report.nodes.iter().find(|n| &n.id == s))
            .and_then(|n| n.event_to_arrival_ms.as_ref())
            .filter(|u| u.count > 0)
        {
            let _ = write!(
                h,
                "<p><span class=\"legend\"><span style=\"background:#f58518;margin-left:0\"></span></span>Before the stream (event → arrival): p50 {:.1} ms, p99 {:.1} ms. Then, in ctrflow:</p>",
                up.p50, up.p99
            );
        }
        h.push_str(&waterfall(report, &sink.path, &sink.id));
        let _ = write!(
            h,
            "<table><tr><th>end to end</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{}{}{}</table>",
            row("event → acknowledged (event to actionable)", &sink.event_to_ack_ms),
            row("arrival → acknowledged", &sink.arrival_to_ack_ms),
            row("read → acknowledged", &sink.read_to_ack_ms)
        );
    }
    h.push_str(
        "<h2>Every hop</h2><table><tr><th>hop</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>",
    );
    for n in &report.nodes {
        for (label, s) in hops(n) {
            h.push_str(&row(&format!("{} {label}", n.id), s));
        }
    }
    h.push_str("</table><h2>Records</h2><table><tr><th>node</th><th>in</th><th>out</th><th>dropped</th><th>dead-lettered</th></tr>");
    for n in &report.nodes {
        let _ = write!(
            h,
            "<tr><td>{} <span class=\"muted\">({})</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.id),
            n.kind,
            n.records_in,
            n.records_out,
            n.dropped,
            n.dead_lettered
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

fn hops(n: &super::NodeReport) -> Vec<(&'static str, &Summary)> {
    let mut v = Vec::new();
    if let Some(s) = &n.event_to_arrival_ms
        && s.count > 0
    {
        v.push(("event → arrival", s));
    }
    if let Some(s) = &n.queue_wait_ms {
        v.push(("queue wait", s));
    }
    if let Some(s) = &n.process_ms {
        v.push((if n.kind == "source" { "read" } else { "process" }, s));
    }
    if let Some(s) = &n.deliver_ms {
        v.push(("deliver", s));
    }
    v
}

fn row(label: &str, s: &Summary) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
        esc(label),
        s.count,
        s.p50,
        s.p90,
        s.p99,
        s.max
    )
}

const COLORS: [&str; 4] = ["#c7d2e8", "#4c78a8", "#f58518", "#54a24b"];

/// A horizontal waterfall: each hop on the path starts where the previous one's median
/// ended.
fn waterfall(report: &Report, path: &[String], sink: &str) -> String {
    let mut steps: Vec<(String, usize, Summary)> = Vec::new();
    for id in path {
        let Some(n) = report.nodes.iter().find(|n| &n.id == id) else { continue };
        for (label, s) in hops(n).into_iter().filter(|(label, _)| *label != "event → arrival") {
            let color = match label {
                "queue wait" => 0,
                "deliver" => 3,
                "event → arrival" => 2,
                _ => 1,
            };
            steps.push((format!("{id} {label}"), color, *s));
        }
    }
    let total: f64 = steps.iter().map(|(_, _, s)| s.p50).sum();
    let widest = steps.iter().scan(0.0, |acc, (_, _, s)| {
        let start = *acc;
        *acc += s.p50;
        Some(start + s.p99.max(s.p50))
    });
    let scale_max = widest.fold(total, f64::max).max(1e-6);
    let (label_w, bar_w, row_h) = (260.0, 640.0, 22.0);
    let height = row_h * (steps.len() as f64 + 1.0) + 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"waterfall for {}\">",
        label_w + bar_w + 90.0,
        esc(sink)
    );
    let mut start = 0.0;
    for (i, (label, color, m)) in steps.iter().enumerate() {
        let y = 6.0 + row_h * i as f64;
        let x = label_w + bar_w * start / scale_max;
        let w = (bar_w * m.p50 / scale_max).max(1.0);
        let p99x = label_w + bar_w * (start + m.p99) / scale_max;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"14\" fill=\"{}\"><title>{}: p50 {:.3} ms, p99 {:.3} ms</title></rect>\
<line x1=\"{x:.1}\" x2=\"{p99x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#333\" stroke-width=\"1\"/><text x=\"{:.1}\" y=\"{}\" class=\"muted\">{:.2}</text>",
            y + 12.0,
            esc(label),
            COLORS[*color],
            esc(label),
            m.p50,
            m.p99,
            y + 7.0,
            y + 7.0,
            p99x.max(x + w) + 6.0,
            y + 12.0,
            m.p50
        );
        start += m.p50;
    }
    let y = 6.0 + row_h * steps.len() as f64;
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\" font-weight=\"bold\">sum of medians</text><text x=\"{label_w}\" y=\"{}\" font-weight=\"bold\">{total:.2} ms</text></svg>",
        y + 12.0,
        y + 12.0
    );
    s.push_str("<div class=\"legend muted\"><span style=\"background:#c7d2e8\"></span>queue wait<span style=\"background:#4c78a8\"></span>processing<span style=\"background:#54a24b\"></span>delivery (hand-over → ack)</div>");
    s
}

/// The graph as columns by depth, edges as lines.
fn graph_svg(graph: &Graph) -> String {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &graph.nodes {
        let d = match n.section {
            Section::Source => 0,
            _ => n.inputs.iter().filter_map(|i| depth.get(i.node.as_str())).max().map_or(1, |d| d + 1),
        };
        depth.insert(&n.id, d);
    }
    let mut columns: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for n in &graph.nodes {
        columns.entry(depth[n.id.as_str()]).or_default().push(&n.id);
    }
    let (box_w, box_h, gap_x, gap_y) = (170.0, 44.0, 60.0, 18.0);
    let rows = columns.values().map(Vec::len).max().unwrap_or(1) as f64;
    let width = columns.len() as f64 * (box_w + gap_x);
    let height = rows * (box_h + gap_y) + gap_y;
    let mut pos: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (c, ids) in &columns {
        for (r, id) in ids.iter().enumerate() {
            pos.insert(id, (10.0 + *c as f64 * (box_w + gap_x), gap_y + r as f64 * (box_h + gap_y)));
        }
    }
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"pipeline graph\">"
    );
    for n in &graph.nodes {
        let (x2, y2) = pos[n.id.as_str()];
        for i in &n.inputs {
            if let Some((x1, y1)) = pos.get(i.node.as_str()) {
                let _ = write!(
                    s,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{x2}\" y2=\"{}\" stroke=\"#99a\" stroke-width=\"1.5\"/>",
                    x1 + box_w,
                    y1 + box_h / 2.0,
                    y2 + box_h / 2.0
                );
                if let Some(o) = &i.output {
                    let _ = write!(
                        s,
                        "<text x=\"{}\" y=\"{}\" fill=\"#667\">{}</text>",
                        x2 - gap_x + 4.0,
                        y2 + box_h / 2.0 - 4.0,
                        esc(o)
                    );
                }
            }
        }
    }
    for n in &graph.nodes {
        let (x, y) = pos[n.id.as_str()];
        let fill = match n.section {
            Section::Source => "#e8f0fb",
            Section::Transform => "#fdf3e3",
            Section::Sink => "#e6f4ea",
        };
        let label = graph.label(n);
        let (name, kind) = label.split_once(' ').unwrap_or((&label, ""));
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{box_w}\" height=\"{box_h}\" rx=\"6\" fill=\"{fill}\" stroke=\"#8893a8\"/>\
<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text><text x=\"{}\" y=\"{}\" fill=\"#556\">{}</text>",
            x + 8.0,
            y + 18.0,
            esc(name),
            x + 8.0,
            y + 35.0,
            esc(kind)
        );
    }
    s.push_str("</svg>");
    s
}
