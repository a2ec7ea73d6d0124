//! Pipeline TOML → plain structs, and nothing more: no defaults computed across sections,
//! no graph logic (that is [`crate::graph`]).
//!
//! The `///` comments on the fields below are the user's reference for every key.
//!
//! Each node table is read in two steps so that a misspelt key is always caught with its
//! name: the keys every node of its section has (`inputs`, `plugin`, …) go to one struct,
//! the rest to the connector chosen by `type`; both deny unknown fields. (serde cannot
//! combine `deny_unknown_fields` with `flatten`, which a one-step read would need.)
//!
//! `${VAR}` and `${VAR:-default}` are replaced from the environment inside the parsed
//! values, never in the text ([`interpolate`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A problem reading a pipeline file; each names the key or line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    /// `${VAR}` names a variable that is not set and has no default.
    #[error("line {line}: environment variable {var} is not set (write ${{{var}:-default}} to give a default)")]
    MissingVar { var: String, line: usize },
    /// The TOML does not parse.
    #[error("{0}")]
    Toml(String),
    /// A key has the wrong type or is not allowed there.
    #[error("{key}: {detail}")]
    Key { key: String, detail: String },
}

/// A whole pipeline file.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// The directory of the pipeline file: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    /// `[runtime]`.
    pub runtime: RuntimeConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
    /// `[timing]`.
    pub timing: TimingConfig,
    /// `[dead_letter]`.
    pub dead_letter: DeadLetterConfig,
    /// `[sources.<id>]`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[tables.<id>]`.
    pub tables: BTreeMap<String, TableConfig>,
    /// `[transforms.<id>]`.
    pub transforms: BTreeMap<String, TransformConfig>,
    /// `[sinks.<id>]`.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Nodes (`transforms.<id>`, `sinks.<id>`) whose own keys did not read: they take part
    /// in the graph checks, but nothing is built from them.
    pub broken: std::collections::BTreeSet<String>,
}

/// `[runtime]`: how the process runs.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where checkpoints live (relative to the pipeline file). Default `.ctrflow-state`.
    pub state_dir: String,
    /// Records per batch read from a source. Default 32: a batch's parsed records (about
    /// 15 KB each for a contact record) then stay within a core's L2 cache from one stage to
    /// the next (docs/performance.md, twelfth round).
    pub batch_size: usize,
    /// A batch also closes once its records' source text reaches this many bytes, e.g.
    /// `"256KiB"`: large records make smaller batches, so what is in flight stays bounded in
    /// bytes as well as in records. Default `"256KiB"` (about 80 contact records of 3 KB, so
    /// `batch_size` decides for those). Records a source makes itself (the generator's) count
    /// by `batch_size` alone.
    pub batch_bytes: String,
    /// Batches each node's input channel holds before it pushes back. Default 2.
    pub channel_capacity: usize,
    /// Run each chain of transforms (a transform without named outputs whose readers are all
    /// transforms that read nothing else, all with the same `workers`, more than one: the
    /// next of a linear chain, or every reader of a fan-out) on the same workers, handing each
    /// batch on in memory instead of through a channel and another thread. Default true;
    /// false gives every transform its own threads and input queue.
    pub fuse_transforms: bool,
    /// The largest record accepted from a source, e.g. `"1MiB"` (Kinesis's own limit).
    /// Larger records go to the dead letters.
    pub max_record_size: String,
    /// Serve Prometheus metrics on this address, e.g. `"127.0.0.1:9598"`. Default: off.
    pub metrics_addr: Option<String>,
    /// Serve the admin endpoint (metrics, `/health`, `/ready`, `/stats` for `ctrflow top`,
    /// `/tap` for `ctrflow tap`) on this address, e.g. `"127.0.0.1:9601"`. Default: off;
    /// an empty value (`"${ADMIN_ADDR:-}"` unset) is off too. The tap serves customer data: keep it on loopback unless something in front
    /// authenticates.
    pub admin_addr: Option<String>,
    /// Where compiled plugins are cached. Default `~/.cache/ctrflow/plugins`; `""` turns
    /// the cache off.
    pub plugin_cache: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: ".ctrflow-state".into(),
            batch_size: 32,
            batch_bytes: "256KiB".into(),
            channel_capacity: 2,
            fuse_transforms: true,
            max_record_size: "1MiB".into(),
            metrics_addr: None,
            admin_addr: None,
            plugin_cache: None,
        }
    }
}

