//! A fault-injecting HTTP proxy between a pipeline's AWS SDK clients and the moto server.
//!
//! The pipeline's `endpoint_url` points here; every request is forwarded to moto unless a
//! seeded draw picks a fault for it. The faults are what AWS really answers under load, with
//! the real error codes and HTTP statuses, so the runtime's classification is tested, not
//! a stand-in:
//!
//! - **throttled**: Kinesis `ProvisionedThroughputExceededException` (400), DynamoDB
//!   `ProvisionedThroughputExceededException` / `ThrottlingException` (400), Firehose
//!   `ServiceUnavailableException` (503) / `ThrottlingException` (400). Not forwarded.
//! - **server error**: `InternalFailure` (DynamoDB: `InternalServerError`), 500. Not forwarded.
//! - **dropped**: the socket is closed without a response, before forwarding.
//! - **response lost**: forwarded (moto applies it), then the socket is closed without a
//!   response, as when a connection dies on the way back; a retry writes twice.
//! - **slow**: forwarded after 100–900 ms (well under the SDK's timeouts).
//! - **partial**: a `PutRecords` / `PutRecordBatch` / `BatchWriteItem` has some of its
//!   entries failed with their per-entry error codes (`FailedRecordCount`,
//!   `FailedPutCount`, `UnprocessedItems`), and only the other entries are forwarded, so
//!   the failed ones really are not written.
//!
//! It speaks just enough HTTP/1.1 for the SDK's JSON protocols (`POST /`, `X-Amz-Target`,
//! `application/x-amz-json-1.x` bodies with a `Content-Length`): one thread per client
//! connection, keep-alive towards the client, a fresh `Connection: close` request to moto
//! for each forward. What it does not do: TLS, S3's REST protocol, streaming bodies.
//!
//! Determinism: the draws come from one seeded generator, so a seed fixes the sequence of
//! decisions; which request meets which decision still depends on thread timing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// How often and how the proxy misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Seeds the decisions.
    pub seed: u64,
    /// The share of requests that meet a fault (0.0–1.0).
    pub rate: f64,
    /// An outage: every request of one operation (its `X-Amz-Target`, e.g.
    /// `DynamoDB_20120810.GetItem`) fails with a 500 for this long after the proxy starts.
    pub outage: Option<(&'static str, Duration)>,
}

/// What the proxy did, by kind.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    dropped: AtomicU64,
    responses_lost: AtomicU64,
    slow: AtomicU64,
    partial: AtomicU64,
    partial_entries: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of what the proxy injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injected {
    /// Requests seen.
    pub requests: u64,
    /// Throttling errors answered.
    pub throttled: u64,
    /// 500s answered.
    pub server_errors: u64,
    /// Connections closed before forwarding.
    pub dropped: u64,
    /// Connections closed after forwarding.
    pub responses_lost: u64,
    /// Responses delayed.
    pub slow: u64,
    /// Batch requests partly failed.
    pub partial: u64,
    /// Entries failed inside those batch requests.
    pub partial_entries: u64,
    /// Faults per operation (`Kinesis_20131202.GetRecords`, …).
    pub by_operation: BTreeMap<String, u64>,
}

