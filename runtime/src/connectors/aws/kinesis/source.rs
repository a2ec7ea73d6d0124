//! The read loop of the `kinesis` source.
//!
//! Shards are listed (ListShards, paginated) at the start, every 30 s, and whenever a shard
//! ends. Each shard is read with GetShardIterator and GetRecords (up to 10,000 records per
//! call), at most one call per 200 ms per shard — under the five calls per second per shard
//! that all of a stream's consumers share — and after `poll_interval` when a call came back
//! empty. An expired iterator (they last 5 minutes) is renewed after the last record read;
//! throttling (`ProvisionedThroughputExceededException`, which also follows a 10 MiB
//! response for 5 s) backs the shard off with capped exponential backoff and full jitter.
//!
//! Resharding: a shard is read only once each of its parents still listed is done — read
//! to its end *and* acknowledged (checkpoint `SHARD_END`), as the KCL does — so records of
//! one partition key stay in order across a split or merge.
//!
//! Acknowledgements: every batch holds records of one shard only, and ends on a whole
//! Kinesis record (an aggregated record is never split across batches), so a shard's
//! checkpoint is the sequence number of the last record of its last fully acknowledged
//! batch, advanced in order by a [`Checkpointer`] per shard (at least once: docs/architecture.md#principles). A restart resumes
//! `AFTER_SEQUENCE_NUMBER` that checkpoint. Checkpoints are written at most once a second
//! and when the source stops; a crash in between re-reads at most that second's records.
//!
//! The loop is synchronous on the source's own thread (records enter the pipeline through
//! blocking sends); each AWS call runs on the AWS runtime.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::DateTime;
use bytes::Bytes;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::checkpoint::{LeaseTable, SHARD_END, Store, cmp_sequence};
use super::deaggregate;
use crate::ack::{Checkpointer, Completion};
use crate::connectors::aws::{Fault, Settings, block_on, classify, described};
use crate::contract::{Backoff, Env, Source, SourceConnector, SourceContext};
use crate::units::parse_duration;

/// GetRecords: at most 5 calls per second per shard (docs/aws-limits.md §2).
const MIN_CALL_GAP: Duration = Duration::from_millis(200);
/// GetRecords: at most 10,000 records per call.
const MAX_RECORDS_PER_CALL: i32 = 10_000;
/// How often shards are listed again, to find children after a reshard.
const LIST_EVERY: Duration = Duration::from_secs(30);
/// How often checkpoints are written while running.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record kept.
    TrimHorizon,
    /// Only records written from now on.
    Latest,
    /// Records from this time on (Unix epoch ms).
    AtTimestamp(i64),
}

#[derive(Debug, Clone, Copy)]
struct Parsed {
    start: Start,
    poll_interval: Duration,
}

