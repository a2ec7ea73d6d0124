//! Running a built pipeline: open every connector (so a bad destination fails before any
//! record moves), wire one bounded channel into each transform and sink, start one thread
//! per node, and wait for the drain.
//!
//! Threads, not async tasks: plugin calls are synchronous CPU work, so each transform runs
//! on its own OS thread(s) with blocking channel operations, and each sink on its own thread
//! with a single-threaded tokio runtime for the AWS SDK's async I/O. A full channel blocks
//! its sender, so backpressure reaches the sources (see [`crate::flow`]).
//!
//! A chain of transforms (`redact → enrich`: each read only by transforms that read only it;
//! a fan-out too, `enrich → {route, flatten}`) is fused by default
//! (`runtime.fuse_transforms`): the head's workers carry every batch through the whole
//! chain, so the chain has one input queue and no hand-over between threads. Fewer records
//! in flight, and on the throughput graph a third fewer context switches and about 5% more
//! speed (docs/architecture.md).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::contract::{Health, NodeHandle, SinkOptions, SourceContext, SourceSettings};
use crate::dead_letter::{self, DeadLetterTarget, DeadLetters};
use crate::flow::{Batch, Output, Shutdown};
use crate::graph::Section;
use crate::monitor::{Monitor, RunOptions};
use crate::pipeline::{Pipeline, env};
use crate::sink::SinkNode;
use crate::transform::TransformNode;

/// What a finished run leaves behind.
pub struct RunOutcome {
    /// The timing report.
    pub report: crate::timing::Report,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Where the dead letters went (a file), if any were written.
    pub dead_letter_path: Option<PathBuf>,
}

type NodeThread = (String, std::thread::JoinHandle<anyhow::Result<()>>);

fn spawn(
    section: Section,
    id: &str,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<NodeThread> {
    let key = format!("{}.{id}", section.key());
    // Every log line from the node's thread carries its key (`node=transforms.redact`).
    let span = tracing::info_span!("node", node = %key);
    let handle = std::thread::Builder::new().name(thread_name(section, id)).spawn(move || span.in_scope(f))?;
    Ok((key, handle))
}

/// A node's thread name: a short kind and the node's id (`src:contacts`, `tf:redact`,
/// `sink:voice`). Linux keeps the first 15 bytes of a name for `top -H`, `ps -T` and
/// profilers, so the id must come early: `ctrflow-transforms.redact` showed as
/// `ctrflow-transfo` for every transform alike.
fn thread_name(section: Section, id: &str) -> String {
    let kind = match section {
        Section::Source => "src",
        Section::Transform => "tf",
        Section::Sink => "sink",
    };
    format!("{kind}:{id}")
}

/// The transforms to fuse: `a → [b, …]` when every reader of `a` is a transform that reads
/// only `a`'s output, and `a` has no named outputs, all with the same number of workers, more
/// than one. The workers of `a` then carry each batch on into its readers (each of them a
/// share of the batch, as a fan-out sends), with no channel and no thread hand-over between
/// them: a linear chain (`redact → enrich`) and a fan-out (`enrich → route, flatten`) alike.
/// (With one worker each, two separate nodes work on two batches at once and a fused pair on
/// one: that pair is left apart.) A reader listed here may carry its own readers in turn.
///
/// `shapes` gives each transform's workers and whether its plugin has named outputs.
fn fused(graph: &crate::graph::Graph, shapes: &HashMap<String, Shape>) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for (id, shape) in shapes {
        if shape.named_outputs || shape.workers < 2 {
            continue;
        }
        let readers: Vec<_> = graph.readers(id).collect();
        let fits = |(reader, input): &(&crate::graph::Node, &crate::graph::InputRef)| {
            reader.section == Section::Transform
                && input.output.is_none()
                && reader.inputs.len() == 1
                && shapes.get(&reader.id).is_some_and(|next| next.workers == shape.workers)
        };
        if !readers.is_empty() && readers.iter().all(fits) {
            out.insert(id.clone(), readers.iter().map(|(reader, _)| reader.id.clone()).collect());
        }
    }
    out
}

/// How a fused node and those it carries read in the log: `redact → enrich → {route, flatten}`.
fn describe(id: &str, fused_into: &HashMap<String, Vec<String>>) -> String {
    match fused_into.get(id).map(Vec::as_slice) {
        None | Some([]) => id.to_owned(),
        Some([next]) => format!("{id} → {}", describe(next, fused_into)),
        Some(next) => {
            let branches: Vec<String> = next.iter().map(|n| describe(n, fused_into)).collect();
            format!("{id} → {{{}}}", branches.join(", "))
        }
    }
}

