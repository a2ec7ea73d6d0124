//! [`PluginState`]: what one plugin instance's `Store` holds, and [`NodeContext`]: what the
//! instances of one node share (its grants, counters and log rate).
//!
//! The host services plugins import live one module per WIT interface: `batch.rs`,
//! `services.rs` (`host`), `lookup.rs`, `values.rs` (`types`), and `wasi.rs` for the WASI
//! interfaces Rust guests import whether or not they use them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::batch::PluginBatch;
use super::limiter::Limiter;
use super::lookup::{Lookup, LookupRetry};
use super::services::{COUNTERS_REFUSED, LOG_SUPPRESSED, LogGate, PathCache};

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
    /// The node's log rate limit.
    pub(crate) log_gate: Mutex<LogGate>,
    /// Counter increments refused for their name.
    pub(crate) counters_refused: AtomicU64,
    /// How the node's lookups retry a table that does not answer.
    pub lookup_retry: LookupRetry,
}

impl NodeContext {
    /// A context granting no tables.
    pub fn new(node: impl Into<String>, plugin: impl Into<String>) -> Self {
        NodeContext {
            node: node.into(),
            plugin: plugin.into(),
            tables: HashMap::new(),
            counters: Mutex::new(HashMap::new()),
            log_gate: Mutex::new(LogGate::default()),
            counters_refused: AtomicU64::new(0),
            lookup_retry: LookupRetry::default(),
        }
    }

    /// A snapshot of the plugin-defined counters, with the host's own about the plugin
    /// (`ctrflow.log_suppressed`, `ctrflow.counter_names_refused`) when they are not zero.
    pub fn counters(&self) -> HashMap<String, i64> {
        let mut counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let suppressed = self.log_gate.lock().map(|g| g.suppressed).unwrap_or(0);
        let refused = self.counters_refused.load(Ordering::Relaxed);
        for (name, v) in [(LOG_SUPPRESSED, suppressed), (COUNTERS_REFUSED, refused)] {
            if v > 0 {
                counters.insert(name.to_string(), v as i64);
            }
        }
        counters
    }
}

/// One instance's store data.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: Limiter,
    pub(crate) paths: PathCache,
    pub(crate) ctx: Arc<NodeContext>,
    /// The batch of the call in progress.
    pub(crate) batch: Option<PluginBatch>,
    /// When the call in progress must end: blocking WASI calls wait no longer (`wasi.rs`),
    /// and the epoch callback traps past it. Time in host lookups moves it (`lookup.rs`).
    pub(crate) deadline: Option<Instant>,
}

impl PluginState {
    pub(crate) fn new(ctx: Arc<NodeContext>, memory_bytes: usize) -> Self {
        PluginState {
            wasi: super::wasi::sandbox_ctx(),
            table: super::wasi::resource_table(),
            limits: Limiter::new(memory_bytes),
            paths: PathCache::default(),
            ctx,
            batch: None,
            deadline: None,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
