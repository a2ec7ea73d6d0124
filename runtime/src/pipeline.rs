//! Building a pipeline: everything that can fail before a record moves, as a short
//! sequence of named checks that each add to one list of problems, so `ctrflow validate`
//! reports every problem at once — a misspelt key, an unknown input and a plugin that
//! refuses its `config` together, each naming its key.
//!
//! 1. [`Graph::check`]: the structure (inputs resolve, no cycle, nothing dangles);
//! 2. `read_sources` / `read_sinks` / `open_tables`: each connector node's `type` is found in
//!    the [`registry`] and its options read and validated by the connector itself;
//! 3. `load_transforms` / sink plugins: each plugin is compiled, pre-instantiated and
//!    initialised with its `config`;
//! 4. `check_outputs`: every `node.output` read is one its plugin declared;
//! 5. `check_runtime`: the pipeline-wide settings.
//!
//! [`crate::topology::run`] then takes the result, opens the connectors, wires the channels
//! and runs the nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ctrflow_plugin_sdk::path::FieldPath;

use crate::config::{OnError, PipelineConfig, ReadConfig};
use crate::connectors::registry;
use crate::contract::{Destination, Env, Lookup, SinkConnector, SourceConnector, TableConnector};
use crate::graph::{Graph, GraphError};
use crate::host::{Host, Limits, NodeContext, SinkPlugin, TransformPlugin};
use crate::timing::{PluginCounters, Timing};
use crate::units::{parse_duration, parse_size};

/// A transform node's plugin, loaded and initialised.
pub(crate) struct PreparedTransform {
    pub plugin: TransformPlugin,
    pub on_error: OnError,
    pub workers: usize,
}

/// A sink node: its connector's options, its encoding plugin, its batching.
pub(crate) struct PreparedSink {
    pub connector: Box<dyn SinkConnector>,
    pub plugin: Option<SinkPlugin>,
    pub max_records: usize,
    pub max_bytes: Option<usize>,
    pub linger: Duration,
    pub on_error: OnError,
}

/// The pipeline-wide settings, checked.
pub(crate) struct RuntimeSettings {
    pub max_record_size: usize,
    pub batch_bytes: usize,
    pub event_field: FieldPath,
}

/// A pipeline whose plugins are loaded and whose settings are checked.
pub struct Pipeline {
    pub(crate) graph: Graph,
    pub(crate) sources: BTreeMap<String, Box<dyn SourceConnector>>,
    pub(crate) tables: BTreeMap<String, Box<dyn TableConnector>>,
    pub(crate) transforms: HashMap<String, PreparedTransform>,
    pub(crate) sinks: BTreeMap<String, PreparedSink>,
    pub(crate) settings: RuntimeSettings,
    pub(crate) timing: Arc<Timing>,
}

impl Pipeline {
    /// Checks everything and loads the plugins; returns every problem found.
    pub fn build(read: ReadConfig, host: &Host) -> Result<Pipeline, Vec<GraphError>> {
        Self::build_with_tables(read, host, HashMap::new())
    }

    /// Like [`Pipeline::build`], with some tables answered by `given` instead of being opened
    /// from their declaration (`ctrflow test` gives rows inline; their declared options are
    /// still read and checked).
    pub fn build_with_tables(
        read: ReadConfig,
        host: &Host,
        given: HashMap<String, Arc<dyn Lookup>>,
    ) -> Result<Pipeline, Vec<GraphError>> {
        let mut problems: Vec<GraphError> = read.problems.into_iter().map(GraphError::from).collect();
        let (graph, structure) = Graph::check(read.config);
        problems.extend(structure);
        let cfg = &graph.config;

        let sources = read_sources(cfg, &mut problems);
        let (tables, lookups) = open_tables(cfg, given, &mut problems);
        let transforms = load_transforms(cfg, host, &lookups, &mut problems);
        check_outputs(&graph, &transforms, &mut problems);
        let sinks = read_sinks(cfg, host, &mut problems);
        let settings = check_runtime(cfg, &mut problems);

        let Some(settings) = settings.filter(|_| problems.is_empty()) else { return Err(problems) };
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
        // (`NodeContext` reaches the timing as `dyn PluginCounters`: timing does not know the host.)
        Ok(Pipeline { graph, sources, tables, transforms, sinks, settings, timing: Arc::new(timing) })
    }

    /// The validated graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The live timing (for the metrics endpoint and progress).
    pub fn timing(&self) -> Arc<Timing> {
        self.timing.clone()
    }

