//! The WebAssembly host: one engine, plugins compiled once (and cached on disk), a pool of
//! sandboxed instances per node.
//!
//! - [`Host::load`] finds a plugin — a bundled one by name, or a `.wasm` component by path —
//!   and compiles it, or loads it precompiled from the [`CompileCache`].
//! - [`Host::transform`] and [`Host::sink`] pre-instantiate it for a node and initialise a
//!   first instance with the node's `config`, so a bad config fails at startup.
//! - Calls run under the node's [`Limits`]: a memory cap over the whole store
//!   (`limiter.rs`) and a deadline (epoch interruption, one tick per [`TICK`] from a
//!   background thread; blocking WASI calls wait no longer than it, `wasi.rs`).
//! - Each WIT interface the host implements has its module: `batch.rs`, `services.rs`
//!   (`host`: paths, log, counters), `lookup.rs`, `values.rs` (`types`), `wasi.rs`; each
//!   bounds what a plugin can make the host allocate (docs/limits.md lists every bound).
//!
//! wasmtime's errors are converted here and nowhere else: callers see [`HostError`] for
//! setup problems and [`Failure`] per refused record.

mod batch;
mod bindings;
mod bundled;
mod cache;
pub mod contract_version;
mod limiter;
mod limits;
pub mod log_redact;
mod lookup;
mod plugin;
mod services;
mod state;
mod values;
mod wasi;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

pub use crate::contract::LookupError;
pub use batch::EDIT_MIN_BYTES;
pub use bundled::{BUNDLED, TEST_PLUGIN_DIR, bundled};
pub use cache::{CacheOutcome, CompileCache};
pub use limiter::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
pub use limits::Limits;
pub use lookup::{Lookup, LookupRetry, StoppedWaitingForLookup};
pub use plugin::{Decision, Encoding, Failure, FailureKind, SinkPlugin, TransformPlugin};
pub use services::{
    COUNTERS_REFUSED, LOG_BURST, LOG_PER_SECOND, LOG_SUPPRESSED, MAX_COUNTER_NAME_BYTES, MAX_COUNTERS, MAX_LOG_BYTES,
    MAX_PATH_BYTES, MAX_PATHS,
};
pub use state::NodeContext;
pub use wasi::{MAX_RANDOM_BYTES, MAX_WASI_RESOURCES};

use plugin::{Pool, SinkWorld, TransformWorld};
use state::PluginState;

/// The epoch tick: how often a running call's deadline is looked at. A call gets at least
/// `MIN_CALL_TIME` (100 ms), so a tick of 10 ms stops one at most a tenth late. A 1 ms tick
/// woke the ticker 1,000 times a second on a 2-core machine: 1.8% of the throughput
/// graph's CPU, and as many preemptions of the threads doing the work.
pub const TICK: Duration = Duration::from_millis(10);

/// The version of the plugin contract this host implements: the package version of
/// `wit/ctrflow.wit` (`ctrflow:plugin@0.1.0`). A plugin declares the version it was built
/// for in the names of the interfaces it imports and exports
/// (`ctrflow:plugin/transformer@0.1.0`); [`contract_version`] checks the two agree.
pub const CONTRACT_VERSION: &str = "0.1.0";

const TRANSFORMER: &str = "ctrflow:plugin/transformer@0.1.0";
const ENCODER: &str = "ctrflow:plugin/encoder@0.1.0";

/// What a plugin can be used as, by the interface it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `transformer`: usable under `[transforms]`.
    Transform,
    /// Exports `encoder`: usable as a sink's `plugin`.
    Sink,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Transform => "transform",
            PluginKind::Sink => "sink",
        })
    }
}

/// A setup problem with a plugin. Per-record problems are [`Failure`]s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No bundled plugin has this name and no file is at this path.
    #[error("plugin {name:?} not found: it is not a bundled plugin ({bundled}) and no file {path:?} exists")]
    NotFound { name: String, path: PathBuf, bundled: String },
    /// The file could not be read.
    #[error("plugin {name:?}: cannot read {path:?}: {detail}")]
    Read { name: String, path: PathBuf, detail: String },
    /// The bytes are not a valid component.
    #[error("plugin {name:?} is not a valid WebAssembly component: {detail}")]
    Compile { name: String, detail: String },
    /// The component exports neither world's interface, or the wrong one for its use.
    #[error("plugin {plugin:?} (node {node:?}) does not fit here: {detail}")]
    WrongWorld { plugin: String, node: String, detail: String },
    /// Instantiation failed (an import the host does not offer, memory over the cap…).
    #[error("plugin {plugin:?} (node {node:?}) could not be instantiated: {detail}")]
    Instantiate { plugin: String, node: String, detail: String },
    /// The plugin's `init` refused its config.
    #[error("plugin {plugin:?} (node {node:?}) refused its config: {message}")]
    Init { plugin: String, node: String, kind: FailureKind, message: String },
    /// The plugin trapped outside a record (in `init`).
    #[error("plugin {plugin:?} (node {node:?}) {detail}")]
    Trapped { plugin: String, node: String, kind: FailureKind, detail: String },
    /// The plugin was built for a contract version this host does not implement.
    #[error(
        "plugin {name:?} was built for the ctrflow plugin contract {plugin_version} (ctrflow:plugin@{plugin_version}), but this ctrflow implements {host_version}: rebuild it against this ctrflow's wit/ctrflow.wit (its plugin SDK), or use a ctrflow that implements {plugin_version}"
    )]
    ContractVersion { name: String, plugin_version: String, host_version: String },
    /// The engine could not be set up.
    #[error("WebAssembly engine: {0}")]
    Engine(String),
}

