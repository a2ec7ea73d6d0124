//! The `sns` sink: publishes one message per record to an Amazon SNS topic — an action
//! from the stream (a text message, an email, a chat alert through a subscription) when a
//! contact calls for one, e.g. a caller abandoned in the queue.
//!
//! The message is the sink plugin's payload (`notify-template` renders a subject and a
//! body) or the record as JSON; the subject is the plugin's `subject` column, made valid for
//! SNS (no line breaks or control characters, at most 100 characters). Message attributes
//! come from configured fields (text, or `Number` for numbers). For a FIFO topic,
//! `message_group_id` and `deduplication_id` name fields of the record.
//!
//! Writes use PublishBatch: 10 entries and 256 KiB per call. A 200 response can carry failed
//! entries: a sender fault (the entry itself is invalid) dead-letters that record only; any
//! other is sent again with backoff, without limit (see [`super::send_all`]). A topic gone or
//! access denied stops the run, leaving what was not sent unacknowledged.
//!
//! `once_per` (see [`crate::connectors::once`]) sends one message per contact although
//! Connect re-delivers updated CTRs. Without it, every record routed here is published.

use std::collections::BTreeMap;

use aws_sdk_sns::Client;
use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use ctrflow_plugin_sdk::path::FieldPath;
use serde::Deserialize;
use serde_json::Value;

use super::{EntryOutcome, Fault, Limits, Settings, block_on, classify, described, send_all};
use crate::connectors::once;
use crate::contract::{Destination, Env, Item, SinkConnector, SinkOptions, WriteFuture, Writer, Written};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;

/// `type = "sns"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnsSink {
    /// The topic's ARN.
    pub topic_arn: String,
    /// Message attributes: attribute name → field path (`{ channel = "Channel" }`). A
    /// record without the field gets no such attribute.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// FIFO topics: the field whose value is the message group (required for FIFO).
    pub message_group_id: Option<String>,
    /// FIFO topics: the field whose value is the deduplication id (required unless the topic
    /// has content-based deduplication).
    pub deduplication_id: Option<String>,
    /// Send one message per value of this field (`"ContactId"`): see `remember`.
    pub once_per: Option<String>,
    /// How long a sent key is remembered (default `"7d"`).
    pub remember: Option<String>,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
}

/// PublishBatch: 10 entries per call.
const MAX_ENTRIES: usize = 10;
/// PublishBatch: 256 KiB per call, and per message, attributes included.
const MAX_BYTES: usize = 256 * 1024;
/// SNS: at most 10 message attributes.
const MAX_ATTRIBUTES: usize = 10;
/// SNS: a subject is at most 100 characters.
const MAX_SUBJECT_CHARS: usize = 100;

impl SinkConnector for SnsSink {
    fn validate(&self, _env: &Env) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.topic_arn.starts_with("arn:") {
            problems.push(format!(
                "topic_arn: {:?} is not an ARN (arn:aws:sns:<region>:<account>:<topic>)",
                self.topic_arn
            ));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            problems.push(format!("attributes: SNS takes at most {MAX_ATTRIBUTES} message attributes"));
        }
        for (name, path) in &self.attributes {
            if name.is_empty() || name.starts_with("AWS.") || name.starts_with("Amazon.") {
                problems.push(format!("attributes: {name:?} is not a name SNS accepts"));
            }
            if let Err(e) = FieldPath::parse(path) {
                problems.push(format!("attributes.{name}: {e}"));
            }
        }
        for (key, path) in [("message_group_id", &self.message_group_id), ("deduplication_id", &self.deduplication_id)]
        {
            if let Some(Err(e)) = path.as_deref().map(FieldPath::parse) {
                problems.push(format!("{key}: {e}"));
            }
        }
        problems.extend(once::validate(self.once_per.as_deref(), self.remember.as_deref()));
        problems
    }

    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        let writer = Box::new(SnsWriter::open(env, self, &options)?);
        once::wrap(writer, env.id, self.once_per.as_deref(), self.remember.as_deref(), &options)
    }

    fn destination(&self, _env: &Env) -> Destination {
        Destination { unit: "messages", place: format!("SNS {}", self.topic_arn), look: None }
    }

    fn max_records(&self) -> usize {
        // More than one call's worth: `send_all` splits and sends the calls concurrently.
        100
    }
}

/// Publishes records to a topic.
pub struct SnsWriter {
    node: String,
    client: Client,
    topic_arn: String,
    attributes: Vec<(String, FieldPath)>,
    group: Option<FieldPath>,
    dedup: Option<FieldPath>,
    fifo: bool,
    shutdown: Shutdown,
}

