//! `route-by-field`: sends each record to a named output chosen by the value of one field.
//!
//! Every value in `routes` becomes an output of the same name (lowercased when `lowercase`
//! is set), addressed in the pipeline as `<node>.<name>`; `default` (`"other"`) is the output
//! for everything else, including records without the field. Every record goes to a named
//! output, so a pipeline can wire each one explicitly.
//!
//! Matching is exact and case-sensitive on the field's value (`lowercase` changes only the
//! output names). A number or boolean matches by its text (`0`, `true`); `null`, a missing
//! field, an object or an array goes to the default output.

use std::collections::HashMap;

use ctrflow_plugin_sdk::{Error, Init, Outcome, Output, Path, Record, Transform, Value};
use serde::Deserialize;

/// The node's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Path of the field to route on.
    #[serde(default = "default_field")]
    field: String,
    /// The values that get an output of their own.
    routes: Vec<String>,
    /// The output for every other record.
    #[serde(default = "default_output")]
    default: String,
    /// Whether output names are the lowercased values.
    #[serde(default)]
    lowercase: bool,
}

fn default_field() -> String {
    "Channel".into()
}

fn default_output() -> String {
    "other".into()
}

/// The plugin: the field's path and a map from value to output, built once at init.
pub struct RouteByField {
    field: Path,
    routes: HashMap<String, Output>,
    default: Output,
}

impl Transform for RouteByField {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        if config.routes.is_empty() {
            return Err(Error::invalid_config(
                "config: `routes` is empty: every record would go to the default output",
            ));
        }
        let field = init.path(&config.field)?;
        let mut routes = HashMap::new();
        for value in &config.routes {
            let name = if config.lowercase { value.to_lowercase() } else { value.clone() };
            check_name(&name, "routes")?;
            if name == config.default {
                // The two would share one output, and the pipeline could not tell them apart.
                return Err(Error::invalid_config(format!(
                    "config: routes: {value:?} names the same output as `default` ({name:?})"
                )));
            }
            // Declaring the same name twice gives the same output (`["VOICE", "voice"]` with
            // `lowercase` both go to `voice`).
            routes.insert(value.clone(), init.output(&name));
        }
        check_name(&config.default, "default")?;
        let default = init.output(&config.default);
        Ok(RouteByField { field, routes, default })
    }

    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let output = match record.get(&self.field) {
            Some(Value::Text(text)) => self.routes.get(&text),
            Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => {
                v.to_text().and_then(|text| self.routes.get(&text))
            }
            _ => None,
        };
        Outcome::Route(output.unwrap_or(&self.default).clone())
    }
}

/// An output is addressed as `<node>.<name>`: the name must be non-empty and dot-free.
fn check_name(name: &str, key: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains('.') || name.chars().any(char::is_whitespace) {
        return Err(Error::invalid_config(format!(
            "config: {key}: {name:?} cannot name an output (it must be non-empty, \
             without dots or spaces)"
        )));
    }
    Ok(())
}

