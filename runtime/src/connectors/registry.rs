//! The one place that maps a node's `type = "…"` to its connector. Adding a connector is
//! its module plus one line in [`SOURCES`], [`SINKS`] or [`TABLES`]; nothing else in the
//! runtime names a connector type.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use super::{aws, file, generator, memory_table, sqlite, stdin, stdout};
use crate::config::ConnectorTable;
use crate::contract::{SinkConnector, SourceConnector, TableConnector};
use crate::graph::suggest;

/// One connector type of a role: its `type` name, and how its options are read.
pub struct Registration<C: ?Sized> {
    /// The `type` it answers to.
    pub name: &'static str,
    /// Reads the options (every key of the node's table but `type`); the error names the key.
    pub read: fn(toml::Table) -> Result<Box<C>, String>,
    /// The JSON Schema of its options, generated from the options struct (`ctrflow schema`).
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

/// `[sources.<id>]` types.
pub static SOURCES: &[Registration<dyn SourceConnector>] = &[
    Registration { name: "generator", read: source::<generator::Generator>, schema: schema::<generator::Generator> },
    Registration { name: "file", read: source::<file::FileSource>, schema: schema::<file::FileSource> },
    Registration { name: "stdin", read: source::<stdin::Stdin>, schema: schema::<stdin::Stdin> },
    Registration {
        name: "kinesis",
        read: source::<aws::kinesis::KinesisSourceOptions>,
        schema: schema::<aws::kinesis::KinesisSourceOptions>,
    },
];

/// `[sinks.<id>]` types.
pub static SINKS: &[Registration<dyn SinkConnector>] = &[
    Registration { name: "sqlite", read: sink::<sqlite::SqliteSink>, schema: schema::<sqlite::SqliteSink> },
    Registration { name: "file", read: sink::<file::FileSink>, schema: schema::<file::FileSink> },
    Registration { name: "stdout", read: sink::<stdout::Stdout>, schema: schema::<stdout::Stdout> },
    Registration {
        name: "dynamodb",
        read: sink::<aws::dynamodb::DynamoSink>,
        schema: schema::<aws::dynamodb::DynamoSink>,
    },
    Registration {
        name: "firehose",
        read: sink::<aws::firehose::FirehoseSink>,
        schema: schema::<aws::firehose::FirehoseSink>,
    },
    Registration {
        name: "kinesis",
        read: sink::<aws::kinesis_sink::KinesisSink>,
        schema: schema::<aws::kinesis_sink::KinesisSink>,
    },
    Registration { name: "sns", read: sink::<aws::sns::SnsSink>, schema: schema::<aws::sns::SnsSink> },
    Registration { name: "http", read: sink::<super::http::HttpSink>, schema: schema::<super::http::HttpSink> },
];

/// `[tables.<id>]` types.
pub static TABLES: &[Registration<dyn TableConnector>] = &[
    Registration { name: "csv", read: table::<memory_table::CsvTable>, schema: schema::<memory_table::CsvTable> },
    Registration { name: "json", read: table::<memory_table::JsonTable>, schema: schema::<memory_table::JsonTable> },
    Registration {
        name: "dynamodb",
        read: table::<aws::lookup::DynamoTable>,
        schema: schema::<aws::lookup::DynamoTable>,
    },
];

/// Finds the connector a node's `type` names and reads its options. Errors name the key:
/// `type: unknown source type "kafka" (one of: …)`, `mode: unknown variant "put", …`.
pub fn read<C: ?Sized>(
    registry: &[Registration<C>],
    role: &str,
    table: &ConnectorTable,
) -> Result<Box<C>, Vec<String>> {
    let names = || registry.iter().map(|r| r.name).collect::<Vec<_>>().join(", ");
    if table.type_name.is_empty() {
        return Err(vec![format!("type: missing; say which {role} this is (one of: {})", names())]);
    }
    let Some(found) = registry.iter().find(|r| r.name == table.type_name) else {
        let hint = suggest(&table.type_name, registry.iter().map(|r| r.name))
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_else(|| format!(" (one of: {})", names()));
        return Err(vec![format!("type: unknown {role} type {:?}{hint}", table.type_name)]);
    };
    (found.read)(table.options.clone()).map_err(|e| vec![e])
}

fn options<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let detail = crate::config::tidy(&e.into_inner().to_string());
        if path == "." || path.is_empty() { detail } else { format!("{path}: {detail}") }
    })
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn source<T: SourceConnector + DeserializeOwned + 'static>(t: toml::Table) -> Result<Box<dyn SourceConnector>, String> {
    Ok(Box::new(options::<T>(t)?))
}

fn sink<T: SinkConnector + DeserializeOwned + 'static>(t: toml::Table) -> Result<Box<dyn SinkConnector>, String> {
    Ok(Box::new(options::<T>(t)?))
}

fn table<T: TableConnector + DeserializeOwned + 'static>(t: toml::Table) -> Result<Box<dyn TableConnector>, String> {
    Ok(Box::new(options::<T>(t)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> ConnectorTable {
        let mut t: toml::Table = toml::from_str(text).unwrap();
        let type_name = t.remove("type").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        ConnectorTable { type_name, options: t }
    }

    #[test]
    fn an_unknown_type_is_named_with_a_suggestion() {
        let e = read(SINKS, "sink", &node("type = \"sqlit\"")).unwrap_err();
        assert_eq!(e, vec!["type: unknown sink type \"sqlit\" (did you mean \"sqlite\"?)".to_string()]);
        let e = read(SOURCES, "source", &node("type = \"kafka\"")).unwrap_err();
        assert!(e[0].contains("one of: generator, file, stdin, kinesis"), "{e:?}");
    }

    #[test]
    fn a_missing_type_says_so() {
        let e = read(TABLES, "table", &node("path = \"x.csv\"")).unwrap_err();
        assert!(e[0].starts_with("type: missing"), "{e:?}");
    }

    // `ctrflow validate` once accepted `mode = "put"` on SQLite and `run` then failed.
    #[test]
    fn sqlite_refuses_put_mode_naming_the_key() {
        let e = read(SINKS, "sink", &node("type = \"sqlite\"\npath = \"x.db\"\ntable = \"t\"\nmode = \"put\""))
            .unwrap_err();
        assert!(e[0].starts_with("mode: unknown variant \"put\""), "{e:?}");
    }

    #[test]
    fn dynamodb_refuses_append_mode_naming_the_key() {
        let e = read(SINKS, "sink", &node("type = \"dynamodb\"\ntable = \"t\"\nmode = \"append\"")).unwrap_err();
        assert!(e[0].starts_with("mode: unknown variant \"append\""), "{e:?}");
    }

    #[test]
    fn a_misspelt_key_and_a_wrong_type_are_named() {
        let e = read(SINKS, "sink", &node("type = \"sqlite\"\npath = \"x.db\"\ntabel = \"t\"")).unwrap_err();
        assert!(e[0].contains("tabel"), "{e:?}");
        let e = read(SOURCES, "source", &node("type = \"generator\"\ncount = \"many\"")).unwrap_err();
        assert!(e[0].starts_with("count:") && e[0].contains("many"), "{e:?}");
    }
}