    /// Where each sink writes, for the summary after a run.
    pub fn destinations(&self) -> BTreeMap<String, Destination> {
        self.sinks.iter().map(|(id, s)| (id.clone(), s.connector.destination(&env(&self.graph.config, id)))).collect()
    }

    /// How many records the sources will read, when every one of them knows.
    pub fn expected_records(&self) -> Option<u64> {
        self.sources.values().map(|s| s.expected_records()).sum()
    }
}

impl PluginCounters for NodeContext {
    fn counters(&self) -> std::collections::HashMap<String, i64> {
        NodeContext::counters(self)
    }
}

/// What a connector of node `id` sees of the pipeline.
pub(crate) fn env<'a>(cfg: &'a PipelineConfig, id: &'a str) -> Env<'a> {
    Env { id, base_dir: &cfg.base_dir, aws: &cfg.aws }
}

fn connector_problems(node: &str, details: Vec<String>, problems: &mut Vec<GraphError>) {
    problems.extend(details.into_iter().map(|detail| GraphError::Connector { node: node.to_string(), detail }));
}

/// Step 2: each source's `type` found and its options read and validated.
fn read_sources(cfg: &PipelineConfig, problems: &mut Vec<GraphError>) -> BTreeMap<String, Box<dyn SourceConnector>> {
    let mut out = BTreeMap::new();
    for (id, table) in &cfg.sources {
        let node = format!("sources.{id}");
        match registry::read(registry::SOURCES, "source", table) {
            Ok(c) => {
                connector_problems(&node, c.validate(&env(cfg, id)), problems);
                out.insert(id.clone(), c);
            }
            Err(details) => connector_problems(&node, details, problems),
        }
    }
    out
}

/// Tables by id: their connectors, and what answers their lookups.
type Tables = (BTreeMap<String, Box<dyn TableConnector>>, HashMap<String, Arc<dyn Lookup>>);

/// Step 2: each table's options read, and the table loaded (or connected to).
fn open_tables(
    cfg: &PipelineConfig,
    given: HashMap<String, Arc<dyn Lookup>>,
    problems: &mut Vec<GraphError>,
) -> Tables {
    let mut connectors = BTreeMap::new();
    let mut lookups = given;
    for (id, table) in &cfg.tables {
        let node = format!("tables.{id}");
        let c = match registry::read(registry::TABLES, "table", table) {
            Ok(c) => c,
            Err(details) => {
                connector_problems(&node, details, problems);
                continue;
            }
        };
        let found = c.validate(&env(cfg, id));
        if found.is_empty() && !lookups.contains_key(id) {
            match c.open(&env(cfg, id)) {
                Ok(l) => {
                    lookups.insert(id.clone(), l);
                }
                Err(detail) => problems.push(GraphError::Connector { node: node.clone(), detail }),
            }
        }
        connector_problems(&node, found, problems);
        connectors.insert(id.clone(), c);
    }
    (connectors, lookups)
}

/// Step 3: each transform's plugin loaded and initialised with its `config`.
fn load_transforms(
    cfg: &PipelineConfig,
    host: &Host,
    lookups: &HashMap<String, Arc<dyn Lookup>>,
    problems: &mut Vec<GraphError>,
) -> HashMap<String, PreparedTransform> {
    let mut out = HashMap::new();
    for (id, t) in &cfg.transforms {
        let node = format!("transforms.{id}");
        if cfg.broken.contains(&node) {
            continue;
        }
        let limits = match Limits::from_config(&t.limits) {
            Ok(l) => l,
            Err(detail) => {
                problems.push(GraphError::Connector { node, detail });
                continue;
            }
        };
        let mut ctx = NodeContext::new(id.clone(), t.plugin.clone());
        ctx.log_verbatim = t.plugin_log == crate::config::PluginLog::Verbatim;
        for table in &t.tables {
            if let Some(l) = lookups.get(table) {
                ctx.tables.insert(table.clone(), l.clone());
            }
        }
        let config = toml_to_json(t.config.as_ref());
        let prepared =
            host.load(&t.plugin, &cfg.base_dir).and_then(|compiled| host.transform(&compiled, ctx, &config, limits));
        match prepared {
            Ok(plugin) => {
                let workers = t.workers.unwrap_or_else(default_workers);
                if workers == 0 {
                    problems.push(GraphError::Connector { node, detail: "workers: must be at least 1".into() });
                    continue;
                }
                out.insert(id.clone(), PreparedTransform { plugin, on_error: t.on_error, workers });
            }
            Err(e) => problems.push(GraphError::Plugin { node, detail: e.to_string() }),
        }
    }
    out
}