ctrflow_plugin_sdk::export_transform!(RouteByField);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::{ErrorKind, testing};
    use serde_json::{Value as Json, json};

    use ctrflow_plugin_sdk::testing::samples::ABANDONED;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1 as V1;

    use ctrflow_plugin_sdk::testing::samples::parse as sample;

    /// The name of the output a record went to (the record itself must be unchanged).
    fn route(p: &mut RouteByField, record: Json) -> String {
        let (outcome, after) = testing::process(p, record.clone());
        assert_eq!(after, record, "routing must not change the record");
        match outcome {
            Outcome::Route(o) => o.name().to_string(),
            other => panic!("expected a route, got {other:?}"),
        }
    }

    #[test]
    fn declares_one_output_per_route_and_the_default() {
        let (_, outputs) = testing::init::<RouteByField>(json!({"routes": ["VOICE", "CHAT", "TASK"]})).unwrap();
        assert_eq!(outputs, ["VOICE", "CHAT", "TASK", "other"]);
    }

    #[test]
    fn routes_real_voice_ctrs_by_channel() {
        let (mut p, _) = testing::init::<RouteByField>(json!({"routes": ["VOICE", "CHAT", "TASK"]})).unwrap();
        assert_eq!(route(&mut p, sample(V1)), "VOICE");
        assert_eq!(route(&mut p, sample(ABANDONED)), "VOICE");
        // Synthetic: a chat and an email contact, and one with no Channel at all.
        assert_eq!(route(&mut p, json!({"ContactId": "c", "Channel": "CHAT"})), "CHAT");
        assert_eq!(route(&mut p, json!({"ContactId": "e", "Channel": "EMAIL"})), "other");
        assert_eq!(route(&mut p, json!({"ContactId": "x"})), "other");
        assert_eq!(route(&mut p, json!({"ContactId": "n", "Channel": null})), "other");
    }

    #[test]
    fn the_output_index_is_the_declared_position() {
        let (mut p, outputs) =
            testing::init::<RouteByField>(json!({"routes": ["VOICE", "CHAT"], "default": "rest"})).unwrap();
        let Outcome::Route(o) = testing::process(&mut p, json!({"Channel": "CHAT"})).0 else { panic!() };
        // An `Output` carries its index: rebuild the declared list and compare.
        let mut init = Init::new(Json::Null);
        for name in &outputs {
            init.output(name);
        }
        assert_eq!(o, init.output("CHAT"));
        assert_eq!(outputs[1], "CHAT");
    }

    #[test]
    fn lowercase_names_outputs_but_matches_exactly() {
        let config = json!({"routes": ["VOICE", "CHAT"], "lowercase": true, "default": "misc"});
        let (mut p, outputs) = testing::init::<RouteByField>(config).unwrap();
        assert_eq!(outputs, ["voice", "chat", "misc"]);
        assert_eq!(route(&mut p, sample(V1)), "voice");
        assert_eq!(route(&mut p, json!({"Channel": "voice"})), "misc");
    }

    #[test]
    fn routes_on_nested_and_non_string_fields() {
        let config = json!({"field": "Queue.Name", "routes": ["BasicQueue"]});
        let (mut p, _) = testing::init::<RouteByField>(config).unwrap();
        assert_eq!(route(&mut p, sample(ABANDONED)), "BasicQueue");
        assert_eq!(route(&mut p, sample(V1)), "other");

        let config = json!({"field": "AgentConnectionAttempts", "routes": ["0"], "default": "answered"});
        let (mut p, _) = testing::init::<RouteByField>(config).unwrap();
        assert_eq!(route(&mut p, sample(ABANDONED)), "0");
        assert_eq!(route(&mut p, sample(V1)), "answered");

        // An object never matches, even one whose text is listed.
        let config = json!({"field": "Campaign", "routes": ["{\"CampaignId\":null}"]});
        let (mut p, _) = testing::init::<RouteByField>(config).unwrap();
        assert_eq!(route(&mut p, sample(V1)), "other");
    }

    #[test]
    fn bad_configs_are_invalid_config_errors_naming_the_problem() {
        for (config, needle) in [
            (json!({"routes": ["VOICE"], "defualt": "x"}), "defualt"),
            (json!({}), "routes"),
            (json!({"routes": []}), "routes"),
            (json!({"routes": ["VOICE", "other"]}), "other"),
            (json!({"routes": ["OTHER"], "lowercase": true}), "OTHER"),
            (json!({"routes": ["a.b"]}), "a.b"),
            (json!({"routes": ["VOICE"], "default": ""}), "default"),
            (json!({"routes": ["VOICE"], "field": ""}), "path"),
        ] {
            let err = testing::init::<RouteByField>(config.clone()).err().expect("refused");
            assert_eq!(err.kind, ErrorKind::InvalidConfig, "{config}");
            assert!(err.message.contains(needle), "{config}: {}", err.message);
        }
    }
}