/// `[aws]`: settings every AWS connector shares. Credentials come from the default chain
/// (environment, profile, instance role).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region, e.g. `"eu-west-2"`. Default: from the environment / profile.
    pub region: Option<String>,
    /// Endpoint URL for every AWS service (an emulator such as moto). Per-connector
    /// `endpoint_url` overrides it.
    pub endpoint_url: Option<String>,
}

/// `[timing]`: how hop times are taken.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// The record field holding the event time. Default `LastUpdateTimestamp`.
    pub event_time_field: String,
    /// Add each record's hop times under the reserved key `_ctrflow_timing` before its
    /// sink encodes it. Default false.
    pub annotate: bool,
    /// Turn timing off entirely (for measuring its cost). Default true.
    pub enabled: bool,
}

impl Default for TimingConfig {
    fn default() -> Self {
        TimingConfig { event_time_field: "LastUpdateTimestamp".into(), annotate: false, enabled: true }
    }
}

/// `[dead_letter]`: where refused records go.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// A JSON-lines file (relative to the pipeline file). Default `dead-letters.jsonl`.
    pub path: String,
    /// Instead of the file, send dead letters (as JSON objects) to this sink.
    pub sink: Option<String>,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig { path: "dead-letters.jsonl".into(), sink: None }
    }
}

/// What happens to a record a node refuses (or traps on).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Write it to the dead-letter output with the reason (default).
    #[default]
    DeadLetter,
    /// Drop it, counted.
    Drop,
    /// Stop the pipeline.
    Halt,
}

/// How a node's plugin's own log lines at `info` and above are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PluginLog {
    /// With what looks like customer data masked (quoted values, e-mail addresses, phone
    /// and other long numbers): the default.
    #[default]
    Redacted,
    /// As the plugin wrote them: the pipeline vouches that its plugin logs no customer data,
    /// or accepts that the log holds some.
    Verbatim,
}

// ---------------------------------------------------------------------------------------
// Sources, tables, sinks: connector nodes

/// A connector node as written: its `type`, and the rest of its keys, which belong to the
/// connector that `type` names (each connector module owns its options struct; the
/// registry, [`crate::connectors::registry`], reads them). Config itself knows no connector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorTable {
    /// `type = "…"`; empty when the key is missing (the registry says so).
    pub type_name: String,
    /// Every other key of the table.
    pub options: toml::Table,
}

impl ConnectorTable {
    fn split(mut table: toml::Table) -> ConnectorTable {
        let type_name = match table.remove("type") {
            Some(toml::Value::String(t)) => t,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        ConnectorTable { type_name, options: table }
    }
}

/// `[sources.<id>]`.
pub type SourceConfig = ConnectorTable;

/// `[tables.<id>]`: lookup data for enrich plugins.
pub type TableConfig = ConnectorTable;

// ---------------------------------------------------------------------------------------
// Transforms

/// `[transforms.<id>]`: a transform or enrich plugin.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// A bundled plugin's name (`redact-pii`) or a path to a `.wasm` component.
    pub plugin: String,
    /// The nodes it reads from: `"<id>"` or `"<id>.<output>"`.
    pub inputs: Vec<String>,
    /// The lookup tables it may read (enrich plugins).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Handed to the plugin's `init`.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub config: Option<toml::Table>,
    /// The environment variables `config` may read as `${VAR}` (none unless listed).
    #[serde(default)]
    pub config_env: Vec<String>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What happens to a record the plugin refuses or traps on.
    #[serde(default)]
    pub on_error: OnError,
    /// How many batches this node works on at once, each on its own thread with its own
    /// plugin instance; its output keeps the input's order. Default: the machine's cores
    /// (at most 4).
    pub workers: Option<usize>,
    /// How the plugin's `info`+ log lines are written (default: customer data masked).
    #[serde(default)]
    pub plugin_log: PluginLog,
}

/// `limits = { … }` as written in TOML (resolved over the defaults by the host).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory cap per instance, e.g. `"32MiB"` (default 64MiB).
    pub memory: Option<String>,
    /// Time budget per record, e.g. `"5ms"` (default 10ms).
    pub time_per_record: Option<String>,
    /// Largest record a plugin may emit, e.g. `"1MiB"` (default 1MiB).
    pub max_output: Option<String>,
    /// Most records one record may split into (default 1000).
    pub max_split: Option<usize>,
}

// ---------------------------------------------------------------------------------------
// Sinks

/// `[sinks.<id>]`: the keys every sink has, plus its connector's.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// The keys every sink has.
    pub common: SinkCommon,
    /// The connector: `type` and its own keys.
    pub connector: ConnectorTable,
}

