//! The `file` sink: JSON lines, one document per line, at paths that may be partitioned
//! by date (`lake/%Y/%m/%d/%H/ctr.jsonl`, like Firehose's `yyyy/MM/dd/HH/` prefixes), with
//! optional rotation by size or age.
//!
//! The date comes from each record's `date_field` (default `LastUpdateTimestamp`), so a
//! record lands in the partition of its event, not of its processing; a record without
//! it uses the time it is written. Files are opened for append, so a restart adds to them
//! (and at-least-once re-deliveries may appear twice, as with Firehose).
//!
//! A batch is acknowledged once it is written and — with `fsync = true`, the default —
//! synced to disk (a new file's directory too). A failed write is cut back to where the batch
//! started and retried whole, without limit (a full disk may be freed; the node shows as
//! degraded meanwhile), so a retry never leaves a half line or a line twice; a half line a
//! killed process left at the end of a file is cut off when the file is next opened.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctrflow_plugin_sdk::ctr::{format_timestamp, parse_timestamp};
use ctrflow_plugin_sdk::path::FieldPath;
use serde::Deserialize;
use serde_json::Value;

use crate::contract::{
    Destination, Env, Health, Item, LOCAL_MAX_RECORDS, SinkConnector, SinkOptions, WriteFuture, Writer, Written,
};
use crate::doc::Doc;
use crate::flow::Shutdown;
use crate::record::now_ms;
use crate::units::{parse_duration, parse_size};

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// The file, relative to the pipeline file. May hold date placeholders taken from the
    /// record's `date_field`: `%Y %m %d %H %M` (e.g. `lake/%Y/%m/%d/%H/ctr.jsonl`, the
    /// layout of Firehose's `yyyy/MM/dd/HH` prefixes).
    pub path: String,
    /// The record field the placeholders are taken from. Default `LastUpdateTimestamp`
    /// (a record without it uses the time it is written).
    pub date_field: Option<String>,
    /// Start a new file once this many bytes were written, e.g. `"128MiB"`.
    pub rotate_bytes: Option<String>,
    /// Start a new file after this long, e.g. `"1h"`.
    pub rotate_interval: Option<String>,
    /// Sync every batch to disk before acknowledging it. Default true; `false` is faster
    /// and still loses nothing to a crash of ctrflow, only to a power loss.
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

impl SinkConnector for FileSink {
    fn validate(&self, env: &Env) -> Vec<String> {
        FileWriter::new(self, env).err().into_iter().collect()
    }

    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        let mut w = FileWriter::new(self, env).map_err(anyhow::Error::msg)?;
        w.health = Some(options.health);
        w.shutdown = options.shutdown;
        Ok(Box::new(w))
    }

    fn destination(&self, env: &Env) -> Destination {
        Destination { unit: "lines", place: env.resolve(&self.path).display().to_string(), look: None }
    }

    fn max_records(&self) -> usize {
        LOCAL_MAX_RECORDS
    }
}

struct OpenFile {
    path: PathBuf,
    writer: BufWriter<std::fs::File>,
    /// The file's length: where the next line starts (everything before it is whole lines).
    len: u64,
    /// Bytes this run wrote to it (for rotation by size).
    bytes: u64,
    opened: Instant,
    index: u32,
}

/// Writes JSON lines to (partitioned, rotated) files.
pub struct FileWriter {
    /// The path template, and its expansion for the last record's time.
    partition: Partition,
    date_field: FieldPath,
    rotate_bytes: Option<u64>,
    rotate_interval: Option<Duration>,
    fsync: bool,
    open: HashMap<String, OpenFile>,
    health: Option<Health>,
    shutdown: Shutdown,
    /// One line being written, reused for every record (no allocation per line).
    line: Vec<u8>,
}

/// The most files held open at once; the least recently opened is closed past this.
const MAX_OPEN: usize = 64;

/// Each open file's write buffer. Lines of a few KB written through std's default 8 KiB
/// buffer reach the kernel as 8 KiB writes that end mid-block, and ext4 zeroes the rest of
/// each new block before the next write fills it (a quarter of the bytes again, 3% of the
/// throughput graph's samples). 256 KiB writes make that, and the calls, 32 times rarer; at
/// most [`MAX_OPEN`] of them (16 MiB) are held, one or two for a lake of hourly partitions.
const WRITE_BUFFER: usize = 256 * 1024;

impl FileWriter {
    /// A writer for `cfg`, with `path` resolved against the pipeline's directory.
    pub fn new(cfg: &FileSink, env: &Env) -> Result<Self, String> {
        let date_field = cfg.date_field.as_deref().unwrap_or("LastUpdateTimestamp");
        Ok(FileWriter {
            partition: Partition::new(env.resolve(&cfg.path).to_string_lossy().into_owned()),
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
            fsync: cfg.fsync,
            open: HashMap::new(),
            health: None,
            shutdown: Shutdown::default(),
            line: Vec::new(),
        })
    }

    fn rotates(&self) -> bool {
        self.rotate_bytes.is_some() || self.rotate_interval.is_some()
    }

