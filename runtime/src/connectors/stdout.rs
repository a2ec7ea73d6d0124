//! The `stdout` sink: one JSON document per line (the sink plugin's payload, or the record).

use std::io::Write;

use serde::Deserialize;

use crate::contract::{Destination, Env, Item, SinkConnector, SinkOptions, WriteFuture, Writer, Written};

/// `type = "stdout"`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stdout {}

impl SinkConnector for Stdout {
    fn open(&self, _env: &Env, _options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        Ok(Box::new(StdoutWriter))
    }

    fn destination(&self, _env: &Env) -> Destination {
        Destination { unit: "lines", place: "standard output".into(), look: None }
    }

    fn max_records(&self) -> usize {
        256
    }
}

/// Writes JSON lines to standard output.
#[derive(Default)]
pub struct StdoutWriter;

impl Writer for StdoutWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        let written = write_lines(items);
        Box::pin(async move { written })
    }
}

/// Writes and flushes the batch.
fn write_lines(items: &[Item]) -> Vec<Written> {
    let mut out = std::io::stdout().lock();
    let mut result = Written::Ok;
    for item in items {
        let ok = out.write_all(&item.payload()).and_then(|()| out.write_all(b"\n"));
        if let Err(e) = ok {
            // A closed pipe (`| head`) is the reader's choice, not a record's fault.
            tracing::warn!(error = %e, "stdout closed; leaving records unwritten.");
            result = Written::Unwritten;
            break;
        }
    }
    if out.flush().is_err() {
        result = Written::Unwritten;
    }
    vec![result; items.len()]
}
