//! Building a validated graph into running nodes, and running it.
//!
//! [`Pipeline::build`] does everything that can fail before a record moves — loads the
//! tables, compiles and initialises every plugin, checks every `node.output` against the
//! outputs its plugin declared, checks connector settings — and reports every problem at
//! once ([`GraphError`]). `ctrflow validate` stops there. [`Pipeline::run`] then opens the
//! connectors, starts one thread per node (see [`crate::topology`]) and waits for the drain.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctrflow_plugin_sdk::path::FieldPath;
use tokio::sync::mpsc;

use crate::config::{OnError, SinkKind, SourceKind, TableConfig};
use crate::connectors::{self, Writer};
use crate::dead_letter::{self, DeadLetter, DeadLetterTarget, DeadLetters};
use crate::graph::{Graph, GraphError, Section};
use crate::host::{Decision, Host, Limits, Lookup, NodeContext, SinkPlugin, TransformPlugin};
use crate::units::{parse_duration, parse_size};
use crate::record::Record;
use crate::sink::SinkNode;
use crate::source::SourceContext;
use crate::tables::MemoryTable;
use crate::timing::{Counters, NodeTiming, Report, Timing};
use crate::topology::{Batch, Output, Shutdown};

struct PreparedTransform {
    plugin: TransformPlugin,
    on_error: OnError,
}

struct PreparedSink {
    plugin: Option<SinkPlugin>,
    max_records: Option<usize>,
    linger: Duration,
}

/// A pipeline whose plugins are loaded and whose settings are checked.
pub struct Pipeline {
    graph: Graph,
    transforms: HashMap<String, PreparedTransform>,
    sinks: HashMap<String, PreparedSink>,
    timing: Arc<Timing>,
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar (an interactive terminal and a finite source).
    pub progress: bool,
    /// Print the timing table this often while running.
    pub report_interval: Option<Duration>,
}

/// What a finished run leaves behind.
pub struct RunOutcome {
    /// The timing report.
    pub report: Report,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Where the dead letters went (a file), if any were written.
    pub dead_letter_path: Option<PathBuf>,
}

