//! Infrastructure faults injected between the pipeline and the AWS emulator
//! (`ctrflow_tests::faults`): throttling with the services' real error codes, 500s, dropped
//! connections, lost responses, slow responses and partly failed batches. The rule under
//! test: an infrastructure fault is retried until it passes, never dead-lettered, never
//! lost. Each test prints what was injected and what was delivered.
//!
//! The seed is fixed so a failure can be replayed; `CTRFLOW_FAULT_SEED` picks another.

use std::collections::HashSet;
use std::path::Path;

use ctrflow_tests::faults::{FaultPlan, FaultProxy};
use ctrflow_tests::{read_jsonl, repo_root, temp_dir};
use serde_json::Value;

use crate::aws::{
    BUCKET, DELIVERY, STREAM, TABLE, command, create_delivery_stream, create_founding, create_stream, create_table,
    fanout_env, load, rt, s, s3_lines, scan, stream_records, versions,
};
use crate::moto::Moto;

/// One request in five meets a fault.
const RATE: f64 = 0.2;

fn plan() -> FaultPlan {
    let seed = std::env::var("CTRFLOW_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261129);
    FaultPlan { seed, rate: RATE }
}

/// Runs `ctrflow <args>` in `dir` with its AWS endpoint at the proxy; returns stderr.
fn run_through(moto: &Moto, proxy: &FaultProxy, dir: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let mut env = env.to_vec();
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint.clone()));
    let out = command(moto, dir, args, &env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ctrflow {args:?} failed under faults ({}):\n{stderr}", proxy.injected());
    stderr
}

fn dead_letters(path: &Path) -> Vec<Value> {
    if path.exists() { read_jsonl(path) } else { Vec::new() }
}

#[test]
fn under_injected_faults_the_founding_pipeline_delivers_every_record_and_dead_letters_none() {
    const N: usize = 600;
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_founding(&sdk, 2));
    let dir = temp_dir("faults-fanout");
    load(&moto, &dir, N); // straight to moto: the faults are for the pipeline under test
    let on_stream: Vec<Value> =
        rt.block_on(stream_records(&sdk, STREAM)).iter().map(|d| serde_json::from_slice(d).unwrap()).collect();
    assert_eq!(on_stream.len(), N);

    let plan = plan();
    let proxy = FaultProxy::start(&moto.endpoint, plan);
    let stderr =
        run_through(&moto, &proxy, &repo_root(), &["run", "pipelines/connect-kinesis-fanout.toml"], &fanout_env(&dir));
    let injected = proxy.injected();
    drop(proxy);

    let (all, newest) = versions(&on_stream);
    let lines = rt.block_on(s3_lines(&sdk, BUCKET));
    let (in_s3, _) = versions(&lines);
    let lost: Vec<_> = all.difference(&in_s3).collect();
    let items = rt.block_on(scan(&sdk, TABLE));
    let stale: Vec<String> = items
        .iter()
        .map(|item| s(item, "ContactId"))
        .filter(|id| items.iter().any(|i| s(i, "ContactId") == *id && s(i, "LastUpdateTimestamp") != newest[id]))
        .collect();
    let dead = dead_letters(&dir.join("dead-letters.jsonl"));
    println!(
        "fault injection (seed {}, rate {RATE}): {injected}\n  by operation: {:?}\n  records on the stream: {N} ({} versions); \
         delivered to S3: {} lines, {} versions; lost: {}; DynamoDB items: {} of {} contacts, {} stale; dead-lettered: {}",
        plan.seed,
        injected.by_operation,
        all.len(),
        lines.len(),
        in_s3.intersection(&all).count(),
        lost.len(),
        items.len(),
        newest.len(),
        stale.len(),
        dead.len()
    );
    assert!(injected.total() >= 20, "the proxy injected faults: {injected}");
    // First: a dead letter's reason says why a record is missing downstream.
    let reasons: Vec<_> = dead.iter().map(|d| (&d["node"], &d["kind"], &d["reason"])).collect();
    assert!(dead.is_empty(), "dead-lettered for infrastructure faults: {reasons:?}\n{stderr}");
    assert!(
        lost.is_empty(),
        "records lost under faults ({} of {}): {:?}",
        lost.len(),
        all.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(items.len(), newest.len(), "one DynamoDB item per contact");
    assert!(stale.is_empty(), "contacts whose newest version did not win: {stale:?}");
}

