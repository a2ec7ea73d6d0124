//! A minimal implementation of the published AWS Lambda runtime API
//! (`/2018-06-01/runtime/…`), for `ctrflow lambda` to serve: `invocation/next` hands out the
//! events a test queues (with the request id, deadline and function ARN headers), and
//! `invocation/<id>/response` and `/error` (and `init/error`) record the answers. Plain
//! HTTP/1.1 with keep-alive, as Lambda's own endpoint speaks it; one thread per connection.
//!
//! It is the runtime API only: no event source mapping, no retries — the tests play that
//! part, sending events and reading the responses.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// What the function answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `POST …/response`.
    Response(Value),
    /// `POST …/error` (or `init/error`, under the id `init`).
    Error(Value),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value, u64)>,
    answers: HashMap<String, (Answer, Instant)>,
    /// When each `next` call arrived.
    nexts: Vec<Instant>,
    seq: u64,
}

/// A running runtime API on a loopback port.
pub struct RuntimeApi {
    /// `127.0.0.1:<port>`: the value of `AWS_LAMBDA_RUNTIME_API`.
    pub addr: String,
    state: Arc<(Mutex<Inner>, Condvar)>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

impl RuntimeApi {
    /// Starts listening.
    pub fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state: Arc<(Mutex<Inner>, Condvar)> = Arc::default();
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        RuntimeApi { addr, state }
    }

    /// Queues an invocation with `timeout` until its deadline; returns its request id.
    pub fn invoke(&self, event: Value, timeout: Duration) -> String {
        let (lock, cv) = &*self.state;
        let mut inner = lock.lock().unwrap();
        inner.seq += 1;
        let id = format!("req-{}", inner.seq);
        inner.queue.push_back((id.clone(), event, now_ms() + timeout.as_millis() as u64));
        cv.notify_all();
        id
    }

    /// Waits for the answer to `id`, and when it came.
    pub fn answer(&self, id: &str, wait: Duration) -> (Answer, Instant) {
        let (lock, cv) = &*self.state;
        let until = Instant::now() + wait;
        let mut inner = lock.lock().unwrap();
        loop {
            if let Some(a) = inner.answers.get(id) {
                return a.clone();
            }
            let left = until.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no answer to {id}"));
            inner = cv.wait_timeout(inner, left).unwrap().0;
        }
    }

    /// Waits until the function has called `next` `n` times (it is idle, waiting for work);
    /// returns when the n-th call came.
    pub fn wait_next(&self, n: usize, wait: Duration) -> Instant {
        let (lock, cv) = &*self.state;
        let until = Instant::now() + wait;
        let mut inner = lock.lock().unwrap();
        loop {
            if inner.nexts.len() >= n {
                return inner.nexts[n - 1];
            }
            let left = until.checked_duration_since(Instant::now()).expect("the function never asked for work");
            inner = cv.wait_timeout(inner, left).unwrap().0;
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request { method, path, body })
}

fn write_response(w: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn serve(conn: TcpStream, state: &(Mutex<Inner>, Condvar)) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let (lock, cv) = state;
    while let Some(req) = read_request(&mut r) {
        let path = req.path.trim_start_matches("/2018-06-01/runtime/");
        if req.method == "GET" && path == "invocation/next" {
            let (id, event, deadline) = {
                let mut inner = lock.lock().unwrap();
                inner.nexts.push(Instant::now());
                cv.notify_all();
                loop {
                    if let Some(next) = inner.queue.pop_front() {
                        break next;
                    }
                    inner = cv.wait(inner).unwrap();
                }
            };
            let headers = [
                ("Content-Type", "application/json".to_string()),
                ("Lambda-Runtime-Aws-Request-Id", id),
                ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:ctrflow".into(),
                ),
                ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0".into()),
            ];
            write_response(&mut w, "200 OK", &headers, &serde_json::to_vec(&event).unwrap())?;
            continue;
        }
        let parsed: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let recorded = match path.rsplit_once('/') {
            Some((prefix, "response")) => prefix.strip_prefix("invocation/").map(|id| (id, Answer::Response(parsed))),
            Some(("init", "error")) => Some(("init", Answer::Error(parsed))),
            Some((prefix, "error")) => prefix.strip_prefix("invocation/").map(|id| (id, Answer::Error(parsed))),
            _ => None,
        };
        match recorded {
            Some((id, a)) => {
                let mut inner = lock.lock().unwrap();
                inner.answers.insert(id.to_string(), (a, Instant::now()));
                cv.notify_all();
                drop(inner);
                write_response(
                    &mut w,
                    "202 Accepted",
                    &[("Content-Type", "application/json".into())],
                    b"{\"status\":\"OK\"}",
                )?;
            }
            None => write_response(&mut w, "404 Not Found", &[], b"{}")?,
        }
    }
    Ok(())
}
