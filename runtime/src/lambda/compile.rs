//! `ctrflow compile <pipeline> -o DIR`: the pipeline's plugins compiled ahead of time into
//! `DIR/plugins` (with the key authenticating them, `DIR/plugins.key`), to ship with the
//! binary — so a Lambda cold start (`ctrflow lambda --precompiled DIR`, or
//! `CTRFLOW_PRECOMPILED=DIR`) loads native code instead of running Cranelift.
//!
//! Each entry is named by the plugin's SHA-256 and the engine's compatibility hash, and
//! checked again by wasmtime when loaded, so a package made by another ctrflow version or
//! for another CPU is not used: the plugin is compiled at start instead, with a warning.
//! The output is checked here once written, by loading every plugin back the way the
//! function will.
//!
//! It compiles for the machine it runs on (Cranelift's native target): run it with the
//! same binary, on the architecture the function runs on.

use std::path::Path;

use crate::config::PipelineConfig;
use crate::host::{CacheOutcome, CompileCache, Host};

/// The plugins a pipeline loads: transforms' and sink plugins', each once.
pub fn plugin_specs(config: &PipelineConfig) -> Vec<String> {
    let mut specs: Vec<String> = config.transforms.values().map(|t| t.plugin.clone()).collect();
    specs.extend(config.sinks.values().filter_map(|s| s.common.plugin.clone()));
    specs.sort();
    specs.dedup();
    specs
}

/// Compiles every plugin of `config` into `out`, verifies the result, and returns the
/// plugins compiled.
pub fn compile(config: &PipelineConfig, out: &Path) -> anyhow::Result<Vec<String>> {
    let dir = out.join("plugins");
    // Only this compile's entries go into the package.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let specs = plugin_specs(config);
    let host = Host::new(Some(CompileCache::new(&dir)))?;
    for spec in &specs {
        host.load(spec, &config.base_dir).map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
    }
    readable_by_all(out, &dir, &CompileCache::new(&dir).key_path())?;

    let check = Host::new(Some(CompileCache::packaged(&dir)))?;
    for spec in &specs {
        let loaded = check.load(spec, &config.base_dir).map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
        if loaded.cache_outcome() != CacheOutcome::Hit {
            anyhow::bail!("{spec}: the compiled plugin in {} would not load", dir.display());
        }
    }
    Ok(specs)
}

/// Lambda runs the function as a user other than the files' owner: the package must be
/// world-readable (the cache itself is created private).
#[cfg(unix)]
fn readable_by_all(out: &Path, dir: &Path, key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| anyhow::anyhow!("cannot chmod {}: {e}", p.display()))
    };
    set(out, 0o755)?;
    set(dir, 0o755)?;
    set(key, 0o644)?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        set(&entry.path(), 0o644)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn readable_by_all(_: &Path, _: &Path, _: &Path) -> anyhow::Result<()> {
    Ok(())
}
