//! The lookup-table side of the contract: a [`TableConnector`] (a `[tables.<id>]`'s
//! options) opens into a [`Lookup`] that enrich plugins read through the host.

use std::sync::Arc;

use super::Env;

/// Answers an enrich plugin's `lookup(table, key)`.
pub trait Lookup: Send + Sync {
    /// The row for `key` in `table`, as a JSON object.
    fn get(&self, table: &str, key: &str) -> Result<Option<serde_json::Value>, LookupError>;

    /// The same row as JSON text: what the host hands a plugin (`value.json`). A table that
    /// holds its rows can keep their text and answer without serialising the row on every
    /// call (the in-memory tables do); by default the row from [`Lookup::get`] is serialised.
    fn get_json(&self, table: &str, key: &str) -> Result<Option<String>, LookupError> {
        Ok(self.get(table, key)?.map(|row| serde_json::to_string(&row).unwrap_or_default()))
    }
}

/// Why a table gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The table did not answer this time (throttled, a 5xx, a timeout, a dropped
    /// connection): never the record's fault. The host retries it, with backoff, for as long
    /// as the run lasts; the plugin does not see it.
    Unavailable(String),
    /// The table answered with a refusal that asking again will not change (a malformed
    /// key, a table that is gone): the plugin sees `lookup-failed` and decides.
    Failed(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Unavailable(m) | LookupError::Failed(m) => f.write_str(m),
        }
    }
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
