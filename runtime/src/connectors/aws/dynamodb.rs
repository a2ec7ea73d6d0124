//! The `dynamodb` sink.
//!
//! Items come from the sink plugin's columns (`ctr-item`), or are the record as a document
//! when the sink has no plugin. JSON becomes DynamoDB values as you would expect: objects →
//! `M`, arrays → `L`, numbers → `N`, strings → `S`, booleans → `BOOL`, null → `NULL`. The
//! table's key schema is read at the start (DescribeTable): an item without the partition
//! key attribute gets the plugin's partition key, else the record's `ContactId`; without
//! the sort key attribute, the plugin's sort key.
//!
//! - `mode = "put"`: BatchWriteItem, at most 25 items per call (DynamoDB's limit, which
//!   moto does not enforce, so it is enforced here) and 16 MB; `UnprocessedItems` are sent
//!   again with backoff. Two writes of one key in a batch are refused by DynamoDB, so the
//!   last one of each key in a batch is the one sent.
//! - `mode = "newer-wins"`: one conditional PutItem per item,
//!   `attribute_not_exists(<pk>) OR LastUpdateTimestampMs < :v` — strictly less, so an
//!   older or equal version never overwrites (BatchWriteItem takes no conditions). The
//!   version is the plugin's `LastUpdateTimestampMs` column, else the record's
//!   `LastUpdateTimestamp` (added as that attribute). A failed condition is a normal
//!   outcome — counted, acknowledged — not an error. Within a batch only the newest version
//!   of each key is sent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, PutRequest, WriteRequest};
use ctrflow_plugin_sdk::ctr::parse_timestamp;
use serde_json::Value;

use serde::Deserialize;

use super::{EntryOutcome, Limits, Settings, block_on, classify, described, send_all};
use crate::contract::{Destination, Env, Item, SinkConnector, SinkOptions, WriteFuture, Writer, Written};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;

/// `type = "dynamodb"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoSink {
    /// The table name.
    pub table: String,
    /// `put` (default) or `newer-wins`.
    #[serde(default)]
    pub mode: DynamoMode,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

/// How the table treats an item whose key it already holds.
#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DynamoMode {
    /// An unconditional put (BatchWriteItem): the last write wins.
    #[default]
    Put,
    /// A conditional put: the item with the greatest `LastUpdateTimestamp` wins; on a tie
    /// the first written stays.
    NewerWins,
}

impl SinkConnector for DynamoSink {
    fn validate(&self, _env: &Env) -> Vec<String> {
        if self.table.trim().is_empty() {
            return vec!["table: name the DynamoDB table".into()];
        }
        Vec::new()
    }

    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        Ok(Box::new(DynamoWriter::open(env, self, options)?))
    }

    fn destination(&self, _env: &Env) -> Destination {
        Destination { unit: "items", place: format!("DynamoDB table {}", self.table), look: None }
    }

    fn max_records(&self) -> usize {
        // Chunked to 25 per BatchWriteItem inside; several chunks go concurrently.
        500
    }
}

/// BatchWriteItem: at most 25 put/delete requests and 16 MB per call (docs/aws-api-quotas.md §6).
const MAX_BATCH_ITEMS: usize = 25;
const MAX_BATCH_BYTES: usize = 16 * 1000 * 1000;
/// An item: at most 400 KB, attribute names included.
const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The attribute newer-wins compares.
pub const VERSION_ATTRIBUTE: &str = "LastUpdateTimestampMs";

/// Writes items to a DynamoDB table.
pub struct DynamoWriter {
    node: String,
    client: Client,
    table: String,
    mode: DynamoMode,
    hash_key: String,
    range_key: Option<String>,
    max_bytes: usize,
    shutdown: Shutdown,
    skipped: Arc<AtomicU64>,
}

/// JSON → a DynamoDB attribute value.
pub fn to_attribute(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attribute).collect()),
        Value::Object(m) => AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_attribute(v))).collect()),
    }
}

