//! The `sqlite` sink: a real embedded database, the local default.
//!
//! Columns: a sink plugin's `columns` when the sink has a plugin; otherwise every
//! top-level field of the record, with objects and arrays stored as JSON text (so a record
//! flattened by `ctr-flatten` becomes a plain row). The table is created on first use and
//! grows a column when a record brings a new field. SQLite compares column names without
//! regard to case, so a field `channel` lands in an existing column `Channel`; a record
//! holding both `channel` and `Channel` cannot be one row and is dead-lettered
//! (`unwritable`), as is a record that would take the table past SQLite's 2,000 columns —
//! its batch-mates are written.
//!
//! `mode = "newer-wins"` keeps one row per key — the plugin's partition key, else
//! `ContactId` — holding the version with the greatest `LastUpdateTimestamp`; on a tie the
//! first written stays. A newer version replaces the whole row — one upsert that sets every
//! column of the table, those the record lacks to NULL — so no column of an older version
//! survives. Two bookkeeping columns carry it: `_ctrflow_key` and `_ctrflow_version`
//! (epoch ms).
//!
//! A batch is one transaction, acknowledged after it commits. With `fsync = true` (the
//! default) the database runs `synchronous = FULL`, so an acknowledged batch survives a power
//! loss, not only a crash; `fsync = false` trades that for speed (`synchronous = NORMAL`:
//! a crash loses nothing, a power loss may lose the last commits — which the source then
//! reads again). A failure that is not a record's (the database busy or locked, the disk
//! full, an I/O error) is retried without limit, the node reported degraded meanwhile.
//!
//! Sinks that write to one database file share one connection ([`SharedDb`]), each batch a
//! transaction under its lock. With a connection each, they took SQLite's write lock in
//! turns through its busy handler, which sleeps and polls (1 ms, 2 ms, … up to 100 ms), so
//! a sink often slept after the lock was free; and every commit of one connection threw
//! away the others' page caches, which then read their pages back (see
//! docs/performance.md for the measurement).
//! The file's checkpoints (the WAL copied back into the database, two syncs each) run on
//! a thread of their own ([`checkpointer`]), not inside whichever sink's write commits when
//! the WAL is full, where every sink of the file waited for them.
//!
//! A sink without a plugin stages each record as it arrives ([`StagedRow`]: its values and
//! key in one buffer of their exact size, objects and arrays already JSON text, its field
//! names shared with the rows before it that have the same) and lets its tree go, so the
//! records waiting for a write (up to two writes' worth) hold about a quarter of the memory
//! their trees would; the write binds from the staged row.

mod checkpointer;
pub mod memory;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use ctrflow_plugin_sdk::ctr::parse_timestamp;
use rusqlite::ErrorCode;
use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
use serde::Deserialize;
use serde_json::Value;

use crate::contract::{
    Destination, Encoding, Env, Health, Item, SQLITE_MAX_RECORDS, SinkConnector, SinkOptions, Staged, Stager,
    WriteFuture, Writer, Written,
};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;
use checkpointer::Checkpointer;

/// `type = "sqlite"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteSink {
    /// The database file, relative to the pipeline file (created if missing).
    pub path: String,
    /// The table (created if missing).
    pub table: String,
    /// `append` (default) or `newer-wins`.
    #[serde(default)]
    pub mode: SqliteMode,
    /// Make every acknowledged batch durable on disk (`synchronous = FULL`). Default true;
    /// `false` is faster and still loses nothing to a crash of ctrflow, only to a power loss.
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// How the table treats a record whose key it already holds.
#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SqliteMode {
    /// Every record is a new row.
    #[default]
    Append,
    /// One row per `ContactId`, the one with the greatest `LastUpdateTimestamp`; on a tie
    /// the first written stays.
    NewerWins,
}

impl SinkConnector for SqliteSink {
    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        Ok(Box::new(SqliteWriter::open(self, env, options).map_err(anyhow::Error::msg)?))
    }

    fn destination(&self, env: &Env) -> Destination {
        let db = env.resolve(&self.path);
        Destination {
            unit: "records",
            place: format!("SQLite {} table {:?}", db.display(), self.table),
            look: Some(format!("sqlite3 {} 'SELECT COUNT(*) FROM \"{}\"'", db.display(), self.table)),
        }
    }

    fn max_records(&self) -> usize {
        SQLITE_MAX_RECORDS
    }
}

/// The page size of a database the sink creates. A contact record's row is about 3 KB, so
/// SQLite's default 4 KiB page holds one and leaves a quarter of it empty; 16 KiB pages
/// hold five. 64 KiB pages (SQLite's largest) ran the 100,000-record throughput graph 1.13×
/// as fast, but a commit writes whole pages and the key index's pages are dirtied at random,
/// so on the 1,000,000-record demo they were no faster, and a large table's commits write up
/// to four times the bytes (docs/performance.md, eighteenth round): not kept.
const PAGE_SIZE: i64 = 16384;

/// The page cache of a shared connection, in KiB (SQLite's default is 2,000 KiB). A batch
/// of 512 rows of a newer-wins table dirties a leaf of the key index for nearly every row
/// (contact ids are random), so with the default cache the transaction outgrew it: SQLite
/// spilled dirty pages to the WAL mid-transaction and read evicted ones back. At 8 MiB the
/// throughput graph (100,000 records) read 0.65 GB instead of 1.22 GB and wrote 1.17 GB
/// instead of 1.27 GB, for a few MB of memory (docs/performance.md, thirteenth round).
const CACHE_KIB: i64 = 8192;

