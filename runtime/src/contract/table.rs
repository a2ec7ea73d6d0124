//! The lookup-table side of the contract: a [`TableConnector`] (a `[tables.<id>]`'s
//! options) opens into a [`Lookup`] that enrich plugins read through the host.

use std::sync::Arc;

use super::Env;

/// Answers an enrich plugin's `lookup(table, key)`.
pub trait Lookup: Send + Sync {
    /// The row for `key` in `table`, as a JSON object.
    fn get(&self, table: &str, key: &str) -> Result<Option<serde_json::Value>, String>;
}

/// A table type's options (the keys of `[tables.<id>]` besides `type`).
pub trait TableConnector: std::fmt::Debug + Send + Sync {
    /// Problems the schema cannot catch, each naming its key.
    fn validate(&self, _env: &Env) -> Vec<String> {
        Vec::new()
    }

    /// Loads (or connects to) the table while the pipeline is built, so a missing file or
    /// key column is reported with every other problem.
    fn open(&self, env: &Env) -> Result<Arc<dyn Lookup>, String>;

    /// Checks the outside world before the run starts (a remote table exists).
    fn check(&self, _env: &Env) -> anyhow::Result<()> {
        Ok(())
    }
}
