//! `type = "dynamodb"` lookup tables for enrich plugins: GetItem behind a bounded cache
//! with a time to live.
//!
//! An enrich plugin's `lookup(table, key)` is a synchronous call made on a transform
//! thread in the middle of a plugin call, so a miss waits for its GetItem on the AWS
//! runtime. The cache makes that rare: rows (and misses — a missing row is cached too) are
//! kept for `ttl` (default 60 s), at most `capacity` of them (default 10,000), the oldest
//! evicted first — with one TTL for all rows, first in is also first to expire. Reads are
//! eventually consistent (half the cost; a row changed a moment ago may be seen old for
//! up to the TTL anyway).
//!
//! A GetItem that fails for an infrastructure reason (throttling, a 5xx, a timeout, a
//! dropped connection) is reported as [`LookupError::Unavailable`]: the host retries it and
//! never turns it into a failed record. A refusal (validation, a table that is gone, access
//! denied) is [`LookupError::Failed`]: the plugin sees `lookup-failed`.
//!
//! Nothing contacts AWS until the run starts: [`TableConnector::check`] then confirms the
//! table exists.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;
use serde_json::Value;

use super::dynamodb::from_attribute;
use super::{Fault, Settings, block_on, classify, described};
use crate::contract::{Env, Lookup, LookupError, TableConnector};
use crate::units::parse_duration;

/// `type = "dynamodb"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoTable {
    /// The DynamoDB table name.
    pub table: String,
    /// The partition key attribute name.
    pub key: String,
    /// How long a looked-up row is cached, e.g. `"5m"`. Default `"60s"`.
    pub ttl: Option<String>,
    /// How many rows the cache holds. Default 10000.
    pub capacity: Option<usize>,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

impl TableConnector for DynamoTable {
    fn open(&self, env: &Env) -> Result<Arc<dyn Lookup>, String> {
        Ok(Arc::new(DynamoLookup::new(env, self)?))
    }

    fn check(&self, env: &Env) -> anyhow::Result<()> {
        check(env, self)
    }
}

const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_CAPACITY: usize = 10_000;

/// A DynamoDB table read through a cache.
pub struct DynamoLookup {
    node: String,
    table: String,
    key: String,
    settings: Settings,
    client: OnceLock<Result<Client, String>>,
    ttl: Duration,
    capacity: usize,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    rows: HashMap<String, (Instant, Option<Value>)>,
    order: VecDeque<(String, Instant)>,
}

impl Cache {
    fn get(&self, key: &str, ttl: Duration) -> Option<Option<Value>> {
        let (at, row) = self.rows.get(key)?;
        (at.elapsed() < ttl).then(|| row.clone())
    }

    fn insert(&mut self, key: String, row: Option<Value>, capacity: usize) {
        let now = Instant::now();
        while self.rows.len() >= capacity.max(1) {
            let Some((old, at)) = self.order.pop_front() else { break };
            // Only the entry's latest insertion evicts it.
            if self.rows.get(&old).is_some_and(|(t, _)| *t == at) {
                self.rows.remove(&old);
            }
        }
        self.order.push_back((key.clone(), now));
        self.rows.insert(key, (now, row));
        // Stale order entries of re-inserted keys must not grow without bound.
        if self.order.len() > capacity.max(1) * 2 {
            let rows = &self.rows;
            self.order.retain(|(k, at)| rows.get(k).is_some_and(|(t, _)| t == at));
        }
    }
}

impl DynamoLookup {
    /// Checks the settings; does not contact AWS.
    pub fn new(env: &Env, cfg: &DynamoTable) -> Result<DynamoLookup, String> {
        let ttl = match &cfg.ttl {
            None => DEFAULT_TTL,
            Some(t) => parse_duration(t).map_err(|e| format!("ttl: {e}"))?,
        };
        let capacity = cfg.capacity.unwrap_or(DEFAULT_CAPACITY);
        if capacity == 0 {
            return Err("capacity: must be at least 1".into());
        }
        if cfg.table.trim().is_empty() {
            return Err("table: name the DynamoDB table".into());
        }
        Ok(DynamoLookup {
            node: format!("tables.{}", env.id),
            table: cfg.table.clone(),
            key: cfg.key.clone(),
            settings: Settings::new(env.aws, cfg.endpoint_url.as_deref()),
            client: OnceLock::new(),
            ttl,
            capacity,
            cache: Mutex::new(Cache::default()),
        })
    }

