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
}

/// `[runtime]`: how the process runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where checkpoints live (relative to the pipeline file). Default `.ctrflow-state`.
    pub state_dir: String,
    /// Records per batch read from a source. Default 256.
    pub batch_size: usize,
    /// Batches each node's input channel holds before it pushes back. Default 8.
    pub channel_capacity: usize,
    /// The largest record accepted from a source, e.g. `"1MiB"` (Kinesis's own limit).
    /// Larger records go to the dead letters.
    pub max_record_size: String,
    /// Serve Prometheus metrics on this address, e.g. `"127.0.0.1:9598"`. Default: off.
    pub metrics_addr: Option<String>,
    /// Where compiled plugins are cached. Default `~/.cache/ctrflow/plugins`; `""` turns
    /// the cache off.
    pub plugin_cache: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: ".ctrflow-state".into(),
            batch_size: 256,
            channel_capacity: 8,
            max_record_size: "1MiB".into(),
            metrics_addr: None,
            plugin_cache: None,
        }
    }
}

/// `[aws]`: settings every AWS connector shares. Credentials come from the default chain
/// (environment, profile, instance role).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region, e.g. `"eu-west-2"`. Default: from the environment / profile.
    pub region: Option<String>,
    /// Endpoint URL for every AWS service (an emulator such as moto). Per-connector
    /// `endpoint_url` overrides it.
    pub endpoint_url: Option<String>,
}

/// `[timing]`: how hop times are taken.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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

// ---------------------------------------------------------------------------------------
// Sources

/// `[sources.<id>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// The connector.
    pub kind: SourceKind,
}

/// A source connector, chosen by `type`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceKind {
    /// Synthetic CTRs.
    Generator(GeneratorConfig),
    /// Files of CTRs.
    File(FileSourceConfig),
    /// CTRs on standard input, one JSON document after another.
    Stdin(StdinConfig),
    /// A Kinesis data stream.
    Kinesis(KinesisSourceConfig),
}

/// `type = "generator"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// How many records; default 1000. `0` means no end.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Records per second; `0` (default) is as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: f64,
    /// Same seed, same records. Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Place timestamps as if the run started at this RFC 3339 time, advancing with the
    /// rate (fully reproducible output). Default: the wall clock.
    pub start_time: Option<String>,
}

fn default_count() -> u64 {
    1000
}
fn default_seed() -> u64 {
    1
}

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file or a glob (`data/*.jsonl.gz`), relative to the pipeline file. Files ending
    /// in `.gz` are decompressed. Each holds JSON lines, a JSON array, or JSON documents
    /// one after another.
    pub path: String,
    /// Resume from the last checkpoint after a restart. Default true.
    #[serde(default = "yes")]
    pub checkpoint: bool,
}

fn yes() -> bool {
    true
}

/// `type = "stdin"`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {}

/// `type = "kinesis"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// The stream name.
    pub stream: String,
    /// Where to start without a checkpoint: `trim_horizon` (default), `latest`, `at_timestamp`.
    #[serde(default = "default_start")]
    pub start: String,
    /// With `start = "at_timestamp"`: an RFC 3339 time.
    pub timestamp: Option<String>,
    /// Where checkpoints live: omitted, the state directory; `{ dynamodb = "<table>" }`, a
    /// DynamoDB table with the Kinesis Client Library's lease schema (created if missing;
    /// leases are taken and checkpoints written with conditional writes, but not yet
    /// balanced across a fleet: one process per stream).
    pub checkpoint: Option<KinesisCheckpoint>,
    /// How long to wait after a shard read came back empty. Default `"1s"`. (Reads of a
    /// shard are at least 200 ms apart whatever this says: 5 GetRecords per second per shard.)
    pub poll_interval: Option<String>,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
    /// Stop once every shard is read to its current end (for tests and backfills): an empty
    /// read at the tip (`MillisBehindLatest` 0) or the end of a closed shard. Default false.
    #[serde(default)]
    pub stop_at_end: bool,
}

fn default_start() -> String {
    "trim_horizon".into()
}

