//! Running plugins: a pool of instances per node, each in its own `Store`, with traps
//! contained.
//!
//! Every call gets a deadline of the node's `time_per_record` times the batch length, at
//! least [`super::limits::MIN_CALL_TIME`] (epoch interruption). When a call traps — a
//! panic, the deadline, the memory cap — the instance is discarded (wasmtime poisons it),
//! the batch's edits are rolled back, and the records are retried one by one on fresh
//! instances, so one bad record costs only itself:
//! it comes back as a [`Failure`] naming the kind, while its batch-mates are processed
//! normally.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::batch::PluginBatch;
use super::bindings::sink::exports::ctrflow::plugin::encoder::Encoded;
use super::bindings::sink::{Sink, SinkPre};
use super::bindings::transform::{Enrich, EnrichPre};
use super::bindings::{ErrorKind, Outcome, PluginError};
use super::lookup::StoppedWaitingForLookup;
use super::state::{NodeContext, PluginState};
use super::wasi::WaitedPastDeadline;
use super::{HostError, Limits, TICK};
use crate::record::Record;

/// Why a record was refused. Plugin-reported kinds mirror the WIT `error-kind`; the rest
/// are the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The plugin said the record is bad.
    BadRecord,
    /// The plugin said its config is unusable.
    InvalidConfig,
    /// A lookup table failed.
    LookupFailed,
    /// The plugin reported another error.
    Internal,
    /// The call ran past its deadline.
    Deadline,
    /// The instance hit its memory cap.
    MemoryLimit,
    /// The plugin panicked (or otherwise reached `unreachable`).
    Panic,
    /// Any other trap.
    Trap,
    /// The plugin produced a record larger than the node's `max_output`, or too many.
    OutputTooLarge,
    /// Not a failure of the record: the run stopped while a lookup table was not answering.
    /// The record is left unacknowledged, to be read again (`lookup.rs`).
    Stopped,
}

impl FailureKind {
    /// A stable snake_case name, as written in dead letters and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::BadRecord => "bad_record",
            FailureKind::InvalidConfig => "invalid_config",
            FailureKind::LookupFailed => "lookup_failed",
            FailureKind::Internal => "plugin_error",
            FailureKind::Deadline => "deadline",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::Stopped => "stopped",
        }
    }

    /// Whether this is a trap (the instance was discarded) rather than a returned error.
    pub fn is_trap(self) -> bool {
        matches!(self, FailureKind::Deadline | FailureKind::MemoryLimit | FailureKind::Panic | FailureKind::Trap)
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, for the dead letters.
    pub message: String,
}

impl From<PluginError> for Failure {
    fn from(e: PluginError) -> Self {
        let kind = match e.kind {
            ErrorKind::BadRecord => FailureKind::BadRecord,
            ErrorKind::InvalidConfig => FailureKind::InvalidConfig,
            ErrorKind::LookupFailed => FailureKind::LookupFailed,
            ErrorKind::Internal => FailureKind::Internal,
        };
        Failure { kind, message: e.message }
    }
}

/// Classifies the error a call into a plugin returned (a trap, or an error a host
/// function raised to stop the plugin). Named for what it classifies: the connectors
/// classify their own errors elsewhere.
pub(crate) fn classify_trap(err: &wasmtime::Error, limits: &Limits, n: usize, memory_refused: bool) -> Failure {
    if memory_refused {
        // The limiter refused to grow memory: whatever the guest did next (its allocator
        // aborts, or the forced trap), the cause is the cap.
        return Failure {
            kind: FailureKind::MemoryLimit,
            message: format!("exceeded its memory cap of {} bytes", limits.memory_bytes),
        };
    }
    if err.downcast_ref::<WaitedPastDeadline>().is_some() {
        return Failure {
            kind: FailureKind::Deadline,
            message: format!(
                "waited (wasi:io/poll, e.g. a sleep) past its deadline of {:?} ({} record(s) at {:?} each)",
                limits.call_time(n),
                n,
                limits.time_per_record
            ),
        };
    }
    let (kind, message) = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => (
            FailureKind::Deadline,
            format!(
                "exceeded its deadline of {:?} ({} record(s) at {:?} each)",
                limits.call_time(n),
                n,
                limits.time_per_record
            ),
        ),
        Some(Trap::UnreachableCodeReached) => (FailureKind::Panic, "panicked (reached `unreachable`)".to_string()),
        Some(trap) => (FailureKind::Trap, format!("trapped: {trap}")),
        None => (FailureKind::Trap, format!("trapped: {err:#}")),
    };
    Failure { kind, message }
}