/// The keys every sink has.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// The nodes it reads from.
    pub inputs: Vec<String>,
    /// A sink plugin that encodes records for this destination (e.g. `ctr-item`).
    pub plugin: Option<String>,
    /// Handed to the sink plugin's `init`.
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub config: Option<toml::Table>,
    /// The environment variables `config` may read as `${VAR}` (none unless listed).
    #[serde(default)]
    pub config_env: Vec<String>,
    /// Sandbox limits for the sink plugin.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What happens to a record that cannot be encoded or written.
    #[serde(default)]
    pub on_error: OnError,
    /// Most records per write. Default: the destination's limit.
    pub max_records: Option<usize>,
    /// Most bytes per write, e.g. `"4MiB"`. Default: the destination's limit.
    pub max_bytes: Option<String>,
    /// How long a partial batch may wait for more records, e.g. `"200ms"`. Default `"100ms"`.
    pub linger: Option<String>,
    /// How the sink plugin's `info`+ log lines are written (default: customer data masked).
    #[serde(default)]
    pub plugin_log: PluginLog,
}

const SINK_COMMON_KEYS: &[&str] = &[
    "inputs",
    "plugin",
    "config",
    "config_env",
    "limits",
    "on_error",
    "max_records",
    "max_bytes",
    "linger",
    "plugin_log",
];

// ---------------------------------------------------------------------------------------
// Reading

/// The top level as written; node tables are read in a second step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    runtime: Option<toml::Value>,
    #[serde(default)]
    aws: Option<toml::Value>,
    #[serde(default)]
    timing: Option<toml::Value>,
    #[serde(default)]
    dead_letter: Option<toml::Value>,
    #[serde(default)]
    sources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    tables: BTreeMap<String, toml::Table>,
    #[serde(default)]
    transforms: BTreeMap<String, toml::Table>,
    #[serde(default)]
    sinks: BTreeMap<String, toml::Table>,
}

/// A pipeline file read as far as it could be: the configuration, and every problem with
/// it. A node whose own keys did not read is still there (named in `broken`, with the
/// `inputs` it lists), so the graph checks that follow report their problems too, instead of
/// echoes of the missing node.
#[derive(Debug, Clone, Default)]
pub struct ReadConfig {
    /// What was read.
    pub config: PipelineConfig,
    /// Every problem found.
    pub problems: Vec<ConfigError>,
}

impl PipelineConfig {
    /// Reads a pipeline file, failing on any problem (each named).
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigError>> {
        Self::read(path)?.strict()
    }

    /// Reads a pipeline file as far as it can. `Err` only when nothing could be read (the
    /// file is missing, or is not TOML).
    pub fn read(path: &Path) -> Result<ReadConfig, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![ConfigError::Read { path: path.display().to_string(), detail: e.to_string() }])?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::read_text(&text, &base, &|v| std::env::var(v).ok())
    }

    /// Parses pipeline text, failing on any problem; `env` answers `${VAR}`.
    pub fn parse(text: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
        Self::read_text(text, base_dir, env)?.strict()
    }

    /// Parses pipeline text as far as it can; `env` answers `${VAR}`.
    pub fn read_text(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ReadConfig, Vec<ConfigError>> {
        let table = interpolate(text, env)?;
        let raw =
            Raw::deserialize(toml::Value::Table(table)).map_err(|e| vec![ConfigError::Toml(tidy(&e.to_string()))])?;
        let mut errors = Vec::new();
        let mut cfg = PipelineConfig { base_dir: base_dir.to_path_buf(), ..Default::default() };

        cfg.runtime = section(raw.runtime, "runtime", &mut errors);
        cfg.aws = section(raw.aws, "aws", &mut errors);
        cfg.timing = section(raw.timing, "timing", &mut errors);
        cfg.dead_letter = section(raw.dead_letter, "dead_letter", &mut errors);

        for (id, table) in raw.sources {
            cfg.sources.insert(id, ConnectorTable::split(table));
        }
        for (id, table) in raw.tables {
            cfg.tables.insert(id, ConnectorTable::split(table));
        }
        for (id, table) in raw.transforms {
            let key = format!("transforms.{id}");
            let inputs = inputs_of(&table);
            match typed::<TransformConfig>(toml::Value::Table(table), &key) {
                Ok(t) => {
                    cfg.transforms.insert(id, t);
                }
                Err(e) => {
                    errors.push(e);
                    cfg.broken.insert(key);
                    cfg.transforms.insert(id, TransformConfig { inputs, ..TransformConfig::default() });
                }
            }
        }
        for (id, mut table) in raw.sinks {
            let key = format!("sinks.{id}");
            let mut common = toml::Table::new();
            for k in SINK_COMMON_KEYS {
                if let Some(v) = table.remove(*k) {
                    common.insert(k.to_string(), v);
                }
            }
            let inputs = inputs_of(&common);
            let common = typed::<SinkCommon>(toml::Value::Table(common), &key).unwrap_or_else(|e| {
                errors.push(e);
                cfg.broken.insert(key.clone());
                SinkCommon { inputs, ..SinkCommon::default() }
            });
            cfg.sinks.insert(id, SinkConfig { common, connector: ConnectorTable::split(table) });
        }
        Ok(ReadConfig { config: cfg, problems: errors })
    }

    /// A path from the pipeline file, relative to its directory (`..` folded away, so
    /// messages show `out/demo.db`, not `pipelines/../out/demo.db`).
    pub fn resolve(&self, path: &str) -> PathBuf {
        clean(&self.base_dir.join(path))
    }
}

