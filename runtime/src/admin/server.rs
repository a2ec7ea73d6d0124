//! The admin endpoint's HTTP side: a small HTTP/1.1 responder, one thread per connection
//! (a tap is a long-lived stream), GET only, every response closing its connection.
//!
//! Not a web framework on purpose: five read-only paths do not justify one. It does not
//! authenticate anyone; see the module above for where it may listen.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::State;

/// Connections served at once; more are answered 503 (a stuck tap client must not leave
/// the process without threads).
const MAX_CONNECTIONS: usize = 32;

/// Binds `addr` and serves on a thread until the process exits. Returns the bound address.
pub fn serve(addr: &str, state: Arc<State>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("ctrflow-admin".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::AcqRel);
                let _ = reply(stream, 503, "text/plain", "too many admin connections\n");
                continue;
            }
            let state = state.clone();
            let open_here = open.clone();
            let spawned = std::thread::Builder::new().name("ctrflow-admin-conn".into()).spawn(move || {
                let _ = respond(stream, &state);
                open_here.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                // The closure (and its decrement) was dropped with the failed spawn.
                open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })?;
    Ok(bound)
}

/// A parsed request line: the path and its query parameters.
#[derive(Debug, PartialEq)]
pub(super) struct Request {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Request {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `GET /path?a=b HTTP/1.1`; `None` for anything else.
pub(super) fn parse_request_line(line: &str) -> Option<Request> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "GET" {
        return None;
    }
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request { path: path.to_string(), query })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    crate::timing::prometheus::read_head(stream, Duration::from_secs(5))
}

fn respond(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let head = read_head(&mut stream)?;
    let Some(req) = parse_request_line(head.lines().next().unwrap_or("")) else {
        return reply(stream, 405, "text/plain", "only GET is served\n");
    };
    match req.path.as_str() {
        "/metrics" => {
            let body = crate::timing::prometheus::render(&state.timing) + &state.extra_metrics();
            reply(stream, 200, "text/plain; version=0.0.4", &body)
        }
        "/health" => {
            let degraded: Vec<String> = state.stats().nodes.into_iter().filter(|n| n.degraded).map(|n| n.key).collect();
            let body = serde_json::json!({ "status": "alive", "degraded": degraded });
            reply(stream, 200, "application/json", &format!("{body}\n"))
        }
        "/ready" => match state.readiness() {
            Ok(()) => reply(stream, 200, "application/json", "{\"ready\":true}\n"),
            Err(reason) => {
                let body = serde_json::json!({ "ready": false, "reason": reason });
                reply(stream, 503, "application/json", &format!("{body}\n"))
            }
        },
        "/stats" => {
            let body = serde_json::to_string(&state.stats()).map_err(std::io::Error::other)?;
            reply(stream, 200, "application/json", &(body + "\n"))
        }
        "/tap" => super::tap::stream(stream, state, &req),
        _ => reply(stream, 404, "text/plain", "not found: /metrics, /health, /ready, /stats, /tap?node=NAME\n"),
    }
}

/// A whole response, then the connection closes.
pub(super) fn reply(mut stream: TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    stream.flush()
}

/// The head of a response whose body runs until the connection closes (a tap stream).
pub(super) fn stream_head(stream: &mut TcpStream, content_type: &str) -> std::io::Result<()> {
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n")?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_gives_its_path_and_decoded_query() {
        let r = parse_request_line("GET /tap?node=route&output=VOICE%20X&limit=5 HTTP/1.1").unwrap();
        assert_eq!(r.path, "/tap");
        assert_eq!(r.param("node"), Some("route"));
        assert_eq!(r.param("output"), Some("VOICE X"));
        assert_eq!(r.param("limit"), Some("5"));
        assert_eq!(r.param("other"), None);
        assert!(parse_request_line("POST /stats HTTP/1.1").is_none());
        assert_eq!(parse_request_line("GET /ready HTTP/1.1").unwrap().query, vec![]);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
