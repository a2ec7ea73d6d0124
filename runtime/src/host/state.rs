//! [`PluginState`]: what one plugin instance's `Store` holds, and the host services
//! (`host`, `lookup`) that plugins import.
//!
//! The WASI context is empty and denies everything: no preopened directories, no
//! environment, no arguments, no network. Rust guests import WASI whether or not they use
//! it (measured-here.md), so it must be linked; it just grants nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ctrflow_plugin_sdk::path::FieldPath;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::transform::ctrflow::plugin::{host, lookup};
use super::bindings::{ErrorKind, LogLevel, PluginError, Value};
use super::records::to_wit;

pub use crate::contract::Lookup;

/// What every instance of a node's plugin shares: who it is, what it was granted, and
/// the counters it keeps.
pub struct NodeContext {
    /// The node's id, for logs and errors.
    pub node: String,
    /// The plugin's name, for logs and errors.
    pub plugin: String,
    /// The tables the node was granted, by name, and who answers for them.
    pub tables: HashMap<String, Arc<dyn Lookup>>,
    /// Plugin-defined counters (`host.count`).
    pub counters: Mutex<HashMap<String, i64>>,
}

impl NodeContext {
    /// A context granting no tables.
    pub fn new(node: impl Into<String>, plugin: impl Into<String>) -> Self {
        NodeContext {
            node: node.into(),
            plugin: plugin.into(),
            tables: HashMap::new(),
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// A snapshot of the plugin-defined counters.
    pub fn counters(&self) -> HashMap<String, i64> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The memory cap, remembering whether it refused anything, so a trap that follows is
/// classified by its cause rather than by wasmtime's error text.
pub struct Limiter {
    inner: StoreLimits,
    /// Whether a growth was refused.
    pub refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.refused = true;
        }
        r
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

/// One instance's store data.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: Limiter,
    pub(crate) paths: Vec<FieldPath>,
    pub(crate) ctx: Arc<NodeContext>,
    /// The batch of the call in progress.
    pub(crate) batch: Option<super::records::Batch>,
}

impl PluginState {
    pub(crate) fn new(ctx: Arc<NodeContext>, memory_bytes: usize) -> Self {
        PluginState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: Limiter {
                inner: wasmtime::StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    // A failed `memory.grow` traps at once, rather than leaving the guest's
                    // allocator to decide what to do.
                    .trap_on_grow_failure(true)
                    .build(),
                refused: false,
            },
            paths: Vec::new(),
            ctx,
            batch: None,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl host::Host for PluginState {
    fn resolve_path(&mut self, path: String) -> Result<u32, String> {
        let parsed = FieldPath::parse(&path).map_err(|e| e.to_string())?;
        if let Some(i) = self.paths.iter().position(|p| *p == parsed) {
            return Ok(i as u32);
        }
        self.paths.push(parsed);
        Ok((self.paths.len() - 1) as u32)
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let (node, plugin) = (&self.ctx.node, &self.ctx.plugin);
        match level {
            LogLevel::Trace => tracing::trace!(node, plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(node, plugin, "{message}"),
            LogLevel::Info => tracing::info!(node, plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(node, plugin, "{message}"),
            LogLevel::Error => tracing::error!(node, plugin, "{message}"),
        }
    }

    fn count(&mut self, name: String, delta: i64) {
        if let Ok(mut c) = self.ctx.counters.lock() {
            *c.entry(name).or_default() += delta;
        }
    }
}

impl lookup::Host for PluginState {
    fn get(&mut self, table: String, key: String) -> Result<Option<Value>, PluginError> {
        let Some(source) = self.ctx.tables.get(&table) else {
            return Err(PluginError {
                kind: ErrorKind::LookupFailed,
                message: format!(
                    "table {table:?} is not granted to node {:?} (add it to the node's `tables`)",
                    self.ctx.node
                ),
            });
        };
        source
            .get(&table, &key)
            .map(|row| row.as_ref().map(to_wit))
            .map_err(|message| PluginError { kind: ErrorKind::LookupFailed, message })
    }
}
