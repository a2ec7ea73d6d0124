//! The WIT `host` interface — `resolve-path`, `log`, `count` — with a bound on everything a
//! plugin can make the host keep or do through it. (The module is not named `host` as the
//! interface is, since it sits inside the `host` module.)
//!
//! - Resolved paths: at most [`MAX_PATHS`] per instance, each at most [`MAX_PATH_BYTES`]
//!   long, found again by a hash lookup (a plugin resolving in a loop neither grows the host
//!   nor slows every later resolution).
//! - Log lines: at most [`MAX_LOG_BYTES`] each (longer ones are cut), at most
//!   [`LOG_BURST`] at once and [`LOG_PER_SECOND`] a second per node after that; the rest
//!   are counted, reported as the `ctrflow.log_suppressed` counter and in the next line
//!   that gets through.
//! - Counters: at most [`MAX_COUNTERS`] names per node, each at most
//!   [`MAX_COUNTER_NAME_BYTES`] long and not starting with `ctrflow.` (the host's own);
//!   increments of refused names are counted as `ctrflow.counter_names_refused`.
//!
//! What this does not bound: how often a plugin calls — that is its time budget.

use std::collections::HashMap;
use std::time::Instant;

use ctrflow_plugin_sdk::path::FieldPath;

use super::bindings::LogLevel;
use super::bindings::transform::ctrflow::plugin::host;
use super::state::{NodeContext, PluginState};

/// Most distinct paths one instance may resolve.
pub const MAX_PATHS: usize = 1024;
/// Longest path text, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest log line kept, in bytes; the rest is cut.
pub const MAX_LOG_BYTES: usize = 4096;
/// Log lines a node may write at once.
pub const LOG_BURST: f64 = 100.0;
/// Log lines a node may write per second, after the burst.
pub const LOG_PER_SECOND: f64 = 10.0;
/// Most counter names per node.
pub const MAX_COUNTERS: usize = 256;
/// Longest counter name, in bytes.
pub const MAX_COUNTER_NAME_BYTES: usize = 128;
/// The counter of log lines the host dropped for rate.
pub const LOG_SUPPRESSED: &str = "ctrflow.log_suppressed";
/// The counter of increments the host refused for their name.
pub const COUNTERS_REFUSED: &str = "ctrflow.counter_names_refused";

/// An instance's resolved paths: ids are indexes into `paths`.
#[derive(Default)]
pub struct PathCache {
    paths: Vec<FieldPath>,
    ids: HashMap<String, u32>,
}

impl PathCache {
    /// The path with this id.
    pub fn get(&self, id: u32) -> Option<&FieldPath> {
        self.paths.get(id as usize)
    }

    /// Every path, by id.
    pub fn as_slice(&self) -> &[FieldPath] {
        &self.paths
    }

    /// The id of `text`, resolving it when it is new.
    pub fn resolve(&mut self, text: &str) -> Result<u32, String> {
        if let Some(id) = self.ids.get(text) {
            return Ok(*id);
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(format!("path of {} bytes is longer than the host allows ({MAX_PATH_BYTES})", text.len()));
        }
        if self.paths.len() >= MAX_PATHS {
            return Err(format!(
                "a plugin instance may resolve at most {MAX_PATHS} paths (resolve them once, at init)"
            ));
        }
        let parsed = FieldPath::parse(text).map_err(|e| e.to_string())?;
        let id = self.paths.len() as u32;
        self.paths.push(parsed);
        self.ids.insert(text.to_string(), id);
        Ok(id)
    }
}

/// A node's log rate limit: a token bucket shared by its instances.
#[derive(Debug)]
pub struct LogGate {
    tokens: f64,
    last: Instant,
    /// Lines dropped since the last one that got through.
    pending: u64,
    /// Lines dropped in all.
    pub suppressed: u64,
}

impl Default for LogGate {
    fn default() -> Self {
        LogGate { tokens: LOG_BURST, last: Instant::now(), pending: 0, suppressed: 0 }
    }
}

impl LogGate {
    /// Whether a line may be written now; if so, how many were dropped just before it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * LOG_PER_SECOND;
        self.tokens = (self.tokens + refill).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.pending))
        } else {
            self.pending += 1;
            self.suppressed += 1;
            None
        }
    }
}

/// `message` cut to [`MAX_LOG_BYTES`] at a character boundary, saying how much was cut.
fn capped(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_LOG_BYTES {
        return message.into();
    }
    let mut end = MAX_LOG_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut by the host)", &message[..end], message.len() - end).into()
}

