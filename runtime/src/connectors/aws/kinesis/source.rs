//! The read loop of the `kinesis` source.
//!
//! Shards are listed (ListShards, paginated) at the start, every 30 s, and whenever a shard
//! ends. Each shard is read with GetShardIterator and GetRecords (up to 10,000 records per
//! call), at most one call per 200 ms per shard — under the five calls per second per shard
//! that all of a stream's consumers share — and after `poll_interval` when a call came back
//! empty. Throttling (`ProvisionedThroughputExceededException`, which also follows a 10 MiB
//! response for 5 s) backs the shard off with capped exponential backoff and full jitter.
//!
//! Positions never skip: an expired iterator (they last 5 minutes) is renewed after the last
//! record read — never at `LATEST` or the start position again (a shard started at `LATEST`
//! and still empty renews at the time its first iterator was taken). A lease checkpoint
//! inside a KPL aggregated record (`checkpointSubSequenceNumber`) resumes at that record,
//! skipping its sub-records up to the checkpoint's.
//!
//! End of a closed shard: Kinesis ends it with a null `NextShardIterator`. An emulator may
//! keep handing out iterators (moto does), so a closed shard (ListShards gave its
//! `EndingSequenceNumber`) also ends once a read comes back empty after the record with that
//! sequence number was read — which on Kinesis, where the ending number bounds the shard's
//! range, can only mean nothing is left either.
//!
//! Resharding: a shard is read only once each of its parents still listed is done — read
//! to its end *and* acknowledged (checkpoint `SHARD_END`), as the KCL does — so records of
//! one partition key stay in order across a split or merge.
//!
//! Acknowledgements: every batch holds records of one shard only, and ends on a whole
//! Kinesis record (an aggregated record is never split across batches), so a shard's
//! checkpoint is the sequence number of the last record of its last fully acknowledged
//! batch, advanced in order by a [`Checkpointer`] per shard (at least once:
//! docs/architecture.md#principles). A restart resumes after that checkpoint. Checkpoints are
//! written at most once a second and when the source stops; a crash in between re-reads at
//! most that second's records. A batch abandoned in the pipeline (a task that died) would
//! hold the shard's checkpoint — and its children — back for good, so the shard is read
//! again from its last checkpoint instead, as a KCL worker does after a failure.
//!
//! Where checkpoints live: a file in the state directory ([`super::checkpoint`]; one process
//! per stream), or a KCL lease table shared by a fleet ([`super::coordinator`]), where this
//! loop reads only the shards whose leases the process holds, and stops reading one the
//! moment its lease is gone.
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

use super::checkpoint::{SHARD_END, Store, cmp_sequence};
use super::coordinator::{Fleet, FleetConfig};
use super::deaggregate;
use super::lease::{Lease, LeaseTable};
use crate::ack::{Checkpointer, Completion};
use crate::connectors::aws::{Fault, Settings, block_on, classify, described};
use crate::contract::{Backoff, Env, SAVE_EVERY, Source, SourceConnector, SourceContext};
use crate::units::parse_duration;

/// GetRecords: at most 5 calls per second per shard (docs/aws-api-quotas.md §2).
const MIN_CALL_GAP: Duration = Duration::from_millis(200);
/// GetRecords: at most 10,000 records per call.
const MAX_RECORDS_PER_CALL: i32 = 10_000;
/// How often shards are listed again, to find children after a reshard.
const LIST_EVERY: Duration = Duration::from_secs(30);

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

