//! `cargo xtask dist [--target TRIPLE]`: a tarball to deploy ctrflow from, checked before it
//! is written.
//!
//! The tarball `ctrflow-<version>-<target>.tar.gz` (in `<target dir>/dist/`) holds the
//! release binary (the bundled plugins are compiled into it), the systemd unit, an example
//! environment file and production pipeline, a `Dockerfile` and the deployment README, all
//! from `deploy/`. The target is the static `<arch>-unknown-linux-musl` when that Rust
//! target is installed, else the host's (a glibc binary; the Dockerfile then starts from
//! distroless/cc instead of scratch).
//!
//! Before packing, the staged files are checked: the binary runs, lists its plugins,
//! validates the example pipeline and runs the local demo end to end; the unit
//! passes `systemd-analyze verify` (when the machine has it) and carries the hardening
//! and drain settings the README promises. It builds no container image: that needs a
//! container engine, which the Dockerfile's instructions leave to wherever one runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{build_ctrflow, host_triple, run, target_dir, wasm_target};

/// The unit's settings the deployment README promises; the check fails without them.
const UNIT_MUST_HAVE: [&str; 12] = [
    "DynamicUser=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "NoNewPrivileges=yes",
    "StateDirectory=ctrflow",
    "CacheDirectory=ctrflow",
    "Restart=on-failure",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=",
    "CapabilityBoundingSet=",
    "SystemCallFilter=@system-service",
    "ExecStart=/usr/local/bin/ctrflow run /etc/ctrflow/pipeline.toml",
];

/// The files copied from `deploy/` as they are.
const DEPLOY_FILES: [&str; 4] = ["ctrflow.service", "ctrflow.env", "pipeline.toml", "README.md"];

pub fn dist(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut target = None;
    let mut pgo = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => target = Some(it.next().context("--target needs a triple")?.clone()),
            "--pgo" => pgo = true,
            other => bail!("dist: unknown argument {other:?} (usage: cargo xtask dist [--target TRIPLE] [--pgo])"),
        }
    }
    let installed = installed_targets(root);
    let musl = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let target = target.unwrap_or_else(|| {
        if installed.contains(&musl) {
            musl.clone()
        } else {
            eprintln!(
                "note: {musl} is not installed (`rustup target add {musl}`); packing a {} binary, linked against glibc",
                host_triple()
            );
            host_triple().to_string()
        }
    });
    if target != host_triple() && !installed.contains(&target) {
        bail!("the Rust target {target} is not installed: `rustup target add {target}` first");
    }
    wasm_target(root)?;
    let binary =
        if pgo { crate::pgo::build(root, Some(&target))? } else { build_ctrflow(root, Some(&target), None, None)? };

    let version = env!("CARGO_PKG_VERSION");
    let name = format!("ctrflow-{version}-{target}");
    let dist_dir = target_dir(root).join("dist");
    let stage = dist_dir.join(&name);
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("bin"))?;
    std::fs::create_dir_all(stage.join("state"))?;
    std::fs::write(stage.join("state/.keep"), "")?;
    std::fs::copy(&binary, stage.join("bin/ctrflow")).with_context(|| format!("copy {}", binary.display()))?;
    // The release profile keeps debug info (for profiling); a deployed binary needs none.
    match which("strip") {
        Some(strip) => run(Command::new(strip).arg(stage.join("bin/ctrflow")))?,
        None => eprintln!("note: no `strip` on PATH; the packed binary keeps its debug info"),
    }
    for f in DEPLOY_FILES {
        std::fs::copy(root.join("deploy").join(f), stage.join(f)).with_context(|| format!("copy deploy/{f}"))?;
    }
    let is_static = target.contains("musl");
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile"))?;
    let dockerfile = if is_static {
        dockerfile.replace("ARG BASE=gcr.io/distroless/cc-debian12:nonroot", "ARG BASE=scratch")
    } else {
        dockerfile
    };
    std::fs::write(stage.join("Dockerfile"), dockerfile)?;

    check(root, &stage)?;

    let tarball = dist_dir.join(format!("{name}.tar.gz"));
    run(Command::new("tar").arg("-C").arg(&dist_dir).arg("-czf").arg(&tarball).arg(&name))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}\n  binary {} ({:.1} MiB, {}), tarball {:.1} MiB",
        tarball.display(),
        stage.join("bin/ctrflow").display(),
        size(&stage.join("bin/ctrflow")) as f64 / (1 << 20) as f64,
        if is_static { "static" } else { "dynamically linked against glibc" },
        size(&tarball) as f64 / (1 << 20) as f64,
    );
    Ok(())
}