impl NodeContext {
    /// Adds `delta` to counter `name`, unless the name is refused.
    pub(crate) fn count(&self, name: &str, delta: i64) {
        let Ok(mut counters) = self.counters.lock() else { return };
        if let Some(c) = counters.get_mut(name) {
            *c = c.wrapping_add(delta);
            return;
        }
        let refused =
            name.len() > MAX_COUNTER_NAME_BYTES || name.starts_with("ctrflow.") || counters.len() >= MAX_COUNTERS;
        if refused {
            drop(counters);
            self.counters_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            counters.insert(name.to_string(), delta);
        }
    }
}

impl host::Host for PluginState {
    fn resolve_path(&mut self, path: String) -> Result<u32, String> {
        self.paths.resolve(&path)
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let admitted = self.ctx.log_gate.lock().ok().and_then(|mut gate| gate.admit(Instant::now()));
        let Some(dropped) = admitted else { return };
        let message = capped(&message);
        let (node, plugin) = (&self.ctx.node, &self.ctx.plugin);
        if dropped > 0 {
            tracing::warn!(node, plugin, dropped, "The plugin logged faster than the host allows; lines were dropped.");
        }
        // At info and above, customer data is masked unless the node asked for the
        // plugin's words verbatim (`plugin_log = "verbatim"`); debug and trace are verbatim.
        let shown = match level {
            LogLevel::Trace | LogLevel::Debug => std::borrow::Cow::Borrowed(&*message),
            _ if self.ctx.log_verbatim => std::borrow::Cow::Borrowed(&*message),
            _ => super::log_redact::redact(&message),
        };
        let redacted = matches!(shown, std::borrow::Cow::Owned(_));
        let message = shown.as_ref();
        match (level, redacted) {
            (LogLevel::Trace, _) => tracing::trace!(node, plugin, "{message}"),
            (LogLevel::Debug, _) => tracing::debug!(node, plugin, "{message}"),
            (LogLevel::Info, false) => tracing::info!(node, plugin, "{message}"),
            (LogLevel::Info, true) => tracing::info!(node, plugin, redacted, "{message}"),
            (LogLevel::Warn, false) => tracing::warn!(node, plugin, "{message}"),
            (LogLevel::Warn, true) => tracing::warn!(node, plugin, redacted, "{message}"),
            (LogLevel::Error, false) => tracing::error!(node, plugin, "{message}"),
            (LogLevel::Error, true) => tracing::error!(node, plugin, redacted, "{message}"),
        }
    }

    fn count(&mut self, name: String, delta: i64) {
        self.ctx.count(&name, delta);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn paths_are_found_again_and_bounded() {
        let mut cache = PathCache::default();
        assert_eq!(cache.resolve("a.b").unwrap(), 0);
        assert_eq!(cache.resolve("a.b").unwrap(), 0);
        for i in 1..MAX_PATHS {
            assert_eq!(cache.resolve(&format!("p{i}")).unwrap(), i as u32);
        }
        assert!(cache.resolve("one.more").is_err());
        assert_eq!(cache.resolve("p7").unwrap(), 7, "known paths still resolve");
        assert!(PathCache::default().resolve(&"x".repeat(MAX_PATH_BYTES + 1)).is_err());
    }

    #[test]
    fn the_log_gate_lets_a_burst_then_a_rate_through() {
        let mut gate = LogGate::default();
        let t0 = gate.last;
        let passed = (0..1000).filter(|_| gate.admit(t0).is_some()).count();
        assert_eq!(passed, LOG_BURST as usize);
        assert_eq!(gate.suppressed, 1000 - LOG_BURST as u64);
        // One second later, LOG_PER_SECOND more; the first reports what was dropped.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(gate.admit(t1), Some(1000 - LOG_BURST as u64));
        let more = (1..100).filter(|_| gate.admit(t1).is_some()).count();
        assert_eq!(more + 1, LOG_PER_SECOND as usize);
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary() {
        let line = "é".repeat(MAX_LOG_BYTES);
        let cut = capped(&line);
        assert!(cut.len() < MAX_LOG_BYTES + 64, "{}", cut.len());
        assert!(cut.ends_with("bytes cut by the host)"));
        assert_eq!(capped("short"), "short");
    }

    #[test]
    fn counter_names_are_bounded() {
        let ctx = NodeContext::new("n", "p");
        for i in 0..MAX_COUNTERS + 10 {
            ctx.count(&format!("c{i}"), 1);
        }
        ctx.count(&"x".repeat(MAX_COUNTER_NAME_BYTES + 1), 1);
        ctx.count(COUNTERS_REFUSED, 1_000_000);
        ctx.count("c0", 1);
        let counters = ctx.counters();
        assert_eq!(counters["c0"], 2, "known names still count");
        assert_eq!(counters[COUNTERS_REFUSED], 12, "forged host counters are refused too");
        assert_eq!(counters.len(), MAX_COUNTERS + 1);
    }
}
