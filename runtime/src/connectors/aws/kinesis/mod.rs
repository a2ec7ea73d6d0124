//! The `kinesis` source: reads a Kinesis data stream with the polling API (ListShards,
//! GetShardIterator, GetRecords), de-aggregates KPL records, and checkpoints each shard —
//! alone, or as one process of a fleet sharing the stream through a KCL lease table.
//!
//! - [`source`]: the read loop — shards, iterators, limits, resharding, acknowledgements.
//! - [`checkpoint`]: file checkpoints in the state directory (one process per stream).
//! - [`lease`]: the KCL lease table's items and conditional writes.
//! - [`coordinator`]: a fleet member's lease thread — renew, take, steal, release.
//! - [`leases_report`]: `ctrflow leases`, the lease table as an operator reads it.
//! - [`deaggregate`]: the KPL aggregated-record format.
//!
//! It does not use enhanced fan-out (SubscribeToShard): the polling API works against
//! every emulator and within a shard's shared 2 MiB/s.

pub mod checkpoint;
pub mod coordinator;
pub mod deaggregate;
pub mod lease;
pub mod leases_report;
pub mod source;

pub use source::{KinesisSource, KinesisSourceOptions};
