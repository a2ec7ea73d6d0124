//! Connectors: the outside world. One module (or folder) per connector, each owning its
//! options struct, its checks, how it opens and what it prints at the end of a run; the
//! [`registry`] maps `type = "…"` to them. What a connector implements and what it is handed
//! is [`crate::contract`].
//!
//! | role   | types |
//! |--------|-------|
//! | source | [`generator`], [`file`], [`stdin`], `kinesis` ([`aws::kinesis`]) |
//! | table  | `csv`, `json` ([`memory_table`]), `dynamodb` ([`aws::lookup`]) |
//! | sink   | [`sqlite`], [`file`], [`stdout`], [`http`], `dynamodb`, `firehose`, `kinesis`, `sns` ([`aws`]) |
//!
//! [`once`] is not a connector: it is the `once_per` memory notifying sinks wrap their
//! writer in (one message per contact).

pub mod aws;
pub mod file;
pub mod generator;
pub mod http;
pub mod memory_table;
pub mod once;
pub mod registry;
pub mod sqlite;
pub mod stdin;
pub mod stdout;
