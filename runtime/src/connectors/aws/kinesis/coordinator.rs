//! The fleet side of a `kinesis` source with `checkpoint = { dynamodb = … }`: which shards
//! this process reads, decided with every other process sharing the lease table, the way a
//! KCL worker decides.
//!
//! It runs on its own thread, every `lease_duration / 3`, whatever the pipeline is doing
//! (a source blocked by backpressure must not lose its leases):
//!
//! 1. **Renew** every lease held (a conditional write on `leaseOwner` + `leaseCounter`). A
//!    lease whose renewal lost the race was taken by another worker; one not renewed for
//!    `lease_duration` (DynamoDB unreachable) is given up too, since others may take it now.
//! 2. **Sync shards** (at the start, every 30 s, and after a shard ended): a lease is created
//!    for every shard ListShards names that has none, unowned, at the configured start (or
//!    `TRIM_HORIZON` for a child shard).
//! 3. **Take and steal**: scan the table; a lease is *available* when unowned, or when its
//!    `leaseCounter` has not moved for `lease_duration` as seen by this process's own clock
//!    (no clock is compared across machines), or when it names this worker but this process
//!    does not hold it (the same `worker_id` restarted). Only leases whose parents are
//!    finished (`SHARD_END`, or gone) count. The target is `ceil(leases / workers)`; below it
//!    the process takes available leases, and when there are none steals **one** lease from
//!    the most loaded worker if that worker has at least two more than this one.
//!
//! The reader asks [`Fleet::held`] which shards to read and writes checkpoints through
//! [`Fleet::checkpoint`], under the same lock as the renewals, so each write carries the
//! counter the last one left (fencing). On a graceful stop [`Fleet::release_all`] gives the
//! leases up (the KCL's evict) so another process takes them at once.
//!
//! It does not read records or decide positions within a shard: that is [`super::source`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lease::{Lease, LeaseTable};
use crate::connectors::aws::block_on;
use crate::timing::{LeaseCounters, NodeTiming};

/// How often the stream's shards are listed to create leases for new shards.
const SYNC_EVERY: Duration = Duration::from_secs(30);

/// What a fleet member needs to know about its stream.
pub struct FleetConfig {
    /// This process's `leaseOwner` value; unique per running process.
    pub worker_id: String,
    /// A lease not renewed for this long is taken over.
    pub lease_duration: Duration,
    /// The checkpoint a new lease of a shard without a parent starts at (`TRIM_HORIZON`,
    /// `LATEST` or `AT_TIMESTAMP`).
    pub initial: &'static str,
    /// The Kinesis client and stream, to list shards.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The stream name.
    pub stream: String,
}

struct Held {
    counter: i64,
    renewed: Instant,
    /// The lease as taken (its counter then), with the last checkpoint written since:
    /// where reading starts.
    taken: Lease,
}

#[derive(Default)]
struct State {
    held: BTreeMap<String, Held>,
    /// After the last scan: every lease is finished or held here.
    all_mine: bool,
    /// Shards whose lease this process finished; never taken again.
    finished: HashSet<String>,
}

struct Shared {
    table: LeaseTable,
    cfg: FleetConfig,
    state: Mutex<State>,
    sync_now: AtomicBool,
    /// The source node's counters: the lease events and gauges land in its
    /// [`LeaseCounters`], for `/metrics` and `/ready`.
    node: Arc<NodeTiming>,
}

/// A process's membership in a fleet sharing one lease table.
pub struct Fleet {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Fleet {
    /// Starts the lease thread; its first round runs at once.
    pub fn start(table: LeaseTable, cfg: FleetConfig, node: Arc<NodeTiming>) -> Fleet {
        let _ = node.counters.leases.worker.set(cfg.worker_id.clone());
        node.counters.leases.settled.store(0, Ordering::Relaxed);
        let shared =
            Arc::new(Shared { table, cfg, state: Mutex::new(State::default()), sync_now: AtomicBool::new(true), node });
        let (stop, stopped) = mpsc::channel::<()>();
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kinesis-leases".into())
            .spawn(move || worker.run(stopped))
            .expect("spawn the lease thread");
        tracing::info!(worker = %shared.cfg.worker_id, table = %shared.table.name(), lease_duration = ?shared.cfg.lease_duration, "Joined the fleet.");
        Fleet { shared, stop: Some(stop), thread: Some(thread) }
    }

