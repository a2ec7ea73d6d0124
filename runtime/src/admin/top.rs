//! `ctrflow top`: a live view of one or several running processes (a fleet), from their
//! admin endpoints' `/stats`.
//!
//! Per node: records in and out per second (the difference between two snapshots),
//! queue fill, median and 99th-percentile time in the node (processing; delivery for a
//! sink), dead letters, deliberate drops, retried writes, records left unwritten, and
//! whether the node's destination is failing now; per stream source, how far behind the
//! stream it reads and the shards it holds. With several addresses, a fleet section adds
//! the processes up.
//!
//! It only reads: it cannot change a running pipeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use super::{NodeStats, Stats, client};

/// Fetches one process's snapshot.
pub fn snapshot(addr: &str) -> anyhow::Result<Stats> {
    let (status, body) = client::get(addr, "/stats")?;
    if status != 200 {
        anyhow::bail!("{addr}: /stats answered {status}: {}", body.trim());
    }
    serde_json::from_str(&body).map_err(|e| anyhow::anyhow!("{addr}: /stats is not a snapshot: {e}"))
}

/// One node's row: rates from two snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// The node's key.
    pub key: String,
    /// Records in per second.
    pub in_per_s: f64,
    /// Records out per second.
    pub out_per_s: f64,
    /// Batches queued, and the capacity.
    pub queue: Option<(u64, u64)>,
    /// Median and 99th percentile, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Totals.
    pub dead_lettered: u64,
    /// Deliberate drops.
    pub dropped: u64,
    /// Retried writes.
    pub retries: u64,
    /// Records left unwritten.
    pub unwritten: u64,
    /// Failing now.
    pub degraded: bool,
    /// Stream sources: ms behind, shards held.
    pub behind: Option<(u64, u64)>,
}

/// Rows for `now`, with rates against `before` (same process) when there is one.
pub fn rows(before: Option<&Stats>, now: &Stats) -> Vec<Row> {
    let before = before.filter(|b| b.pid == now.pid && now.elapsed_s > b.elapsed_s);
    let dt = before.map(|b| now.elapsed_s - b.elapsed_s);
    now.nodes
        .iter()
        .map(|n| {
            let prev: Option<&NodeStats> = before.and_then(|b| b.nodes.iter().find(|p| p.key == n.key));
            let rate = |f: fn(&NodeStats) -> u64| match (prev, dt) {
                (Some(p), Some(dt)) => f(n).saturating_sub(f(p)) as f64 / dt,
                // One snapshot: the average since the start.
                _ => f(n) as f64 / now.elapsed_s.max(1e-9),
            };
            Row {
                key: n.key.clone(),
                in_per_s: rate(|n| n.records_in),
                out_per_s: rate(|n| n.records_out),
                queue: n.queue.zip(n.queue_capacity),
                p50_ms: n.p50_ms,
                p99_ms: n.p99_ms,
                dead_lettered: n.dead_lettered,
                dropped: n.dropped,
                retries: n.retries,
                unwritten: n.unwritten,
                degraded: n.degraded,
                behind: n.behind_ms.zip(n.shards),
            }
        })
        .collect()
}

/// The fleet's rows: every process's rows added up per node (the slowest percentile, the
/// furthest behind).
pub fn fleet(processes: &[Vec<Row>]) -> Vec<Row> {
    let mut by_key: BTreeMap<String, (usize, Row)> = BTreeMap::new();
    for (order, r) in processes.iter().flatten().enumerate() {
        let (_, f) =
            by_key.entry(r.key.clone()).or_insert_with(|| (order, Row { key: r.key.clone(), ..Row::default() }));
        f.in_per_s += r.in_per_s;
        f.out_per_s += r.out_per_s;
        f.queue = match (f.queue, r.queue) {
            (Some((a, ac)), Some((b, bc))) => Some((a + b, ac + bc)),
            (a, b) => a.or(b),
        };
        f.p50_ms = f.p50_ms.max(r.p50_ms);
        f.p99_ms = f.p99_ms.max(r.p99_ms);
        f.dead_lettered += r.dead_lettered;
        f.dropped += r.dropped;
        f.retries += r.retries;
        f.unwritten += r.unwritten;
        f.degraded |= r.degraded;
        f.behind = match (f.behind, r.behind) {
            (Some((a, s)), Some((b, t))) => Some((a.max(b), s + t)),
            (a, b) => a.or(b),
        };
    }
    let mut rows: Vec<(usize, Row)> = by_key.into_values().collect();
    rows.sort_by_key(|(order, _)| *order);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The table for a set of rows.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<30} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9}  state",
        "node", "in/s", "out/s", "queue", "p50 ms", "p99 ms", "dead", "dropped", "retries", "unwritten"
    );
    for r in rows {
        let queue = r.queue.map_or("-".to_string(), |(q, c)| format!("{q}/{c}"));
        let state = if r.degraded { "DEGRADED" } else { "ok" };
        let _ = write!(
            s,
            "{:<30} {:>9.0} {:>9.0} {:>7} {:>7.2} {:>7.2} {:>8} {:>8} {:>8} {:>9}  {state}",
            r.key,
            r.in_per_s,
            r.out_per_s,
            queue,
            r.p50_ms,
            r.p99_ms,
            r.dead_lettered,
            r.dropped,
            r.retries,
            r.unwritten
        );
        if let Some((behind, shards)) = r.behind {
            let _ = write!(s, "  behind {behind} ms, {shards} shard{}", if shards == 1 { "" } else { "s" });
        }
        s.push('\n');
    }
    s
}

