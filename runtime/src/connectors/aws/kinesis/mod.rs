//! The `kinesis` source: reads a Kinesis data stream with the polling API (ListShards,
//! GetShardIterator, GetRecords), de-aggregates KPL records, and checkpoints each shard.
//!
//! - [`source`]: the read loop — shards, iterators, limits, resharding, acknowledgements.
//! - [`checkpoint`]: where checkpoints live (a state file, or a KCL-schema DynamoDB table).
//! - [`deaggregate`]: the KPL aggregated-record format.
//!
//! It does not use enhanced fan-out (SubscribeToShard): the polling API works against
//! every emulator and within a shard's shared 2 MiB/s, which one pipeline per stream uses
//! alone.

pub mod checkpoint;
pub mod deaggregate;
pub mod source;

pub use source::{KinesisSource, KinesisSourceOptions};
