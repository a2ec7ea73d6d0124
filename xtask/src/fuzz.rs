//! `cargo xtask fuzz [--seconds N] [target…]`: builds the coverage-guided fuzz targets in
//! `fuzz/` and runs each for a set time, then prints executions and findings per target.
//!
//! The targets are `cargo fuzz` targets (libfuzzer-sys), but `cargo fuzz` wants a nightly
//! toolchain and this project pins a stable one. So this builds them with plain `cargo`
//! and the instrumentation flags `cargo fuzz` passes (SanitizerCoverage with 8-bit
//! counters, PC table and comparison tracing; debug assertions and overflow checks on);
//! the one thing left out is AddressSanitizer, which needs an unstable flag and buys little
//! for code without `unsafe`. Not part of `cargo xtask test`: fuzzing is open-ended.
//!
//! A finding leaves the crashing input in `fuzz/artifacts/<target>/`; replay it with
//! `<fuzz target dir>/<triple>/release/<target> fuzz/artifacts/<target>/crash-…`.
//! The growing corpus lives in `fuzz/corpus/<target>/` (not committed); the seeds are the
//! repository's own pipelines and CTR fixtures.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::{cargo, host_triple, render, run, target_dir};

/// Each target, with the repository folders that seed its corpus.
const TARGETS: &[(&str, &[&str])] = &[
    ("pipeline_config", &["pipelines"]),
    ("source_framing", &["tests/fixtures/ctr"]),
    ("ctr_check", &["tests/fixtures/ctr"]),
    ("kpl_deaggregate", &[]),
    ("field_path", &["fuzz/seeds/field_path"]),
];

/// The flags `cargo fuzz build --sanitizer none` gives rustc.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg=fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

pub fn fuzz(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 60u64;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => seconds = it.next().context("--seconds needs a number")?.parse()?,
            name if TARGETS.iter().any(|(t, _)| *t == name) => chosen.push(name.to_string()),
            other => bail!(
                "unknown fuzz target {other:?}; the targets: {}",
                TARGETS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let targets: Vec<_> = TARGETS.iter().filter(|(t, _)| chosen.is_empty() || chosen.iter().any(|c| c == t)).collect();

    // Its own target directory: instrumented artifacts must never be mixed with the normal
    // build's. The plugins (built by ctrflow's build script) are shared with the normal build.
    let fuzz_target_dir = target_dir(root).join("fuzz");
    run(cargo(&root.join("fuzz"))
        .args(["build", "--release", "--bins", "--target", host_triple()])
        .env("CARGO_TARGET_DIR", &fuzz_target_dir)
        .env("CTRFLOW_PLUGINS_TARGET_DIR", target_dir(root).join("plugins-wasm"))
        .env("RUSTFLAGS", RUSTFLAGS.join(" ")))?;
    let bin_dir = fuzz_target_dir.join(host_triple()).join("release");

    let mut report = Vec::new();
    for (name, seeds) in targets {
        let corpus = root.join("fuzz/corpus").join(name);
        let artifacts = root.join("fuzz/artifacts").join(name);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let mut cmd = Command::new(bin_dir.join(name));
        cmd.current_dir(root)
            .arg(&corpus)
            .args(seeds.iter().map(|s| root.join(s)).filter(|p| p.is_dir()))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048", "-max_len=65536"])
            .stderr(Stdio::piped());
        eprintln!("$ {}", render(&cmd));
        let mut child = cmd.spawn().with_context(|| format!("could not start {}", render(&cmd)))?;
        let mut outcome = Outcome { name, ..Outcome::default() };
        for line in BufReader::new(child.stderr.take().context("piped stderr")?).lines() {
            let line = line?;
            outcome.read(&line);
            // The periodic progress lines are noise over minutes; keep findings and stats.
            if !line.starts_with('#') {
                eprintln!("{line}");
            }
        }
        outcome.exit_ok = child.wait()?.success();
        report.push(outcome);
    }

    println!("\n{:<16} {:>12} {:>10} {:>8}  findings", "target", "executions", "exec/s", "corpus");
    for o in &report {
        let finding = match (&o.finding, o.exit_ok) {
            (Some(f), _) => f.clone(),
            (None, true) => "none".to_string(),
            (None, false) => "the fuzzer failed (see above)".to_string(),
        };
        println!("{:<16} {:>12} {:>10} {:>8}  {finding}", o.name, o.executions, o.exec_per_sec, o.corpus);
    }
    let failed = report.iter().filter(|o| o.finding.is_some() || !o.exit_ok).count();
    if failed > 0 {
        bail!("{failed} fuzz target(s) found a problem; inputs are in fuzz/artifacts/");
    }
    Ok(())
}

/// What one libFuzzer run printed that matters.
#[derive(Default)]
struct Outcome<'a> {
    name: &'a str,
    executions: u64,
    exec_per_sec: u64,
    corpus: u64,
    finding: Option<String>,
    exit_ok: bool,
}

impl Outcome<'_> {
    fn read(&mut self, line: &str) {
        let stat = |key: &str| line.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = stat("stat::number_of_executed_units:") {
            self.executions = n;
        } else if let Some(n) = stat("stat::average_exec_per_sec:") {
            self.exec_per_sec = n;
        } else if line.starts_with('#') {
            // `#1234  pulse  cov: … corp: 56/7890b …`: the corpus size so far.
            if let Some(corp) = line.split_whitespace().skip_while(|w| *w != "corp:").nth(1) {
                self.corpus = corp.split('/').next().and_then(|n| n.parse().ok()).unwrap_or(self.corpus);
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            self.finding = Some(path.trim().to_string());
        } else if line.starts_with("SUMMARY: libFuzzer:") && self.finding.is_none() {
            self.finding = Some(line.trim_start_matches("SUMMARY: libFuzzer:").trim().to_string());
        }
    }
}
