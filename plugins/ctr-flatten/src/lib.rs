//! `ctr-flatten`: turns a nested contact trace record into one flat object, the shape a
//! warehouse table wants.
//!
//! - Nested objects become `Parent<separator>Child` columns: `Agent_Username`,
//!   `Agent_HierarchyGroups_Level1_GroupName`, `Queue_Name`, `CustomerEndpoint_Address`, and
//!   contact attributes `Attributes_<name>`.
//! - Arrays (`Recordings`, `MediaStreams`, `References`, …) become their JSON text
//!   (`arrays = "json"`, the default: nothing is lost), or their first element flattened in
//!   their place (`arrays = "first"`: `Recordings_Location`; an empty array is `null`).
//! - `null` stays `null` at its own column (`Agent: null` gives `Agent`), and so does an empty
//!   object (`ContactDetails: {}` gives `ContactDetails: null`): no top-level field vanishes.
//! - `include` keeps only the listed columns, and always writes every one of them (`null` when
//!   the record lacks it) so every record has the same columns; `exclude` drops columns.
//! - Columns are sorted by name, so the output is stable whatever order the input had.
//!
//! Two paths that flatten to one column (a top-level `Queue_Name` beside `Queue.Name`) fail
//! the record as a bad record rather than silently losing one of the values.

use std::collections::HashSet;

use ctrflow_plugin_sdk::{Error, Init, Outcome, Record, Transform, Value, flatten};
use serde::Deserialize;

/// The node's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Joins a parent's key to its child's.
    #[serde(default = "default_separator")]
    separator: String,
    /// What becomes of arrays.
    #[serde(default)]
    arrays: Arrays,
    /// The flat columns to keep (all when absent).
    #[serde(default)]
    include: Option<Vec<String>>,
    /// Flat columns to drop.
    #[serde(default)]
    exclude: Vec<String>,
}

fn default_separator() -> String {
    "_".into()
}

/// How arrays are flattened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrays {
    /// The array's JSON text, as one string column.
    #[default]
    Json,
    /// The first element, flattened under the array's key.
    First,
}

/// The plugin.
pub struct CtrFlatten {
    separator: String,
    arrays: Arrays,
    include: Option<Vec<String>>,
    exclude: HashSet<String>,
}

impl Transform for CtrFlatten {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        if config.separator.is_empty() {
            // `Agent` + `Username` and `AgentU` + `sername` would collide.
            return Err(Error::invalid_config("config: `separator` is empty"));
        }
        if let Some(include) = &config.include {
            if include.is_empty() {
                return Err(Error::invalid_config("config: `include` is empty (leave it out to keep every column)"));
            }
            if let Some(both) = include.iter().find(|c| config.exclude.contains(c)) {
                return Err(Error::invalid_config(format!("config: column {both:?} is both included and excluded")));
            }
        }
        Ok(CtrFlatten {
            separator: config.separator,
            arrays: config.arrays,
            include: config.include,
            exclude: config.exclude.into_iter().collect(),
        })
    }

    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        // The host flattens (the rules live once, in the SDK's `flatten`): no field crosses
        // the boundary.
        let arrays = match self.arrays {
            Arrays::Json => flatten::Arrays::Json,
            Arrays::First => flatten::Arrays::First,
        };
        if let Err(e) = record.flatten(&self.separator, arrays) {
            return Outcome::Fail(e);
        }
        if self.include.is_none() && self.exclude.is_empty() {
            return Outcome::Keep;
        }
        // Picking columns: the flat record's fields (all top-level, sorted by name), the kept
        // ones handed back.
        let mut flat: Vec<(String, Value)> =
            record.walk().into_iter().map(|f| (f.key, f.value.unwrap_or(Value::Null))).collect();
        if let Some(include) = &self.include {
            // `flat` is sorted: each included column is found by binary search.
            let mut take = |c: &String| match flat.binary_search_by(|(k, _)| k.as_str().cmp(c)) {
                Ok(i) => std::mem::replace(&mut flat[i].1, Value::Null),
                Err(_) => Value::Null,
            };
            flat = include.iter().map(|c| (c.clone(), take(c))).collect();
        }
        flat.retain(|(c, _)| !self.exclude.contains(c));
        match record.set_fields(&flat) {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Fail(e),
        }
    }
}

