//! The `generator` source: realistic synthetic CTRs ([`synth`]), as many as `count`, at
//! `rate` per second, the same ones for the same `seed`.
//!
//! It keeps no checkpoint: a restarted generator starts over (it is for demos, tests and
//! benchmarks). With `start_time`, timestamps advance from that instant with the rate
//! (1 ms apart when unthrottled), so the output is fully reproducible; otherwise they
//! follow the wall clock, which is what makes the demo's event-to-actionable times real.

mod attributes;
mod catalog;
mod ids;
mod random;
mod render;
mod scenario;
mod synth;
mod text;
mod timeline;
mod timestamps;

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use synth::Synth;

use serde::Deserialize;

use crate::contract::{Env, Source, SourceConnector, SourceContext};

/// `type = "generator"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// How many records; default 1000. `0` means no end.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Records per second; `0` (default) is as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: f64,
    /// Same seed, same records. Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Place timestamps as if the run started at this RFC 3339 time, advancing with the
    /// rate (fully reproducible output). Default: the wall clock.
    pub start_time: Option<String>,
}

fn default_count() -> u64 {
    1000
}
fn default_seed() -> u64 {
    1
}

impl SourceConnector for Generator {
    fn validate(&self, _env: &Env) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            problems.push(format!("rate: {} is not a rate (records per second, 0 for unthrottled)", self.rate));
        }
        if let Some(t) = &self.start_time
            && let Err(e) = OffsetDateTime::parse(t, &Rfc3339)
        {
            problems.push(format!("start_time: {t:?} is not an RFC 3339 time ({e})"));
        }
        problems
    }

    fn open(&self, _env: &Env) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(self.clone()))
    }

    fn expected_records(&self) -> Option<u64> {
        (self.count > 0).then_some(self.count)
    }
}

impl Source for Generator {
    fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        generate(&self, ctx)
    }
}

/// Generates until `count` (or a stop).
fn generate(cfg: &Generator, mut ctx: SourceContext) -> anyhow::Result<()> {
    let mut synth = Synth::new(cfg.seed);
    let start = cfg.start_time.as_deref().map(|t| OffsetDateTime::parse(t, &Rfc3339)).transpose()?;
    let interval = if cfg.rate > 0.0 { Duration::from_secs_f64(1.0 / cfg.rate) } else { Duration::ZERO };
    // A throttled generator must not hold records back to fill a batch.
    let max_batch_age = Duration::from_millis(100);
    let t0 = Instant::now();
    let mut batch_started = Instant::now();
    let mut i: u64 = 0;
    while cfg.count == 0 || i < cfg.count {
        if ctx.shutdown().is_requested() {
            break;
        }
        if cfg.rate > 0.0 {
            let due = t0 + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                if now.duration_since(batch_started) >= max_batch_age || due - now > max_batch_age {
                    ctx.flush_or_stop()?;
                    batch_started = Instant::now();
                }
                std::thread::sleep(due - Instant::now().min(due));
            }
        }
        let now = match start {
            Some(s) => s + if cfg.rate > 0.0 { interval.mul_f64(i as f64) } else { Duration::from_millis(i) },
            None => OffsetDateTime::now_utc(),
        };
        ctx.ingest_doc(synth.next_record(now), i.to_string());
        i += 1;
        if ctx.batch_full() {
            ctx.flush_or_stop()?;
            batch_started = Instant::now();
        }
    }
    ctx.flush_or_stop()?;
    Ok(())
}
