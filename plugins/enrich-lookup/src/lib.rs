//! `enrich-lookup`: writes the row a lookup table holds for one of the record's fields into
//! the record.
//!
//! For each record the value at `key` (e.g. `Agent.Username`) is looked up in `table` (one
//! of the tables the node is granted); the row found, or the columns of it named in
//! `fields`, is written as an object at `target` (e.g. `AgentInfo`). Scalars are looked up
//! by their text form (`7` → `"7"`, as the host's tables key rows).
//!
//! A miss — no row, or a record without the key (missing or `null`) — is handled as
//! `on_miss` says: `keep` the record unchanged (default), write `null` at `target`, `drop`
//! the record, or `fail` it as a bad record naming the key. A key that is an object or an
//! array is a bad record whatever `on_miss` says: it is not a key, and guessing would hide a
//! wrong `key` path. A table that cannot answer fails the record with `lookup-failed`, so the
//! node's `on_error` decides whether to retry or dead-letter it.
//!
//! Counters: `hits`, `misses`.

use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform, Value, count, lookup, lookup_value};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// The node's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The granted lookup table to read.
    table: String,
    /// Path of the lookup key in the record.
    key: String,
    /// Path where the row is written.
    target: String,
    /// Columns of the row to copy (all of them when absent).
    #[serde(default)]
    fields: Option<Vec<String>>,
    /// What to do when there is no row for the key.
    #[serde(default)]
    on_miss: OnMiss,
}

/// What a miss does to the record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnMiss {
    /// Send the record on unchanged.
    #[default]
    Keep,
    /// Write `null` at `target`, so every record has the field.
    Null,
    /// Drop the record (acknowledged, not dead-lettered).
    Drop,
    /// Fail the record as a bad record.
    Fail,
}

/// The plugin, with its paths resolved once at init.
pub struct EnrichLookup {
    table: String,
    key: Path,
    target: Path,
    fields: Option<Vec<String>>,
    on_miss: OnMiss,
}

impl Transform for EnrichLookup {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        if config.table.is_empty() {
            return Err(Error::invalid_config("config: `table` is empty"));
        }
        if config.fields.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::invalid_config("config: `fields` is empty (leave it out to copy every column)"));
        }
        Ok(EnrichLookup {
            key: init.path(&config.key)?,
            target: init.path(&config.target)?,
            table: config.table,
            fields: config.fields,
            on_miss: config.on_miss,
        })
    }

    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let key = match record.get(&self.key) {
            None | Some(Value::Null) => None,
            Some(Value::Json(_)) => {
                return Outcome::Fail(Error::bad_record(format!(
                    "the lookup key {} is an object or array, not a value",
                    self.key.as_str()
                )));
            }
            Some(scalar) => scalar.to_text(),
        };
        // The whole row goes into the record as the JSON text the host sent, unparsed; only
        // a selection of columns needs the row as JSON.
        let row = match &key {
            Some(key) => match &self.fields {
                None => lookup_value(&self.table, key),
                Some(fields) => {
                    lookup(&self.table, key).map(|row| row.map(|r| Json::Object(select(&r, fields)).into()))
                }
            },
            None => Ok(None),
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => return Outcome::Fail(e),
        };
        let Some(value) = row else {
            count("misses", 1);
            return self.miss(record, key.as_deref());
        };
        count("hits", 1);
        match record.set(&self.target, value) {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Fail(e),
        }
    }
}

impl EnrichLookup {
    fn miss(&self, record: &mut Record<'_>, key: Option<&str>) -> Outcome {
        match self.on_miss {
            OnMiss::Keep => Outcome::Keep,
            OnMiss::Drop => Outcome::Drop,
            OnMiss::Null => match record.set(&self.target, Value::Null) {
                Ok(()) => Outcome::Keep,
                Err(e) => Outcome::Fail(e),
            },
            OnMiss::Fail => Outcome::Fail(Error::bad_record(match key {
                Some(key) => format!("no row in table {:?} for {} = {key:?}", self.table, self.key.as_str()),
                None => format!("the record has no {} to look up in table {:?}", self.key.as_str(), self.table),
            })),
        }
    }
}