impl HostError {
    /// The failure kind a record gets when this error stops its call.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            HostError::Init { kind, .. } | HostError::Trapped { kind, .. } => *kind,
            _ => FailureKind::Internal,
        }
    }
}

/// A compiled plugin, ready to be set up for any number of nodes.
#[derive(Clone)]
pub struct Compiled {
    name: String,
    kind: PluginKind,
    component: Component,
    cache: CacheOutcome,
}

impl Compiled {
    /// The name it was loaded by.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What it can be used as.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }
    /// Whether it came from the compile cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }
}

/// The plugin host: one per process.
#[derive(Clone)]
pub struct Host {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    cache: Option<CompileCache>,
}

impl Host {
    /// A host caching compiled plugins in `cache` (none: always compile).
    pub fn new(cache: Option<CompileCache>) -> Result<Host, HostError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        // The `enrich` world's imports (types, host, lookup) cover the sink world's too.
        bindings::transform::Enrich::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;

        // Deadlines: one epoch tick per TICK, until the engine is gone.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("ctrflow-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| HostError::Engine(format!("epoch thread: {e}")))?;

        Ok(Host { engine, linker: Arc::new(linker), cache })
    }

    /// Finds a plugin by bundled name, or by path (relative paths from `base_dir`), and
    /// compiles it.
    pub fn load(&self, spec: &str, base_dir: &Path) -> Result<Compiled, HostError> {
        if let Some(bytes) = bundled(spec) {
            return self.compile(spec, bytes);
        }
        let path = base_dir.join(spec);
        if !path.exists() {
            let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
            return Err(HostError::NotFound { name: spec.to_string(), path, bundled: names.join(", ") });
        }
        let bytes = std::fs::read(&path).map_err(|e| HostError::Read {
            name: spec.to_string(),
            path: path.clone(),
            detail: e.to_string(),
        })?;
        self.compile(spec, &bytes)
    }

    /// Compiles component bytes (or loads them from the cache).
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<Compiled, HostError> {
        let loaded = match &self.cache {
            Some(cache) => cache.load(&self.engine, wasm),
            None => Component::new(&self.engine, wasm).map(|c| (c, CacheOutcome::Miss)),
        };
        let (component, cache) =
            loaded.map_err(|e| HostError::Compile { name: name.to_string(), detail: format!("{e:#}") })?;
        let kind = self.kind_of(name, &component)?;
        Ok(Compiled { name: name.to_string(), kind, component, cache })
    }

    fn kind_of(&self, name: &str, component: &Component) -> Result<PluginKind, HostError> {
        let ty = component.component_type();
        // The contract version first: a plugin built for another version exports its
        // interfaces under other names, and "exports neither" would hide why.
        let names = ty.imports(&self.engine).map(|(n, _)| n).chain(ty.exports(&self.engine).map(|(n, _)| n));
        if let Some(plugin_version) = contract_version::incompatible(names, CONTRACT_VERSION) {
            return Err(HostError::ContractVersion {
                name: name.to_string(),
                plugin_version,
                host_version: CONTRACT_VERSION.to_string(),
            });
        }
        let mut kind = None;
        for (export, item) in ty.exports(&self.engine) {
            if matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                match export {
                    TRANSFORMER => kind = Some(PluginKind::Transform),
                    ENCODER => kind = Some(PluginKind::Sink),
                    _ => {}
                }
            }
        }
        kind.ok_or_else(|| HostError::Compile {
            name: name.to_string(),
            detail: format!("it exports neither {TRANSFORMER} nor {ENCODER}: build it against ctrflow's WIT (wit/) with the plugin SDK"),
        })
    }

    fn instance_pre(
        &self,
        compiled: &Compiled,
        node: &str,
    ) -> Result<wasmtime::component::InstancePre<PluginState>, HostError> {
        self.linker.instantiate_pre(&compiled.component).map_err(|e| HostError::Instantiate {
            plugin: compiled.name.clone(),
            node: node.to_string(),
            detail: format!("{e:#}"),
        })
    }

    fn expect_kind(compiled: &Compiled, node: &str, want: PluginKind) -> Result<(), HostError> {
        if compiled.kind == want {
            return Ok(());
        }
        Err(HostError::WrongWorld {
            plugin: compiled.name.clone(),
            node: node.to_string(),
            detail: format!("it is a {} plugin, and this node needs a {want} plugin", compiled.kind),
        })
    }

    /// Sets a transform (or enrich) plugin up for a node and initialises it with `config`.
    pub fn transform(
        &self,
        compiled: &Compiled,
        ctx: NodeContext,
        config: &serde_json::Value,
        limits: Limits,
    ) -> Result<TransformPlugin, HostError> {
        Self::expect_kind(compiled, &ctx.node, PluginKind::Transform)?;
        let pre = self.instance_pre(compiled, &ctx.node)?;
        let (pool, outputs) =
            Pool::<TransformWorld>::new(self.engine.clone(), pre, config, limits.clone(), Arc::new(ctx))?;
        Ok(TransformPlugin { pool, outputs, limits })
    }

    /// Sets a sink plugin up for a node and initialises it with `config`.
    pub fn sink(
        &self,
        compiled: &Compiled,
        ctx: NodeContext,
        config: &serde_json::Value,
        limits: Limits,
    ) -> Result<SinkPlugin, HostError> {
        Self::expect_kind(compiled, &ctx.node, PluginKind::Sink)?;
        let pre = self.instance_pre(compiled, &ctx.node)?;
        let (pool, ()) = Pool::<SinkWorld>::new(self.engine.clone(), pre, config, limits, Arc::new(ctx))?;
        Ok(SinkPlugin { pool })
    }
}
