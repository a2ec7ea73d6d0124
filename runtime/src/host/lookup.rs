//! The WIT `lookup` interface: an enrich plugin's read of a lookup table, answered only for
//! the tables its node was granted (`tables = [...]`).
//!
//! What answers a table (a CSV file, DynamoDB) is not here: it is a [`Lookup`] (part of the
//! connector contract), provided by the table connectors.
//!
//! A table that does not answer for an infrastructure reason ([`LookupError::Unavailable`]:
//! throttling, a 5xx, a timeout) is never the record's fault, so the plugin never sees it:
//! the call waits here, retrying with backoff and jitter, the node reported degraded (log,
//! `ctrflow_node_retries_total`, `ctrflow_node_degraded`), until the table answers. From the
//! plugin's side a lookup is simply slow. Time spent in a lookup — failed attempts, the
//! waits between them, a slow answer (an AWS client's own retries happen inside one
//! attempt) — does not count against the plugin's deadline (`time_per_record`): the call's
//! deadline moves by that much (`PluginState`'s `deadline` and the epoch callback in
//! `plugin.rs`). The budget is for the plugin's own work; the host's time is the host's. If the run is asked to stop while a table still does not answer, the call is
//! abandoned with [`StoppedWaitingForLookup`]: the batch's records are left unacknowledged,
//! to be read again, never dead-lettered.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::bindings::transform::ctrflow::plugin::lookup;
use super::bindings::{ErrorKind, PluginError, Value};
use super::state::PluginState;
use crate::contract::{Backoff, Health, LookupError};
use crate::flow::Shutdown;

pub use crate::contract::Lookup;

/// How a node's lookups retry: its health (for the log and metrics) and the run's stop
/// signal. Set when the node starts; before that (in tests and `ctrflow test`) a lookup
/// that is unavailable fails at once as `lookup-failed`.
#[derive(Default)]
pub struct LookupRetry {
    attached: OnceLock<(Health, Shutdown)>,
}

impl LookupRetry {
    /// Retries happen from now on, reported through `health`, until `shutdown`.
    pub fn attach(&self, health: Health, shutdown: Shutdown) {
        let _ = self.attached.set((health, shutdown));
    }
}

/// A plugin call abandoned because the run stopped while a lookup table did not answer.
#[derive(Debug, thiserror::Error)]
#[error("the run stopped while lookup table {table:?} was not answering ({message})")]
pub struct StoppedWaitingForLookup {
    /// The table.
    pub table: String,
    /// Its last error.
    pub message: String,
}

/// A table's answer: a row (its JSON text) or none, or its refusal.
type Answer = Result<Option<String>, String>;

/// The longest single wait between retries; short enough to notice a stop request soon.
const STOP_CHECK: Duration = Duration::from_millis(100);

impl lookup::Host for PluginState {
    fn get(&mut self, table: String, key: String) -> wasmtime::Result<Result<Option<Value>, PluginError>> {
        let Some(source) = self.ctx.tables.get(&table).cloned() else {
            return Ok(Err(PluginError {
                kind: ErrorKind::LookupFailed,
                message: format!(
                    "table {table:?} is not granted to node {:?} (add it to the node's `tables`)",
                    self.ctx.node
                ),
            }));
        };
        let started = Instant::now();
        // The row travels as the JSON text the table keeps (`Lookup::get_json`): an in-memory
        // table wrote it once at load, so no call serialises the row.
        let answer = self.ask(&*source, &table, &key).map(|a| a.map(|row| row.map(Value::Json)));
        // The host's time (the row included) is not the plugin's: move its deadline.
        if let Some(deadline) = &mut self.deadline {
            *deadline += started.elapsed();
        }
        match answer? {
            Ok(row) => Ok(Ok(row)),
            Err(message) => Ok(Err(PluginError { kind: ErrorKind::LookupFailed, message })),
        }
    }
}

impl PluginState {
    /// Asks `source` until it answers, a refusal (`Ok(Err(_))`) included; `Err` when the run
    /// stops first.
    fn ask(&self, source: &dyn Lookup, table: &str, key: &str) -> wasmtime::Result<Answer> {
        let mut backoff = Backoff::default();
        loop {
            let message = match source.get_json(table, key) {
                Ok(row) => {
                    if backoff.attempts() > 0
                        && let Some((health, _)) = self.ctx.lookup_retry.attached.get()
                    {
                        health.recovered();
                    }
                    return Ok(Ok(row));
                }
                Err(LookupError::Failed(message)) => return Ok(Err(message)),
                Err(LookupError::Unavailable(message)) => message,
            };
            let Some((health, shutdown)) = self.ctx.lookup_retry.attached.get() else {
                return Ok(Err(message));
            };
            if shutdown.is_requested() {
                return Err(StoppedWaitingForLookup { table: table.to_string(), message }.into());
            }
            let delay = backoff.next_delay();
            health.retrying(&message, backoff.attempts(), delay);
            let until = Instant::now() + delay;
            while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                if shutdown.is_requested() {
                    break;
                }
                std::thread::sleep(left.min(STOP_CHECK));
            }
        }
    }
}