/// The connection to one database file, shared by every sink of the process that writes
/// to it (held only through [`SharedDb::lock`]).
struct SharedDb {
    conn: rusqlite::Connection,
    /// The `synchronous` setting in force: sinks sharing the file may differ in `fsync`,
    /// and each batch runs at its own sink's.
    full_sync: Option<bool>,
    /// Copies the WAL into the database off the sinks' threads (`None`: SQLite's own
    /// checkpoints do it, in the committing sink's write).
    checkpointer: Option<Checkpointer>,
}

impl Drop for SharedDb {
    fn drop(&mut self) {
        // The checkpoint thread's connection closes first, so `conn`, the last one to
        // close, copies what is left of the WAL and removes it.
        drop(self.checkpointer.take());
    }
}

/// The open databases by file, so a second sink on a file shares the first one's connection
/// (and the last sink to close it closes it).
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Mutex<SharedDb>>>>> = LazyLock::new(Default::default);

impl SharedDb {
    /// The connection to the database at `path`, opened (WAL) unless a sink has it open.
    fn open(path: &Path) -> Result<Arc<Mutex<SharedDb>>, String> {
        // The same file by any spelling of its path (the file itself may not exist yet).
        let key = match (path.parent().map(std::fs::canonicalize), path.file_name()) {
            (Some(Ok(dir)), Some(name)) => dir.join(name),
            _ => path.to_path_buf(),
        };
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, db| db.strong_count() > 0);
        if let Some(db) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(db);
        }
        let conn =
            rusqlite::Connection::open(path).map_err(|e| format!("path: cannot open {}: {e}", path.display()))?;
        // Set before anything is written (an existing database keeps its own).
        conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(|e| format!("path: {}: {e}", path.display()))?;
        // WAL lets a user query the database while the pipeline writes it.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| format!("path: {}: {e}", path.display()))?;
        // Other processes (or a user's sqlite3 shell) may hold the lock for a while.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
        conn.set_prepared_statement_cache_capacity(64);
        // Negative: a size in KiB rather than a count of pages.
        conn.pragma_update(None, "cache_size", -CACHE_KIB).map_err(|e| format!("path: {}: {e}", path.display()))?;
        // Checkpoints run on a thread of their own, ahead of the connection's own, whose
        // threshold is in pages of the file's size (an existing database keeps its own).
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| format!("path: {}: {e}", path.display()))?;
        conn.pragma_update(None, "wal_autocheckpoint", (checkpointer::BACKSTOP_BYTES / page.max(512)).max(1))
            .map_err(|e| format!("path: {}: {e}", path.display()))?;
        let checkpointer = Checkpointer::start(path);
        let db = Arc::new(Mutex::new(SharedDb { conn, full_sync: None, checkpointer }));
        open.insert(key, Arc::downgrade(&db));
        Ok(db)
    }

    /// Locks the connection for one sink's use. A sink that panicked holding it may have
    /// left a transaction open: it is rolled back here, as a failed batch would be.
    fn lock(db: &Mutex<SharedDb>) -> MutexGuard<'_, SharedDb> {
        db.lock().unwrap_or_else(|poisoned| {
            let guard = poisoned.into_inner();
            if !guard.conn.is_autocommit() {
                let _ = guard.conn.execute_batch("ROLLBACK");
            }
            guard
        })
    }

    /// Sets `synchronous` for the next transaction: FULL when the sink asks for `fsync`.
    fn synchronous(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.full_sync != Some(full) {
            self.conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.full_sync = Some(full);
        }
        Ok(())
    }
}

/// Writes rows to a SQLite table.
pub struct SqliteWriter {
    db: Arc<Mutex<SharedDb>>,
    fsync: bool,
    table: String,
    quoted: String,
    mode: SqliteMode,
    /// The table's columns by lower-cased name (SQLite's own comparison) → the name as
    /// created, and a cache from a field name as spelled to its column's slot.
    columns: FastMap<String, usize>,
    names: Vec<String>,
    spelled: FastMap<String, usize>,
    /// The SQL for a row with a given set of columns, by a hash of the slots.
    sql: FastMap<u64, (Vec<usize>, String)>,
    /// The JSON text of every object or array field of a batch, written before the lock is
    /// taken and bound from here: one buffer, reused from batch to batch, not a string each.
    texts: Vec<u8>,
    health: Health,
    shutdown: Shutdown,
}

/// The writer's maps are looked up once per field of every row, so they hash with foldhash
/// (randomly seeded) rather than std's SipHash, which was 1.5% of the throughput graph's
/// CPU. The seed is random per map, so field names cannot be chosen ahead to collide.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A JSON null, boolean or number as a SQL value (a boolean as 0 or 1); `NULL` for anything
/// else: a string is bound as text, an object or array as its JSON text, by the caller.
fn non_text(v: &Value) -> Sql {
    match v {
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        _ => Sql::Null,
    }
}

/// An object's or array's JSON text, appended to `out`: the runtime's JSON writer (not
/// `Display`, which writes through a `fmt::Formatter` piece by piece: measured, the largest
/// single cost of this sink). Where it is in `out`.
fn write_nested(out: &mut Vec<u8>, v: &Value) -> std::ops::Range<usize> {
    let start = out.len();
    crate::json::write_value(out, v);
    start..out.len()
}

/// Whether an error is the record's (writing it again will fail again) rather than the
/// database's or the disk's (retry).
fn is_record_fault(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            // SQLITE_ERROR: "too many columns", "duplicate column name", bad SQL from a name.
            ErrorCode::Unknown | ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig
        ),
        rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::InvalidParameterCount(..) => true,
        _ => false,
    }
}