fn parse(cfg: &KinesisSourceOptions) -> Result<Parsed, String> {
    if cfg.stream.trim().is_empty() {
        return Err("stream: name the Kinesis stream to read".into());
    }
    let start = match cfg.start.as_str() {
        "trim_horizon" => Start::TrimHorizon,
        "latest" => Start::Latest,
        "at_timestamp" => {
            let t =
                cfg.timestamp.as_deref().ok_or("timestamp: start = \"at_timestamp\" needs a timestamp (RFC 3339)")?;
            let at = OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|e| format!("timestamp: {t:?} is not an RFC 3339 time ({e})"))?;
            Start::AtTimestamp((at.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        other => return Err(format!("start: {other:?} is not one of \"trim_horizon\", \"latest\", \"at_timestamp\"")),
    };
    if cfg.timestamp.is_some() && !matches!(start, Start::AtTimestamp(_)) {
        return Err("timestamp: only used with start = \"at_timestamp\"".into());
    }
    let poll_interval = match &cfg.poll_interval {
        None => Duration::from_secs(1),
        Some(p) => parse_duration(p).map_err(|e| format!("poll_interval: {e}"))?,
    };
    Ok(Parsed { start, poll_interval })
}

/// `type = "kinesis"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceOptions {
    /// The stream name.
    pub stream: String,
    /// Where to start without a checkpoint: `trim_horizon` (default), `latest`, `at_timestamp`.
    #[serde(default = "default_start")]
    pub start: String,
    /// With `start = "at_timestamp"`: an RFC 3339 time.
    pub timestamp: Option<String>,
    /// Where checkpoints live: omitted, the state directory; `{ dynamodb = "<table>" }`, a
    /// DynamoDB table with the Kinesis Client Library's lease schema (created if missing;
    /// leases are taken and checkpoints written with conditional writes, but not yet
    /// balanced across a fleet: one process per stream).
    pub checkpoint: Option<KinesisCheckpoint>,
    /// How long to wait after a shard read came back empty. Default `"1s"`. (Reads of a
    /// shard are at least 200 ms apart whatever this says: 5 GetRecords per second per shard.)
    pub poll_interval: Option<String>,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
    /// Stop once every shard is read to its current end (for tests and backfills): an empty
    /// read at the tip (`MillisBehindLatest` 0) or the end of a closed shard. Default false.
    #[serde(default)]
    pub stop_at_end: bool,
}

fn default_start() -> String {
    "trim_horizon".into()
}

/// `checkpoint = { dynamodb = "<table>" }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisCheckpoint {
    /// A DynamoDB table holding shard leases and checkpoints (KCL schema).
    pub dynamodb: String,
}

/// Checks a `kinesis` source's settings without contacting AWS; the message names the key.
pub fn validate(cfg: &KinesisSourceOptions) -> Result<(), String> {
    parse(cfg).map(|_| ())
}

impl SourceConnector for KinesisSourceOptions {
    fn validate(&self, _env: &Env) -> Vec<String> {
        validate(self).err().into_iter().collect()
    }

    fn open(&self, env: &Env) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(KinesisSource::open(env, self)?))
    }
}

impl Source for KinesisSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        (*self).read(ctx)
    }
}

/// A `kinesis` source whose stream (and lease table) were found.
pub struct KinesisSource {
    node: String,
    stream: String,
    client: Client,
    parsed: Parsed,
    stop_at_end: bool,
    lease: Option<LeaseTable>,
}

fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ctrflow".into());
    format!("{host}:{}", std::process::id())
}

impl KinesisSource {
    /// Loads the AWS settings and checks that the stream exists (DescribeStreamSummary) and,
    /// with `checkpoint = { dynamodb = … }`, opens the lease table.
    pub fn open(env: &Env, cfg: &KinesisSourceOptions) -> anyhow::Result<KinesisSource> {
        let node = format!("sources.{}", env.id);
        let parsed = parse(cfg).map_err(anyhow::Error::msg)?;
        let settings = Settings::new(env.aws, cfg.endpoint_url.as_deref());
        let stream = cfg.stream.clone();
        let lease_table = cfg.checkpoint.as_ref().map(|c| c.dynamodb.clone());
        let stop_at_end = cfg.stop_at_end;
        block_on(async move {
            let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
            let client = Client::new(&sdk);
            let result = client.describe_stream_summary().stream_name(&stream).send().await;
            described(result, "stream", ("Kinesis stream", &stream), &settings, &sdk)?;
            let lease = match lease_table {
                None => None,
                Some(t) => Some(
                    LeaseTable::open(aws_sdk_dynamodb::Client::new(&sdk), &t, worker_id())
                        .await
                        .map_err(|e| anyhow::anyhow!("checkpoint.dynamodb: {e}"))?,
                ),
            };
            Ok(KinesisSource { node, stream, client, parsed, stop_at_end, lease })
        })
    }

