//! The AWS connectors against a real AWS emulator server (moto), set up and read back with
//! the official SDK clients: the founding pipeline end to end, a crash in the middle of a
//! Kinesis run, the sinks' API limits, KPL de-aggregation, and the errors for missing
//! resources.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_firehose::types::{CompressionFormat, ExtendedS3DestinationConfiguration};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use ctrflow_tests::{cache_dir, ctrflow_bin, read_jsonl, repo_root, temp_dir};
use serde_json::Value;

use crate::moto::Moto;

pub(crate) const STREAM: &str = "ctrflow-ctr";
pub(crate) const TABLE: &str = "ctrflow-contacts";
pub(crate) const AGENTS: &str = "ctrflow-agents";
pub(crate) const BUCKET: &str = "ctrflow-lake";
pub(crate) const DELIVERY: &str = "ctrflow-ctr-lake";

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `ctrflow <args>` in `dir`, pointed at the emulator.
pub(crate) fn command(moto: &Moto, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(ctrflow_bin());
    c.current_dir(dir).args(args).env("CTRFLOW_CACHE_DIR", cache_dir()).env("NO_COLOR", "1");
    for (k, v) in moto.env() {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

pub(crate) fn run_ok(moto: &Moto, dir: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let out = command(moto, dir, args, env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ctrflow {args:?} failed:\n{stderr}");
    stderr
}

pub(crate) async fn create_stream(sdk: &SdkConfig, name: &str, shards: i32) {
    let k = aws_sdk_kinesis::Client::new(sdk);
    k.create_stream().stream_name(name).shard_count(shards).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = k.describe_stream_summary().stream_name(name).send().await.unwrap();
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active) {
            return;
        }
        assert!(Instant::now() < deadline, "stream {name} never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn create_table(sdk: &SdkConfig, name: &str, key: &str) {
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name(key).attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

pub(crate) async fn create_delivery_stream(sdk: &SdkConfig, name: &str, bucket: &str) {
    aws_sdk_s3::Client::new(sdk).create_bucket().bucket(bucket).send().await.unwrap();
    aws_sdk_firehose::Client::new(sdk)
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                // moto needs it, or DescribeDeliveryStream fails in the Rust SDK (docs/measurements.md#moto).
                .compression_format(CompressionFormat::Uncompressed)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// The founding pipeline's resources, with the demo's agents loaded into the agents table.
pub(crate) async fn create_founding(sdk: &SdkConfig, shards: i32) {
    create_stream(sdk, STREAM, shards).await;
    create_table(sdk, TABLE, "ContactId").await;
    create_table(sdk, AGENTS, "username").await;
    create_delivery_stream(sdk, DELIVERY, BUCKET).await;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let mut rows = csv_rows(&repo_root().join("pipelines/data/agents.csv"));
    for row in rows.drain(..) {
        let item: HashMap<String, AttributeValue> = row.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect();
        ddb.put_item().table_name(AGENTS).set_item(Some(item)).send().await.unwrap();
    }
}

fn csv_rows(path: &Path) -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect())
        .collect()
}

/// Every record on the stream, read with the SDK.
pub(crate) async fn stream_records(sdk: &SdkConfig, stream: &str) -> Vec<Vec<u8>> {
    let k = aws_sdk_kinesis::Client::new(sdk);
    let shards = k.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let r = k.get_records().shard_iterator(&it).send().await.unwrap();
            let empty = r.records().is_empty();
            out.extend(r.records().iter().map(|r| r.data().as_ref().to_vec()));
            match r.next_shard_iterator() {
                Some(next) if !empty => it = next.to_string(),
                _ => break,
            }
        }
    }
    out
}

/// Every line of every object in the bucket.
pub(crate) async fn s3_lines(sdk: &SdkConfig, bucket: &str) -> Vec<Value> {
    let s3 = aws_sdk_s3::Client::new(sdk);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await.unwrap();
        for obj in page.contents() {
            let body = s3.get_object().bucket(bucket).key(obj.key().unwrap()).send().await.unwrap().body;
            let bytes = body.collect().await.unwrap().into_bytes();
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(line).expect("each S3 line is one JSON record"));
            }
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    out
}

/// Every item in the table.
pub(crate) async fn scan(sdk: &SdkConfig, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = match ddb.scan().table_name(table).set_exclusive_start_key(start).send().await {
            Ok(page) => page,
            // A table the process under test creates (a lease table) holds nothing until then.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => return out,
            Err(e) => panic!("scan {table}: {e:?}"),
        };
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out
}