impl Pipeline {
    /// Loads tables and plugins and checks settings; returns every problem found.
    pub fn build(graph: Graph, host: &Host) -> Result<Pipeline, Vec<GraphError>> {
        let cfg = &graph.config;
        let mut errors = Vec::new();

        let mut tables: HashMap<String, Arc<dyn Lookup>> = HashMap::new();
        for (id, t) in &cfg.tables {
            let loaded: Result<Arc<dyn Lookup>, String> = match t {
                TableConfig::Csv(c) => MemoryTable::csv(c, &cfg.base_dir).map(|t| Arc::new(t) as Arc<dyn Lookup>),
                TableConfig::Json(c) => MemoryTable::json(c, &cfg.base_dir).map(|t| Arc::new(t) as Arc<dyn Lookup>),
                TableConfig::Dynamodb(c) => {
                    connectors::aws::lookup::DynamoLookup::new(id, c, &cfg.aws).map(|t| Arc::new(t) as Arc<dyn Lookup>)
                }
            };
            match loaded {
                Ok(l) => {
                    tables.insert(id.clone(), l);
                }
                Err(detail) => errors.push(GraphError::Connector { node: format!("tables.{id}"), detail }),
            }
        }

        for (id, s) in &cfg.sources {
            let check = match &s.kind {
                SourceKind::Generator(g) => connectors::generator::validate(g),
                SourceKind::Kinesis(k) => connectors::aws::kinesis::validate(k),
                _ => Ok(()),
            };
            if let Err(detail) = check {
                errors.push(GraphError::Connector { node: format!("sources.{id}"), detail });
            }
        }

        let mut transforms = HashMap::new();
        for (id, t) in &cfg.transforms {
            let node = format!("transforms.{id}");
            let limits = match Limits::from_config(&t.limits) {
                Ok(l) => l,
                Err(detail) => {
                    errors.push(GraphError::Connector { node, detail });
                    continue;
                }
            };
            let mut ctx = NodeContext::new(id.clone(), t.plugin.clone());
            for table in &t.tables {
                if let Some(l) = tables.get(table) {
                    ctx.tables.insert(table.clone(), l.clone());
                }
            }
            let config = toml_to_json(t.config.as_ref());
            let prepared = host
                .load(&t.plugin, &cfg.base_dir)
                .and_then(|compiled| host.transform(&compiled, ctx, &config, limits));
            match prepared {
                Ok(plugin) => {
                    transforms.insert(id.clone(), PreparedTransform { plugin, on_error: t.on_error });
                }
                Err(e) => errors.push(GraphError::Plugin { node, detail: e.to_string() }),
            }
        }

        for n in &graph.nodes {
            for input in &n.inputs {
                let (Some(output), Some(t)) = (&input.output, transforms.get(&input.node)) else { continue };
                if !t.plugin.outputs().contains(output) {
                    errors.push(GraphError::UnknownOutput {
                        node: n.key(),
                        input: input.to_string(),
                        upstream: format!("transforms.{}", input.node),
                        output: output.clone(),
                        available: t.plugin.outputs().to_vec(),
                    });
                }
            }
        }

        let mut sinks = HashMap::new();
        for (id, s) in &cfg.sinks {
            let node = format!("sinks.{id}");
            let c = &s.common;
            let mut problems = Vec::new();
            let linger = c.linger.as_deref().map(parse_duration).transpose().unwrap_or_else(|e| {
                problems.push(format!("linger: {e}"));
                None
            });
            if let Some(b) = &c.max_bytes
                && let Err(e) = parse_size(b)
            {
                problems.push(format!("max_bytes: {e}"));
            }
            if c.max_records == Some(0) {
                problems.push("max_records: must be at least 1".into());
            }
            match &s.kind {
                SinkKind::File(f) => {
                    if let Err(e) = connectors::file::FileWriter::new(f, &cfg.base_dir) {
                        problems.push(e);
                    }
                }
                SinkKind::Dynamodb(d) => problems.extend(connectors::aws::dynamodb::validate(d).err()),
                SinkKind::Kinesis(k) => problems.extend(connectors::aws::kinesis_sink::validate(k).err()),
                _ => {}
            }
            let plugin = match &c.plugin {
                None => None,
                Some(p) => {
                    let limits = Limits::from_config(&c.limits);
                    let config = toml_to_json(c.config.as_ref());
                    let built = limits.map_err(|e| e.to_string()).and_then(|limits| {
                        host.load(p, &cfg.base_dir)
                            .and_then(|compiled| {
                                host.sink(&compiled, NodeContext::new(id.clone(), p.clone()), &config, limits)
                            })
                            .map_err(|e| e.to_string())
                    });
                    match built {
                        Ok(plugin) => Some(plugin),
                        Err(detail) => {
                            errors.push(GraphError::Plugin { node: node.clone(), detail });
                            None
                        }
                    }
                }
            };
            if c.plugin.is_none() && c.config.is_some() {
                problems.push("config: a sink's `config` is handed to its `plugin`, and this sink has none".into());
            }
            errors.extend(problems.into_iter().map(|detail| GraphError::Connector { node: node.clone(), detail }));
            sinks.insert(
                id.clone(),
                PreparedSink {
                    plugin,
                    max_records: c.max_records,
                    linger: linger.unwrap_or(Duration::from_millis(100)),
                },
            );
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let timing = Timing::new(
            cfg.timing.enabled,
            graph.nodes.iter().map(|n| (n.id.clone(), n.section, n.inputs.iter().map(|i| i.node.clone()).collect())),
        );
        for (id, t) in &transforms {
            let _ = timing.node(id).plugin.set(t.plugin.context().clone());
        }
        for (id, s) in &sinks {
            if let Some(p) = &s.plugin {
                let _ = timing.node(id).plugin.set(p.context().clone());
            }
        }
        Ok(Pipeline { graph, transforms, sinks, timing: Arc::new(timing) })
    }

    /// The validated graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The live timing (for the metrics endpoint and progress).
    pub fn timing(&self) -> Arc<Timing> {
        self.timing.clone()
    }

    /// Runs until every source ends (or a stop), then drains. `shutdown` may be requested
    /// from outside (signals).
    pub fn run(self, shutdown: Shutdown, opts: RunOptions) -> anyhow::Result<RunOutcome> {
        let Pipeline { graph, mut transforms, mut sinks, timing } = self;
        let cfg = &graph.config;
        let capacity = cfg.runtime.channel_capacity.max(1);
        let max_record_size =
            parse_size(&cfg.runtime.max_record_size).map_err(|e| anyhow::anyhow!("runtime.max_record_size: {e}"))?;
        let event_field = FieldPath::parse(&cfg.timing.event_time_field)
            .map_err(|e| anyhow::anyhow!("timing.event_time_field: {e}"))?;
        let state_dir = cfg.resolve(&cfg.runtime.state_dir);

        // Channels: one input per transform and sink.
        let mut senders: HashMap<String, mpsc::Sender<Batch>> = HashMap::new();
        let mut receivers: HashMap<String, mpsc::Receiver<Batch>> = HashMap::new();
        for n in graph.nodes.iter().filter(|n| n.section != Section::Source) {
            let (tx, rx) = mpsc::channel(capacity);
            senders.insert(n.id.clone(), tx);
            receivers.insert(n.id.clone(), rx);
        }
        let output_of = |id: &str, output: Option<&str>| {
            Output::new(
                graph
                    .readers(id)
                    .filter(|(_, input)| input.output.as_deref() == output)
                    .filter_map(|(reader, _)| senders.get(&reader.id).cloned())
                    .collect(),
            )
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

        // Open the sink connectors before any record moves, so a bad destination fails fast.
        let mut writers: HashMap<String, Writer> = HashMap::new();
        for (id, s) in &cfg.sinks {
            let max_bytes = s.common.max_bytes.as_deref().and_then(|b| parse_size(b).ok());
            let stop = shutdown.clone();
            let writer = match &s.kind {
                // The AWS writers check their destination (Describe*) and name it on failure.
                SinkKind::Dynamodb(c) => {
                    let w = connectors::aws::dynamodb::DynamoWriter::open(id, c, &cfg.aws, max_bytes, stop)?;
                    writers.insert(id.clone(), Writer::Dynamodb(w));
                    continue;
                }
                SinkKind::Firehose(c) => {
                    let w = connectors::aws::firehose::FirehoseWriter::open(id, c, &cfg.aws, max_bytes, stop)?;
                    writers.insert(id.clone(), Writer::Firehose(w));
                    continue;
                }
                SinkKind::Kinesis(c) => {
                    let w = connectors::aws::kinesis_sink::KinesisWriter::open(id, c, &cfg.aws, max_bytes, stop)?;
                    writers.insert(id.clone(), Writer::Kinesis(w));
                    continue;
                }
                SinkKind::Sqlite(c) => connectors::sqlite::SqliteWriter::open(c, &cfg.base_dir).map(Writer::Sqlite),
                SinkKind::File(c) => connectors::file::FileWriter::new(c, &cfg.base_dir).map(Writer::File),
                SinkKind::Stdout(_) => Ok(Writer::Stdout(connectors::stdout::StdoutWriter)),
            }
            .map_err(|e| anyhow::anyhow!("sinks.{id}: {e}"))?;
            writers.insert(id.clone(), writer);
        }
        // AWS sources and lookup tables: the stream (or table) must exist before anything runs.
        let mut kinesis_sources = HashMap::new();
        for (id, s) in &cfg.sources {
            if let SourceKind::Kinesis(k) = &s.kind {
                kinesis_sources.insert(id.clone(), connectors::aws::kinesis::KinesisSource::open(id, k, &cfg.aws)?);
            }
        }
        for (id, t) in &cfg.tables {
            if let TableConfig::Dynamodb(c) = t {
                connectors::aws::lookup::check(id, c, &cfg.aws)?;
            }
        }

        let mut threads: Vec<(String, std::thread::JoinHandle<anyhow::Result<()>>)> = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() -> anyhow::Result<()> + Send>| {
            let handle =
                std::thread::Builder::new().name(format!("ctrflow-{name}")).spawn(f).expect("spawn a node thread");
            (name, handle)
        };

        // Sinks.
        for n in graph.nodes.iter().filter(|n| n.section == Section::Sink) {
            let prepared = sinks.remove(&n.id).expect("every sink was prepared");
            let writer = writers.remove(&n.id).expect("every sink was opened");
            let s = &cfg.sinks[&n.id];
            let max_records = prepared.max_records.unwrap_or_else(|| writer.max_records());
            let is_dl_sink = dl_sink.as_deref() == Some(n.id.as_str());
            let node = SinkNode {
                id: n.id.clone(),
                rx: receivers.remove(&n.id).expect("every sink has an input"),
                writer,
                plugin: prepared.plugin,
                on_error: s.common.on_error,
                max_records,
                linger: prepared.linger,
                dead: if is_dl_sink { fallback.clone() } else { dead.clone() },
                timing: timing.node(&n.id),
                timing_enabled: cfg.timing.enabled,
                annotate: cfg.timing.annotate && !is_dl_sink,
                shutdown: shutdown.clone(),
            };
            threads.push(spawn(
                format!("sinks.{}", n.id),
                Box::new(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    rt.block_on(node.run())
                }),
            ));
        }

        // Transforms.
        for n in graph.nodes.iter().filter(|n| n.section == Section::Transform) {
            let t = transforms.remove(&n.id).expect("every transform was prepared");
            let default = output_of(&n.id, None);
            let named: Vec<Output> = t.plugin.outputs().iter().map(|o| output_of(&n.id, Some(o))).collect();
            let rx = receivers.remove(&n.id).expect("every transform has an input");
            let node = TransformNode {
                key: format!("transforms.{}", n.id),
                plugin: t.plugin,
                on_error: t.on_error,
                default,
                named,
                dead: dead.clone(),
                timing: timing.node(&n.id),
                timing_enabled: cfg.timing.enabled,
                shutdown: shutdown.clone(),
            };
            threads.push(spawn(format!("transforms.{}", n.id), Box::new(move || node.run(rx))));
        }

        // Sources.
        for (id, s) in &cfg.sources {
            let ctx = SourceContext::new(
                id,
                output_of(id, None),
                dead.clone(),
                shutdown.clone(),
                timing.node(id),
                cfg.timing.enabled,
                cfg.runtime.batch_size,
                max_record_size,
                event_field.clone(),
                state_dir.clone(),
            );
            let kind = s.kind.clone();
            let base = cfg.base_dir.clone();
            let kinesis = kinesis_sources.remove(id);
            threads.push(spawn(
                format!("sources.{id}"),
                Box::new(move || match kind {
                    SourceKind::Generator(g) => connectors::generator::run(&g, ctx),
                    SourceKind::File(f) => connectors::file::run(&f, &base, ctx),
                    SourceKind::Stdin(_) => connectors::stdin::run(ctx),
                    SourceKind::Kinesis(_) => match kinesis {
                        Some(k) => k.run(ctx),
                        None => anyhow::bail!("the kinesis source was not opened"),
                    },
                }),
            ));
        }
        // Only the nodes hold senders now: channels close as their writers finish.
        drop(senders);
        drop(dead);

        let dl_handle = std::thread::Builder::new()
            .name("ctrflow-dead-letters".into())
            .spawn(move || dead_letter::run_writer(dead_rx, dl_target))?;
        let fb_path = dl_path.clone();
        let fb_handle = std::thread::Builder::new()
            .name("ctrflow-dead-letters-fallback".into())
            .spawn(move || dead_letter::run_writer(fallback_rx, DeadLetterTarget::File(fb_path)))?;
        drop(fallback);

        if let Some(addr) = &cfg.runtime.metrics_addr {
            let bound = crate::timing::prometheus::serve(addr, timing.clone())
                .map_err(|e| anyhow::anyhow!("runtime.metrics_addr: cannot listen on {addr}: {e}"))?;
            tracing::info!(addr = %bound, "Serving Prometheus metrics.");
        }
        let monitor = Monitor::start(timing.clone(), &graph, opts);

        let mut errors: Vec<String> = Vec::new();
        for (name, handle) in threads {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shutdown.halt(format!("{name}: {e:#}"));
                    errors.push(format!("{e:#}"));
                }
                Err(_) => {
                    shutdown.halt(format!("{name} panicked"));
                    errors.push(format!("{name} panicked"));
                }
            }
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

        if let Some(reason) = shutdown.halted() {
            // Prefer the root cause over its echoes ("the pipeline stopped reading").
            let root = errors.iter().find(|e| !e.contains("stopped reading")).cloned().unwrap_or(reason);
            anyhow::bail!("{root}");
        }
        if let Some(e) = errors.into_iter().next() {
            anyhow::bail!("{e}");
        }
        let dead_letter_path = (dead_letters > 0 && dl_sink.is_none()).then_some(dl_path);
        Ok(RunOutcome { report: timing.report(), dead_letters, dead_letter_path })
    }
}