/// The lease duration when none is set: the KCL's default `failoverTimeMillis`.
const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Parsed {
    start: Start,
    poll_interval: Duration,
    lease_duration: Duration,
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
    let fleet = cfg.checkpoint.is_some();
    if !fleet && cfg.worker_id.is_some() {
        return Err("worker_id: only used with checkpoint = { dynamodb = \"<table>\" }".into());
    }
    if !fleet && cfg.lease_duration.is_some() {
        return Err("lease_duration: only used with checkpoint = { dynamodb = \"<table>\" }".into());
    }
    if cfg.worker_id.as_deref().is_some_and(|w| w.trim().is_empty()) {
        return Err("worker_id: must not be empty".into());
    }
    let lease_duration = match &cfg.lease_duration {
        None => DEFAULT_LEASE_DURATION,
        Some(d) => parse_duration(d).map_err(|e| format!("lease_duration: {e}"))?,
    };
    if lease_duration < Duration::from_secs(1) {
        return Err(format!("lease_duration: {lease_duration:?} is too short; at least 1s (the default is 10s)"));
    }
    Ok(Parsed { start, poll_interval, lease_duration })
}

/// `type = "kinesis"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceOptions {
    /// The stream name.
    pub stream: String,
    /// Where to start without a checkpoint: `trim_horizon` (default), `latest`, `at_timestamp`.
    #[serde(default = "default_start")]
    pub start: String,
    /// With `start = "at_timestamp"`: an RFC 3339 time.
    pub timestamp: Option<String>,
    /// Where checkpoints live: omitted, the state directory (one process per stream);
    /// `{ dynamodb = "<table>" }`, a DynamoDB table with the Kinesis Client Library's lease
    /// schema (created if missing), shared by every process reading the stream with it: the
    /// shards are split among them, and taken over when one stops or dies (docs/aws.md,
    /// "Running a fleet").
    pub checkpoint: Option<KinesisCheckpoint>,
    /// With a lease table: this process's name in it (`leaseOwner`), unique per running
    /// process. Default: host name and process id. A fixed one lets a restarted process take
    /// its own leases back at once instead of waiting for them to expire.
    pub worker_id: Option<String>,
    /// With a lease table: how long a lease lives without renewal before another process
    /// takes it over (the KCL's `failoverTimeMillis`). Leases are renewed every third of it.
    /// Default `"10s"`; at least `"1s"`.
    pub lease_duration: Option<String>,
    /// How long to wait after a shard read came back empty. Default `"1s"`. (Reads of a
    /// shard are at least 200 ms apart whatever this says: 5 GetRecords per second per shard.)
    pub poll_interval: Option<String>,
    /// Overrides `[aws] endpoint_url`.
    pub endpoint_url: Option<String>,
    /// Stop once every shard is read to its current end (for tests and backfills): an empty
    /// read at the tip (`MillisBehindLatest` 0) or the end of a closed shard. With a lease
    /// table, only once this process holds every unfinished lease. Default false.
    #[serde(default)]
    pub stop_at_end: bool,
}

fn default_start() -> String {
    "trim_horizon".into()
}

/// `checkpoint = { dynamodb = "<table>" }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
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
    worker_id: String,
}