    /// The file a record goes to, before rotation.
    fn target(&mut self, doc: &Doc) -> String {
        // `Doc::field`: a flattened record's date is read from its text, not its tree.
        let date = doc.field(&self.date_field);
        let ms = date.as_deref().and_then(Value::as_str).and_then(parse_timestamp).unwrap_or_else(now_ms);
        self.partition.path(ms).to_string()
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

    /// Opens a file for append. A last line without its newline — what a killed process
    /// leaves half-written, never acknowledged — is cut off, so the file holds whole lines.
    /// A new file's directory entry is synced too, so the file itself survives a power loss.
    fn open_file(&self, target: &str, mut index: u32) -> std::io::Result<OpenFile> {
        // A rotating sink never appends to a file an earlier run rotated away from.
        while self.rotates() && self.path_for(target, index).exists() {
            index += 1;
        }
        let path = self.path_for(target, index);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map(PathBuf::from);
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        let existed = path.exists();
        let file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let len = whole_lines(&file)?;
        if self.fsync && !existed {
            sync_dir(dir.as_deref())?;
        }
        Ok(OpenFile {
            path,
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
            len,
            bytes: 0,
            opened: Instant::now(),
            index,
        })
    }

    fn write_once(&mut self, items: &[Item]) -> std::io::Result<()> {
        let mut touched: Vec<String> = Vec::new();
        let mut rotated: Vec<(PathBuf, u64)> = Vec::new();
        let result = self.append(items, &mut touched, &mut rotated);
        let result = result.and_then(|()| self.commit(&touched));
        if result.is_err() {
            // Cut every file this batch touched back to where the batch started, so the retry
            // neither glues a half line to the next nor writes a line twice.
            for t in &touched {
                if let Some(f) = self.open.remove(t) {
                    let (file, _unwritten) = f.writer.into_parts();
                    let _ = file.set_len(f.len);
                }
            }
            // Files this batch rotated away from mid-way: cut back to where the batch started.
            for (path, len) in rotated {
                if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = file.set_len(len);
                }
            }
        }
        result
    }

    fn append(
        &mut self,
        items: &[Item],
        touched: &mut Vec<String>,
        rotated: &mut Vec<(PathBuf, u64)>,
    ) -> std::io::Result<()> {
        for item in items {
            let target = self.target(&item.record.doc);
            let due = self.open.get(&target).is_some_and(|f| {
                self.rotate_bytes.is_some_and(|b| f.bytes >= b)
                    || self.rotate_interval.is_some_and(|d| f.opened.elapsed() >= d)
            });
            if due && let Some(old) = self.open.remove(&target) {
                let index = old.index + 1;
                if touched.contains(&target) {
                    rotated.push((old.path.clone(), old.len));
                }
                self.close_file(old)?;
                let next = self.open_file(&target, index)?;
                self.open.insert(target.clone(), next);
            }
            if !self.open.contains_key(&target) {
                if self.open.len() >= MAX_OPEN {
                    self.close_oldest(touched)?;
                }
                let f = self.open_file(&target, 0)?;
                self.open.insert(target.clone(), f);
            }
            if !touched.contains(&target) {
                touched.push(target.clone());
            }
            let f = self.open.get_mut(&target).expect("opened above");
            self.line.clear();
            item.payload_into(&mut self.line);
            self.line.push(b'\n');
            f.writer.write_all(&self.line)?;
            f.bytes += self.line.len() as u64;
        }
        Ok(())
    }

    /// Flushes (and with `fsync`, syncs) what the batch wrote; its lines are whole from here.
    fn commit(&mut self, touched: &[String]) -> std::io::Result<()> {
        for t in touched {
            if let Some(f) = self.open.get_mut(t) {
                f.writer.flush()?;
                if self.fsync {
                    f.writer.get_ref().sync_data()?;
                }
            }
        }
        for t in touched {
            if let Some(f) = self.open.get_mut(t) {
                f.len = f.writer.get_ref().metadata()?.len();
            }
        }
        Ok(())
    }

    fn close_file(&self, mut f: OpenFile) -> std::io::Result<()> {
        f.writer.flush()?;
        if self.fsync {
            f.writer.get_ref().sync_data()?;
        }
        tracing::debug!(file = %f.path.display(), "Closed.");
        Ok(())
    }

    /// Closes the least recently opened file this batch has not touched.
    fn close_oldest(&mut self, touched: &[String]) -> std::io::Result<()> {
        let oldest = self.open.iter().filter(|(k, _)| !touched.contains(k)).min_by_key(|(_, f)| f.opened);
        if let Some(key) = oldest.map(|(k, _)| k.clone())
            && let Some(f) = self.open.remove(&key)
        {
            self.close_file(f)?;
        }
        Ok(())
    }

    /// Writes the batch, retrying I/O errors (a full disk may be freed) without limit.
    async fn write_batch(&mut self, items: &[Item]) -> Vec<Written> {
        let (health, shutdown) = (self.health.clone(), self.shutdown.clone());
        let Some(health) = health else {
            return match self.write_once(items) {
                Ok(()) => vec![Written::Ok; items.len()],
                Err(_) => vec![Written::Unwritten; items.len()],
            };
        };
        match health.retry(&shutdown, || self.write_once(items)).await {
            Some(()) => vec![Written::Ok; items.len()],
            None => vec![Written::Unwritten; items.len()],
        }
    }
}