/// What the host does with one world's plugins: how to instantiate, init and call them.
pub(crate) trait World: Sized + Send + 'static {
    type Pre: Send + Sync;
    type Bindings: Send;
    type Out: Send;
    type Info: Send;

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Bindings>;
    fn init(
        b: &Self::Bindings,
        store: &mut Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Result<Self::Info, PluginError>>;
    fn call(b: &Self::Bindings, store: &mut Store<PluginState>) -> wasmtime::Result<Vec<Self::Out>>;
}

/// Transform and enrich plugins.
pub(crate) struct TransformWorld;

impl World for TransformWorld {
    type Pre = EnrichPre<PluginState>;
    type Bindings = Enrich;
    type Out = Outcome;
    type Info = Vec<String>;

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        EnrichPre::new(pre)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Enrich> {
        pre.instantiate(store)
    }
    fn init(
        b: &Enrich,
        store: &mut Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Result<Vec<String>, PluginError>> {
        Ok(b.ctrflow_plugin_transformer().call_init(store, config)?.map(|info| info.outputs))
    }
    fn call(b: &Enrich, store: &mut Store<PluginState>) -> wasmtime::Result<Vec<Outcome>> {
        b.ctrflow_plugin_transformer().call_process(store)
    }
}

/// Sink plugins.
pub(crate) struct SinkWorld;

impl World for SinkWorld {
    type Pre = SinkPre<PluginState>;
    type Bindings = Sink;
    type Out = Result<Encoded, PluginError>;
    type Info = ();

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        SinkPre::new(pre)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Sink> {
        pre.instantiate(store)
    }
    fn init(b: &Sink, store: &mut Store<PluginState>, config: &str) -> wasmtime::Result<Result<(), PluginError>> {
        b.ctrflow_plugin_encoder().call_init(store, config)
    }
    fn call(b: &Sink, store: &mut Store<PluginState>) -> wasmtime::Result<Vec<Self::Out>> {
        b.ctrflow_plugin_encoder().call_encode(store)
    }
}

struct Instance<W: World> {
    store: Store<PluginState>,
    bindings: W::Bindings,
}

/// A node's plugin: compiled once, pre-instantiated, with a pool of initialised instances.
pub(crate) struct Pool<W: World> {
    engine: Engine,
    pre: W::Pre,
    config: String,
    limits: Limits,
    ctx: Arc<NodeContext>,
    idle: Mutex<Vec<Instance<W>>>,
}

/// How long `init` may take.
const INIT_DEADLINE: Duration = Duration::from_secs(5);

fn ticks(budget: Duration) -> u64 {
    (budget.as_nanos() / TICK.as_nanos()) as u64 + 1
}

impl<W: World> Pool<W> {
    /// Pre-instantiates and initialises a first instance; returns its init info too.
    pub(crate) fn new(
        engine: Engine,
        pre: InstancePre<PluginState>,
        config: &Json,
        limits: Limits,
        ctx: Arc<NodeContext>,
    ) -> Result<(Self, W::Info), HostError> {
        let pre = W::pre(pre).map_err(|e| HostError::WrongWorld {
            plugin: ctx.plugin.clone(),
            node: ctx.node.clone(),
            detail: format!("{e:#}"),
        })?;
        let config = if config.is_null() { "{}".to_string() } else { config.to_string() };
        let pool = Pool { engine, pre, config, limits, ctx, idle: Mutex::new(Vec::new()) };
        let (first, info) = pool.instantiate()?;
        pool.checkin(first);
        Ok((pool, info))
    }