/// Folds `.` and `name/..` out of a path, without touching the filesystem.
pub fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

impl ReadConfig {
    /// The configuration if there was no problem, else every problem.
    pub fn strict(self) -> Result<PipelineConfig, Vec<ConfigError>> {
        if self.problems.is_empty() { Ok(self.config) } else { Err(self.problems) }
    }
}

/// The `inputs` a node lists, as far as they read (for a node whose other keys did not).
fn inputs_of(table: &toml::Table) -> Vec<String> {
    match table.get("inputs") {
        Some(toml::Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn section<T: DeserializeOwned + Default>(value: Option<toml::Value>, key: &str, errors: &mut Vec<ConfigError>) -> T {
    match value {
        None => T::default(),
        Some(v) => typed(v, key).unwrap_or_else(|e| {
            errors.push(e);
            T::default()
        }),
    }
}

fn typed<T: DeserializeOwned>(value: toml::Value, key: &str) -> Result<T, ConfigError> {
    T::deserialize(value).map_err(|e| ConfigError::Key { key: key.to_string(), detail: tidy(&e.to_string()) })
}

/// serde's messages end with a newline and sometimes spell the enum; keep them short.
pub(crate) fn tidy(message: &str) -> String {
    message.trim().replace("internally tagged enum ", "").replace('`', "\"")
}

mod interpolate;
pub use interpolate::interpolate;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineConfig, Vec<ConfigError>> {
        PipelineConfig::parse(text, Path::new("."), &|v| (v == "HOME_DIR").then(|| "/home/x".to_string()))
    }

    #[test]
    fn clean_folds_parent_segments() {
        assert_eq!(clean(Path::new("pipelines/../out/demo.db")), PathBuf::from("out/demo.db"));
        assert_eq!(clean(Path::new("../x/./y")), PathBuf::from("../x/y"));
    }

    #[test]
    fn a_misspelt_common_key_is_rejected_too() {
        let errs = parse("[sinks.out]\ntype = \"stdout\"\ninput = [\"a\"]\n").unwrap_err();
        let msg = errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(msg.contains("sinks.out") && msg.contains("input"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errs =
            parse("[runtime]\nbatch = 1\n[transforms.t]\nplugin = \"x\"\n[sinks.o]\ntype = \"stdout\"\ninput = []\n")
                .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn a_node_whose_keys_do_not_read_keeps_its_inputs() {
        let read = PipelineConfig::read_text(
            "[sinks.o]\ntype = \"stdout\"\ninputs = [\"a\"]\nlinger = 5\n",
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        assert_eq!(read.problems.len(), 1);
        assert!(read.config.broken.contains("sinks.o"));
        assert_eq!(read.config.sinks["o"].common.inputs, vec!["a".to_string()]);
    }

    #[test]
    fn a_full_node_set_parses() {
        let cfg = parse(
            r#"
            [sources.gen]
            type = "generator"
            count = 10
            [tables.agents]
            type = "csv"
            path = "agents.csv"
            key = "username"
            [transforms.t]
            plugin = "redact-pii"
            inputs = ["gen"]
            config = { keep_last = 4 }
            limits = { memory = "32MiB", time_per_record = "5ms" }
            on_error = "drop"
            [sinks.db]
            type = "sqlite"
            inputs = ["t"]
            path = "${HOME_DIR}/out.db"
            table = "ctr"
            mode = "newer-wins"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.transforms["t"].on_error, OnError::Drop);
        let db = &cfg.sinks["db"].connector;
        assert_eq!(db.type_name, "sqlite");
        assert_eq!(db.options["path"].as_str(), Some("/home/x/out.db"));
    }
}
