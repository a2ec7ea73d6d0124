//! Running a sink: batching by count and linger, encoding (a sink plugin, or the record
//! itself), writing through a connector, then acknowledging — only after the write
//! succeeded — and timing delivery and end to end.
//!
//! Two threads per sink: the connector writes on one, a write at a time and in order,
//! while the node's own thread gathers the next write and acknowledges the last.
//!
//! A connector's [`Writer`] only writes: it chunks to its API's limits, retries transient
//! failures with capped exponential backoff and full jitter, and says per item whether it
//! was written, refused for good (→ dead letters, per `on_error`), or left unwritten
//! because the run is stopping (→ not acknowledged, so it is read again).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::contract::{Item, NodeHandle, Staged, Stager, Writer, Written};
use crate::flow::Batch;
use crate::host::SinkPlugin;
use crate::record::{Record, Returns, now_ms};
use crate::timing::Counters;
use crate::transform::dead_letter_kind;

/// A sink node, ready to run.
pub struct SinkNode {
    /// Its key, dead letters, clocks, stop signal and `on_error`.
    pub node: NodeHandle,
    /// Its id.
    pub id: String,
    /// Its input.
    pub rx: mpsc::Receiver<Batch>,
    /// The connector.
    pub writer: Box<dyn Writer>,
    /// The encoding plugin, if any.
    pub plugin: Option<SinkPlugin>,
    /// Most records per write.
    pub max_records: usize,
    /// How long a partial batch waits for more.
    pub linger: Duration,
    /// Add hop times to records under `_ctrflow_timing`.
    pub annotate: bool,
}

/// The most source text one write gathers, in bytes, at the least: with records far larger
/// than a contact record's 3 KB, `max_records` of them would be most of a run's memory.
/// 2 MiB is more than 512 contact records' text, so it only bounds large records: 3,000
/// records of 88 KB peaked at 475–586 MB without a byte bound (docs/performance.md, twelfth
/// round), 139–152 MB at 4 MiB and 114–120 MB at 2 MiB (16 KB records: 124–159 MB and
/// 106–138 MB, about 5% slower; fourteenth round). A sink of more records a write gathers
/// [`GATHER_BYTES_A_RECORD`] for each, up to [`GATHER_BYTES_MAX`] ([`gather_bytes`]).
pub const GATHER_BYTES: usize = 2 << 20;

/// The source text a write gathers for each record of its `max_records`, past
/// [`GATHER_BYTES`]: a contact record and some, so that a SQLite sink's 1,024 records a
/// write (`contract::SQLITE_MAX_RECORDS`) are not cut short by the bound, at 4 MiB.
pub const GATHER_BYTES_A_RECORD: usize = 4 << 10;

/// The most source text one write gathers, whatever its `max_records`: what a SQLite
/// sink's default 1,024 records gather, about 1,300 contact records. Without it a sink whose
/// user raised `max_records` (for larger files, say) gathered 4 KiB for each before it
/// wrote, twice over (the write being made and the next): with `max_records = 100000` on
/// the throughput graph's sinks, records of 88 KB peaked at 233–376 MB, 174–189 MB with
/// the bound at 8 MiB (docs/performance.md, twenty-second round).
pub const GATHER_BYTES_MAX: usize = 4 << 20;
const _: () = assert!(GATHER_BYTES <= GATHER_BYTES_MAX, "gather_bytes clamps between them");

/// The most source text one write of at most `max_records` records gathers.
pub fn gather_bytes(max_records: usize) -> usize {
    max_records.saturating_mul(GATHER_BYTES_A_RECORD).clamp(GATHER_BYTES, GATHER_BYTES_MAX)
}

