//! The `file` source.
//!
//! Files matching `path` (a file or a glob) are read in name order — the order of
//! Firehose's time-partitioned names — each whole into memory (decompressed when it ends
//! in `.gz`), and split into documents: a JSON array's elements, or JSON documents one
//! after another separated by any whitespace (JSON lines, pretty-printed documents, a
//! missing final newline all work). A stretch that does not parse is dead-lettered up to
//! the next line break, and reading goes on after it.
//!
//! The checkpoint is the file and the byte offset (the element index, for an array) just
//! past the last document whose batch was fully acknowledged; a restart resumes there, so
//! nothing acknowledged is read twice and nothing unacknowledged is skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ack::Checkpointer;
use crate::config::FileSourceConfig;
use crate::source::{CheckpointFile, SourceContext};

/// Where a file source is: the file, and the offset past the last handled document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// The file.
    pub file: String,
    /// Byte offset (JSON lines / documents) or element index (a JSON array).
    pub offset: u64,
}

/// One document found in a file.
#[derive(Debug)]
pub enum Piece {
    /// A document, with its text.
    Doc { doc: Value, raw: Bytes, end: u64 },
    /// A stretch that does not parse, up to the next line break.
    Bad { raw: Bytes, error: String, end: u64 },
}

/// Splits file content into documents, starting at `offset`.
pub fn split_documents(buf: &Bytes, offset: u64) -> Vec<Piece> {
    let first = buf.iter().position(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|i| buf[i] == b'[') {
        return split_array(buf, offset);
    }
    let mut pieces = Vec::new();
    let mut pos = (offset as usize).min(buf.len());
    loop {
        while pos < buf.len() && buf[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= buf.len() {
            break;
        }
        let mut stream = serde_json::Deserializer::from_slice(&buf[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(doc)) => {
                let end = pos + stream.byte_offset();
                pieces.push(Piece::Doc { doc, raw: buf.slice(pos..end), end: end as u64 });
                pos = end;
            }
            Some(Err(e)) => {
                let end = buf[pos..].iter().position(|b| *b == b'\n').map_or(buf.len(), |i| pos + i + 1);
                let raw = buf.slice(pos..end);
                pieces.push(Piece::Bad { raw, error: e.to_string(), end: end as u64 });
                pos = end;
            }
            None => break,
        }
    }
    pieces
}

fn split_array(buf: &Bytes, offset: u64) -> Vec<Piece> {
    match serde_json::from_slice::<Vec<Value>>(buf) {
        Ok(docs) => docs
            .into_iter()
            .enumerate()
            .skip(offset as usize)
            .map(|(i, doc)| {
                let raw = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
                Piece::Doc { doc, raw, end: i as u64 + 1 }
            })
            .collect(),
        Err(e) if offset == 0 => {
            vec![Piece::Bad { raw: buf.clone(), error: format!("not a JSON array of documents: {e}"), end: 1 }]
        }
        Err(_) => Vec::new(),
    }
}

/// The files `path` names, in name order.
pub fn files(pattern: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = pattern.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        if !pattern.exists() {
            anyhow::bail!("no file {}", pattern.display());
        }
        return Ok(vec![pattern.to_path_buf()]);
    }
    let mut found: Vec<PathBuf> = glob::glob(&text)
        .map_err(|e| anyhow::anyhow!("path {text:?} is not a valid glob: {e}"))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

fn read(path: &Path) -> anyhow::Result<Bytes> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("cannot decompress {}: {e}", path.display()))?;
        return Ok(Bytes::from(out));
    }
    Ok(Bytes::from(bytes))
}