    /// Reads until stopped (or, with `stop_at_end`, until every shard is read to its
    /// current end), then waits for the acknowledgements and saves the checkpoints.
    fn read(mut self, mut ctx: SourceContext) -> anyhow::Result<()> {
        let store = match self.lease.take() {
            Some(l) => Store::Dynamo(l),
            None => Store::file(&ctx.settings.state_dir, &ctx.id, &self.stream)?,
        };
        let mut reader = Reader {
            src: &self,
            store,
            saved: HashMap::new(),
            shards: BTreeMap::new(),
            batches: HashMap::new(),
            dirty: BTreeMap::new(),
            list_due: Instant::now(),
            listed_once: false,
            list_backoff: Backoff::default(),
        };
        reader.saved = block_on(reader.store.load())?;
        if !reader.saved.is_empty() {
            tracing::info!(source = %ctx.id, shards = reader.saved.len(), "Resuming from checkpoints.");
        }
        let result = reader.read(&mut ctx);
        // Let go of the output so the pipeline can drain, then wait for the acknowledgements.
        drop(std::mem::take(&mut ctx.output));
        let finish = reader.finish(&mut ctx);
        result.and(finish)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for its parents to be done.
    Waiting,
    /// Being read.
    Reading,
    /// Read to its end; waiting for the acknowledgements.
    Draining,
    /// Read and acknowledged to its end.
    Done,
}

struct Shard {
    id: String,
    parents: Vec<String>,
    range: Option<(u128, u128)>,
    /// A closed shard's last sequence number (from ListShards).
    ending: Option<String>,
    phase: Phase,
    initial: Start,
    iterator: Option<String>,
    last_read: Option<String>,
    next_poll: Instant,
    backoff: Backoff,
    caught_up: bool,
    /// `MillisBehindLatest` of the shard's latest read.
    behind_ms: Option<i64>,
    acks: Checkpointer<String>,
    next_local: u64,
    stalled_warned: bool,
}

struct Reader<'a> {
    src: &'a KinesisSource,
    store: Store,
    saved: HashMap<String, String>,
    shards: BTreeMap<String, Shard>,
    /// The source's batch sequence number → (shard, the shard's own batch number).
    batches: HashMap<u64, (String, u64)>,
    dirty: BTreeMap<String, String>,
    list_due: Instant,
    listed_once: bool,
    list_backoff: Backoff,
}

