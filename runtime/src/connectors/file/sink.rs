//! The `file` sink: JSON lines, one document per line, at paths that may be partitioned
//! by date (`lake/%Y/%m/%d/%H/ctr.jsonl`, like Firehose's `yyyy/MM/dd/HH/` prefixes), with
//! optional rotation by size or age.
//!
//! The date comes from each record's `date_field` (default `LastUpdateTimestamp`), so a
//! record lands in the partition of its event, not of its processing; a record without
//! it uses the time it is written. Files are opened for append, so a restart adds to them
//! (and at-least-once re-deliveries may appear twice, as with Firehose). A write is
//! acknowledged after it is flushed to the operating system.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctrflow_plugin_sdk::ctr::{format_timestamp, parse_timestamp};
use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::Value;

use crate::config::FileSinkConfig;
use crate::units::{parse_duration, parse_size};
use crate::record::now_ms;
use crate::sink::{Backoff, Item, Written};

struct OpenFile {
    writer: BufWriter<std::fs::File>,
    bytes: u64,
    opened: Instant,
    index: u32,
}

/// Writes JSON lines to (partitioned, rotated) files.
pub struct FileWriter {
    template: String,
    date_field: FieldPath,
    rotate_bytes: Option<u64>,
    rotate_interval: Option<Duration>,
    open: HashMap<String, OpenFile>,
}

/// The most files held open at once; the least recently opened is closed past this.
const MAX_OPEN: usize = 64;

impl FileWriter {
    /// A writer for `cfg`, with `path` resolved against `base_dir`.
    pub fn new(cfg: &FileSinkConfig, base_dir: &std::path::Path) -> Result<Self, String> {
        let date_field = cfg.date_field.as_deref().unwrap_or("LastUpdateTimestamp");
        Ok(FileWriter {
            template: crate::config::clean(&base_dir.join(&cfg.path)).to_string_lossy().into_owned(),
            date_field: FieldPath::parse(date_field).map_err(|e| format!("date_field: {e}"))?,
            rotate_bytes: cfg
                .rotate_bytes
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(|e| format!("rotate_bytes: {e}"))?
                .map(|b| b as u64),
            rotate_interval: cfg
                .rotate_interval
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| format!("rotate_interval: {e}"))?,
            open: HashMap::new(),
        })
    }

    fn rotates(&self) -> bool {
        self.rotate_bytes.is_some() || self.rotate_interval.is_some()
    }

    /// The file a record goes to, before rotation.
    fn target(&self, doc: &Value) -> String {
        let ms = self.date_field.get(doc).and_then(Value::as_str).and_then(parse_timestamp).unwrap_or_else(now_ms);
        expand(&self.template, ms)
    }

    fn path_for(&self, target: &str, index: u32) -> PathBuf {
        if !self.rotates() {
            return PathBuf::from(target);
        }
        let p = PathBuf::from(target);
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match p.extension() {
            Some(ext) => format!("{stem}-{index:05}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{index:05}"),
        };
        p.with_file_name(name)
    }

    fn open_file(&self, target: &str, mut index: u32) -> std::io::Result<OpenFile> {
        // A rotating sink never appends to a file an earlier run rotated away from.
        while self.rotates() && self.path_for(target, index).exists() {
            index += 1;
        }
        let path = self.path_for(target, index);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(OpenFile { writer: BufWriter::new(file), bytes: 0, opened: Instant::now(), index })
    }

    fn write_once(&mut self, items: &[Item]) -> std::io::Result<()> {
        let mut touched = Vec::new();
        for item in items {
            let target = self.target(&item.record.doc);
            let due = self.open.get(&target).is_some_and(|f| {
                self.rotate_bytes.is_some_and(|b| f.bytes >= b)
                    || self.rotate_interval.is_some_and(|d| f.opened.elapsed() >= d)
            });
            if due && let Some(mut old) = self.open.remove(&target) {
                old.writer.flush()?;
                let next = self.open_file(&target, old.index + 1)?;
                self.open.insert(target.clone(), next);
            }
            if !self.open.contains_key(&target) {
                if self.open.len() >= MAX_OPEN {
                    self.close_oldest()?;
                }
                let f = self.open_file(&target, 0)?;
                self.open.insert(target.clone(), f);
            }
            let f = self.open.get_mut(&target).expect("opened above");
            let payload = item.payload();
            f.writer.write_all(&payload)?;
            f.writer.write_all(b"\n")?;
            f.bytes += payload.len() as u64 + 1;
            if !touched.contains(&target) {
                touched.push(target);
            }
        }
        for t in touched {
            if let Some(f) = self.open.get_mut(&t) {
                f.writer.flush()?;
            }
        }
        Ok(())
    }

    fn close_oldest(&mut self) -> std::io::Result<()> {
        if let Some(key) = self.open.iter().min_by_key(|(_, f)| f.opened).map(|(k, _)| k.clone())
            && let Some(mut f) = self.open.remove(&key)
        {
            f.writer.flush()?;
        }
        Ok(())
    }

    /// Writes the batch, retrying I/O errors (a full disk may be freed) with backoff.
    pub async fn write(&mut self, items: &[Item]) -> Vec<Written> {
        let mut backoff = Backoff::default();
        loop {
            match self.write_once(items) {
                Ok(()) => return vec![Written::Ok; items.len()],
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry = backoff.attempts(), "File sink write failed; retrying.");
                    if backoff.attempts() > 8 {
                        // Give the batch back unacknowledged rather than loop forever.
                        tracing::error!(error = %e, "File sink keeps failing; leaving the batch unwritten.");
                        return vec![Written::Unwritten; items.len()];
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Flushes every open file.
    pub fn close(&mut self) -> anyhow::Result<()> {
        for (_, mut f) in self.open.drain() {
            f.writer.flush()?;
        }
        Ok(())
    }
}

/// Replaces `%Y %m %d %H %M %S` with the UTC date of `ms`.
pub fn expand(template: &str, ms: i64) -> String {
    if !template.contains('%') {
        return template.to_string();
    }
    let ts = format_timestamp(ms); // yyyy-mm-ddThh:mm:ssZ
    template
        .replace("%Y", &ts[0..4])
        .replace("%m", &ts[5..7])
        .replace("%d", &ts[8..10])
        .replace("%H", &ts[11..13])
        .replace("%M", &ts[14..16])
        .replace("%S", &ts[17..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_placeholders_follow_the_record_time() {
        let ms = parse_timestamp("2022-01-05T17:48:35Z").unwrap();
        assert_eq!(expand("lake/%Y/%m/%d/%H/ctr.jsonl", ms), "lake/2022/01/05/17/ctr.jsonl");
    }
}
