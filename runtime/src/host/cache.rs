//! The on-disk cache of compiled plugins, so a restart does not recompile.
//!
//! An entry is keyed by the SHA-256 of the `.wasm` bytes *and* the engine's compatibility
//! hash (wasmtime version plus every setting that changes code generation): a changed
//! `.wasm` or a different engine never hits a stale entry.
//!
//! A cached entry is native code that `Component::deserialize` loads without validation —
//! outside the sandbox. So the cache is trusted only as far as ssh trusts a key file:
//!
//! - the folder is created private (`0700`), entries `0600`;
//! - a folder or entry owned by another user, or writable by group or others, is refused:
//!   the plugin is compiled from its `.wasm` instead (and nothing is stored there), with a
//!   warning naming the path;
//! - every entry carries an HMAC-SHA256 of its bytes under a key kept *outside* the folder
//!   (`<folder>.key`, e.g. `~/.cache/ctrflow/plugins.key`, `0600`, created on first use),
//!   checked before loading. A file copied into the folder from elsewhere (another
//!   machine's cache, a restored CI cache) does not carry a valid tag and is recompiled;
//!   so is a damaged one (a flipped bit passes wasmtime's own header checks).
//!
//! What this does not defend against: someone who can write as the user running ctrflow
//! (they can replace the binary too), or who can read the key file.
//!
//! A *packaged* cache ([`CompileCache::packaged`]) is the folder `ctrflow compile` wrote and
//! a deployment ships beside the binary (a Lambda function's package): read-only, owned by
//! whoever deployed it, and exactly as trusted as the binary next to it — so the owner and
//! mode checks are skipped, nothing is ever stored there, and the HMAC (key shipped beside
//! the folder) still refuses a damaged entry. An entry for another engine (another ctrflow
//! version or CPU) is not found under its name, and a mismatch wasmtime detects on load is
//! refused: either way the plugin is compiled instead, with a warning.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    packaged: bool,
}

/// Whether a load was served from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a precompiled entry.
    Hit,
    /// Compiled (and stored, when the directory is writable and trusted).
    Miss,
}

type Key = [u8; 32];