    pub(crate) fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    fn instantiate(&self) -> Result<(Instance<W>, W::Info), HostError> {
        let ctx = &self.ctx;
        let trapped = |e: wasmtime::Error, memory_refused: bool| {
            let f = classify_trap(&e, &self.limits, 1, memory_refused);
            HostError::Trapped { plugin: ctx.plugin.clone(), node: ctx.node.clone(), kind: f.kind, detail: f.message }
        };
        let mut store = Store::new(&self.engine, PluginState::new(ctx.clone(), self.limits.memory_bytes));
        store.limiter(|s| &mut s.limits);
        // At each epoch deadline: trap if the call's deadline has passed, else wait on. The
        // deadline is an `Instant` because host lookups move it (their time is not the
        // plugin's: `lookup.rs`); the epoch deadline is only when to look again.
        store.epoch_deadline_callback(|ctx| {
            let now = Instant::now();
            match ctx.data().deadline {
                Some(deadline) if now < deadline => Ok(UpdateDeadline::Continue(ticks(deadline - now))),
                _ => Err(Trap::Interrupt.into()),
            }
        });
        store.set_epoch_deadline(ticks(INIT_DEADLINE));
        store.data_mut().deadline = Some(Instant::now() + INIT_DEADLINE);
        let bindings = match W::instantiate(&self.pre, &mut store) {
            Ok(b) => b,
            // Instantiation creates the memories and tables: a component whose initial
            // ones pass the cap is refused here, as a memory-limit trap.
            Err(e) if store.data().limits.refused => return Err(trapped(e, true)),
            Err(e) => {
                return Err(HostError::Instantiate {
                    plugin: ctx.plugin.clone(),
                    node: ctx.node.clone(),
                    detail: format!("{e:#}"),
                });
            }
        };
        let init = W::init(&bindings, &mut store, &self.config);
        store.data_mut().deadline = None;
        let refused = store.data().limits.refused;
        let info = match init.map_err(|e| trapped(e, refused))? {
            Ok(info) => info,
            Err(e) => {
                return Err(HostError::Init {
                    plugin: ctx.plugin.clone(),
                    node: ctx.node.clone(),
                    kind: Failure::from(e.clone()).kind,
                    message: e.message,
                });
            }
        };
        Ok((Instance { store, bindings }, info))
    }

    fn checkout(&self) -> Result<Instance<W>, HostError> {
        if let Some(i) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(i);
        }
        self.instantiate().map(|(i, _)| i)
    }

    fn checkin(&self, instance: Instance<W>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }

    /// Calls the plugin on a batch. On a trap the batch is rolled back and its records are
    /// retried alone; each record comes back with its output or its failure, in order.
    pub(crate) fn call(&self, records: Vec<Record>) -> Vec<(Record, Result<W::Out, Failure>)> {
        if records.is_empty() {
            return Vec::new();
        }
        let mut instance = match self.checkout() {
            Ok(i) => i,
            Err(e) => {
                let f = Failure { kind: e.failure_kind(), message: e.to_string() };
                return records.into_iter().map(|r| (r, Err(f.clone()))).collect();
            }
        };
        let n = records.len();
        let store = &mut instance.store;
        let budget = self.limits.call_time(n);
        store.data_mut().batch = Some(PluginBatch::new(records, self.limits.max_output_bytes));
        store.data_mut().deadline = Some(Instant::now() + budget);
        store.set_epoch_deadline(ticks(budget));
        let result = W::call(&instance.bindings, store);
        store.data_mut().deadline = None;
        let batch = store.data_mut().batch.take().expect("the host lent a batch for this call");
        let memory_refused = store.data().limits.refused;
        match result {
            Ok(outs) if outs.len() == n => {
                let oversized = batch.oversized.clone();
                let records = batch.into_records(instance.store.data().paths.as_slice());
                self.checkin(instance);
                let mut results: Vec<_> = records.into_iter().zip(outs.into_iter().map(Ok)).collect();
                for i in oversized {
                    // The host refused this record's replacement for size: whatever the
                    // plugin decided after that, the record fails as too large.
                    results[i as usize].1 = Err(Failure {
                        kind: FailureKind::OutputTooLarge,
                        message: format!(
                            "produced a record (or edits of one) over the node's max_output of {} bytes",
                            self.limits.max_output_bytes
                        ),
                    });
                }
                results
            }
            Ok(outs) => {
                // A contract violation, not a trap: the instance may be kept.
                let f = Failure {
                    kind: FailureKind::Internal,
                    message: format!("returned {} results for a batch of {n}", outs.len()),
                };
                let records = batch.rollback(instance.store.data().paths.as_slice());
                self.checkin(instance);
                records.into_iter().map(|r| (r, Err(f.clone()))).collect()
            }
            Err(e) => {
                let records = batch.rollback(instance.store.data().paths.as_slice());
                drop(instance); // poisoned by the trap
                if let Some(stopped) = e.downcast_ref::<StoppedWaitingForLookup>() {
                    // Nothing the records did: none of them is tried again alone.
                    let f = Failure { kind: FailureKind::Stopped, message: stopped.to_string() };
                    return records.into_iter().map(|r| (r, Err(f.clone()))).collect();
                }
                if n == 1 {
                    let f = classify_trap(&e, &self.limits, 1, memory_refused);
                    tracing::debug!(node = %self.ctx.node, kind = %f.kind, "Plugin trapped; instance replaced.");
                    return records.into_iter().map(|r| (r, Err(f.clone()))).collect();
                }
                tracing::debug!(node = %self.ctx.node, n, "Plugin trapped on a batch; retrying its records one by one.");
                records.into_iter().flat_map(|r| self.call(vec![r])).collect()
            }
        }
    }
}