fn installed_targets(root: &Path) -> Vec<String> {
    Command::new("rustup")
        .current_dir(root)
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Checks the staged package; fails naming what is wrong.
pub fn check(root: &Path, stage: &Path) -> anyhow::Result<()> {
    let bin = stage.join("bin/ctrflow");
    let output = |cmd: &mut Command| -> anyhow::Result<String> {
        let out = cmd.output().with_context(|| format!("run {}", bin.display()))?;
        if !out.status.success() {
            bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    output(Command::new(&bin).arg("--version"))?;
    let plugins = output(Command::new(&bin).arg("plugins"))?;
    for p in ["redact-pii", "enrich-lookup", "route-by-field", "ctr-flatten", "ctr-item"] {
        if !plugins.contains(p) {
            bail!("the packed binary does not bundle {p}:\n{plugins}");
        }
    }

    let work = std::env::temp_dir().join(format!("ctrflow-dist-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // The example pipeline, with the example environment.
    let mut validate = Command::new(&bin);
    validate.arg("validate").arg(stage.join("pipeline.toml"));
    for line in std::fs::read_to_string(stage.join("ctrflow.env"))?.lines() {
        if let Some((k, v)) = line.split_once('=').filter(|_| !line.trim_start().starts_with('#')) {
            validate.env(k.trim(), v.trim());
        }
    }
    output(&mut validate)?;

    // The local demo, end to end, with the packed binary (1,000 contacts).
    copy_dir(&root.join("pipelines"), &work.join("pipelines"))?;
    output(
        Command::new(&bin)
            .current_dir(&work)
            .args(["run", "pipelines/local-demo.toml", "--quiet"])
            .env("DEMO_COUNT", "1000"),
    )?;
    let lake = work.join("out/demo/lake");
    let demo_ok = work.join("out/demo/contacts.db").is_file() && lake.is_dir();
    let _ = std::fs::remove_dir_all(&work);
    if !demo_ok {
        bail!("the packed binary ran the demo but wrote no SQLite database or lake");
    }

    check_unit(stage, &bin)
}

fn check_unit(stage: &Path, bin: &Path) -> anyhow::Result<()> {
    let unit = std::fs::read_to_string(stage.join("ctrflow.service"))?;
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    let missing: Vec<&str> =
        UNIT_MUST_HAVE.iter().copied().filter(|want| !lines.iter().any(|l| l.starts_with(want))).collect();
    if !missing.is_empty() {
        bail!("ctrflow.service lacks {missing:?}");
    }
    for section in ["[Unit]", "[Service]", "[Install]"] {
        if !lines.contains(&section) {
            bail!("ctrflow.service has no {section} section");
        }
    }
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("note: systemd-analyze is not installed; the unit was checked for its settings only");
        return Ok(());
    };
    // `verify` checks that ExecStart's program exists: point it at the packed binary.
    let dir = stage.join("verify");
    std::fs::create_dir_all(&dir)?;
    let abs = std::fs::canonicalize(bin)?;
    std::fs::write(dir.join("ctrflow.service"), unit.replace("/usr/local/bin/ctrflow", &abs.to_string_lossy()))?;
    let out = Command::new(analyze).arg("verify").arg(dir.join("ctrflow.service")).output()?;
    let _ = std::fs::remove_dir_all(&dir);
    // `verify` exits 0 on unknown keys and bad values, only saying so: any word from it is
    // a problem.
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !said.trim().is_empty() {
        bail!("systemd-analyze verify ctrflow.service:\n{said}");
    }
    eprintln!("ctrflow.service: systemd-analyze verify passed");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        let (p, d) = (e.path(), to.join(e.file_name()));
        if p.is_dir() {
            copy_dir(&p, &d)?;
        } else {
            std::fs::copy(&p, &d)?;
        }
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}