    /// The leases held now (renewed within `lease_duration`), each as it was when taken.
    pub fn held(&self) -> BTreeMap<String, Lease> {
        let state = self.shared.state.lock().expect("lease state");
        let fresh = self.shared.cfg.lease_duration;
        state
            .held
            .iter()
            .filter(|(_, h)| h.renewed.elapsed() < fresh)
            .map(|(k, h)| (k.clone(), h.taken.clone()))
            .collect()
    }

    /// Whether the last scan found every lease finished or held by this process.
    pub fn all_mine(&self) -> bool {
        self.shared.state.lock().expect("lease state").all_mine
    }

    /// The lease event counters (the source node's).
    pub fn stats(&self) -> &LeaseCounters {
        self.shared.leases()
    }

    /// Writes a checkpoint of a held lease, fenced by its owner and counter. `Ok(false)`:
    /// the lease is not held (any more); nothing was written.
    pub fn checkpoint(&self, shard: &str, checkpoint: &str, sub: i64) -> anyhow::Result<bool> {
        let sh = &self.shared;
        let mut state = sh.state.lock().expect("lease state");
        let Some(held) = state.held.get(shard) else { return Ok(false) };
        let counter = held.counter;
        match block_on(sh.table.checkpoint(shard, &sh.cfg.worker_id, counter, checkpoint, sub))? {
            Some(next) => {
                if checkpoint == super::checkpoint::SHARD_END {
                    // Finished: nothing left to renew; its children may now be taken.
                    state.held.remove(shard);
                    sh.leases().held.store(state.held.len() as u64, Ordering::Relaxed);
                    state.finished.insert(shard.to_string());
                    sh.sync_now.store(true, Ordering::Relaxed);
                } else if let Some(h) = state.held.get_mut(shard) {
                    h.counter = next;
                    h.renewed = Instant::now();
                    // Should the reader start over on this lease, it starts here.
                    h.taken.checkpoint = Some(checkpoint.to_string());
                    h.taken.sub = sub;
                }
                Ok(true)
            }
            None => {
                state.held.remove(shard);
                sh.leases().losses.fetch_add(1, Ordering::Relaxed);
                sh.leases().held.store(state.held.len() as u64, Ordering::Relaxed);
                tracing::warn!(worker = %sh.cfg.worker_id, shard, "Lease lost at a checkpoint (another worker took it); its checkpoint was not written.");
                Ok(false)
            }
        }
    }

    /// Stops the lease thread and gives every held lease up, so another worker takes it
    /// at once. Call after the last checkpoint.
    pub fn release_all(&mut self) {
        self.stop_thread();
        let sh = &self.shared;
        let held = std::mem::take(&mut sh.state.lock().expect("lease state").held);
        sh.leases().held.store(0, Ordering::Relaxed);
        sh.leases().settled.store(0, Ordering::Relaxed);
        for (shard, h) in held {
            match block_on(sh.table.release(&shard, &sh.cfg.worker_id, h.counter)) {
                Ok(true) => tracing::info!(worker = %sh.cfg.worker_id, shard = %shard, "Lease released."),
                Ok(false) => {
                    tracing::info!(worker = %sh.cfg.worker_id, shard = %shard, "Lease already taken by another worker.")
                }
                Err(e) => {
                    tracing::warn!(worker = %sh.cfg.worker_id, shard = %shard, error = %e, "Could not release a lease; it expires instead.")
                }
            }
        }
    }