/// Reads every file, then waits for the last batches to be acknowledged and checkpoints.
pub fn run(cfg: &FileSourceConfig, base_dir: &Path, mut ctx: SourceContext) -> anyhow::Result<()> {
    let id = ctx.id.clone();
    let pattern = crate::config::clean(&base_dir.join(&cfg.path));
    let paths = files(&pattern).map_err(|e| anyhow::anyhow!("sources.{id}: {e}"))?;
    let store = CheckpointFile::new(&ctx.state_dir, &id);
    let resume: Option<FilePosition> = if cfg.checkpoint { store.load()? } else { None };
    if let Some(p) = &resume {
        tracing::info!(source = %id, file = %p.file, offset = p.offset, "Resuming from checkpoint.");
    }
    let mut checkpoints: Checkpointer<FilePosition> = Checkpointer::default();

    'files: for path in paths {
        let name = path.display().to_string();
        let start = match &resume {
            Some(p) if name < p.file => continue,
            Some(p) if name == p.file => p.offset,
            _ => 0,
        };
        let buf = read(&path)?;
        let mut last_end = start;
        for piece in split_documents(&buf, start) {
            if ctx.shutdown.is_requested() {
                break 'files;
            }
            match piece {
                Piece::Doc { doc, raw, end } => {
                    ctx.ingest_parsed(doc, raw, format!("{name}:{last_end}"), None);
                    last_end = end;
                }
                Piece::Bad { raw, error, end } => {
                    ctx.refuse_bytes(raw, format!("{name}:{last_end}"), error);
                    last_end = end;
                }
            }
            if ctx.batch_full() {
                flush(&mut ctx, &mut checkpoints, FilePosition { file: name.clone(), offset: last_end })?;
                save(&mut ctx, &mut checkpoints, &store, cfg.checkpoint, false)?;
            }
        }
        flush(&mut ctx, &mut checkpoints, FilePosition { file: name.clone(), offset: last_end })?;
    }
    // Let go of the output so the pipeline can drain, then wait for the acknowledgements.
    drop(std::mem::take(&mut ctx.output));
    save(&mut ctx, &mut checkpoints, &store, cfg.checkpoint, true)
}

fn flush(
    ctx: &mut SourceContext,
    checkpoints: &mut Checkpointer<FilePosition>,
    pos: FilePosition,
) -> anyhow::Result<()> {
    let seq = ctx.next_seq();
    match ctx.flush_blocking() {
        Ok(Some(_)) => checkpoints.register(seq, pos),
        Ok(None) => {}
        Err(_) => anyhow::bail!("sources.{}: the pipeline stopped reading", ctx.id),
    }
    Ok(())
}

/// Takes the completions that arrived (all of them, with `wait`) and saves the position.
fn save(
    ctx: &mut SourceContext,
    checkpoints: &mut Checkpointer<FilePosition>,
    store: &CheckpointFile,
    enabled: bool,
    wait: bool,
) -> anyhow::Result<()> {
    loop {
        while let Ok(c) = ctx.completions.try_recv() {
            checkpoints.complete(c);
        }
        if let Some(pos) = checkpoints.advance()
            && enabled
        {
            store.save(&pos)?;
        }
        if !wait || checkpoints.in_flight() == 0 || checkpoints.is_stalled() {
            break;
        }
        match ctx.completions.blocking_recv() {
            Some(c) => checkpoints.complete(c),
            None => break,
        }
    }
    if checkpoints.is_stalled() {
        tracing::warn!(source = %ctx.id, "A batch was not fully handled; the checkpoint stays before it.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str, offset: u64) -> Vec<String> {
        split_documents(&Bytes::from(text.to_string()), offset)
            .into_iter()
            .map(|p| match p {
                Piece::Doc { raw, .. } => String::from_utf8(raw.to_vec()).unwrap(),
                Piece::Bad { raw, .. } => format!("BAD:{}", String::from_utf8_lossy(&raw).trim()),
            })
            .collect()
    }

    #[test]
    fn json_lines_without_a_final_newline() {
        assert_eq!(docs("{\"a\":1}\n{\"a\":2}", 0), ["{\"a\":1}", "{\"a\":2}"]);
    }

    #[test]
    fn concatenated_pretty_documents() {
        assert_eq!(docs("{\n \"a\": 1\n}\n\n  {\"a\":2}{\"a\":3}", 0).len(), 3);
    }

    #[test]
    fn a_json_array_and_resuming_by_index() {
        assert_eq!(docs("[{\"a\":1},{\"a\":2},{\"a\":3}]", 1), ["{\"a\":2}", "{\"a\":3}"]);
    }

    #[test]
    fn a_bad_line_is_set_aside_and_reading_goes_on() {
        assert_eq!(docs("{\"a\":1}\n{\"a\":\n{\"a\":3}\n", 0), ["{\"a\":1}", "BAD:{\"a\":", "{\"a\":3}"]);
    }

    #[test]
    fn resuming_at_a_byte_offset() {
        let text = "{\"a\":1}\n{\"a\":2}\n";
        assert_eq!(docs(text, 8), ["{\"a\":2}"]);
    }
}
