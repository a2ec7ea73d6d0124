//! Where a Kinesis source keeps its per-shard checkpoints: a file in the state directory,
//! or a DynamoDB table with the Kinesis Client Library's lease schema.
//!
//! A checkpoint is the sequence number of the last record whose batch — and every batch
//! before it on that shard — was acknowledged, or `SHARD_END` once a closed shard was read
//! and acknowledged to its end (its children may then be read).
//!
//! The DynamoDB table uses the KCL's attributes (docs/aws-limits.md §8): `leaseKey` (the shard
//! id, the hash key), `leaseOwner`, `leaseCounter`, `checkpoint`,
//! `checkpointSubSequenceNumber`, `ownerSwitchesSinceCheckpoint`, `parentShardId`. A run
//! takes the lease of every shard it reads (a conditional write on the `leaseCounter` it
//! saw) and checkpoints only while it still owns it (`leaseOwner = me`), so two processes
//! never both advance one shard. What it does not do yet: balance leases across a fleet,
//! renew them in the background, or wait for another worker's lease to expire before
//! taking it — one process per stream (see docs/aws.md).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use serde::{Deserialize, Serialize};

use crate::connectors::aws::describe;
use crate::contract::CheckpointFile;

/// The checkpoint of a shard read to its end.
pub const SHARD_END: &str = "SHARD_END";

/// Sentinels the KCL writes before a first checkpoint (not sequence numbers).
const SENTINELS: &[&str] = &["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];

/// The checkpoint file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileState {
    /// The stream the checkpoints belong to.
    pub stream: String,
    /// Shard id → sequence number or `SHARD_END`.
    pub shards: BTreeMap<String, String>,
}

/// A checkpoint store.
pub enum Store {
    /// `<state_dir>/<source id>.checkpoint.json`.
    File { file: CheckpointFile, state: FileState },
    /// A KCL-schema lease table.
    Dynamo(LeaseTable),
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
        Ok(Store::File { file, state: FileState { stream: stream.to_string(), shards: state.shards } })
    }

    /// The saved checkpoints: shard id → sequence number or `SHARD_END`.
    pub async fn load(&mut self) -> anyhow::Result<HashMap<String, String>> {
        match self {
            Store::File { state, .. } => Ok(state.shards.clone().into_iter().collect()),
            Store::Dynamo(t) => t.load().await,
        }
    }

    /// Takes ownership of a shard before reading it (a no-op for the file store).
    pub async fn take(&mut self, shard: &str, parents: &[String]) -> anyhow::Result<()> {
        match self {
            Store::File { .. } => Ok(()),
            Store::Dynamo(t) => t.take(shard, parents).await,
        }
    }

    /// Records checkpoints (several shards at once); durable when it returns.
    pub async fn save(&mut self, changed: &BTreeMap<String, String>) -> anyhow::Result<()> {
        if changed.is_empty() {
            return Ok(());
        }
        match self {
            Store::File { file, state } => {
                state.shards.extend(changed.iter().map(|(k, v)| (k.clone(), v.clone())));
                file.save(state)
            }
            Store::Dynamo(t) => {
                for (shard, checkpoint) in changed {
                    t.checkpoint(shard, checkpoint).await?;
                }
                Ok(())
            }
        }
    }
}

