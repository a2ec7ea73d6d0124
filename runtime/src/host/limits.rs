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
    /// The time one record may take; a batch call gets this times its length.
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

impl Limits {
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
