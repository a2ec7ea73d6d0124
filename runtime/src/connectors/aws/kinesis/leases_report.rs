//! `ctrflow leases <pipeline.toml>`: the lease table of every `kinesis` source with
//! `checkpoint = { dynamodb = … }`, as an operator wants to see it during a deploy — shard,
//! owner, checkpoint, counter, and how long the counter has stood still (its age).
//!
//! The KCL's table holds no time, so the age is measured here: the table is scanned twice,
//! `interval` apart, and a lease whose counter did not move is at least that old (a live
//! owner renews every third of its `lease_duration`). It changes nothing in the table.

use std::fmt::Write;
use std::time::Duration;

use super::lease::{Lease, LeaseTable};
use super::source::KinesisSourceOptions;
use crate::config::AwsConfig;
use crate::connectors::aws::{Settings, block_on};

/// The report for one source's lease table, from two scans `interval` apart.
pub fn report(
    aws: &AwsConfig,
    source: &str,
    opts: &KinesisSourceOptions,
    interval: Duration,
) -> anyhow::Result<String> {
    let Some(cp) = &opts.checkpoint else {
        return Ok(format!("sources.{source}: file checkpoints (no lease table)\n"));
    };
    let settings = Settings::new(aws, opts.endpoint_url.as_deref());
    let table = cp.dynamodb.clone();
    let (first, second) = block_on(async move {
        let sdk = settings.load().await.map_err(anyhow::Error::msg)?;
        let t = LeaseTable::open(aws_sdk_dynamodb::Client::new(&sdk), &table).await.map_err(anyhow::Error::msg)?;
        let first = t.list().await?;
        tokio::time::sleep(interval).await;
        let second = t.list().await?;
        anyhow::Ok((first, second))
    })?;
    Ok(render(source, &cp.dynamodb, &first, &second, interval))
}

fn render(source: &str, table: &str, first: &[Lease], second: &[Lease], interval: Duration) -> String {
    let mut out = format!("sources.{source}: lease table {table:?}, {} lease(s)\n", second.len());
    let _ = writeln!(out, "{:<24} {:<28} {:<24} {:>4} {:>8}  age", "shard", "owner", "checkpoint", "sub", "counter");
    let mut leases: Vec<&Lease> = second.iter().collect();
    leases.sort_by(|a, b| a.key.cmp(&b.key));
    for l in leases {
        let before = first.iter().find(|f| f.key == l.key).map(|f| f.counter);
        let age = match before {
            Some(c) if c == l.counter => format!(">= {interval:?} (counter still)"),
            Some(_) => format!("< {interval:?} (renewed)"),
            None => "new".into(),
        };
        let owner = l.owner.as_deref().unwrap_or("(none)");
        let cp = l.checkpoint.as_deref().unwrap_or("-");
        let _ = writeln!(out, "{:<24} {:<28} {:<24} {:>4} {:>8}  {age}", l.key, owner, cp, l.sub, l.counter);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, counter: i64) -> Lease {
        Lease {
            key: key.into(),
            owner: owner.map(str::to_string),
            counter,
            checkpoint: Some("42".into()),
            sub: 0,
            owner_switches: 0,
            parents: vec![],
        }
    }

    #[test]
    fn a_still_counter_is_reported_as_old_and_a_moving_one_as_renewed() {
        let first = [lease("shardId-1", Some("a"), 5), lease("shardId-2", Some("b"), 7)];
        let second = [lease("shardId-1", Some("a"), 6), lease("shardId-2", Some("b"), 7), lease("shardId-3", None, 0)];
        let text = render("ctrs", "t", &first, &second, Duration::from_secs(2));
        let line = |k: &str| text.lines().find(|l| l.starts_with(k)).unwrap().to_string();
        assert!(line("shardId-1").ends_with("< 2s (renewed)"), "{text}");
        assert!(line("shardId-2").ends_with(">= 2s (counter still)"), "{text}");
        assert!(line("shardId-3").contains("(none)") && line("shardId-3").ends_with("new"), "{text}");
    }
}
