//! `/tap` and `ctrflow tap`: the records leaving a node of a running process, as JSON lines.
//!
//! The server side subscribes to the node's [`crate::tap`] points and writes what its
//! buffer holds: one line `{"output": …, "record": {…}}` per record (`output` only for a
//! node's named outputs), then one closing line `{"end": {"sent": N, "dropped": M,
//! "reason": …}}` once the limit is reached or the pipeline finishes. `dropped` counts the
//! records this tap missed because its buffer was full: the pipeline never waits for a tap.
//!
//! The client prints each record on stdout, exactly as it left the node, and the closing
//! summary on stderr. The records are customer data (after the node named: tap after a
//! `redact` node to see them redacted).

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::State;
use super::client;
use super::server::{Request, reply, stream_head};
use crate::tap::{BUFFER, Taken};

#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    record: &'a Value,
}

/// Serves one `/tap` request until its limit, the pipeline's end, or the client leaves.
pub(super) fn stream(mut stream: TcpStream, state: &State, req: &Request) -> std::io::Result<()> {
    let Some(name) = req.param("node") else {
        return reply(stream, 400, "text/plain", "/tap needs ?node=NAME\n");
    };
    let limit = match req.param("limit").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return reply(stream, 400, "text/plain", "limit: not a number\n"),
    };
    let (id, output) = match state.resolve(name, req.param("output")) {
        Ok(found) => found,
        Err(msg) => return reply(stream, 404, "text/plain", &format!("{msg}\n")),
    };
    let Some(sub) = state.taps.subscribe(&id, output.as_deref(), BUFFER) else {
        let outputs = state.taps.outputs_of(&id).join(", ");
        let msg = format!("{name} has no output {:?} to tap (its outputs: {outputs})\n", output.unwrap_or_default());
        return reply(stream, 404, "text/plain", &msg);
    };
    stream_head(&mut stream, "application/x-ndjson")?;
    // A client that stops reading is left behind (its buffer fills and drops), and once
    // the run ends, a stuck write gives up rather than holding the thread.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut sent = 0u64;
    let reason = loop {
        let want = limit.map_or(256, |l| (l - sent).min(256) as usize);
        if want == 0 {
            break "limit";
        }
        match sub.take(want, Duration::from_millis(250)) {
            Taken::Docs(docs) => {
                let mut out = Vec::with_capacity(docs.len() * 512);
                for d in &docs {
                    serde_json::to_writer(&mut out, &Line { output: d.output.as_deref(), record: &d.doc })?;
                    out.push(b'\n');
                }
                stream.write_all(&out)?;
                sent += docs.len() as u64;
            }
            Taken::Idle if client_left(&stream) => return Ok(()),
            Taken::Idle => {}
            Taken::Ended => break "the pipeline finished",
        }
    };
    let end = serde_json::json!({ "end": { "sent": sent, "dropped": sub.dropped(), "reason": reason } });
    writeln!(stream, "{end}")?;
    stream.flush()
}

/// Whether the client has closed its side (checked only while idle: a write would notice
/// otherwise).
fn client_left(stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let left = matches!(stream.peek(&mut b), Ok(0));
    let _ = stream.set_nonblocking(false);
    left
}

/// What `ctrflow tap` ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSummary {
    /// Records printed.
    pub sent: u64,
    /// Records the tap missed (its buffer was full); the pipeline did not wait for them.
    pub dropped: u64,
}

/// `ctrflow tap`: prints the records leaving `node` to `out`, one JSON document per line;
/// the summary goes to stderr.
pub fn run(
    addr: &str,
    node: &str,
    output: Option<&str>,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<TapSummary> {
    let mut path = format!("/tap?node={}", client::encode(node));
    if let Some(o) = output {
        path.push_str(&format!("&output={}", client::encode(o)));
    }
    if let Some(l) = limit {
        path.push_str(&format!("&limit={l}"));
    }
    let (status, mut reader) = client::open(addr, &path)?;
    if status != 200 {
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut body);
        anyhow::bail!("{addr}: {}", body.trim());
    }
    let mut printed = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            eprintln!("tap: {addr} closed the stream after {printed} records (the process ended)");
            return Ok(TapSummary { sent: printed, dropped: 0 });
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{addr}: a tap line is not JSON: {e}"))?;
        if let Some(record) = v.get("record") {
            match writeln!(out, "{record}") {
                Ok(()) => printed += 1,
                // `ctrflow tap … | head`: the reader has what it wanted.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(TapSummary { sent: printed, dropped: 0 });
                }
                Err(e) => return Err(e.into()),
            }
        } else if let Some(end) = v.get("end") {
            let _ = out.flush();
            let dropped = end["dropped"].as_u64().unwrap_or(0);
            let reason = end["reason"].as_str().unwrap_or("ended");
            let records = if printed == 1 { "record" } else { "records" };
            eprintln!(
                "tap: {printed} {records} from {node} ({reason}); {dropped} passed while this tap's buffer was full (the pipeline did not wait for them)"
            );
            return Ok(TapSummary { sent: printed, dropped });
        }
    }
}
