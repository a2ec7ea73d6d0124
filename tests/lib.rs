//! Helpers shared by the integration tests in `all/`.

use std::path::PathBuf;

pub mod faults;

/// The repository root.
pub fn repo_root() -> PathBuf {
    // `cargo test` sets CARGO_MANIFEST_DIR for the test process: preferred to the value
    // compiled in, so a build directory shared between clones never points the tests at
    // another clone's files.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    manifest.parent().expect("tests/ is in the repo root").to_path_buf()
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(rel)
}

/// The bytes of a test plugin built by the plugins build (`plugins/testing/<name>`).
pub fn test_plugin(name: &str) -> Vec<u8> {
    let path = PathBuf::from(ctrflow::host::TEST_PLUGIN_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("test plugin {} is missing ({e}); the runtime's build.rs builds it", path.display()))
}

/// The `ctrflow` binary of this build (`cargo xtask test` builds it before the tests).
///
/// `CTRFLOW_TEST_BIN` names another one to test instead: another build of the same source,
/// or a script that runs an other-architecture build under emulation (`exec qemu-aarch64 -L
/// /usr/aarch64-linux-gnu …/ctrflow "$@"`, as docs/lambda.md tried the arm64 build).
pub fn ctrflow_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CTRFLOW_TEST_BIN") {
        return PathBuf::from(bin);
    }
    // The test binary is <target>/<profile>/deps/all-<hash>; the binary is <target>/<profile>/ctrflow.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("<target>/<profile>");
    let bin = profile_dir.join("ctrflow");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --release -p ctrflow`, which `cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// A fresh, empty directory under the system temp dir, named for the test.
///
/// A run's directories stay after it, to look into a failure; the first call of the next
/// run removes those of runs that have ended (some tests write hundreds of MB, which
/// otherwise pile up run after run on a developer's machine).
pub fn temp_dir(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_ended_runs);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("ctrflow-test-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Removes the `temp_dir`s of test processes that are no longer running.
fn sweep_ended_runs() {
    if !std::path::Path::new("/proc/self").exists() {
        return; // no way to tell a live process here
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("ctrflow-test-")) else { continue };
        // ctrflow-test-<name>-<pid>-<nanos>: the pid is the second segment from the end.
        let Some(pid) = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy file");
        }
    }
}

/// The example pipelines in `pipelines/`, sorted (their `.tests.toml` sidecars left out).
pub fn example_pipelines() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo_root().join("pipelines"))
        .expect("read pipelines/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.to_string_lossy().ends_with(".tests.toml"))
        .collect();
    found.sort();
    found
}

/// What a finished `ctrflow` command printed.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Its exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `ctrflow <args>` in `dir` (with the compile cache in the build directory).
pub fn ctrflow(dir: &std::path::Path, args: &[&str]) -> Output {
    ctrflow_with(dir, args, &[])
}

/// Runs `ctrflow <args>` in `dir` with extra environment variables.
pub fn ctrflow_with(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = std::process::Command::new(ctrflow_bin())
        .current_dir(dir)
        .args(args)
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run ctrflow");
    Output {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The compile cache the tests share (compiling plugins once, not per test).
pub fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|d| d.parent()).map(|d| d.join("ctrflow-test-cache")).unwrap_or_else(std::env::temp_dir)
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}
