//! The client side of the admin endpoint, for `ctrflow top` and `ctrflow tap`: a GET over
//! a plain TCP connection, the response read until the server closes it (every response
//! of the endpoint does).
//!
//! Not a general HTTP client: no TLS, no redirects, no chunked bodies — the endpoint sends
//! none of those.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

/// The address `top` and `tap` use when none is given (and the one the docs suggest for
/// `admin_addr`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9601";

/// Opens `GET path` on `addr`; returns the status and the body's reader.
pub fn open(addr: &str, path: &str) -> anyhow::Result<(u16, BufReader<TcpStream>)> {
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr}: not an address (HOST:PORT)"))?
        .next()
        .with_context(|| format!("{addr}: resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5)).with_context(|| {
        format!("{addr}: cannot connect (is a pipeline running with `[runtime] admin_addr = \"{addr}\"`?)")
    })?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).with_context(|| format!("{addr}: no response"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{addr}: not an HTTP response: {status_line:?}"))?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    Ok((status, reader))
}

/// `GET path` on `addr`: the status and the whole body.
pub fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, mut reader) = open(addr, path)?;
    reader.get_ref().set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut body = String::new();
    reader.read_to_string(&mut body).with_context(|| format!("{addr}: reading {path}"))?;
    Ok((status, body))
}

/// A query parameter's value, percent-encoded.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