impl SnsWriter {
    /// Loads the settings and checks the topic exists (GetTopicAttributes), and that the
    /// FIFO keys match the topic's kind.
    pub fn open(env: &Env, cfg: &SnsSink, options: &SinkOptions) -> anyhow::Result<SnsWriter> {
        let node = format!("sinks.{}", env.id);
        let settings = Settings::new(env.aws, cfg.endpoint_url.as_deref());
        let arn = cfg.topic_arn.clone();
        let (client, attrs) = block_on(async {
            let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
            let client = Client::new(&sdk);
            let result = client.get_topic_attributes().topic_arn(&arn).send().await;
            // SNS says `NotFound` where the other services say `ResourceNotFoundException`.
            if let Err(e) = &result
                && e.code() == Some("NotFound")
            {
                anyhow::bail!("topic_arn: SNS topic {arn:?} does not exist ({})", settings.describe(&sdk));
            }
            let out = described(result, "topic_arn", ("SNS topic", &arn), &settings, &sdk)?;
            anyhow::Ok((client, out.attributes().cloned().unwrap_or_default()))
        })?;
        let flag = |name: &str| attrs.get(name).is_some_and(|v| v == "true");
        let fifo = flag("FifoTopic");
        match (fifo, &cfg.message_group_id) {
            (true, None) => anyhow::bail!(
                "message_group_id: topic {arn:?} is a FIFO topic; name the field whose value groups messages (e.g. \"ContactId\")"
            ),
            (false, Some(_)) => anyhow::bail!("message_group_id: topic {arn:?} is not a FIFO topic; remove the key"),
            _ => {}
        }
        if fifo && cfg.deduplication_id.is_none() && !flag("ContentBasedDeduplication") {
            anyhow::bail!(
                "deduplication_id: FIFO topic {arn:?} has no content-based deduplication; name the field whose value deduplicates (e.g. \"ContactId\")"
            );
        }
        if !fifo && cfg.deduplication_id.is_some() {
            anyhow::bail!("deduplication_id: topic {arn:?} is not a FIFO topic; remove the key");
        }
        let parse = |key: &str, p: &str| FieldPath::parse(p).map_err(|e| anyhow::anyhow!("{key}: {e}"));
        Ok(SnsWriter {
            node,
            client,
            topic_arn: arn,
            attributes: cfg
                .attributes
                .iter()
                .map(|(name, p)| Ok((name.clone(), parse(&format!("attributes.{name}"), p)?)))
                .collect::<anyhow::Result<_>>()?,
            group: cfg.message_group_id.as_deref().map(|p| parse("message_group_id", p)).transpose()?,
            dedup: cfg.deduplication_id.as_deref().map(|p| parse("deduplication_id", p)).transpose()?,
            fifo,
            shutdown: options.shutdown.clone(),
        })
    }

    /// One record's entry (without its id), and its size as SNS counts it; or why it cannot
    /// be sent.
    fn entry(&self, item: &Item) -> Result<(Entry, usize), Written> {
        let refuse = |kind, reason: String| Err(Written::Refused { kind, reason });
        let message = String::from_utf8_lossy(&item.payload()).into_owned();
        if message.is_empty() {
            return refuse(DeadLetterKind::Rejected, "the message is empty (SNS refuses empty messages)".into());
        }
        let subject = item.encoding.as_ref().and_then(|e| {
            e.columns.iter().find(|(name, _)| name == "subject").and_then(|(_, v)| v.as_str().map(subject))
        });
        let mut size = message.len() + subject.as_ref().map_or(0, String::len);
        let mut attributes = Vec::new();
        for (name, path) in &self.attributes {
            let (data_type, value) = match path.get(&item.record.doc) {
                Some(Value::String(s)) if !s.is_empty() => ("String", s.clone()),
                Some(Value::Number(n)) => ("Number", n.to_string()),
                Some(Value::Bool(b)) => ("String", b.to_string()),
                // SNS refuses empty values; objects and arrays would need a JSON data type.
                _ => continue,
            };
            size += name.len() + data_type.len() + value.len();
            attributes.push((name.clone(), data_type, value));
        }
        let text = |path: &FieldPath, key: &str| -> Result<String, Written> {
            match path.get(&item.record.doc) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
                _ => Err(Written::Refused {
                    kind: DeadLetterKind::NoKey,
                    reason: format!("the record has no text or number at {key} {:?}", path.as_str()),
                }),
            }
        };
        let group = self.group.as_ref().map(|p| text(p, "message_group_id")).transpose()?;
        // SNS deduplication ids are at most 128 characters.
        let dedup = self.dedup.as_ref().map(|p| text(p, "deduplication_id")).transpose()?;
        let dedup = dedup.map(|d| d.chars().take(128).collect());
        if size > MAX_BYTES {
            return refuse(
                DeadLetterKind::Oversized,
                format!("message of {size} bytes (with subject and attributes) exceeds SNS's 256 KiB"),
            );
        }
        Ok((Entry { message, subject, attributes, group, dedup }, size))
    }

    /// Publishes the items; one result per item.
    async fn write_batch(&mut self, items: &[Item]) -> Vec<Written> {
        let mut results: Vec<Option<Written>> = vec![None; items.len()];
        let mut entries: Vec<Option<Entry>> = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.entry(item) {
                Ok((entry, size)) => {
                    entries.push(Some(entry));
                    sizes.push(size);
                }
                Err(refused) => {
                    results[i] = Some(refused);
                    entries.push(None);
                    sizes.push(0);
                }
            }
        }
        // A FIFO topic orders within a message group only across calls made one at a time.
        let concurrency = if self.fifo { 1 } else { 4 };
        let limits = Limits { max_entries: MAX_ENTRIES, max_bytes: MAX_BYTES, concurrency };
        send_all(&self.node, results, &sizes, limits, &self.shutdown, |chunk| {
            let batch: Vec<PublishBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(n, &i)| entries[i].as_ref().and_then(|e| e.build(n).ok()))
                .collect();
            let n = chunk.len();
            let req =
                self.client.publish_batch().topic_arn(&self.topic_arn).set_publish_batch_request_entries(Some(batch));
            Box::pin(async move {
                let out = req.send().await.map_err(|e| fault(&e))?;
                let mut outcomes = vec![EntryOutcome::Retry("missing from the response".into()); n];
                for ok in out.successful() {
                    if let Some(slot) =
                        ok.id().and_then(|id| id.parse::<usize>().ok()).and_then(|k| outcomes.get_mut(k))
                    {
                        *slot = EntryOutcome::Done;
                    }
                }
                for failed in out.failed() {
                    let Some(slot) = failed.id().parse::<usize>().ok().and_then(|k| outcomes.get_mut(k)) else {
                        continue;
                    };
                    let reason = format!("{}: {}", failed.code(), failed.message().unwrap_or_default());
                    *slot =
                        if failed.sender_fault() { EntryOutcome::Refused(reason) } else { EntryOutcome::Retry(reason) };
                }
                Ok(outcomes)
            })
        })
        .await
    }
}