impl Reader<'_> {
    fn read(&mut self, ctx: &mut SourceContext) -> anyhow::Result<()> {
        let mut stop = ctx.shutdown().clone();
        let mut last_save = Instant::now();
        loop {
            self.take_completions(ctx, None);
            if !self.dirty.is_empty() && last_save.elapsed() >= SAVE_EVERY {
                self.save()?;
                last_save = Instant::now();
            }
            if ctx.shutdown().is_requested() {
                return Ok(());
            }
            if Instant::now() >= self.list_due {
                self.list()?;
            }
            self.start_eligible()?;
            if self.src.stop_at_end && self.listed_once && self.at_end() {
                tracing::info!(source = %ctx.id, "Every shard is read to its end (stop_at_end).");
                return Ok(());
            }
            let next = self
                .shards
                .values()
                .filter(|s| s.phase == Phase::Reading)
                .min_by_key(|s| s.next_poll)
                .map(|s| (s.id.clone(), s.next_poll));
            let now = Instant::now();
            match next {
                Some((id, at)) if at <= now => {
                    self.poll(ctx, &id)?;
                    self.report_lag(ctx);
                }
                other => {
                    let until = other.map_or(now + MIN_CALL_GAP, |(_, at)| at).min(self.list_due);
                    let completion = wait(ctx, &mut stop, until);
                    self.take_completions(ctx, completion);
                }
            }
        }
    }

    /// For `ctrflow top` and the metrics: how far behind the stream's tip the shards being
    /// read are (the furthest), and how many this process reads.
    fn report_lag(&self, ctx: &SourceContext) {
        let reading = || self.shards.values().filter(|s| s.phase == Phase::Reading);
        let behind = reading().filter_map(|s| s.behind_ms).max().unwrap_or(0).max(0) as u64;
        let c = &ctx.node.timing.counters;
        c.behind_ms.store(behind, std::sync::atomic::Ordering::Relaxed);
        c.shards.store(reading().count() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether every shard is read to its current end.
    fn at_end(&self) -> bool {
        self.shards.values().all(|s| match s.phase {
            Phase::Done | Phase::Draining => true,
            Phase::Reading => s.caught_up,
            Phase::Waiting => false,
        })
    }

    fn list(&mut self) -> anyhow::Result<()> {
        let src = self.src;
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                None => src.client.list_shards().stream_name(&src.stream),
                Some(t) => src.client.list_shards().next_token(t),
            };
            match block_on(req.send()) {
                Ok(page) => {
                    listed.extend(page.shards().iter().cloned());
                    token = page.next_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) => match classify(&e) {
                    Fault::Retry(msg) => {
                        let delay = self.list_backoff.next_delay().max(MIN_CALL_GAP);
                        tracing::warn!(source = %src.node, error = %msg, "ListShards failed; retrying.");
                        self.list_due = Instant::now() + delay;
                        return Ok(());
                    }
                    Fault::Fatal(msg) | Fault::Halt(msg) => {
                        anyhow::bail!("ListShards on {:?}: {msg}", src.stream)
                    }
                },
            }
        }
        self.list_backoff.reset();
        let ids: Vec<String> = listed.iter().map(|s| s.shard_id().to_string()).collect();
        for shard in &listed {
            let id = shard.shard_id().to_string();
            let ending = shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).map(str::to_string);
            if let Some(known) = self.shards.get_mut(&id) {
                known.ending = ending;
                continue;
            }
            let parents: Vec<String> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            let range = shard.hash_key_range().and_then(|r| {
                Some((r.starting_hash_key().parse::<u128>().ok()?, r.ending_hash_key().parse::<u128>().ok()?))
            });
            // A child found later, or one whose parent is still listed, is read from its
            // start: its parent's records end where its own begin.
            let has_parent = parents.iter().any(|p| ids.contains(p));
            let initial = if !self.listed_once && !has_parent { self.src.parsed.start } else { Start::TrimHorizon };
            let saved = self.saved.get(&id).cloned();
            let phase = if saved.as_deref() == Some(SHARD_END) { Phase::Done } else { Phase::Waiting };
            self.shards.insert(
                id.clone(),
                Shard {
                    id,
                    parents,
                    range,
                    ending,
                    phase,
                    initial,
                    iterator: None,
                    last_read: saved.filter(|s| s != SHARD_END),
                    next_poll: Instant::now(),
                    backoff: Backoff::default(),
                    caught_up: false,
                    behind_ms: None,
                    acks: Checkpointer::default(),
                    next_local: 0,
                    stalled_warned: false,
                },
            );
        }
        self.listed_once = true;
        self.list_due = Instant::now() + LIST_EVERY;
        Ok(())
    }

    fn start_eligible(&mut self) -> anyhow::Result<()> {
        let eligible: Vec<String> = self
            .shards
            .values()
            .filter(|s| s.phase == Phase::Waiting)
            .filter(|s| s.parents.iter().all(|p| self.shards.get(p).is_none_or(|parent| parent.phase == Phase::Done)))
            .map(|s| s.id.clone())
            .collect();
        for id in eligible {
            let parents = self.shards[&id].parents.clone();
            block_on(self.store.take(&id, &parents))?;
            let shard = self.shards.get_mut(&id).expect("listed");
            tracing::info!(source = %self.src.node, shard = %id, after = ?shard.last_read, start = ?shard.initial, "Reading shard.");
            shard.phase = Phase::Reading;
        }
        Ok(())
    }

    fn poll(&mut self, ctx: &mut SourceContext, id: &str) -> anyhow::Result<()> {
        let src = self.src;
        let shard = self.shards.get_mut(id).expect("polled shards are listed");
        if shard.iterator.is_none() {
            let req = src.client.get_shard_iterator().stream_name(&src.stream).shard_id(id);
            let req = match (&shard.last_read, shard.initial) {
                (Some(seq), _) => {
                    req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq)
                }
                (None, Start::TrimHorizon) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                (None, Start::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
                (None, Start::AtTimestamp(ms)) => {
                    req.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(ms))
                }
            };
            match block_on(req.send()) {
                Ok(out) => match out.shard_iterator() {
                    Some(it) => shard.iterator = Some(it.to_string()),
                    None => {
                        shard.phase = Phase::Draining;
                        return Ok(());
                    }
                },
                Err(e) => return back_off(&src.node, shard, classify(&e), "GetShardIterator"),
            }
        }
        let iterator = shard.iterator.clone().expect("set above");
        let out = match block_on(src.client.get_records().shard_iterator(iterator).limit(MAX_RECORDS_PER_CALL).send()) {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception()) => {
                tracing::debug!(source = %src.node, shard = %id, "Shard iterator expired; renewing it.");
                shard.iterator = None;
                return Ok(());
            }
            Err(e) => return back_off(&src.node, shard, classify(&e), "GetRecords"),
        };
        let behind = out.millis_behind_latest();
        let next = out.next_shard_iterator().map(str::to_string);
        let records = out.records;
        let empty = records.is_empty();
        for r in records {
            let seq = r.sequence_number;
            // A renewed iterator never goes back, but be sure: compare as integers.
            if shard.last_read.as_deref().is_some_and(|last| cmp_sequence(&seq, last).is_le()) {
                continue;
            }
            let arrival = r.approximate_arrival_timestamp.and_then(|t| t.to_millis().ok());
            let data = r.data.into_inner();
            match deaggregate::deaggregate(&data) {
                Some(subs) => {
                    for (i, sub) in subs.into_iter().enumerate() {
                        let keep = shard.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&sub.hash_key()));
                        if keep {
                            ctx.ingest(Bytes::from(sub.data), format!("{id}:{seq}:{i}"), arrival);
                        }
                    }
                }
                None => ctx.ingest(Bytes::from(data), format!("{id}:{seq}"), arrival),
            }
            shard.last_read = Some(seq);
            if ctx.batch_full() {
                flush(ctx, shard, &mut self.batches)?;
            }
        }
        flush(ctx, shard, &mut self.batches)?;
        shard.backoff.reset();
        shard.caught_up = behind == Some(0) || (empty && behind.is_none());
        shard.behind_ms = behind;
        shard.next_poll =
            Instant::now() + if empty { src.parsed.poll_interval.max(MIN_CALL_GAP) } else { MIN_CALL_GAP };
        // Kinesis ends a closed shard with a null iterator; an emulator may keep handing
        // out iterators, so a closed shard (ListShards gave its ending sequence number)
        // read empty to its end counts as ended too.
        let closed_and_read = shard.ending.as_deref().is_some_and(|end| {
            empty && (behind == Some(0) || shard.last_read.as_deref().is_some_and(|l| cmp_sequence(l, end).is_ge()))
        });
        match next.filter(|_| !closed_and_read) {
            Some(it) => shard.iterator = Some(it),
            None => {
                tracing::info!(source = %src.node, shard = %id, "Shard read to its end (closed by a reshard).");
                shard.iterator = None;
                shard.phase = Phase::Draining;
                self.list_due = Instant::now();
                self.check_drained(id);
            }
        }
        Ok(())
    }

    /// Takes the completions that arrived (and `first`), advancing shard checkpoints.
    fn take_completions(&mut self, ctx: &mut SourceContext, first: Option<Completion>) {
        let mut arrived: Vec<Completion> = first.into_iter().collect();
        while let Ok(c) = ctx.completions.try_recv() {
            arrived.push(c);
        }
        let mut touched: Vec<String> = Vec::new();
        for c in arrived {
            if let Some((shard, local)) = self.batches.remove(&c.seq)
                && let Some(s) = self.shards.get_mut(&shard)
            {
                s.acks.complete(Completion { seq: local, ok: c.ok });
                if !touched.contains(&shard) {
                    touched.push(shard);
                }
            }
        }
        for id in touched {
            let s = self.shards.get_mut(&id).expect("touched shards are listed");
            if let Some(pos) = s.acks.advance() {
                self.dirty.insert(id.clone(), pos);
            }
            if s.acks.is_stalled() && !s.stalled_warned {
                s.stalled_warned = true;
                tracing::warn!(source = %self.src.node, shard = %id, "A batch was not fully handled; the shard's checkpoint stays before it.");
            }
            self.check_drained(&id);
        }
    }

    /// A shard read to its end whose batches are all acknowledged is done: `SHARD_END`.
    fn check_drained(&mut self, id: &str) {
        let Some(s) = self.shards.get_mut(id) else { return };
        if s.phase == Phase::Draining && s.acks.in_flight() == 0 && !s.acks.is_stalled() {
            s.phase = Phase::Done;
            self.dirty.insert(id.to_string(), SHARD_END.to_string());
            self.list_due = Instant::now();
        }
    }

    fn save(&mut self) -> anyhow::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        block_on(self.store.save(&dirty)).map_err(|e| e.context("saving checkpoints"))
    }

    /// Waits for every batch in flight to be acknowledged (or abandoned), then saves.
    fn finish(&mut self, ctx: &mut SourceContext) -> anyhow::Result<()> {
        let mut stop = crate::flow::Shutdown::default(); // never requested: wait for the drain
        let mut last_save = Instant::now();
        loop {
            self.take_completions(ctx, None);
            let waiting = self.shards.values().any(|s| s.acks.in_flight() > 0 && !s.acks.is_stalled());
            if !waiting {
                break;
            }
            // Keep checkpointing while the sinks catch up, so a crash now re-reads little.
            if !self.dirty.is_empty() && last_save.elapsed() >= SAVE_EVERY {
                self.save()?;
                last_save = Instant::now();
            }
            let c = wait(ctx, &mut stop, Instant::now() + SAVE_EVERY);
            self.take_completions(ctx, c);
        }
        self.save()
    }
}

