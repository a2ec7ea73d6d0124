//! `--pgo` (for `cargo xtask dist` and `cargo xtask bench throughput`): ctrflow built with
//! profile-guided optimisation.
//!
//! Three steps, each in a target directory of its own under `<target dir>/pgo/`, so that
//! neither disturbs the plain release build (a change of `RUSTFLAGS` rebuilds every crate):
//!
//! 1. **Instrumented**: `cargo build --release -p ctrflow` with `-Cprofile-generate`.
//! 2. **Training**: that binary generates [`TRAINING_RECORDS`] contact records (a seed other
//!    than the benchmark's input, so the profile is not taken on the records it is measured
//!    on) and runs the local demo's graph on them from a file (`bench/throughput.toml`:
//!    the file source and the parser, the three plugins and the host's flattening, the SQLite
//!    and file sinks). Each process writes its counts; `llvm-profdata` (the `llvm-tools`
//!    rustup component, added here when missing) merges them.
//! 3. **Optimised**: the same build with `-Cprofile-use` on the merged profile.
//!
//! Why: on the throughput graph the optimised binary took 0.923 of the plain build's wall
//! time (median of 26 alternating pairs, faster in 23) and about 9% less user CPU
//! (docs/performance.md, twenty-fourth round). The bundled plugins are WebAssembly compiled
//! by wasmtime at run time and SQLite is C: neither is touched by it.
//!
//! From nothing it costs two full builds (about 22 minutes on 2 cores). Each new profile
//! rebuilds the whole optimised build (rustc names the profile as an input of every crate),
//! so the training runs again only when the instrumented binary changed: after an edit, the
//! edited crates instrumented, the training run and the whole optimised build (about 13
//! minutes); with nothing changed, seconds. `rm -rf <target dir>/pgo` starts over.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{build_ctrflow, host_triple, run, target_dir};

/// Records the training run generates and runs through the demo's graph.
const TRAINING_RECORDS: u64 = 20_000;
/// The generator's seed for them (the benchmark's input uses 7).
const TRAINING_SEED: u64 = 11;

/// Builds ctrflow with profile-guided optimisation for `target` (the host when `None`) and
/// returns the binary's path.
pub fn build(root: &Path, target: Option<&str>) -> anyhow::Result<PathBuf> {
    let profdata_tool = llvm_profdata(root)?;
    let dir = target_dir(root).join("pgo");
    let raw = dir.join("profiles");
    let merged = dir.join("ctrflow.profdata");

    eprintln!("\npgo 1/3: the instrumented build");
    let instrumented = build_ctrflow(
        root,
        target,
        Some(&dir.join("instrumented")),
        Some(&format!("-Cprofile-generate={}", raw.display())),
    )?;

    // A new profile rebuilds every crate of the optimised build (rustc names the profile as
    // an input of each): train again only when the instrumented binary changed.
    let trained_on = dir.join("trained-on");
    let stamp = stamp(&instrumented)?;
    if merged.exists() && std::fs::read_to_string(&trained_on).is_ok_and(|s| s == stamp) {
        eprintln!("\npgo 2/3: the last training run's profile is current (the instrumented build did not change)");
    } else {
        train(root, &instrumented, &dir, &raw, &merged, &profdata_tool)?;
        std::fs::write(&trained_on, stamp)?;
    }

    eprintln!("\npgo 3/3: the optimised build");
    build_ctrflow(root, target, Some(&dir.join("optimized")), Some(&format!("-Cprofile-use={}", merged.display())))
}

/// The training run: the instrumented binary generates records and runs the demo's graph on
/// them; their counts are merged into `merged`.
fn train(
    root: &Path,
    instrumented: &Path,
    dir: &Path,
    raw: &Path,
    merged: &Path,
    profdata_tool: &Path,
) -> anyhow::Result<()> {
    eprintln!("\npgo 2/3: the training run ({TRAINING_RECORDS} generated records through bench/throughput.toml)");
    let _ = std::fs::remove_dir_all(raw);
    std::fs::create_dir_all(raw)?;
    let work = dir.join("training");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let input = work.join("ctrs.jsonl");
    run(Command::new(instrumented)
        .current_dir(root)
        .args(["run", "bench/generate.toml", "--quiet"])
        .env("CTRFLOW_BENCH_RECORDS", TRAINING_RECORDS.to_string())
        .env("CTRFLOW_BENCH_SEED", TRAINING_SEED.to_string())
        .env("CTRFLOW_BENCH_INPUT", &input)
        .env("CTRFLOW_BENCH_OUT", work.join("generate")))?;
    run(Command::new(instrumented)
        .current_dir(root)
        .args(["run", "bench/throughput.toml", "--quiet"])
        .env("CTRFLOW_BENCH_INPUT", &input)
        .env("CTRFLOW_BENCH_OUT", work.join("graph")))?;
    let profiles = std::fs::read_dir(raw)?
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "profraw")))
        .count();
    if profiles == 0 {
        bail!("the training run wrote no profile to {}", raw.display());
    }
    run(Command::new(profdata_tool).arg("merge").arg("-o").arg(merged).arg(raw))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// What identifies a build of the binary at `path`: its size and modification time.
fn stamp(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("{} is missing", path.display()))?;
    Ok(format!("{} {:?}", meta.len(), meta.modified()?))
}

/// The toolchain's `llvm-profdata` (rustup's `llvm-tools` component, added when missing).
fn llvm_profdata(root: &Path) -> anyhow::Result<PathBuf> {
    let sysroot = Command::new("rustc").current_dir(root).args(["--print", "sysroot"]).output()?;
    if !sysroot.status.success() {
        bail!("`rustc --print sysroot` failed: {}", String::from_utf8_lossy(&sysroot.stderr).trim());
    }
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    let tool = sysroot.join("lib/rustlib").join(host_triple()).join("bin/llvm-profdata");
    if !tool.exists() {
        run(Command::new("rustup").current_dir(root).args(["component", "add", "llvm-tools"]))
            .context("profile-guided builds need rustup's llvm-tools component")?;
    }
    if !tool.exists() {
        bail!("{} is missing after `rustup component add llvm-tools`", tool.display());
    }
    Ok(tool)
}
