//! The `stdin` source: JSON documents on standard input, one per line.
//!
//! Lines are read on their own thread so a quiet pipe does not hold a partial batch back:
//! whatever arrived is sent on after 100 ms without input. There is no checkpoint (a pipe
//! cannot be re-read).

use std::io::BufRead;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::contract::{Env, Source, SourceConnector, SourceContext};

/// `type = "stdin"`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stdin {}

impl SourceConnector for Stdin {
    fn open(&self, _env: &Env) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(Stdin {}))
    }
}

impl Source for Stdin {
    fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        read_stdin(ctx)
    }
}

/// Reads standard input to its end (or a stop).
fn read_stdin(mut ctx: SourceContext) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<String>>(1024);
    std::thread::Builder::new().name("ctrflow-stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    })?;
    let mut n: u64 = 0;
    loop {
        if ctx.shutdown().is_requested() {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(line)) => {
                n += 1;
                if line.trim().is_empty() {
                    continue;
                }
                ctx.ingest(Bytes::from(line), format!("line {n}"), None);
                if ctx.batch_full() {
                    ctx.flush_or_stop()?;
                }
            }
            Ok(Err(e)) => anyhow::bail!("reading stdin: {e}"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                ctx.flush_or_stop()?;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    ctx.flush_or_stop()?;
    Ok(())
}