pub(crate) fn s(item: &HashMap<String, AttributeValue>, key: &str) -> String {
    item.get(key).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

/// (ContactId, LastUpdateTimestamp) of every version, and the newest per contact.
/// The generator writes second-precision UTC times, which order as text.
pub(crate) fn versions(records: &[Value]) -> (HashSet<(String, String)>, BTreeMap<String, String>) {
    let mut all = HashSet::new();
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    for r in records {
        let id = r["ContactId"].as_str().unwrap().to_string();
        let lut = r["LastUpdateTimestamp"].as_str().unwrap().to_string();
        let e = newest.entry(id.clone()).or_default();
        if lut > *e {
            *e = lut.clone();
        }
        all.insert((id, lut));
    }
    (all, newest)
}

pub(crate) fn fanout_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("KINESIS_STOP_AT_END", "true".into()),
        ("KINESIS_POLL_INTERVAL", "200ms".into()),
        ("CTRFLOW_STATE_DIR", dir.join("state").display().to_string()),
        ("CTRFLOW_DEAD_LETTERS", dir.join("dead-letters.jsonl").display().to_string()),
    ]
}

pub(crate) fn load(moto: &Moto, dir: &Path, count: usize) {
    let env = [
        ("LOAD_COUNT", count.to_string()),
        ("CTRFLOW_STATE_DIR", dir.join("load-state").display().to_string()),
        ("CTRFLOW_DEAD_LETTERS", dir.join("load-dead-letters.jsonl").display().to_string()),
    ];
    run_ok(moto, &repo_root(), &["run", "pipelines/load-kinesis.toml", "--quiet"], &env);
}

/// Checks S3 and DynamoDB hold everything that is on the stream; returns the S3 line count.
fn verify_fanout(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, expected: &[Value]) -> usize {
    let (all, newest) = versions(expected);
    let lines = rt.block_on(s3_lines(sdk, BUCKET));
    let (in_s3, _) = versions(&lines);
    let missing: Vec<_> = all.difference(&in_s3).take(5).collect();
    assert!(missing.is_empty(), "records missing from S3 (of {}): {missing:?}", all.len());
    for l in &lines {
        if let Some(addr) = l.pointer("/CustomerEndpoint/Address").and_then(Value::as_str) {
            assert!(addr.starts_with('*'), "redacted before Firehose: {addr}");
        }
        // Enriched from the DynamoDB agents table (through the lookup cache).
        if let Some(user) = l.pointer("/Agent/Username").and_then(Value::as_str) {
            assert_eq!(l.pointer("/AgentInfo/username").and_then(Value::as_str), Some(user), "{l}");
            assert!(l.pointer("/AgentInfo/full_name").is_some(), "{l}");
        }
    }
    assert!(lines.iter().any(|l| l.get("AgentInfo").is_some()), "some contacts had agents");

    let items = rt.block_on(scan(sdk, TABLE));
    assert_eq!(items.len(), newest.len(), "one DynamoDB item per ContactId");
    for item in &items {
        let id = s(item, "ContactId");
        assert_eq!(s(item, "LastUpdateTimestamp"), newest[&id], "{id}: the newest version won");
        assert!(item.contains_key("LastUpdateTimestampMs"), "ctr-item's version attribute");
    }
    lines.len()
}

#[test]
fn the_founding_pipeline_delivers_every_record_to_s3_and_the_newest_to_dynamodb() {
    const N: usize = 1500;
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_founding(&sdk, 2));
    let dir = temp_dir("aws-fanout");
    load(&moto, &dir, N);
    let on_stream: Vec<Value> =
        rt.block_on(stream_records(&sdk, STREAM)).iter().map(|d| serde_json::from_slice(d).unwrap()).collect();
    assert_eq!(on_stream.len(), N, "pipelines/load-kinesis.toml put every record on the stream");

    let report = dir.join("report.json");
    let stderr = run_ok(
        &moto,
        &repo_root(),
        &["run", "pipelines/connect-kinesis-fanout.toml", "--report", report.to_str().unwrap()],
        &fanout_env(&dir),
    );
    let s3 = verify_fanout(&rt, &sdk, &on_stream);
    assert_eq!(s3, N, "no duplicates in S3 on a clean run");
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing dead-lettered:\n{stderr}");

    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let nodes: HashMap<&str, &Value> =
        report["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    for id in ["ctrs", "redact", "enrich", "lake", "contacts"] {
        assert_eq!(nodes[id]["records_in"], N, "report row for {id}");
    }
    assert_eq!(nodes["ctrs"]["event_to_arrival_ms"]["count"], N, "time waited before Kinesis, per record");
    for sink in report["sinks"].as_array().unwrap() {
        assert_eq!(sink["path"][0], "ctrs");
        assert_eq!(sink["arrival_to_ack_ms"]["count"], N);
    }
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state/ctrs.checkpoint.json")).unwrap()).unwrap();
    assert_eq!(checkpoint["shards"].as_object().unwrap().len(), 2, "a checkpoint per shard: {checkpoint}");

    // A second run resumes after the checkpoints: nothing new to read, nothing written twice.
    run_ok(&moto, &repo_root(), &["run", "pipelines/connect-kinesis-fanout.toml", "--quiet"], &fanout_env(&dir));
    assert_eq!(rt.block_on(s3_lines(&sdk, BUCKET)).len(), N, "a restart after a clean stop reads nothing again");
}

