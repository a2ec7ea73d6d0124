//! The on-disk cache of compiled plugins, so a restart does not recompile.
//!
//! An entry is keyed by the SHA-256 of the `.wasm` bytes *and* the engine's compatibility
//! hash (wasmtime version plus every setting that changes code generation): a changed
//! `.wasm` or a different engine never hits a stale entry. Entries are written to a
//! temporary file and renamed into place, with a SHA-256 of the compiled bytes beside it
//! that is checked before loading (precompiled code is trusted by wasmtime, so a damaged
//! entry must never be loaded); an entry that fails either check is recompiled and
//! replaced.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// Whether a load was served from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a precompiled entry.
    Hit,
    /// Compiled (and stored, when the directory is writable).
    Miss,
}

impl CompileCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into() }
    }

    /// The default location: `$CTRFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/ctrflow/plugins`,
    /// else `~/.cache/ctrflow/plugins`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("CTRFLOW_CACHE_DIR") {
            return Some(PathBuf::from(d).join("plugins"));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("ctrflow").join("plugins"))
    }

    fn entry(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let hex = hex(&digest[..16]);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{hex}-{:016x}.cwasm", h.finish()))
    }

    /// Loads the component for `wasm`, from the cache when it can.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(engine, wasm);
        if let Some(bytes) = read_verified(&entry) {
            // SAFETY: the bytes are exactly what `store` below wrote from
            // `Component::serialize` of this same engine configuration (the file name
            // carries the compatibility hash; the checksum beside it proves the content).
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), error = %e, "Cached plugin would not load; recompiling.")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = store(&entry, &component) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "Could not cache a compiled plugin.");
        }
        Ok((component, CacheOutcome::Miss))
    }
}

/// The entry's bytes, if its checksum file vouches for them. Precompiled code is loaded
/// without validation, so a damaged file (a flipped bit passes wasmtime's own header
/// checks) must never reach `deserialize`.
fn read_verified(entry: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(entry).ok()?;
    let sum = std::fs::read_to_string(checksum_path(entry)).ok()?;
    (sum.trim() == hex(&Sha256::digest(&bytes))).then_some(bytes)
}

fn checksum_path(entry: &Path) -> std::path::PathBuf {
    entry.with_extension("cwasm.sha256")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn store(entry: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = entry.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    // The checksum goes first: an entry without a matching checksum is never loaded.
    let sum_tmp = dir.join(format!(".tmp-sum-{}", std::process::id()));
    std::fs::write(&sum_tmp, hex(&Sha256::digest(&bytes)))?;
    std::fs::rename(&sum_tmp, checksum_path(entry))?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, entry)?;
    Ok(())
}