/// A TOML `config` table as the JSON text plugins receive.
pub fn toml_to_json(table: Option<&toml::Table>) -> serde_json::Value {
    match table {
        None => serde_json::Value::Null,
        Some(t) => serde_json::to_value(t).unwrap_or(serde_json::Value::Null),
    }
}

/// A transform node's loop.
struct TransformNode {
    key: String,
    plugin: TransformPlugin,
    on_error: OnError,
    default: Output,
    named: Vec<Output>,
    dead: DeadLetters,
    timing: Arc<NodeTiming>,
    timing_enabled: bool,
    shutdown: Shutdown,
}

impl TransformNode {
    fn run(self, mut rx: mpsc::Receiver<Batch>) -> anyhow::Result<()> {
        let counters = &self.timing.counters;
        while let Some(mut batch) = rx.blocking_recv() {
            let start = Instant::now();
            let n = batch.records.len() as u64;
            if self.timing_enabled {
                self.timing.wait.record(start.saturating_duration_since(batch.sent_at), n);
            }
            Counters::add(&counters.records_in, n);
            let records = std::mem::take(&mut batch.records);
            let mut default = Vec::with_capacity(records.len());
            let mut named: Vec<Vec<Record>> = vec![Vec::new(); self.named.len()];
            for (record, decision) in self.plugin.process(records) {
                match decision {
                    Decision::Keep => default.push(record),
                    Decision::Route(i) => named[i as usize].push(record),
                    Decision::Drop => self.drop_record(record),
                    Decision::Split(docs) => {
                        for doc in docs {
                            default.push(Record {
                                doc: Arc::new(doc),
                                meta: record.meta.clone(),
                                ack: record.ack.clone(),
                            });
                        }
                        record.ack.complete();
                    }
                    Decision::Fail(f) => self.refuse(record, f.kind.as_str(), f.message),
                }
            }
            if self.timing_enabled {
                self.timing.process.record(start.elapsed(), n);
            }
            self.send(&self.default, batch.with_records(default))?;
            for (output, records) in self.named.iter().zip(named) {
                self.send(output, batch.with_records(records))?;
            }
        }
        Ok(())
    }