fn start(moto: &Moto, env: &[(&str, String)]) -> Child {
    command(moto, &repo_root(), &["run", "pipelines/connect-kinesis-fanout.toml", "--quiet"], env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_mid_kinesis_run_then_restart_loses_nothing_and_newer_wins_stays_exact() {
    const N: usize = 2500;
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_founding(&sdk, 3));
    let dir = temp_dir("aws-crash");
    load(&moto, &dir, N);
    let on_stream: Vec<Value> =
        rt.block_on(stream_records(&sdk, STREAM)).iter().map(|d| serde_json::from_slice(d).unwrap()).collect();
    assert_eq!(on_stream.len(), N);

    let env = fanout_env(&dir);
    let mut child = start(&moto, &env);
    let checkpoint = dir.join("state/ctrs.checkpoint.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpoint.exists() {
        assert!(Instant::now() < deadline, "the first run never checkpointed");
        assert!(child.try_wait().unwrap().is_none(), "the first run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before the kill; the test needs a larger stream");
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let before = rt.block_on(scan(&sdk, TABLE)).len();
    assert!(before < on_stream.iter().map(|r| &r["ContactId"]).collect::<HashSet<_>>().len(), "killed mid-run");

    let out = start(&moto, &env).wait_with_output().unwrap();
    assert!(out.status.success(), "the restart failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let s3 = verify_fanout(&rt, &sdk, &on_stream);
    assert!(s3 >= N, "at least once: {s3} lines for {N} records");
}

/// A file of records for the limits test: `count` small CTRs (ids repeat every `distinct`),
/// plus, if `huge`, one over Firehose's 1,000 KiB record limit.
fn write_records(path: &Path, count: usize, distinct: usize, huge: bool) {
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "{{\"ContactId\":\"limits-{:04}\",\"Channel\":\"VOICE\",\"LastUpdateTimestamp\":\"2024-01-01T00:{:02}:{:02}Z\"}}\n",
            i % distinct,
            i / 60 % 60,
            i % 60
        ));
    }
    if huge {
        let pad = "x".repeat(1_100_000);
        text.push_str(&format!(
            "{{\"ContactId\":\"limits-huge\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:00Z\",\"Attributes\":{{\"pad\":\"{pad}\"}}}}\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn sinks_keep_to_the_api_limits_an_oversized_record_is_dead_lettered() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(async {
        create_delivery_stream(&sdk, DELIVERY, BUCKET).await;
        create_table(&sdk, TABLE, "ContactId").await;
    });
    let dir = temp_dir("aws-limits");
    write_records(&dir.join("small.jsonl"), 5, 5, true);
    // 130 records of 60 contacts in one sink batch: BatchWriteItem calls of at most 25
    // items, each contact once per call (DynamoDB refuses two writes of one key).
    write_records(&dir.join("many.jsonl"), 130, 60, false);
    std::fs::write(
        dir.join("pipeline.toml"),
        r#"
[runtime]
max_record_size = "4MiB"
[sources.small]
type = "file"
path = "small.jsonl"
[sources.many]
type = "file"
path = "many.jsonl"
[sinks.lake]
type = "firehose"
inputs = ["small"]
delivery_stream = "ctrflow-ctr-lake"
[sinks.db]
type = "dynamodb"
inputs = ["many"]
table = "ctrflow-contacts"
mode = "put"
max_records = 500
linger = "2s"
"#,
    )
    .unwrap();
    run_ok(&moto, &dir, &["run", "pipeline.toml"], &[]);

    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["node"], "sinks.lake");
    assert_eq!(dead[0]["kind"], "oversized");
    assert_eq!(dead[0]["contact_id"], "limits-huge");
    let lines = rt.block_on(s3_lines(&sdk, BUCKET));
    assert_eq!(lines.len(), 5, "the other records reached S3");

    let items = rt.block_on(scan(&sdk, TABLE));
    assert_eq!(items.len(), 60, "one item per contact");
    for item in &items {
        let n: usize = s(item, "ContactId").trim_start_matches("limits-").parse().unwrap();
        // The last of each contact's records in the file is the one a put leaves.
        let last = (0..130).rev().find(|i| i % 60 == n).unwrap();
        let want = format!("2024-01-01T00:{:02}:{:02}Z", last / 60 % 60, last % 60);
        assert_eq!(s(item, "LastUpdateTimestamp"), want, "limits-{n:04}");
    }
}

