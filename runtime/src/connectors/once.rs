//! `once_per`: one notification per contact although Amazon Connect re-delivers updated
//! CTRs. A sink with `once_per = "ContactId"` (any field path) wraps its writer in
//! [`OnceWriter`], which remembers, in SQLite in the state directory, which keys were sent
//! and when, and skips a repeat for `remember` (default 7 days) after the first send.
//!
//! The order matters: a key is remembered only after the destination acknowledged the
//! send. A crash between the two repeats that alert on the next run; no order of events
//! loses one. Within one batch, two versions of one contact are sent one after the other:
//! the second is skipped once the first is acknowledged, and sent if the first was refused
//! (a record fault of that version only).
//!
//! What it does not do: coordinate a fleet. The memory is one file per sink and state
//! directory (`<state_dir>/<sink id>.once.sqlite`); processes with different state
//! directories remember separately. It also does not hold keys forever: after `remember`,
//! a key is forgotten, so a re-delivery later than that is sent again (Connect re-delivers
//! within minutes to hours; the default leaves a wide margin while keeping the file small).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ctrflow_plugin_sdk::path::FieldPath;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::contract::{Health, Item, SinkOptions, WriteFuture, Writer, Written};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;
use crate::record::now_ms;
use crate::units::parse_duration;

/// How long a key is remembered when `remember` is not set.
pub const DEFAULT_REMEMBER: &str = "7d";

/// Checks `once_per` and `remember` as a sink's options; problems name the key.
pub fn validate(once_per: Option<&str>, remember: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(p) = once_per
        && let Err(e) = FieldPath::parse(p)
    {
        problems.push(format!("once_per: {e}"));
    }
    match (once_per, remember) {
        (None, Some(_)) => problems.push("remember: only means something with `once_per`".into()),
        (_, Some(r)) => match parse_duration(r) {
            Ok(d) if d.is_zero() => problems.push("remember: must be longer than zero".into()),
            Ok(_) => {}
            Err(e) => problems.push(format!("remember: {e}")),
        },
        _ => {}
    }
    problems
}

/// Wraps `inner` in a [`OnceWriter`] when `once_per` is set; returns it as is otherwise.
pub fn wrap(
    inner: Box<dyn Writer>,
    id: &str,
    once_per: Option<&str>,
    remember: Option<&str>,
    options: &SinkOptions,
) -> anyhow::Result<Box<dyn Writer>> {
    let Some(once_per) = once_per else { return Ok(inner) };
    let field = FieldPath::parse(once_per).map_err(|e| anyhow::anyhow!("once_per: {e}"))?;
    let remember =
        parse_duration(remember.unwrap_or(DEFAULT_REMEMBER)).map_err(|e| anyhow::anyhow!("remember: {e}"))?;
    let memory = Memory::open(&options.state_dir, id, remember)?;
    Ok(Box::new(OnceWriter {
        inner,
        field,
        memory,
        health: options.health.clone(),
        shutdown: options.shutdown.clone(),
    }))
}

/// The keys a sink sent, with when: `sent(key TEXT PRIMARY KEY, sent_ms INTEGER)`.
pub struct Memory {
    conn: Connection,
    path: PathBuf,
    remember_ms: i64,
    expired_at_ms: i64,
}

/// How often forgotten keys are deleted from the file.
const EXPIRE_EVERY_MS: i64 = 60_000;

impl Memory {
    /// Opens (or creates) `<state_dir>/<id>.once.sqlite`.
    pub fn open(state_dir: &Path, id: &str, remember: Duration) -> anyhow::Result<Memory> {
        let path = state_dir.join(format!("{id}.once.sqlite"));
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            // WAL with NORMAL sync: a power loss may forget the last keys (→ a repeated alert),
            // never corrupt the file; a full sync per batch would cost more than the send.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, sent_ms INTEGER NOT NULL) WITHOUT ROWID",
            )?;
            Ok(conn)
        };
        std::fs::create_dir_all(state_dir)
            .map_err(|e| anyhow::anyhow!("once_per: cannot create the state directory {}: {e}", state_dir.display()))?;
        let conn = open().map_err(|e| anyhow::anyhow!("once_per: cannot open {}: {e}", path.display()))?;
        let mut memory = Memory { conn, path, remember_ms: remember.as_millis() as i64, expired_at_ms: 0 };
        memory.expire(now_ms())?;
        Ok(memory)
    }

    /// Where the memory lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `key` was sent within `remember` of `now_ms`.
    pub fn was_sent(&self, key: &str, now_ms: i64) -> rusqlite::Result<bool> {
        let sent: Option<i64> =
            self.conn.query_row("SELECT sent_ms FROM sent WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        Ok(sent.is_some_and(|at| at > now_ms - self.remember_ms))
    }

    /// Remembers `keys` as sent at `now_ms`, in one transaction.
    pub fn remember(&mut self, keys: &[&str], now_ms: i64) -> rusqlite::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached("INSERT OR REPLACE INTO sent (key, sent_ms) VALUES (?1, ?2)")?;
            for key in keys {
                put.execute(params![key, now_ms])?;
            }
        }
        tx.commit()?;
        if now_ms - self.expired_at_ms > EXPIRE_EVERY_MS {
            self.expire(now_ms)?;
        }
        Ok(())
    }

    /// Deletes keys older than `remember`, so the file stays the size of one window.
    fn expire(&mut self, now_ms: i64) -> rusqlite::Result<()> {
        self.conn.execute("DELETE FROM sent WHERE sent_ms <= ?1", [now_ms - self.remember_ms])?;
        self.expired_at_ms = now_ms;
        Ok(())
    }
}

