//! The `file` source.
//!
//! Files matching `path` (a file or a glob) are read in name order — the order of
//! Firehose's time-partitioned names — each as a stream: a bounded chunk at a time,
//! decompressed as it is read when the name ends in `.gz`, split into documents by
//! [`super::framing`]. Memory does not grow with the size of a file.
//!
//! The checkpoint remembers every file read, by identity rather than by name: the device
//! and inode, and a fingerprint of its first bytes (as Vector's file source does), with the
//! offset just past the last document whose batch was fully acknowledged. So a pipeline run
//! once by a relative path and once by an absolute one resumes where it was, a late file
//! whose name sorts earlier is read (not skipped), a renamed file is not read twice, and a
//! new file that reuses an inode is read from its start.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::framing::{Framer, Piece};
use crate::ack::Checkpointer;
use crate::contract::{CheckpointFile, Env, SAVE_EVERY, Source, SourceConnector, SourceContext};
use crate::dead_letter::DeadLetterKind;

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// A file or a glob (`data/*.jsonl.gz`), relative to the pipeline file. Files ending
    /// in `.gz` are decompressed. Each holds JSON lines, a JSON array, or JSON documents
    /// one after another.
    pub path: String,
    /// Resume from the last checkpoint after a restart. Default true.
    #[serde(default = "yes")]
    pub checkpoint: bool,
}

fn yes() -> bool {
    true
}

impl SourceConnector for FileSource {
    fn open(&self, env: &Env) -> anyhow::Result<Box<dyn Source>> {
        let pattern = env.resolve(&self.path);
        let paths = files(&pattern).map_err(|e| e.context("path"))?;
        Ok(Box::new(OpenFiles { paths, checkpoint: self.checkpoint }))
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
        .map_err(|e| anyhow::anyhow!("{text:?} is not a valid glob: {e}"))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// How many leading bytes of a file its fingerprint covers.
const HEAD: u64 = 1024;

/// A file as the checkpoint knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Its canonical path when last read (for people; identity is below).
    pub path: String,
    /// Device and inode.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// How many leading bytes the fingerprint covers (fewer for a short file).
    pub head_len: u64,
    /// SHA-256 of those bytes, hex.
    pub head: String,
    /// The (decompressed) offset just past the last document handled.
    pub offset: u64,
    /// Whether the file is a JSON array (its framing, needed to resume mid-file).
    pub array: Option<bool>,
}

/// The file source's checkpoint: every file it has read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesCheckpoint {
    /// Format version (2: files by identity).
    pub version: u32,
    /// The files.
    pub files: Vec<FileState>,
}

/// The first format: one file by name, and an offset; files sorting before it were done.
#[derive(Debug, Clone, Deserialize)]
struct LegacyPosition {
    file: String,
    offset: u64,
}

/// What identifies a file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    canonical: PathBuf,
    dev: u64,
    ino: u64,
    len: u64,
}

