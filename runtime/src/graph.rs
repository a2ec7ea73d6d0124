//! The validated pipeline graph: every input resolves, nothing cycles, nothing dangles.
//!
//! [`Graph::from_config`] checks the structure and returns *every* problem at once, each
//! naming its node the way the file does (`transforms.redact: input "sorce" is not a node
//! (did you mean "source"?)`). What needs the plugins and connectors themselves — that a
//! plugin exists, is of the right kind, accepts its config, and declares the outputs other
//! nodes read; that a connector's options are right — is checked when the pipeline is built
//! ([`crate::pipeline`]), with the same error type, in the same list.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{ConfigError, PipelineConfig};

/// Which section a node is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// `[sources.*]`
    Source,
    /// `[transforms.*]`
    Transform,
    /// `[sinks.*]`
    Sink,
}

impl Section {
    /// The section's TOML name.
    pub fn key(self) -> &'static str {
        match self {
            Section::Source => "sources",
            Section::Transform => "transforms",
            Section::Sink => "sinks",
        }
    }
}

/// One resolved input: a node, and which of its outputs (`None`: the default one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputRef {
    /// The upstream node's id.
    pub node: String,
    /// The named output, for `node.output`.
    pub output: Option<String>,
}

impl std::fmt::Display for InputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.output {
            Some(o) => write!(f, "{}.{o}", self.node),
            None => f.write_str(&self.node),
        }
    }
}

/// A problem with the pipeline. Each names the key to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The file itself is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An input names no node.
    #[error("{node}: input {input:?} is not a node{}", did_you_mean(suggestion))]
    UnknownInput { node: String, input: String, suggestion: Option<String> },
    /// An input names a sink, which has no output.
    #[error("{node}: input {input:?} is a sink; sinks have no output to read")]
    InputIsSink { node: String, input: String },
    /// `node.output` names an output the node does not have.
    #[error("{node}: input {input:?}: {upstream} has no output {output:?} (its outputs: {})", list(available))]
    UnknownOutput { node: String, input: String, upstream: String, output: String, available: Vec<String> },
    /// The inputs form a cycle.
    #[error("transforms form a cycle: {}", path.join(" -> "))]
    Cycle { path: Vec<String> },
    /// A source or transform nobody reads.
    #[error("{node}: nothing reads this node's output (add it to some node's `inputs`, or remove it)")]
    Unused { node: String },
    /// A transform or sink with no inputs.
    #[error("{node}: `inputs` is empty")]
    NoInputs { node: String },
    /// The same id in two sections.
    #[error("node id {id:?} is used in both {first} and {second}: ids must be unique")]
    DuplicateId { id: String, first: String, second: String },
    /// A table grant names no table.
    #[error("{node}: table {table:?} is not defined under [tables]{}", did_you_mean(suggestion))]
    UnknownTable { node: String, table: String, suggestion: Option<String> },
    /// A plugin could not be loaded or set up.
    #[error("{node}: {detail}")]
    Plugin { node: String, detail: String },
    /// A connector's settings are unusable.
    #[error("{node}: {detail}")]
    Connector { node: String, detail: String },
    /// `[dead_letter] sink` names no sink.
    #[error("dead_letter.sink: {sink:?} is not a sink{}", did_you_mean(suggestion))]
    DeadLetterSink { sink: String, suggestion: Option<String> },
    /// Nothing to read, or nowhere to write.
    #[error("the pipeline has no {0}: define at least one [{0}.<id>]")]
    Empty(&'static str),
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default()
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

/// The closest candidate within a small edit distance.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A node of the validated graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its id.
    pub id: String,
    /// Its section.
    pub section: Section,
    /// Its resolved inputs.
    pub inputs: Vec<InputRef>,
}

impl Node {
    /// `sections.id`, as errors name it.
    pub fn key(&self) -> String {
        format!("{}.{}", self.section.key(), self.id)
    }
}

