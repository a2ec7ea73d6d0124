//! The `stdin` source: JSON documents on standard input, one per line.
//!
//! Lines are read on their own thread so a quiet pipe does not hold a partial batch back:
//! whatever arrived is sent on after 100 ms without input. There is no checkpoint (a pipe
//! cannot be re-read).

use std::io::BufRead;
use std::time::Duration;

use bytes::Bytes;

use crate::source::SourceContext;

/// Reads standard input to its end (or a stop).
pub fn run(mut ctx: SourceContext) -> anyhow::Result<()> {
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
        if ctx.shutdown.is_requested() {
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
                    flush(&mut ctx)?;
                }
            }
            Ok(Err(e)) => anyhow::bail!("sources.{}: reading stdin: {e}", ctx.id),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => flush(&mut ctx)?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    flush(&mut ctx)
}

fn flush(ctx: &mut SourceContext) -> anyhow::Result<()> {
    ctx.flush_blocking().map_err(|_| anyhow::anyhow!("sources.{}: the pipeline stopped reading", ctx.id))?;
    Ok(())
}