    fn client(&self) -> Result<Client, String> {
        self.client
            .get_or_init(|| {
                let s = self.settings.clone();
                block_on(async move { s.load().await.map(|sdk| Client::new(&sdk)) })
            })
            .clone()
    }

    fn fetch(&self, key: &str) -> Result<Option<Value>, LookupError> {
        // Loading the AWS configuration fails on a setup problem, not a passing one.
        let client = self.client().map_err(|e| LookupError::Failed(format!("{}: {e}", self.node)))?;
        let req = client.get_item().table_name(&self.table).key(&self.key, AttributeValue::S(key.to_string()));
        let out = block_on(req.send()).map_err(|e| {
            let what = |text: String| format!("{}: GetItem on DynamoDB table {:?}: {text}", self.node, self.table);
            match classify(&e) {
                Fault::Retry(text) => LookupError::Unavailable(what(text)),
                Fault::Fatal(text) | Fault::Halt(text) => LookupError::Failed(what(text)),
            }
        })?;
        Ok(out.item().map(|item| Value::Object(item.iter().map(|(k, v)| (k.clone(), from_attribute(v))).collect())))
    }
}

impl Lookup for DynamoLookup {
    fn get(&self, _table: &str, key: &str) -> Result<Option<Value>, LookupError> {
        let cache = self.cache.lock().map_err(|_| LookupError::Failed("lookup cache poisoned".into()))?;
        if let Some(hit) = cache.get(key, self.ttl) {
            return Ok(hit);
        }
        drop(cache);
        // Fetched without holding the lock: other threads keep answering from the cache.
        let row = self.fetch(key)?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key.to_string(), row.clone(), self.capacity);
        }
        Ok(row)
    }
}

/// At the start of a run: the table exists (DescribeTable) and has `key` as its
/// partition key. The message names the key and the table.
fn check(env: &Env, cfg: &DynamoTable) -> anyhow::Result<()> {
    let settings = Settings::new(env.aws, cfg.endpoint_url.as_deref());
    let (table, key) = (cfg.table.clone(), cfg.key.clone());
    block_on(async move {
        let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
        let client = Client::new(&sdk);
        let result = client.describe_table().table_name(&table).send().await;
        let d = described(result, "table", ("DynamoDB table", &table), &settings, &sdk)?;
        let hash = d
            .table()
            .map(|t| t.key_schema())
            .unwrap_or_default()
            .iter()
            .find(|k| *k.key_type() == aws_sdk_dynamodb::types::KeyType::Hash)
            .map(|k| k.attribute_name().to_string());
        if hash.as_deref() != Some(key.as_str()) {
            anyhow::bail!(
                "key: {key:?} is not the partition key of DynamoDB table {table:?} (it is {:?})",
                hash.unwrap_or_default()
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let mut c = Cache::default();
        for i in 0..5 {
            c.insert(format!("k{i}"), Some(Value::from(i)), 3);
        }
        assert_eq!(c.rows.len(), 3);
        assert_eq!(c.get("k0", Duration::from_secs(60)), None);
        assert_eq!(c.get("k4", Duration::from_secs(60)), Some(Some(Value::from(4))));
        assert_eq!(c.get("k4", Duration::ZERO), None, "expired");
    }

    #[test]
    fn a_bad_ttl_names_the_key() {
        let cfg = DynamoTable {
            table: "t".into(),
            key: "k".into(),
            ttl: Some("later".into()),
            capacity: None,
            endpoint_url: None,
        };
        let aws = crate::config::AwsConfig::default();
        let env = Env { id: "agents", base_dir: std::path::Path::new("."), aws: &aws };
        let err = DynamoLookup::new(&env, &cfg).err().unwrap();
        assert!(err.starts_with("ttl:"), "{err}");
    }
}