/// A DynamoDB lease table (KCL schema).
pub struct LeaseTable {
    client: Client,
    table: String,
    owner: String,
    counters: HashMap<String, i64>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl LeaseTable {
    /// Opens the table, creating it (on-demand billing, `leaseKey` as hash key) when it
    /// does not exist, as the KCL does.
    pub async fn open(client: Client, table: &str, owner: String) -> Result<LeaseTable, String> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                tracing::info!(table, "Creating the Kinesis lease table.");
                client
                    .create_table()
                    .table_name(table)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name("leaseKey")
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|e| e.to_string())?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("leaseKey")
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(|e| e.to_string())?,
                    )
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await
                    .map_err(|e| format!("cannot create lease table {table:?}: {}", describe(&e)))?;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                loop {
                    let d = client.describe_table().table_name(table).send().await.map_err(|e| describe(&e))?;
                    if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                        break;
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(format!("lease table {table:?} did not become ACTIVE within 2 minutes"));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
            Err(e) => return Err(format!("cannot read lease table {table:?}: {}", describe(&e))),
        }
        Ok(LeaseTable { client, table: table.to_string(), owner, counters: HashMap::new() })
    }

    async fn load(&mut self) -> anyhow::Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("lease table {:?}: {}", self.table, describe(&e)))?;
            for item in page.items() {
                let key = item.get("leaseKey").and_then(|v| v.as_s().ok());
                let cp = item.get("checkpoint").and_then(|v| v.as_s().ok());
                let counter = item.get("leaseCounter").and_then(|v| v.as_n().ok()).and_then(|c| c.parse().ok());
                if let Some(key) = key {
                    if let Some(c) = counter {
                        self.counters.insert(key.clone(), c);
                    }
                    if let Some(cp) = cp.filter(|c| !SENTINELS.contains(&c.as_str())) {
                        out.insert(key.clone(), cp.clone());
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn take(&mut self, shard: &str, parents: &[String]) -> anyhow::Result<()> {
        let taken = match self.counters.get(shard).copied() {
            None => {
                let mut put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .item("leaseKey", s(shard))
                    .item("leaseOwner", s(&self.owner))
                    .item("leaseCounter", n(1))
                    .item("checkpoint", s("TRIM_HORIZON"))
                    .item("checkpointSubSequenceNumber", n(0))
                    .item("ownerSwitchesSinceCheckpoint", n(0))
                    .condition_expression("attribute_not_exists(leaseKey)");
                if !parents.is_empty() {
                    put = put.item("parentShardId", AttributeValue::Ss(parents.to_vec()));
                }
                put.send().await.map(|_| 1).map_err(|e| {
                    (e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()), describe(&e))
                })
            }
            Some(seen) => self
                .client
                .update_item()
                .table_name(&self.table)
                .key("leaseKey", s(shard))
                .update_expression(
                    "SET leaseOwner = :me, leaseCounter = :next, ownerSwitchesSinceCheckpoint = if_not_exists(ownerSwitchesSinceCheckpoint, :zero) + :one",
                )
                .condition_expression("leaseCounter = :seen")
                .expression_attribute_values(":me", s(&self.owner))
                .expression_attribute_values(":next", n(seen + 1))
                .expression_attribute_values(":seen", n(seen))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .send()
                .await
                .map(|_| seen + 1)
                .map_err(|e| {
                    (e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()), describe(&e))
                }),
        };
        match taken {
            Ok(counter) => {
                self.counters.insert(shard.to_string(), counter);
                Ok(())
            }
            Err((true, _)) => {
                anyhow::bail!(
                    "lease table {:?}: another worker took the lease of {shard} at the same time; one process per stream",
                    self.table
                )
            }
            Err((false, e)) => anyhow::bail!("lease table {:?}: cannot take {shard}: {e}", self.table),
        }
    }

    async fn checkpoint(&mut self, shard: &str, checkpoint: &str) -> anyhow::Result<()> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(shard))
            .update_expression(
                "SET checkpoint = :cp, checkpointSubSequenceNumber = :zero, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = leaseCounter + :one",
            )
            .condition_expression("leaseOwner = :me")
            .expression_attribute_values(":cp", s(checkpoint))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        match r {
            Ok(_) => {
                if let Some(c) = self.counters.get_mut(shard) {
                    *c += 1;
                }
                Ok(())
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                anyhow::bail!("lease table {:?}: the lease of {shard} was taken by another worker", self.table)
            }
            Err(e) => anyhow::bail!("lease table {:?}: cannot checkpoint {shard}: {}", self.table, describe(&e)),
        }
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
