//! The sink side of the contract: a [`SinkConnector`] (a sink's options, checked and
//! opened) and the [`Writer`] it opens, which writes batches of [`Item`]s and says per item
//! what became of it ([`Written`]).
//!
//! A writer only writes: it chunks to its API's limits, retries transient failures with
//! [`Backoff`], and reports per item. Batching, encoding by a sink plugin, acknowledging and
//! dead-lettering are the runtime's sink node's ([`crate::sink`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Env;
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;
use crate::record::Record;
use crate::timing::{Counters, NodeTiming};

/// A sink type's options (the keys of `[sinks.<id>]` besides `type` and the keys every
/// sink has), read from TOML by the registry.
pub trait SinkConnector: std::fmt::Debug + Send + Sync {
    /// Problems the schema cannot catch, each naming its key (`mode: use "append" or …`).
    fn validate(&self, _env: &Env) -> Vec<String> {
        Vec::new()
    }

    /// Opens the destination before any record moves; fails fast if it is unusable.
    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>>;

    /// Where the data goes, for the summary at the end of a run.
    fn destination(&self, env: &Env) -> Destination;

    /// The most records one write carries by default (the destination's own limits).
    fn max_records(&self) -> usize;
}

/// The most records one write carries for a local file, which has no API limit of its own
/// (SQLite, whose waiting records are staged small, carries [`SQLITE_MAX_RECORDS`]). Not
/// more: the records a sink holds for its next write are a large share of a run's memory
/// (20-30 KB a record in memory). With the default batch size and channel capacity, 512
/// kept the throughput graph under 150 MB in 25 runs of 27; 256 always did, but paid 22%
/// on the demo, whose sinks sync every write (docs/performance.md).
pub const LOCAL_MAX_RECORDS: usize = 512;

/// The most records one SQLite write (one transaction) carries by default: twice
/// [`LOCAL_MAX_RECORDS`]. Every commit writes each page it changed to the WAL, and a
/// newer-wins table's key index is changed all over by random ContactIds, so a commit of
/// 512 contact records wrote about twice their bytes; 1,024 write a quarter less, and the
/// WAL fills (and the file's checkpoints stop the sinks for their syncs) less often. On the
/// throughput graph, wall time 0.88x the 512-record build's (faster in 8 pairs of 8), peak
/// RSS 104–123 MB against 91–99 MB, with the staged rows sized exactly (docs/performance.md,
/// twentieth round).
pub const SQLITE_MAX_RECORDS: usize = 1024;

/// What the runtime hands a sink connector when it opens.
#[derive(Clone)]
pub struct SinkOptions {
    /// `max_bytes` as written: most bytes per write, when the user capped it.
    pub max_bytes: Option<usize>,
    /// The run's stop signal: retries give up (leaving items unwritten) once it is set.
    pub shutdown: Shutdown,
    /// Where the writer reports that its destination is failing, and recovered.
    pub health: Health,
    /// `runtime.state_dir`: where a sink may keep what it must remember across runs.
    pub state_dir: std::path::PathBuf,
}

/// A writer's report on its destination: an infrastructure fault (throttling, a 5xx, a
/// timeout, a busy or full disk) is never a record's fault, so the writer retries it without
/// limit — and says so here, so the node shows as degraded (log, metric) meanwhile.
#[derive(Clone)]
pub struct Health {
    timing: Arc<NodeTiming>,
    key: Arc<str>,
    /// What is failing, for the log: a sink's destination or a transform's lookup table.
    subject: &'static str,
}

impl Health {
    /// The health of sink `key` (`sinks.db`)'s destination, kept in its counters.
    pub fn new(key: Arc<str>, timing: Arc<NodeTiming>) -> Self {
        Health { timing, key, subject: "Destination" }
    }

    /// The health of the lookup tables transform `key` (`transforms.enrich`) reads.
    pub fn lookups(key: Arc<str>, timing: Arc<NodeTiming>) -> Self {
        Health { timing, key, subject: "Lookup table" }
    }

    /// The node's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A write (or lookup) failed for a reason outside the records; it will be retried after
    /// `delay`.
    pub fn retrying(&self, error: &dyn std::fmt::Display, attempt: u32, delay: Duration) {
        let c = &self.timing.counters;
        Counters::add(&c.retries, 1);
        if c.degraded.swap(1, Ordering::Relaxed) == 0 || attempt.is_power_of_two() {
            tracing::warn!(node = %self.key, attempt, delay_ms = delay.as_millis() as u64, error = %error, "{} failing; retrying (records are kept, not dead-lettered).", self.subject);
        }
    }

    /// Writes (or lookups) go through again.
    pub fn recovered(&self) {
        if self.timing.counters.degraded.swap(0, Ordering::Relaxed) == 1 {
            tracing::info!(node = %self.key, "{} recovered.", self.subject);
        }
    }

