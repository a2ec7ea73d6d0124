//! # ctrflow-plugin-sdk
//!
//! Write a ctrflow plugin as a plain Rust struct with an `impl`, compile it to
//! `wasm32-wasip2`, and name it in a pipeline. Test it natively with `cargo test`: no host
//! needed.
//!
//! ```ignore
//! use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};
//!
//! struct Tag { channel: Path, tag: Path }
//!
//! impl Transform for Tag {
//!     fn init(init: &mut Init) -> Result<Self, Error> {
//!         Ok(Tag { channel: init.path("Channel")?, tag: init.path("Attributes.tag")? })
//!     }
//!     fn process(&mut self, record: &mut Record<'_>) -> Outcome {
//!         let channel = record.get_str(&self.channel).unwrap_or_default();
//!         match record.set(&self.tag, format!("seen-{channel}")) {
//!             Ok(()) => Outcome::Keep,
//!             Err(e) => Outcome::Fail(e),
//!         }
//!     }
//! }
//!
//! ctrflow_plugin_sdk::export_transform!(Tag);
//! ```
//!
//! What is here:
//! - the traits a plugin implements: [`Transform`] (also used by enrich plugins) and [`Sink`];
//! - [`Record`], a view of one host-held record, reached by [`Path`]s resolved once at init;
//! - [`lookup`], [`log`] and [`count`], the host's services;
//! - [`ctr`], a typed model of the contact trace record, tolerant of missing and unknown fields;
//! - [`path`], the path semantics the host uses too;
//! - [`testing`], for running a plugin natively in unit tests;
//! - [`bindings`], the raw WIT bindings underneath it all.
//!
//! What is deliberately not here: any I/O. Plugins are sandboxed; the host does the reading
//! and the writing.

pub mod bindings;
pub mod ctr;
pub mod flatten;
pub mod path;
mod record;
pub mod testing;
mod value;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod adapter;

pub use bindings::types::{ErrorKind, Field, LogLevel, Value};
pub use record::Record;
pub use serde_json;

use bindings::types;
use path::FieldPath;

/// A plugin's error: a kind the host routes on, and a message for the dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// What happened, for the person reading the dead letters.
    pub message: String,
}

impl Error {
    /// The record cannot be processed; it goes to the dead letters.
    pub fn bad_record(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::BadRecord, message: message.into() }
    }
    /// The node's `config` cannot be used.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::InvalidConfig, message: message.into() }
    }
    /// A lookup table failed.
    pub fn lookup_failed(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::LookupFailed, message: message.into() }
    }
    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Internal, message: message.into() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for types::PluginError {
    fn from(e: Error) -> Self {
        types::PluginError { kind: e.kind, message: e.message }
    }
}

impl From<types::PluginError> for Error {
    fn from(e: types::PluginError) -> Self {
        Error { kind: e.kind, message: e.message }
    }
}

/// A field path, resolved once at init and reused for every record.
#[derive(Debug, Clone)]
pub struct Path {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    id: u32,
    field: FieldPath,
}

impl Path {
    /// The path as written.
    pub fn as_str(&self) -> &str {
        self.field.as_str()
    }
}

/// A named output declared at init; return it in [`Outcome::Route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    index: u32,
    name: String,
}

impl Output {
    /// The output's name, as addressed in TOML (`node.<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What a plugin gets at init: its config, and the means to resolve paths and declare
/// outputs.
#[derive(Debug)]
pub struct Init {
    config: serde_json::Value,
    outputs: Vec<String>,
}

impl Init {
    /// An `Init` holding this config (the SDK builds it for you; tests may build their own).
    pub fn new(config: serde_json::Value) -> Self {
        Init { config, outputs: Vec::new() }
    }

