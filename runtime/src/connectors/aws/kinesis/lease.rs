//! The Kinesis Client Library's lease table in DynamoDB: one item per shard, read and
//! written with the KCL's attribute names and its conditional-write protocol, so a fleet of
//! ctrflow processes — or a team moving from a KCL application — shares one table.
//!
//! An item (the KCL's `KinesisClientLeaseSerializer`; docs/aws-api-quotas.md §8):
//! `leaseKey` (the shard id, hash key), `leaseOwner` (the worker holding it; absent when
//! released), `leaseCounter` (bumped by every write of the owner: a lease whose counter does
//! not move for `lease_duration` has a dead owner), `checkpoint` (a sequence number,
//! `SHARD_END`, or a start sentinel `TRIM_HORIZON`/`LATEST`/`AT_TIMESTAMP` before the first
//! checkpoint), `checkpointSubSequenceNumber` (the last KPL sub-record done within that
//! record), `ownerSwitchesSinceCheckpoint`, `parentShardId` (a string set).
//!
//! Every write is conditional on the `leaseCounter` (and, for the owner's own writes, the
//! `leaseOwner`) it last saw: a take, a renewal, a checkpoint or a release that lost a race
//! fails with `ConditionalCheckFailedException` and reports the lease lost (`Ok(None)` /
//! `Ok(false)`) instead of overwriting the winner. That is the fencing: a process that lost a
//! lease cannot move its checkpoint.
//!
//! This module only speaks to the table; who takes what, and when, is [`super::coordinator`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};

use super::checkpoint::SHARD_END;
use crate::connectors::aws::describe;

/// One lease as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `leaseKey`: the shard id.
    pub key: String,
    /// `leaseOwner`, absent when nobody holds it.
    pub owner: Option<String>,
    /// `leaseCounter`.
    pub counter: i64,
    /// `checkpoint`: a sequence number, `SHARD_END`, or a start sentinel.
    pub checkpoint: Option<String>,
    /// `checkpointSubSequenceNumber`.
    pub sub: i64,
    /// `ownerSwitchesSinceCheckpoint`.
    pub owner_switches: i64,
    /// `parentShardId`.
    pub parents: Vec<String>,
}

impl Lease {
    /// Read and acknowledged to its end (its children may be taken).
    pub fn finished(&self) -> bool {
        self.checkpoint.as_deref() == Some(SHARD_END)
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let n = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        let parents = match item.get("parentShardId") {
            Some(AttributeValue::Ss(set)) => set.clone(),
            Some(AttributeValue::S(one)) => vec![one.clone()],
            Some(AttributeValue::L(list)) => list.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
            _ => Vec::new(),
        };
        Some(Lease {
            key: s("leaseKey")?,
            owner: s("leaseOwner").filter(|o| !o.is_empty()),
            counter: n("leaseCounter").unwrap_or(0),
            checkpoint: s("checkpoint"),
            sub: n("checkpointSubSequenceNumber").unwrap_or(0),
            owner_switches: n("ownerSwitchesSinceCheckpoint").unwrap_or(0),
            parents,
        })
    }
}

/// A DynamoDB lease table (KCL schema).
#[derive(Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// `Ok(false)` for a lost conditional write, the error otherwise.
fn lost<E, R>(e: SdkError<E, R>) -> anyhow::Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if e.code() == Some("ConditionalCheckFailedException") { Ok(false) } else { Err(anyhow::anyhow!(describe(&e))) }
}