    /// Retries an infrastructure fault without limit: `attempt` until it succeeds, backing
    /// off with jitter, reporting the node degraded meanwhile. `None` once the run is
    /// stopping and the destination still fails: the caller leaves its items unwritten (they
    /// stay unacknowledged and are read again).
    pub async fn retry<T, E: std::fmt::Display>(
        &self,
        shutdown: &Shutdown,
        mut attempt: impl FnMut() -> Result<T, E>,
    ) -> Option<T> {
        let mut backoff = Backoff::default();
        loop {
            match attempt() {
                Ok(v) => {
                    self.recovered();
                    return Some(v);
                }
                Err(e) => {
                    if shutdown.is_requested() && backoff.attempts() >= 3 {
                        tracing::warn!(node = %self.key, error = %e, "Stopping while the destination still fails; leaving records unwritten.");
                        return None;
                    }
                    let delay = backoff.next_delay();
                    self.retrying(&e, backoff.attempts(), delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Where a sink's records went: `<count> <unit> → <place>`, and a command to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// What one written record is there: `records`, `lines`, `items`, `rows`.
    pub unit: &'static str,
    /// The place: `SQLite out/demo.db table "voice"`.
    pub place: String,
    /// A command to paste to see the data, if there is one.
    pub look: Option<String>,
}

/// The future a [`Writer`] returns. Sinks run on their own thread's single-threaded
/// runtime, so it need not be `Send`.
pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Vec<Written>> + 'a>>;

/// An open destination.
pub trait Writer: Send {
    /// Writes `items`; one result per item, in order.
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a>;

    /// What makes this writer's records ready as they reach the sink, when it has one. Asked
    /// once, before the first write; used only by a sink without a plugin and without timing
    /// annotations (whose records change after they arrive). A writer that has one is taken
    /// to write many small staged records at a time, so a record that waits there as its
    /// tree counts at least `sink::TREE_BYTES` toward the gather bound.
    fn stager(&self) -> Option<Box<dyn Stager>> {
        None
    }

    /// Flushes and closes.
    fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// One record's encoding by a sink plugin, as the connectors use it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoding {
    /// Partition (hash) key.
    pub partition_key: Option<String>,
    /// Sort (range) key.
    pub sort_key: Option<String>,
    /// Named columns / item attributes, as JSON values.
    pub columns: Vec<(String, serde_json::Value)>,
    /// Bytes for byte-oriented destinations.
    pub payload: Option<Vec<u8>>,
}

/// A record in a writer's own form, made by its [`Stager`] (the writer downcasts it).
pub type Staged = Box<dyn std::any::Any + Send>;

/// Makes each record ready for its writer as it reaches the sink, on the sink node's thread.
///
/// Why: a sink holds the records of the write in progress and of the next one, up to
/// `max_records` each. Held as parsed trees (about 15 KB for a 3 KB contact record), that was
/// the largest share of a run's memory; held as what the writer needs (a SQLite row: names
/// and values in two buffers), it is about a quarter of it. Once a record is staged, its
/// tree goes back to its source to be freed at once when the record still has its original
/// bytes for the dead letters (docs/performance.md, "eleventh round").
pub trait Stager: Send {
    /// The writer's form of `record`, or `None` to leave the record as it is.
    fn stage(&mut self, record: &Record) -> Option<Staged>;
}

/// One record on its way out.
pub struct Item {
    /// The record.
    pub record: Record,
    /// Its encoding by the sink plugin, when the sink has one.
    pub encoding: Option<Encoding>,
    /// Its writer's form of it, when the writer stages records ([`Writer::stager`]).
    pub staged: Option<Staged>,
}

impl Item {
    /// An item not staged.
    pub fn new(record: Record, encoding: Option<Encoding>) -> Item {
        Item { record, encoding, staged: None }
    }

    /// The bytes a byte-oriented destination writes: the plugin's payload, or the
    /// record's JSON.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.payload_into(&mut out);
        out
    }

    /// The same bytes as [`Item::payload`], appended to `out`: a writer that reuses one
    /// buffer for every record allocates nothing per record.
    pub fn payload_into(&self, out: &mut Vec<u8>) {
        match self.encoding.as_ref().and_then(|e| e.payload.as_deref()) {
            Some(p) => out.extend_from_slice(p),
            None => self.record.doc.write_json(out),
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written and acknowledged by the destination.
    Ok,
    /// Refused for good (too large, rejected by the destination): dead-letter it.
    Refused { kind: DeadLetterKind, reason: String },
    /// Not written because the run is stopping: leave it unacknowledged.
    Unwritten,
    /// Not written on purpose (already sent: `once_per`): acknowledged, counted as dropped.
    Skipped,
}

/// Capped exponential backoff with full jitter (the AWS Architecture Blog's "full jitter").
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(50), cap: Duration::from_secs(10), attempt: 0 }
    }
}

impl Backoff {
    /// The next wait: uniform in `[0, min(cap, base * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        let ceiling = exp.min(self.cap);
        ceiling.mul_f64(jitter_fraction())
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniform float in [0, 1) from a per-thread xorshift generator seeded by the clock;
/// jitter needs spread, not cryptographic quality.
fn jitter_fraction() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        let mut b = Backoff::default();
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(10));
        }
        assert_eq!(b.attempts(), 20);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(50));
    }
}