impl Identity {
    fn of(path: &Path) -> anyhow::Result<Identity> {
        let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Identity { canonical, dev: meta.dev(), ino: meta.ino(), len: meta.len() })
    }

    /// SHA-256 (hex) of the first `n` bytes.
    fn head(&self, n: u64) -> anyhow::Result<String> {
        let mut f = std::fs::File::open(&self.canonical)?;
        let mut buf = Vec::with_capacity(n as usize);
        (&mut f).take(n).read_to_end(&mut buf)?;
        Ok(hex(&Sha256::digest(&buf)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FilesCheckpoint {
    /// The entry for a file: same device and inode, and the same first bytes.
    fn find(&self, id: &Identity) -> anyhow::Result<Option<usize>> {
        for (i, f) in self.files.iter().enumerate() {
            if f.dev == id.dev && f.ino == id.ino && f.head_len <= id.len && id.head(f.head_len)? == f.head {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The entry for a file, added (at offset 0) if it is new.
    fn entry(&mut self, id: &Identity) -> anyhow::Result<usize> {
        if let Some(i) = self.find(id)? {
            self.files[i].path = id.canonical.display().to_string();
            return Ok(i);
        }
        // A reused inode is a new file: forget the old entry.
        self.files.retain(|f| !(f.dev == id.dev && f.ino == id.ino));
        let head_len = id.len.min(HEAD);
        self.files.push(FileState {
            path: id.canonical.display().to_string(),
            dev: id.dev,
            ino: id.ino,
            head_len,
            head: id.head(head_len)?,
            offset: 0,
            array: None,
        });
        Ok(self.files.len() - 1)
    }
}

/// A file source whose files were found.
struct OpenFiles {
    paths: Vec<PathBuf>,
    checkpoint: bool,
}

/// Where a batch ends: a file of the checkpoint, and the offset past the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    file: usize,
    offset: u64,
    array: Option<bool>,
}

impl Source for OpenFiles {
    fn run(self: Box<Self>, mut ctx: SourceContext) -> anyhow::Result<()> {
        let store = CheckpointFile::new(&ctx.settings.state_dir, &ctx.id);
        let mut state = if self.checkpoint { load(&store, &self.paths)? } else { FilesCheckpoint::default() };
        state.version = 2;
        let mut progress = Progress {
            state,
            checkpoints: Checkpointer::default(),
            store,
            enabled: self.checkpoint,
            saved: Instant::now(),
            unsaved: false,
        };
        let result = read_files(&self.paths, &mut progress, &mut ctx);
        // Let go of the output so the pipeline can drain, then wait for the acknowledgements.
        drop(std::mem::take(&mut ctx.output));
        let saved = progress.save(&mut ctx, true);
        result.and(saved)
    }
}

/// The checkpoint, read in either format.
fn load(store: &CheckpointFile, paths: &[PathBuf]) -> anyhow::Result<FilesCheckpoint> {
    let Some(value) = store.load::<serde_json::Value>()? else { return Ok(FilesCheckpoint::default()) };
    if let Ok(legacy) = serde_json::from_value::<LegacyPosition>(value.clone()) {
        // The first format named one file; those before it in name order were done.
        let mut state = FilesCheckpoint::default();
        for p in paths {
            let name = p.display().to_string();
            if name <= legacy.file {
                let id = Identity::of(p)?;
                let i = state.entry(&id)?;
                state.files[i].offset = if name == legacy.file { legacy.offset } else { u64::MAX };
            }
        }
        return Ok(state);
    }
    serde_json::from_value(value).map_err(|e| anyhow::anyhow!("checkpoint unreadable ({e}); delete it to start over"))
}

fn read_files(paths: &[PathBuf], progress: &mut Progress, ctx: &mut SourceContext) -> anyhow::Result<()> {
    for path in paths {
        if ctx.shutdown().is_requested() {
            break;
        }
        let id = Identity::of(path)?;
        let file = progress.state.entry(&id)?;
        let (start, array) = (progress.state.files[file].offset, progress.state.files[file].array);
        let gz = path.extension().is_some_and(|e| e == "gz");
        if !gz && start >= id.len {
            continue; // read to its end before
        }
        if start > 0 {
            tracing::info!(source = %ctx.id, file = %path.display(), offset = start, "Resuming.");
        }
        let input = open(path, start, gz)?;
        // Documents a little over the limit are framed whole, so their dead letter keeps all
        // their bytes; only a runaway one (no end in sight) is cut at the framing limit.
        let framing_limit = ctx.settings.max_record_size.saturating_mul(4).max(4 << 20);
        let mut framer = Framer::new(input, start, array, framing_limit);
        let name = path.display().to_string();
        let mut last = start;
        loop {
            if ctx.shutdown().is_requested() {
                break;
            }
            let piece = framer.next_piece().map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
            let Some(piece) = piece else { break };
            let position = format!("{name}:{last}");
            last = piece.end();
            match piece {
                Piece::Doc { doc, raw, .. } => ctx.ingest_parsed(doc, raw, position, None),
                Piece::Bad { raw, error, .. } => ctx.refuse_bytes(raw, position, error),
                Piece::Oversized { raw, size, .. } => ctx.refuse_bytes_as(
                    raw,
                    position,
                    DeadLetterKind::Oversized,
                    format!(
                        "document of at least {size} bytes exceeds runtime.max_record_size ({} bytes); its first {framing_limit} bytes are kept",
                        ctx.settings.max_record_size
                    ),
                ),
            }
            if ctx.batch_full() {
                flush(ctx, &mut progress.checkpoints, Position { file, offset: last, array: framer.is_array() })?;
                progress.save(ctx, false)?;
            }
        }
        flush(ctx, &mut progress.checkpoints, Position { file, offset: last, array: framer.is_array() })?;
    }
    Ok(())
}

/// The (decompressed) stream of a file from offset `start`.
fn open(path: &Path, start: u64, gz: bool) -> anyhow::Result<Box<dyn Read + Send>> {
    let mut file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if !gz {
        file.seek(SeekFrom::Start(start))?;
        return Ok(Box::new(file));
    }
    let mut stream = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 * 1024, file));
    // A compressed stream cannot seek: decompress up to where it resumes.
    let skipped = std::io::copy(&mut (&mut stream).take(start), &mut std::io::sink())
        .map_err(|e| anyhow::anyhow!("cannot decompress {}: {e}", path.display()))?;
    if skipped < start {
        tracing::warn!(file = %path.display(), "The checkpoint is past the end of the file; reading nothing of it.");
    }
    Ok(Box::new(stream))
}

fn flush(ctx: &mut SourceContext, checkpoints: &mut Checkpointer<Position>, pos: Position) -> anyhow::Result<()> {
    let seq = ctx.next_seq();
    if ctx.flush_or_stop()?.is_some() {
        checkpoints.register(seq, pos);
    }
    Ok(())
}

/// What has been read and acknowledged, and where it is saved.
struct Progress {
    state: FilesCheckpoint,
    checkpoints: Checkpointer<Position>,
    store: CheckpointFile,
    enabled: bool,
    /// When the checkpoint was last written (or the run started), and whether the position
    /// moved since.
    saved: Instant,
    unsaved: bool,
}

impl Progress {
    /// Takes the completions that arrived and moves the position past them; writes it when
    /// [`SAVE_EVERY`] has passed since the last save. With `wait` (the end of a run), waits
    /// for every batch in flight and writes the position whatever the time.
    fn save(&mut self, ctx: &mut SourceContext, wait: bool) -> anyhow::Result<()> {
        loop {
            ctx.free_returned();
            while let Ok(c) = ctx.completions.try_recv() {
                self.checkpoints.complete(c);
            }
            if let Some(pos) = self.checkpoints.advance() {
                let f = &mut self.state.files[pos.file];
                f.offset = pos.offset;
                f.array = pos.array;
                self.unsaved = true;
            }
            // Also while the sinks drain at the end, so a crash then re-reads little.
            if self.saved.elapsed() >= SAVE_EVERY {
                self.write()?;
            }
            if !wait || self.checkpoints.in_flight() == 0 || self.checkpoints.is_stalled() {
                break;
            }
            match ctx.completions.blocking_recv() {
                Some(c) => self.checkpoints.complete(c),
                None => break,
            }
        }
        if wait {
            self.write()?;
        }
        if self.checkpoints.is_stalled() {
            tracing::warn!(source = %ctx.id, "A batch was not fully handled; the checkpoint stays before it.");
        }
        Ok(())
    }

    /// Writes the position, if it moved since it was last written.
    fn write(&mut self) -> anyhow::Result<()> {
        if self.enabled && self.unsaved {
            self.store.save(&self.state)?;
            (self.saved, self.unsaved) = (Instant::now(), false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ctrflow-file-source-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_is_the_same_entry_by_relative_or_absolute_path() {
        let dir = temp("identity");
        let file = dir.join("a.jsonl");
        std::fs::write(&file, "{\"ContactId\":\"x\"}\n").unwrap();
        let mut state = FilesCheckpoint::default();
        let i = state.entry(&Identity::of(&file).unwrap()).unwrap();
        state.files[i].offset = 5;
        let via_dots = dir.join(".").join("..").join(dir.file_name().unwrap()).join("a.jsonl");
        assert_eq!(state.find(&Identity::of(&via_dots).unwrap()).unwrap(), Some(i));
    }

    #[test]
    fn a_new_file_on_a_reused_inode_starts_over() {
        let dir = temp("reuse");
        let file = dir.join("a.jsonl");
        std::fs::write(&file, "{\"ContactId\":\"first\"}\n").unwrap();
        let mut state = FilesCheckpoint::default();
        let i = state.entry(&Identity::of(&file).unwrap()).unwrap();
        state.files[i].offset = 22;
        // Same inode (truncated in place), other content.
        std::fs::write(&file, "{\"ContactId\":\"second\"}\n").unwrap();
        let id = Identity::of(&file).unwrap();
        assert_eq!(state.find(&id).unwrap(), None);
        let j = state.entry(&id).unwrap();
        assert_eq!(state.files[j].offset, 0);
        assert_eq!(state.files.len(), 1);
    }

    #[test]
    fn a_file_that_grew_is_still_the_same_file() {
        let dir = temp("grow");
        let file = dir.join("a.jsonl");
        std::fs::write(&file, "{\"ContactId\":\"a\"}\n").unwrap();
        let mut state = FilesCheckpoint::default();
        let i = state.entry(&Identity::of(&file).unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        std::io::Write::write_all(&mut f, b"{\"ContactId\":\"b\"}\n").unwrap();
        assert_eq!(state.find(&Identity::of(&file).unwrap()).unwrap(), Some(i));
    }
}
