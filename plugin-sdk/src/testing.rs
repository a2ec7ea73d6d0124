//! Running a plugin natively, in `cargo test`, with no host.
//!
//! ```ignore
//! let mut plugin = testing::init::<MyPlugin>(json!({"fields": ["Agent.Username"]}))?;
//! let (outcome, record) = testing::process(&mut plugin, json!({"ContactId": "c1"}));
//! ```
//!
//! Lookups read tables set with [`set_table`]; [`count`] totals can be read back with
//! [`counter`]. Both are per test thread, so tests stay independent.

use std::cell::RefCell;
use std::collections::HashMap;

#[cfg(not(target_arch = "wasm32"))]
use crate::{Encoded, Outcome};
use crate::{Error, Init, Sink, Transform};

thread_local! {
    static TABLES: RefCell<HashMap<String, HashMap<String, serde_json::Value>>> =
        RefCell::new(HashMap::new());
    static COUNTERS: RefCell<HashMap<String, i64>> = RefCell::new(HashMap::new());
}

/// Builds a plugin from a config, as the host would at init.
pub fn init<T: Transform>(config: serde_json::Value) -> Result<(T, Vec<String>), Error> {
    let mut init = Init::new(config);
    let plugin = T::init(&mut init)?;
    Ok((plugin, init.outputs))
}

/// Builds a sink plugin from a config.
pub fn init_sink<T: Sink>(config: serde_json::Value) -> Result<T, Error> {
    T::init(&mut Init::new(config))
}

/// Runs one record through a transform; returns the outcome and the record as it was left.
#[cfg(not(target_arch = "wasm32"))]
pub fn process<T: Transform>(plugin: &mut T, mut record: serde_json::Value) -> (Outcome, serde_json::Value) {
    let outcome = plugin.process(&mut crate::Record::native(&mut record));
    (outcome, record)
}

/// Encodes one record with a sink plugin.
#[cfg(not(target_arch = "wasm32"))]
pub fn encode<T: Sink>(plugin: &mut T, mut record: serde_json::Value) -> Result<Encoded, Error> {
    plugin.encode(&crate::Record::native(&mut record))
}

/// Makes `rows` the content of lookup table `name`, keyed by the value of `key_column`
/// (rendered as text) in each row.
pub fn set_table(name: &str, key_column: &str, rows: &[serde_json::Value]) {
    let table = rows
        .iter()
        .filter_map(|row| {
            let key = match row.get(key_column)? {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((key, row.clone()))
        })
        .collect();
    TABLES.with(|t| t.borrow_mut().insert(name.to_string(), table));
}

/// The total of a plugin-defined counter in this thread.
pub fn counter(name: &str) -> i64 {
    COUNTERS.with(|c| c.borrow().get(name).copied().unwrap_or(0))
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn lookup(table: &str, key: &str) -> Result<Option<serde_json::Value>, Error> {
    TABLES.with(|t| match t.borrow().get(table) {
        Some(rows) => Ok(rows.get(key).cloned()),
        None => Err(Error::lookup_failed(format!(
            "table {table:?} is not granted (in tests: call testing::set_table first)"
        ))),
    })
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn count(name: &str, delta: i64) {
    COUNTERS.with(|c| *c.borrow_mut().entry(name.to_string()).or_default() += delta);
}

/// The real published CTR samples the project tests with (provenance in
/// `tests/fixtures/ctr/SOURCES.md`), for plugins' unit tests.
#[cfg(not(target_arch = "wasm32"))]
pub mod samples {
    /// A real VOICE/INBOUND CTR with an agent, a queue, recordings and 9 attributes.
    pub const KYOPARK_V1: &str = include_str!("../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json");
    /// The same contact re-delivered with a newer `LastUpdateTimestamp` and one more attribute.
    pub const KYOPARK_V2: &str = include_str!("../../tests/fixtures/ctr/kyopark-voice-inbound-update-v2.json");
    /// Both deliveries, one per line.
    pub const KYOPARK_V1_V2: &str = include_str!("../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1-v2.jsonl");
    /// A real 2018 CTR abandoned in queue: `Agent: null`, no recording.
    pub const ABANDONED: &str =
        include_str!("../../tests/fixtures/ctr/aws-samples-workshop-voice-abandoned-in-queue.json");

    /// Parses a sample.
    pub fn parse(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("the samples are valid JSON")
    }
}
