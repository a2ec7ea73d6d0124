//! `ctrflow lambda`: the real process serving a local Lambda runtime API
//! ([`crate::lambda_api`]), with the founding pipeline (`pipelines/connect-kinesis-fanout.toml`,
//! unchanged) writing to DynamoDB and Firehose on the emulator (moto). Partial batch
//! responses, KPL de-aggregation, dead letters counting as delivered, warm invocations, an
//! infrastructure fault outlasting the deadline, and plugins precompiled with `ctrflow compile`.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctrflow::connectors::aws::kinesis::deaggregate::{SubRecord, aggregate};
use ctrflow_tests::{cache_dir, ctrflow_bin, read_jsonl, repo_root, temp_dir};
use serde_json::{Value, json};

use crate::aws::{BUCKET, TABLE, create_founding, fanout_env, rt, s, s3_lines, scan};
use crate::lambda_api::{Answer, RuntimeApi};
use crate::moto::Moto;

const FANOUT: &str = "pipelines/connect-kinesis-fanout.toml";
/// 2024-02-03T04:05:06Z, every record's `LastUpdateTimestamp`.
const EVENT_S: i64 = 1_706_933_106;

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A contact record as Amazon Connect writes it (the fields the founding pipeline uses).
pub(crate) fn ctr(id: &str, i: usize, extra: &str) -> String {
    let agent =
        if i.is_multiple_of(2) { format!(r#","Agent":{{"Username":"agent00{}"}}"#, 1 + i % 5) } else { String::new() };
    format!(
        r#"{{"ContactId":"{id}","Channel":"VOICE","LastUpdateTimestamp":"2024-02-03T04:05:06Z","CustomerEndpoint":{{"Address":"+1555555{i:04}","Type":"TELEPHONE_NUMBER"}},"Attributes":{{"customerName":"Pat {i}"}}{agent}{extra}}}"#
    )
}

/// The sequence number of record `i` of batch `batch`.
pub(crate) fn seq(batch: usize, i: usize) -> String {
    format!("4959{batch:04}{i:048}")
}

/// A Kinesis record as Lambda's event source mapping delivers it; it arrived in the stream
/// 5 s after the contact's `LastUpdateTimestamp`.
pub(crate) fn kinesis_record(sequence: &str, data: &[u8]) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "pk",
            "sequenceNumber": sequence,
            "data": base64(data),
            "approximateArrivalTimestamp": (EVENT_S + 5) as f64 + 0.25,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000000:{sequence}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/ctrflow-lambda",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/ctrflow-ctr",
    })
}

pub(crate) fn event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// A `ctrflow lambda` process and its stdout lines (the EMF metrics).
pub(crate) struct Function {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub stderr: PathBuf,
}

impl Function {
    pub(crate) fn start(dir: &Path, api: &RuntimeApi, args: &[&str], env: &[(&str, String)]) -> Function {
        let stderr = dir.join("function.log");
        let mut c = Command::new(ctrflow_bin());
        c.current_dir(repo_root())
            .arg("lambda")
            .args(args)
            .env("CTRFLOW_CACHE_DIR", cache_dir())
            .env("NO_COLOR", "1")
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", "ctrflow")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Function { child, lines, stderr }
    }

