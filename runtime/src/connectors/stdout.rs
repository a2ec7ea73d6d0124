//! The `stdout` sink: one JSON document per line (the sink plugin's payload, or the record).

use std::io::Write;

use crate::sink::{Item, Written};

/// Writes JSON lines to standard output.
#[derive(Default)]
pub struct StdoutWriter;

impl StdoutWriter {
    /// Writes and flushes the batch.
    pub fn write(&mut self, items: &[Item]) -> Vec<Written> {
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
}