impl Injected {
    /// All faults injected, of every kind.
    pub fn total(&self) -> u64 {
        self.throttled + self.server_errors + self.dropped + self.responses_lost + self.slow + self.partial
    }
}

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} faults: {} throttled, {} server errors, {} dropped, {} responses lost, {} slow, \
             {} partial batches ({} entries failed)",
            self.requests,
            self.total(),
            self.throttled,
            self.server_errors,
            self.dropped,
            self.responses_lost,
            self.slow,
            self.partial,
            self.partial_entries
        )
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: give this to the pipeline as its endpoint.
    pub endpoint: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    port: u16,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    plan: FaultPlan,
    started: std::time::Instant,
    rng: Mutex<u64>,
    stats: Arc<Stats>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("local addr").port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").trim_end_matches('/').to_string(),
            plan,
            started: std::time::Instant::now(),
            rng: Mutex::new(plan.seed),
            stats: stats.clone(),
        });
        let stopping = stop.clone();
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    let _ = std::thread::Builder::new().name("fault-proxy-conn".into()).spawn(move || {
                        let _ = serve(conn, &shared);
                    });
                }
            })
            .expect("start the fault proxy");
        FaultProxy { endpoint: format!("http://127.0.0.1:{port}"), stats, stop, port, acceptor: Some(acceptor) }
    }

    /// What it has injected so far.
    pub fn injected(&self) -> Injected {
        let s = &self.stats;
        let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Injected {
            requests: n(&s.requests),
            throttled: n(&s.throttled),
            server_errors: n(&s.server_errors),
            dropped: n(&s.dropped),
            responses_lost: n(&s.responses_lost),
            slow: n(&s.slow),
            partial: n(&s.partial),
            partial_entries: n(&s.partial_entries),
            by_operation: s.by_operation.lock().unwrap().clone(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag; connection threads end with their clients.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP request or response: the first line, the headers, the body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The message with `body`, framed by `Content-Length`, plus `extra` headers.
    fn encode(&self, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            let hop = ["content-length", "transfer-encoding", "connection", "expect", "keep-alive"];
            if !hop.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        for (k, v) in extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// A request's start line and its headers.
type Head = (String, Vec<(String, String)>);

/// Reads the start line and headers; `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((start.trim_end().to_string(), headers)))
}

/// Reads a body framed by `Content-Length` or chunked; with neither, `to_eof` says whether
/// the body runs to the end of the stream (a response) or is empty (a request).
fn read_body(r: &mut impl BufRead, headers: &[(String, String)], to_eof: bool) -> std::io::Result<Vec<u8>> {
    let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Serves one client connection until it closes or a fault closes it.
fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    loop {
        let Some((start, headers)) = read_head(&mut reader)? else { return Ok(()) };
        if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("expect") && v.eq_ignore_ascii_case("100-continue")) {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &headers, false)?;
        let request = Message { start, headers, body };
        shared.stats.requests.fetch_add(1, Ordering::SeqCst);
        match handle(&request, shared)? {
            Some(response) => writer.write_all(&response)?,
            None => {
                // A dropped connection: no response at all.
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Throttle,
    ServerError,
    Drop,
    LoseResponse,
    Slow,
    Partial,
}

impl Shared {
    /// The next number from the seeded generator (splitmix64).
    fn next(&self) -> u64 {
        let mut s = self.rng.lock().unwrap();
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn count(&self, counter: &AtomicU64, operation: &str) {
        counter.fetch_add(1, Ordering::SeqCst);
        *self.stats.by_operation.lock().unwrap().entry(operation.to_string()).or_default() += 1;
    }
}

/// The answer to one request (`None`: close the connection without one).
fn handle(request: &Message, shared: &Shared) -> std::io::Result<Option<Vec<u8>>> {
    let operation = request.header("x-amz-target").unwrap_or("").to_string();
    let batch = matches!(
        operation.as_str(),
        "Kinesis_20131202.PutRecords" | "Firehose_20150804.PutRecordBatch" | "DynamoDB_20120810.BatchWriteItem"
    );
    let in_outage = shared.plan.outage.is_some_and(|(op, until)| op == operation && shared.started.elapsed() < until);
    let fault = if in_outage {
        Some(Fault::ServerError)
    } else if operation.is_empty() || !shared.chance(shared.plan.rate) {
        None
    } else {
        // Batch writes are few next to reads and single writes: half their faults are
        // partial failures, the fault only they can meet.
        let kinds = [Fault::Throttle, Fault::ServerError, Fault::Drop, Fault::LoseResponse, Fault::Slow];
        if batch && shared.chance(0.5) {
            Some(Fault::Partial)
        } else {
            Some(kinds[(shared.next() % kinds.len() as u64) as usize])
        }
    };
    let stats = &shared.stats;
    match fault {
        None => forward(request, &request.body, shared).map(Some),
        Some(Fault::Throttle) => {
            shared.count(&stats.throttled, &operation);
            let (status, code) = throttle_error(&operation, shared.next());
            Ok(Some(error_response(request, status, code)))
        }
        Some(Fault::ServerError) => {
            shared.count(&stats.server_errors, &operation);
            let code = if operation.starts_with("DynamoDB") { "InternalServerError" } else { "InternalFailure" };
            Ok(Some(error_response(request, 500, code)))
        }
        Some(Fault::Drop) => {
            shared.count(&stats.dropped, &operation);
            Ok(None)
        }
        Some(Fault::LoseResponse) => {
            shared.count(&stats.responses_lost, &operation);
            forward(request, &request.body, shared)?;
            Ok(None)
        }
        Some(Fault::Slow) => {
            shared.count(&stats.slow, &operation);
            std::thread::sleep(Duration::from_millis(100 + shared.next() % 800));
            forward(request, &request.body, shared).map(Some)
        }
        Some(Fault::Partial) => partial(request, &operation, shared).map(Some),
    }
}

/// The throttling error each service answers with: (HTTP status, error code).
fn throttle_error(operation: &str, draw: u64) -> (u16, &'static str) {
    match operation.split('.').next().unwrap_or("") {
        "DynamoDB_20120810" if draw.is_multiple_of(2) => (400, "ProvisionedThroughputExceededException"),
        "DynamoDB_20120810" => (400, "ThrottlingException"),
        "Firehose_20150804" if draw.is_multiple_of(2) => (503, "ServiceUnavailableException"),
        "Firehose_20150804" => (400, "ThrottlingException"),
        _ => (400, "ProvisionedThroughputExceededException"),
    }
}

fn content_type(request: &Message) -> String {
    request.header("content-type").unwrap_or("application/x-amz-json-1.1").to_string()
}

/// An AWS JSON-protocol error response (`__type` in the body and `x-amzn-ErrorType`).
fn error_response(request: &Message, status: u16, code: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let body = json!({"__type": code, "message": format!("injected by the fault proxy: {code}")}).to_string();
    let head = Message {
        start: format!("HTTP/1.1 {status} {reason}"),
        headers: vec![
            ("Content-Type".into(), content_type(request)),
            ("x-amzn-ErrorType".into(), code.into()),
            ("x-amzn-RequestId".into(), "fault-proxy".into()),
        ],
        body: Vec::new(),
    };
    head.encode(body.as_bytes(), &[])
}

/// Sends the request with `body` to moto and returns moto's response, re-framed.
fn forward(request: &Message, body: &[u8], shared: &Shared) -> std::io::Result<Vec<u8>> {
    let response = exchange(request, body, shared)?;
    Ok(response.encode(&response.body, &[]))
}

fn exchange(request: &Message, body: &[u8], shared: &Shared) -> std::io::Result<Message> {
    let mut upstream = TcpStream::connect(&shared.upstream)?;
    upstream.write_all(&request.encode(body, &[("Connection", "close")]))?;
    let mut reader = BufReader::new(upstream);
    let (start, headers) = read_head(&mut reader)?.ok_or(std::io::ErrorKind::UnexpectedEof)?;
    let body = read_body(&mut reader, &headers, true)?;
    Ok(Message { start, headers, body })
}

/// Fails a random, non-empty subset of a batch request's entries with their per-entry error
/// code, forwards the rest, and merges the answers into the response the service would give.
fn partial(request: &Message, operation: &str, shared: &Shared) -> std::io::Result<Vec<u8>> {
    let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
        return forward(request, &request.body, shared);
    };
    // Each entry as (table, entry) — the table only matters for BatchWriteItem.
    let entries: Vec<(String, Value)> = if operation.ends_with("BatchWriteItem") {
        body["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(t, reqs)| reqs.as_array().into_iter().flatten().map(move |r| (t.clone(), r.clone())))
            .collect()
    } else {
        body["Records"].as_array().into_iter().flatten().map(|r| (String::new(), r.clone())).collect()
    };
    if entries.len() < 2 {
        return forward(request, &request.body, shared);
    }
    let mut failed: Vec<bool> = entries.iter().map(|_| shared.chance(0.3)).collect();
    if !failed.contains(&true) {
        let i = (shared.next() % entries.len() as u64) as usize;
        failed[i] = true;
    }
    let n_failed = failed.iter().filter(|f| **f).count() as u64;
    shared.count(&shared.stats.partial, operation);
    shared.stats.partial_entries.fetch_add(n_failed, Ordering::SeqCst);

    let kept: Vec<&(String, Value)> = entries.iter().zip(&failed).filter(|(_, f)| !**f).map(|(e, _)| e).collect();
    if operation.ends_with("BatchWriteItem") {
        let mut items = serde_json::Map::new();
        for (t, r) in &kept {
            items.entry(t.clone()).or_insert_with(|| json!([])).as_array_mut().unwrap().push(r.clone());
        }
        let mut answer = if kept.is_empty() {
            ok_response(request, json!({"UnprocessedItems": {}}))
        } else {
            body["RequestItems"] = Value::Object(items);
            let r = exchange(request, &serde_json::to_vec(&body)?, shared)?;
            if !r.start.contains(" 200") {
                return Ok(r.encode(&r.body, &[]));
            }
            r
        };
        let mut out: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| json!({}));
        if !out["UnprocessedItems"].is_object() {
            out["UnprocessedItems"] = json!({});
        }
        for ((t, r), _) in entries.iter().zip(&failed).filter(|(_, f)| **f) {
            let list = out["UnprocessedItems"].as_object_mut().unwrap().entry(t.clone()).or_insert_with(|| json!([]));
            list.as_array_mut().unwrap().push(r.clone());
        }
        answer.body = serde_json::to_vec(&out)?;
        return Ok(rewritten(answer));
    }

    // PutRecords (Kinesis) and PutRecordBatch (Firehose): per-entry results in order.
    let firehose = operation.starts_with("Firehose");
    let (list_key, count_key, code) = if firehose {
        ("RequestResponses", "FailedPutCount", "ServiceUnavailableException")
    } else {
        ("Records", "FailedRecordCount", "ProvisionedThroughputExceededException")
    };
    let mut answer = if kept.is_empty() {
        ok_response(request, json!({ count_key: 0, list_key: [] }))
    } else {
        body["Records"] = Value::Array(kept.iter().map(|(_, r)| r.clone()).collect());
        let r = exchange(request, &serde_json::to_vec(&body)?, shared)?;
        if !r.start.contains(" 200") {
            return Ok(r.encode(&r.body, &[]));
        }
        r
    };
    let mut out: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| json!({}));
    let mut upstream = out[list_key].as_array().cloned().unwrap_or_default().into_iter();
    let merged: Vec<Value> = failed
        .iter()
        .map(|f| {
            if *f {
                json!({"ErrorCode": code, "ErrorMessage": "injected by the fault proxy"})
            } else {
                upstream.next().unwrap_or_else(|| json!({"ErrorCode": "InternalFailure", "ErrorMessage": "missing"}))
            }
        })
        .collect();
    let upstream_failed = out[count_key].as_u64().unwrap_or(0);
    out[count_key] = json!(upstream_failed + n_failed);
    out[list_key] = Value::Array(merged);
    if firehose && out.get("Encrypted").is_none() {
        out["Encrypted"] = json!(false);
    }
    answer.body = serde_json::to_vec(&out)?;
    Ok(rewritten(answer))
}

/// A response whose body was rewritten, without the checksum of the old body (DynamoDB's
/// `x-amz-crc32`).
fn rewritten(mut answer: Message) -> Vec<u8> {
    answer.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-crc32"));
    answer.encode(&answer.body, &[])
}

/// A 200 with `body`, for a batch whose every entry was failed (nothing to forward).
fn ok_response(request: &Message, body: Value) -> Message {
    Message {
        start: "HTTP/1.1 200 OK".into(),
        headers: vec![
            ("Content-Type".into(), content_type(request)),
            ("x-amzn-RequestId".into(), "fault-proxy".into()),
        ],
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}