/// A writer that sends each key once: see the module's documentation.
pub struct OnceWriter {
    inner: Box<dyn Writer>,
    field: FieldPath,
    memory: Memory,
    health: Health,
    shutdown: Shutdown,
}

impl OnceWriter {
    /// The record's key as text: a string as is, a number or boolean as written.
    fn key(&self, item: &Item) -> Option<String> {
        match self.field.get(&item.record.doc)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    async fn write_once(&mut self, items: &[Item]) -> Vec<Written> {
        let now = now_ms();
        let mut results: Vec<Option<Written>> = vec![None; items.len()];
        let mut keys: Vec<String> = Vec::with_capacity(items.len());
        let mut waiting: Vec<usize> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = self.key(item);
            keys.push(key.clone().unwrap_or_default());
            let Some(key) = key else {
                results[i] = Some(Written::Refused {
                    kind: DeadLetterKind::NoKey,
                    reason: format!("the record has no text or number at once_per {:?}", self.field.as_str()),
                });
                continue;
            };
            // A failing disk is the destination's fault, not the record's: retried without limit.
            let memory = &self.memory;
            match self.health.retry(&self.shutdown, || memory.was_sent(&key, now)).await {
                Some(true) => results[i] = Some(Written::Skipped),
                Some(false) => waiting.push(i),
                None => results[i] = Some(Written::Unwritten),
            }
        }

        // Rounds: the first waiting item of each key is sent; the others of that key wait for
        // its outcome (skipped if it was written, sent next round if it was refused).
        while !waiting.is_empty() {
            let mut round = Vec::new();
            let mut later = Vec::new();
            let mut taken = std::collections::HashSet::new();
            for &i in &waiting {
                if taken.insert(keys[i].as_str()) { round.push(i) } else { later.push(i) }
            }
            let subset: Vec<Item> =
                round.iter().map(|&i| Item::new(items[i].record.clone(), items[i].encoding.clone())).collect();
            let written = self.inner.write(&subset).await;
            // The copies' acknowledgements are ours to close; the originals' are the runtime's.
            for item in subset {
                item.record.ack.complete();
            }
            let mut sent: Vec<&str> = Vec::new();
            let mut unwritten: Vec<&str> = Vec::new();
            for (&i, w) in round.iter().zip(written) {
                match &w {
                    Written::Ok => sent.push(&keys[i]),
                    Written::Unwritten => unwritten.push(&keys[i]),
                    _ => {}
                }
                results[i] = Some(w);
            }
            let memory = &mut self.memory;
            let sent_at = now_ms();
            if self.health.retry(&self.shutdown, || memory.remember(&sent, sent_at)).await.is_none() {
                tracing::warn!(path = %self.memory.path().display(), keys = sent.len(), "Could not remember sent keys while stopping; their re-deliveries may be sent again.");
            }
            waiting.clear();
            for i in later {
                if sent.contains(&keys[i].as_str()) {
                    results[i] = Some(Written::Skipped);
                } else if unwritten.contains(&keys[i].as_str()) {
                    results[i] = Some(Written::Unwritten);
                } else {
                    waiting.push(i);
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Written::Unwritten)).collect()
    }
}

impl Writer for OnceWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_once(items))
    }

    fn close(&mut self) -> anyhow::Result<()> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::graph::Section;
    use crate::record::Record;
    use crate::timing::Timing;

    /// A destination that records what it was sent and answers as scripted by `status`.
    struct Recorder {
        sent: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Writer for Recorder {
        fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
            Box::pin(async move {
                items
                    .iter()
                    .map(|item| {
                        let version = item.record.doc["v"].as_str().unwrap_or_default().to_string();
                        self.sent.lock().unwrap().push(version.clone());
                        match item.record.doc["status"].as_str() {
                            Some("refuse") => Written::Refused { kind: DeadLetterKind::Rejected, reason: "no".into() },
                            Some("stop") => Written::Unwritten,
                            _ => Written::Ok,
                        }
                    })
                    .collect()
            })
        }
    }

    fn options(dir: &Path) -> SinkOptions {
        let timing = Timing::new(true, [("alerts".to_string(), Section::Sink, Vec::new())]);
        SinkOptions {
            max_bytes: None,
            shutdown: Shutdown::default(),
            health: Health::new(Arc::from("sinks.alerts"), timing.node("alerts")),
            state_dir: dir.to_path_buf(),
        }
    }

    fn item(contact: &str, v: &str, status: &str) -> Item {
        Item::new(Record::detached(json!({"ContactId": contact, "v": v, "status": status})), None)
    }

    fn writer(dir: &Path, remember: &str) -> (Box<dyn Writer>, Arc<std::sync::Mutex<Vec<String>>>) {
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let inner = Box::new(Recorder { sent: sent.clone() });
        (wrap(inner, "alerts", Some("ContactId"), Some(remember), &options(dir)).unwrap(), sent)
    }

    fn run(w: &mut Box<dyn Writer>, items: Vec<Item>) -> Vec<Written> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(w.write(&items));
        for i in items {
            i.record.ack.complete();
        }
        out
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ctrflow-once-{name}-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_redelivered_contact_is_sent_once_within_a_batch_and_across_batches_and_runs() {
        let dir = temp("redelivered");
        let (mut w, sent) = writer(&dir, "7d");
        let out = run(&mut w, vec![item("c1", "c1-v1", ""), item("c2", "c2-v1", ""), item("c1", "c1-v2", "")]);
        assert_eq!(out, [Written::Ok, Written::Ok, Written::Skipped]);
        let out = run(&mut w, vec![item("c2", "c2-v2", ""), item("c3", "c3-v1", "")]);
        assert_eq!(out, [Written::Skipped, Written::Ok]);
        drop(w);
        // A new process with the same state directory remembers.
        let (mut again, sent_again) = writer(&dir, "7d");
        assert_eq!(run(&mut again, vec![item("c1", "c1-v3", "")]), [Written::Skipped]);
        assert_eq!(*sent.lock().unwrap(), ["c1-v1", "c2-v1", "c3-v1"]);
        assert!(sent_again.lock().unwrap().is_empty());
    }

    #[test]
    fn a_refused_version_leaves_the_next_version_to_be_sent() {
        let dir = temp("refused");
        let (mut w, sent) = writer(&dir, "7d");
        let out = run(&mut w, vec![item("c1", "c1-v1", "refuse"), item("c1", "c1-v2", ""), item("c1", "c1-v3", "")]);
        assert!(matches!(out[0], Written::Refused { .. }), "{out:?}");
        assert_eq!(out[1..], [Written::Ok, Written::Skipped]);
        assert_eq!(*sent.lock().unwrap(), ["c1-v1", "c1-v2"]);
    }

    #[test]
    fn an_unwritten_send_is_not_remembered() {
        let dir = temp("unwritten");
        let (mut w, _) = writer(&dir, "7d");
        let out = run(&mut w, vec![item("c1", "c1-v1", "stop"), item("c1", "c1-v2", "")]);
        assert_eq!(out, [Written::Unwritten, Written::Unwritten]);
        // Read again next run: sent then.
        assert_eq!(run(&mut w, vec![item("c1", "c1-v1", "")]), [Written::Ok]);
    }

    #[test]
    fn keys_are_forgotten_after_remember() {
        let dir = temp("forget");
        let mut memory = Memory::open(&dir, "alerts", Duration::from_secs(60)).unwrap();
        memory.remember(&["c1"], 1_000_000).unwrap();
        assert!(memory.was_sent("c1", 1_000_000 + 59_000).unwrap());
        assert!(!memory.was_sent("c1", 1_000_000 + 61_000).unwrap());
        assert!(!memory.was_sent("c2", 1_000_000).unwrap());
    }

    #[test]
    fn a_record_without_the_key_is_dead_lettered_naming_the_path() {
        let dir = temp("nokey");
        let (mut w, _) = writer(&dir, "7d");
        let items = vec![Item::new(Record::detached(json!({"v": "x"})), None)];
        let out = run(&mut w, items);
        assert!(
            matches!(&out[0], Written::Refused { kind: DeadLetterKind::NoKey, reason } if reason.contains("ContactId")),
            "{out:?}"
        );
    }

    #[test]
    fn options_are_checked_naming_the_key() {
        assert!(validate(Some("ContactId"), Some("7d")).is_empty());
        assert!(validate(Some("ContactId"), None).is_empty());
        assert!(validate(None, Some("7d"))[0].starts_with("remember:"));
        assert!(validate(Some("ContactId"), Some("a week"))[0].starts_with("remember:"));
        assert!(validate(Some("ContactId"), Some("0s"))[0].starts_with("remember:"));
    }
}
