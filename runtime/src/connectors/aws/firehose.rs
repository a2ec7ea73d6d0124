//! The `firehose` sink: PutRecordBatch to an Amazon Data Firehose delivery stream (which
//! delivers to S3, and from there to Redshift with COPY).
//!
//! Each record is its JSON (or the sink plugin's payload) followed by a newline, because
//! Firehose concatenates record bytes as they are and S3/Athena/Redshift readers need the
//! boundaries (docs/aws-api-quotas.md §5). Limits: 500 records and 4 MiB per call (or `max_bytes`
//! when smaller), 1,000 KiB per record — a larger record is refused for good, to the dead
//! letters. A 200 response can still carry failed entries (`FailedPutCount`, a per-entry
//! `ErrorCode`): only those are sent again, with backoff. Firehose may deliver a record
//! twice after a timeout; sinks downstream of S3 should tolerate duplicates.

use aws_sdk_firehose::Client;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

use serde::Deserialize;

use super::{Limits, Settings, block_on, classify, described, entry_outcomes, send_all};
use crate::contract::{Destination, Env, Item, SinkConnector, SinkOptions, WriteFuture, Writer, Written};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;

/// `type = "firehose"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirehoseSink {
    /// The delivery stream name.
    pub delivery_stream: String,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

impl SinkConnector for FirehoseSink {
    fn validate(&self, _env: &Env) -> Vec<String> {
        if self.delivery_stream.trim().is_empty() {
            return vec!["delivery_stream: name the Firehose delivery stream".into()];
        }
        Vec::new()
    }

    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        Ok(Box::new(FirehoseWriter::open(env, self, options)?))
    }

    fn destination(&self, _env: &Env) -> Destination {
        Destination { unit: "records", place: format!("Firehose {}", self.delivery_stream), look: None }
    }

    fn max_records(&self) -> usize {
        MAX_RECORDS
    }
}

/// PutRecordBatch: 500 records per call.
const MAX_RECORDS: usize = 500;
/// PutRecordBatch: 4 MiB per call ("these limits cannot be changed").
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// PutRecordBatch: 1,000 KiB per record, before base64.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// Writes records to a delivery stream.
pub struct FirehoseWriter {
    node: String,
    client: Client,
    stream: String,
    max_bytes: usize,
    shutdown: Shutdown,
}

impl FirehoseWriter {
    /// Loads the settings and checks the delivery stream exists (DescribeDeliveryStream).
    pub fn open(env: &Env, cfg: &FirehoseSink, options: SinkOptions) -> anyhow::Result<FirehoseWriter> {
        let node = format!("sinks.{}", env.id);
        let settings = Settings::new(env.aws, cfg.endpoint_url.as_deref());
        let stream = cfg.delivery_stream.clone();
        let client = block_on(async {
            let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
            let client = Client::new(&sdk);
            let result = client.describe_delivery_stream().delivery_stream_name(&stream).send().await;
            described(result, "delivery_stream", ("Firehose delivery stream", &stream), &settings, &sdk)?;
            anyhow::Ok(client)
        })?;
        Ok(FirehoseWriter {
            node,
            client,
            stream,
            max_bytes: options.max_bytes.unwrap_or(MAX_REQUEST_BYTES).min(MAX_REQUEST_BYTES),
            shutdown: options.shutdown,
        })
    }

    /// Writes the items; one result per item.
    async fn write_batch(&mut self, items: &[Item]) -> Vec<Written> {
        let mut results: Vec<Option<Written>> = vec![None; items.len()];
        let mut blobs: Vec<Blob> = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut data = item.payload();
            if data.last() != Some(&b'\n') {
                data.push(b'\n');
            }
            if data.len() > MAX_RECORD_BYTES {
                results[i] = Some(Written::Refused {
                    kind: DeadLetterKind::Oversized,
                    reason: format!(
                        "record of {} bytes (with its newline) exceeds Firehose's 1,000 KiB ({MAX_RECORD_BYTES} bytes) per record",
                        data.len()
                    ),
                });
            }
            sizes.push(data.len());
            blobs.push(Blob::new(data));
        }
        let limits = Limits { max_entries: MAX_RECORDS, max_bytes: self.max_bytes, concurrency: 4 };
        send_all(&self.node, results, &sizes, limits, &self.shutdown, |chunk| {
            let records: Vec<Record> =
                chunk.iter().filter_map(|&i| Record::builder().data(blobs[i].clone()).build().ok()).collect();
            let n = chunk.len();
            let req = self.client.put_record_batch().delivery_stream_name(&self.stream).set_records(Some(records));
            Box::pin(async move {
                let out = req.send().await.map_err(|e| classify(&e))?;
                Ok(entry_outcomes(out.request_responses().iter().map(|r| r.error_code()), n))
            })
        })
        .await
    }
}

impl Writer for FirehoseWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_batch(items))
    }
}