    /// The node's `config` table, deserialized. Unknown keys are the plugin's business:
    /// use `#[serde(deny_unknown_fields)]` on `T` to reject them.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        let value =
            if self.config.is_null() { serde_json::Value::Object(Default::default()) } else { self.config.clone() };
        // Name the key for type errors too (`config.keep_last: invalid type…`), not just for
        // unknown keys, which serde already names.
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { "config".to_string() } else { format!("config.{path}") };
            Error::invalid_config(format!("{key}: {}", e.into_inner()))
        })
    }

    /// The node's `config` table as JSON.
    pub fn raw_config(&self) -> &serde_json::Value {
        &self.config
    }

    /// Resolves a dotted field path (`Agent.Username`, `Recordings.0.Location`).
    pub fn path(&mut self, text: &str) -> Result<Path, Error> {
        let field = FieldPath::parse(text).map_err(|e| Error::invalid_config(format!("path {text:?}: {e}")))?;
        #[cfg(target_arch = "wasm32")]
        let id = bindings::enrich::ctrflow::plugin::host::resolve_path(text)
            .map_err(|e| Error::invalid_config(format!("path {text:?}: {e}")))?;
        #[cfg(not(target_arch = "wasm32"))]
        let id = 0;
        Ok(Path { id, field })
    }

    /// Declares a named output (idempotent: the same name gives the same output).
    pub fn output(&mut self, name: &str) -> Output {
        let index = match self.outputs.iter().position(|o| o == name) {
            Some(i) => i,
            None => {
                self.outputs.push(name.to_string());
                self.outputs.len() - 1
            }
        };
        Output { index: index as u32, name: name.to_string() }
    }

    /// The outputs declared so far, in order.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }
}

/// What a transform decided about one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send it on to the default output.
    Keep,
    /// Drop it deliberately (acknowledged, not dead-lettered).
    Drop,
    /// Send it to a named output.
    Route(Output),
    /// Replace it by these records, sent to the default output.
    Split(Vec<serde_json::Value>),
    /// Refuse it: the node's `on_error` decides what happens to it.
    Fail(Error),
}

impl Outcome {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn into_wit(self) -> types::Outcome {
        match self {
            Outcome::Keep => types::Outcome::Keep,
            Outcome::Drop => types::Outcome::Drop,
            Outcome::Route(o) => types::Outcome::Route(o.index),
            Outcome::Split(records) => types::Outcome::Split(records.iter().map(|r| r.to_string()).collect()),
            Outcome::Fail(e) => types::Outcome::Fail(e.into()),
        }
    }
}

/// A transform (or enrich) plugin: sees each record and decides what becomes of it.
pub trait Transform: Sized + 'static {
    /// Builds the plugin from its config; called once per instance.
    fn init(init: &mut Init) -> Result<Self, Error>;
    /// Decides about one record; it may read and change the record first.
    fn process(&mut self, record: &mut Record<'_>) -> Outcome;
}

/// One record encoded for a destination; see the WIT `encoded` record for who uses what.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    /// The partition (hash) key: DynamoDB's partition key value, Kinesis's partition key.
    pub partition_key: Option<String>,
    /// The sort (range) key value, where the destination has one.
    pub sort_key: Option<String>,
    /// Named columns or item attributes.
    pub columns: Vec<(String, Value)>,
    /// Bytes for byte-oriented destinations (Firehose, Kinesis, files).
    pub payload: Option<Vec<u8>>,
}

/// A sink plugin: encodes records for a destination the host writes to.
pub trait Sink: Sized + 'static {
    /// Builds the plugin from its config; called once per instance.
    fn init(init: &mut Init) -> Result<Self, Error>;
    /// Encodes one record.
    fn encode(&mut self, record: &Record<'_>) -> Result<Encoded, Error>;
}

/// Looks `key` up in a table the node was granted (`tables = [...]` in the pipeline).
/// Returns the row as a JSON object, or `None` when there is no such key.
///
/// In native tests the rows come from [`testing::set_table`].
pub fn lookup(table: &str, key: &str) -> Result<Option<serde_json::Value>, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        let row = bindings::enrich::ctrflow::plugin::lookup::get(table, key)?;
        Ok(row.map(|v| v.to_json()))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::lookup(table, key)
    }
}