/// Closes the current batch of `shard` and registers its position.
fn flush(ctx: &mut SourceContext, shard: &mut Shard, batches: &mut HashMap<u64, (String, u64)>) -> anyhow::Result<()> {
    let global = ctx.next_seq();
    if ctx.flush_or_stop()?.is_some() {
        let local = shard.next_local;
        shard.next_local += 1;
        shard.acks.register(local, shard.last_read.clone().unwrap_or_default());
        batches.insert(global, (shard.id.clone(), local));
    }
    Ok(())
}

fn back_off(node: &str, shard: &mut Shard, fault: Fault, call: &str) -> anyhow::Result<()> {
    match fault {
        Fault::Retry(msg) => {
            let delay = shard.backoff.next_delay().max(MIN_CALL_GAP);
            tracing::warn!(source = %node, shard = %shard.id, retry = shard.backoff.attempts(), error = %msg, "Kinesis {call} throttled or failed; backing off.");
            shard.next_poll = Instant::now() + delay;
            Ok(())
        }
        Fault::Fatal(msg) | Fault::Halt(msg) => anyhow::bail!("{call} on shard {}: {msg}", shard.id),
    }
}

/// Waits until `until`, a completion, or a stop request, whichever comes first.
fn wait(ctx: &mut SourceContext, stop: &mut crate::flow::Shutdown, until: Instant) -> Option<Completion> {
    let deadline = tokio::time::Instant::from_std(until);
    let completions = &mut ctx.completions;
    block_on(async move {
        tokio::select! {
            c = completions.recv() => c,
            _ = tokio::time::sleep_until(deadline) => None,
            _ = stop.requested() => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> KinesisSourceOptions {
        toml::from_str(&format!("stream = \"s\"\n{extra}")).unwrap()
    }

    #[test]
    fn start_positions_are_checked_naming_the_key() {
        assert!(validate(&cfg("")).is_ok());
        assert!(validate(&cfg("start = \"latest\"")).is_ok());
        let e = validate(&cfg("start = \"at_timestamp\"")).unwrap_err();
        assert!(e.starts_with("timestamp:"), "{e}");
        assert!(validate(&cfg("start = \"at_timestamp\"\ntimestamp = \"2024-01-01T00:00:00Z\"")).is_ok());
        let e = validate(&cfg("start = \"oldest\"")).unwrap_err();
        assert!(e.starts_with("start:"), "{e}");
        let e = validate(&cfg("poll_interval = \"soon\"")).unwrap_err();
        assert!(e.starts_with("poll_interval:"), "{e}");
    }
}