#[test]
fn kpl_aggregated_records_are_read_as_their_user_records() {
    use ctrflow::connectors::aws::kinesis::deaggregate::{SubRecord, aggregate};
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_stream(&sdk, "kpl", 1));
    let subs: Vec<SubRecord> = (0..3)
        .map(|i| SubRecord {
            partition_key: format!("kpl-{i}"),
            explicit_hash_key: None,
            data: format!("{{\"ContactId\":\"kpl-{i}\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:0{i}Z\"}}")
                .into_bytes(),
        })
        .collect();
    let k = aws_sdk_kinesis::Client::new(&sdk);
    rt.block_on(async {
        k.put_record()
            .stream_name("kpl")
            .partition_key("kpl-0")
            .data(Blob::new(aggregate(&subs)))
            .send()
            .await
            .unwrap();
        let plain = b"{\"ContactId\":\"plain\"}".to_vec();
        k.put_record().stream_name("kpl").partition_key("plain").data(Blob::new(plain)).send().await.unwrap();
    });
    let dir = temp_dir("aws-kpl");
    std::fs::write(
        dir.join("pipeline.toml"),
        "[sources.in]\ntype = \"kinesis\"\nstream = \"kpl\"\nstop_at_end = true\npoll_interval = \"100ms\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    run_ok(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[]);
    let ids: Vec<String> =
        read_jsonl(&dir.join("out.jsonl")).iter().map(|r| r["ContactId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["kpl-0", "kpl-1", "kpl-2", "plain"]);
}

#[test]
fn a_missing_stream_table_or_delivery_stream_is_named_with_its_key() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_stream(&sdk, "present", 1));
    let dir = temp_dir("aws-missing");
    let cases = [
        (
            "[sources.ctrs]\ntype = \"kinesis\"\nstream = \"nope\"\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"ctrs\"]\n",
            "sources.ctrs: stream: Kinesis stream \"nope\" does not exist",
        ),
        (
            "[sources.ctrs]\ntype = \"kinesis\"\nstream = \"present\"\n[sinks.contacts]\ntype = \"dynamodb\"\ninputs = [\"ctrs\"]\ntable = \"no-table\"\n",
            "sinks.contacts: table: DynamoDB table \"no-table\" does not exist",
        ),
        (
            "[sources.ctrs]\ntype = \"kinesis\"\nstream = \"present\"\n[sinks.lake]\ntype = \"firehose\"\ninputs = [\"ctrs\"]\ndelivery_stream = \"no-firehose\"\n",
            "sinks.lake: delivery_stream: Firehose delivery stream \"no-firehose\" does not exist",
        ),
    ];
    for (pipeline, message) in cases {
        std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
        let out = command(&moto, &dir, &["run", "pipeline.toml"], &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(message), "expected {message:?} in:\n{stderr}");
    }
    // No credentials at all: named before anything is read.
    std::fs::write(dir.join("pipeline.toml"), cases[0].0.replace("nope", "present")).unwrap();
    let out = command(&moto, &dir, &["run", "pipeline.toml"], &[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sources.ctrs: no AWS credentials"), "{stderr}");
}

/// A split stream is read whole and the run still stops at its end: the closed parent is
/// read to `SHARD_END` (moto never returns the null iterator that ends a closed shard on
/// real Kinesis, and keeps routing records to the split parent), then its children.
#[test]
fn a_resharded_stream_is_read_whole_and_its_closed_parent_ends() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_stream(&sdk, "split", 1));
    let k = aws_sdk_kinesis::Client::new(&sdk);
    let put = |from: usize| {
        let k = k.clone();
        async move {
            for i in from..from + 30 {
                let data =
                    format!("{{\"ContactId\":\"split-{i:03}\",\"LastUpdateTimestamp\":\"2024-01-01T00:00:00Z\"}}");
                k.put_record()
                    .stream_name("split")
                    .partition_key(format!("split-{i:03}"))
                    .data(Blob::new(data.into_bytes()))
                    .send()
                    .await
                    .unwrap();
            }
        }
    };
    rt.block_on(async {
        put(0).await;
        let shards = k.list_shards().stream_name("split").send().await.unwrap();
        let parent = shards.shards()[0].shard_id().to_string();
        k.split_shard()
            .stream_name("split")
            .shard_to_split(&parent)
            .new_starting_hash_key((1u128 << 127).to_string())
            .send()
            .await
            .unwrap();
        put(30).await;
    });
    let dir = temp_dir("aws-split");
    std::fs::write(
        dir.join("pipeline.toml"),
        "[runtime]\nstate_dir = \"state\"\n[sources.in]\ntype = \"kinesis\"\nstream = \"split\"\nstop_at_end = true\npoll_interval = \"100ms\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    run_ok(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[]);
    let ids: HashSet<String> =
        read_jsonl(&dir.join("out.jsonl")).iter().map(|r| r["ContactId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 60, "every record of the parent and the children");
    let cp: Value = serde_json::from_slice(&std::fs::read(dir.join("state/in.checkpoint.json")).unwrap()).unwrap();
    assert_eq!(cp["shards"]["shardId-000000000000"], "SHARD_END", "{cp}");
}

/// `checkpoint = { dynamodb = "<table>" }`: the lease table is created with the KCL's
/// schema, owned by the run, and a second run resumes from it.
#[test]
fn checkpoints_in_a_kcl_lease_table_resume_a_second_run() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_stream(&sdk, STREAM, 2));
    let dir = temp_dir("aws-leases");
    load(&moto, &dir, 200);
    std::fs::write(
        dir.join("pipeline.toml"),
        "[sources.in]\ntype = \"kinesis\"\nstream = \"ctrflow-ctr\"\nstop_at_end = true\npoll_interval = \"100ms\"\n\
         checkpoint = { dynamodb = \"ctrflow-leases\" }\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    run_ok(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[]);
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), 200);
    let leases = rt.block_on(scan(&sdk, "ctrflow-leases"));
    assert_eq!(leases.len(), 2, "a lease per shard: {leases:?}");
    for lease in &leases {
        assert!(s(lease, "leaseKey").starts_with("shardId-"), "{lease:?}");
        // Released when the run stopped, so another process may take it at once.
        assert!(s(lease, "leaseOwner").is_empty(), "{lease:?}");
        assert!(lease.get("leaseCounter").and_then(|v| v.as_n().ok()).is_some(), "{lease:?}");
        let cp = s(lease, "checkpoint");
        assert!(cp.parse::<u64>().is_ok(), "a sequence number checkpoint: {lease:?}");
    }
    // Nothing new on the stream: the second run reads nothing.
    run_ok(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[]);
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), 200, "resumed after the lease table's checkpoints");
    assert!(!dir.join(".ctrflow-state/in.checkpoint.json").exists(), "no file checkpoint beside the table");
}

