//! `ctr-item`: encodes a contact trace record as a DynamoDB item.
//!
//! Each record becomes an [`Encoded`] with
//! - `partition_key`: the text of the value at `partition_value` (default `ContactId`), and
//!   `sort_key`, when configured, the text of the value at `sort_value`;
//! - `columns`, the item's attributes: first the key attributes (`partition_key`, then
//!   `sort_key`, holding the key values with their JSON type, so a numeric key stays a
//!   number), then the record's top-level fields (all, or those named in `attributes`), then
//!   `LastUpdateTimestampMs`;
//! - `payload`: the whole record as JSON bytes, for connectors that store the document.
//!
//! Nested values (`Agent`, `Queue`, `Recordings`, …) stay whole as `Value::Json`, which the
//! DynamoDB connector writes as maps and lists. With `flatten = true` nested *objects* become
//! `Parent_Child` attributes instead (`Agent_Username`, `Attributes_greetingPlayed`: handy
//! for secondary indexes); arrays stay lists, and an empty object becomes `null`.
//!
//! `LastUpdateTimestampMs` (epoch milliseconds, a number) is always added when the record has
//! a `LastUpdateTimestamp`, whatever `attributes` says: "newest wins" conditional writes
//! compare it, and numbers compare more safely than timestamp strings. A
//! `LastUpdateTimestamp` that is not a timestamp fails the record rather than being stored
//! without the number a newer-wins write needs.
//!
//! A record without its key value (missing, `null`, an empty string, a boolean, an object or
//! an array: nothing DynamoDB accepts as a key) fails as a bad record naming the path.

use std::collections::HashSet;

use ctrflow_plugin_sdk::ctr::parse_timestamp;
use ctrflow_plugin_sdk::{Encoded, Error, Init, Path, Record, Sink, Value};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// The attribute added for newest-wins writes.
pub const LAST_UPDATE_MS: &str = "LastUpdateTimestampMs";

/// The node's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Name of the partition key attribute.
    #[serde(default = "contact_id")]
    partition_key: String,
    /// Path of the partition key value in the record.
    #[serde(default = "contact_id")]
    partition_value: String,
    /// Name of the sort key attribute, if the table has one.
    #[serde(default)]
    sort_key: Option<String>,
    /// Path of the sort key value (defaults to `sort_key`).
    #[serde(default)]
    sort_value: Option<String>,
    /// Top-level fields that become attributes (all when absent).
    #[serde(default)]
    attributes: Option<Vec<String>>,
    /// Whether nested objects become `Parent_Child` attributes.
    #[serde(default)]
    flatten: bool,
}

fn contact_id() -> String {
    "ContactId".into()
}

/// A key attribute: its name and where its value is.
struct Key {
    name: String,
    value: Path,
}

/// The plugin, with its key paths resolved once at init.
pub struct CtrItem {
    partition: Key,
    sort: Option<Key>,
    attributes: Option<Vec<String>>,
    flatten: bool,
}

impl Sink for CtrItem {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        let partition = Key { value: init.path(&config.partition_value)?, name: config.partition_key };
        let sort = match (config.sort_key, config.sort_value) {
            (Some(name), value) => {
                let value = init.path(value.as_deref().unwrap_or(&name))?;
                Some(Key { name, value })
            }
            (None, Some(_)) => {
                return Err(Error::invalid_config("config: `sort_value` is set without `sort_key`"));
            }
            (None, None) => None,
        };
        for name in std::iter::once(&partition.name).chain(sort.as_ref().map(|k| &k.name)) {
            if name.is_empty() || name == LAST_UPDATE_MS {
                return Err(Error::invalid_config(format!("config: {name:?} cannot name a key")));
            }
        }
        if sort.as_ref().is_some_and(|s| s.name == partition.name) {
            return Err(Error::invalid_config(format!(
                "config: `sort_key` and `partition_key` are both {:?}",
                partition.name
            )));
        }
        if let Some(names) = &config.attributes {
            let mut seen = HashSet::new();
            if let Some(twice) = names.iter().find(|n| !seen.insert(*n)) {
                return Err(Error::invalid_config(format!("config: attributes: {twice:?} is listed twice")));
            }
        }
        Ok(CtrItem { partition, sort, attributes: config.attributes, flatten: config.flatten })
    }

    fn encode(&mut self, record: &Record<'_>) -> Result<Encoded, Error> {
        let (partition_key, partition_value) = key_value(record, &self.partition)?;
        let sort = match &self.sort {
            Some(key) => Some(key_value(record, key)?),
            None => None,
        };
        let json = record.to_json();
        let Json::Object(fields) = &json else {
            return Err(Error::bad_record("the record is not a JSON object"));
        };
        let last_update_ms = last_update_ms(fields)?;

        let mut item = Item::default();
        item.key(self.partition.name.clone(), partition_value);
        if let (Some(key), Some((_, value))) = (&self.sort, &sort) {
            item.key(key.name.clone(), value.clone());
        }
        // The key attributes and the timestamp column are ours: a top-level field of the
        // same name (possibly holding something else) must not shadow them.
        item.reserved.insert(LAST_UPDATE_MS.to_string());
        let mut add = |name: &String, value: &Json| {
            if self.flatten {
                item.flattened(name.clone(), value)
            } else {
                item.attribute(name.clone(), Value::from_json(value))
            }
        };
        match &self.attributes {
            None => fields.iter().try_for_each(|(name, value)| add(name, value))?,
            Some(names) => names
                .iter()
                .filter_map(|name| fields.get(name).map(|value| (name, value)))
                .try_for_each(|(name, value)| add(name, value))?,
        }
        if let Some(ms) = last_update_ms {
            item.columns.push((LAST_UPDATE_MS.to_string(), Value::Integer(ms)));
        }

        Ok(Encoded {
            partition_key: Some(partition_key),
            sort_key: sort.map(|(text, _)| text),
            columns: item.columns,
            payload: Some(serde_json::to_vec(&json).map_err(|e| Error::internal(e.to_string()))?),
        })
    }
}

