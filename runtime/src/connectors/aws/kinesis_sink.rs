//! The `kinesis` sink: PutRecords to a Kinesis data stream (to feed another consumer, or
//! to load a stream with synthetic CTRs: `pipelines/load-kinesis.toml`).
//!
//! The partition key is the text of the record's `partition_key` field (a path, default
//! `ContactId`), so one contact's versions stay in order on one shard. Limits: 500 records
//! and 5 MiB per call, 1 MiB per record including its partition key (the classic limits,
//! safe for every stream; docs/aws-api-quotas.md §1). A 200 response can still carry failed entries
//! (`FailedRecordCount`, per-entry `ProvisionedThroughputExceededException` or
//! `InternalFailure`): only those are sent again, with backoff — so, as AWS warns,
//! PutRecords does not keep order across a retry.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::Value;

use serde::Deserialize;

use super::{Limits, Settings, block_on, classify, described, entry_outcomes, send_all};
use crate::contract::{Destination, Env, Item, SinkConnector, SinkOptions, WriteFuture, Writer, Written};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;

/// `type = "kinesis"` (as a sink).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisSink {
    /// The stream name.
    pub stream: String,
    /// The field whose value is the partition key. Default `ContactId`.
    #[serde(default = "default_partition_key")]
    pub partition_key: String,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

fn default_partition_key() -> String {
    "ContactId".into()
}

impl SinkConnector for KinesisSink {
    fn validate(&self, _env: &Env) -> Vec<String> {
        let mut problems = Vec::new();
        if self.stream.trim().is_empty() {
            problems.push("stream: name the Kinesis stream".into());
        }
        if let Err(e) = FieldPath::parse(&self.partition_key) {
            problems.push(format!("partition_key: {e}"));
        }
        problems
    }

    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        Ok(Box::new(KinesisWriter::open(env, self, options)?))
    }

    fn destination(&self, _env: &Env) -> Destination {
        Destination { unit: "records", place: format!("Kinesis {}", self.stream), look: None }
    }

    fn max_records(&self) -> usize {
        MAX_RECORDS
    }
}

const MAX_RECORDS: usize = 500;
const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1024 * 1024;
const MAX_KEY_CHARS: usize = 256;

/// Writes records to a stream.
pub struct KinesisWriter {
    node: String,
    client: Client,
    stream: String,
    key: FieldPath,
    max_bytes: usize,
    shutdown: Shutdown,
}

impl KinesisWriter {
    /// Loads the settings and checks the stream exists (DescribeStreamSummary).
    pub fn open(env: &Env, cfg: &KinesisSink, options: SinkOptions) -> anyhow::Result<KinesisWriter> {
        let node = format!("sinks.{}", env.id);
        let key = FieldPath::parse(&cfg.partition_key).map_err(|e| anyhow::anyhow!("partition_key: {e}"))?;
        let settings = Settings::new(env.aws, cfg.endpoint_url.as_deref());
        let stream = cfg.stream.clone();
        let client = block_on(async {
            let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
            let client = Client::new(&sdk);
            let result = client.describe_stream_summary().stream_name(&stream).send().await;
            described(result, "stream", ("Kinesis stream", &stream), &settings, &sdk)?;
            anyhow::Ok(client)
        })?;
        Ok(KinesisWriter {
            node,
            client,
            stream,
            key,
            max_bytes: options.max_bytes.unwrap_or(MAX_REQUEST_BYTES).min(MAX_REQUEST_BYTES),
            shutdown: options.shutdown,
        })
    }

    /// Writes the items; one result per item.
    async fn write_batch(&mut self, items: &[Item]) -> Vec<Written> {
        let mut results: Vec<Option<Written>> = vec![None; items.len()];
        let mut entries: Vec<Option<PutRecordsRequestEntry>> = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            // `Doc::field`: a flattened record's key is read from its text, not its tree.
            let key = match item.record.doc.field(&self.key).as_deref() {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => {
                    results[i] = Some(Written::Refused {
                        kind: DeadLetterKind::NoPartitionKey,
                        reason: format!("the record has no text or number at partition_key {:?}", self.key.to_string()),
                    });
                    entries.push(None);
                    sizes.push(0);
                    continue;
                }
            };
            let key: String = key.chars().take(MAX_KEY_CHARS).collect();
            let data = item.payload();
            let size = data.len() + key.len();
            if size > MAX_RECORD_BYTES {
                results[i] = Some(Written::Refused {
                    kind: DeadLetterKind::Oversized,
                    reason: format!(
                        "record of {size} bytes (with its partition key) exceeds Kinesis's 1 MiB per record"
                    ),
                });
            }
            sizes.push(size);
            entries.push(PutRecordsRequestEntry::builder().data(Blob::new(data)).partition_key(key).build().ok());
        }
        // One request in flight: Kinesis orders records of a partition key within a request,
        // and concurrent requests could interleave two versions of a contact. (Concurrent
        // PutRecords against moto also lost a record once in ~10 test runs.)
        let limits = Limits { max_entries: MAX_RECORDS, max_bytes: self.max_bytes, concurrency: 1 };
        send_all(&self.node, results, &sizes, limits, &self.shutdown, |chunk| {
            let records: Vec<PutRecordsRequestEntry> = chunk.iter().filter_map(|&i| entries[i].clone()).collect();
            let n = chunk.len();
            let req = self.client.put_records().stream_name(&self.stream).set_records(Some(records));
            Box::pin(async move {
                let out = req.send().await.map_err(|e| classify(&e))?;
                Ok(entry_outcomes(out.records().iter().map(|r| r.error_code()), n))
            })
        })
        .await
    }
}

impl Writer for KinesisWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_batch(items))
    }
}