/// The least a record that waits as its tree counts toward the gather bound where the writer
/// stages records: one without source text (the generator's, which cannot be staged, since
/// its dead letter would have nothing else to show), and any record of a sink whose plugin
/// or timing annotations keep it from staging. A contact record's tree is about 15 KB.
/// Twice [`GATHER_BYTES_A_RECORD`], so that a SQLite sink writes 512 such records at a time,
/// as it did before it wrote 1,024 staged ones; at 1,024 the 1,000,000-record generator demo
/// peaked at 135–149 MB instead of 105 (docs/performance.md, twentieth round).
pub const TREE_BYTES: usize = 2 * GATHER_BYTES_A_RECORD;

/// Records waiting for the next write, with when they arrived (per input batch), and their
/// writer's form of them when it stages records (one entry per record then, else none).
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    /// What `records` count toward the gather bound: their source text, in bytes, and at
    /// least `tree_bytes` for each that waits as its tree.
    bytes: usize,
    staged: Vec<Option<Staged>>,
    groups: Groups,
    stager: Option<Box<dyn Stager>>,
    /// [`TREE_BYTES`] where the writer stages records (even if this sink cannot use it), else 0.
    tree_bytes: usize,
}

impl Pending {
    /// Whether it makes a whole write: `max_records` records, or [`gather_bytes`] of their
    /// source text.
    fn full(&self, max_records: usize) -> bool {
        self.records.len() >= max_records || self.bytes >= gather_bytes(max_records)
    }

    /// When the first of its records arrived: its linger counts from then.
    fn first_at(&self) -> Option<Instant> {
        self.groups.first().map(|&(arrived, _, _)| arrived)
    }
}

/// When each input batch of a write arrived: (at the sink, read by the source, records).
type Groups = Vec<(Instant, Instant, usize)>;

/// A write handed to the writer's thread, and handed back with its results.
struct Job {
    items: Vec<Item>,
    groups: Groups,
}