/// A transform or enrich node's plugin.
pub struct TransformPlugin {
    pub(crate) pool: Pool<TransformWorld>,
    pub(crate) outputs: Vec<String>,
    pub(crate) limits: Limits,
}

/// What a transform decided about one record.
#[derive(Debug)]
pub enum Decision {
    /// To the default output.
    Keep,
    /// Deliberately dropped.
    Drop,
    /// To the named output with this index in [`TransformPlugin::outputs`].
    Route(u32),
    /// Replaced by these documents.
    Split(Vec<Json>),
    /// Refused.
    Fail(Failure),
}

impl TransformPlugin {
    /// The named outputs the plugin declared at init.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// The node's context (counters, grants).
    pub fn context(&self) -> &Arc<NodeContext> {
        self.pool.context()
    }

    /// Runs a batch through the plugin.
    pub fn process(&self, records: Vec<Record>) -> Vec<(Record, Decision)> {
        let outputs = self.outputs.len() as u32;
        self.pool
            .call(records)
            .into_iter()
            .map(|(record, out)| {
                let decision = match out {
                    Err(f) => Decision::Fail(f),
                    Ok(Outcome::Keep) => Decision::Keep,
                    Ok(Outcome::Drop) => Decision::Drop,
                    Ok(Outcome::Route(i)) if i < outputs => Decision::Route(i),
                    Ok(Outcome::Route(i)) => Decision::Fail(Failure {
                        kind: FailureKind::Internal,
                        message: format!("routed to output #{i}, but declared only {outputs}"),
                    }),
                    Ok(Outcome::Split(docs)) => self.split(docs),
                    Ok(Outcome::Fail(e)) => Decision::Fail(e.into()),
                };
                (record, decision)
            })
            .collect()
    }

    fn split(&self, docs: Vec<String>) -> Decision {
        let too_large = |message| Decision::Fail(Failure { kind: FailureKind::OutputTooLarge, message });
        if docs.len() > self.limits.max_split {
            return too_large(format!(
                "split one record into {} (the node's max_split is {})",
                docs.len(),
                self.limits.max_split
            ));
        }
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            if doc.len() > self.limits.max_output_bytes {
                return too_large(format!(
                    "produced a record of {} bytes (the node's max_output is {} bytes)",
                    doc.len(),
                    self.limits.max_output_bytes
                ));
            }
            match serde_json::from_str::<Json>(&doc) {
                Ok(v) if v.is_object() => out.push(v),
                Ok(_) => {
                    return Decision::Fail(Failure {
                        kind: FailureKind::Internal,
                        message: "split produced a non-object".into(),
                    });
                }
                Err(e) => {
                    return Decision::Fail(Failure {
                        kind: FailureKind::Internal,
                        message: format!("split produced invalid JSON: {e}"),
                    });
                }
            }
        }
        Decision::Split(out)
    }
}

/// A sink node's encoding plugin.
pub struct SinkPlugin {
    pub(crate) pool: Pool<SinkWorld>,
}

pub use crate::contract::sink::Encoding;

impl SinkPlugin {
    /// The node's context.
    pub fn context(&self) -> &Arc<NodeContext> {
        self.pool.context()
    }

    /// Encodes a batch.
    pub fn encode(&self, records: Vec<Record>) -> Vec<(Record, Result<Encoding, Failure>)> {
        self.pool
            .call(records)
            .into_iter()
            .map(|(record, out)| {
                let enc = out.and_then(|r| r.map_err(Failure::from)).and_then(|e| {
                    let columns = e
                        .columns
                        .into_iter()
                        .map(|(k, v)| super::values::from_wit(v).map(|j| (k, j)))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|message| Failure { kind: FailureKind::Internal, message })?;
                    Ok(Encoding { partition_key: e.partition_key, sort_key: e.sort_key, columns, payload: e.payload })
                });
                (record, enc)
            })
            .collect()
    }
}