/// The validated graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The configuration it was built from.
    pub config: PipelineConfig,
    /// Every node, sources first, then transforms in dependency order, then sinks.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Validates the structure of `config`; returns every problem found.
    pub fn from_config(config: PipelineConfig) -> Result<Graph, Vec<GraphError>> {
        let (graph, errors) = Graph::check(config);
        if errors.is_empty() { Ok(graph) } else { Err(errors) }
    }

    /// Builds the graph as far as it goes and lists every structural problem. With
    /// problems, the graph still holds every node (a cycle's transforms unordered), so the
    /// checks after it can run and report theirs too.
    pub fn check(config: PipelineConfig) -> (Graph, Vec<GraphError>) {
        let mut errors = Vec::new();
        let mut sections: BTreeMap<&str, Section> = BTreeMap::new();
        let ids = config
            .sources
            .keys()
            .map(|k| (k, Section::Source))
            .chain(config.transforms.keys().map(|k| (k, Section::Transform)))
            .chain(config.sinks.keys().map(|k| (k, Section::Sink)));
        for (id, section) in ids {
            if let Some(first) = sections.insert(id, section) {
                errors.push(GraphError::DuplicateId {
                    id: id.clone(),
                    first: format!("{}.{id}", first.key()),
                    second: format!("{}.{id}", section.key()),
                });
            }
        }
        if config.sources.is_empty() {
            errors.push(GraphError::Empty("sources"));
        }
        if config.sinks.is_empty() {
            errors.push(GraphError::Empty("sinks"));
        }

        let dead_letter_sink = config.dead_letter.sink.clone();
        if let Some(s) = &dead_letter_sink
            && !config.sinks.contains_key(s)
        {
            let suggestion = suggest(s, config.sinks.keys().map(String::as_str));
            errors.push(GraphError::DeadLetterSink { sink: s.clone(), suggestion });
        }

        let readable: Vec<&str> = config.sources.keys().chain(config.transforms.keys()).map(String::as_str).collect();
        let resolve = |key: String, inputs: &[String], errors: &mut Vec<GraphError>| -> Vec<InputRef> {
            let mut out = Vec::new();
            for input in inputs {
                let (node, output) = match input.split_once('.') {
                    Some((n, o)) => (n, Some(o.to_string())),
                    None => (input.as_str(), None),
                };
                match sections.get(node) {
                    None => errors.push(GraphError::UnknownInput {
                        node: key.clone(),
                        input: input.clone(),
                        suggestion: suggest(node, readable.iter().copied()),
                    }),
                    Some(Section::Sink) => {
                        errors.push(GraphError::InputIsSink { node: key.clone(), input: input.clone() })
                    }
                    Some(Section::Source) if output.is_some() => errors.push(GraphError::UnknownOutput {
                        node: key.clone(),
                        input: input.clone(),
                        upstream: format!("sources.{node}"),
                        output: output.clone().unwrap_or_default(),
                        available: Vec::new(),
                    }),
                    Some(_) => out.push(InputRef { node: node.to_string(), output }),
                }
            }
            out
        };

        let mut nodes: Vec<Node> = config
            .sources
            .keys()
            .map(|id| Node { id: id.clone(), section: Section::Source, inputs: Vec::new() })
            .collect();
        let mut transforms = Vec::new();
        for (id, t) in &config.transforms {
            let key = format!("transforms.{id}");
            if t.inputs.is_empty() && !config.broken.contains(&key) {
                errors.push(GraphError::NoInputs { node: key.clone() });
            }
            for table in &t.tables {
                if !config.tables.contains_key(table) {
                    let suggestion = suggest(table, config.tables.keys().map(String::as_str));
                    errors.push(GraphError::UnknownTable { node: key.clone(), table: table.clone(), suggestion });
                }
            }
            let inputs = resolve(key, &t.inputs, &mut errors);
            transforms.push(Node { id: id.clone(), section: Section::Transform, inputs });
        }
        let mut sinks = Vec::new();
        for (id, s) in &config.sinks {
            let key = format!("sinks.{id}");
            let is_dead_letter = dead_letter_sink.as_deref() == Some(id.as_str());
            if s.common.inputs.is_empty() && !is_dead_letter && !config.broken.contains(&key) {
                errors.push(GraphError::NoInputs { node: key.clone() });
            }
            let inputs = resolve(key, &s.common.inputs, &mut errors);
            sinks.push(Node { id: id.clone(), section: Section::Sink, inputs });
        }

        match topo_sort(&transforms) {
            Ok(order) => nodes.extend(order),
            Err(cycle) => {
                errors.push(GraphError::Cycle { path: cycle });
                nodes.extend(transforms);
            }
        }
        nodes.extend(sinks);

        let read: BTreeSet<&str> = nodes.iter().flat_map(|n| n.inputs.iter().map(|i| i.node.as_str())).collect();
        for n in &nodes {
            if n.section != Section::Sink && !read.contains(n.id.as_str()) {
                errors.push(GraphError::Unused { node: n.key() });
            }
        }

        (Graph { config, nodes }, errors)
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The nodes reading `id` (any of its outputs).
    pub fn readers<'a>(&'a self, id: &'a str) -> impl Iterator<Item = (&'a Node, &'a InputRef)> + 'a {
        self.nodes.iter().flat_map(move |n| n.inputs.iter().filter(move |i| i.node == id).map(move |i| (n, i)))
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph pipeline {\n  rankdir=LR;\n");
        for n in &self.nodes {
            let shape = match n.section {
                Section::Source => "invhouse",
                Section::Transform => "box",
                Section::Sink => "house",
            };
            s.push_str(&format!("  {:?} [shape={shape}, label={:?}];\n", n.id, self.label(n)));
        }
        for n in &self.nodes {
            for i in &n.inputs {
                match &i.output {
                    Some(o) => s.push_str(&format!("  {:?} -> {:?} [label={o:?}];\n", i.node, n.id)),
                    None => s.push_str(&format!("  {:?} -> {:?};\n", i.node, n.id)),
                }
            }
        }
        s.push_str("}\n");
        s
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        for n in &self.nodes {
            let label = self.label(n).replace('"', "'");
            let (open, close) = match n.section {
                Section::Source => ("([", "])"),
                Section::Transform => ("[", "]"),
                Section::Sink => ("[(", ")]"),
            };
            s.push_str(&format!("  {}{open}\"{label}\"{close}\n", mermaid_id(&n.id)));
        }
        for n in &self.nodes {
            for i in &n.inputs {
                match &i.output {
                    Some(o) => s.push_str(&format!("  {} -->|{o}| {}\n", mermaid_id(&i.node), mermaid_id(&n.id))),
                    None => s.push_str(&format!("  {} --> {}\n", mermaid_id(&i.node), mermaid_id(&n.id))),
                }
            }
        }
        s
    }

    /// A node's label: its id and what it runs.
    pub fn label(&self, n: &Node) -> String {
        let c = &self.config;
        match n.section {
            Section::Source => format!("{} ({})", n.id, c.sources[&n.id].type_name),
            Section::Transform => format!("{} ({})", n.id, c.transforms[&n.id].plugin),
            Section::Sink => {
                let s = &c.sinks[&n.id];
                match &s.common.plugin {
                    Some(p) => format!("{} ({} via {p})", n.id, s.connector.type_name),
                    None => format!("{} ({})", n.id, s.connector.type_name),
                }
            }
        }
    }
}

fn mermaid_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Orders transforms so each comes after the transforms it reads; or returns a cycle.
fn topo_sort(transforms: &[Node]) -> Result<Vec<Node>, Vec<String>> {
    let by_id: BTreeMap<&str, &Node> = transforms.iter().map(|n| (n.id.as_str(), n)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut order = Vec::new();
    fn visit<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a Node>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<Node>,
    ) -> Result<(), Vec<String>> {
        match marks.get(id) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(id.to_string());
                return Err(cycle);
            }
            None => {}
        }
        let Some(node) = by_id.get(id) else { return Ok(()) };
        marks.insert(id, Mark::Visiting);
        stack.push(id);
        for input in &node.inputs {
            if by_id.contains_key(input.node.as_str()) {
                visit(&input.node, by_id, marks, stack, order)?;
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        order.push((*node).clone());
        Ok(())
    }
    for n in transforms {
        visit(&n.id, &by_id, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn graph(text: &str) -> Result<Graph, Vec<GraphError>> {
        let cfg = PipelineConfig::parse(text, Path::new("."), &|_| None)
            .map_err(|e| e.into_iter().map(GraphError::from).collect::<Vec<_>>())?;
        Graph::from_config(cfg)
    }

    const OK: &str = r#"
        [sources.source]
        type = "generator"
        [transforms.redact]
        plugin = "redact-pii"
        inputs = ["source"]
        [transforms.route]
        plugin = "route-by-field"
        inputs = ["redact"]
        [sinks.voice]
        type = "stdout"
        inputs = ["route.VOICE"]
        [sinks.all]
        type = "stdout"
        inputs = ["redact", "route.other"]
    "#;

    #[test]
    fn a_valid_graph_orders_transforms_after_their_inputs() {
        let g = graph(OK).unwrap();
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["source", "redact", "route", "all", "voice"]);
        assert_eq!(g.readers("redact").count(), 2);
    }

    #[test]
    fn an_unknown_input_suggests_the_nearest_node() {
        let errs = graph(&OK.replace(r#"inputs = ["source"]"#, r#"inputs = ["sorce"]"#)).unwrap_err();
        let msg = errs.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert!(
            msg.contains(&r#"transforms.redact: input "sorce" is not a node (did you mean "source"?)"#.to_string()),
            "{msg:?}"
        );
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let errs = graph(&OK.replace(r#"inputs = ["source"]"#, r#"inputs = ["source", "route"]"#)).unwrap_err();
        assert!(errs.iter().any(|e| matches!(e, GraphError::Cycle { path } if path.len() == 3)), "{errs:?}");
    }

    #[test]
    fn an_unused_node_is_reported() {
        let text = format!("{OK}\n[transforms.orphan]\nplugin = \"ctr-flatten\"\ninputs = [\"source\"]\n");
        let errs = graph(&text).unwrap_err();
        assert_eq!(errs, vec![GraphError::Unused { node: "transforms.orphan".into() }]);
        assert!(errs[0].to_string().contains("nothing reads"));
    }

    #[test]
    fn reading_a_sink_is_reported() {
        let errs = graph(&OK.replace(r#"inputs = ["redact", "route.other"]"#, r#"inputs = ["voice"]"#)).unwrap_err();
        assert!(errs.iter().any(|e| matches!(e, GraphError::InputIsSink { .. })), "{errs:?}");
    }

    #[test]
    fn an_unknown_table_grant_is_reported() {
        let text = OK.replace("plugin = \"redact-pii\"", "plugin = \"redact-pii\"\ntables = [\"agnets\"]");
        let text = format!("{text}\n[tables.agents]\ntype = \"csv\"\npath = \"a.csv\"\nkey = \"username\"\n");
        let errs = graph(&text).unwrap_err();
        assert!(errs[0].to_string().contains(r#"(did you mean "agents"?)"#), "{errs:?}");
    }

    #[test]
    fn duplicate_ids_are_reported() {
        let text = format!("{OK}\n[sinks.redact]\ntype = \"stdout\"\ninputs = [\"source\"]\n");
        let errs = graph(&text).unwrap_err();
        assert!(errs.iter().any(|e| matches!(e, GraphError::DuplicateId { .. })), "{errs:?}");
    }

    #[test]
    fn dot_and_mermaid_name_every_node_and_edge() {
        let g = graph(OK).unwrap();
        let dot = g.to_dot();
        assert!(dot.contains(r#""route" -> "voice" [label="VOICE"]"#), "{dot}");
        let mm = g.to_mermaid();
        assert!(mm.contains("route -->|VOICE| voice"), "{mm}");
    }
}