impl CompileCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into(), packaged: false }
    }

    /// A read-only folder written by `ctrflow compile`, shipped with the binary.
    pub fn packaged(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into(), packaged: true }
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

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the key authenticating the entries is kept: beside the folder, not in it.
    pub fn key_path(&self) -> PathBuf {
        let mut name = self.dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "plugins".into());
        name.push(".key");
        self.dir.with_file_name(name)
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
        let usable = match self.prepare() {
            Ok(key) => Some(key),
            Err(why) => {
                tracing::warn!(dir = %self.dir.display(), "Not using the compiled-plugin cache: {why}.");
                None
            }
        };
        let entry = self.entry(engine, wasm);
        if let Some(key) = &usable
            && let Some(bytes) = read_verified(&entry, key, !self.packaged)
        {
            // SAFETY: the bytes carry a valid HMAC under a key only this user can read,
            // so they are exactly what `store` below wrote from `Component::serialize`
            // of this same engine configuration (the file name carries the compatibility
            // hash), in a folder only this user can write — or, packaged, what
            // `ctrflow compile` wrote into a read-only folder shipped with this binary.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), error = %e, "Cached plugin would not load; recompiling.")
                }
            }
        }
        if self.packaged {
            tracing::warn!(
                dir = %self.dir.display(),
                "No precompiled plugin here for this engine: compiling it now (run `ctrflow compile` with this binary, on this architecture)."
            );
        }
        let component = Component::new(engine, wasm)?;
        if let Some(key) = usable.as_ref().filter(|_| !self.packaged)
            && let Err(e) = store(&entry, &component, key)
        {
            tracing::debug!(dir = %self.dir.display(), error = %e, "Could not cache a compiled plugin.");
        }
        Ok((component, CacheOutcome::Miss))
    }

    /// Creates the folder (private) if needed, checks that only this user can write it,
    /// and returns the key; or why the cache cannot be used.
    fn prepare(&self) -> Result<Key, String> {
        if self.packaged {
            let path = self.key_path();
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read the key {}: {e}", path.display()))?;
            return bytes.try_into().map_err(|_| format!("the key {} is not 32 bytes", path.display()));
        }
        if !self.dir.exists() {
            create_private_dir(&self.dir).map_err(|e| format!("cannot create it: {e}"))?;
        }
        trusted(&self.dir)?;
        key(&self.key_path())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Whether `path` (not followed if a symlink) is owned by this user and not writable by
/// group or others — what ssh asks of `~/.ssh`.
#[cfg(unix)]
fn trusted(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!("{} is owned by user {}, not by this user ({me})", path.display(), meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); `chmod go-w` it",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn trusted(_: &Path) -> Result<(), String> {
    Ok(())
}

/// The key at `path`, created (random, `0600`) when missing. A key others can read or
/// write is refused.
fn key(path: &Path) -> Result<Key, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            trusted(path)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let mode = std::fs::metadata(path).map(|m| m.mode()).unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(format!("the key {} is readable by group or others; `chmod 600` it", path.display()));
                }
            }
            bytes.try_into().map_err(|_| format!("the key {} is not 32 bytes; delete it", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key().map_err(|e| format!("cannot make a key: {e}"))?;
            write_private(path, &key, true).map_err(|e| format!("cannot write the key {}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("cannot read the key {}: {e}", path.display())),
    }
}

fn random_key() -> std::io::Result<Key> {
    let mut key = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut key)?;
    Ok(key)
}

/// Writes a file only this user can read and write; `new` fails if it exists.
fn write_private(path: &Path, bytes: &[u8], new: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// HMAC-SHA256 (RFC 2104), here rather than from a crate: it is ten lines over `sha2`.
fn hmac(key: &Key, data: &[u8]) -> [u8; 32] {
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(data).finalize();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().into()
}

/// The entry's bytes, if the entry is trusted and its tag is valid under `key`.
fn read_verified(entry: &Path, key: &Key, check_owner: bool) -> Option<Vec<u8>> {
    if check_owner && let Err(why) = trusted(entry) {
        if entry.exists() {
            tracing::warn!(entry = %entry.display(), "Not loading a cached plugin: {why}.");
        }
        return None;
    }
    let bytes = std::fs::read(entry).ok()?;
    let tag = std::fs::read_to_string(tag_path(entry)).ok()?;
    let expected = hex(&hmac(key, &bytes));
    // Constant-time comparison: the tag is a secret-derived value.
    let tag = tag.trim().as_bytes();
    let same =
        tag.len() == expected.len() && tag.iter().zip(expected.as_bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    same.then_some(bytes)
}

fn tag_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.hmac")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn store(entry: &Path, component: &Component, key: &Key) -> anyhow::Result<()> {
    let dir = entry.parent().unwrap_or(Path::new("."));
    let bytes = component.serialize()?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    // The tag goes first: an entry without a matching tag is never loaded.
    let tag_tmp = dir.join(format!(".tmp-tag-{}-{nanos}", std::process::id()));
    write_private(&tag_tmp, hex(&hmac(key, &bytes)).as_bytes(), true)?;
    std::fs::rename(&tag_tmp, tag_path(entry))?;
    let tmp = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    write_private(&tmp, &bytes, true)?;
    std::fs::rename(&tmp, entry)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 2 of RFC 4231 (keys shorter than a block are zero-padded, so a
        // 32-byte key with trailing zeros is the RFC's shorter key).
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(hex(&hmac(&key, b"Hi There")), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_key_is_kept_beside_the_folder() {
        let cache = CompileCache::new("/home/u/.cache/ctrflow/plugins");
        assert_eq!(cache.key_path(), PathBuf::from("/home/u/.cache/ctrflow/plugins.key"));
    }
}
