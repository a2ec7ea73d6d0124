//! `notify-template`: renders a notification's `subject` and `body` from a contact trace
//! record, for the `sns` and `http` sinks — "caller +44… abandoned in BasicQueue after 39s".
//!
//! Each record is encoded as
//! - `payload`: the rendered body (what SNS publishes as the message, what the HTTP sink
//!   POSTs);
//! - `columns`: `subject` (when configured; SNS's subject) and `body`.
//!
//! Placeholders are `{Path.To.Field}`, with `|duration` (seconds as `2m 05s`) or `|time`
//! (an RFC 3339 timestamp in `time_zone`); a missing or `null` field renders as `missing`.
//! With `escape = "json"` the body is a JSON document (a chat webhook's `{"text": "…"}`) and
//! values are escaped for a JSON string.
//!
//! It does not choose which records notify: route or filter before it (the `filter`
//! plugin), and let the sink's `once_per` keep it to one message per contact.

pub mod template;
pub mod zone;

use ctrflow_plugin_sdk::{Encoded, Error, Init, Record, Sink, Value};
use serde::Deserialize;

use template::{Style, Template};
use zone::Zone;

/// The node's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The subject template (SNS subjects: one line, at most 100 characters).
    #[serde(default)]
    subject: Option<String>,
    /// The body template.
    body: String,
    /// The zone `|time` placeholders are shown in: `"UTC"` (default), `"+01:00"`, or a name
    /// from the plugin's table (`"Europe/London"`).
    #[serde(default = "utc")]
    time_zone: String,
    /// What a missing or `null` field renders as (default `"(unknown)"`).
    #[serde(default = "unknown")]
    missing: String,
    /// `"none"` (default) or `"json"`: escape values for a JSON string in the body.
    #[serde(default)]
    escape: Escape,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Escape {
    #[default]
    None,
    Json,
}

fn utc() -> String {
    "UTC".into()
}

fn unknown() -> String {
    "(unknown)".into()
}

/// The plugin: its templates parsed and their paths resolved once.
pub struct NotifyTemplate {
    subject: Option<Template>,
    body: Template,
    zone: Zone,
    missing: String,
    json: bool,
}

impl Sink for NotifyTemplate {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        let zone =
            Zone::parse(&config.time_zone).map_err(|e| Error::invalid_config(format!("config.time_zone: {e}")))?;
        let subject = config.subject.as_deref().map(|t| Template::parse("subject", t, init)).transpose()?;
        let body = Template::parse("body", &config.body, init)?;
        if config.escape == Escape::Json && serde_json::from_str::<serde_json::Value>(&probe(&config.body)).is_err() {
            return Err(Error::invalid_config(
                "config.body: with escape = \"json\" the body must be a JSON document (placeholders inside its strings)",
            ));
        }
        Ok(NotifyTemplate { subject, body, zone, missing: config.missing, json: config.escape == Escape::Json })
    }

    fn encode(&mut self, record: &Record<'_>) -> Result<Encoded, Error> {
        let plain = Style { zone: &self.zone, missing: &self.missing, json: false };
        let style = Style { json: self.json, ..plain };
        let mut columns = Vec::new();
        let mut missing = 0;
        if let Some(subject) = &self.subject {
            let (text, m) = subject.render(record, &plain);
            missing += m;
            columns.push(("subject".to_string(), Value::Text(text)));
        }
        let (body, m) = self.body.render(record, &style);
        missing += m;
        if missing > 0 {
            ctrflow_plugin_sdk::count("missing_fields", missing as i64);
        }
        columns.push(("body".to_string(), Value::Text(body.clone())));
        Ok(Encoded { partition_key: None, sort_key: None, columns, payload: Some(body.into_bytes()) })
    }
}

