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

use crate::config::GeneratorConfig;
use crate::source::SourceContext;

/// Checks the generator's settings; the message names the key.
pub fn validate(cfg: &GeneratorConfig) -> Result<(), String> {
    if !(cfg.rate.is_finite() && cfg.rate >= 0.0) {
        return Err(format!("rate: {} is not a rate (records per second, 0 for unthrottled)", cfg.rate));
    }
    if let Some(t) = &cfg.start_time {
        OffsetDateTime::parse(t, &Rfc3339).map_err(|e| format!("start_time: {t:?} is not an RFC 3339 time ({e})"))?;
    }
    Ok(())
}

/// Generates until `count` (or a stop).
pub fn run(cfg: &GeneratorConfig, mut ctx: SourceContext) -> anyhow::Result<()> {
    validate(cfg).map_err(|e| anyhow::anyhow!("sources.{}: {e}", ctx.id))?;
    let mut synth = Synth::new(cfg.seed);
    let start = cfg.start_time.as_deref().map(|t| OffsetDateTime::parse(t, &Rfc3339)).transpose()?;
    let interval = if cfg.rate > 0.0 { Duration::from_secs_f64(1.0 / cfg.rate) } else { Duration::ZERO };
    // A throttled generator must not hold records back to fill a batch.
    let max_batch_age = Duration::from_millis(100);
    let t0 = Instant::now();
    let mut batch_started = Instant::now();
    let mut i: u64 = 0;
    while cfg.count == 0 || i < cfg.count {
        if ctx.shutdown.is_requested() {
            break;
        }
        if cfg.rate > 0.0 {
            let due = t0 + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                if now.duration_since(batch_started) >= max_batch_age || due - now > max_batch_age {
                    flush(&mut ctx)?;
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
            flush(&mut ctx)?;
            batch_started = Instant::now();
        }
    }
    flush(&mut ctx)?;
    Ok(())
}

fn flush(ctx: &mut SourceContext) -> anyhow::Result<()> {
    ctx.flush_blocking().map_err(|_| anyhow::anyhow!("sources.{}: the pipeline stopped reading", ctx.id))?;
    Ok(())
}