ctrflow_plugin_sdk::export_transform!(CtrFlatten);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::{ErrorKind, testing};
    use serde_json::{Value as Json, json};

    use ctrflow_plugin_sdk::testing::samples::ABANDONED;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1 as V1;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1_V2 as V1_V2;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V2 as V2;

    /// Every real CTR sample, with its number of top-level keys.
    fn samples() -> Vec<(&'static str, Json)> {
        let mut all = vec![("v1", V1), ("v2", V2), ("abandoned", ABANDONED)];
        all.extend(V1_V2.lines().map(|line| ("v1-v2.jsonl", line)));
        all.into_iter().map(|(name, text)| (name, serde_json::from_str(text).unwrap())).collect()
    }

    fn flatten_with(config: Json, record: Json) -> Json {
        let (mut p, _) = testing::init::<CtrFlatten>(config).expect("config is valid");
        let (outcome, after) = testing::process(&mut p, record);
        assert_eq!(outcome, Outcome::Keep);
        after
    }

    fn keys(flat: &Json) -> Vec<&str> {
        flat.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn every_real_sample_flattens_completely_and_sorted() {
        for (name, record) in samples() {
            let top_level = record.as_object().unwrap().len();
            for arrays in ["json", "first"] {
                let flat = flatten_with(json!({"arrays": arrays}), record.clone());
                let object = flat.as_object().unwrap();
                for (k, v) in object {
                    assert!(!v.is_object() && !v.is_array(), "{name}/{arrays}: {k} is nested");
                }
                // More columns than top-level fields, but not absurdly many.
                assert!(object.len() > top_level && object.len() < 4 * top_level, "{name}");
                let keys = keys(&flat);
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted, "{name}/{arrays}: columns are not sorted");
            }
        }
    }

    #[test]
    fn the_hosts_flattening_and_the_walk_agree_on_every_real_sample() {
        // The default config asks the host (`Record::flatten`); an `exclude` takes the walk.
        for (name, record) in samples() {
            for arrays in ["json", "first"] {
                let host = flatten_with(json!({"arrays": arrays}), record.clone());
                let walked = flatten_with(json!({"arrays": arrays, "exclude": ["NoSuchColumn"]}), record.clone());
                assert_eq!(host, walked, "{name}, arrays = {arrays}");
            }
        }
    }

    #[test]
    fn column_counts_of_the_real_samples() {
        // Counted independently (a short Python flattener over the same files).
        let count = |config: Json, text: &str| {
            flatten_with(config, serde_json::from_str(text).unwrap()).as_object().unwrap().len()
        };
        assert_eq!(count(json!({}), V1), 67);
        assert_eq!(count(json!({"arrays": "first"}), V1), 76);
        assert_eq!(count(json!({}), V2), 68);
        assert_eq!(count(json!({"arrays": "first"}), V2), 77);
        assert_eq!(count(json!({}), ABANDONED), 30);
        assert_eq!(count(json!({"arrays": "first"}), ABANDONED), 30);
    }

    #[test]
    fn nested_fields_become_parent_child_columns() {
        let flat = flatten_with(json!({}), serde_json::from_str(V1).unwrap());
        assert_eq!(flat["Agent_Username"], json!("Steve.Lusk"));
        assert_eq!(flat["Agent_HierarchyGroups_Level1_GroupName"], json!("TCC"));
        assert_eq!(flat["Agent_HierarchyGroups_Level3"], Json::Null);
        assert_eq!(flat["Agent_NumberOfHolds"], json!(2));
        assert_eq!(flat["Queue_Name"], json!("TCC Refrig AC LLA"));
        assert_eq!(flat["CustomerEndpoint_Address"], json!("+190011112222"));
        assert_eq!(flat["Attributes_PathCode"], json!("8477597_002_00002"));
        assert_eq!(flat["Campaign_CampaignId"], Json::Null);
        assert_eq!(flat["ContactDetails"], Json::Null);
        assert_eq!(flat["VoiceIdResult"], Json::Null);
        assert!(flat.get("Agent").is_none() && flat.get("Attributes").is_none());
    }

    #[test]
    fn the_readme_example() {
        let record = json!({
            "Agent": {"Username": "Steve.Lusk", "HierarchyGroups": {"Level1": {"GroupName": "TCC"}}},
            "Attributes": {"greetingPlayed": "true"},
            "MediaStreams": [{"Type": "AUDIO"}],
            "Recording": null,
        });
        let flat = flatten_with(json!({}), record);
        assert_eq!(
            serde_json::to_string(&flat).unwrap(),
            r#"{"Agent_HierarchyGroups_Level1_GroupName":"TCC","Agent_Username":"Steve.Lusk","Attributes_greetingPlayed":"true","MediaStreams":"[{\"Type\":\"AUDIO\"}]","Recording":null}"#
        );
    }

    #[test]
    fn arrays_are_json_text_by_default() {
        let record: Json = serde_json::from_str(V1).unwrap();
        let flat = flatten_with(json!({}), record.clone());
        assert_eq!(flat["MediaStreams"], json!(r#"[{"Type":"AUDIO"}]"#));
        assert_eq!(flat["References"], json!("[]"));
        let recordings: Json = serde_json::from_str(flat["Recordings"].as_str().unwrap()).unwrap();
        assert_eq!(recordings, record["Recordings"]);
    }

    #[test]
    fn arrays_first_flattens_the_first_element() {
        let flat = flatten_with(json!({"arrays": "first"}), serde_json::from_str(V1).unwrap());
        assert_eq!(flat["MediaStreams_Type"], json!("AUDIO"));
        assert_eq!(flat["Recordings_StorageType"], json!("S3"));
        assert_eq!(flat["Recordings_ParticipantType"], Json::Null);
        assert_eq!(flat["References"], Json::Null);
        assert!(flat.get("Recordings").is_none());
    }

    #[test]
    fn nulls_stay_null_on_the_abandoned_sample() {
        let flat = flatten_with(json!({}), serde_json::from_str(ABANDONED).unwrap());
        for column in ["Agent", "Recording", "Recordings", "TransferredToEndpoint", "InitialContactId"] {
            assert_eq!(flat[column], Json::Null, "{column}");
        }
        assert_eq!(flat["Attributes_greetingPlayed"], json!("true"));
        assert_eq!(flat["AgentConnectionAttempts"], json!(0));
    }

    #[test]
    fn the_separator_is_configurable() {
        let flat = flatten_with(json!({"separator": "."}), serde_json::from_str(V1).unwrap());
        assert_eq!(flat["Agent.RoutingProfile.Name"], json!("TCC ALL"));
    }

    #[test]
    fn include_gives_every_record_the_same_columns() {
        let config = json!({"include": ["ContactId", "Agent_Username", "Queue_Name", "Recordings"]});
        let answered = flatten_with(config.clone(), serde_json::from_str(V1).unwrap());
        let abandoned = flatten_with(config, serde_json::from_str(ABANDONED).unwrap());
        assert_eq!(keys(&answered), ["Agent_Username", "ContactId", "Queue_Name", "Recordings"]);
        assert_eq!(keys(&abandoned), keys(&answered));
        assert_eq!(abandoned["Agent_Username"], Json::Null);
        assert_eq!(abandoned["Queue_Name"], json!("BasicQueue"));
    }

    #[test]
    fn the_readme_config() {
        let config = json!({"arrays": "first", "exclude": ["Recording_Location", "Recordings_Location"]});
        let flat = flatten_with(config, serde_json::from_str(V1).unwrap());
        assert_eq!(flat.as_object().unwrap().len(), 74);
        assert!(flat.get("Recordings_Location").is_none());
    }

    #[test]
    fn exclude_drops_columns() {
        let config = json!({"exclude": ["Recordings", "Agent_ARN", "NoSuchColumn"]});
        let flat = flatten_with(config, serde_json::from_str(V1).unwrap());
        assert_eq!(flat.as_object().unwrap().len(), 65);
        assert!(flat.get("Recordings").is_none() && flat.get("Agent_ARN").is_none());
    }

    #[test]
    fn colliding_columns_fail_the_record() {
        let (mut p, _) = testing::init::<CtrFlatten>(json!({})).unwrap();
        let record = json!({"Queue": {"Name": "a"}, "Queue_Name": "b"});
        let (outcome, after) = testing::process(&mut p, record.clone());
        let Outcome::Fail(e) = outcome else { panic!("expected a failure") };
        assert_eq!(e.kind, ErrorKind::BadRecord);
        assert!(e.message.contains("Queue_Name"), "{}", e.message);
        assert_eq!(after, record, "a failed record is left as it was");
    }

    #[test]
    fn bad_configs_are_invalid_config_errors_naming_the_problem() {
        for (config, needle) in [
            (json!({"seperator": "."}), "seperator"),
            (json!({"separator": ""}), "separator"),
            (json!({"arrays": "last"}), "last"),
            (json!({"include": []}), "include"),
            (json!({"include": ["ContactId"], "exclude": ["ContactId"]}), "ContactId"),
        ] {
            let err = testing::init::<CtrFlatten>(config.clone()).err().expect("refused");
            assert_eq!(err.kind, ErrorKind::InvalidConfig, "{config}");
            assert!(err.message.contains(needle), "{config}: {}", err.message);
        }
    }
}