/// Like [`lookup`], but the row stays the contract's value (`Value::Json`, its JSON text as
/// the host sent it) instead of being parsed: for a plugin that writes the row into the
/// record whole ([`Record::set`]), which then costs no JSON parse or serialisation in the
/// plugin.
pub fn lookup_value(table: &str, key: &str) -> Result<Option<Value>, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(bindings::enrich::ctrflow::plugin::lookup::get(table, key)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(testing::lookup(table, key)?.as_ref().map(Value::from_json))
    }
}

/// Writes a line to the runtime's log, tagged with the node. Keep it off the per-record
/// path above `Debug`. At `Info` and above the host masks what looks like customer data
/// (quoted values, e-mail addresses, long numbers) unless the node sets
/// `plugin_log = "verbatim"`: put record values in `Debug` or `Trace` lines.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::enrich::ctrflow::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Adds `delta` to the plugin-defined counter `name`, reported per node.
pub fn count(name: &str, delta: i64) {
    #[cfg(target_arch = "wasm32")]
    bindings::enrich::ctrflow::plugin::host::count(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    testing::count(name, delta);
}

/// Exports a [`Transform`] as the plugin's implementation of the `transform` world.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod __ctrflow_export {
            #[allow(unused_imports)]
            use super::*;
            ::std::thread_local! {
                static STATE: ::core::cell::RefCell<Option<$ty>> =
                    const { ::core::cell::RefCell::new(None) };
            }
            pub struct Adapter;
            impl $crate::bindings::enrich::exports::ctrflow::plugin::transformer::Guest for Adapter {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<
                    $crate::bindings::types::Info,
                    $crate::bindings::types::PluginError,
                > {
                    STATE.with(|s| $crate::adapter::transform_init::<$ty>(s, &config))
                }
                fn process() -> ::std::vec::Vec<$crate::bindings::types::Outcome> {
                    STATE.with(|s| $crate::adapter::transform_process::<$ty>(s))
                }
            }
            $crate::bindings::enrich::__ctrflow_export_enrich!(
                Adapter with_types_in $crate::bindings::enrich
            );
        }
    };
}

/// Exports a [`Transform`] that calls [`lookup`] as an `enrich` plugin. (The same glue as
/// [`export_transform!`]; the name says what the plugin needs from its node.)
#[macro_export]
macro_rules! export_enrich {
    ($ty:ty) => {
        $crate::export_transform!($ty);
    };
}

/// Exports a [`Sink`] as the plugin's implementation of the `sink` world.
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod __ctrflow_export {
            #[allow(unused_imports)]
            use super::*;
            ::std::thread_local! {
                static STATE: ::core::cell::RefCell<Option<$ty>> =
                    const { ::core::cell::RefCell::new(None) };
            }
            pub struct Adapter;
            impl $crate::bindings::sink::exports::ctrflow::plugin::encoder::Guest for Adapter {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::bindings::types::PluginError> {
                    STATE.with(|s| $crate::adapter::sink_init::<$ty>(s, &config))
                }
                fn encode() -> ::std::vec::Vec<
                    ::core::result::Result<
                        $crate::bindings::sink::exports::ctrflow::plugin::encoder::Encoded,
                        $crate::bindings::types::PluginError,
                    >,
                > {
                    STATE.with(|s| $crate::adapter::sink_encode::<$ty>(s))
                }
            }
            $crate::bindings::sink::__ctrflow_export_sink!(
                Adapter with_types_in $crate::bindings::sink
            );
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        keep_last: u32,
        #[serde(default)]
        fields: Vec<String>,
    }

    #[test]
    fn a_wrong_type_in_config_names_the_key() {
        let e = Init::new(json!({"keep_last": "four"})).config::<Cfg>().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidConfig));
        assert!(e.message.starts_with("config.keep_last:"), "{}", e.message);
        let e = Init::new(json!({"keep_last": 4, "fields": ["a", 7]})).config::<Cfg>().unwrap_err();
        assert!(e.message.starts_with("config.fields[1]:"), "{}", e.message);
    }

    #[test]
    fn an_unknown_config_key_is_named() {
        let e = Init::new(json!({"keep_last": 4, "keep_lst": 3})).config::<Cfg>().unwrap_err();
        assert!(e.message.contains("keep_lst"), "{}", e.message);
    }
}