/// The item's columns being built, and the names they take.
#[derive(Default)]
struct Item {
    columns: Vec<(String, Value)>,
    /// Names of key attributes and other columns that fields may not overwrite.
    reserved: HashSet<String>,
    /// Names already used by a field.
    seen: HashSet<String>,
}

impl Item {
    /// Adds a key attribute.
    fn key(&mut self, name: String, value: Value) {
        self.reserved.insert(name.clone());
        self.columns.push((name, value));
    }

    /// Adds a field's attribute, unless a key attribute has its name.
    fn attribute(&mut self, name: String, value: Value) -> Result<(), Error> {
        if self.reserved.contains(&name) {
            return Ok(());
        }
        if !self.seen.insert(name.clone()) {
            return Err(Error::bad_record(format!("two fields flatten to the attribute {name:?}")));
        }
        self.columns.push((name, value));
        Ok(())
    }

    /// Adds a field, nested objects flattened to `Parent_Child` attributes.
    fn flattened(&mut self, name: String, value: &Json) -> Result<(), Error> {
        match value {
            Json::Object(map) if !map.is_empty() => {
                map.iter().try_for_each(|(child, value)| self.flattened(format!("{name}_{child}"), value))
            }
            Json::Object(_) => self.attribute(name, Value::Null),
            other => self.attribute(name, Value::from_json(other)),
        }
    }
}

/// A key's value as text (for `Encoded`) and as its typed value (for the key attribute).
fn key_value(record: &Record<'_>, key: &Key) -> Result<(String, Value), Error> {
    let path = key.value.as_str();
    let problem = match record.get(&key.value) {
        None | Some(Value::Null) => "is missing",
        Some(Value::Text(text)) if text.is_empty() => "is an empty string",
        Some(Value::Boolean(_)) => "is a boolean",
        Some(Value::Json(_)) => "is an object or array",
        Some(value) => return Ok((value.to_text().unwrap_or_default(), value)),
    };
    Err(Error::bad_record(format!("{path} (the value of key attribute {:?}) {problem}", key.name)))
}

/// `LastUpdateTimestamp` in epoch milliseconds, when the record has one.
fn last_update_ms(fields: &Map<String, Json>) -> Result<Option<i64>, Error> {
    match fields.get("LastUpdateTimestamp") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => parse_timestamp(text)
            .map(Some)
            .ok_or_else(|| Error::bad_record(format!("LastUpdateTimestamp {text:?} is not an RFC 3339 timestamp"))),
        Some(other) => Err(Error::bad_record(format!("LastUpdateTimestamp {other} is not a timestamp string"))),
    }
}