/// A DynamoDB attribute value → JSON (sets become arrays, binary becomes hex text).
pub fn from_attribute(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => serde_json::from_str::<serde_json::Number>(n)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attribute).collect()),
        AttributeValue::M(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), from_attribute(v))).collect()),
        AttributeValue::Ss(s) => Value::Array(s.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(n) => {
            Value::Array(n.iter().map(|x| from_attribute(&AttributeValue::N(x.clone()))).collect())
        }
        AttributeValue::B(b) => Value::String(b.as_ref().iter().map(|x| format!("{x:02x}")).collect()),
        AttributeValue::Bs(bs) => Value::Array(
            bs.iter().map(|b| Value::String(b.as_ref().iter().map(|x| format!("{x:02x}")).collect())).collect(),
        ),
        _ => Value::Null,
    }
}

/// An item's size as DynamoDB counts it, roughly: names plus values.
fn attribute_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + attribute_size(v)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + attribute_size(v)).sum::<usize>(),
        _ => 1,
    }
}

struct Prepared {
    item: HashMap<String, AttributeValue>,
    key: String,
    version: Option<i64>,
    size: usize,
}

impl DynamoWriter {
    /// Loads the settings and reads the table's key schema (DescribeTable).
    pub fn open(env: &Env, cfg: &DynamoSink, options: SinkOptions) -> anyhow::Result<DynamoWriter> {
        let node = format!("sinks.{}", env.id);
        let settings = Settings::new(env.aws, cfg.endpoint_url.as_deref());
        let table = cfg.table.clone();
        let (client, hash_key, range_key) = block_on(async {
            let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
            let client = Client::new(&sdk);
            let result = client.describe_table().table_name(&table).send().await;
            let described = described(result, "table", ("DynamoDB table", &table), &settings, &sdk)?;
            let schema = described.table().map(|t| t.key_schema()).unwrap_or_default();
            let key =
                |kind: KeyType| schema.iter().find(|k| *k.key_type() == kind).map(|k| k.attribute_name().to_string());
            let hash = key(KeyType::Hash)
                .ok_or_else(|| anyhow::anyhow!("table: DynamoDB table {table:?} has no partition key"))?;
            anyhow::Ok((client, hash, key(KeyType::Range)))
        })?;
        Ok(DynamoWriter {
            node,
            client,
            table: cfg.table.clone(),
            mode: cfg.mode,
            hash_key,
            range_key,
            max_bytes: options.max_bytes.unwrap_or(MAX_BATCH_BYTES).min(MAX_BATCH_BYTES),
            shutdown: options.shutdown,
            skipped: Arc::new(AtomicU64::new(0)),
        })
    }