/// The body with every placeholder replaced by `x`, to check it is JSON at init.
fn probe(body: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if depth == 0 && chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if depth == 0 && chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => depth += 1,
            '}' if depth > 0 => {
                depth -= 1;
                out.push('x');
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

ctrflow_plugin_sdk::export_sink!(NotifyTemplate);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::testing::samples::{ABANDONED, KYOPARK_V1, parse};
    use ctrflow_plugin_sdk::{ErrorKind, testing};
    use serde_json::json;

    fn render(config: serde_json::Value, record: serde_json::Value) -> Encoded {
        let mut p = testing::init_sink::<NotifyTemplate>(config).expect("config is valid");
        testing::encode(&mut p, record).expect("encodes")
    }

    fn column(e: &Encoded, name: &str) -> String {
        e.columns.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_str()).unwrap().to_string()
    }

    #[test]
    fn the_abandoned_sample_renders_subject_and_body() {
        let e = render(
            json!({
                "subject": "Abandoned in {Queue.Name} after {Queue.Duration|duration}",
                "body": "Caller {CustomerEndpoint.Address} waited {Queue.Duration|duration} from {Queue.EnqueueTimestamp|time} and hung up (contact {ContactId}, agent {Agent.Username}).",
                "time_zone": "Australia/Sydney",
                "missing": "none",
            }),
            parse(ABANDONED),
        );
        assert_eq!(column(&e, "subject"), "Abandoned in BasicQueue after 39s");
        let body = "Caller +61401004854 waited 39s from 2018-11-02 18:00:25 AEDT and hung up (contact c54d7b3a-581d-45ce-9a3c-e4cbb62eca3f, agent none).";
        assert_eq!(column(&e, "body"), body);
        assert_eq!(e.payload.as_deref(), Some(body.as_bytes()));
        assert_eq!(testing::counter("missing_fields"), 1);
    }

    #[test]
    fn durations_read_minutes_and_hours() {
        assert_eq!(template::duration(0), "0s");
        assert_eq!(template::duration(39), "39s");
        assert_eq!(template::duration(125), "2m 05s");
        assert_eq!(template::duration(3725), "1h 02m 05s");
        let e = render(
            json!({"body": "{Queue.Duration|duration} / {Agent.AgentInteractionDuration|duration}"}),
            parse(KYOPARK_V1),
        );
        let ctr = parse(KYOPARK_V1);
        let expect = format!(
            "{} / {}",
            template::duration(ctr["Queue"]["Duration"].as_u64().unwrap()),
            template::duration(ctr["Agent"]["AgentInteractionDuration"].as_u64().unwrap())
        );
        assert_eq!(column(&e, "body"), expect);
    }

    #[test]
    fn a_json_body_escapes_values_and_stays_json() {
        let mut ctr = parse(ABANDONED);
        ctr["Attributes"]["note"] = json!("said \"urgent\"\nthen hung up");
        let e = render(
            // JSON's own braces are written doubled, as every literal brace in a template.
            json!({"body": "{{\"text\": \"{Attributes.note} in {Queue.Name} at {Queue.EnqueueTimestamp|time}\"}}", "escape": "json", "time_zone": "+01:00"}),
            ctr,
        );
        let sent: serde_json::Value = serde_json::from_slice(e.payload.as_deref().unwrap()).expect("the body is JSON");
        assert_eq!(sent["text"], "said \"urgent\"\nthen hung up in BasicQueue at 2018-11-02 08:00:25 +01:00");
    }

    #[test]
    fn braces_and_unreadable_values_render_as_they_are() {
        let e = render(
            json!({"body": "{{literal}} {Queue.Name|duration} {Queue.Duration|time} {Queue} {Missing.Field}"}),
            parse(ABANDONED),
        );
        let body = column(&e, "body");
        assert!(body.starts_with("{literal} BasicQueue 39 {\""), "{body}");
        assert!(body.ends_with(" (unknown)"), "{body}");
    }

    #[test]
    fn bad_config_is_refused_naming_the_key() {
        for (config, key) in [
            (json!({"body": "hello {ContactId"}), "config.body"),
            (json!({"body": "x", "subject": "{Queue.Duration|minutes}"}), "config.subject"),
            (json!({"body": "x", "time_zone": "Moon/Base"}), "config.time_zone"),
            (json!({"body": "not json {ContactId}", "escape": "json"}), "config.body"),
            (json!({"body": "x", "colour": "red"}), "colour"),
            (json!({"subject": "x"}), "body"),
        ] {
            let e = testing::init_sink::<NotifyTemplate>(config.clone()).err().expect("refused");
            assert_eq!(e.kind, ErrorKind::InvalidConfig);
            assert!(e.message.contains(key), "{config}: {}", e.message);
        }
    }
}