/// The transform `id`, built, with the transforms it carries (see [`fused`]) inside it.
fn carrying(
    id: &str,
    nodes: &mut HashMap<String, (TransformNode, usize)>,
    fused_into: &HashMap<String, Vec<String>>,
) -> (TransformNode, usize) {
    let (mut node, workers) = nodes.remove(id).expect("every transform is built once");
    for next in fused_into.get(id).into_iter().flatten() {
        node.then.push(carrying(next, nodes, fused_into).0);
    }
    (node, workers)
}

/// What [`fused`] needs to know of a transform.
#[derive(Debug, Clone, Copy)]
struct Shape {
    workers: usize,
    named_outputs: bool,
}

/// Runs until every source ends (or a stop), then drains. `shutdown` may be requested from
/// outside (signals).
pub fn run(pipeline: Pipeline, shutdown: Shutdown, opts: RunOptions) -> anyhow::Result<RunOutcome> {
    let expected = pipeline.expected_records();
    let Pipeline { graph, sources, tables, mut transforms, mut sinks, settings, timing } = pipeline;
    let cfg = &graph.config;
    let capacity = cfg.runtime.channel_capacity.max(1);

    // Open the connectors before any record moves, so a bad destination fails fast.
    let mut writers = HashMap::new();
    for (id, s) in &sinks {
        let health = Health::new(Arc::from(format!("sinks.{id}")), timing.node(id));
        let state_dir = cfg.resolve(&cfg.runtime.state_dir);
        let options = SinkOptions { max_bytes: s.max_bytes, shutdown: shutdown.clone(), health, state_dir };
        let writer = s.connector.open(&env(cfg, id), options).with_context(|| format!("sinks.{id}"))?;
        writers.insert(id.clone(), writer);
    }
    let mut opened = HashMap::new();
    for (id, s) in &sources {
        opened.insert(id.clone(), s.open(&env(cfg, id)).with_context(|| format!("sources.{id}"))?);
    }
    for (id, t) in &tables {
        t.check(&env(cfg, id)).with_context(|| format!("tables.{id}"))?;
    }

    // Channels: one input per transform and sink.
    let mut senders: HashMap<String, mpsc::Sender<Batch>> = HashMap::new();
    let mut receivers: HashMap<String, mpsc::Receiver<Batch>> = HashMap::new();
    for n in graph.nodes.iter().filter(|n| n.section != Section::Source) {
        let (tx, rx) = mpsc::channel(capacity);
        senders.insert(n.id.clone(), tx);
        receivers.insert(n.id.clone(), rx);
    }
    // Transforms fused into the one after them (see `fused`): their default output sends
    // nowhere, since its one reader runs on their workers.
    let shapes = transforms
        .iter()
        .map(|(id, t)| (id.clone(), Shape { workers: t.workers, named_outputs: !t.plugin.outputs().is_empty() }))
        .collect();
    let fused_into = if cfg.runtime.fuse_transforms { fused(&graph, &shapes) } else { HashMap::new() };
    let taps = crate::tap::Taps::default();
    let output_of = |id: &str, output: Option<&str>| {
        let senders = if output.is_none() && fused_into.contains_key(id) {
            Vec::new()
        } else {
            graph
                .readers(id)
                .filter(|(_, input)| input.output.as_deref() == output)
                .filter_map(|(reader, _)| senders.get(&reader.id).cloned())
                .collect()
        };
        let out = Output::new(senders).tapped(taps.point(id, output));
        if cfg.timing.enabled { out } else { out.untimed() }
    };

    // Dead letters: to a file, or to a sink (whose own refusals go to the file).
    let dl_path = cfg.resolve(&cfg.dead_letter.path);
    let (dead, dead_rx) = DeadLetters::channel(capacity * 64);
    let (fallback, fallback_rx) = DeadLetters::channel(capacity * 64);
    let dl_sink = cfg.dead_letter.sink.clone();
    let dl_target = match &dl_sink {
        Some(sink) => DeadLetterTarget::Sink(Output::new(senders.get(sink).cloned().into_iter().collect())),
        None => DeadLetterTarget::File(dl_path.clone()),
    };
    let handle = |section: &str, id: &str, dead: &DeadLetters, on_error| NodeHandle {
        key: Arc::from(format!("{section}.{id}")),
        dead: dead.clone(),
        timing: timing.node(id),
        timing_enabled: cfg.timing.enabled,
        shutdown: shutdown.clone(),
        on_error,
    };

    let mut threads: Vec<NodeThread> = Vec::new();
    for n in graph.nodes.iter().filter(|n| n.section == Section::Sink) {
        let prepared = sinks.remove(&n.id).expect("every sink was prepared");
        let is_dl_sink = dl_sink.as_deref() == Some(n.id.as_str());
        let node = SinkNode {
            node: handle("sinks", &n.id, if is_dl_sink { &fallback } else { &dead }, prepared.on_error),
            id: n.id.clone(),
            rx: receivers.remove(&n.id).expect("every sink has an input"),
            writer: writers.remove(&n.id).expect("every sink was opened"),
            plugin: prepared.plugin,
            max_records: prepared.max_records,
            linger: prepared.linger,
            annotate: cfg.timing.annotate && !is_dl_sink,
        };
        threads.push(spawn(Section::Sink, &n.id, move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(node.run())
        })?);
    }

    // Transforms: each fused chain runs as one node whose workers carry a batch through all
    // of it; every other transform runs alone.
    let mut nodes: HashMap<String, (TransformNode, usize)> = HashMap::new();
    for n in graph.nodes.iter().filter(|n| n.section == Section::Transform) {
        let t = transforms.remove(&n.id).expect("every transform was prepared");
        let node = TransformNode {
            node: handle("transforms", &n.id, &dead, t.on_error),
            default: output_of(&n.id, None),
            named: t.plugin.outputs().iter().map(|o| output_of(&n.id, Some(o))).collect(),
            plugin: t.plugin,
            then: Vec::new(),
        };
        nodes.insert(n.id.clone(), (node, t.workers));
    }
    for n in graph.nodes.iter().filter(|n| n.section == Section::Transform) {
        if fused_into.values().flatten().any(|next| *next == n.id) {
            // Runs inside the node that feeds it; its channel is never read.
            receivers.remove(&n.id);
            continue;
        }
        // Each node takes the ones it carries; all have the head's workers (see `fused`).
        let (node, workers) = carrying(&n.id, &mut nodes, &fused_into);
        if fused_into.contains_key(&n.id) {
            tracing::debug!(chain = %describe(&n.id, &fused_into), workers, "Transforms fused: one set of workers carries each batch through the chain.");
        }
        let rx = receivers.remove(&n.id).expect("every transform has an input");
        threads.push(spawn(Section::Transform, &n.id, move || node.run(rx, workers))?);
    }

    let source_settings = SourceSettings {
        batch_size: cfg.runtime.batch_size,
        batch_bytes: settings.batch_bytes,
        max_record_size: settings.max_record_size,
        event_field: settings.event_field.clone(),
        state_dir: cfg.resolve(&cfg.runtime.state_dir),
    };
    for (id, source) in opened {
        // A source's unreadable input always goes to the dead letters: there is no
        // `on_error` on a source.
        let node = handle("sources", &id, &dead, crate::config::OnError::DeadLetter);
        let ctx = SourceContext::new(&id, node, output_of(&id, None), source_settings.clone());
        threads.push(spawn(Section::Source, &id, move || source.run(ctx))?);
    }
    let _admin = crate::admin::Admin::start(
        cfg.runtime.admin_addr.as_deref().filter(|a| !a.is_empty()),
        &timing,
        &taps,
        &senders,
        &shutdown,
    )?;
    // Only the nodes hold senders now: channels close as their writers finish.
    drop(senders);
    drop(dead);

    let dl_handle = std::thread::Builder::new()
        .name("dead-letters".into())
        .spawn(move || dead_letter::run_writer(dead_rx, dl_target))?;
    let fb_path = dl_path.clone();
    let fb_handle = std::thread::Builder::new()
        .name("dead-letters-fb".into())
        .spawn(move || dead_letter::run_writer(fallback_rx, DeadLetterTarget::File(fb_path)))?;
    drop(fallback);

    if let Some(addr) = &cfg.runtime.metrics_addr {
        let bound = crate::timing::prometheus::serve(addr, timing.clone())
            .map_err(|e| anyhow::anyhow!("runtime.metrics_addr: cannot listen on {addr}: {e}"))?;
        tracing::info!(addr = %bound, "Serving Prometheus metrics.");
    }
    let monitor = Monitor::start(timing.clone(), &graph, expected, opts);

    let mut errors: Vec<String> = Vec::new();
    for (key, handle) in threads {
        let failure = match handle.join() {
            Ok(Ok(())) => continue,
            // The runtime names the node, once; nodes' and connectors' messages do not.
            Ok(Err(e)) => format!("{key}: {e:#}"),
            Err(_) => format!("{key} panicked"),
        };
        shutdown.halt(failure.clone());
        errors.push(failure);
    }
    let mut dead_letters = 0;
    for h in [dl_handle, fb_handle] {
        match h.join() {
            Ok(Ok(n)) => dead_letters += n,
            Ok(Err(e)) => errors.push(format!("dead letters: {e:#}")),
            Err(_) => errors.push("dead-letter writer panicked".into()),
        }
    }
    monitor.stop();

    // Every root cause, not their echoes ("the pipeline stopped reading").
    // The reason a node halted the run comes first: what it left unwritten follows from it.
    let mut causes: Vec<String> = shutdown.halted().into_iter().collect();
    for e in errors.into_iter().filter(|e| !e.contains("stopped reading")) {
        if !causes.contains(&e) {
            causes.push(e);
        }
    }
    if !causes.is_empty() {
        anyhow::bail!("{}", causes.join("\n"));
    }
    let dead_letter_path = (dead_letters > 0 && dl_sink.is_none()).then_some(dl_path);
    Ok(RunOutcome { report: timing.report(), dead_letters, dead_letter_path })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::PipelineConfig;
    use crate::graph::Graph;

    #[test]
    fn thread_names_put_the_id_in_the_fifteen_bytes_linux_shows() {
        assert_eq!(thread_name(Section::Source, "contacts"), "src:contacts");
        assert_eq!(thread_name(Section::Transform, "redact"), "tf:redact");
        assert_eq!(thread_name(Section::Sink, "voice"), "sink:voice");
    }

    /// What `fused` makes of `graph`'s transforms, with these workers each (named outputs for
    /// `route` only), as sorted `a → b` pairs.
    fn fused_pairs(toml: &str, workers: &[(&str, usize)]) -> Vec<String> {
        let cfg = PipelineConfig::parse(toml, Path::new("."), &|_| None).expect("config");
        let graph = Graph::from_config(cfg).expect("graph");
        let shapes = workers
            .iter()
            .map(|&(id, workers)| (id.to_string(), Shape { workers, named_outputs: id == "route" }))
            .collect();
        let mut pairs: Vec<String> = fused(&graph, &shapes)
            .into_iter()
            .flat_map(|(a, readers)| readers.into_iter().map(move |b| format!("{a} → {b}")))
            .collect();
        pairs.sort();
        pairs
    }

    const SOURCE: &str = "[sources.in]\ntype = \"generator\"\n";

    fn transform(id: &str, inputs: &str) -> String {
        format!("[transforms.{id}]\nplugin = \"redact-pii\"\ninputs = [{inputs}]\n")
    }

    fn sink(id: &str, inputs: &str) -> String {
        format!("[sinks.{id}]\ntype = \"stdout\"\ninputs = [{inputs}]\n")
    }

    #[test]
    fn a_linear_chain_with_equal_workers_fuses_link_by_link() {
        let toml = [
            SOURCE.into(),
            transform("a", "\"in\""),
            transform("b", "\"a\""),
            transform("c", "\"b\""),
            sink("out", "\"c\""),
        ]
        .concat();
        assert_eq!(fused_pairs(&toml, &[("a", 2), ("b", 2), ("c", 2)]), ["a → b", "b → c"]);
        // Unequal workers break the chain there; one worker each leaves it apart.
        assert_eq!(fused_pairs(&toml, &[("a", 2), ("b", 3), ("c", 3)]), ["b → c"]);
        assert!(fused_pairs(&toml, &[("a", 1), ("b", 1), ("c", 1)]).is_empty());
    }

    #[test]
    fn a_fan_out_fuses_when_every_reader_reads_it_alone_and_fan_in_and_named_outputs_do_not() {
        // `a` has two readers, each reading only `a`; `c` reads two nodes; `route`'s outputs
        // are named; `d` feeds a sink.
        let toml = [
            SOURCE.into(),
            transform("a", "\"in\""),
            transform("b", "\"a\""),
            transform("x", "\"a\""),
            transform("c", "\"b\", \"x\""),
            transform("route", "\"c\""),
            transform("d", "\"route.VOICE\""),
            sink("out", "\"d\", \"route.other\""),
        ]
        .concat();
        let all: Vec<(&str, usize)> = ["a", "b", "x", "c", "route", "d"].iter().map(|id| (*id, 2)).collect();
        // `a` carries both its readers; `c` (fan-in) is carried by neither; a chain may end in
        // a node with named outputs (`c → route`), not go on past one.
        assert_eq!(fused_pairs(&toml, &all), ["a → b", "a → x", "c → route"]);
        // A reader with other workers keeps the whole fan-out apart: all or none.
        let mut uneven = all.clone();
        uneven[2] = ("x", 3);
        assert_eq!(fused_pairs(&toml, &uneven), ["c → route"]);
    }

    #[test]
    fn a_fan_out_that_feeds_a_sink_too_is_left_apart() {
        let toml =
            [SOURCE.into(), transform("a", "\"in\""), transform("b", "\"a\""), sink("out", "\"a\", \"b\"")].concat();
        assert!(fused_pairs(&toml, &[("a", 2), ("b", 2)]).is_empty());
    }

    #[test]
    fn a_fused_tree_reads_as_its_shape_in_the_log() {
        let fused_into: HashMap<String, Vec<String>> =
            [("redact", vec!["enrich"]), ("enrich", vec!["route", "flatten"])]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.into_iter().map(String::from).collect()))
                .collect();
        assert_eq!(describe("redact", &fused_into), "redact → enrich → {route, flatten}");
        assert_eq!(describe("route", &fused_into), "route");
    }
}