    fn stop_thread(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// What this process has seen of another lease: its counter and since when.
struct Seen {
    counter: i64,
    since: Instant,
}

impl Shared {
    fn leases(&self) -> &LeaseCounters {
        &self.node.counters.leases
    }

    fn run(&self, stopped: mpsc::Receiver<()>) {
        let tick = (self.cfg.lease_duration / 3).max(Duration::from_millis(100));
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut next_sync = Instant::now();
        let mut listed: Vec<String> = Vec::new();
        let mut round = Instant::now();
        // When the lease table was last read, for `LeaseCounters::settled`.
        let mut scanned: Option<Instant> = None;
        loop {
            self.renew();
            if self.sync_now.swap(false, Ordering::Relaxed) || Instant::now() >= next_sync {
                match self.sync_shards() {
                    Ok(ids) => {
                        listed = ids;
                        next_sync = Instant::now() + SYNC_EVERY;
                    }
                    Err(e) => {
                        tracing::warn!(worker = %self.cfg.worker_id, error = %e, "Listing shards for leases failed; retrying.");
                        next_sync = Instant::now() + tick;
                    }
                }
            }
            match self.balance(&mut seen, &listed) {
                Ok(settled) => {
                    scanned = Some(Instant::now());
                    self.leases().settled.store(u64::from(settled), Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(worker = %self.cfg.worker_id, error = %e, "Reading the lease table failed; retrying.");
                    // Not ready once the table has been out of reach for a lease duration:
                    // by then this process may hold nothing the others respect.
                    if scanned.is_none_or(|t| t.elapsed() >= self.cfg.lease_duration) {
                        self.leases().settled.store(0, Ordering::Relaxed);
                    }
                }
            }
            self.leases().held.store(self.state.lock().expect("lease state").held.len() as u64, Ordering::Relaxed);
            // Rounds start every `tick` however long the calls took (a slow table must not
            // stretch the renewals towards the lease duration).
            round += tick;
            let now = Instant::now();
            if round < now {
                round = now;
            }
            match stopped.recv_timeout(round - now) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }

    /// Renews every held lease; drops the ones lost or not renewed in time.
    fn renew(&self) {
        let keys: Vec<String> = self.state.lock().expect("lease state").held.keys().cloned().collect();
        for shard in keys {
            let mut state = self.state.lock().expect("lease state");
            let Some(h) = state.held.get(&shard) else { continue };
            match block_on(self.table.renew(&shard, &self.cfg.worker_id, h.counter)) {
                Ok(Some(next)) => {
                    let h = state.held.get_mut(&shard).expect("held");
                    h.counter = next;
                    h.renewed = Instant::now();
                }
                Ok(None) => {
                    state.held.remove(&shard);
                    self.leases().losses.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = %self.cfg.worker_id, shard = %shard, "Lease lost: another worker took it.");
                }
                Err(e) if h.renewed.elapsed() >= self.cfg.lease_duration => {
                    state.held.remove(&shard);
                    self.leases().renew_failures.fetch_add(1, Ordering::Relaxed);
                    self.leases().losses.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = %self.cfg.worker_id, shard = %shard, error = %e, "Lease not renewed within lease_duration; giving it up.");
                }
                Err(e) => {
                    self.leases().renew_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = %self.cfg.worker_id, shard = %shard, error = %e, "Renewing a lease failed; retrying.")
                }
            }
        }
    }

    /// Creates a lease for every listed shard without one; returns the listed shard ids.
    fn sync_shards(&self) -> anyhow::Result<Vec<String>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                None => self.cfg.kinesis.list_shards().stream_name(&self.cfg.stream),
                Some(t) => self.cfg.kinesis.list_shards().next_token(t),
            };
            let page = block_on(req.send()).map_err(|e| anyhow::anyhow!(crate::connectors::aws::describe(&e)))?;
            shards.extend(page.shards().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let ids: Vec<String> = shards.iter().map(|s| s.shard_id().to_string()).collect();
        let existing: HashSet<String> = block_on(self.table.list())?.into_iter().map(|l| l.key).collect();
        for shard in &shards {
            if existing.contains(shard.shard_id()) {
                continue;
            }
            let parents: Vec<String> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .filter(|p| ids.iter().any(|i| i == p) || existing.contains(*p))
                .map(str::to_string)
                .collect();
            // A child's records begin where its parents' end: read it from its start.
            let initial = if parents.is_empty() { self.cfg.initial } else { "TRIM_HORIZON" };
            if block_on(self.table.create(shard.shard_id(), &parents, initial))? {
                tracing::info!(worker = %self.cfg.worker_id, shard = %shard.shard_id(), "Created a lease.");
            }
        }
        Ok(ids)
    }

