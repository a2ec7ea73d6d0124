//! The project's own build steps, so a fresh clone needs nothing installed by hand:
//!
//! - `cargo xtask demo`  — builds ctrflow (and, through its build script, the plugins)
//!   and runs `pipelines/local-demo.toml`, writing the reports to `out/demo/`.
//! - `cargo xtask test`  — everything CI runs: formatting, the workspace tests (which
//!   start their own AWS emulator), and the plugins' native unit tests.
//! - `cargo xtask bench` — the benchmarks (criterion); `cargo xtask bench throughput
//!   [--records N] [--rounds R] [--pgo]` — ctrflow against a Python baseline and the native
//!   limit ([`throughput`], docs/performance.md).
//! - `cargo xtask fuzz [--seconds N] [target…]` — runs the fuzz targets in `fuzz/` for N
//!   seconds each (default 60) and prints executions and findings; not part of `test`.
//! - `cargo xtask dist [--pgo]` — the tarball to deploy: binary, systemd unit, Dockerfile
//!   (see `deploy/README.md`); `--pgo` builds the binary with profile-guided optimisation
//!   ([`pgo`]).
//!
//! Each makes sure the `wasm32-wasip2` target is installed first (this machine sets
//! `RUSTUP_AUTO_INSTALL=0`, so `rust-toolchain.toml` alone does not add it), and the test
//! step makes sure the emulator (moto server, from PyPI) is installed in a virtual
//! environment outside the clone, and that the tools for plugins in other languages
//! (componentize-py, componentize-js) are in the cache ([`lang_tools`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod dist;
mod fuzz;
mod pgo;
mod throughput;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo run` sets CARGO_MANIFEST_DIR for the running process: prefer it to the value
    // compiled in, so a build directory shared between clones (CI's) never points the xtask
    // at another clone.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let root = manifest.parent().context("xtask/ is in the repository root")?.to_path_buf();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("fuzz") => fuzz::fuzz(&root, &args[1..]),
        Some("dist") => dist::dist(&root, &args[1..]),
        Some("moto") => {
            println!("{}", moto_server(&root)?.display());
            Ok(())
        }
        Some("lang-tools") => lang_tools(&root),
        Some("lambda-python") => {
            println!("{}", lambda_python(&root)?.display());
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask <demo | test | bench | fuzz | dist | moto> [args…]");
            eprintln!("  demo   run the local demo pipeline (pipelines/local-demo.toml)");
            eprintln!("  test   run every test CI runs");
            eprintln!(
                "  bench  run the benchmarks (`bench throughput [--records N] [--rounds R] [--pgo]`: the throughput comparison)"
            );
            eprintln!("  fuzz   run each fuzz target for a while: [--seconds N] [target…]");
            eprintln!("  dist   build and check the tarball to deploy (binary, systemd unit, Dockerfile); [--pgo]");
            eprintln!("  moto   install the AWS emulator if needed and print its path");
            eprintln!("  lang-tools  install componentize-py and componentize-js (Python and JS plugins)");
            eprintln!("  lambda-python  install AWS's Python runtime interface client (the lambda::measure baseline)");
            std::process::exit(2);
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {}", render(cmd));
    let status = cmd.status().with_context(|| format!("could not start {}", render(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", render(cmd));
    }
    Ok(())
}

fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root);
    c
}

fn wasm_target(root: &Path) -> anyhow::Result<()> {
    run(Command::new("rustup").current_dir(root).args(["target", "add", "wasm32-wasip2"]))
}

/// `cargo build --release -p ctrflow` for `target` (the host's when `None`), into the target
/// directory `dir` (`None`: the usual one, [`target_dir`]), with `rustflag` added to the
/// user's `RUSTFLAGS` when given; the binary's path.
fn build_ctrflow(
    root: &Path,
    target: Option<&str>,
    dir: Option<&Path>,
    rustflag: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let mut build = cargo(root);
    build.args(["build", "--release", "-p", "ctrflow"]);
    let mut binary = target_dir(root);
    if let Some(dir) = dir {
        build.env("CARGO_TARGET_DIR", dir);
        binary = dir.to_path_buf();
    }
    if let Some(flag) = rustflag {
        let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        if !flags.is_empty() {
            flags.push(' ');
        }
        flags.push_str(flag);
        // The encoded form would take precedence over RUSTFLAGS (and drop the flag).
        build.env_remove("CARGO_ENCODED_RUSTFLAGS").env("RUSTFLAGS", flags);
    }
    if let Some(t) = target.filter(|t| *t != host_triple()) {
        build.args(["--target", t]);
        binary.push(t);
    }
    run(&mut build)?;
    Ok(binary.join("release").join("ctrflow"))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

fn demo(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    wasm_target(root)?;
    let bin = build_ctrflow(root, None, None, None)?;
    std::fs::create_dir_all(root.join("out/demo"))?;
    // A fresh demo each time: the generator does not resume, and old rows would confuse.
    for stale in
        ["out/demo/contacts.db", "out/demo/contacts.db-wal", "out/demo/contacts.db-shm", "out/demo/dead-letters.jsonl"]
    {
        let _ = std::fs::remove_file(root.join(stale));
    }
    let _ = std::fs::remove_dir_all(root.join("out/demo/lake"));
    let mut cmd = Command::new(bin);
    cmd.current_dir(root).args([
        "run",
        "pipelines/local-demo.toml",
        "--report",
        "out/demo/report.json",
        "--report",
        "out/demo/report.html",
    ]);
    cmd.args(extra);
    run(&mut cmd)?;
    eprintln!("\nTiming reports: out/demo/report.html (open it in a browser) and out/demo/report.json");
    eprintln!(
        "Try: sqlite3 out/demo/contacts.db 'SELECT Channel, COUNT(*), AVG(json_extract(Queue, \"$.Duration\")) FROM voice'"
    );
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    wasm_target(root)?;
    run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(&root.join("plugins")).args(["fmt", "--all", "--", "--check"]))?;
    let moto = moto_server(root)?;
    lang_tools(root)?;
    // The tests drive the real binary: build it first.
    // Built with the whole workspace's features, so `cargo test --workspace` below reuses this
    // build instead of compiling wasmtime and the AWS SDK a second time with other features.
    run(cargo(root).args(["build", "--release", "--workspace", "--bins"]))?;
    let mut total = Counts::default();
    total += run_tests(
        cargo(root)
            .args(["test", "--release", "--workspace", "--no-fail-fast"])
            .args(extra)
            .env("CTRFLOW_MOTO_SERVER", &moto),
    )?;
    // The plugins' own unit tests run natively (their workspace builds for wasm by default).
    let plugins_target = target_dir(root).join("plugins-native");
    total += run_tests(
        cargo(&root.join("plugins"))
            .args(["test", "--release", "--workspace", "--target", host_triple()])
            .env("CARGO_TARGET_DIR", plugins_target),
    )?;
    // One closing line for every test binary above (cargo's own last line may be a crate
    // with no tests).
    println!("summary: {} passed, {} failed, {} skipped", total.passed, total.failed, total.ignored);
    Ok(())
}

#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
    }
}

/// Runs a `cargo test`, passing its output through, and adds up its `test result:` lines.
fn run_tests(cmd: &mut Command) -> anyhow::Result<Counts> {
    use std::io::BufRead;
    eprintln!("$ {}", render(cmd));
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("could not start {}", render(cmd)))?;
    let mut counts = Counts::default();
    let stdout = child.stdout.take().context("piped stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let number = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            counts += Counts { passed: number("passed"), failed: number("failed"), ignored: number("ignored") };
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed ({status})", render(cmd));
    }
    Ok(counts)
}

fn bench(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    if extra.first().is_some_and(|a| a == "throughput") {
        return throughput::throughput(root, &extra[1..]);
    }
    wasm_target(root)?;
    run(cargo(root).args(["bench", "-p", "ctrflow"]).args(extra))
}

fn host_triple() -> &'static str {
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
        "aarch64-unknown-linux-gnu"
    } else if cfg!(all(target_arch = "aarch64", target_os = "macos")) {
        "aarch64-apple-darwin"
    } else {
        "x86_64-apple-darwin"
    }
}

/// The cache outside the clone: `$CTRFLOW_CACHE_DIR`, default `~/.cache/ctrflow`.
fn cache_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("CTRFLOW_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("ctrflow")))
        .context("set HOME or CTRFLOW_CACHE_DIR")
}

/// Makes the Python virtual environment `venv` with `packages` (pinned) installed.
fn make_venv(root: &Path, venv: &Path, packages: &[&str]) -> anyhow::Result<()> {
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    run(Command::new("python3").current_dir(root).arg("-m").arg("venv").arg(venv))?;
    run(Command::new(venv.join("bin").join("pip"))
        .current_dir(root)
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages))
}

/// The moto server executable, installed on first use into a virtual environment in
/// `$CTRFLOW_CACHE_DIR` (default `~/.cache/ctrflow`), outside the clone.
fn moto_server(root: &Path) -> anyhow::Result<PathBuf> {
    let cache = cache_dir()?;
    let venv = cache.join("moto-venv");
    let server = venv.join("bin").join("moto_server");
    if server.exists() {
        return Ok(server);
    }
    // Pinned: the version measured here (docs/measurements.md#moto).
    make_venv(root, &venv, &["moto[server]==5.2.5"])?;
    if !server.exists() {
        bail!("pip installed moto but {} is missing", server.display());
    }
    Ok(server)
}

/// The Python that runs the Lambda baseline handler (`deploy/lambda/python_baseline.py`)
/// under AWS's own runtime interface client (`awslambdaric`, what Lambda's Python images
/// run), with boto3: a virtual environment in the cache outside the clone, made on first
/// use. Only `lambda::measure` (ignored; docs/lambda.md, "Measured") needs it.
fn lambda_python(root: &Path) -> anyhow::Result<PathBuf> {
    let cache = cache_dir()?;
    let venv = cache.join("lambda-python-venv");
    let python = venv.join("bin").join("python");
    let ready =
        || Command::new(&python).args(["-c", "import awslambdaric, boto3"]).output().is_ok_and(|o| o.status.success());
    if ready() {
        return Ok(python);
    }
    // Pinned: the versions docs/lambda.md's figures were measured with.
    make_venv(root, &venv, &["awslambdaric==4.2.2", "boto3==1.44.8"])?;
    if !ready() {
        bail!("pip installed awslambdaric and boto3 but {} cannot import them", python.display());
    }
    Ok(python)
}

/// Installs the pinned tools that build Python and JavaScript plugins (componentize-py in a
/// virtual environment, componentize-js in an npm prefix) into the cache outside the clone,
/// through the same script the plugin builds use, so the tests that build the example
/// plugins do not spend their time installing (docs/plugins-in-other-languages.md).
fn lang_tools(root: &Path) -> anyhow::Result<()> {
    let script = root.join("plugin-sdk/tools/build-plugin.sh");
    for lang in ["python", "js"] {
        run(Command::new("bash").current_dir(root).arg(&script).args(["install", lang]))?;
    }
    Ok(())
}
