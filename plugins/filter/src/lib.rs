//! `filter`: keeps the records that meet the node's conditions and drops the others
//! (acknowledged, counted as dropped: a filter's "no" is not an error).
//!
//! A condition names a field and one test: `is = "missing"` (absent or `null`) or
//! `"present"`, `equals` a value, `one_of` a list, or a number `at_least` / `at_most` /
//! `above` / `below` a bound. `match = "all"` (default) keeps a record meeting every
//! condition; `"any"`, one of them. "Abandoned in queue for 30 s or more" is three:
//!
//! ```toml
//! config = { when = [
//!   { field = "Agent", is = "missing" },
//!   { field = "Queue.Name", is = "present" },
//!   { field = "Queue.Duration", at_least = 30 },
//! ] }
//! ```
//!
//! What it does not do: compare two fields, or route (use `route-by-field` for outputs).

use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform, Value};
use serde::Deserialize;
use serde_json::Value as Json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The conditions.
    when: Vec<ConditionConfig>,
    /// `"all"` (default) or `"any"`.
    #[serde(default, rename = "match")]
    mode: Mode,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    All,
    Any,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionConfig {
    field: String,
    is: Option<Presence>,
    equals: Option<Json>,
    one_of: Option<Vec<Json>>,
    at_least: Option<f64>,
    at_most: Option<f64>,
    above: Option<f64>,
    below: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Presence {
    Missing,
    Present,
}

/// One test on a field's value.
#[derive(Debug)]
enum Test {
    Is(Presence),
    OneOf(Vec<Json>),
    /// `lower` / `upper` bounds, each with whether it is inclusive.
    Range(Option<(f64, bool)>, Option<(f64, bool)>),
}

#[derive(Debug)]
struct Condition {
    field: Path,
    test: Test,
}

/// The plugin: its conditions, paths resolved once.
pub struct Filter {
    conditions: Vec<Condition>,
    mode: Mode,
}

impl Transform for Filter {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        if config.when.is_empty() {
            return Err(Error::invalid_config("config.when: list at least one condition"));
        }
        let mut conditions = Vec::new();
        for (n, c) in config.when.into_iter().enumerate() {
            let key = format!("config.when[{n}]");
            let bad = |why: &str| Error::invalid_config(format!("{key}: {why}"));
            let lower = match (c.at_least, c.above) {
                (Some(_), Some(_)) => return Err(bad("`at_least` and `above` together")),
                (Some(v), None) => Some((v, true)),
                (None, Some(v)) => Some((v, false)),
                (None, None) => None,
            };
            let upper = match (c.at_most, c.below) {
                (Some(_), Some(_)) => return Err(bad("`at_most` and `below` together")),
                (Some(v), None) => Some((v, true)),
                (None, Some(v)) => Some((v, false)),
                (None, None) => None,
            };
            let ranged = lower.is_some() || upper.is_some();
            let tests = [c.is.is_some(), c.equals.is_some(), c.one_of.is_some(), ranged];
            if tests.iter().filter(|t| **t).count() != 1 {
                return Err(bad(
                    "give exactly one test: `is`, `equals`, `one_of`, or bounds (`at_least`, `at_most`, `above`, `below`)",
                ));
            }
            let test = match (c.is, c.equals, c.one_of) {
                (Some(p), _, _) => Test::Is(p),
                (_, Some(v), _) => Test::OneOf(vec![v]),
                (_, _, Some(vs)) => Test::OneOf(vs),
                _ => Test::Range(lower, upper),
            };
            let field = init.path(&c.field).map_err(|e| bad(&e.message))?;
            conditions.push(Condition { field, test });
        }
        Ok(Filter { conditions, mode: config.mode })
    }

    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let meets = |c: &Condition| c.test.passes(record.get(&c.field));
        let keep = match self.mode {
            Mode::All => self.conditions.iter().all(meets),
            Mode::Any => self.conditions.iter().any(meets),
        };
        if keep { Outcome::Keep } else { Outcome::Drop }
    }
}

