//! What the benches of this crate share: where the target directory is, the throughput
//! benchmark's generated records they read, and the runtime's allocator.

use std::io::BufRead;
use std::path::PathBuf;

/// The `ctrflow` binary's global allocator, its source file compiled in (as `native-limit`
/// does): parsing is mostly allocation, so the benches allocate as the runtime does. (A bench
/// is built with `cfg(test)` but without the test harness, so the file's tests are not.)
#[allow(unused_imports)]
#[path = "../../../runtime/src/alloc.rs"]
pub mod alloc;

/// The target directory: `CARGO_TARGET_DIR`, or the workspace's own.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The first `n` lines of the throughput benchmark's generated input (`PARSE_BENCH_INPUT`,
/// or where `cargo xtask bench throughput` writes it), or the path that is missing.
pub fn generated(n: usize) -> Result<Vec<Vec<u8>>, PathBuf> {
    let path = std::env::var_os("PARSE_BENCH_INPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench-throughput/ctrs-100000.jsonl"));
    let Ok(file) = std::fs::File::open(&path) else { return Err(path) };
    Ok(std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| !l.trim_ascii().is_empty())
        .take(n)
        .collect())
}
