//! `redact-pii`: masks personal data in contact trace records.
//!
//! Two kinds of masking, both length-preserving and idempotent (masking a masked value gives
//! the same value back):
//!
//! - `fields` (paths, default `["CustomerEndpoint.Address"]`): every character is replaced by
//!   `mask` except the last `keep_last` (default 4), so `+15555550123` becomes
//!   `********0123` — enough to recognise a caller, not enough to call them back. A value of
//!   `keep_last` characters or fewer is masked **entirely**: keeping "the last four" of a
//!   four-digit value would reveal all of it.
//! - `attributes` (names under `Attributes`, default none): masked entirely.
//!
//! A missing or `null` field is left alone (there is nothing to hide, and writing a mask
//! would invent a value). A non-string value (a number, a boolean, an object) is masked in
//! its text form and becomes a string: a masked phone number stored as an integer must not
//! survive as a number. An empty string stays empty.
//!
//! Each record adds the number of values it masked to the counter `masked`.

use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform, Value, count};
use serde::Deserialize;

/// The node's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Paths of the values to mask, keeping their last `keep_last` characters.
    fields: Vec<String>,
    /// How many characters to leave visible at the end of each `fields` value.
    keep_last: usize,
    /// The character written in place of each hidden one.
    mask: char,
    /// Names of contact attributes (`Attributes.<name>`) to mask entirely.
    attributes: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { fields: vec!["CustomerEndpoint.Address".into()], keep_last: 4, mask: '*', attributes: Vec::new() }
    }
}

/// One value to mask, and how many characters of it stay visible.
struct Target {
    path: Path,
    keep_last: usize,
}

/// The plugin: its targets, resolved once at init.
pub struct RedactPii {
    targets: Vec<Target>,
    mask: char,
}

impl Transform for RedactPii {
    fn init(init: &mut Init) -> Result<Self, Error> {
        let config: Config = init.config()?;
        if config.fields.is_empty() && config.attributes.is_empty() {
            // Almost certainly a mistake: a redactor that redacts nothing.
            return Err(Error::invalid_config("config: `fields` and `attributes` are both empty: nothing to redact"));
        }
        let mut targets = Vec::new();
        for field in &config.fields {
            targets.push(Target { path: init.path(field)?, keep_last: config.keep_last });
        }
        for name in &config.attributes {
            // A dot would silently turn the attribute name into a nested path (and attribute
            // keys may only hold letters, digits, `-` and `_` anyway).
            if name.is_empty() || name.contains('.') {
                return Err(Error::invalid_config(format!("config: attributes: {name:?} is not an attribute name")));
            }
            targets.push(Target { path: init.path(&format!("Attributes.{name}"))?, keep_last: 0 });
        }
        Ok(RedactPii { targets, mask: config.mask })
    }

    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let mut masked = 0;
        for target in &self.targets {
            let Some(text) = record.get(&target.path).as_ref().and_then(Value::to_text) else {
                continue; // missing or null
            };
            if text.is_empty() {
                continue;
            }
            if let Err(e) = record.set(&target.path, mask(&text, target.keep_last, self.mask)) {
                return Outcome::Fail(e);
            }
            masked += 1;
        }
        if masked > 0 {
            count("masked", masked);
        }
        Outcome::Keep
    }
}

/// `text` with every character but the last `keep_last` replaced by `mask`; entirely masked
/// when it has no more than `keep_last` characters.
pub fn mask(text: &str, keep_last: usize, mask: char) -> String {
    let len = text.chars().count();
    let hidden = if len <= keep_last { len } else { len - keep_last };
    text.chars().enumerate().map(|(i, c)| if i < hidden { mask } else { c }).collect()
}

ctrflow_plugin_sdk::export_transform!(RedactPii);

#[cfg(test)]
mod tests {
    use super::*;
    use ctrflow_plugin_sdk::{ErrorKind, testing};
    use serde_json::{Value as Json, json};

    use ctrflow_plugin_sdk::testing::samples::ABANDONED;
    use ctrflow_plugin_sdk::testing::samples::KYOPARK_V1 as V1;

    fn plugin(config: Json) -> RedactPii {
        testing::init::<RedactPii>(config).expect("config is valid").0
    }

    use ctrflow_plugin_sdk::testing::samples::parse as sample;

    #[test]
    fn masks_all_but_the_last_digits() {
        assert_eq!(mask("+15555550123", 4, '*'), "********0123");
        assert_eq!(mask("+15555550123", 0, '#'), "############");
    }

    #[test]
    fn short_values_are_masked_entirely() {
        assert_eq!(mask("0123", 4, '*'), "****");
        assert_eq!(mask("12", 4, '*'), "**");
        assert_eq!(mask("12345", 4, '*'), "*2345");
    }

    #[test]
    fn masking_counts_characters_not_bytes() {
        assert_eq!(mask("Zoë Ångström", 3, '•'), "•••••••••röm");
    }