/// A transform's workers when the pipeline does not say: one per core, at most four.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// Step 4: every `node.output` read is one the plugin declared at `init`.
fn check_outputs(graph: &Graph, transforms: &HashMap<String, PreparedTransform>, problems: &mut Vec<GraphError>) {
    for n in &graph.nodes {
        for input in &n.inputs {
            let (Some(output), Some(t)) = (&input.output, transforms.get(&input.node)) else { continue };
            if !t.plugin.outputs().contains(output) {
                problems.push(GraphError::UnknownOutput {
                    node: n.key(),
                    input: input.to_string(),
                    upstream: format!("transforms.{}", input.node),
                    output: output.clone(),
                    available: t.plugin.outputs().to_vec(),
                });
            }
        }
    }
}

/// Step 2 and 3 for sinks: the connector's options, the keys every sink has, the plugin.
fn read_sinks(cfg: &PipelineConfig, host: &Host, problems: &mut Vec<GraphError>) -> BTreeMap<String, PreparedSink> {
    let mut out = BTreeMap::new();
    for (id, s) in &cfg.sinks {
        let node = format!("sinks.{id}");
        let connector = match registry::read(registry::SINKS, "sink", &s.connector) {
            Ok(c) => {
                connector_problems(&node, c.validate(&env(cfg, id)), problems);
                Some(c)
            }
            Err(details) => {
                connector_problems(&node, details, problems);
                None
            }
        };
        if cfg.broken.contains(&node) {
            continue;
        }
        let c = &s.common;
        let mut found = Vec::new();
        let linger = match c.linger.as_deref().map(parse_duration).transpose() {
            Ok(l) => l.unwrap_or(Duration::from_millis(100)),
            Err(e) => {
                found.push(format!("linger: {e}"));
                Duration::ZERO
            }
        };
        let max_bytes = c.max_bytes.as_deref().map(parse_size).transpose().unwrap_or_else(|e| {
            found.push(format!("max_bytes: {e}"));
            None
        });
        if c.max_records == Some(0) {
            found.push("max_records: must be at least 1".into());
        }
        if c.plugin.is_none() && c.config.is_some() {
            found.push("config: a sink's `config` is handed to its `plugin`, and this sink has none".into());
        }
        connector_problems(&node, found, problems);
        let plugin = c.plugin.as_ref().and_then(|p| {
            let built = Limits::from_config(&c.limits).and_then(|limits| {
                let config = toml_to_json(c.config.as_ref());
                host.load(p, &cfg.base_dir)
                    .and_then(|compiled| {
                        let mut ctx = NodeContext::new(id.clone(), p.clone());
                        ctx.log_verbatim = c.plugin_log == crate::config::PluginLog::Verbatim;
                        host.sink(&compiled, ctx, &config, limits)
                    })
                    .map_err(|e| e.to_string())
            });
            built.map_err(|detail| problems.push(GraphError::Plugin { node: node.clone(), detail })).ok()
        });
        if let Some(connector) = connector {
            let max_records = c.max_records.unwrap_or_else(|| connector.max_records());
            out.insert(
                id.clone(),
                PreparedSink { connector, plugin, max_records, max_bytes, linger, on_error: c.on_error },
            );
        }
    }
    out
}

/// Step 5: the pipeline-wide settings.
fn check_runtime(cfg: &PipelineConfig, problems: &mut Vec<GraphError>) -> Option<RuntimeSettings> {
    let mut setting = |node: &str, detail: String| problems.push(GraphError::Connector { node: node.into(), detail });
    let max_record_size =
        parse_size(&cfg.runtime.max_record_size).map_err(|e| setting("runtime", format!("max_record_size: {e}"))).ok();
    let batch_bytes =
        parse_size(&cfg.runtime.batch_bytes).map_err(|e| setting("runtime", format!("batch_bytes: {e}"))).ok();
    let event_field = FieldPath::parse(&cfg.timing.event_time_field)
        .map_err(|e| setting("timing", format!("event_time_field: {e}")))
        .ok();
    Some(RuntimeSettings { max_record_size: max_record_size?, batch_bytes: batch_bytes?, event_field: event_field? })
}

/// A TOML `config` table as the JSON text plugins receive.
pub fn toml_to_json(table: Option<&toml::Table>) -> serde_json::Value {
    match table {
        None => serde_json::Value::Null,
        Some(t) => serde_json::to_value(t).unwrap_or(serde_json::Value::Null),
    }
}