    fn prepare(&self, item: &Item) -> Result<Prepared, String> {
        let mut map: HashMap<String, AttributeValue> = match &item.encoding {
            Some(e) if !e.columns.is_empty() => e.columns.iter().map(|(k, v)| (k.clone(), to_attribute(v))).collect(),
            _ => match &*item.record.doc {
                Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), to_attribute(v))).collect(),
                _ => return Err("the record is not a JSON object".into()),
            },
        };
        if !map.contains_key(&self.hash_key) {
            let value = item
                .encoding
                .as_ref()
                .and_then(|e| e.partition_key.clone())
                .or_else(|| item.record.contact_id().map(str::to_string))
                .ok_or_else(|| format!("the item has no {:?} attribute (the table's partition key)", self.hash_key))?;
            map.insert(self.hash_key.clone(), AttributeValue::S(value));
        }
        if let Some(range) = &self.range_key
            && !map.contains_key(range)
        {
            let value = item.encoding.as_ref().and_then(|e| e.sort_key.clone()).ok_or_else(|| {
                format!("the item has no {range:?} attribute (the table's sort key); set the plugin's sort_key")
            })?;
            map.insert(range.clone(), AttributeValue::S(value));
        }
        let version = match map.get(VERSION_ATTRIBUTE) {
            Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
            _ => None,
        }
        .or_else(|| item.record.doc.get("LastUpdateTimestamp").and_then(Value::as_str).and_then(parse_timestamp));
        if self.mode == DynamoMode::NewerWins {
            let v = version.ok_or("newer-wins needs a LastUpdateTimestamp (or a LastUpdateTimestampMs column)")?;
            map.entry(VERSION_ATTRIBUTE.to_string()).or_insert_with(|| AttributeValue::N(v.to_string()));
        }
        let key = format!("{:?}|{:?}", map.get(&self.hash_key), self.range_key.as_ref().and_then(|r| map.get(r)));
        let size = map.iter().map(|(k, v)| k.len() + attribute_size(v)).sum();
        Ok(Prepared { item: map, key, version, size })
    }

    /// Writes the items; one result per item.
    ///
    /// One write per key per request: the last version (put) or the newest, first on a tie
    /// (newer-wins). A version superseded by a newer one of the same batch takes the newer
    /// one's outcome — acknowledged only once the newer is written. If the newer is refused
    /// (too large, say), the next one down is written instead, so a bad newer version never
    /// loses a good older one.
    async fn write_batch(&mut self, items: &[Item]) -> Vec<Written> {
        let mut results: Vec<Option<Written>> = vec![None; items.len()];
        let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.prepare(item) {
                Ok(p) if p.size > MAX_ITEM_BYTES => {
                    results[i] = Some(Written::Refused {
                        kind: DeadLetterKind::Oversized,
                        reason: format!(
                            "item of about {} bytes exceeds DynamoDB's 400 KB ({MAX_ITEM_BYTES} bytes) per item",
                            p.size
                        ),
                    });
                    prepared.push(None);
                }
                Ok(p) => prepared.push(Some(p)),
                Err(reason) => {
                    results[i] = Some(Written::Refused { kind: DeadLetterKind::NoKey, reason });
                    prepared.push(None);
                }
            }
        }
        let prepared = Arc::new(prepared);
        loop {
            // This round's winner per key among the undecided; the rest wait for its outcome.
            let mut winners: HashMap<&str, usize> = HashMap::new();
            for (i, p) in prepared.iter().enumerate() {
                let Some(p) = p.as_ref().filter(|_| results[i].is_none()) else { continue };
                match winners.get(p.key.as_str()).copied() {
                    None => {
                        winners.insert(&p.key, i);
                    }
                    Some(j) => {
                        let newer = match self.mode {
                            DynamoMode::NewerWins => p.version > prepared[j].as_ref().and_then(|q| q.version),
                            DynamoMode::Put => true,
                        };
                        if newer {
                            winners.insert(&p.key, i);
                        }
                    }
                }
            }
            if winners.is_empty() {
                break;
            }
            let mut round: Vec<Option<Written>> = vec![Some(Written::Ok); items.len()];
            for &i in winners.values() {
                round[i] = None;
            }
            let sent = self.send(round, &prepared).await;
            let outcome: HashMap<&str, Written> = winners.iter().map(|(k, &i)| (*k, sent[i].clone())).collect();
            for (i, p) in prepared.iter().enumerate() {
                let Some(p) = p.as_ref().filter(|_| results[i].is_none()) else { continue };
                match (&outcome[p.key.as_str()], winners[p.key.as_str()] == i) {
                    (w, true) => results[i] = Some(w.clone()),
                    // Superseded by a newer version that was written (or left for the next
                    // run): the same outcome. A refused winner leaves the rest undecided.
                    (Written::Ok, false) => results[i] = Some(Written::Ok),
                    (Written::Unwritten, false) => results[i] = Some(Written::Unwritten),
                    (Written::Skipped, false) => results[i] = Some(Written::Skipped),
                    (Written::Refused { .. }, false) => {}
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Written::Unwritten)).collect()
    }

    /// Sends the items whose result is `None`.
    async fn send(&self, results: Vec<Option<Written>>, items: &Arc<Vec<Option<Prepared>>>) -> Vec<Written> {
        let prepared = items;
        let sizes: Vec<usize> = prepared.iter().map(|p| p.as_ref().map_or(0, |p| p.size)).collect();
        let what = self.node.as_str();
        match self.mode {
            DynamoMode::NewerWins => {
                let limits = Limits { max_entries: 1, max_bytes: usize::MAX, concurrency: 16 };
                let skipped = self.skipped.clone();
                send_all(what, results, &sizes, limits, &self.shutdown, |chunk| {
                    let p = items[chunk[0]].as_ref().expect("only prepared items are sent");
                    let req = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(p.item.clone()))
                        .condition_expression("attribute_not_exists(#pk) OR #v < :v")
                        .expression_attribute_names("#pk", &self.hash_key)
                        .expression_attribute_names("#v", VERSION_ATTRIBUTE)
                        .expression_attribute_values(":v", p.item[VERSION_ATTRIBUTE].clone());
                    let skipped = skipped.clone();
                    Box::pin(async move {
                        match req.send().await {
                            Ok(_) => Ok(vec![EntryOutcome::Done]),
                            Err(e)
                                if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                            {
                                skipped.fetch_add(1, Ordering::Relaxed);
                                Ok(vec![EntryOutcome::Done])
                            }
                            Err(e) => Err(classify(&e)),
                        }
                    })
                })
                .await
            }
            _ => {
                let limits = Limits { max_entries: MAX_BATCH_ITEMS, max_bytes: self.max_bytes, concurrency: 8 };
                send_all(what, results, &sizes, limits, &self.shutdown, |chunk| {
                    let requests: Vec<WriteRequest> = chunk
                        .iter()
                        .filter_map(|&i| items[i].as_ref())
                        .filter_map(|p| PutRequest::builder().set_item(Some(p.item.clone())).build().ok())
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .collect();
                    let keys: Vec<String> =
                        chunk.iter().map(|&i| items[i].as_ref().map(|p| p.key.clone()).unwrap_or_default()).collect();
                    let (hash, range) = (self.hash_key.clone(), self.range_key.clone());
                    let table = self.table.clone();
                    let req = self.client.batch_write_item().request_items(&self.table, requests);
                    Box::pin(async move {
                        let out = req.send().await.map_err(|e| classify(&e))?;
                        let unprocessed: HashSet<String> = out
                            .unprocessed_items()
                            .and_then(|u| u.get(&table))
                            .into_iter()
                            .flatten()
                            .filter_map(|w| w.put_request())
                            .map(|p| {
                                let item = p.item();
                                format!("{:?}|{:?}", item.get(&hash), range.as_ref().and_then(|r| item.get(r)))
                            })
                            .collect();
                        Ok(keys
                            .iter()
                            .map(|k| {
                                if unprocessed.contains(k) {
                                    EntryOutcome::Retry("UnprocessedItems".into())
                                } else {
                                    EntryOutcome::Done
                                }
                            })
                            .collect())
                    })
                })
                .await
            }
        }
    }
}

impl Writer for DynamoWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_batch(items))
    }

    /// Logs what newer-wins skipped.
    fn close(&mut self) -> anyhow::Result<()> {
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            tracing::info!(sink = %self.node, table = %self.table, skipped, "Newer-wins kept a newer or equal version already stored (not an error).");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_becomes_dynamodb_values_and_back() {
        let doc = json!({"s": "x", "n": 1.5, "i": 7, "b": true, "z": null, "l": [1, "a"], "m": {"k": "v"}});
        let av = to_attribute(&doc);
        let AttributeValue::M(m) = &av else { panic!("{av:?}") };
        assert_eq!(m["n"], AttributeValue::N("1.5".into()));
        assert_eq!(m["z"], AttributeValue::Null(true));
        assert!(matches!(m["l"], AttributeValue::L(_)));
        assert_eq!(from_attribute(&av), doc);
    }
}
