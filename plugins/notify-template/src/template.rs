//! Templates: literal text with `{Path.To.Field}` placeholders, each optionally formatted —
//! `{Queue.Duration|duration}` (seconds as `2m 05s`), `{Queue.EnqueueTimestamp|time}` (a
//! timestamp in the configured zone). `{{` and `}}` are literal braces.
//!
//! A template is parsed once, at init, into parts whose paths the host resolves once; a
//! bad template (an unclosed brace, an unknown format) is refused then, naming the key.

use ctrflow_plugin_sdk::{Error, Init, Path, Record, Value};

use crate::zone::Zone;

/// How a placeholder's value is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// As it is: text without quotes, numbers and booleans written out, objects as JSON.
    Plain,
    /// A number of seconds as minutes and seconds: `39s`, `2m 05s`, `1h 02m 05s`.
    Duration,
    /// An RFC 3339 timestamp in the configured time zone: `2018-11-02 18:00:25 AEDT`.
    Time,
}

/// One piece of a template.
#[derive(Debug)]
enum Part {
    Text(String),
    Field(Path, Format),
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

/// What rendering needs besides the record.
pub struct Style<'a> {
    /// The zone timestamps are shown in.
    pub zone: &'a Zone,
    /// Written for a missing or `null` field.
    pub missing: &'a str,
    /// Whether values are escaped for a JSON string (the template is a JSON document).
    pub json: bool,
}

impl Template {
    /// Parses `text` (the config key `key`), resolving each placeholder's path.
    pub fn parse(key: &str, text: &str, init: &mut Init) -> Result<Template, Error> {
        let bad = |why: String| Error::invalid_config(format!("config.{key}: {why}"));
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(bad("a `}` without its `{` (write `}}` for a brace)".into())),
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(bad(format!("the placeholder `{{{inner}` is not closed with `}}`")));
                            }
                            Some(c) => inner.push(c),
                        }
                    }
                    let (path, format) = match inner.split_once('|') {
                        None => (inner.trim(), Format::Plain),
                        Some((p, f)) => (
                            p.trim(),
                            match f.trim() {
                                "duration" => Format::Duration,
                                "time" => Format::Time,
                                other => {
                                    return Err(bad(format!(
                                        "unknown format `{other}` in `{{{inner}}}` (use `duration` or `time`)"
                                    )));
                                }
                            },
                        ),
                    };
                    if path.is_empty() {
                        return Err(bad("an empty placeholder `{}` (write `{{}}` for braces)".into()));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    let path = init.path(path).map_err(|e| bad(e.message))?;
                    parts.push(Part::Field(path, format));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Renders the template for `record`; returns the text and how many placeholders had
    /// nothing to show.
    pub fn render(&self, record: &Record<'_>, style: &Style<'_>) -> (String, usize) {
        let mut out = String::new();
        let mut missing = 0;
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path, format) => {
                    let text = match record.get(path) {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(value_text(&v, *format, style.zone)),
                    };
                    let text = text.unwrap_or_else(|| {
                        missing += 1;
                        style.missing.to_string()
                    });
                    if style.json {
                        // The content of a JSON string: escaped, without its quotes.
                        let quoted = serde_json::Value::String(text).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    } else {
                        out.push_str(&text);
                    }
                }
            }
        }
        (out, missing)
    }
}

/// A value as text in `format`; a value the format cannot read is shown as it is.
fn value_text(value: &Value, format: Format, zone: &Zone) -> String {
    let plain = || value.to_text().unwrap_or_default();
    match format {
        Format::Plain => plain(),
        Format::Duration => {
            let seconds = match value {
                Value::Integer(i) => Some(*i as f64),
                Value::Float(f) => Some(*f),
                Value::Text(t) => t.trim().parse::<f64>().ok(),
                _ => None,
            };
            match seconds.filter(|s| s.is_finite() && *s >= 0.0) {
                Some(s) => duration(s.round() as u64),
                None => plain(),
            }
        }
        Format::Time => match value.as_str().and_then(ctrflow_plugin_sdk::ctr::parse_timestamp) {
            Some(ms) => zone.format(ms),
            None => plain(),
        },
    }
}

/// `39s`, `2m 05s`, `1h 02m 05s`.
pub fn duration(total: u64) -> String {
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    }
}