/// The batch APIs' per-entry failures, which the founding pipeline meets only on Firehose:
/// a file into a Kinesis stream (PutRecords), a DynamoDB table in `put` mode
/// (BatchWriteItem) and Firehose (PutRecordBatch), in small batches so that many meet a
/// fault.
#[test]
fn under_injected_faults_partly_failed_batches_are_retried_until_every_entry_is_written() {
    const N: usize = 300;
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(async {
        create_stream(&sdk, "faults-out", 2).await;
        create_table(&sdk, TABLE, "ContactId").await;
        create_delivery_stream(&sdk, DELIVERY, BUCKET).await;
    });
    let dir = temp_dir("faults-batches");
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&format!(
            "{{\"ContactId\":\"fault-{i:04}\",\"Channel\":\"VOICE\",\"LastUpdateTimestamp\":\"2024-01-01T00:{:02}:{:02}Z\"}}\n",
            i / 60 % 60,
            i % 60
        ));
    }
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        r#"
[runtime]
state_dir = "state"
[sources.in]
type = "file"
path = "in.jsonl"
[sinks.stream]
type = "kinesis"
inputs = ["in"]
stream = "faults-out"
max_records = 20
[sinks.db]
type = "dynamodb"
inputs = ["in"]
table = "ctrflow-contacts"
mode = "put"
max_records = 40
[sinks.lake]
type = "firehose"
inputs = ["in"]
delivery_stream = "ctrflow-ctr-lake"
max_records = 20
"#,
    )
    .unwrap();
    let plan = FaultPlan { rate: 0.3, ..plan() };
    let proxy = FaultProxy::start(&moto.endpoint, plan);
    let stderr = run_through(&moto, &proxy, &dir, &["run", "pipeline.toml"], &[]);
    let injected = proxy.injected();
    drop(proxy);

    let ids = |values: Vec<String>| values.into_iter().collect::<HashSet<String>>();
    let expected: HashSet<String> = (0..N).map(|i| format!("fault-{i:04}")).collect();
    let on_stream = ids(rt
        .block_on(stream_records(&sdk, "faults-out"))
        .iter()
        .map(|d| serde_json::from_slice::<Value>(d).unwrap()["ContactId"].as_str().unwrap().to_string())
        .collect());
    let in_table = ids(rt.block_on(scan(&sdk, TABLE)).iter().map(|i| s(i, "ContactId")).collect());
    let in_s3 =
        ids(rt.block_on(s3_lines(&sdk, BUCKET)).iter().map(|l| l["ContactId"].as_str().unwrap().to_string()).collect());
    let dead = dead_letters(&dir.join("dead-letters.jsonl"));
    let lost = |got: &HashSet<String>| expected.difference(got).count();
    println!(
        "fault injection (seed {}, rate {}): {injected}\n  by operation: {:?}\n  records: {N}; lost from Kinesis: {}, \
         from DynamoDB: {}, from S3: {}; dead-lettered: {}",
        plan.seed,
        plan.rate,
        injected.by_operation,
        lost(&on_stream),
        lost(&in_table),
        lost(&in_s3),
        dead.len()
    );
    assert!(injected.partial > 0 && injected.partial_entries > 0, "batches were partly failed: {injected}");
    assert_eq!(lost(&on_stream), 0, "every record reached the Kinesis stream");
    assert_eq!(lost(&in_table), 0, "every record reached DynamoDB");
    assert_eq!(lost(&in_s3), 0, "every record reached S3");
    assert!(dead.is_empty(), "dead-lettered for infrastructure faults: {dead:?}\n{stderr}");
}