/// The named columns of `row`; a column the row lacks is written as `null`, so every
/// enriched record has the same shape.
fn select(row: &Json, fields: &[String]) -> Map<String, Json> {
    fields.iter().map(|f| (f.clone(), row.get(f).cloned().unwrap_or(Json::Null))).collect()
}

ctrflow_plugin_sdk::export_enrich!(EnrichLookup);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::{ErrorKind, testing};
    use serde_json::json;

    use ctrflow_plugin_sdk::testing::samples::ABANDONED;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1 as V1;

    use ctrflow_plugin_sdk::testing::samples::parse as sample;

    fn agents() {
        testing::set_table(
            "agents",
            "username",
            &[
                json!({"username": "Steve.Lusk", "team": "Refrigeration", "site": "Dallas", "tier": 2}),
                json!({"username": "someone.else", "team": "Billing", "site": "Austin", "tier": 1}),
            ],
        );
    }

    fn plugin(extra: Json) -> EnrichLookup {
        let mut config = json!({"table": "agents", "key": "Agent.Username", "target": "AgentInfo"});
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        testing::init::<EnrichLookup>(config).expect("config is valid").0
    }

    #[test]
    fn a_hit_writes_the_whole_row_at_target() {
        agents();
        let mut p = plugin(json!({}));
        let before = sample(V1);
        let (outcome, after) = testing::process(&mut p, before.clone());
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(
            after["AgentInfo"],
            json!({"username": "Steve.Lusk", "team": "Refrigeration", "site": "Dallas", "tier": 2})
        );
        // Only the target was added.
        let mut expected = before;
        expected["AgentInfo"] = after["AgentInfo"].clone();
        assert_eq!(after, expected);
        assert_eq!((testing::counter("hits"), testing::counter("misses")), (1, 0));
    }

    #[test]
    fn fields_selects_columns_and_fills_absent_ones_with_null() {
        agents();
        let mut p = plugin(json!({"fields": ["team", "region"], "target": "Agent.Info"}));
        let (outcome, after) = testing::process(&mut p, sample(V1));
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(after["Agent"]["Info"], json!({"team": "Refrigeration", "region": null}));
        assert_eq!(after["Agent"]["Username"], json!("Steve.Lusk"));
    }

    #[test]
    fn the_readme_example() {
        agents();
        let config = json!({
            "table": "agents", "key": "Agent.Username", "target": "AgentInfo",
            "fields": ["team", "site"], "on_miss": "null",
        });
        let (mut p, _) = testing::init::<EnrichLookup>(config).unwrap();
        let (_, after) = testing::process(&mut p, sample(V1));
        assert_eq!(after["AgentInfo"], json!({"team": "Refrigeration", "site": "Dallas"}));
    }

    #[test]
    fn on_miss_keep_leaves_the_record_unchanged() {
        agents();
        let mut p = plugin(json!({}));
        let mut record = sample(V1);
        record["Agent"]["Username"] = json!("nobody");
        let (outcome, after) = testing::process(&mut p, record.clone());
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(after, record);
        assert_eq!((testing::counter("hits"), testing::counter("misses")), (0, 1));
    }

    #[test]
    fn a_record_without_the_key_is_a_miss() {
        // The abandoned sample has `Agent: null`, so no `Agent.Username`.
        agents();
        let mut p = plugin(json!({"on_miss": "null"}));
        let (outcome, after) = testing::process(&mut p, sample(ABANDONED));
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(after["AgentInfo"], Json::Null);
        assert!(after.as_object().unwrap().contains_key("AgentInfo"));
        assert_eq!(testing::counter("misses"), 1);
    }

    #[test]
    fn on_miss_drop_drops() {
        agents();
        let mut p = plugin(json!({"on_miss": "drop"}));
        assert_eq!(testing::process(&mut p, sample(ABANDONED)).0, Outcome::Drop);
    }

    #[test]
    fn on_miss_fail_is_a_bad_record_naming_the_key() {
        agents();
        let mut p = plugin(json!({"on_miss": "fail"}));
        let mut record = sample(V1);
        record["Agent"]["Username"] = json!("nobody");
        let Outcome::Fail(e) = testing::process(&mut p, record).0 else { panic!("expected a failure") };
        assert_eq!(e.kind, ErrorKind::BadRecord);
        assert!(e.message.contains("Agent.Username") && e.message.contains("nobody"), "{}", e.message);

        let Outcome::Fail(e) = testing::process(&mut p, sample(ABANDONED)).0 else { panic!("expected a failure") };
        assert_eq!(e.kind, ErrorKind::BadRecord);
        assert!(e.message.contains("Agent.Username"), "{}", e.message);
    }

    #[test]
    fn scalar_keys_are_looked_up_by_their_text() {
        testing::set_table("attempts", "n", &[json!({"n": 0, "label": "abandoned"})]);
        let config = json!({"table": "attempts", "key": "AgentConnectionAttempts", "target": "Attempts"});
        let (mut p, _) = testing::init::<EnrichLookup>(config).unwrap();
        let (_, after) = testing::process(&mut p, sample(ABANDONED));
        assert_eq!(after["Attempts"]["label"], json!("abandoned"));
    }

    #[test]
    fn an_object_key_is_a_bad_record() {
        agents();
        let config = json!({"table": "agents", "key": "Agent", "target": "AgentInfo"});
        let (mut p, _) = testing::init::<EnrichLookup>(config).unwrap();
        let Outcome::Fail(e) = testing::process(&mut p, sample(V1)).0 else { panic!("expected a failure") };
        assert_eq!(e.kind, ErrorKind::BadRecord);
    }

    #[test]
    fn a_table_that_cannot_answer_fails_the_record() {
        // No `set_table("ungranted", ..)`: the test lookup fails as the host does.
        let config = json!({"table": "ungranted", "key": "Agent.Username", "target": "AgentInfo"});
        let (mut p, _) = testing::init::<EnrichLookup>(config).unwrap();
        let Outcome::Fail(e) = testing::process(&mut p, sample(V1)).0 else { panic!("expected a failure") };
        assert_eq!(e.kind, ErrorKind::LookupFailed);
    }

    #[test]
    fn a_target_crossing_a_scalar_fails_the_record() {
        agents();
        let mut p = plugin(json!({"target": "Channel.Agent"}));
        let Outcome::Fail(e) = testing::process(&mut p, sample(V1)).0 else { panic!("expected a failure") };
        assert_eq!(e.kind, ErrorKind::BadRecord);
    }

    #[test]
    fn bad_configs_are_invalid_config_errors_naming_the_problem() {
        for (config, needle) in [
            (json!({"table": "agents", "key": "Agent.Username", "target": "X", "on_mis": "drop"}), "on_mis"),
            (json!({"key": "Agent.Username", "target": "X"}), "table"),
            (json!({"table": "agents", "target": "X"}), "key"),
            (json!({"table": "agents", "key": "Agent.Username", "target": "X", "on_miss": "skip"}), "skip"),
            (json!({"table": "agents", "key": "Agent.Username", "target": "X", "fields": []}), "fields"),
            (json!({"table": "", "key": "Agent.Username", "target": "X"}), "table"),
            (json!({"table": "agents", "key": "Agent.", "target": "X"}), "Agent."),
        ] {
            let err = testing::init::<EnrichLookup>(config.clone()).err().expect("refused");
            assert_eq!(err.kind, ErrorKind::InvalidConfig, "{config}");
            assert!(err.message.contains(needle), "{config}: {}", err.message);
        }
    }
}
