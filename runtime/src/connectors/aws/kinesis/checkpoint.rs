//! A Kinesis source's per-shard checkpoints in a file of the state directory (one process
//! per stream), and the sequence-number helpers both stores share.
//!
//! A checkpoint is the sequence number of the last record whose batch — and every batch
//! before it on that shard — was acknowledged, or `SHARD_END` once a closed shard was read
//! and acknowledged to its end (its children may then be read). Batches end on whole
//! Kinesis records, so a file checkpoint never points inside a KPL aggregated record.
//!
//! The DynamoDB lease table, shared by a fleet, is [`super::lease`] and
//! [`super::coordinator`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::contract::CheckpointFile;

/// The checkpoint of a shard read to its end.
pub const SHARD_END: &str = "SHARD_END";

/// Sentinels the KCL writes before a first checkpoint (not sequence numbers).
pub const SENTINELS: &[&str] = &["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];

/// The checkpoint file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileState {
    /// The stream the checkpoints belong to.
    pub stream: String,
    /// Shard id → sequence number or `SHARD_END`.
    pub shards: BTreeMap<String, String>,
}

/// The file store: `<state_dir>/<source id>.checkpoint.json`.
pub struct Store {
    file: CheckpointFile,
    state: FileState,
}

impl Store {
    /// The file store of source `id` (loaded now).
    pub fn file(state_dir: &Path, id: &str, stream: &str) -> anyhow::Result<Store> {
        let file = CheckpointFile::new(state_dir, id);
        let state: FileState = file.load()?.unwrap_or_default();
        if !state.stream.is_empty() && state.stream != stream {
            anyhow::bail!(
                "the checkpoint in {} is for stream {:?}, not {stream:?}; delete it to start over",
                state_dir.display(),
                state.stream
            );
        }
        Ok(Store { file, state: FileState { stream: stream.to_string(), shards: state.shards } })
    }

    /// The saved checkpoints: shard id → sequence number or `SHARD_END`.
    pub fn load(&self) -> HashMap<String, String> {
        self.state.shards.clone().into_iter().collect()
    }

    /// Records checkpoints (several shards at once); durable when it returns.
    pub fn save(&mut self, changed: &BTreeMap<String, String>) -> anyhow::Result<()> {
        if changed.is_empty() {
            return Ok(());
        }
        self.state.shards.extend(changed.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.file.save(&self.state)
    }
}

/// Compares two Kinesis sequence numbers as the big integers they are (real ones are
/// 56-digit strings; moto's are "1", "2", …): a shorter number without leading zeros is
/// smaller.
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_as_integers_not_strings() {
        assert_eq!(cmp_sequence("9", "10"), Ordering::Less, "\"9\" > \"10\" as strings");
        assert_eq!(cmp_sequence("49590338271490256608559692538361571095921575989136588898", "2"), Ordering::Greater);
        assert_eq!(cmp_sequence("007", "7"), Ordering::Equal);
    }
}
