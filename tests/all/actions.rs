//! Actions from the stream: the `sns` sink against the AWS emulator (a topic with an SQS
//! queue subscribed, read back with the SDK) and the `http` sink against a small HTTP
//! server on a loopback port that answers as each test scripts it. Both with the bundled
//! `filter` and `notify-template` plugins and `once_per`, on the real abandoned CTR sample.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use ctrflow_tests::{ctrflow_with, fixture, read_jsonl, temp_dir};
use serde_json::{Value, json};

use crate::moto::Moto;

/// The real abandoned-in-queue sample (`Agent: null`, 39 s in `BasicQueue`).
fn abandoned() -> Value {
    let text = std::fs::read_to_string(fixture("ctr/aws-samples-workshop-voice-abandoned-in-queue.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The sample as contact `id`, waiting `waited` seconds, last updated at `updated`.
fn contact(id: &str, waited: u64, updated: &str) -> Value {
    let mut c = abandoned();
    c["ContactId"] = json!(id);
    c["Queue"]["Duration"] = json!(waited);
    c["LastUpdateTimestamp"] = json!(updated);
    c
}

fn write_lines(path: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The abandoned-in-queue filter and the template, as the example pipeline has them.
const ROUTE_AND_TEMPLATE: &str = r#"
[transforms.abandoned]
plugin = "filter"
inputs = ["ctrs"]
config = { when = [
  { field = "Agent", is = "missing" },
  { field = "Queue.Name", is = "present" },
  { field = "Queue.Duration", at_least = 30 },
] }
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs the pipeline at `dir/pipeline.toml` against moto.
fn run_against(moto: &Moto, dir: &Path, env: &[(&str, &str)]) -> ctrflow_tests::Output {
    let moto_env = moto.env();
    let mut all: Vec<(&str, &str)> = moto_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(env);
    ctrflow_with(dir, &["run", "pipeline.toml"], &all)
}

/// Every message in the queue (SNS envelopes), polled until it stays empty.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut empty_polls = 0;
    while empty_polls < 2 {
        let got =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        let messages = got.messages();
        if messages.is_empty() {
            empty_polls += 1;
        }
        for m in messages {
            out.push(serde_json::from_str(m.body().unwrap()).expect("an SNS envelope"));
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
    out
}

/// A topic with a queue subscribed; returns (topic ARN, queue URL).
async fn topic_with_queue(sdk: &aws_config::SdkConfig, name: &str) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let topic = sns.create_topic().name(name).send().await.unwrap().topic_arn().unwrap().to_string();
    let url =
        sqs.create_queue().queue_name(format!("{name}-inbox")).send().await.unwrap().queue_url().unwrap().to_string();
    let attrs =
        sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    let arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
    sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(arn).send().await.unwrap();
    (topic, url)
}

#[test]
fn sns_sends_one_message_per_abandoned_contact_although_connect_redelivers_it() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    let (topic, queue) = rt.block_on(topic_with_queue(&sdk, "ctrflow-alerts"));

    let dir = temp_dir("sns-once");
    let answered = serde_json::from_str::<Value>(
        &std::fs::read_to_string(fixture("ctr/kyopark-voice-inbound-update-v1.json")).unwrap(),
    )
    .unwrap();
    write_lines(
        &dir.join("first.jsonl"),
        &[
            contact("c-a", 39, "2018-11-02T07:02:11Z"),
            answered,
            contact("c-short", 5, "2018-11-02T07:02:11Z"),
            // Connect re-delivers c-a with a newer LastUpdateTimestamp, in the same batch.
            contact("c-a", 39, "2018-11-02T07:04:00Z"),
            contact("c-b", 125, "2018-11-02T07:05:00Z"),
        ],
    );
    // A later run (a restart) sees c-b once more: remembered in the state directory.
    write_lines(&dir.join("second.jsonl"), &[contact("c-b", 125, "2018-11-02T08:00:00Z")]);
    let pipeline = format!(
        r#"
[runtime]
state_dir = "state"

[sources.ctrs]
type = "file"
path = "${{INPUT}}"
checkpoint = false
{ROUTE_AND_TEMPLATE}
[sinks.alerts]
type = "sns"
inputs = ["abandoned"]
topic_arn = "{topic}"
attributes = {{ queue = "Queue.Name", waited_s = "Queue.Duration", agent = "Agent.Username" }}
once_per = "ContactId"
remember = "1d"
plugin = "notify-template"
config = {{ subject = "Abandoned in {{Queue.Name}} after {{Queue.Duration|duration}}", body = "Caller {{CustomerEndpoint.Address}} waited {{Queue.Duration|duration}} from {{Queue.EnqueueTimestamp|time}} (contact {{ContactId}}).", time_zone = "Australia/Sydney" }}
"#
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();

    let out = run_against(&moto, &dir, &[("INPUT", "first.jsonl")]);
    assert!(out.success, "{}", out.stderr);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut messages = rt.block_on(drain(&sqs, &queue));
    // In contact order (the body ends with the contact id; sorting by the body would put
    // "2m 05s" before "39s").
    messages.sort_by_key(|m| m["Message"].as_str().unwrap_or_default().rsplit("(contact ").next().map(str::to_string));
    assert_eq!(messages.len(), 2, "one message per abandoned contact over 30 s: {messages:#?}");
    assert_eq!(messages[0]["Subject"], "Abandoned in BasicQueue after 39s");
    assert_eq!(messages[0]["Message"], "Caller +61401004854 waited 39s from 2018-11-02 18:00:25 AEDT (contact c-a).");
    assert_eq!(messages[1]["Subject"], "Abandoned in BasicQueue after 2m 05s");
    let attrs = &messages[1]["MessageAttributes"];
    assert_eq!(attrs["queue"]["Value"], "BasicQueue", "{attrs}");
    assert_eq!(attrs["waited_s"]["Type"], "Number", "{attrs}");
    assert_eq!(attrs["waited_s"]["Value"], "125", "{attrs}");
    assert!(attrs.get("agent").is_none(), "no agent, no attribute: {attrs}");
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing dead-lettered");

    let out = run_against(&moto, &dir, &[("INPUT", "second.jsonl")]);
    assert!(out.success, "{}", out.stderr);
    let again = rt.block_on(drain(&sqs, &queue));
    assert!(again.is_empty(), "c-b was already sent: {again:#?}");
}

#[test]
fn sns_refuses_a_missing_topic_and_a_fifo_topic_without_a_group_naming_the_key() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    let sns = aws_sdk_sns::Client::new(&sdk);
    let fifo = rt.block_on(async {
        let t = sns.create_topic().name("alerts.fifo").attributes("FifoTopic", "true").send().await.unwrap();
        t.topic_arn().unwrap().to_string()
    });
    let dir = temp_dir("sns-missing");
    write_lines(&dir.join("in.jsonl"), &[contact("c-a", 39, "2018-11-02T07:02:11Z")]);
    let pipeline = |topic: &str| {
        format!(
            "[sources.ctrs]\ntype = \"file\"\npath = \"in.jsonl\"\n\n[sinks.alerts]\ntype = \"sns\"\ninputs = [\"ctrs\"]\ntopic_arn = \"{topic}\"\n"
        )
    };
    std::fs::write(dir.join("pipeline.toml"), pipeline("arn:aws:sns:us-east-1:123456789012:nope")).unwrap();
    let out = run_against(&moto, &dir, &[]);
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("sinks.alerts: topic_arn: SNS topic \"arn:aws:sns:us-east-1:123456789012:nope\" does not exist"),
        "{}",
        out.stderr
    );

    std::fs::write(dir.join("pipeline.toml"), pipeline(&fifo)).unwrap();
    let out = run_against(&moto, &dir, &[]);
    assert!(!out.success);
    assert!(out.stderr.contains("sinks.alerts: message_group_id:") && out.stderr.contains("FIFO"), "{}", out.stderr);
}

/// A FIFO topic end to end: every message carries its contact as the message group and as
/// the deduplication id, so a re-delivered contact published twice (no `once_per` here)
/// reaches the subscribed FIFO queue once, and each contact's messages stay in order.
#[test]
fn sns_fifo_groups_and_deduplicates_by_the_fields_named() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (topic, queue) = rt.block_on(async {
        let topic = sns
            .create_topic()
            .name("alerts.fifo")
            .attributes("FifoTopic", "true")
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_string();
        let url = sqs
            .create_queue()
            .queue_name("alerts-inbox.fifo")
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(arn).send().await.unwrap();
        (topic, url)
    });
    let dir = temp_dir("sns-fifo");
    write_lines(
        &dir.join("in.jsonl"),
        &[
            contact("c-a", 39, "2018-11-02T07:02:11Z"),
            contact("c-b", 125, "2018-11-02T07:05:00Z"),
            // Re-delivered: same contact, so the same deduplication id.
            contact("c-a", 39, "2018-11-02T07:04:00Z"),
        ],
    );
    let pipeline = format!(
        r#"
[sources.ctrs]
type = "file"
path = "in.jsonl"
checkpoint = false
{ROUTE_AND_TEMPLATE}
[sinks.alerts]
type = "sns"
inputs = ["abandoned"]
topic_arn = "{topic}"
message_group_id = "ContactId"
deduplication_id = "ContactId"
plugin = "notify-template"
config = {{ subject = "Abandoned after {{Queue.Duration|duration}}", body = "contact {{ContactId}}" }}
"#
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    let out = run_against(&moto, &dir, &[]);
    assert!(out.success, "{}", out.stderr);

    let got = rt.block_on(async {
        let mut got = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let r = sqs
                .receive_message()
                .queue_url(&queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_system_attribute_names(MessageSystemAttributeName::MessageDeduplicationId)
                .send()
                .await
                .unwrap();
            if r.messages().is_empty() {
                empty_polls += 1;
            }
            for m in r.messages() {
                let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                let attrs = m.attributes().cloned().unwrap_or_default();
                got.push((
                    envelope["Message"].as_str().unwrap().to_string(),
                    attrs.get(&MessageSystemAttributeName::MessageGroupId).cloned(),
                    attrs.get(&MessageSystemAttributeName::MessageDeduplicationId).cloned(),
                ));
                sqs.delete_message()
                    .queue_url(&queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        got
    });
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        vec![
            ("contact c-a".to_string(), Some("c-a".to_string()), Some("c-a".to_string())),
            ("contact c-b".to_string(), Some("c-b".to_string()), Some("c-b".to_string())),
        ],
        "one message per contact, grouped and deduplicated by ContactId"
    );
}

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    authorization: Option<String>,
    body: Value,
    status: u16,
}

/// An HTTP/1.1 server on a loopback port: `answer(body, times this body was seen before)`
/// gives the status, extra headers and response body. One request per connection.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Script = dyn Fn(&Value, usize) -> (u16, Vec<(&'static str, &'static str)>, &'static str) + Send + Sync;

impl Server {
    fn start(answer: Box<Script>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/secret-path-token", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = HashMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let key = body.to_string();
                let before = *counts.get(&key).unwrap_or(&0);
                counts.insert(key, before + 1);
                let (status, extra, text) = answer(&body, before);
                log.lock().unwrap().push(Seen {
                    at: Instant::now(),
                    authorization: headers.get("authorization").cloned(),
                    body,
                    status,
                });
                let mut response =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", text.len());
                for (k, v) in extra {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(text);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Server { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The contacts of the 2xx-answered requests, in order.
fn delivered(seen: &[Seen]) -> Vec<String> {
    let ids = |b: &Value| match b {
        Value::Array(items) => items.iter().map(|i| i["contact"].as_str().unwrap().to_string()).collect(),
        other => vec![other["contact"].as_str().unwrap().to_string()],
    };
    seen.iter().filter(|s| s.status == 200).flat_map(|s| ids(&s.body)).collect()
}

fn http_pipeline(dir: &Path, url: &str, extra: &str) {
    let pipeline = format!(
        r#"
[runtime]
state_dir = "state"

[dead_letter]
path = "dead-letters.jsonl"

[sources.ctrs]
type = "file"
path = "in.jsonl"
{ROUTE_AND_TEMPLATE}
[sinks.hook]
type = "http"
inputs = ["abandoned"]
url = "{url}"
headers = {{ Authorization = {{ env = "HOOK_TOKEN", prefix = "Bearer " }} }}
timeout = "5s"
once_per = "ContactId"
plugin = "notify-template"
config = {{ body = '{{{{"contact": "{{ContactId}}", "text": "{{CustomerEndpoint.Address}} waited {{Queue.Duration|duration}}"}}}}', escape = "json" }}
{extra}
"#
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
}

#[test]
fn http_retries_500_and_429_honouring_retry_after_and_dead_letters_a_400() {
    let server = Server::start(Box::new(|body, before| match (body["contact"].as_str(), before) {
        (Some("c-500"), 0) => (500, vec![], "try later"),
        (Some("c-429"), 0) => (429, vec![("Retry-After", "1")], "slow down"),
        (Some("c-400"), _) => (400, vec![], "{\"error\": \"no such phone number\"}"),
        _ => (200, vec![], "ok"),
    }));
    let dir = temp_dir("http-script");
    write_lines(
        &dir.join("in.jsonl"),
        &[
            contact("c-ok", 39, "2018-11-02T07:02:11Z"),
            contact("c-500", 40, "2018-11-02T07:02:11Z"),
            contact("c-429", 41, "2018-11-02T07:02:11Z"),
            contact("c-400", 42, "2018-11-02T07:02:11Z"),
            contact("c-ok", 39, "2018-11-02T07:09:00Z"),
            contact("c-last", 300, "2018-11-02T07:02:11Z"),
        ],
    );
    http_pipeline(&dir, &server.url, "");
    let out = ctrflow_with(&dir, &["run", "pipeline.toml", "--log", "debug"], &[("HOOK_TOKEN", "tok-s3cr3t")]);
    assert!(out.success, "{}", out.stderr);

    let seen = server.seen();
    assert_eq!(delivered(&seen), ["c-ok", "c-500", "c-429", "c-last"], "{seen:#?}");
    assert!(seen.iter().all(|s| s.authorization.as_deref() == Some("Bearer tok-s3cr3t")), "{seen:#?}");
    let tries = |id: &str| seen.iter().filter(|s| s.body["contact"] == id).collect::<Vec<_>>();
    assert_eq!(tries("c-500").iter().map(|s| s.status).collect::<Vec<_>>(), [500, 200]);
    let c429 = tries("c-429");
    assert_eq!(c429.iter().map(|s| s.status).collect::<Vec<_>>(), [429, 200]);
    assert!(c429[1].at - c429[0].at >= Duration::from_millis(950), "Retry-After: 1 honoured");
    assert_eq!(seen[0].body["text"], "+61401004854 waited 39s");

    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["kind"], "http_status");
    assert_eq!(dead[0]["contact_id"], "c-400");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains("400") && reason.contains("no such phone number"), "{reason}");
    // Neither the token nor the URL's path reaches the log, even at debug level.
    assert!(!out.stderr.contains("tok-s3cr3t") && !out.stderr.contains("secret-path-token"), "{}", out.stderr);
}

#[test]
fn http_batches_split_so_only_the_refused_record_is_dead_lettered() {
    let server = Server::start(Box::new(|body, _| {
        let has_400 = body.as_array().is_some_and(|a| a.iter().any(|i| i["contact"] == "c-400"));
        if has_400 { (422, vec![], "unprocessable") } else { (200, vec![], "") }
    }));
    let dir = temp_dir("http-batch");
    write_lines(
        &dir.join("in.jsonl"),
        &[
            contact("c-1", 39, "2018-11-02T07:02:11Z"),
            contact("c-400", 40, "2018-11-02T07:02:11Z"),
            contact("c-2", 41, "2018-11-02T07:02:11Z"),
        ],
    );
    http_pipeline(&dir, &server.url, "batch = true\nlinger = \"2s\"");
    let out = ctrflow_with(&dir, &["run", "pipeline.toml"], &[("HOOK_TOKEN", "t")]);
    assert!(out.success, "{}", out.stderr);
    let seen = server.seen();
    assert_eq!(seen[0].body.as_array().map(Vec::len), Some(3), "one array for the batch first: {seen:#?}");
    assert_eq!(delivered(&seen), ["c-1", "c-2"], "{seen:#?}");
    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["contact_id"], "c-400");
    assert!(dead[0]["reason"].as_str().unwrap().contains("422"), "{dead:#?}");
}

#[test]
fn http_stops_the_run_on_401_instead_of_dead_lettering_everything() {
    let server = Server::start(Box::new(|_, _| (401, vec![], "bad token")));
    let dir = temp_dir("http-401");
    write_lines(&dir.join("in.jsonl"), &[contact("c-1", 39, "2018-11-02T07:02:11Z")]);
    http_pipeline(&dir, &server.url, "");
    let out = ctrflow_with(&dir, &["run", "pipeline.toml"], &[("HOOK_TOKEN", "tok-wrong-9f")]);
    assert!(!out.success, "{}", out.stderr);
    assert!(out.stderr.contains("refused the credentials") && out.stderr.contains("401"), "{}", out.stderr);
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing dead-lettered");
    assert!(!out.stderr.contains("tok-wrong-9f"), "{}", out.stderr);
}