/// `checkpoint = { dynamodb = "<table>" }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisCheckpoint {
    /// A DynamoDB table holding shard leases and checkpoints (KCL schema).
    pub dynamodb: String,
}

// ---------------------------------------------------------------------------------------
// Tables

/// `[tables.<id>]`: lookup data for enrich plugins.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TableConfig {
    /// A CSV file with a header row, loaded into memory.
    Csv(FileTableConfig),
    /// A JSON array of objects, or JSON lines, loaded into memory.
    Json(FileTableConfig),
    /// A DynamoDB table, read through a cache.
    Dynamodb(DynamoTableConfig),
}

/// `type = "csv"` / `type = "json"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// The file, relative to the pipeline file.
    pub path: String,
    /// The column (CSV) or field (JSON) rows are found by.
    pub key: String,
}

/// `type = "dynamodb"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoTableConfig {
    /// The DynamoDB table name.
    pub table: String,
    /// The partition key attribute name.
    pub key: String,
    /// How long a looked-up row is cached, e.g. `"5m"`. Default `"60s"`.
    pub ttl: Option<String>,
    /// How many rows the cache holds. Default 10000.
    pub capacity: Option<usize>,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Transforms

/// `[transforms.<id>]`: a transform or enrich plugin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
}

/// `limits = { … }` as written in TOML (resolved over the defaults by the host).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
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
    /// The connector.
    pub kind: SinkKind,
}

/// The keys every sink has.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// The nodes it reads from.
    pub inputs: Vec<String>,
    /// A sink plugin that encodes records for this destination (e.g. `ctr-item`).
    pub plugin: Option<String>,
    /// Handed to the sink plugin's `init`.
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
}

const SINK_COMMON_KEYS: &[&str] =
    &["inputs", "plugin", "config", "config_env", "limits", "on_error", "max_records", "max_bytes", "linger"];

/// A sink connector, chosen by `type`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// A SQLite database file.
    Sqlite(SqliteSinkConfig),
    /// JSON-lines files.
    File(FileSinkConfig),
    /// JSON lines on standard output.
    Stdout(StdoutSinkConfig),
    /// A DynamoDB table.
    Dynamodb(DynamoSinkConfig),
    /// A Firehose delivery stream.
    Firehose(FirehoseSinkConfig),
    /// A Kinesis data stream.
    Kinesis(KinesisSinkConfig),
}

impl SinkKind {
    /// The `type` as written.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Sqlite(_) => "sqlite",
            SinkKind::File(_) => "file",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Dynamodb(_) => "dynamodb",
            SinkKind::Firehose(_) => "firehose",
            SinkKind::Kinesis(_) => "kinesis",
        }
    }
}

/// How a keyed sink treats a record whose key it already holds.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// Every record is a new row.
    #[default]
    Append,
    /// DynamoDB: an unconditional put.
    Put,
    /// One row per `ContactId`, the one with the greatest `LastUpdateTimestamp`; on a tie
    /// the first written stays.
    NewerWins,
}

/// `type = "sqlite"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// The database file, relative to the pipeline file (created if missing).
    pub path: String,
    /// The table (created if missing).
    pub table: String,
    /// `append` (default) or `newer-wins`.
    #[serde(default)]
    pub mode: WriteMode,
}

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file, relative to the pipeline file. May hold date placeholders taken from the
    /// record's `date_field`: `%Y %m %d %H %M` (e.g. `lake/%Y/%m/%d/%H/ctr.jsonl`, the
    /// layout of Firehose's `yyyy/MM/dd/HH` prefixes).
    pub path: String,
    /// The record field the placeholders are taken from. Default `LastUpdateTimestamp`
    /// (a record without it uses the time it is written).
    pub date_field: Option<String>,
    /// Start a new file once this many bytes were written, e.g. `"128MiB"`.
    pub rotate_bytes: Option<String>,
    /// Start a new file after this long, e.g. `"1h"`.
    pub rotate_interval: Option<String>,
}

