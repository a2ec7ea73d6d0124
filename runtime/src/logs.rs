//! The process's log lines: human-readable text (the default) or one JSON object per line
//! (`--log-format json`), filtered per module by `RUST_LOG` / `--log`
//! (`warn,ctrflow::connectors=debug`).
//!
//! Each node's thread runs inside a `node` span (see [`crate::topology`]), so every line a
//! node logs carries its key: `node{node=sinks.db}:` in text, `"node":"sinks.db"` in JSON.
//! Lines about one record carry its `contact_id` (at `debug`: a dead-lettered record).
//!
//! The JSON writer is written here rather than taken from `tracing-subscriber`'s `json`
//! feature: that feature changes `tracing-core`'s features and so rebuilds every crate
//! that logs (the AWS SDK, wasmtime), for the sake of one small formatter.
//!
//! What is never logged at `info` or above: record contents. Log lines name records by
//! node, position and contact id; the records themselves go to sinks, dead letters and
//! taps only.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target` (the module), the span's
    /// `node`, the event's fields and its `message`.
    Json,
}

/// Installs the process's logger on stderr. `filter` is an `EnvFilter` directive list.
pub fn init(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_target(false).init(),
        LogFormat::Json => logs.fmt_fields(JsonFields).event_format(JsonLines).init(),
    }
}

/// Fields collected as JSON values.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, as their `Display`.
        self.0.insert(field.name().to_string(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_string(), Value::String(value.to_string()));
    }
}

/// Span fields, kept as a JSON object so each line can merge them.
struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut f = Fields::default();
        fields.record(&mut f);
        write!(writer, "{}", Value::Object(f.0))
    }

    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let mut f = Fields(match serde_json::from_str(&current.fields) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        });
        fields.record(&mut f);
        current.fields = Value::Object(f.0).to_string();
        Ok(())
    }
}

/// One event, one JSON line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        let ts = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        line.insert("timestamp".into(), Value::String(ts));
        line.insert("level".into(), Value::String(meta.level().as_str().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        let mut fields = Fields::default();
        event.record(&mut fields);
        line.extend(fields.0);
        // The span's fields win: its `node` is the node's full key (`transforms.p`), where
        // an event may name the node by its id.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(m)) = serde_json::from_str(&f.fields)
                {
                    line.extend(m);
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_has_the_level_target_node_fields_and_message() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("node", node = "sinks.db");
            span.in_scope(|| tracing::warn!(contact_id = "c-1", records = 3u64, ok = false, "Say \"hi\"."));
            tracing::info!("Outside any node.");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let l = &lines[0];
        assert_eq!(l["level"], "WARN");
        assert_eq!(l["target"], "ctrflow::logs::tests");
        assert_eq!(l["node"], "sinks.db");
        assert_eq!(l["contact_id"], "c-1");
        assert_eq!(l["records"], 3);
        assert_eq!(l["ok"], false);
        assert_eq!(l["message"], "Say \"hi\".");
        assert!(l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        assert!(lines[1].get("node").is_none(), "{}", lines[1]);
    }
}