impl Test {
    fn passes(&self, value: Option<Value>) -> bool {
        let value = value.filter(|v| !v.is_null());
        match self {
            Test::Is(Presence::Missing) => value.is_none(),
            Test::Is(Presence::Present) => value.is_some(),
            Test::OneOf(options) => value.is_some_and(|v| {
                let json = v.to_json();
                options.iter().any(|o| match (o, &json) {
                    // 30 equals 30.0.
                    (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
                    (a, b) => a == b,
                })
            }),
            Test::Range(lower, upper) => {
                let n = match value {
                    Some(Value::Integer(i)) => i as f64,
                    Some(Value::Float(f)) => f,
                    // Not a number: no bound can hold.
                    _ => return false,
                };
                let above = lower.is_none_or(|(b, incl)| if incl { n >= b } else { n > b });
                let below = upper.is_none_or(|(b, incl)| if incl { n <= b } else { n < b });
                above && below
            }
        }
    }
}

ctrflow_plugin_sdk::export_transform!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::testing;
    use ctrflow_plugin_sdk::testing::samples::{ABANDONED, KYOPARK_V1, parse};
    use serde_json::json;

    fn abandoned_for(seconds: u64) -> Json {
        json!({ "when": [
            { "field": "Agent", "is": "missing" },
            { "field": "Queue.Name", "is": "present" },
            { "field": "Queue.Duration", "at_least": seconds },
        ] })
    }

    fn decide(config: Json, record: Json) -> Outcome {
        let (mut p, _) = testing::init::<Filter>(config).expect("config is valid");
        testing::process(&mut p, record).0
    }

    #[test]
    fn the_abandoned_sample_is_kept_and_the_answered_one_dropped() {
        assert_eq!(decide(abandoned_for(30), parse(ABANDONED)), Outcome::Keep);
        // It waited 39 s: over a 60 s threshold it is not an alert.
        assert_eq!(decide(abandoned_for(60), parse(ABANDONED)), Outcome::Drop);
        // Answered by an agent.
        assert_eq!(decide(abandoned_for(0), parse(KYOPARK_V1)), Outcome::Drop);
    }

    #[test]
    fn equals_one_of_any_and_exclusive_bounds() {
        let r = parse(KYOPARK_V1);
        let channel = r["Channel"].clone();
        assert_eq!(decide(json!({"when": [{"field": "Channel", "equals": channel}]}), r.clone()), Outcome::Keep);
        assert_eq!(
            decide(json!({"when": [{"field": "Channel", "one_of": ["CHAT", "TASK"]}]}), r.clone()),
            Outcome::Drop
        );
        let any = json!({"match": "any", "when": [{"field": "Channel", "equals": "CHAT"}, {"field": "Agent", "is": "present"}]});
        assert_eq!(decide(any, r.clone()), Outcome::Keep);
        let a = parse(ABANDONED);
        assert_eq!(decide(json!({"when": [{"field": "Queue.Duration", "above": 39}]}), a.clone()), Outcome::Drop);
        assert_eq!(
            decide(json!({"when": [{"field": "Queue.Duration", "above": 38, "below": 40}]}), a.clone()),
            Outcome::Keep
        );
        assert_eq!(decide(json!({"when": [{"field": "Queue.Duration", "equals": 39.0}]}), a.clone()), Outcome::Keep);
        // A bound on text never holds.
        assert_eq!(decide(json!({"when": [{"field": "Queue.Name", "at_least": 0}]}), a), Outcome::Drop);
    }

    #[test]
    fn bad_conditions_are_refused_naming_them() {
        for (config, expect) in [
            (json!({"when": []}), "config.when"),
            (json!({"when": [{"field": "Agent"}]}), "config.when[0]"),
            (json!({"when": [{"field": "Agent", "is": "missing", "equals": 1}]}), "config.when[0]"),
            (json!({"when": [{"field": "Q", "at_least": 1, "above": 2}]}), "config.when[0]"),
            (json!({"when": [{"field": "Agent", "is": "gone"}]}), "config.when[0].is"),
            (json!({"when": [{"field": "Agent", "is": "missing"}], "match": "most"}), "config.match"),
        ] {
            let e = testing::init::<Filter>(config.clone()).err().expect("refused");
            assert!(e.message.contains(expect), "{config}: {}", e.message);
        }
    }
}
