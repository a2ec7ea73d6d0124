//! [`Limits`]: the sandbox's memory cap and time budget, from a node's TOML `limits`.

use std::time::Duration;

use serde::Deserialize;

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

/// `limits = { … }` as written in TOML.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory cap per instance, e.g. `"32MiB"` (default 64MiB).
    pub memory: Option<String>,
    /// Time budget per record, e.g. `"5ms"` (default 10ms).
    pub time_per_record: Option<String>,
    /// Largest record a plugin may emit, e.g. `"1MiB"` (default 1MiB).
    pub max_output: Option<String>,
    /// Most records one record may split into (default 1000).
    pub max_split: Option<usize>,
}

impl LimitsConfig {
    /// Resolves the written limits over the defaults; errors name the key.
    pub fn resolve(&self) -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(m) = &self.memory {
            limits.memory_bytes = parse_size(m).map_err(|e| format!("limits.memory: {e}"))?;
        }
        if let Some(t) = &self.time_per_record {
            limits.time_per_record = parse_duration(t).map_err(|e| format!("limits.time_per_record: {e}"))?;
        }
        if let Some(m) = &self.max_output {
            limits.max_output_bytes = parse_size(m).map_err(|e| format!("limits.max_output: {e}"))?;
        }
        if let Some(n) = self.max_split {
            limits.max_split = n;
        }
        Ok(limits)
    }
}

/// Parses `"64MiB"`, `"512KiB"`, `"1GiB"`, `"1000"` (bytes), `"4MB"`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{text:?} is not a size like \"32MiB\""))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses `"5ms"`, `"2s"`, `"1m"`, `"250us"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{text:?} is not a duration like \"5ms\""))?;
    let secs = match unit.trim() {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?} (use us, ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_duration("5ms").unwrap(), Duration::from_millis(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn a_bad_unit_names_the_key() {
        let cfg = LimitsConfig { memory: Some("32 parsecs".into()), ..Default::default() };
        let err = cfg.resolve().unwrap_err();
        assert!(err.starts_with("limits.memory:"), "{err}");
        assert!(err.contains("parsecs"), "{err}");
    }
}