fn default_worker_id() -> String {
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
        let worker_id = cfg.worker_id.clone().unwrap_or_else(default_worker_id);
        block_on(async move {
            let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
            let client = Client::new(&sdk);
            let result = client.describe_stream_summary().stream_name(&stream).send().await;
            described(result, "stream", ("Kinesis stream", &stream), &settings, &sdk)?;
            let lease = match lease_table {
                None => None,
                Some(t) => Some(
                    LeaseTable::open(aws_sdk_dynamodb::Client::new(&sdk), &t)
                        .await
                        .map_err(|e| anyhow::anyhow!("checkpoint.dynamodb: {e}"))?,
                ),
            };
            Ok(KinesisSource { node, stream, client, parsed, stop_at_end, lease, worker_id })
        })
    }

    /// Reads until stopped (or, with `stop_at_end`, until every shard is read to its
    /// current end), then waits for the acknowledgements and saves the checkpoints; in a
    /// fleet, then gives its leases up.
    fn read(mut self, mut ctx: SourceContext) -> anyhow::Result<()> {
        let positions = match self.lease.take() {
            Some(table) => {
                let initial = match self.parsed.start {
                    Start::TrimHorizon => "TRIM_HORIZON",
                    Start::Latest => "LATEST",
                    Start::AtTimestamp(_) => "AT_TIMESTAMP",
                };
                Positions::Fleet(Fleet::start(
                    table,
                    FleetConfig {
                        worker_id: self.worker_id.clone(),
                        lease_duration: self.parsed.lease_duration,
                        initial,
                        kinesis: self.client.clone(),
                        stream: self.stream.clone(),
                    },
                    ctx.node.timing.clone(),
                ))
            }
            None => Positions::File(Store::file(&ctx.settings.state_dir, &ctx.id, &self.stream)?),
        };
        let saved = match &positions {
            Positions::File(store) => store.load(),
            Positions::Fleet(_) => HashMap::new(),
        };
        if !saved.is_empty() {
            tracing::info!(source = %ctx.id, shards = saved.len(), "Resuming from checkpoints.");
        }
        let mut reader = Reader {
            src: &self,
            positions,
            saved,
            shards: BTreeMap::new(),
            batches: HashMap::new(),
            dirty: BTreeMap::new(),
            list_due: Instant::now(),
            listed_at: None,
            listed_once: false,
            list_backoff: Backoff::default(),
            finishing: false,
        };
        let result = reader.read(&mut ctx);
        // Let go of the output so the pipeline can drain, then wait for the acknowledgements.
        drop(std::mem::take(&mut ctx.output));
        let finish = reader.finish(&mut ctx);
        if let Positions::Fleet(fleet) = &mut reader.positions {
            let stats = fleet.stats();
            tracing::info!(
                source = %ctx.id,
                takes = stats.takes.load(std::sync::atomic::Ordering::Relaxed),
                steals = stats.steals.load(std::sync::atomic::Ordering::Relaxed),
                losses = stats.losses.load(std::sync::atomic::Ordering::Relaxed),
                renew_failures = stats.renew_failures.load(std::sync::atomic::Ordering::Relaxed),
                "Leaving the fleet."
            );
            fleet.release_all();
        }
        result.and(finish)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for its parents to be done (or, in a fleet, for its lease).
    Waiting,
    /// Being read.
    Reading,
    /// Read to its end; waiting for the acknowledgements.
    Draining,
    /// Read and acknowledged to its end.
    Done,
}

/// Where a shard's reading starts before any record of it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum From {
    /// The configured start (no checkpoint yet).
    Start(Start),
    /// After this record (a file checkpoint, or the source's own: whole records).
    After(String),
    /// At this record, skipping its KPL sub-records up to this index (a lease checkpoint
    /// with `checkpointSubSequenceNumber`, as the KCL resumes).
    At(String, i64),
}

impl From {
    /// The checkpoint of a lease, as the KCL writes it.
    fn of_lease(lease: &Lease, start: Start) -> From {
        match lease.checkpoint.as_deref() {
            None | Some("TRIM_HORIZON") => From::Start(Start::TrimHorizon),
            Some("LATEST") => From::Start(Start::Latest),
            // The KCL keeps the timestamp in its configuration, not in the lease.
            Some("AT_TIMESTAMP") => match start {
                Start::AtTimestamp(ms) => From::Start(Start::AtTimestamp(ms)),
                _ => From::Start(Start::TrimHorizon),
            },
            Some(seq) => From::At(seq.to_string(), lease.sub),
        }
    }

    fn seq(&self) -> Option<&str> {
        match self {
            From::Start(_) => None,
            From::After(s) | From::At(s, _) => Some(s),
        }
    }
}

/// A checkpoint: the last record done, and the index of its last sub-record done (0 for a
/// record that is not aggregated; the KCL's `checkpointSubSequenceNumber`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pos {
    seq: String,
    sub: i64,
}