/// The length of a file's whole lines, cutting off a last line without its newline.
fn whole_lines(file: &std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut f = file;
    let mut pos = len;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let n = (buf.len() as u64).min(pos);
        f.seek(SeekFrom::Start(pos - n))?;
        f.read_exact(&mut buf[..n as usize])?;
        if let Some(i) = buf[..n as usize].iter().rposition(|b| *b == b'\n') {
            let keep = pos - n + i as u64 + 1;
            if keep < len {
                tracing::warn!(bytes = len - keep, "Cutting off a half-written last line (never acknowledged).");
                file.set_len(keep)?;
            }
            return Ok(keep);
        }
        pos -= n;
    }
    tracing::warn!(bytes = len, "Cutting off a half-written file (never acknowledged).");
    file.set_len(0)?;
    Ok(0)
}

/// Syncs a directory, so an entry created in it survives a power loss.
fn sync_dir(dir: Option<&std::path::Path>) -> std::io::Result<()> {
    std::fs::File::open(dir.unwrap_or(std::path::Path::new(".")))?.sync_all()
}

impl Writer for FileWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_batch(items))
    }

    /// Flushes and syncs every open file.
    fn close(&mut self) -> anyhow::Result<()> {
        for (_, f) in std::mem::take(&mut self.open) {
            self.close_file(f)?;
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
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let field = match rest.as_bytes().get(at + 1) {
            Some(b'Y') => Some(&ts[0..4]),
            Some(b'm') => Some(&ts[5..7]),
            Some(b'd') => Some(&ts[8..10]),
            Some(b'H') => Some(&ts[11..13]),
            Some(b'M') => Some(&ts[14..16]),
            Some(b'S') => Some(&ts[17..19]),
            _ => None,
        };
        match field {
            Some(field) => {
                out.push_str(field);
                rest = &rest[at + 2..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A template expanded once for a span of record times: the span of its finest placeholder
/// (a second for `%S`, a minute for `%M`, an hour for `%H`, a day otherwise; UTC, so each
/// span starts at a multiple of its length since the epoch). Records arrive in a few
/// partitions at a time, and expanding the template for every record (formatting the date,
/// six passes over the template) was about 1.7% of the throughput graph's instructions
/// (callgrind; docs/performance.md, seventeenth round).
struct Partition {
    template: String,
    /// How long one expansion holds, in ms: the span of the finest placeholder.
    span: i64,
    /// Times in `[from_ms, until_ms)` expand to `path` (empty before the first).
    from_ms: i64,
    until_ms: i64,
    path: String,
}

impl Partition {
    fn new(template: String) -> Partition {
        let span = if template.contains("%S") {
            1_000
        } else if template.contains("%M") {
            60_000
        } else if template.contains("%H") {
            3_600_000
        } else {
            86_400_000
        };
        Partition { template, span, from_ms: 0, until_ms: 0, path: String::new() }
    }

    /// The template expanded for `ms`.
    fn path(&mut self, ms: i64) -> &str {
        if !(self.from_ms..self.until_ms).contains(&ms) {
            self.from_ms = ms - ms.rem_euclid(self.span);
            self.until_ms = self.from_ms.saturating_add(self.span);
            self.path = expand(&self.template, ms);
        }
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_placeholders_follow_the_record_time() {
        let ms = parse_timestamp("2022-01-05T17:48:35Z").unwrap();
        assert_eq!(expand("lake/%Y/%m/%d/%H/ctr.jsonl", ms), "lake/2022/01/05/17/ctr.jsonl");
        assert_eq!(expand("a%%Y-%x/%S%", ms), "a%2022-%x/35%", "what is not a placeholder stays");
    }

    #[test]
    fn a_partition_is_expanded_again_only_when_a_time_leaves_its_span() {
        let at = |t: &str| parse_timestamp(t).unwrap();
        for template in ["lake/%Y/%m/%d/%H/ctr.jsonl", "l/%Y-%m-%d.jsonl", "l/%H%M.jsonl", "l/%M%S", "plain.jsonl"] {
            let mut partition = Partition::new(template.to_string());
            for t in [
                "2022-01-05T17:48:35Z",
                "2022-01-05T17:48:35.999Z",
                "2022-01-05T17:48:36Z",
                "2022-01-05T17:59:59Z",
                "2022-01-05T18:00:00Z",
                "2022-01-05T17:00:00Z",
                "2022-01-05T23:59:59Z",
                "2022-01-06T00:00:00Z",
                "2021-12-31T23:59:59Z",
                "2022-01-01T00:00:00Z",
                "1969-12-31T23:59:59Z",
                "1970-01-01T00:00:00Z",
            ] {
                assert_eq!(partition.path(at(t)), expand(template, at(t)), "{template} at {t}");
            }
        }
    }
}