/// A row made ready outside the database's lock ([`SqliteWriter::prepare`], or
/// [`StagedRow::prepared`]).
struct Prepared<'a> {
    /// Its fields by name, borrowed from the encoding, the record or its staged row.
    row: Vec<(&'a str, Field<'a>)>,
    /// A staged row's field names, shared with the rows staged before it that had the same
    /// names ([`RowStager::row`]): two rows holding the same `Arc` go to the same columns
    /// ([`Reuse`]). `None` for a row made at the write.
    names: Option<&'a Arc<str>>,
    /// Its key and version (newer-wins), `None` in append mode, `Err` when it has no key.
    key_version: Result<Option<(&'a str, i64)>, ()>,
}

/// One field's value as it is bound.
enum Field<'a> {
    /// A scalar of the record or the encoding, bound from where it is.
    Scalar(&'a Value),
    /// An object or array, as its JSON text in the batch's text buffer.
    Nested(std::ops::Range<usize>),
    /// A value of a staged row (whose text is given).
    Staged(&'a Cell, &'a [u8]),
}

impl Field<'_> {
    /// The SQL value to bind; `texts` is the batch's text buffer.
    fn bound<'b>(&'b self, texts: &'b [u8]) -> ToSqlOutput<'b> {
        match self {
            Field::Scalar(Value::String(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Field::Scalar(v) => ToSqlOutput::Owned(non_text(v)),
            Field::Nested(range) => ToSqlOutput::Borrowed(ValueRef::Text(&texts[range.clone()])),
            Field::Staged(Cell::Null, _) => ToSqlOutput::Borrowed(ValueRef::Null),
            Field::Staged(Cell::Integer(i), _) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Field::Staged(Cell::Real(f), _) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Field::Staged(Cell::Text(range), text) => {
                ToSqlOutput::Borrowed(ValueRef::Text(&text[range.start as usize..range.end as usize]))
            }
        }
    }
}

/// A record's row as the sink holds it from its arrival to its write ([`RowStager`]): the
/// field names in one string (shared by the rows staged one after another with the same
/// names), the values (strings, and objects and arrays as JSON text) and the key in one
/// buffer of exactly their size, 24 bytes a field besides. About 3.5 KB for a contact record
/// whose text is 3.3 KB and whose tree takes 15 KB.
///
/// Why exact sizes: a record waits staged for up to two writes, so this is most of what a
/// SQLite sink holds. Staged straight into buffers of their own, a row held about 5.9 KB
/// (its text buffer grown in doublings from 4 KiB, 40-byte cells, its names); a 16 KB
/// record, 32 KiB of buffer (docs/performance.md, twentieth round).
struct StagedRow {
    names: Arc<str>,
    text: Box<[u8]>,
    fields: Box<[(std::ops::Range<u32>, Cell)]>,
    /// The key's place in `text` and the version (newer-wins), `None` in append mode, `Err`
    /// when the record has no key.
    key_version: Result<Option<(std::ops::Range<u32>, i64)>, ()>,
}

/// A staged value.
#[derive(Clone)]
enum Cell {
    Null,
    /// An integer, or a boolean as 0 or 1.
    Integer(i64),
    Real(f64),
    /// A string, or an object's or array's JSON text, in the row's `text`.
    Text(std::ops::Range<u32>),
}

impl Cell {
    /// A JSON null, boolean or number ([`non_text`]).
    fn scalar(v: &Value) -> Cell {
        match non_text(v) {
            Sql::Integer(i) => Cell::Integer(i),
            Sql::Real(f) => Cell::Real(f),
            _ => Cell::Null,
        }
    }
}

impl StagedRow {
    /// The row, ready to write.
    fn prepared(&self) -> Prepared<'_> {
        let name = |range: &std::ops::Range<u32>| &self.names[range.start as usize..range.end as usize];
        Prepared {
            row: self.fields.iter().map(|(n, cell)| (name(n), Field::Staged(cell, &self.text))).collect(),
            names: Some(&self.names),
            key_version: self
                .key_version
                .as_ref()
                .map(|kv| {
                    kv.as_ref().map(|(key, version)| {
                        // The key was pushed as a `&str` and its range is exact (a row too
                        // large for `u32` ranges is not staged): whole characters.
                        let key = std::str::from_utf8(&self.text[key.start as usize..key.end as usize])
                            .expect("a staged key is the text it was pushed as");
                        (key, *version)
                    })
                })
                .map_err(|_| ()),
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) -> std::ops::Range<u32> {
    let start = out.len();
    out.extend_from_slice(s.as_bytes());
    span(start..out.len())
}

/// A range in a staged row's buffers; past `u32::MAX` it is wrong, and [`RowStager::row`]
/// then does not stage the row.
fn span(range: std::ops::Range<usize>) -> std::ops::Range<u32> {
    u32::try_from(range.start).unwrap_or(u32::MAX)..u32::try_from(range.end).unwrap_or(u32::MAX)
}

/// Stages a SQLite sink's records as they arrive: each object record becomes its
/// [`StagedRow`], written first into buffers kept from record to record, then copied into
/// its own of the exact size. The kept buffers stay the size of the largest row staged (one
/// set a sink; a record is at most `max_record_size`), so that no row grows them again.
struct RowStager {
    mode: SqliteMode,
    names: String,
    text: Vec<u8>,
    fields: Vec<(std::ops::Range<u32>, Cell)>,
    /// The names of the row staged last, which the next row shares when its are the same,
    /// and where each name ends and the next begins.
    last_names: Option<Arc<str>>,
    last_ranges: Vec<std::ops::Range<u32>>,
}

impl RowStager {
    fn new(mode: SqliteMode) -> RowStager {
        RowStager {
            mode,
            names: String::new(),
            text: Vec::new(),
            fields: Vec::new(),
            last_names: None,
            last_ranges: Vec::new(),
        }
    }

    /// `map`'s row, as [`SqliteWriter::prepare`] would make it from the record; `None` for a
    /// row whose text or names pass 4 GiB (its record is written from its tree).
    fn row(
        &mut self,
        map: &serde_json::Map<String, Value>,
        key_version: Result<Option<(&str, i64)>, ()>,
    ) -> Option<StagedRow> {
        let (names, text, fields) = (&mut self.names, &mut self.text, &mut self.fields);
        names.clear();
        text.clear();
        fields.clear();
        for (name, value) in map {
            let start = names.len();
            names.push_str(name);
            let name = span(start..names.len());
            let cell = match value {
                Value::String(s) => Cell::Text(push_str(text, s)),
                Value::Object(_) | Value::Array(_) => Cell::Text(span(write_nested(text, value))),
                scalar => Cell::scalar(scalar),
            };
            fields.push((name, cell));
        }
        let key_version = key_version.map(|kv| kv.map(|(key, version)| (push_str(text, key), version)));
        if u32::try_from(text.len()).is_err() || u32::try_from(names.len()).is_err() {
            return None;
        }
        // The same names as the last row: the same string cut in the same places (the string
        // alone is the same for `ab`, `c` and `a`, `bc`). A write reuses a row's columns for
        // the next row that shares its names ([`Reuse`]), so sharing must mean the same names.
        let same = |last: &str| {
            *last == **names
                && self.last_ranges.len() == fields.len()
                && self.last_ranges.iter().zip(fields.iter()).all(|(a, (b, _))| a == b)
        };
        let names = match &self.last_names {
            Some(last) if same(last) => last.clone(),
            _ => {
                let shared: Arc<str> = Arc::from(names.as_str());
                self.last_names = Some(shared.clone());
                self.last_ranges.clear();
                self.last_ranges.extend(fields.iter().map(|(name, _)| name.clone()));
                shared
            }
        };
        Some(StagedRow { names, text: Box::from(text.as_slice()), fields: Box::from(fields.as_slice()), key_version })
    }
}

impl Stager for RowStager {
    fn stage(&mut self, record: &crate::record::Record) -> Option<Staged> {
        let Value::Object(map) = &*record.doc else { return None };
        let key_version = match self.mode {
            SqliteMode::NewerWins => SqliteWriter::key_and_version(None, &record.doc).map(Some).ok_or(()),
            SqliteMode::Append => Ok(None),
        };
        self.row(map, key_version).map(|row| Box::new(row) as Staged)
    }
}

/// What became of one row: written, or the record's fault.
enum RowOutcome {
    Written,
    Refused(DeadLetterKind, String),
}

impl SqliteWriter {
    /// Opens (creating) the database and table.
    pub fn open(cfg: &SqliteSink, env: &Env, options: SinkOptions) -> Result<Self, String> {
        let path = env.resolve(&cfg.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("path: cannot create {}: {e}", dir.display()))?;
        }
        let db = SharedDb::open(&path)?;
        let quoted = quote(&cfg.table);
        let ddl = match cfg.mode {
            SqliteMode::NewerWins => {
                format!("CREATE TABLE IF NOT EXISTS {quoted} (_ctrflow_key TEXT PRIMARY KEY, _ctrflow_version INTEGER)")
            }
            SqliteMode::Append => format!("CREATE TABLE IF NOT EXISTS {quoted} (_ctrflow_written_at INTEGER)"),
        };
        let shared = db.clone();
        let guard = SharedDb::lock(&shared);
        guard.conn.execute(&ddl, []).map_err(|e| format!("table: cannot create {}: {e}", cfg.table))?;
        let mut writer = SqliteWriter {
            db,
            fsync: cfg.fsync,
            table: cfg.table.clone(),
            quoted,
            mode: cfg.mode,
            columns: FastMap::default(),
            names: Vec::new(),
            spelled: FastMap::default(),
            sql: FastMap::default(),
            texts: Vec::new(),
            health: options.health,
            shutdown: options.shutdown,
        };
        writer.load_columns(&guard.conn).map_err(|e| format!("table: cannot read {}: {e}", cfg.table))?;
        drop(guard);
        if cfg.mode == SqliteMode::NewerWins && !writer.columns.contains_key("_ctrflow_key") {
            return Err(format!(
                "table: {} exists without the newer-wins key column; use another table or mode = \"append\"",
                cfg.table
            ));
        }
        Ok(writer)
    }

    /// Reads the table's columns (again, after a rolled-back batch took its new ones away).
    fn load_columns(&mut self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        let names: Vec<String> = {
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", self.quoted))?;
            stmt.query_map([], |row| row.get::<_, String>(1))?.collect::<Result<_, _>>()?
        };
        self.columns = names.iter().enumerate().map(|(i, n)| (n.to_lowercase(), i)).collect();
        self.names = names;
        self.spelled.clear();
        self.sql.clear();
        Ok(())
    }

    /// The row's fields, borrowed from the encoding or the record (never copied).
    fn row(item: &Item) -> Vec<(&str, &Value)> {
        match &item.encoding {
            Some(e) if !e.columns.is_empty() => e.columns.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            _ => match &*item.record.doc {
                Value::Object(map) => map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                other => vec![("record", other)],
            },
        }
    }

    /// The row's key and version, borrowed from the encoding or the record.
    fn key_and_version<'a>(encoding: Option<&'a Encoding>, doc: &'a Value) -> Option<(&'a str, i64)> {
        let key = encoding
            .and_then(|e| e.partition_key.as_deref())
            .or_else(|| doc.get("ContactId").and_then(Value::as_str))?;
        let version =
            doc.get("LastUpdateTimestamp").and_then(Value::as_str).and_then(parse_timestamp).unwrap_or(i64::MIN);
        Some((key, version))
    }

    /// The column slot of a field, adding the column when the table has none of that name.
    fn slot(&mut self, conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<usize> {
        if let Some(&s) = self.spelled.get(name) {
            return Ok(s);
        }
        let lower = name.to_lowercase();
        let slot = match self.columns.get(&lower) {
            Some(&s) => s,
            None => {
                conn.execute(&format!("ALTER TABLE {} ADD COLUMN {}", self.quoted, quote(name)), [])?;
                self.names.push(name.to_string());
                self.columns.insert(lower, self.names.len() - 1);
                self.names.len() - 1
            }
        };
        self.spelled.insert(name.to_string(), slot);
        Ok(slot)
    }

    /// The key in `self.sql` of the INSERT for these column slots, built once per column set
    /// and table width, and whether it was built now (then a statement prepared under the
    /// key before, if any, was another column set's: keys are hashes). A key, not the text:
    /// the text is borrowed from the map where it is prepared, never copied per row.
    fn insert_sql(&mut self, slots: &[usize]) -> (u64, bool) {
        let key = self.sql.hasher().hash_one((slots, self.names.len()));
        if let Some((s, _)) = self.sql.get(&key)
            && s == slots
        {
            return (key, false);
        }
        let mut names: Vec<String> = slots.iter().map(|&s| quote(&self.names[s])).collect();
        names.push(match self.mode {
            SqliteMode::NewerWins => "_ctrflow_key, _ctrflow_version".into(),
            SqliteMode::Append => "_ctrflow_written_at".into(),
        });
        let params = slots.len() + if self.mode == SqliteMode::NewerWins { 2 } else { 1 };
        let tail = match self.mode {
            // Every column, so the newer version replaces the whole row: a column the record
            // lacks is NULL in `excluded`.
            SqliteMode::NewerWins => format!(
                " ON CONFLICT(_ctrflow_key) DO UPDATE SET {} WHERE excluded._ctrflow_version > {}._ctrflow_version",
                self.names
                    .iter()
                    .filter(|n| *n != "_ctrflow_key")
                    .map(|n| format!("{0} = excluded.{0}", quote(n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.quoted
            ),
            SqliteMode::Append => String::new(),
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}){tail}",
            self.quoted,
            names.join(", "),
            vec!["?"; params].join(", ")
        );
        self.sql.insert(key, (slots.to_vec(), sql));
        (key, true)
    }

    /// Makes a row ready to write, without the database: its fields, the JSON text of each
    /// object or array field (appended to `texts`), and its key and version. A staged item
    /// is ready already.
    fn prepare<'a>(&self, item: &'a Item, texts: &mut Vec<u8>) -> Prepared<'a> {
        if let Some(staged) = item.staged.as_ref().and_then(|s| s.downcast_ref::<StagedRow>()) {
            return staged.prepared();
        }
        let row = Self::row(item)
            .into_iter()
            .map(|(name, v)| {
                let field = match v {
                    Value::Object(_) | Value::Array(_) => Field::Nested(write_nested(texts, v)),
                    scalar => Field::Scalar(scalar),
                };
                (name, field)
            })
            .collect();
        let key_version = match self.mode {
            SqliteMode::NewerWins => {
                Self::key_and_version(item.encoding.as_ref(), &item.record.doc).map(Some).ok_or(())
            }
            SqliteMode::Append => Ok(None),
        };
        Prepared { row, names: None, key_version }
    }

    /// Writes one prepared row. `Err` is an infrastructure fault (the caller rolls the batch
    /// back and retries); a record fault comes back as [`RowOutcome::Refused`].
    fn write_row<'c, 'a>(
        &mut self,
        conn: &'c rusqlite::Connection,
        prepared: &Prepared<'a>,
        texts: &[u8],
        now: i64,
        reuse: &mut Reuse<'c, 'a>,
    ) -> rusqlite::Result<RowOutcome> {
        let row = &prepared.row;
        // Within a transaction only this branch adds columns, so a row with the names of
        // the last one needs none, and the last row's INSERT already lists every column.
        let same_names = matches!((prepared.names, reuse.names), (Some(a), Some(b)) if Arc::ptr_eq(a, b));
        if !same_names {
            let mut slots = Vec::with_capacity(row.len());
            for (name, _) in row {
                match self.slot(conn, name) {
                    Ok(s) => slots.push(s),
                    Err(e) if is_record_fault(&e) => {
                        return Ok(RowOutcome::Refused(
                            DeadLetterKind::Unwritable,
                            format!("SQLite cannot add column {name:?} to table {:?}: {e}", self.table),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some((a, b)) = same_column(row, &slots) {
                return Ok(RowOutcome::Refused(
                    DeadLetterKind::Unwritable,
                    format!(
                        "fields {a:?} and {b:?} differ only by case; SQLite column names ignore case, so one row cannot hold both"
                    ),
                ));
            }
            let (key, built) = self.insert_sql(&slots);
            if built {
                // Any statement this transaction holds under the key is another column set's.
                reuse.statements.remove(&key);
            }
            reuse.sql = key;
            reuse.names = prepared.names;
        }
        let Ok(key_version) = prepared.key_version else {
            return Ok(RowOutcome::Refused(
                DeadLetterKind::NoKey,
                "newer-wins needs a ContactId (or a plugin partition key)".into(),
            ));
        };
        let attempt = (|| {
            // Prepared once per column set (the connection's statement cache keeps it) and
            // looked up there once per transaction: the cache finds a statement by hashing
            // and comparing its text, a few KB for a contact record's upsert.
            let stmt = match reuse.statements.entry(reuse.sql) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(conn.prepare_cached(&self.sql[&reuse.sql].1)?),
            };
            for (i, (_, field)) in row.iter().enumerate() {
                // An object or array is its JSON text, written before the lock was taken
                // (binding copies it: rusqlite binds text as SQLITE_TRANSIENT).
                stmt.raw_bind_parameter(i + 1, field.bound(texts))?;
            }
            match key_version {
                Some((key, version)) => {
                    stmt.raw_bind_parameter(row.len() + 1, key)?;
                    stmt.raw_bind_parameter(row.len() + 2, version)?;
                }
                None => stmt.raw_bind_parameter(row.len() + 1, now)?,
            }
            stmt.raw_execute().map(|_| ())
        })();
        match attempt {
            Ok(()) => Ok(RowOutcome::Written),
            Err(e) if is_record_fault(&e) => {
                Ok(RowOutcome::Refused(DeadLetterKind::Unwritable, format!("SQLite refused the row: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    /// One attempt at the whole batch, in one transaction. The rows are made ready first,
    /// outside the lock, so that sinks sharing the file hold it only to write.
    fn write_once(&mut self, items: &[Item]) -> rusqlite::Result<Vec<Written>> {
        let mut texts = std::mem::take(&mut self.texts);
        texts.clear();
        let prepared: Vec<Prepared<'_>> = items.iter().map(|item| self.prepare(item, &mut texts)).collect();
        let result = self.write_prepared(&prepared, &texts);
        self.texts = texts;
        result
    }

    /// Writes the prepared rows under the lock, in one transaction.
    fn write_prepared(&mut self, prepared: &[Prepared<'_>], texts: &[u8]) -> rusqlite::Result<Vec<Written>> {
        let db = self.db.clone();
        let mut guard = SharedDb::lock(&db);
        guard.synchronous(self.fsync)?;
        let conn = &guard.conn;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let now = crate::record::now_ms();
        let mut results = Vec::with_capacity(prepared.len());
        let mut reuse = Reuse { names: None, sql: 0, statements: FastMap::default() };
        for row in prepared {
            match self.write_row(conn, row, texts, now, &mut reuse) {
                Ok(RowOutcome::Written) => results.push(Written::Ok),
                Ok(RowOutcome::Refused(kind, reason)) => results.push(Written::Refused { kind, reason }),
                Err(e) => return Err(self.abandon(conn, e)),
            }
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                if let Some(checkpointer) = &guard.checkpointer {
                    checkpointer.committed();
                }
                Ok(results)
            }
            Err(e) => Err(self.abandon(conn, e)),
        }
    }

    /// Rolls a failed batch back; the columns it added are gone with it.
    fn abandon(&mut self, conn: &rusqlite::Connection, e: rusqlite::Error) -> rusqlite::Error {
        let _ = conn.execute_batch("ROLLBACK");
        let _ = self.load_columns(conn);
        e
    }

    /// Writes the batch, retrying a busy, locked or failing database without limit.
    async fn write_batch(&mut self, items: &[Item]) -> Vec<Written> {
        let (health, shutdown) = (self.health.clone(), self.shutdown.clone());
        health
            .retry(&shutdown, || self.write_once(items))
            .await
            .unwrap_or_else(|| vec![Written::Unwritten; items.len()])
    }
}

/// What one transaction carries from row to row: the last staged row's field names and the
/// key of its INSERT (rows of one stream mostly have the same fields in the same order, so
/// the next row with the same names skips looking up each column), and each INSERT's
/// statement, taken from the connection's cache once.
struct Reuse<'c, 'a> {
    names: Option<&'a Arc<str>>,
    sql: u64,
    statements: FastMap<u64, rusqlite::CachedStatement<'c>>,
}

/// Two fields of one row that land in the same column (names differing only by case).
fn same_column<'a, T>(row: &[(&'a str, T)], slots: &[usize]) -> Option<(&'a str, &'a str)> {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0] != w[1]) {
        return None;
    }
    let mut seen: HashMap<usize, &str> = HashMap::with_capacity(slots.len());
    for ((name, _), slot) in row.iter().zip(slots) {
        if let Some(first) = seen.insert(*slot, name) {
            return Some((first, name));
        }
    }
    None
}

impl Writer for SqliteWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_batch(items))
    }

    fn stager(&self) -> Option<Box<dyn Stager>> {
        Some(Box::new(RowStager::new(self.mode)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ctrflow-sqlite-{name}-{}-{}",
            std::process::id(),
            crate::record::now_ms()
        ));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        dir
    }

    #[test]
    fn sinks_on_one_file_share_its_connection_by_any_spelling_of_the_path() {
        let dir = temp_dir("shared");
        let a = SharedDb::open(&dir.join("c.db")).unwrap();
        let b = SharedDb::open(&dir.join("sub/../c.db")).unwrap();
        let other = SharedDb::open(&dir.join("d.db")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one file, one connection");
        assert!(!Arc::ptr_eq(&a, &other));
        // Closed with its last sink: the next open is a new connection.
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_new_database_gets_pages_that_hold_several_rows_and_a_cache_that_holds_a_batch() {
        let dir = temp_dir("pages");
        let db = SharedDb::open(&dir.join("c.db")).unwrap();
        let guard = SharedDb::lock(&db);
        guard.conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let size: i64 = guard.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(size, PAGE_SIZE);
        let cache: i64 = guard.conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(cache, -CACHE_KIB);
        let backstop: i64 = guard.conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(backstop * PAGE_SIZE, checkpointer::BACKSTOP_BYTES);
        drop(guard);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_existing_database_keeps_its_pages_and_checkpoints_at_the_same_bytes_of_wal() {
        let dir = temp_dir("old-pages");
        let path = dir.join("c.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch("PRAGMA page_size = 4096; CREATE TABLE t (x INTEGER)").unwrap();
        drop(old);
        let db = SharedDb::open(&path).unwrap();
        let guard = SharedDb::lock(&db);
        let size: i64 = guard.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(size, 4096);
        let backstop: i64 = guard.conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(backstop, checkpointer::BACKSTOP_BYTES / 4096);
        drop(guard);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn writer(dir: &Path, table: &str, mode: SqliteMode) -> SqliteWriter {
        use crate::graph::Section;
        use crate::timing::Timing;
        let timing = Timing::new(true, [("db".to_string(), Section::Sink, Vec::new())]);
        let options = SinkOptions {
            max_bytes: None,
            shutdown: Shutdown::default(),
            health: Health::new(Arc::from("sinks.db"), timing.node("db")),
            state_dir: dir.to_path_buf(),
        };
        let cfg = SqliteSink { path: "c.db".into(), table: table.into(), mode, fsync: false };
        let aws = crate::config::AwsConfig::default();
        SqliteWriter::open(&cfg, &Env { id: "db", base_dir: dir, aws: &aws }, options).unwrap()
    }

    /// Every row of `table`, every value with its SQLite type, in key order.
    fn dump(dir: &Path, table: &str) -> Vec<Vec<(String, String)>> {
        let conn = rusqlite::Connection::open(dir.join("c.db")).unwrap();
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
        stmt.query_map([], |row| {
            Ok((0..names.len())
                .filter(|&i| names[i] != "_ctrflow_written_at")
                .map(|i| {
                    let v = row.get_ref(i).unwrap();
                    (names[i].clone(), format!("{:?} {:?}", v.data_type(), v))
                })
                .collect())
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    // A staged record (its row made ready as it arrived, its tree gone home) writes the row
    // the record itself writes: same columns, values and types, in both modes.
    #[test]
    fn a_staged_row_writes_what_its_record_writes_for_every_real_sample() {
        let dir = temp_dir("staged");
        let mut records: Vec<Value> = crate::json::real_samples().into_iter().map(|(_, v)| v).collect();
        records.push(serde_json::json!({"ContactId": "x", "n": 1.5, "b": true, "z": null, "a": [1, {"k": "é\n"}]}));
        records.push(serde_json::json!({"NoKey": 1}));
        // Names that run together the same way, one after another: each row has its own columns.
        records.push(serde_json::json!({"ContactId": "g1", "ab": 1, "c": 2}));
        records.push(serde_json::json!({"ContactId": "g2", "a": 3, "bc": 4}));
        records.push(serde_json::json!({"ContactId": "g3", "abc": 5}));
        for mode in [SqliteMode::NewerWins, SqliteMode::Append] {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let mut plain = writer(&dir, &format!("plain_{mode:?}"), mode);
            let mut staged = writer(&dir, &format!("staged_{mode:?}"), mode);
            let mut stager = staged.stager().unwrap();
            let items = |stage: Option<&mut Box<dyn Stager>>| -> Vec<Item> {
                let mut stage = stage;
                records
                    .iter()
                    .map(|doc| {
                        let record = crate::record::Record::detached(doc.clone());
                        let staged = stage.as_mut().and_then(|s| s.stage(&record));
                        Item { record, encoding: None, staged }
                    })
                    .collect()
            };
            let (plain_items, staged_items) = (items(None), items(Some(&mut stager)));
            assert!(staged_items.iter().all(|i| i.record.doc.is_object() == i.staged.is_some()));
            let a = rt.block_on(plain.write(&plain_items));
            let b = rt.block_on(staged.write(&staged_items));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{mode:?}");
            assert!(a.iter().any(|w| matches!(w, Written::Ok)));
            let (a, b) = (dump(&dir, &format!("plain_{mode:?}")), dump(&dir, &format!("staged_{mode:?}")));
            assert_eq!(a.len(), b.len());
            assert_eq!(a, b, "{mode:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    // A staged row holds its text and cells at their exact size, and shares its names with
    // the row staged before it when they are the same (most rows of a stream), not otherwise.
    #[test]
    fn a_staged_row_is_its_exact_size_and_shares_the_names_of_the_row_before_it() {
        let mut stager = RowStager::new(SqliteMode::NewerWins);
        let row = |stager: &mut RowStager, doc: Value| {
            let Value::Object(map) = &doc else { unreachable!() };
            stager.row(map, SqliteWriter::key_and_version(None, &doc).map(Some).ok_or(())).unwrap()
        };
        let a = row(&mut stager, serde_json::json!({"ContactId": "a", "n": 1, "s": "xyz", "o": {"k": [1]}}));
        let b = row(&mut stager, serde_json::json!({"ContactId": "bb", "n": 2.5, "s": "", "o": null}));
        let c = row(&mut stager, serde_json::json!({"ContactId": "c", "m": true}));
        let d = row(&mut stager, serde_json::json!({"ContactId": "d", "m": false}));
        assert!(Arc::ptr_eq(&a.names, &b.names) && Arc::ptr_eq(&c.names, &d.names));
        assert!(!Arc::ptr_eq(&b.names, &c.names));
        assert_eq!(&*a.names, "ContactIdnos");
        // In key order: "a" (ContactId), {"k":[1]} (o), "xyz" (s), then the key "a" again.
        assert_eq!(&a.text[..], b"a{\"k\":[1]}xyza");
        assert_eq!(a.fields.len(), 4);
        assert_eq!(std::mem::size_of::<Cell>(), 16);
        let prepared = b.prepared();
        assert_eq!(prepared.names.map(|n| &**n), Some("ContactIdnos"));
        // Names that run together the same way are not the same names.
        let e = row(&mut stager, serde_json::json!({"ContactId": "e", "ab": 1, "c": 2}));
        let f = row(&mut stager, serde_json::json!({"ContactId": "f", "a": 1, "bc": 2}));
        assert_eq!(e.names, f.names);
        assert!(!Arc::ptr_eq(&e.names, &f.names));
        assert_eq!(prepared.key_version.map(|kv| kv.map(|(k, _)| k)), Ok(Some("bb")));
    }

    // Rows with the same fields reuse the columns and statement of the row before them, but
    // a column added since changes the statement: the newer-wins upsert must then also clear
    // the new column (here `y` of contact b, which the newer version lacks). With the
    // statement of contact a's row (the table's width not in its key), b kept "yb".
    #[test]
    fn a_row_like_the_last_reuses_its_statement_until_a_column_is_added() {
        let dir = temp_dir("reuse");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut w = writer(&dir, "t", SqliteMode::NewerWins);
        let mut stager = w.stager().unwrap();
        let (t1, t2) = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z");
        let docs = [
            serde_json::json!({"ContactId": "a", "LastUpdateTimestamp": t1, "x": 1}),
            serde_json::json!({"ContactId": "b", "LastUpdateTimestamp": t1, "x": 2, "y": "yb"}),
            serde_json::json!({"ContactId": "b", "LastUpdateTimestamp": t2, "x": 3}),
            serde_json::json!({"ContactId": "c", "LastUpdateTimestamp": t1, "x": 4}),
        ];
        let items: Vec<Item> = docs
            .iter()
            .map(|doc| {
                let record = crate::record::Record::detached(doc.clone());
                let staged = stager.stage(&record);
                Item { record, encoding: None, staged }
            })
            .collect();
        let written = rt.block_on(w.write(&items));
        assert!(written.iter().all(|w| matches!(w, Written::Ok)), "{written:?}");
        let conn = rusqlite::Connection::open(dir.join("c.db")).unwrap();
        let mut stmt = conn.prepare("SELECT ContactId, x, quote(y) FROM t ORDER BY ContactId").unwrap();
        let rows: Vec<(String, i64, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap();
        let want = [("a", 1, "NULL"), ("b", 3, "NULL"), ("c", 4, "NULL")];
        assert_eq!(rows, want.map(|(k, x, y)| (k.to_string(), x, y.to_string())));
        let _ = std::fs::remove_dir_all(dir);
    }

    // The WAL is copied into the database while its sink still has it open, by the
    // checkpoint thread: 2 MB written is below the writing connection's own threshold
    // (16 MiB), so without the thread the database file would stay empty until the close.
    #[test]
    fn the_wal_is_checkpointed_by_a_thread_of_its_own_and_removed_at_the_last_close() {
        let dir = temp_dir("checkpoint");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut sink = writer(&dir, "t", SqliteMode::Append);
        let blob = "x".repeat(10_000);
        let items: Vec<Item> = (0..200)
            .map(|i| Item {
                record: crate::record::Record::detached(serde_json::json!({"n": i, "blob": blob})),
                encoding: None,
                staged: None,
            })
            .collect();
        assert!(rt.block_on(sink.write(&items)).iter().all(|w| matches!(w, Written::Ok)));
        let (file, wal) = (dir.join("c.db"), dir.join("c.db-wal"));
        let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(size(&wal) > 2_000_000, "the batch is in the WAL");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while size(&file) < 2_000_000 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint copied the WAL: {} bytes", size(&file));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(sink);
        assert!(!wal.exists(), "the last connection to close removes the WAL");
        assert_eq!(dump(&dir, "t").len(), 200);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_transaction_left_open_by_a_panicking_sink_is_rolled_back() {
        let dir = temp_dir("poisoned");
        let db = SharedDb::open(&dir.join("c.db")).unwrap();
        SharedDb::lock(&db).conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let held = db.clone();
        let _ = std::thread::spawn(move || {
            let guard = SharedDb::lock(&held);
            guard.conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)").unwrap();
            panic!("a sink panics mid-batch");
        })
        .join();
        let guard = SharedDb::lock(&db);
        assert!(guard.conn.is_autocommit(), "rolled back");
        let rows: i64 = guard.conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0);
        drop(guard);
        let _ = std::fs::remove_dir_all(dir);
    }
}
