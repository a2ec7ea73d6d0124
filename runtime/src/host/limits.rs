//! [`Limits`]: the sandbox's memory cap and time budget, resolved from a node's TOML
//! `limits` ([`LimitsConfig`]) over safe defaults.

use std::time::Duration;

use crate::config::LimitsConfig;
use crate::units::{parse_duration, parse_size};

/// Per-node sandbox limits. Defaults are safe for CTR-sized records.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The most linear memory one plugin instance may grow to.
    pub memory_bytes: usize,
    /// The time one record may take; a batch call gets this times its length, and at
    /// least [`MIN_CALL_TIME`] (see [`Limits::call_time`]).
    pub time_per_record: Duration,
    /// The largest record (JSON bytes) a plugin may produce by `split` or `set-json`.
    pub max_output_bytes: usize,
    /// The most records one record may split into.
    pub max_split: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            time_per_record: Duration::from_millis(10),
            max_output_bytes: 1 << 20,
            max_split: 1000,
        }
    }
}

/// The least time any call gets, whatever its batch. The deadline is wall-clock time, so on
/// a busy machine a call waits for a core as well as runs: a JavaScript plugin's one-record
/// call, 0.5–1.1 ms on a quiet machine (its node's `process` time, 3 runs), took 15.9 ms
/// while the test suite built plugins beside it, past a 10 ms budget, and its record was
/// dead-lettered for the machine's load. A plugin that never returns is still stopped
/// within this.
pub const MIN_CALL_TIME: Duration = Duration::from_millis(100);

impl Limits {
    /// The deadline of one call over `records` records: `time_per_record` for each, and at
    /// least [`MIN_CALL_TIME`].
    pub fn call_time(&self, records: usize) -> Duration {
        (self.time_per_record * records as u32).max(MIN_CALL_TIME)
    }

    /// Resolves the written limits over the defaults; errors name the key.
    pub fn from_config(written: &LimitsConfig) -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(m) = &written.memory {
            limits.memory_bytes = parse_size(m).map_err(|e| format!("limits.memory: {e}"))?;
        }
        if let Some(t) = &written.time_per_record {
            limits.time_per_record = parse_duration(t).map_err(|e| format!("limits.time_per_record: {e}"))?;
        }
        if let Some(m) = &written.max_output {
            limits.max_output_bytes = parse_size(m).map_err(|e| format!("limits.max_output: {e}"))?;
        }
        if let Some(n) = written.max_split {
            limits.max_split = n;
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_unit_names_the_key() {
        let cfg = LimitsConfig { memory: Some("32 parsecs".into()), ..Default::default() };
        let err = Limits::from_config(&cfg).unwrap_err();
        assert!(err.starts_with("limits.memory:"), "{err}");
        assert!(err.contains("parsecs"), "{err}");
    }
}