impl Pos {
    fn shard_end() -> Pos {
        Pos { seq: SHARD_END.to_string(), sub: 0 }
    }
}

struct Shard {
    id: String,
    parents: Vec<String>,
    range: Option<(u128, u128)>,
    /// A closed shard's last sequence number (from ListShards).
    ending: Option<String>,
    phase: Phase,
    /// Where reading starts while nothing was read.
    from: From,
    /// Where to read again from after an abandoned batch: the last checkpoint.
    committed: From,
    iterator: Option<String>,
    /// The last record read, and the index of its last sub-record.
    last_read: Option<String>,
    last_sub: i64,
    next_poll: Instant,
    backoff: Backoff,
    caught_up: bool,
    /// `MillisBehindLatest` of the shard's latest read.
    behind_ms: Option<i64>,
    acks: Checkpointer<Pos>,
    next_local: u64,
    stalled_warned: bool,
    /// In a fleet: the `leaseCounter` the lease had when this process took it.
    lease_counter: Option<i64>,
}

impl Shard {
    /// Forgets everything read and in flight; reading starts again at `from`.
    fn restart(&mut self, from: From) {
        self.committed = from.clone();
        self.from = from;
        self.iterator = None;
        self.last_read = None;
        self.last_sub = 0;
        self.caught_up = false;
        self.acks = Checkpointer::default();
        self.next_local = 0;
        self.stalled_warned = false;
    }
}

/// Where checkpoints go.
enum Positions {
    /// A file in the state directory: this process reads every shard.
    File(Store),
    /// A lease table shared by a fleet: this process reads the shards it holds.
    Fleet(Fleet),
}

