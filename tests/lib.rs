//! Helpers shared by the integration tests in `all/`.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo root").to_path_buf()
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(rel)
}

/// The bytes of a test plugin built by the plugins build (`plugins/testing/<name>`).
pub fn test_plugin(name: &str) -> Vec<u8> {
    let path = PathBuf::from(ctrflow::host::TEST_PLUGIN_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("test plugin {} is missing ({e}); the runtime's build.rs builds it", path.display()))
}
