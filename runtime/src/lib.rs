//! # ctrflow
//!
//! Reads Amazon Connect contact trace records (CTRs) from a stream, routes every record
//! through a TOML-defined graph of sandboxed WebAssembly plugins, writes them to their
//! destinations, and times every hop on the way.
//!
//! ## A tour, in the order data flows
//!
//! - [`config`] reads the pipeline TOML into plain structs (and `${VAR}` interpolation).
//! - [`graph`] validates it into a DAG, reporting every problem at once with its node.
//! - [`host`] is the WebAssembly host: one engine, plugins compiled once and cached,
//!   sandboxed instances with a memory cap and a deadline, traps contained.
//! - [`record`] is what flows: a document parsed once, shared copy-on-write on fan-out.
//! - [`connectors`] read and write the outside world: generator, files, stdin, SQLite,
//!   stdout, and (AWS) Kinesis, DynamoDB, Firehose.
//! - [`topology`] wires nodes into threads joined by bounded channels (backpressure all
//!   the way to the source), and [`dead_letter`] takes what nodes refuse.
//! - [`ack`] turns sink acknowledgements into source checkpoints: at least once.
//! - [`timing`] keeps the hop histograms and renders the report.
//! - [`cli`] is the `ctrflow` command.
//!
//! What ctrflow deliberately does not do: exactly-once delivery (sinks keyed by
//! `ContactId` offer newer-wins writes instead, which make re-delivery harmless), or
//! any coordination beyond what DynamoDB conditional writes give a fleet.

/// The allocator the binary and the benchmarks use (`#[global_allocator]` in `main.rs` and
/// each bench): records are trees of small allocations, and glibc's `malloc`/`free` were
/// the largest single item in profiles of the demo and of one hop.
pub type Allocator = mimalloc::MiMalloc;

pub mod ack;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod dead_letter;
pub mod graph;
pub mod host;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod source;
pub mod tables;
pub mod timing;
pub mod topology;
pub mod units;
