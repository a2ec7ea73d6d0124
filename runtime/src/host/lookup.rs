//! The WIT `lookup` interface: an enrich plugin's read of a lookup table, answered only for
//! the tables its node was granted (`tables = [...]`).
//!
//! What answers a table (a CSV file, DynamoDB) is not here: it is a [`Lookup`] (part of the
//! connector contract), provided by the table connectors.

use super::bindings::transform::ctrflow::plugin::lookup;
use super::bindings::{ErrorKind, PluginError, Value};
use super::state::PluginState;
use super::values::to_wit;

pub use crate::contract::Lookup;

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