/// A sink's writer thread, and the ends the node talks to it through.
struct WriterThread {
    /// Writes to make (one at a time).
    jobs: mpsc::Sender<Job>,
    /// Writes made, with their results.
    done: mpsc::Receiver<(Job, Vec<Written>)>,
    /// Ends with the connector's `close`.
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl SinkNode {
    /// Runs until the input closes and everything is written.
    ///
    /// The connector writes on a thread of its own, one write at a time and in order, while
    /// this one takes in the next batch and acknowledges (and frees) the last: a sink's
    /// throughput is its slowest part, not the sum of them (docs/performance.md).
    pub async fn run(mut self) -> anyhow::Result<()> {
        // A writer that stages records writes more of them at a time (a SQLite sink's 1,024),
        // so any record that waits as its tree there counts at least TREE_BYTES. Records a
        // plugin encodes or the sink annotates change after they arrive: not staged.
        let offered = self.writer.stager();
        let tree_bytes = if offered.is_some() { TREE_BYTES } else { 0 };
        let stager = offered.filter(|_| self.plugin.is_none() && !self.annotate);
        let WriterThread { jobs, done, thread } = self.start_writer()?;
        let result = self.feed(&jobs, done, Pending { stager, tree_bytes, ..Pending::default() }).await;
        drop(jobs);
        let closed = thread.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the sink's writer panicked")));
        // A writer that stopped says why first.
        closed?;
        result?;
        let unwritten = self.node.timing.counters.unwritten.load(std::sync::atomic::Ordering::Relaxed);
        if unwritten > 0 {
            anyhow::bail!(
                "{unwritten} record(s) left unwritten and unacknowledged (the destination kept failing while the run stopped); they are read again on the next run"
            );
        }
        Ok(())
    }

    /// Starts the writer's thread: it writes each job it is handed, hands it back with the
    /// results, and closes the connector when no more jobs come.
    fn start_writer(&mut self) -> anyhow::Result<WriterThread> {
        // One slot: the node hands a job over only when the writer is free.
        let (jobs, mut queued) = mpsc::channel::<Job>(1);
        let (finished, done) = mpsc::channel(1);
        let mut writer = std::mem::replace(&mut self.writer, Box::new(Handed));
        let span = tracing::Span::current();
        // `write:voice` beside the node's `sink:voice`: the id first, as Linux keeps 15 bytes.
        let thread = std::thread::Builder::new().name(format!("write:{}", self.id)).spawn(move || {
            let _entered = span.enter();
            // The connector's retries sleep and its clients need a reactor, which keeps
            // running between writes (an HTTP client's pooled connections see the server
            // close them).
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                while let Some(job) = queued.recv().await {
                    let results = writer.write(&job.items).await;
                    if finished.send((job, results)).await.is_err() {
                        break;
                    }
                }
            });
            writer.close()
        })?;
        Ok(WriterThread { jobs, done, thread })
    }

    /// Takes in batches and hands them to the writer as they fill (or linger), acknowledging
    /// each write as it comes back, until the input closes and the last write is back.
    async fn feed(
        &mut self,
        jobs: &mpsc::Sender<Job>,
        mut done: mpsc::Receiver<(Job, Vec<Written>)>,
        mut pending: Pending,
    ) -> anyhow::Result<()> {
        let (mut open, mut writing) = (true, false);
        loop {
            if !writing {
                writing = self.hand_over(&mut pending, jobs, &mut open).await?;
            }
            if !open && !writing && pending.records.is_empty() {
                return Ok(());
            }
            // Take more input while the batch has room (the writer busy with the last one);
            // a full batch waits for the writer, which holds the input back.
            let room = open && !pending.full(self.max_records);
            let due = pending.first_at().map(|t| t + self.linger);
            let linger = async {
                match due {
                    Some(d) if !writing => tokio::time::sleep_until(d.into()).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                back = done.recv(), if writing => {
                    let (job, results) = back.ok_or_else(|| anyhow::anyhow!("the sink's writer stopped"))?;
                    // The next write first: the writer works while this one is acknowledged.
                    writing = self.hand_over(&mut pending, jobs, &mut open).await?;
                    self.acknowledge(job, results).await;
                }
                batch = self.rx.recv(), if room => match batch {
                    Some(batch) => self.take(&mut pending, batch),
                    None => open = false,
                },
                () = linger => {}
            }
        }
    }

    /// Hands the pending records to the writer (which is free) when they make a write: a
    /// full one, or any once the input has closed or the linger has run out. Batches
    /// already waiting in the input join it first. Whether a write was handed over.
    async fn hand_over(
        &mut self,
        pending: &mut Pending,
        jobs: &mpsc::Sender<Job>,
        open: &mut bool,
    ) -> anyhow::Result<bool> {
        let full = pending.full(self.max_records);
        let due = !pending.records.is_empty()
            && (!*open || pending.first_at().is_some_and(|t| t + self.linger <= Instant::now()));
        if !full && !due {
            return Ok(false);
        }
        while *open && !pending.full(self.max_records) {
            match self.rx.try_recv() {
                Ok(batch) => self.take(pending, batch),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => *open = false,
            }
        }
        let job = self.job(pending).await;
        if job.items.is_empty() {
            // The sink's plugin refused every record.
            return Ok(false);
        }
        jobs.send(job).await.map_err(|_| anyhow::anyhow!("the sink's writer stopped"))?;
        Ok(true)
    }

    /// Adds an input batch to the pending write.
    fn take(&self, pending: &mut Pending, batch: crate::flow::Batch) {
        let now = Instant::now();
        if self.node.timing_enabled {
            self.node.timing.wait.record(now.saturating_duration_since(batch.sent_at), batch.records.len() as u64);
        }
        Counters::add(&self.node.timing.counters.records_in, batch.records.len() as u64);
        pending.groups.push((now, batch.read_at, batch.records.len()));
        // A record counts its source text; one that waits as its tree counts at least
        // `tree_bytes` (nothing where the writer does not stage).
        let text = |r: &Record| r.meta.raw.as_ref().map_or(0, bytes::Bytes::len);
        let mut records = batch.records;
        if let Some(stager) = &mut pending.stager {
            // Staged, a record's tree is not needed until its write: it goes home now.
            let mut returns = Returns::default();
            for record in &mut records {
                // Only a record that keeps its original bytes (all a dead letter needs besides
                // its ContactId) can let its tree go before its write.
                let staged = if record.meta.raw.is_some() { stager.stage(record) } else { None };
                if staged.is_some() {
                    pending.bytes += text(record);
                    returns.release(record);
                } else {
                    pending.bytes += text(record).max(pending.tree_bytes);
                }
                pending.staged.push(staged);
            }
            returns.send();
        } else {
            pending.bytes += records.iter().map(|r| text(r).max(pending.tree_bytes)).sum::<usize>();
        }
        pending.records.extend(records);
    }

    /// Makes the pending records a write: annotated, and encoded by the sink's plugin (a
    /// record it refuses goes to the dead letters here).
    async fn job(&mut self, pending: &mut Pending) -> Job {
        let records = std::mem::take(&mut pending.records);
        pending.bytes = 0;
        let groups = std::mem::take(&mut pending.groups);
        let mut staged = std::mem::take(&mut pending.staged).into_iter();
        let records = if self.annotate { records.into_iter().map(|r| self.annotated(r)).collect() } else { records };

        let mut items = Vec::with_capacity(records.len());
        match &self.plugin {
            None => items.extend(records.into_iter().map(|record| Item {
                record,
                encoding: None,
                staged: staged.next().flatten(),
            })),
            Some(plugin) => {
                for (record, enc) in plugin.encode(records) {
                    match enc {
                        Ok(e) => items.push(Item::new(record, Some(e))),
                        Err(f) => self.node.refuse(record, dead_letter_kind(f.kind), f.message).await,
                    }
                }
            }
        }
        Job { items, groups }
    }

    /// Acknowledges what a write wrote, dead-letters what it refused, and times it.
    async fn acknowledge(&mut self, job: Job, results: Vec<Written>) {
        let Job { items, groups } = job;
        let timed = self.node.timing_enabled;
        let (acked_at, acked_ms) = if timed { (Some(Instant::now()), now_ms()) } else { (None, 0) };
        let mut event_us = Vec::new();
        let mut arrival_us = Vec::new();
        let mut ok = 0u64;
        let mut unwritten = 0u64;
        let mut returns = Returns::default();
        for (item, result) in items.into_iter().zip(results) {
            match result {
                Written::Ok => {
                    ok += 1;
                    if timed {
                        let meta = &item.record.meta;
                        if let Some(e) = meta.event_ms {
                            event_us.push(((acked_ms - e).max(0) as u64) * 1000);
                        }
                        arrival_us.push(((acked_ms - meta.arrival_ms).max(0) as u64) * 1000);
                    }
                    returns.complete(item.record);
                }
                Written::Refused { kind, reason } => self.node.refuse(item.record, kind, reason).await,
                Written::Unwritten => unwritten += 1,
                Written::Skipped => self.node.drop_record(item.record),
            }
        }
        returns.send();
        if unwritten > 0 {
            // Unacknowledged: the source's checkpoint stays before them.
            Counters::add(&self.node.timing.counters.unwritten, unwritten);
            tracing::warn!(sink = %self.id, records = unwritten, "Records left unwritten and unacknowledged.");
        }
        Counters::add(&self.node.timing.counters.records_out, ok);
        if let Some(acked_at) = acked_at {
            for (arrived, read_at, n) in groups {
                self.node.timing.process.record(acked_at.saturating_duration_since(arrived), n as u64);
                self.node.timing.read_to_ack.record(acked_at.saturating_duration_since(read_at), n as u64);
            }
            self.node.timing.event_to_ack.record_many(event_us);
            self.node.timing.arrival_to_ack.record_many(arrival_us);
        }
    }

    fn annotated(&self, mut record: Record) -> Record {
        let meta = record.meta.clone();
        if let Value::Object(map) = record.doc.make_mut() {
            map.insert(
                "_ctrflow_timing".into(),
                json!({
                    "sink": self.id,
                    "event_ms": meta.event_ms,
                    "arrival_ms": meta.arrival_ms,
                    "read_ms": meta.read_ms,
                    "sink_ms": now_ms(),
                }),
            );
        }
        record
    }
}