impl Writer for SnsWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_batch(items))
    }
}

/// One message, ready to be numbered into a batch.
struct Entry {
    message: String,
    subject: Option<String>,
    attributes: Vec<(String, &'static str, String)>,
    group: Option<String>,
    dedup: Option<String>,
}

impl Entry {
    /// The request entry, with its position in the call as its id (ids are per call).
    fn build(&self, n: usize) -> Result<PublishBatchRequestEntry, aws_sdk_sns::error::BuildError> {
        let mut b = PublishBatchRequestEntry::builder()
            .id(n.to_string())
            .message(&self.message)
            .set_subject(self.subject.clone())
            .set_message_group_id(self.group.clone())
            .set_message_deduplication_id(self.dedup.clone());
        for (name, data_type, value) in &self.attributes {
            b = b.message_attributes(
                name,
                MessageAttributeValue::builder().data_type(*data_type).string_value(value).build()?,
            );
        }
        b.build()
    }
}

/// A subject SNS accepts: no line breaks or control characters, at most 100 characters.
fn subject(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    clean.trim().chars().take(MAX_SUBJECT_CHARS).collect()
}

/// SNS's own error codes on top of the shared classification: its spelling of "not found",
/// "access denied" and "throttled".
fn fault<E>(err: &aws_sdk_sns::error::SdkError<E, aws_sdk_sns::config::http::HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err.code() {
        Some(
            "NotFound" | "AuthorizationError" | "InvalidSecurity" | "KMSAccessDenied" | "KMSDisabled"
            | "KMSInvalidState" | "KMSNotFound" | "KMSOptInRequired",
        ) => Fault::Halt(super::describe(err)),
        Some("Throttled" | "KMSThrottling") => Fault::Retry(super::describe(err)),
        _ => classify(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_lose_line_breaks_and_stop_at_100_characters() {
        assert_eq!(subject("Abandoned:\ncaller +44…"), "Abandoned: caller +44…");
        assert_eq!(subject(&"x".repeat(150)).chars().count(), 100);
        assert_eq!(subject("  \t "), "");
    }

    fn options(text: &str) -> SnsSink {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn keys_are_checked_naming_them() {
        let env_aws = crate::config::AwsConfig::default();
        let env = Env { id: "alerts", base_dir: std::path::Path::new("."), aws: &env_aws };
        let ok = options(
            "topic_arn = \"arn:aws:sns:us-east-1:123456789012:alerts\"\nattributes = { channel = \"Channel\" }",
        );
        assert!(ok.validate(&env).is_empty(), "{:?}", ok.validate(&env));
        let bad = options("topic_arn = \"alerts\"\nattributes = { \"AWS.x\" = \"Channel\" }\nonce_per = \"\"");
        let problems = bad.validate(&env);
        assert!(problems.iter().any(|p| p.starts_with("topic_arn:")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("attributes:")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("once_per:")), "{problems:?}");
    }
}