    fn send(&self, output: &Output, batch: Batch) -> anyhow::Result<()> {
        if batch.records.is_empty() {
            return Ok(());
        }
        Counters::add(&self.timing.counters.records_out, batch.records.len() as u64);
        if !output.is_connected() {
            // An output nobody reads: the records end here, deliberately.
            for r in batch.records {
                self.drop_record(r);
            }
            return Ok(());
        }
        output.send_blocking(batch).map_err(|_| anyhow::anyhow!("{}: the pipeline stopped reading", self.key))
    }

    fn drop_record(&self, record: Record) {
        Counters::add(&self.timing.counters.dropped, 1);
        record.ack.complete();
    }

    fn refuse(&self, record: Record, kind: &str, reason: String) {
        match self.on_error {
            OnError::DeadLetter => {
                Counters::add(&self.timing.counters.dead_lettered, 1);
                self.dead.send_blocking(DeadLetter::new(record, self.key.clone(), kind, reason));
            }
            OnError::Drop => self.drop_record(record),
            OnError::Halt => {
                self.shutdown.halt(format!("{}: {kind}: {reason} (on_error = \"halt\")", self.key));
                drop(record);
            }
        }
    }
}

/// Progress and periodic reports while a pipeline runs.
struct Monitor {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(timing: Arc<Timing>, graph: &Graph, opts: RunOptions) -> Monitor {
        let total: Option<u64> = graph
            .config
            .sources
            .values()
            .map(|s| match &s.kind {
                SourceKind::Generator(g) if g.count > 0 => Some(g.count),
                _ => None,
            })
            .sum();
        let sources: Vec<String> = graph.config.sources.keys().cloned().collect();
        let sinks: BTreeMap<String, ()> = graph.config.sinks.keys().map(|k| (k.clone(), ())).collect();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("ctrflow-monitor".into())
            .spawn(move || {
                let read = || {
                    sources
                        .iter()
                        .map(|s| timing.node(s).counters.records_in.load(std::sync::atomic::Ordering::Relaxed))
                        .sum::<u64>()
                };
                let written = || {
                    sinks
                        .keys()
                        .map(|s| timing.node(s).counters.records_out.load(std::sync::atomic::Ordering::Relaxed))
                        .sum::<u64>()
                };
                let bar = (opts.progress && total.is_some()).then(|| {
                    let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} records read ({per_sec}, {eta} left) {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar
                });
                let started = Instant::now();
                let mut last_log = Instant::now();
                let mut last_report = Instant::now();
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    if let Some(bar) = &bar {
                        bar.set_position(read());
                        bar.set_message(format!("{} written", written()));
                    } else if last_log.elapsed() >= Duration::from_secs(10) {
                        tracing::info!(
                            read = read(),
                            written = written(),
                            elapsed_s = started.elapsed().as_secs(),
                            "Progress."
                        );
                        last_log = Instant::now();
                    }
                    if let Some(every) = opts.report_interval
                        && last_report.elapsed() >= every
                    {
                        let table = timing.report().table();
                        match &bar {
                            Some(b) => b.println(table),
                            None => eprintln!("{table}"),
                        }
                        last_report = Instant::now();
                    }
                }
                if let Some(bar) = bar {
                    bar.set_position(read());
                    bar.finish_and_clear();
                }
            })
            .ok();
        Monitor { stop: Some(tx), handle }
    }

    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