    /// Scans the table, then takes available leases up to the fair share, or steals one.
    /// Returns whether this process is settled: it holds its fair share, or nothing is left
    /// that it could take or steal.
    fn balance(&self, seen: &mut HashMap<String, Seen>, listed: &[String]) -> anyhow::Result<bool> {
        let leases = block_on(self.table.list())?;
        let now = Instant::now();
        for l in &leases {
            let s = seen.entry(l.key.clone()).or_insert(Seen { counter: l.counter, since: now });
            if s.counter != l.counter {
                *s = Seen { counter: l.counter, since: now };
            }
        }
        let me = self.cfg.worker_id.as_str();
        let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.key.as_str(), l)).collect();
        let mut state = self.state.lock().expect("lease state");
        // A held lease the table shows in other hands was stolen; the renewal would find out
        // too, a round later.
        let stolen: Vec<String> = state
            .held
            .iter()
            .filter(|(k, h)| {
                by_key.get(k.as_str()).is_some_and(|l| l.owner.as_deref() != Some(me) || l.counter > h.counter)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stolen {
            state.held.remove(&k);
            self.leases().losses.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(worker = %me, shard = %k, "Lease lost: another worker took it.");
        }
        let parent_done = |p: &String| match by_key.get(p.as_str()) {
            Some(parent) => parent.finished(),
            None => !listed.contains(p),
        };
        let active: Vec<&Lease> = leases
            .iter()
            .filter(|l| !l.finished() && !state.finished.contains(&l.key) && l.parents.iter().all(parent_done))
            .collect();
        let expired = |l: &Lease| {
            l.owner.is_none()
                || seen.get(&l.key).is_some_and(|s| s.since.elapsed() >= self.cfg.lease_duration)
                || l.owner.as_deref() == Some(me)
        };
        let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for l in &active {
            if let Some(owner) = l.owner.as_deref()
                && owner != me
                && !expired(l)
            {
                load.entry(owner).or_default().push(l);
            }
        }
        let mine = active.iter().filter(|l| state.held.contains_key(&l.key)).count();
        let workers = load.len() + 1;
        let target = active.len().div_ceil(workers);
        let mut available: Vec<&Lease> =
            active.iter().copied().filter(|l| !state.held.contains_key(&l.key) && expired(l)).collect();
        // Workers starting together begin at different leases, so fewer takes collide.
        available.sort_by_key(|l| spread(me, &l.key));
        let mut taken = 0;
        // Every available lease is tried this round (up to the share): the ones not taken
        // went to another worker, so none is left waiting for this one.
        let untried = available.len().saturating_sub(target.saturating_sub(mine));
        for l in available.into_iter().take(target.saturating_sub(mine)) {
            if let Some(counter) = block_on(self.table.take(l, me))? {
                self.leases().takes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(worker = %me, shard = %l.key, from = ?l.owner, checkpoint = ?l.checkpoint, "Lease taken.");
                state.held.insert(l.key.clone(), Held { counter, renewed: Instant::now(), taken: l.clone() });
                taken += 1;
            }
        }
        let busiest = load.values().map(Vec::len).max().unwrap_or(0);
        let mut stole = 0;
        if taken == 0 && mine < target {
            // Steal one, only from a worker with at least two more: a fleet converges to an
            // even split without leases bouncing between equals.
            let victim = load.iter().max_by_key(|(owner, ls)| (ls.len(), std::cmp::Reverse(**owner)));
            if let Some((owner, ls)) = victim
                && ls.len() >= mine + 2
            {
                let l = ls.iter().min_by_key(|l| spread(me, &l.key)).expect("a loaded worker has leases");
                if let Some(counter) = block_on(self.table.take(l, me))? {
                    stole = 1;
                    self.leases().steals.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(worker = %me, shard = %l.key, from = %owner, "Lease stolen to even the split.");
                    state.held.insert(l.key.clone(), Held { counter, renewed: Instant::now(), taken: (*l).clone() });
                }
            }
        }
        state.all_mine = !leases.is_empty()
            && leases
                .iter()
                .all(|l| l.finished() || state.finished.contains(&l.key) || state.held.contains_key(&l.key));
        let mine_now = mine + taken + stole;
        Ok(settled(mine_now, target, untried, busiest.saturating_sub(stole)))
    }
}

/// Whether a process holding `mine` leases after a round wants no more: it has its share
/// (`target`), or no lease was left untried (`untried`) and the busiest other worker
/// (`busiest` leases) has fewer than two more than it (so nothing may be stolen either).
/// A process that starts up settles in its first round when every take succeeds.
fn settled(mine: usize, target: usize, untried: usize, busiest: usize) -> bool {
    mine >= target || (untried == 0 && busiest < mine + 2)
}

/// A per-worker order of shards (FNV-1a of worker and shard).
fn spread(worker: &str, shard: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in worker.bytes().chain([0]).chain(shard.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_settled_with_its_share_or_with_nothing_left_to_take_or_steal() {
        // 4 leases, 3 workers: the share is 2; a process with 1 beside 2 + 1 is settled.
        assert!(settled(2, 2, 0, 1));
        assert!(settled(1, 2, 0, 2), "nothing to take, and stealing from a worker with 2 would not even anything");
        assert!(!settled(1, 2, 0, 3), "a worker with 3 is stolen from next round");
        assert!(!settled(0, 2, 1, 0), "a lease was left untried (another worker's take collided)");
        // More workers than leases: a process with none stands by, ready.
        assert!(settled(0, 1, 0, 1));
        // Before any lease exists (the stream has no shards listed yet), nothing is owed.
        assert!(settled(0, 0, 0, 0));
    }
}