    /// The EMF lines so far.
    pub(crate) fn metrics(&self) -> Vec<Value> {
        self.lines.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn function_env(moto: &Moto, dir: &Path) -> Vec<(&'static str, String)> {
    let mut env = moto.env();
    env.extend(fanout_env(dir));
    env
}

fn failures(answer: &Answer) -> Vec<String> {
    match answer {
        Answer::Response(v) => v["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("a partial batch response: {v}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
            .collect(),
        Answer::Error(e) => panic!("the invocation failed: {e}"),
    }
}

fn table_ids(rt: &tokio::runtime::Runtime, sdk: &aws_config::SdkConfig) -> BTreeSet<String> {
    rt.block_on(scan(sdk, TABLE)).iter().map(|i| s(i, "ContactId")).collect()
}

#[test]
fn an_event_with_aggregated_malformed_and_unwritable_records_is_delivered_and_warm_invocations_reuse_the_pipeline() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_founding(&sdk, 1));
    let dir = temp_dir("lambda-fanout");
    // The plugins come precompiled from the function's package.
    let package = dir.join("package");
    let out = Command::new(ctrflow_bin())
        .current_dir(repo_root())
        .args(["compile", FANOUT, "-o", package.to_str().unwrap()])
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let api = RuntimeApi::start();
    let f =
        Function::start(&dir, &api, &[FANOUT, "--precompiled", package.to_str().unwrap()], &function_env(&moto, &dir));

    // 100 Kinesis records: #10 KPL-aggregated (3 contacts), #20 not JSON, #30 a contact too
    // large for a DynamoDB item (it fits a Firehose record), the rest one contact each.
    let mut records = Vec::new();
    let mut expected_s3 = BTreeSet::new();
    for i in 0..100 {
        let data = match i {
            10 => {
                let subs: Vec<SubRecord> = (0..3)
                    .map(|j| SubRecord {
                        partition_key: format!("pk-{j}"),
                        explicit_hash_key: None,
                        data: ctr(&format!("lambda-010-{j}"), j, "").into_bytes(),
                    })
                    .collect();
                (0..3).for_each(|j| {
                    expected_s3.insert(format!("lambda-010-{j}"));
                });
                aggregate(&subs)
            }
            20 => b"{\"ContactId\": not json".to_vec(),
            30 => {
                expected_s3.insert("lambda-030".to_string());
                ctr("lambda-030", i, &format!(r#","Pad":"{}""#, "x".repeat(450_000))).into_bytes()
            }
            _ => {
                expected_s3.insert(format!("lambda-{i:03}"));
                ctr(&format!("lambda-{i:03}"), i, "").into_bytes()
            }
        };
        records.push(kinesis_record(&seq(1, i), &data));
    }
    let id = api.invoke(event(records), Duration::from_secs(60));
    let (answer, _) = api.answer(&id, Duration::from_secs(90));
    assert_eq!(failures(&answer), Vec::<String>::new(), "dead-lettered records count as delivered:\n{}", f.log());

    let lines = rt.block_on(s3_lines(&sdk, BUCKET));
    let in_s3: BTreeSet<String> = lines.iter().map(|l| l["ContactId"].as_str().unwrap().to_string()).collect();
    assert_eq!(in_s3, expected_s3, "Firehose got every contact, the aggregated ones de-aggregated");
    assert_eq!(lines.len(), 101, "each once");
    for l in &lines {
        let addr = l.pointer("/CustomerEndpoint/Address").and_then(Value::as_str).unwrap();
        assert!(addr.starts_with('*'), "redacted: {addr}");
        if l.pointer("/Agent/Username").is_some() {
            assert!(l.pointer("/AgentInfo/full_name").is_some(), "enriched from the agents table: {l}");
        }
    }
    let mut expected_items = expected_s3.clone();
    expected_items.remove("lambda-030");
    assert_eq!(table_ids(&rt, &sdk), expected_items, "DynamoDB holds every contact but the one too large");

    let dead = read_jsonl(&dir.join("dead-letters.jsonl"));
    let kinds: BTreeSet<(String, String)> =
        dead.iter().map(|d| (d["node"].as_str().unwrap().into(), d["kind"].as_str().unwrap().into())).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("sources.ctrs".to_string(), "malformed_json".to_string()),
            ("sinks.contacts".to_string(), "oversized".to_string())
        ]),
        "{dead:?}"
    );

