//! `ctrflow test`: unit tests for a whole pipeline, without running it.
//!
//! A test file (by default the pipeline's sidecar, `x.tests.toml` beside `x.toml`) lists
//! cases; each names records to put into nodes, and what must be true of what came out
//! where. Each case builds the pipeline afresh (its tables answered by rows the case gives,
//! where it gives some), walks its records through the real plugins in the real host
//! ([`walk`]), and checks its expectations ([`expect`]). No source is read and no sink is
//! written to. The format is in docs/testing-pipelines.md.

pub mod expect;
pub mod spec;
pub mod walk;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::config::{PipelineConfig, ReadConfig};
use crate::connectors::memory_table::MemoryTable;
use crate::contract::Lookup;
use crate::host::Host;
use crate::pipeline::Pipeline;
use spec::{TestCase, TestFile, json, read_records};

/// How a run of test files went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases that held.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
}

/// Runs every case of `files` (none: the pipeline's sidecar file) against the pipeline at
/// `pipeline`, writing one line per case and a diff per failure to `out`. `Err` only when a
/// file cannot be read or the pipeline cannot be built at all.
pub fn run(pipeline: &Path, files: &[PathBuf], host: &Host, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let read = PipelineConfig::read(pipeline).map_err(|errs| {
        anyhow::anyhow!(
            "{}: {}",
            pipeline.display(),
            errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })?;
    let files = if files.is_empty() { vec![TestFile::sidecar(pipeline)] } else { files.to_vec() };
    let mut summary = Summary::default();
    for file in &files {
        let tests = TestFile::load(file).map_err(anyhow::Error::msg)?;
        let base = file.parent().unwrap_or(Path::new("."));
        writeln!(out, "{}", file.display())?;
        for case in &tests.tests {
            match run_case(&read, case, base, host) {
                Ok(()) => {
                    summary.passed += 1;
                    writeln!(out, "  ok    {}", case.name)?;
                }
                Err(lines) => {
                    summary.failed += 1;
                    writeln!(out, "  FAIL  {}", case.name)?;
                    for l in lines {
                        writeln!(out, "        {l}")?;
                    }
                }
            }
        }
    }
    let total = summary.passed + summary.failed;
    writeln!(out, "{} of {total} pipeline test(s) held; {} did not.", summary.passed, summary.failed)?;
    Ok(summary)
}

/// One case: `Err` holds the lines that say why it failed.
fn run_case(read: &ReadConfig, case: &TestCase, base: &Path, host: &Host) -> Result<(), Vec<String>> {
    let tables = inline_tables(&read.config, case).map_err(|e| vec![e])?;
    let pipeline = Pipeline::build_with_tables(read.clone(), host, tables).map_err(|problems| {
        let mut lines = vec!["the pipeline does not build:".to_string()];
        lines.extend(problems.iter().map(|p| format!("  - {p}")));
        lines
    })?;
    let mut inputs = Vec::new();
    for input in &case.inputs {
        let mut docs: Vec<Value> = input.records.iter().map(|t| json(&toml::Value::Table(t.clone()))).collect();
        if let Some(file) = &input.file {
            docs.extend(read_records(&base.join(file)).map_err(|e| vec![format!("inputs: {e}")])?);
        }
        inputs.push((input.node.clone(), docs));
    }
    let seen = walk::walk(&pipeline, inputs).map_err(|e| vec![e])?;
    let mut lines = Vec::new();
    if let Some(why) = &seen.halted {
        lines.push(format!("the pipeline would stop: {why}"));
    }
    let outputs = |node: &str| pipeline.transforms.get(node).map(|t| t.plugin.outputs().to_vec()).unwrap_or_default();
    for (i, exp) in case.expect.iter().enumerate() {
        if let Err(why) = expect::check(exp, &seen, &pipeline.graph, &outputs) {
            lines.push(format!("expect #{} ({}):", i + 1, expect::describe(exp)));
            lines.extend(why.into_iter().map(|l| format!("  {l}")));
        }
    }
    if case.expect.is_empty() {
        lines.push("no [[tests.expect]]: a test that checks nothing cannot fail".into());
    }
    if lines.is_empty() { Ok(()) } else { Err(lines) }
}

/// The case's `[tests.tables.<id>]`, as lookups, keyed by their field (default: the declared
/// table's `key`).
fn inline_tables(cfg: &PipelineConfig, case: &TestCase) -> Result<HashMap<String, Arc<dyn Lookup>>, String> {
    let mut out: HashMap<String, Arc<dyn Lookup>> = HashMap::new();
    for (id, table) in &case.tables {
        let Some(declared) = cfg.tables.get(id) else {
            let ids = cfg.tables.keys().map(String::as_str);
            let hint = crate::graph::suggest(id, ids).map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default();
            return Err(format!("tables.{id}: the pipeline declares no such table{hint}"));
        };
        let key = table
            .key
            .clone()
            .or_else(|| declared.options.get("key").and_then(|k| k.as_str()).map(str::to_string))
            .ok_or_else(|| format!("tables.{id}: say which field rows are found by (`key = \"…\"`)"))?;
        let rows = table.rows.iter().map(|r| json(&toml::Value::Table(r.clone()))).collect();
        out.insert(id.clone(), Arc::new(MemoryTable::from_rows(rows, &key)));
    }
    Ok(out)
}