/// `type = "stdout"`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// `type = "dynamodb"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoSinkConfig {
    /// The table name.
    pub table: String,
    /// `put` (default) or `newer-wins`.
    #[serde(default = "default_put")]
    pub mode: WriteMode,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

fn default_put() -> WriteMode {
    WriteMode::Put
}

/// `type = "firehose"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirehoseSinkConfig {
    /// The delivery stream name.
    pub delivery_stream: String,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

/// `type = "kinesis"` (as a sink).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkConfig {
    /// The stream name.
    pub stream: String,
    /// The field whose value is the partition key. Default `ContactId`.
    #[serde(default = "default_partition_key")]
    pub partition_key: String,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

fn default_partition_key() -> String {
    "ContactId".into()
}

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
    tables: BTreeMap<String, toml::Value>,
    #[serde(default)]
    transforms: BTreeMap<String, toml::Value>,
    #[serde(default)]
    sinks: BTreeMap<String, toml::Table>,
}

impl PipelineConfig {
    /// Reads a pipeline file. Returns every problem found, not just the first.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![ConfigError::Read { path: path.display().to_string(), detail: e.to_string() }])?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base, &|v| std::env::var(v).ok())
    }

    /// Parses pipeline text; `env` answers `${VAR}`.
    pub fn parse(text: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
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
            let key = format!("sources.{id}");
            match typed::<SourceKind>(toml::Value::Table(table), &key) {
                Ok(kind) => {
                    cfg.sources.insert(id, SourceConfig { kind });
                }
                Err(e) => errors.push(e),
            }
        }
        for (id, value) in raw.tables {
            match typed::<TableConfig>(value, &format!("tables.{id}")) {
                Ok(t) => {
                    cfg.tables.insert(id, t);
                }
                Err(e) => errors.push(e),
            }
        }
        for (id, value) in raw.transforms {
            match typed::<TransformConfig>(value, &format!("transforms.{id}")) {
                Ok(t) => {
                    cfg.transforms.insert(id, t);
                }
                Err(e) => errors.push(e),
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
            let common = typed::<SinkCommon>(toml::Value::Table(common), &key);
            let kind = typed::<SinkKind>(toml::Value::Table(table), &key);
            match (common, kind) {
                (Ok(common), Ok(kind)) => {
                    cfg.sinks.insert(id, SinkConfig { common, kind });
                }
                (c, k) => errors.extend(c.err().into_iter().chain(k.err())),
            }
        }
        if errors.is_empty() { Ok(cfg) } else { Err(errors) }
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
fn tidy(message: &str) -> String {
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
    fn a_misspelt_sink_key_is_rejected_with_its_name() {
        let errs =
            parse("[sinks.db]\ntype = \"sqlite\"\ninputs = [\"a\"]\npath = \"x.db\"\ntabel = \"t\"\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(msg.starts_with("sinks.db:"), "{msg}");
        assert!(msg.contains("tabel"), "{msg}");
    }

    #[test]
    fn a_misspelt_common_key_is_rejected_too() {
        let errs = parse("[sinks.out]\ntype = \"stdout\"\ninput = [\"a\"]\n").unwrap_err();
        let msg = errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(msg.contains("sinks.out") && msg.contains("input"), "{msg}");
    }

    #[test]
    fn an_unknown_type_names_the_node() {
        let errs = parse("[sources.s]\ntype = \"kafka\"\n").unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.starts_with("sources.s:") && msg.contains("kafka"), "{msg}");
    }

    #[test]
    fn a_wrong_type_names_the_node_and_key() {
        let errs = parse("[sources.s]\ntype = \"generator\"\ncount = \"many\"\n").unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.starts_with("sources.s:") && msg.contains("many"), "{msg}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errs =
            parse("[runtime]\nbatch = 1\n[sources.s]\ntype = \"kafka\"\n[transforms.t]\nplugin = \"x\"\n").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
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
        match &cfg.sinks["db"].kind {
            SinkKind::Sqlite(s) => {
                assert_eq!(s.path, "/home/x/out.db");
                assert_eq!(s.mode, WriteMode::NewerWins);
            }
            other => panic!("{other:?}"),
        }
    }
}