    // One EMF line per invocation: the counts, and the hops of this invocation.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.metrics().is_empty() {
        assert!(Instant::now() < deadline, "no metrics line on stdout");
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = &f.metrics()[0];
    assert_eq!(m["_aws"]["CloudWatchMetrics"][0]["Namespace"], "ctrflow", "{m}");
    assert_eq!(m["Pipeline"], "connect-kinesis-fanout");
    assert_eq!(
        (m["Records"].as_u64(), m["Delivered"].as_u64(), m["Retried"].as_u64()),
        (Some(100), Some(100), Some(0))
    );
    assert_eq!(m["DeadLettered"], 2, "{m}");
    assert_eq!(m["ColdStart"], true);
    // ApproximateArrivalTimestamp is the arrival time: 5.25 s after the event time.
    let e2a = m["ctrs.event_to_arrival_ms"].as_f64().unwrap_or_else(|| panic!("{m}"));
    assert!((e2a - 5250.0).abs() < 10.0, "event → arrival {e2a} ms");
    for key in ["redact.process_ms", "enrich.process_ms", "lake.event_to_ack_ms", "contacts.deliver_ms"] {
        assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {m}");
    }
    let names: BTreeSet<&str> = m["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains("EventToAcknowledgedMs") && names.contains("lake.event_to_ack_ms"), "{names:?}");

    // A warm invocation: the same process and pipeline.
    let second: Vec<Value> =
        (0..10).map(|i| kinesis_record(&seq(2, i), ctr(&format!("warm-{i}"), i, "").as_bytes())).collect();
    let id = api.invoke(event(second), Duration::from_secs(60));
    assert_eq!(failures(&api.answer(&id, Duration::from_secs(60)).0), Vec::<String>::new());
    let ids = table_ids(&rt, &sdk);
    assert!((0..10).all(|i| ids.contains(&format!("warm-{i}"))), "{ids:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.metrics().len() < 2 {
        assert!(Instant::now() < deadline, "no second metrics line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = &f.metrics()[1];
    assert_eq!(
        (m["ColdStart"].as_bool(), m["Records"].as_u64(), m["DeadLettered"].as_u64()),
        (Some(false), Some(10), Some(0))
    );
    let log = f.log();
    assert!(!log.contains("No precompiled plugin"), "the packaged plugins were used:\n{log}");
    assert_eq!(log.matches("Pipeline running").count(), 1, "one pipeline for both invocations:\n{log}");
}

#[test]
fn a_destination_failing_past_the_deadline_reports_the_first_record_and_the_retry_delivers() {
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_founding(&sdk, 1));
    let dir = temp_dir("lambda-fault");
    let api = RuntimeApi::start();
    let mut env = function_env(&moto, &dir);
    env.push(("CTRFLOW_LAMBDA_DEADLINE_MARGIN", "1s".into()));
    let f = Function::start(&dir, &api, &[FANOUT], &env);
    api.wait_next(1, Duration::from_secs(60));

    let records: Vec<Value> =
        (0..5).map(|i| kinesis_record(&seq(3, i), ctr(&format!("fault-{i}"), i, "").as_bytes())).collect();
    // The emulator stops answering: every write hangs (or is retried) past the deadline.
    moto.pause();
    let sent = Instant::now();
    let id = api.invoke(event(records.clone()), Duration::from_secs(5));
    let (answer, at) = api.answer(&id, Duration::from_secs(30));
    moto.resume();
    assert_eq!(failures(&answer), vec![seq(3, 0)], "Lambda retries from the first record:\n{}", f.log());
    let took = at - sent;
    assert!(took < Duration::from_secs(5), "answered before the deadline, not timed out: {took:?}");

    // Lambda's retry of the same records: delivered by a fresh pipeline.
    let id = api.invoke(event(records), Duration::from_secs(60));
    assert_eq!(failures(&api.answer(&id, Duration::from_secs(90)).0), Vec::<String>::new(), "{}", f.log());
    let ids = table_ids(&rt, &sdk);
    assert!((0..5).all(|i| ids.contains(&format!("fault-{i}"))), "{ids:?}");
    let m = f.metrics();
    assert_eq!(m[0]["TimedOut"], true, "{:?}", m);
    assert_eq!(m[0]["RetryFrom"], seq(3, 0));
    assert_eq!(m[1]["Retried"], 0);
}

/// `ctrflow compile` output is what the function loads; a damaged (or foreign) entry is not
/// used: the plugin is compiled at start instead, with a warning, and records still flow.
#[test]
fn precompiled_plugins_are_verified_before_use() {
    let dir = temp_dir("lambda-compile");
    std::fs::write(
        dir.join("p.toml"),
        "[sources.ctrs]\ntype = \"kinesis\"\nstream = \"not-contacted-in-a-function\"\n\
         [transforms.redact]\nplugin = \"redact-pii\"\ninputs = [\"ctrs\"]\n\
         config = { fields = [\"CustomerEndpoint.Address\"], keep_last = 4 }\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"redact\"]\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let pkg = dir.join("pkg");
    let out = Command::new(ctrflow_bin()).current_dir(&dir).args(["compile", "p.toml", "-o", "pkg"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries: Vec<PathBuf> = std::fs::read_dir(pkg.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one plugin: {entries:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&entries[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by the function's user");
        assert!(pkg.join("plugins.key").exists());
    }

    let run = |round: usize| -> String {
        let api = RuntimeApi::start();
        let pipeline = dir.join("p.toml");
        let f = Function::start(&dir, &api, &[pipeline.to_str().unwrap(), "--precompiled", pkg.to_str().unwrap()], &[]);
        let records = (0..2).map(|i| kinesis_record(&seq(round, i), ctr(&format!("c-{round}-{i}"), i, "").as_bytes()));
        let id = api.invoke(event(records.collect()), Duration::from_secs(30));
        assert_eq!(failures(&api.answer(&id, Duration::from_secs(60)).0), Vec::<String>::new(), "{}", f.log());
        f.log()
    };
    let log = run(1);
    assert!(!log.contains("No precompiled plugin"), "{log}");
    let lines = read_jsonl(&dir.join("out.jsonl"));
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["CustomerEndpoint"]["Address"].as_str().unwrap().starts_with('*')));

    // A flipped bit: the HMAC refuses it; compiled at start instead.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&entries[0], bytes).unwrap();
    let log = run(2);
    assert!(log.contains("No precompiled plugin"), "{log}");
    assert_eq!(read_jsonl(&dir.join("out.jsonl")).len(), 4);
}

/// How a measured function runs.
#[derive(Clone, Copy)]
enum Way {
    /// `ctrflow lambda` with this pipeline; plugins from `ctrflow compile`, or compiled at
    /// init from an empty cache.
    Ctrflow { pipeline: &'static str, precompiled: bool },
    /// A handler in `deploy/lambda/` under AWS's Python runtime interface client.
    Python { handler: &'static str },
}

/// A running measured function.
enum Running {
    Ctrflow(Function),
    Python(KillOnDrop),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Ctrflow(f) => f.pid(),
            Running::Python(p) => p.0.id(),
        }
    }

    /// `EventToAcknowledgedMs` (the handler's own time) of each invocation, by request id.
    fn handler_ms(&self) -> std::collections::HashMap<String, f64> {
        let Running::Ctrflow(f) = self else { return Default::default() };
        f.metrics()
            .iter()
            .filter_map(|m| Some((m["RequestId"].as_str()?.to_string(), m["EventToAcknowledgedMs"].as_f64()?)))
            .collect()
    }
}

/// The Python with awslambdaric and boto3 (`cargo xtask lambda-python`).
fn lambda_python() -> PathBuf {
    let python = std::env::var_os("CTRFLOW_LAMBDA_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("CTRFLOW_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ctrflow"));
        cache.join("lambda-python-venv/bin/python")
    });
    assert!(python.exists(), "{} is missing: run `cargo xtask lambda-python`", python.display());
    python
}

/// utime + stime of a process (every thread), in ms.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    ticks as f64 * 1000.0 / clock_ticks() as f64
}

fn clock_ticks() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100)
}

fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The figures in docs/lambda.md, "Measured" (not a pass/fail test; run it with
/// `cargo test --release -p ctrflow-tests --test all -- lambda::measure --ignored --nocapture`
/// after `cargo xtask lambda-python`). Five functions, each against a fresh local runtime API
/// and the same moto, one after the other in one run:
///
/// - the founding pipeline with plugins from `ctrflow compile`, and compiling them at init
///   (an empty cache: a function shipped without the `ctrflow compile` folder);
/// - the Python handler doing the same work (`deploy/lambda/python_baseline.py`) under
///   `awslambdaric`, AWS's runtime interface client that Lambda's Python images run;
/// - a pipeline with no plugin into a `file` sink, and its Python counterpart
///   (`deploy/lambda/python_passthrough.py`): what an invocation costs besides the work.
///
/// Per function: **cold start** — process start to its first `next` call (init) and to the
/// response to a one-record event queued before the process started (the first record
/// processed and acknowledged) — in fresh processes; then, in the first, the **warm**
/// response time (the event handed out → its response) of 1- and 100-record events, the
/// process's CPU time per 100-record invocation, and the **peak resident memory**
/// (`VmHWM`) after them. For `ctrflow lambda` also the part of a warm response outside the
/// handler (response time − the EMF line's `EventToAcknowledgedMs`). Everything against
/// the same local emulator on one machine: the figures compare, they do not predict AWS.
#[test]
#[ignore]
fn measure() {
    const COLD: usize = 5;
    const WARM: usize = 20;
    let python = lambda_python();
    let moto = Moto::start();
    let rt = rt();
    let sdk = rt.block_on(moto.sdk());
    rt.block_on(create_founding(&sdk, 1));
    let dir = temp_dir("lambda-measure");
    let package = dir.join("package");
    let out = Command::new(ctrflow_bin())
        .current_dir(repo_root())
        .args(["compile", FANOUT, "-o", package.to_str().unwrap()])
        .env("CTRFLOW_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let minimal = dir.join("minimal.toml");
    std::fs::write(
        &minimal,
        format!(
            "[dead_letter]\npath = \"{}\"\n[sources.ctrs]\ntype = \"kinesis\"\nstream = \"not-read-in-a-function\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"ctrs\"]\npath = \"{}\"\nfsync = false\n",
            dir.join("minimal-dead-letters.jsonl").display(),
            dir.join("minimal-out.jsonl").display()
        ),
    )
    .unwrap();
    let minimal: &'static str = Box::leak(minimal.display().to_string().into_boxed_str());
    let deploy = repo_root().join("deploy/lambda");
    let mut n = 0usize;
    let mut batch = |size: usize| -> Value {
        n += 1;
        event((0..size).map(|i| kinesis_record(&seq(n, i), ctr(&format!("m-{n}-{i}"), i, "").as_bytes())).collect())
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = |v: &mut Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    };
    let stats = |v: &mut Vec<f64>| {
        let m = median(v);
        format!("median {m:8.1} ms   min {:8.1}   max {:8.1}", v[0], v[v.len() - 1])
    };
    let ways = [
        ("ctrflow lambda, founding pipeline, --precompiled", Way::Ctrflow { pipeline: FANOUT, precompiled: true }),
        ("ctrflow lambda, founding pipeline, compiling at init", Way::Ctrflow { pipeline: FANOUT, precompiled: false }),
        (
            "python (awslambdaric), same work: python_baseline.handler",
            Way::Python { handler: "python_baseline.handler" },
        ),
        ("ctrflow lambda, no plugin, file sink", Way::Ctrflow { pipeline: minimal, precompiled: false }),
        ("python (awslambdaric), python_passthrough.handler", Way::Python { handler: "python_passthrough.handler" }),
    ];
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().unwrap();
    println!(
        "lambda::measure, {}, {} cores, load average {}",
        String::from_utf8_lossy(&date.stdout).trim(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_average()
    );
    for (w, (name, way)) in ways.into_iter().enumerate() {
        let load_before = load_average();
        let (mut init, mut cold) = (Vec::new(), Vec::new());
        let (mut warm1, mut warm100, mut outside100, mut cpu100) = (Vec::new(), Vec::new(), Vec::new(), 0.0);
        let mut peak_mib = 0.0;
        for round in 0..COLD {
            let api = RuntimeApi::start();
            let first = api.invoke(batch(1), Duration::from_secs(60));
            let mut env = function_env(&moto, &dir);
            let started = Instant::now();
            let running = match way {
                Way::Ctrflow { pipeline, precompiled } => {
                    let mut args = vec![pipeline];
                    if precompiled {
                        args.extend(["--precompiled", package.to_str().unwrap()]);
                    } else {
                        // An empty plugin cache: what a function without a package compiles.
                        let empty = dir.join(format!("empty-cache-{w}-{round}"));
                        env.push(("CTRFLOW_CACHE_DIR", empty.display().to_string()));
                    }
                    Running::Ctrflow(Function::start(&dir, &api, &args, &env))
                }
                Way::Python { handler } => {
                    let mut c = Command::new(&python);
                    c.current_dir(&deploy)
                        .args(["-m", "awslambdaric", handler])
                        .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
                        // Lambda sets both; boto3 reads only AWS_DEFAULT_REGION, and without it
                        // the handler fails its import (reported to `init/error`, not logged).
                        .env("AWS_DEFAULT_REGION", "us-east-1")
                        .env("PASSTHROUGH_OUT", dir.join("passthrough.jsonl"))
                        .stdout(Stdio::null())
                        .stderr(std::fs::File::create(dir.join(format!("python-{round}.log"))).unwrap());
                    for (k, v) in &env {
                        c.env(k, v);
                    }
                    Running::Python(KillOnDrop(c.spawn().unwrap()))
                }
            };
            let next = api.wait_next(1, Duration::from_secs(120));
            let (a, at) = api.answer(&first, Duration::from_secs(120));
            assert_eq!(failures(&a), Vec::<String>::new(), "{name}");
            init.push(ms(next - started));
            cold.push(ms(at - started));
            if round > 0 {
                continue;
            }
            for size in [1, 100] {
                let cpu_before = cpu_ms(running.pid());
                let mut sent = Vec::new();
                for _ in 0..WARM {
                    let id = api.invoke(batch(size), Duration::from_secs(60));
                    let t = Instant::now();
                    let (a, at) = api.answer(&id, Duration::from_secs(60));
                    assert_eq!(failures(&a), Vec::<String>::new(), "{name}");
                    let took = ms(at - t);
                    if size == 1 {
                        warm1.push(took)
                    } else {
                        warm100.push(took)
                    }
                    sent.push((id, took));
                }
                if size == 100 {
                    cpu100 = (cpu_ms(running.pid()) - cpu_before) / WARM as f64;
                    // The EMF line is written before the response is sent.
                    let handler = running.handler_ms();
                    outside100 = sent.iter().filter_map(|(id, took)| Some(took - handler.get(id)?)).collect();
                }
            }
            peak_mib = peak_rss_kib(running.pid()) as f64 / 1024.0;
        }
        println!("{name}");
        println!("  init (start → first `next`)         ({COLD} runs): {}", stats(&mut init));
        println!("  cold start, 1 record (start → response) ({COLD} runs): {}", stats(&mut cold));
        println!("  warm, 1 record                      ({WARM} runs): {}", stats(&mut warm1));
        println!("  warm, 100 records                   ({WARM} runs): {}", stats(&mut warm100));
        if !outside100.is_empty() {
            println!("  warm 100, outside the handler      ({WARM} runs): {}", stats(&mut outside100));
        }
        println!("  CPU per 100-record invocation: {cpu100:.1} ms");
        println!("  peak resident memory after them: {peak_mib:.0} MiB");
        println!("  load average before {load_before}, after {}", load_average());
    }
}

/// `VmHWM`: the process's peak resident set, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