struct Reader<'a> {
    src: &'a KinesisSource,
    positions: Positions,
    /// File checkpoints loaded at the start: shard → sequence number or `SHARD_END`.
    saved: HashMap<String, String>,
    shards: BTreeMap<String, Shard>,
    /// The source's batch sequence number → (shard, the shard's own batch number).
    batches: HashMap<u64, (String, u64)>,
    dirty: BTreeMap<String, Pos>,
    list_due: Instant,
    listed_at: Option<Instant>,
    listed_once: bool,
    list_backoff: Backoff,
    /// Stopping: an abandoned batch is no longer read again.
    finishing: bool,
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
            match &self.positions {
                Positions::File(_) => self.start_eligible(),
                Positions::Fleet(_) => self.follow_leases(),
            }
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

    /// Whether every shard (in a fleet: every shard of the stream, all of them held here or
    /// finished) is read to its current end.
    fn at_end(&self) -> bool {
        let fleet = match &self.positions {
            Positions::File(_) => None,
            Positions::Fleet(f) => Some(f),
        };
        let read = self.shards.values().all(|s| match s.phase {
            Phase::Done | Phase::Draining => true,
            Phase::Reading => s.caught_up,
            Phase::Waiting => fleet.is_some(),
        });
        match fleet {
            None => read,
            Some(f) => {
                read && f.all_mine()
                    && f.held().keys().all(|k| self.shards.get(k).is_some_and(|s| s.phase != Phase::Waiting))
            }
        }
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
            // start: its parent's records end where its own begin. (In a fleet, the lease
            // says where to start.)
            let has_parent = parents.iter().any(|p| ids.contains(p));
            let initial = if !self.listed_once && !has_parent { self.src.parsed.start } else { Start::TrimHorizon };
            let saved = self.saved.get(&id).cloned();
            let phase = if saved.as_deref() == Some(SHARD_END) { Phase::Done } else { Phase::Waiting };
            let from = match saved.filter(|s| s != SHARD_END) {
                Some(seq) => From::After(seq),
                None => From::Start(initial),
            };
            self.shards.insert(
                id.clone(),
                Shard {
                    id,
                    parents,
                    range,
                    ending,
                    phase,
                    committed: from.clone(),
                    from,
                    iterator: None,
                    last_read: None,
                    last_sub: 0,
                    next_poll: Instant::now(),
                    backoff: Backoff::default(),
                    caught_up: false,
                    behind_ms: None,
                    acks: Checkpointer::default(),
                    next_local: 0,
                    stalled_warned: false,
                    lease_counter: None,
                },
            );
        }
        self.listed_once = true;
        self.listed_at = Some(Instant::now());
        self.list_due = Instant::now() + LIST_EVERY;
        Ok(())
    }

    /// One process per stream: a shard is read once its parents are done.
    fn start_eligible(&mut self) {
        let eligible: Vec<String> = self
            .shards
            .values()
            .filter(|s| s.phase == Phase::Waiting)
            .filter(|s| s.parents.iter().all(|p| self.shards.get(p).is_none_or(|parent| parent.phase == Phase::Done)))
            .map(|s| s.id.clone())
            .collect();
        for id in eligible {
            let shard = self.shards.get_mut(&id).expect("listed");
            tracing::info!(source = %self.src.node, shard = %id, from = ?shard.from, "Reading shard.");
            shard.phase = Phase::Reading;
        }
    }

    /// In a fleet: reads the shards whose leases are held (from the lease's checkpoint) and
    /// stops reading the ones whose leases are gone.
    fn follow_leases(&mut self) {
        let Positions::Fleet(fleet) = &self.positions else { return };
        let held = fleet.held();
        let gone: Vec<String> = self
            .shards
            .values()
            .filter(|s| matches!(s.phase, Phase::Reading | Phase::Draining))
            .filter(|s| held.get(&s.id).is_none_or(|l| Some(l.counter) != s.lease_counter))
            .map(|s| s.id.clone())
            .collect();
        for id in gone {
            tracing::info!(source = %self.src.node, shard = %id, "Stopped reading the shard: its lease is gone; nothing more of it is checkpointed here.");
            self.forget_in_flight(&id);
            self.dirty.remove(&id);
            let shard = self.shards.get_mut(&id).expect("listed");
            shard.restart(From::Start(Start::TrimHorizon));
            shard.phase = Phase::Waiting;
            shard.lease_counter = None;
        }
        let start = self.src.parsed.start;
        for (id, lease) in held {
            match self.shards.get_mut(&id) {
                // A shard this process has not listed yet (a new child): list again soon.
                None => {
                    if self.listed_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        self.list_due = Instant::now();
                    }
                }
                Some(shard) if shard.phase == Phase::Waiting => {
                    shard.restart(From::of_lease(&lease, start));
                    shard.lease_counter = Some(lease.counter);
                    shard.phase = Phase::Reading;
                    shard.next_poll = Instant::now();
                    tracing::info!(source = %self.src.node, shard = %id, from = ?shard.from, "Reading shard (lease taken).");
                }
                Some(_) => {}
            }
        }
    }

    /// Drops the batch bookkeeping of a shard: their acknowledgements no longer count.
    fn forget_in_flight(&mut self, id: &str) {
        self.batches.retain(|_, (shard, _)| shard != id);
    }

    fn poll(&mut self, ctx: &mut SourceContext, id: &str) -> anyhow::Result<()> {
        let src = self.src;
        let shard = self.shards.get_mut(id).expect("polled shards are listed");
        if shard.iterator.is_none() {
            let from = match &shard.last_read {
                Some(seq) => From::After(seq.clone()),
                None => shard.from.clone(),
            };
            let req = src.client.get_shard_iterator().stream_name(&src.stream).shard_id(id);
            let req = match &from {
                From::After(seq) => {
                    req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq)
                }
                From::At(seq, _) => {
                    req.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(seq)
                }
                From::Start(Start::TrimHorizon) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                From::Start(Start::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
                From::Start(Start::AtTimestamp(ms)) => {
                    req.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(*ms))
                }
            };
            let asked_at = OffsetDateTime::now_utc();
            match block_on(req.send()) {
                Ok(out) => match out.shard_iterator() {
                    Some(it) => {
                        shard.iterator = Some(it.to_string());
                        if from == From::Start(Start::Latest) {
                            // Should this iterator expire before a record arrives, renew at
                            // the time it was taken (less a second for clocks), never at
                            // LATEST again: records written meanwhile would be skipped.
                            let ms = (asked_at.unix_timestamp_nanos() / 1_000_000) as i64 - 1000;
                            shard.from = From::Start(Start::AtTimestamp(ms));
                        }
                    }
                    None => {
                        shard.phase = Phase::Draining;
                        self.check_drained(id);
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
                tracing::debug!(source = %src.node, shard = %id, after = ?shard.last_read, "Shard iterator expired; renewing it after the last record read.");
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
            // Resuming inside an aggregated record: its sub-records up to the checkpoint's
            // were done.
            let skip_through = match &shard.from {
                From::At(at, sub) if shard.last_read.is_none() => match cmp_sequence(&seq, at) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => Some(*sub),
                    std::cmp::Ordering::Greater => None,
                },
                _ => None,
            };
            let arrival = r.approximate_arrival_timestamp.and_then(|t| t.to_millis().ok());
            let data = r.data.into_inner();
            match deaggregate::deaggregate(&data) {
                Some(subs) => {
                    shard.last_sub = subs.len().saturating_sub(1) as i64;
                    for (i, sub) in subs.into_iter().enumerate() {
                        if skip_through.is_some_and(|t| i as i64 <= t) {
                            continue;
                        }
                        let keep = shard.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&sub.hash_key()));
                        if keep {
                            ctx.ingest(Bytes::from(sub.data), format!("{id}:{seq}:{i}"), arrival);
                        }
                    }
                }
                None => {
                    shard.last_sub = 0;
                    if skip_through.is_none() {
                        ctx.ingest(Bytes::from(data), format!("{id}:{seq}"), arrival);
                    }
                }
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
        // Kinesis ends a closed shard with a null iterator. moto keeps handing out
        // iterators, so a closed shard whose record at its ending sequence number was read
        // (moto: its last record's; an empty closed shard's is "0") ends at an empty read
        // too. On Kinesis the ending number bounds the shard, so nothing can follow it.
        let position = shard.last_read.as_deref().or(shard.from.seq()).unwrap_or("0");
        let closed_and_read = empty && shard.ending.as_deref().is_some_and(|end| cmp_sequence(position, end).is_ge());
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
        ctx.free_returned();
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
                s.committed = From::After(pos.seq.clone());
                self.dirty.insert(id.clone(), pos);
            }
            if s.acks.is_stalled() {
                if !self.finishing && matches!(s.phase, Phase::Reading | Phase::Draining) {
                    // Read the shard again from its last checkpoint, as a KCL worker does
                    // after a failure: at least once, and its children are not held back.
                    let delay = s.backoff.next_delay().max(MIN_CALL_GAP);
                    tracing::warn!(source = %self.src.node, shard = %id, from = ?s.committed, retry_in = ?delay, "A batch was not fully handled; reading the shard again from its last checkpoint.");
                    let from = s.committed.clone();
                    s.restart(from);
                    s.phase = Phase::Reading;
                    s.next_poll = Instant::now() + delay;
                    self.forget_in_flight(&id);
                    continue;
                }
                if !s.stalled_warned {
                    s.stalled_warned = true;
                    tracing::warn!(source = %self.src.node, shard = %id, "A batch was not fully handled; the shard's checkpoint stays before it.");
                }
            }
            self.check_drained(&id);
        }
    }

    /// A shard read to its end whose batches are all acknowledged is done: `SHARD_END`.
    fn check_drained(&mut self, id: &str) {
        let Some(s) = self.shards.get_mut(id) else { return };
        if s.phase == Phase::Draining && s.acks.in_flight() == 0 && !s.acks.is_stalled() {
            s.phase = Phase::Done;
            self.dirty.insert(id.to_string(), Pos::shard_end());
            self.list_due = Instant::now();
        }
    }

    fn save(&mut self) -> anyhow::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        match &mut self.positions {
            Positions::File(store) => {
                let seqs = dirty.into_iter().map(|(k, p)| (k, p.seq)).collect();
                store.save(&seqs).map_err(|e| e.context("saving checkpoints"))
            }
            Positions::Fleet(fleet) => {
                let mut lost = Vec::new();
                for (shard, pos) in dirty {
                    match fleet.checkpoint(&shard, &pos.seq, pos.sub) {
                        Ok(true) => {}
                        Ok(false) => lost.push(shard),
                        Err(e) => {
                            // DynamoDB did not answer: keep it for the next save (unless a
                            // newer one came meanwhile).
                            tracing::warn!(source = %self.src.node, shard = %shard, error = %e, "Writing a checkpoint failed; retrying.");
                            self.dirty.entry(shard).or_insert(pos);
                        }
                    }
                }
                for id in lost {
                    self.forget_in_flight(&id);
                    if let Some(s) = self.shards.get_mut(&id) {
                        s.restart(From::Start(Start::TrimHorizon));
                        s.phase = Phase::Waiting;
                        s.lease_counter = None;
                    }
                }
                Ok(())
            }
        }
    }

    /// Waits for every batch in flight to be acknowledged (or abandoned), then saves.
    fn finish(&mut self, ctx: &mut SourceContext) -> anyhow::Result<()> {
        self.finishing = true;
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
        let pos = Pos { seq: shard.last_read.clone().unwrap_or_default(), sub: shard.last_sub };
        shard.acks.register(local, pos);
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

    #[test]
    fn fleet_keys_need_a_lease_table_and_a_sane_duration() {
        let e = validate(&cfg("worker_id = \"a\"")).unwrap_err();
        assert!(e.starts_with("worker_id:"), "{e}");
        let e = validate(&cfg("lease_duration = \"5s\"")).unwrap_err();
        assert!(e.starts_with("lease_duration:"), "{e}");
        let table = "checkpoint = { dynamodb = \"t\" }\n";
        assert!(validate(&cfg(&format!("{table}worker_id = \"a\"\nlease_duration = \"3s\""))).is_ok());
        let e = validate(&cfg(&format!("{table}lease_duration = \"200ms\""))).unwrap_err();
        assert!(e.starts_with("lease_duration:"), "{e}");
        let e = validate(&cfg(&format!("{table}worker_id = \" \""))).unwrap_err();
        assert!(e.starts_with("worker_id:"), "{e}");
    }

    #[test]
    fn a_lease_checkpoint_says_where_reading_starts() {
        let lease = |cp: &str, sub| Lease {
            key: "s".into(),
            owner: None,
            counter: 0,
            checkpoint: Some(cp.into()),
            sub,
            owner_switches: 0,
            parents: vec![],
        };
        let t = Start::TrimHorizon;
        assert_eq!(From::of_lease(&lease("TRIM_HORIZON", 0), Start::Latest), From::Start(Start::TrimHorizon));
        assert_eq!(From::of_lease(&lease("LATEST", 0), t), From::Start(Start::Latest));
        // The KCL keeps the timestamp in its configuration: ours, or the oldest record.
        assert_eq!(
            From::of_lease(&lease("AT_TIMESTAMP", 0), Start::AtTimestamp(5)),
            From::Start(Start::AtTimestamp(5))
        );
        assert_eq!(From::of_lease(&lease("AT_TIMESTAMP", 0), t), From::Start(Start::TrimHorizon));
        // A sequence number: at that record, past its sub-records up to the checkpoint's.
        assert_eq!(From::of_lease(&lease("4959", 2), t), From::At("4959".into(), 2));
    }
}
