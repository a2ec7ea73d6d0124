//! # ctrflow
//!
//! Reads Amazon Connect contact trace records (CTRs) from a stream, routes every record
//! through a TOML-defined graph of sandboxed WebAssembly plugins, writes them to their
//! destinations, and times every hop on the way.
//!
//! ## A tour, in the order data flows
//!
//! The model — what the user declared; runs nothing:
//! - [`units`]: sizes (`"32MiB"`) and durations (`"5ms"`) as written in TOML.
//! - [`config`] reads the pipeline TOML into plain structs (and `${VAR}` interpolation). A
//!   connector node stays a `type` plus its raw keys: config knows no connector.
//! - [`graph`] validates the structure into a DAG, reporting every problem at once.
//! - [`record`] is what flows: a document parsed once, shared copy-on-write on fan-out.
//! - [`json`] reads a source's documents (straight into serde_json's tree; serde_json answers
//!   every error) and writes a record's JSON text (serde_json's bytes, faster) wherever it
//!   leaves.
//! - [`doc`]: a record's document, a tree or a flat object's text (what flattening writes),
//!   parsed only when something reads into it.
//! - [`ack`] turns sink acknowledgements into source checkpoints: at least once.
//! - [`timing`] keeps the hop histograms and renders the report (table, JSON, HTML,
//!   Prometheus).
//!
//! The contract — what connectors and the runtime agree on:
//! - [`flow`]: batches, the bounded channels between nodes, the stop signal.
//! - [`tap`]: copies of the records leaving a node, for `ctrflow tap`, never waited for.
//! - [`dead_letter`]: refused records, their stable kinds, and the dead-letter writer.
//! - [`contract`]: the connector traits (source, sink, table), the context a source runs
//!   with, the items and outcomes a sink writer deals in, and what every node shares.
//!
//! The outside world and the sandbox (neither knows the other):
//! - [`connectors`]: one module per connector, and the [`connectors::registry`] that maps
//!   `type = "…"` to them: generator, files, stdin, SQLite, stdout, Kinesis, DynamoDB,
//!   Firehose, SNS, HTTP, lookup tables.
//! - [`host`] is the WebAssembly host: one engine, plugins compiled once and cached,
//!   sandboxed instances with a memory cap and a deadline, traps contained.
//!
//! Running it:
//! - [`pipeline`] builds: the named checks that all add to one list of problems.
//! - [`topology`] opens the connectors, wires the channels and starts one thread per node;
//!   [`transform`] and [`sink`] are the nodes' loops; [`monitor`] shows progress;
//!   [`admin`] is the endpoint operators ask (`/metrics`, `/ready`, `/stats`, `/tap`) and
//!   the `top` and `tap` commands that read it; [`lambda`] runs the pipeline as an AWS
//!   Lambda function behind a Kinesis trigger.
//! - [`pipeline_tests`] is `ctrflow test`: records walked through a built pipeline's real
//!   plugins, and conditions on where they went, with nothing read or written.
//! - [`schema`] is `ctrflow schema`: the pipeline file's JSON Schema, generated from the
//!   config types and each connector's options.
//! - [`scaffold`] is `ctrflow plugin new`: a plugin project from templates, per language.
//! - [`cli`] is the `ctrflow` command; [`logs`] writes its log lines (text or JSON).
//! - [`Allocator`]: the global allocator of the binary and the benchmarks (mimalloc).
//!
//! Each group imports only the groups listed before it (the model, then the contract, then
//! connectors and host, then the runtime), never one after it.
//!
//! What ctrflow deliberately does not do: exactly-once delivery (sinks keyed by
//! `ContactId` offer newer-wins writes instead, which make re-delivery harmless), or
//! any coordination beyond what DynamoDB conditional writes give a fleet.

pub use alloc::Allocator;

pub mod ack;
pub mod admin;
mod alloc;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod contract;
pub mod dead_letter;
pub mod doc;
pub mod flow;
pub mod graph;
pub mod host;
pub mod json;
pub mod lambda;
pub mod logs;
pub mod monitor;
pub mod pipeline;
pub mod pipeline_tests;
pub mod record;
pub mod scaffold;
pub mod schema;
// Python and JavaScript plugin projects, until `ctrflow plugin new` (scaffold/) wires them.
#[path = "scaffold/lang.rs"]
pub mod scaffold_lang;
pub mod sink;
pub mod tap;
pub mod timing;
pub mod topology;
pub mod transform;
pub mod units;