ctrflow_plugin_sdk::export_sink!(CtrItem);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::{ErrorKind, testing};
    use serde_json::json;

    use ctrflow_plugin_sdk::testing::samples::ABANDONED;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1 as V1;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1_V2 as V1_V2;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V2 as V2;

    use ctrflow_plugin_sdk::testing::samples::parse as sample;

    fn encode(config: Json, record: Json) -> Result<Encoded, Error> {
        let mut p = testing::init_sink::<CtrItem>(config).expect("config is valid");
        testing::encode(&mut p, record)
    }

    fn column<'e>(e: &'e Encoded, name: &str) -> Option<&'e Value> {
        let mut found = e.columns.iter().filter(|(n, _)| n == name);
        let first = found.next().map(|(_, v)| v);
        assert!(found.next().is_none(), "column {name} appears twice");
        first
    }

    fn names(e: &Encoded) -> Vec<&str> {
        e.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn default_item_of_a_real_ctr() {
        let record = sample(V1);
        let e = encode(Json::Null, record.clone()).unwrap();
        assert_eq!(e.partition_key.as_deref(), Some("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"));
        assert_eq!(e.sort_key, None);
        // The key first, every other top-level field once, then the timestamp number.
        assert_eq!(e.columns[0], ("ContactId".into(), Value::Text("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47".into())));
        assert_eq!(e.columns.len(), record.as_object().unwrap().len() + 1);
        assert_eq!(e.columns.last().unwrap(), &(LAST_UPDATE_MS.into(), Value::Integer(1_641_404_915_000)));
        assert_eq!(column(&e, "Channel"), Some(&Value::Text("VOICE".into())));
        assert_eq!(column(&e, "AgentConnectionAttempts"), Some(&Value::Integer(1)));
        assert_eq!(column(&e, "VoiceIdResult"), Some(&Value::Null));
        // Nested values travel whole, for the connector to write as maps and lists.
        let Some(Value::Json(agent)) = column(&e, "Agent") else { panic!("Agent is not JSON") };
        assert_eq!(serde_json::from_str::<Json>(agent).unwrap(), record["Agent"]);
        assert!(matches!(column(&e, "Recordings"), Some(Value::Json(_))));
        // The payload is the record.
        assert_eq!(serde_json::from_slice::<Json>(e.payload.as_ref().unwrap()).unwrap(), record);
    }

    #[test]
    fn the_newer_delivery_has_the_larger_timestamp_number() {
        let ms = |record: Json| match column(&encode(Json::Null, record).unwrap(), LAST_UPDATE_MS) {
            Some(Value::Integer(ms)) => *ms,
            other => panic!("{other:?}"),
        };
        let deliveries: Vec<i64> = V1_V2.lines().map(|line| ms(sample(line))).collect();
        assert_eq!(deliveries, [1_641_404_915_000, 1_641_872_492_000]);
        assert_eq!(ms(sample(V2)), deliveries[1]);
        assert!(deliveries[1] > deliveries[0]);
    }

    #[test]
    fn sort_key_value_defaults_to_its_name() {
        let e = encode(json!({"sort_key": "LastUpdateTimestamp"}), sample(ABANDONED)).unwrap();
        assert_eq!(e.partition_key.as_deref(), Some("c54d7b3a-581d-45ce-9a3c-e4cbb62eca3f"));
        assert_eq!(e.sort_key.as_deref(), Some("2018-11-02T07:02:11Z"));
        assert_eq!(&names(&e)[..2], ["ContactId", "LastUpdateTimestamp"]);
        assert_eq!(column(&e, LAST_UPDATE_MS), Some(&Value::Integer(1_541_142_131_000)));
    }

    #[test]
    fn the_readme_examples() {
        let config = json!({"partition_key": "ContactId", "partition_value": "ContactId"});
        assert_eq!(encode(config, sample(V1)).unwrap(), encode(Json::Null, sample(V1)).unwrap());
        let config = json!({
            "sort_key": "LastUpdateTimestamp", "sort_value": "LastUpdateTimestamp", "flatten": true,
        });
        let e = encode(config, sample(V2)).unwrap();
        assert_eq!(e.sort_key.as_deref(), Some("2022-01-11T03:41:32Z"));
        assert_eq!(column(&e, "Queue_Name"), Some(&Value::Text("TCC Refrig AC LLA".into())));
    }

    #[test]
    fn custom_key_names_and_paths() {
        let config = json!({
            "partition_key": "pk", "partition_value": "Agent.Username",
            "sort_key": "sk", "sort_value": "AgentConnectionAttempts",
        });
        let e = encode(config, sample(V1)).unwrap();
        assert_eq!(e.partition_key.as_deref(), Some("Steve.Lusk"));
        assert_eq!(e.sort_key.as_deref(), Some("1"));
        assert_eq!(e.columns[0], ("pk".into(), Value::Text("Steve.Lusk".into())));
        // A numeric key value stays a number in its attribute.
        assert_eq!(e.columns[1], ("sk".into(), Value::Integer(1)));
        assert_eq!(column(&e, "ContactId"), Some(&Value::Text("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47".into())));
    }

    #[test]
    fn the_key_attribute_wins_over_a_field_of_the_same_name() {
        let config = json!({"partition_key": "Channel", "partition_value": "ContactId"});
        let e = encode(config, sample(V1)).unwrap();
        assert_eq!(column(&e, "Channel"), Some(&Value::Text("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47".into())));
        let record =
            json!({"ContactId": "c", "LastUpdateTimestampMs": "stale", "LastUpdateTimestamp": "2022-01-05T17:48:35Z"});
        let e = encode(Json::Null, record).unwrap();
        assert_eq!(column(&e, LAST_UPDATE_MS), Some(&Value::Integer(1_641_404_915_000)));
    }

    #[test]
    fn attributes_selects_top_level_fields() {
        let config = json!({"attributes": ["Channel", "Queue", "NoSuchField"]});
        let e = encode(config, sample(V1)).unwrap();
        assert_eq!(names(&e), ["ContactId", "Channel", "Queue", LAST_UPDATE_MS]);
        // The payload is still the whole record.
        assert_eq!(serde_json::from_slice::<Json>(e.payload.as_ref().unwrap()).unwrap(), sample(V1));

        let e = encode(json!({"attributes": []}), sample(V1)).unwrap();
        assert_eq!(names(&e), ["ContactId", LAST_UPDATE_MS]);
    }

    #[test]
    fn flatten_makes_objects_parent_child_attributes() {
        let e = encode(json!({"flatten": true}), sample(V1)).unwrap();
        assert_eq!(column(&e, "Agent_Username"), Some(&Value::Text("Steve.Lusk".into())));
        assert_eq!(column(&e, "Agent_HierarchyGroups_Level2_GroupName"), Some(&Value::Text("TCC ALL".into())));
        assert_eq!(column(&e, "Attributes_ewtcheck"), Some(&Value::Text("Y".into())));
        assert_eq!(column(&e, "ContactDetails"), Some(&Value::Null));
        assert_eq!(column(&e, "Agent"), None);
        // Only arrays stay JSON (lists).
        let json: Vec<&str> =
            e.columns.iter().filter(|(_, v)| matches!(v, Value::Json(_))).map(|(n, _)| n.as_str()).collect();
        assert_eq!(json, ["MediaStreams", "Recordings", "References"]);

        let e = encode(json!({"flatten": true}), sample(ABANDONED)).unwrap();
        assert_eq!(column(&e, "Agent"), Some(&Value::Null));
        assert_eq!(column(&e, "Queue_Name"), Some(&Value::Text("BasicQueue".into())));
    }

    #[test]
    fn flatten_collisions_fail_the_record() {
        let record = json!({"ContactId": "c", "Queue": {"Name": "a"}, "Queue_Name": "b"});
        let err = encode(json!({"flatten": true}), record).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRecord);
        assert!(err.message.contains("Queue_Name"), "{}", err.message);
    }

    #[test]
    fn a_record_without_its_key_value_is_a_bad_record_naming_the_path() {
        let config = json!({"partition_key": "agent", "partition_value": "Agent.Username"});
        // The abandoned sample has `Agent: null`.
        let err = encode(config, sample(ABANDONED)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRecord);
        assert!(err.message.contains("Agent.Username"), "{}", err.message);

        for record in [
            json!({"Channel": "VOICE"}),
            json!({"ContactId": ""}),
            json!({"ContactId": null}),
            json!({"ContactId": {"a": 1}}),
        ] {
            let err = encode(Json::Null, record.clone()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRecord, "{record}");
            assert!(err.message.contains("ContactId"), "{}", err.message);
        }

        let err = encode(json!({"sort_key": "ScheduledTimestamp"}), sample(V1)).unwrap_err();
        assert!(err.message.contains("ScheduledTimestamp"), "{}", err.message);
    }

    #[test]
    fn a_record_without_last_update_has_no_timestamp_column_and_a_bad_one_fails() {
        let e = encode(Json::Null, json!({"ContactId": "c", "LastUpdateTimestamp": null})).unwrap();
        assert_eq!(column(&e, LAST_UPDATE_MS), None);
        for bad in [json!("yesterday"), json!(1641404915)] {
            let err = encode(Json::Null, json!({"ContactId": "c", "LastUpdateTimestamp": bad})).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRecord);
            assert!(err.message.contains("LastUpdateTimestamp"), "{}", err.message);
        }
    }

    #[test]
    fn bad_configs_are_invalid_config_errors_naming_the_problem() {
        for (config, needle) in [
            (json!({"partition": "ContactId"}), "partition"),
            (json!({"sort_value": "LastUpdateTimestamp"}), "sort_value"),
            (json!({"sort_key": "ContactId"}), "ContactId"),
            (json!({"partition_key": ""}), "key"),
            (json!({"sort_key": LAST_UPDATE_MS}), LAST_UPDATE_MS),
            (json!({"partition_value": "Agent..Username"}), "Agent..Username"),
            (json!({"flatten": "yes"}), "boolean"),
            (json!({"attributes": ["Channel", "Queue", "Channel"]}), "Channel"),
        ] {
            let err = testing::init_sink::<CtrItem>(config.clone()).err().expect("refused");
            assert_eq!(err.kind, ErrorKind::InvalidConfig, "{config}");
            assert!(err.message.contains(needle), "{config}: {}", err.message);
        }
    }
}