    #[test]
    fn default_config_masks_the_customer_number_of_a_real_ctr() {
        let mut p = plugin(Json::Null);
        let before = sample(V1);
        let (outcome, after) = testing::process(&mut p, before.clone());
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(after["CustomerEndpoint"]["Address"], json!("*********2222"));
        assert_eq!(testing::counter("masked"), 1);
        // Nothing else changed.
        let mut expected = before;
        expected["CustomerEndpoint"]["Address"] = json!("*********2222");
        assert_eq!(after, expected);
    }

    #[test]
    fn masks_attributes_entirely_and_other_fields_on_the_abandoned_sample() {
        let mut p = plugin(json!({
            "fields": ["CustomerEndpoint.Address", "SystemEndpoint.Address"],
            "keep_last": 2,
            "mask": "x",
            "attributes": ["greetingPlayed", "notThere"],
        }));
        let (outcome, after) = testing::process(&mut p, sample(ABANDONED));
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(after["CustomerEndpoint"]["Address"], json!("xxxxxxxxxx54"));
        assert_eq!(after["SystemEndpoint"]["Address"], json!("xxxxxxxxxxx20"));
        assert_eq!(after["Attributes"], json!({"greetingPlayed": "xxxx"}));
        assert_eq!(testing::counter("masked"), 3);
    }

    #[test]
    fn the_readme_example() {
        // Synthetic attributes on the real record: the samples carry no customer names.
        let mut record = sample(V1);
        record["Attributes"]["customerName"] = json!("Jane Doe");
        record["Attributes"]["accountNumber"] = json!("00123456");
        let mut p = plugin(json!({
            "fields": ["CustomerEndpoint.Address"],
            "keep_last": 4,
            "attributes": ["customerName", "accountNumber"],
        }));
        let (_, after) = testing::process(&mut p, record);
        assert_eq!(after["CustomerEndpoint"]["Address"], json!("*********2222"));
        assert_eq!(after["Attributes"]["customerName"], json!("********"));
        assert_eq!(after["Attributes"]["accountNumber"], json!("********"));
        assert_eq!(after["Attributes"]["ewtcheck"], json!("Y"));
        assert_eq!(testing::counter("masked"), 3);
    }

    #[test]
    fn masking_twice_changes_nothing_more() {
        let mut p = plugin(json!({"attributes": ["PathCode"]}));
        let (_, once) = testing::process(&mut p, sample(V1));
        let (_, twice) = testing::process(&mut p, once.clone());
        assert_eq!(once, twice);
        assert_eq!(once["Attributes"]["PathCode"], json!("*".repeat(17)));
    }

    #[test]
    fn missing_and_null_fields_are_left_alone() {
        // The abandoned sample has `Agent: null` and `TransferredToEndpoint: null`.
        let mut p = plugin(json!({"fields": ["Agent.Username", "TransferredToEndpoint.Address"]}));
        let before = sample(ABANDONED);
        let (outcome, after) = testing::process(&mut p, before.clone());
        assert_eq!(outcome, Outcome::Keep);
        assert_eq!(after, before);
        assert_eq!(testing::counter("masked"), 0);
    }

    #[test]
    fn non_string_values_are_masked_as_text() {
        let mut p = plugin(json!({"fields": ["Phone", "Flag", "Card"]}));
        let (_, after) =
            testing::process(&mut p, json!({"Phone": 15555550123_i64, "Flag": true, "Card": {"n": "4111"}}));
        assert_eq!(after["Phone"], json!("*******0123"));
        assert_eq!(after["Flag"], json!("****"));
        assert_eq!(after["Card"], json!("********11\"}"));
        assert_eq!(testing::counter("masked"), 3);
    }

    #[test]
    fn empty_strings_stay_empty() {
        // `Acct_Code` is "" in the real sample.
        let mut p = plugin(json!({"fields": [], "attributes": ["Acct_Code"]}));
        let (_, after) = testing::process(&mut p, sample(V1));
        assert_eq!(after["Attributes"]["Acct_Code"], json!(""));
        assert_eq!(testing::counter("masked"), 0);
    }

    #[test]
    fn a_misspelt_key_is_an_invalid_config_naming_it() {
        let err = testing::init::<RedactPii>(json!({"keep_lst": 2})).err().unwrap();
        assert_eq!(err.kind, ErrorKind::InvalidConfig);
        assert!(err.message.contains("keep_lst"), "{}", err.message);
    }

    #[test]
    fn bad_configs_are_refused() {
        for config in [
            json!({"mask": "**"}),
            json!({"keep_last": -1}),
            json!({"fields": ["Agent..Username"]}),
            json!({"attributes": ["a.b"]}),
            json!({"fields": [], "attributes": []}),
        ] {
            let err = testing::init::<RedactPii>(config.clone()).err();
            assert_eq!(err.map(|e| e.kind), Some(ErrorKind::InvalidConfig), "{config}");
        }
    }
}
