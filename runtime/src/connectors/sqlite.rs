//! The `sqlite` sink: a real embedded database, the local default.
//!
//! Columns: a sink plugin's `columns` when the sink has a plugin; otherwise every
//! top-level field of the record, with objects and arrays stored as JSON text (so a record
//! flattened by `ctr-flatten` becomes a plain row). The table is created on first use and
//! grows a column when a record brings a new field.
//!
//! `mode = "newer-wins"` keeps one row per key — the plugin's partition key, else
//! `ContactId` — holding the version with the greatest `LastUpdateTimestamp`; on a tie the
//! first written stays. It is one upsert per record (`ON CONFLICT … DO UPDATE … WHERE
//! excluded.version > version`), so several versions inside one batch resolve correctly
//! too. Two bookkeeping columns carry it: `_ctrflow_key` and `_ctrflow_version` (epoch ms).
//! A batch is one transaction: acknowledged after it commits.

use std::path::Path;

use ctrflow_plugin_sdk::ctr::parse_timestamp;
use rusqlite::types::Value as Sql;
use serde_json::Value;

use crate::config::{SqliteSinkConfig, WriteMode};
use crate::sink::{Backoff, Item, Written};

/// Writes rows to a SQLite table.
pub struct SqliteWriter {
    conn: rusqlite::Connection,
    table: String,
    mode: WriteMode,
    columns: Vec<String>,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn to_sql(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

impl SqliteWriter {
    /// Opens (creating) the database and table.
    pub fn open(cfg: &SqliteSinkConfig, base_dir: &Path) -> Result<Self, String> {
        if !matches!(cfg.mode, WriteMode::Append | WriteMode::NewerWins) {
            return Err("mode: use \"append\" or \"newer-wins\"".into());
        }
        let path = crate::config::clean(&base_dir.join(&cfg.path));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("path: cannot create {}: {e}", dir.display()))?;
        }
        let conn =
            rusqlite::Connection::open(&path).map_err(|e| format!("path: cannot open {}: {e}", path.display()))?;
        // WAL lets a user query the database while the pipeline writes it.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| e.to_string())?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| e.to_string())?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let t = quote(&cfg.table);
        let ddl = match cfg.mode {
            WriteMode::NewerWins => {
                format!("CREATE TABLE IF NOT EXISTS {t} (_ctrflow_key TEXT PRIMARY KEY, _ctrflow_version INTEGER)")
            }
            _ => format!("CREATE TABLE IF NOT EXISTS {t} (_ctrflow_written_at INTEGER)"),
        };
        conn.execute(&ddl, []).map_err(|e| format!("table: cannot create {}: {e}", cfg.table))?;
        let columns = {
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({t})")).map_err(|e| e.to_string())?;
            let names = stmt.query_map([], |row| row.get::<_, String>(1)).map_err(|e| e.to_string())?;
            names.filter_map(Result::ok).collect::<Vec<_>>()
        };
        if cfg.mode == WriteMode::NewerWins && !columns.iter().any(|c| c == "_ctrflow_key") {
            return Err(format!(
                "table: {} exists without the newer-wins key column; use another table or mode = \"append\"",
                cfg.table
            ));
        }
        Ok(SqliteWriter { conn, table: cfg.table.clone(), mode: cfg.mode, columns })
    }

    /// The row's columns, borrowed from the encoding or the record (never copied).
    fn row(item: &Item) -> Vec<(&str, &Value)> {
        match &item.encoding {
            Some(e) if !e.columns.is_empty() => e.columns.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            _ => match &*item.record.doc {
                Value::Object(map) => map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                other => vec![("record", other)],
            },
        }
    }

    fn key_and_version(item: &Item) -> Option<(String, i64)> {
        let doc = &item.record.doc;
        let key = item
            .encoding
            .as_ref()
            .and_then(|e| e.partition_key.clone())
            .or_else(|| doc.get("ContactId").and_then(Value::as_str).map(str::to_string))?;
        let version =
            doc.get("LastUpdateTimestamp").and_then(Value::as_str).and_then(parse_timestamp).unwrap_or(i64::MIN);
        Some((key, version))
    }

    fn ensure_columns(&mut self, rows: &[Vec<(&str, &Value)>]) -> rusqlite::Result<()> {
        for row in rows {
            for (name, _) in row {
                if !self.columns.iter().any(|c| c == name) {
                    self.conn.execute(&format!("ALTER TABLE {} ADD COLUMN {}", quote(&self.table), quote(name)), [])?;
                    self.columns.push(name.to_string());
                }
            }
        }
        Ok(())
    }

    fn write_once(&mut self, items: &[Item]) -> rusqlite::Result<Vec<Written>> {
        let rows: Vec<_> = items.iter().map(Self::row).collect();
        self.ensure_columns(&rows)?;
        let t = quote(&self.table);
        let tx = self.conn.transaction()?;
        let mut results = Vec::with_capacity(items.len());
        let now = crate::record::now_ms();
        for (item, row) in items.iter().zip(rows) {
            let mut names: Vec<String> = row.iter().map(|(k, _)| quote(k)).collect();
            let mut values: Vec<Sql> = row.iter().map(|(_, v)| to_sql(v)).collect();
            let sql = match self.mode {
                WriteMode::NewerWins => {
                    let Some((key, version)) = Self::key_and_version(item) else {
                        results.push(Written::Refused {
                            kind: "no_key",
                            reason: "newer-wins needs a ContactId (or a plugin partition key)".into(),
                        });
                        continue;
                    };
                    let updates: Vec<String> = names
                        .iter()
                        .map(|n| format!("{n} = excluded.{n}"))
                        .chain(["_ctrflow_version = excluded._ctrflow_version".to_string()])
                        .collect();
                    names.splice(0..0, ["_ctrflow_key".to_string(), "_ctrflow_version".to_string()]);
                    values.splice(0..0, [Sql::Text(key), Sql::Integer(version)]);
                    format!(
                        "INSERT INTO {t} ({}) VALUES ({}) ON CONFLICT(_ctrflow_key) DO UPDATE SET {} WHERE excluded._ctrflow_version > {t}._ctrflow_version",
                        names.join(", "),
                        vec!["?"; names.len()].join(", "),
                        updates.join(", ")
                    )
                }
                _ => {
                    names.push("_ctrflow_written_at".into());
                    values.push(Sql::Integer(now));
                    format!("INSERT INTO {t} ({}) VALUES ({})", names.join(", "), vec!["?"; names.len()].join(", "))
                }
            };
            tx.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(values))?;
            results.push(Written::Ok);
        }
        tx.commit()?;
        Ok(results)
    }

    /// Writes the batch in one transaction, retrying a busy or failing database.
    pub async fn write(&mut self, items: &[Item]) -> Vec<Written> {
        let mut backoff = Backoff::default();
        loop {
            match self.write_once(items) {
                Ok(results) => return results,
                Err(e) => {
                    if backoff.attempts() >= 8 {
                        tracing::error!(table = %self.table, error = %e, "SQLite write keeps failing; leaving the batch unwritten.");
                        return vec![Written::Unwritten; items.len()];
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(table = %self.table, error = %e, retry = backoff.attempts(), "SQLite write failed; retrying.");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