/// One screen: a section per process, and the fleet's when there are several.
pub fn screen(addrs: &[String], before: &[Option<Stats>], now: &[anyhow::Result<Stats>]) -> String {
    let mut s = String::new();
    let mut all = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        match &now[i] {
            Ok(stats) => {
                let state = match (stats.ready, &stats.not_ready) {
                    (true, _) => "running",
                    (false, Some(why)) => why.as_str(),
                    (false, None) => "stopping",
                };
                let _ = writeln!(
                    s,
                    "{addr}  pid {}  up {:.0}s  {state}  tap drops {}",
                    stats.pid, stats.elapsed_s, stats.tap_dropped
                );
                let rows = rows(before[i].as_ref(), stats);
                s.push_str(&table(&rows));
                all.push(rows);
            }
            Err(e) => {
                let _ = writeln!(s, "{addr}  unreachable: {e:#}");
            }
        }
        s.push('\n');
    }
    if addrs.len() > 1 {
        let _ = writeln!(s, "fleet: {} of {} processes answering", all.len(), addrs.len());
        s.push_str(&table(&fleet(&all)));
    }
    s
}

/// `ctrflow top`: refreshes in place every `interval` until interrupted; with `once`, prints
/// one screen (rates over one `interval`) and returns. Fails when no process answers.
pub fn run(addrs: &[String], interval: Duration, once: bool) -> anyhow::Result<()> {
    let fetch = || addrs.iter().map(|a| snapshot(a)).collect::<Vec<_>>();
    let mut before: Vec<Option<Stats>> = fetch().into_iter().map(Result::ok).collect();
    if before.iter().all(Option::is_none) {
        // Every address failed: say why, once, rather than painting an empty screen.
        let errors: Vec<String> = fetch().into_iter().filter_map(Result::err).map(|e| format!("{e:#}")).collect();
        anyhow::bail!("no process answered:\n  {}", errors.join("\n  "));
    }
    loop {
        std::thread::sleep(interval);
        let now = fetch();
        let screen = screen(addrs, &before, &now);
        let mut out = std::io::stdout().lock();
        let written = if once {
            write!(out, "{screen}")
        } else {
            // Clear the terminal and draw from its top left.
            writeln!(out, "\x1b[2J\x1b[H{screen}(every {:.1}s; Ctrl-C to quit)", interval.as_secs_f64())
        };
        match written.and_then(|()| out.flush()) {
            // The reader went away (`ctrflow top | head`): done, quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(()) if once => return Ok(()),
            Ok(()) => {}
        }
        before = now.into_iter().map(Result::ok).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pid: u32, elapsed_s: f64, records: u64) -> Stats {
        Stats {
            pid,
            elapsed_s,
            ready: true,
            not_ready: None,
            tap_dropped: 0,
            nodes: vec![NodeStats {
                key: "transforms.redact".into(),
                records_in: records,
                records_out: records,
                queue: Some(2),
                queue_capacity: Some(8),
                ..NodeStats::default()
            }],
        }
    }

    #[test]
    fn rates_come_from_two_snapshots_of_the_same_process() {
        let r = rows(Some(&stats(1, 10.0, 1000)), &stats(1, 12.0, 5000));
        assert_eq!(r[0].in_per_s, 2000.0);
        // Another process (a restart): the average since its start instead.
        let r = rows(Some(&stats(2, 10.0, 1000)), &stats(1, 4.0, 4000));
        assert_eq!(r[0].in_per_s, 1000.0);
        let t = table(&r);
        assert!(t.contains("transforms.redact") && t.contains("2/8"), "{t}");
    }

    #[test]
    fn a_fleet_adds_up_its_processes() {
        let a = rows(Some(&stats(1, 10.0, 0)), &stats(1, 11.0, 100));
        let b = rows(Some(&stats(2, 10.0, 0)), &stats(2, 11.0, 300));
        let f = fleet(&[a, b]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].in_per_s, 400.0);
        assert_eq!(f[0].queue, Some((4, 16)));
        let s = screen(
            &["a:1".into(), "b:2".into()],
            &[None, None],
            &[Ok(stats(1, 1.0, 10)), Err(anyhow::anyhow!("refused"))],
        );
        assert!(s.contains("b:2  unreachable: refused") && s.contains("fleet: 1 of 2"), "{s}");
    }
}