/// What a sink node holds in its writer's place once the writer has moved to its own
/// thread (nothing writes through it).
struct Handed;

impl Writer for Handed {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> crate::contract::WriteFuture<'a> {
        Box::pin(std::future::ready(vec![Written::Unwritten; items.len()]))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, mpsc as std_mpsc};

    use serde_json::json;

    use super::*;
    use crate::config::OnError;
    use crate::contract::{NodeHandle, WriteFuture};
    use crate::dead_letter::DeadLetters;
    use crate::flow::Shutdown;
    use crate::graph::Section;
    use crate::timing::Timing;

    /// Sink `s` writing through `writer`, `max_records` a write (no linger), its input's
    /// sender, its clocks, and where its dead letters go.
    fn sink_node(
        writer: Box<dyn Writer>,
        max_records: usize,
    ) -> (SinkNode, mpsc::Sender<Batch>, Timing, mpsc::Receiver<crate::dead_letter::DeadLetter>) {
        let (tx, rx) = mpsc::channel(1);
        let (dead, letters) = DeadLetters::channel(8);
        let timing = Timing::new(true, [("s".to_string(), Section::Sink, Vec::new())]);
        let node = SinkNode {
            node: NodeHandle {
                key: "sinks.s".into(),
                dead,
                timing: timing.node("s"),
                timing_enabled: true,
                shutdown: Shutdown::default(),
                on_error: OnError::default(),
            },
            id: "s".into(),
            rx,
            writer,
            plugin: None,
            max_records,
            linger: Duration::from_secs(3600),
            annotate: false,
        };
        (node, tx, timing, letters)
    }

    /// Records what each write held (the documents' `n`), and holds its first write until
    /// released.
    struct Held {
        writes: Arc<Mutex<Vec<Vec<i64>>>>,
        started: std_mpsc::Sender<()>,
        release: Option<std_mpsc::Receiver<()>>,
    }

    impl Writer for Held {
        fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
            if let Some(release) = self.release.take() {
                let _ = self.started.send(());
                let _ = release.recv();
            }
            let ns = items.iter().filter_map(|i| i.record.doc.get("n").and_then(Value::as_i64)).collect();
            self.writes.lock().unwrap().push(ns);
            Box::pin(std::future::ready(vec![Written::Ok; items.len()]))
        }
    }

    #[test]
    fn a_sink_takes_in_its_next_batch_while_its_writer_writes_and_writes_in_order() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (started, on_start) = std_mpsc::channel();
        let (release, on_release) = std_mpsc::channel();
        let writer = Held { writes: writes.clone(), started, release: Some(on_release) };
        let (node, tx, timing, _letters) = sink_node(Box::new(writer), 1);
        let running = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(node.run())
        });
        let batch = |n: i64| Batch::new(vec![Record::detached(json!({ "n": n }))], Instant::now());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        rt.block_on(tx.send(batch(1))).unwrap();
        on_start.recv().unwrap(); // the writer holds batch 1
        rt.block_on(tx.send(batch(2))).unwrap(); // waits in the channel…
        // …which has room for batch 3 only once the sink took batch 2 in, the writer still
        // holding batch 1. (The limit only keeps a broken sink from hanging the test.)
        let third = rt.block_on(tx.send_timeout(batch(3), Duration::from_secs(60)));
        assert!(third.is_ok(), "the sink took nothing in while its writer wrote");
        release.send(()).unwrap();
        drop(tx);
        running.join().unwrap().unwrap();
        assert_eq!(*writes.lock().unwrap(), vec![vec![1], vec![2], vec![3]]);
        assert_eq!(timing.node("s").counters.records_out.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    // Records far larger than a contact record make a write once their text reaches the
    // sink's gather bound, however far below `max_records` they are: 2 MiB for a sink of a
    // few hundred records a write, 4 KiB a record for one of more (a SQLite sink's 1,024),
    // and never more than 4 MiB (a sink whose user raised `max_records` to 100,000).
    #[test]
    fn a_write_gathers_at_most_its_bound_of_source_text() {
        use crate::record::Meta;

        assert_eq!(gather_bytes(100), GATHER_BYTES);
        assert_eq!(gather_bytes(1024), 4 << 20);
        assert_eq!(gather_bytes(1025), GATHER_BYTES_MAX);
        assert_eq!(gather_bytes(100_000), GATHER_BYTES_MAX);
        // Each record is three quarters of the bound it is sent against, so two make a
        // write; without the ceiling a sink of 100,000 would take all five in one.
        for (max_records, bound) in [(100, 2 << 20), (1024, 4 << 20), (100_000, 4 << 20)] {
            let writes = Arc::new(Mutex::new(Vec::new()));
            let (unused, _) = std_mpsc::channel();
            let writer = Held { writes: writes.clone(), started: unused, release: None };
            let (node, tx, _timing, _letters) = sink_node(Box::new(writer), max_records);
            let running = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(node.run())
            });
            let size = bound * 3 / 4;
            let big = |n: i64| Record {
                doc: crate::doc::Doc::new(json!({ "n": n })),
                meta: Arc::new(Meta { raw: Some(bytes::Bytes::from(vec![b' '; size])), ..Meta::default() }),
                ack: crate::ack::AckRef::detached(),
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for n in 1..=5 {
                rt.block_on(tx.send(Batch::new(vec![big(n)], Instant::now()))).unwrap();
            }
            drop(tx);
            running.join().unwrap().unwrap();
            // Two records pass the bound; the last one is written when the input closes.
            assert_eq!(*writes.lock().unwrap(), vec![vec![1, 2], vec![3, 4], vec![5]], "max_records {max_records}");
        }
    }

    /// Per item written: its staged `n`, and the document the write was handed.
    type Seen = Arc<Mutex<Vec<(Option<i64>, Value)>>>;

    /// Stages every record as its `n`, and records what each write saw and how many records
    /// each write had.
    struct Staging {
        seen: Seen,
        sizes: Arc<Mutex<Vec<usize>>>,
    }

    struct StageN;

    impl crate::contract::Stager for StageN {
        fn stage(&mut self, record: &Record) -> Option<crate::contract::Staged> {
            record.doc.get("n").and_then(Value::as_i64).map(|n| Box::new(n) as crate::contract::Staged)
        }
    }

    impl Writer for Staging {
        fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
            self.sizes.lock().unwrap().push(items.len());
            let mut seen = self.seen.lock().unwrap();
            for item in items {
                let staged = item.staged.as_ref().and_then(|s| s.downcast_ref::<i64>()).copied();
                seen.push((staged, (*item.record.doc).clone()));
            }
            Box::pin(std::future::ready(vec![Written::Ok; items.len()]))
        }

        fn stager(&self) -> Option<Box<dyn crate::contract::Stager>> {
            Some(Box::new(StageN))
        }
    }

    // Where the writer stages records, one that waits as its tree (no source text, or a sink
    // that cannot stage) counts TREE_BYTES toward the gather bound: 1,024 records a write
    // become 512. Where the writer does not stage, records without text count nothing.
    #[test]
    fn records_waiting_as_trees_where_others_wait_staged_make_smaller_writes() {
        // 11 batches of 100 records without source text, 1,024 records a write (a 4 MiB
        // bound). Where records are staged, 100 of these count 800 KiB, so the bound closes a
        // write at the sixth batch.
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (node, tx, _timing, _letters) =
            sink_node(Box::new(Staging { seen: Seen::default(), sizes: sizes.clone() }), 1024);
        send_eleven_batches(node, tx, None);
        assert_eq!(*sizes.lock().unwrap(), vec![600, 500]);

        // Where none is, they count nothing: only `max_records` closes the write.
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (unused, _) = std_mpsc::channel();
        let held = Held { writes: writes.clone(), started: unused, release: None };
        let (node, tx, _timing, _letters) = sink_node(Box::new(held), 1024);
        send_eleven_batches(node, tx, None);
        assert_eq!(writes.lock().unwrap().iter().map(Vec::len).collect::<Vec<_>>(), vec![1100]);

        // A sink that annotates its records cannot stage them, even with their source text:
        // where its writer stages, each counts TREE_BYTES all the same (a few bytes of text
        // alone would let 1,024 trees wait).
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (mut node, tx, _timing, _letters) =
            sink_node(Box::new(Staging { seen: Seen::default(), sizes: sizes.clone() }), 1024);
        node.annotate = true;
        send_eleven_batches(node, tx, Some("{}"));
        assert_eq!(*sizes.lock().unwrap(), vec![600, 500]);

        /// Each record with `raw` as its source text, if any.
        fn send_eleven_batches(node: SinkNode, tx: mpsc::Sender<Batch>, raw: Option<&'static str>) {
            let running = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(node.run())
            });
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for batch in 0..11 {
                let records = (0..100)
                    .map(|n| {
                        let mut record = Record::detached(json!({ "n": batch * 100 + n }));
                        if let Some(raw) = raw {
                            let meta = crate::record::Meta {
                                raw: Some(bytes::Bytes::from_static(raw.as_bytes())),
                                ..Default::default()
                            };
                            record.meta = Arc::new(meta);
                        }
                        record
                    })
                    .collect();
                rt.block_on(tx.send(Batch::new(records, Instant::now()))).unwrap();
            }
            drop(tx);
            running.join().unwrap().unwrap();
        }
    }

    // A staged record's tree goes home as soon as the sink takes it in, before its write; the
    // write gets the staged form and a stand-in holding the ContactId (for a dead letter,
    // whose rest comes from the original bytes). A record without original bytes keeps its
    // tree and is not staged.
    #[test]
    fn a_staged_record_sends_its_tree_home_when_it_arrives_and_keeps_its_contact_id() {
        use crate::ack::AckBatch;
        use crate::record::Meta;

        let seen = Arc::new(Mutex::new(Vec::new()));
        let (node, tx, _timing, _letters) =
            sink_node(Box::new(Staging { seen: seen.clone(), sizes: Arc::default() }), 3);
        let (done, _completions) = mpsc::unbounded_channel();
        let (home, mut back) = mpsc::unbounded_channel();
        let ack = AckBatch::returning(0, done, home);
        let record = |n: i64, raw: Option<&str>| Record {
            doc: crate::doc::Doc::new(json!({ "ContactId": format!("c{n}"), "n": n })),
            meta: Arc::new(Meta { raw: raw.map(|r| bytes::Bytes::from(r.to_string())), ..Meta::default() }),
            ack: ack.record(),
        };
        let records = vec![record(1, Some("one")), record(2, Some("two")), record(3, None)];
        drop(ack);
        let running = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(node.run())
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(tx.send(Batch::new(records, Instant::now()))).unwrap();
        drop(tx);
        running.join().unwrap().unwrap();

        let ns =
            |docs: Vec<crate::doc::Doc>| docs.iter().map(|d| d.get("n").and_then(Value::as_i64)).collect::<Vec<_>>();
        // First home: the staged records' trees, sent as they arrived.
        assert_eq!(ns(back.try_recv().unwrap()), vec![Some(1), Some(2)]);
        // Then, once written, what the records held: the stand-ins and the unstaged tree.
        assert_eq!(ns(back.try_recv().unwrap()), vec![None, None, Some(3)]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Some(1), json!({ "ContactId": "c1" })),
                (Some(2), json!({ "ContactId": "c2" })),
                (None, json!({ "ContactId": "c3", "n": 3 })),
            ]
        );
    }
}