/// A table deleted under a running pipeline: the run stops naming the sink and the error,
/// and nothing is dead-lettered (the records stay unacknowledged, to be read again).
#[test]
fn a_table_gone_mid_run_stops_the_run_instead_of_dead_lettering() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(async {
        create_stream(&sdk, STREAM, 1).await;
        create_table(&sdk, TABLE, "ContactId").await;
    });
    let dir = temp_dir("aws-gone");
    load(&moto, &dir, 50);
    std::fs::write(
        dir.join("pipeline.toml"),
        "[runtime]\nstate_dir = \"state\"\n[sources.in]\ntype = \"kinesis\"\nstream = \"ctrflow-ctr\"\npoll_interval = \"100ms\"\n\
         [sinks.db]\ntype = \"dynamodb\"\ninputs = [\"in\"]\ntable = \"ctrflow-contacts\"\nlinger = \"10ms\"\n",
    )
    .unwrap();
    let child = command(&moto, &dir, &["run", "pipeline.toml", "--quiet"], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(scan(&sdk, TABLE)).is_empty() {
        assert!(Instant::now() < deadline, "the first records never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(aws_sdk_dynamodb::Client::new(&sdk).delete_table().table_name(TABLE).send()).unwrap();
    load(&moto, &dir, 20);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sinks.db: ResourceNotFoundException"), "{stderr}");
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing dead-lettered");
}