impl LeaseTable {
    /// Opens the table, creating it (on-demand billing, `leaseKey` as hash key) when it
    /// does not exist, as the KCL does.
    pub async fn open(client: Client, table: &str) -> Result<LeaseTable, String> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                tracing::info!(table, "Creating the Kinesis lease table.");
                let created = client
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
                    .await;
                // Two processes of a fleet starting together both try; one wins.
                if let Err(e) = created
                    && !e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception())
                {
                    return Err(format!("cannot create lease table {table:?}: {}", describe(&e)));
                }
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
        Ok(LeaseTable { client, table: table.to_string() })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// Every lease (a consistent scan, paginated).
    pub async fn list(&self) -> anyhow::Result<Vec<Lease>> {
        let mut out = Vec::new();
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
            out.extend(page.items().iter().filter_map(Lease::from_item));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Creates the lease of a shard nobody has a lease for yet, unowned, at `initial` (a
    /// start sentinel). `Ok(false)`: it existed already.
    pub async fn create(&self, shard: &str, parents: &[String], initial: &str) -> anyhow::Result<bool> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("leaseKey", s(shard))
            .item("leaseCounter", n(0))
            .item("checkpoint", s(initial))
            .item("checkpointSubSequenceNumber", n(0))
            .item("ownerSwitchesSinceCheckpoint", n(0))
            .condition_expression("attribute_not_exists(leaseKey)");
        if !parents.is_empty() {
            put = put.item("parentShardId", AttributeValue::Ss(parents.to_vec()));
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => lost(e),
        }
    }

    /// Takes `lease` (as last read) for `me`: its counter must not have moved since.
    /// Returns the new counter, or `None` when another worker wrote it first.
    pub async fn take(&self, lease: &Lease, me: &str) -> anyhow::Result<Option<i64>> {
        let switch = i64::from(lease.owner.as_deref() != Some(me));
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(&lease.key))
            .update_expression(
                "SET leaseOwner = :me, leaseCounter = :next, ownerSwitchesSinceCheckpoint = if_not_exists(ownerSwitchesSinceCheckpoint, :zero) + :switch",
            )
            .condition_expression("leaseCounter = :seen")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":next", n(lease.counter + 1))
            .expression_attribute_values(":seen", n(lease.counter))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":switch", n(switch))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Some(lease.counter + 1)),
            Err(e) => lost(e).map(|_| None),
        }
    }

    /// Renews a lease `me` holds at `counter`: the new counter, or `None` if it was lost.
    pub async fn renew(&self, shard: &str, me: &str, counter: i64) -> anyhow::Result<Option<i64>> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(shard))
            .update_expression("SET leaseCounter = :next")
            .condition_expression("leaseOwner = :me AND leaseCounter = :seen")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":seen", n(counter))
            .expression_attribute_values(":next", n(counter + 1))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Some(counter + 1)),
            Err(e) => lost(e).map(|_| None),
        }
    }

    /// Writes a checkpoint of a lease `me` holds at `counter` (fenced: nothing is written if
    /// it was lost). The new counter, or `None` if it was lost.
    pub async fn checkpoint(
        &self,
        shard: &str,
        me: &str,
        counter: i64,
        checkpoint: &str,
        sub: i64,
    ) -> anyhow::Result<Option<i64>> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(shard))
            .update_expression(
                "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :next",
            )
            .condition_expression("leaseOwner = :me AND leaseCounter = :seen")
            .expression_attribute_values(":cp", s(checkpoint))
            .expression_attribute_values(":sub", n(sub))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":seen", n(counter))
            .expression_attribute_values(":next", n(counter + 1))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Some(counter + 1)),
            Err(e) => lost(e).map(|_| None),
        }
    }

    /// Gives a lease up (the KCL's "evict": `leaseOwner` removed) so another worker takes it
    /// at once instead of waiting for it to expire. `Ok(false)`: it was lost already.
    pub async fn release(&self, shard: &str, me: &str, counter: i64) -> anyhow::Result<bool> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(shard))
            .update_expression("REMOVE leaseOwner SET leaseCounter = :next")
            .condition_expression("leaseOwner = :me AND leaseCounter = :seen")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":seen", n(counter))
            .expression_attribute_values(":next", n(counter + 1))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) => lost(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kcl_item_is_read_with_its_attribute_names() {
        let item: HashMap<String, AttributeValue> = [
            ("leaseKey", s("shardId-000000000001")),
            ("leaseOwner", s("worker-a")),
            ("leaseCounter", n(42)),
            ("checkpoint", s("49590338271490256608559692538361571095921575989136588898")),
            ("checkpointSubSequenceNumber", n(3)),
            ("ownerSwitchesSinceCheckpoint", n(1)),
            ("parentShardId", AttributeValue::Ss(vec!["shardId-000000000000".into()])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let lease = Lease::from_item(&item).unwrap();
        assert_eq!(lease.key, "shardId-000000000001");
        assert_eq!(lease.owner.as_deref(), Some("worker-a"));
        assert_eq!((lease.counter, lease.sub, lease.owner_switches), (42, 3, 1));
        assert_eq!(lease.parents, ["shardId-000000000000"]);
        assert!(!lease.finished());
    }
}
