//! The Python plugin of a new project (`app.py`) for each world, and the guest library it
//! imports (`ctrflow_plugin.py`, this repository's `plugin-sdk/python/`).

use std::path::PathBuf;

use super::{File, World};

/// The guest library, as this host's contract needs it.
pub const LIBRARY: &str = include_str!("../../../plugin-sdk/python/ctrflow_plugin.py");

/// `app.py` and `ctrflow_plugin.py`.
pub fn files(name: &str, world: World) -> Vec<File> {
    let app = match world {
        World::Transform => TRANSFORM,
        World::Enrich => ENRICH,
        World::Sink => SINK,
    };
    vec![
        (PathBuf::from("app.py"), app.replace("{name}", name)),
        (PathBuf::from("ctrflow_plugin.py"), LIBRARY.to_string()),
    ]
}

const TRANSFORM: &str = r#""""{name}: a ctrflow transform plugin.

Writes the lowercased value of `field` (default `Channel`) to `target` (default
`Attributes.channel_lower`); a record without the field passes unchanged. Counts what it
changed in the counter `written`.
"""

from ctrflow_plugin import KEEP, Error, Init, Record, count, export_transform


class Plugin:
    def __init__(self, init: Init):
        config = init.config
        unknown = sorted(set(config) - {"field", "target"})
        if unknown:
            raise Error.invalid_config(f"config: unknown field `{unknown[0]}`")
        # Paths are resolved once, here, and reused for every record.
        self.field = init.path(config.get("field", "Channel"))
        self.target = init.path(config.get("target", "Attributes.channel_lower"))

    def process(self, record: Record):
        value = record.get_text(self.field)
        if value is None:
            return KEEP
        record.set(self.target, value.lower())
        count("written")
        return KEEP


# componentize-py exports the class named after the WIT interface.
Transformer = export_transform(Plugin)
"#;

const ENRICH: &str = r#""""{name}: a ctrflow enrich plugin.

Looks the value of `key` (default `Agent.Username`) up in the lookup table `table`
(default `agents`, which the pipeline must grant in the node's `tables`) and writes the row
to `target` (default `AgentInfo`). A record whose key has no row passes unchanged and counts
in `misses`.
"""

from ctrflow_plugin import KEEP, Error, Init, Record, count, export_transform, lookup


class Plugin:
    def __init__(self, init: Init):
        config = init.config
        unknown = sorted(set(config) - {"table", "key", "target"})
        if unknown:
            raise Error.invalid_config(f"config: unknown field `{unknown[0]}`")
        self.table = config.get("table", "agents")
        self.key = init.path(config.get("key", "Agent.Username"))
        self.target = init.path(config.get("target", "AgentInfo"))

    def process(self, record: Record):
        key = record.get_text(self.key)
        if key is None:
            return KEEP
        row = lookup(self.table, key)  # a dict, or None; raises Error when the table fails
        if row is None:
            count("misses")
            return KEEP
        record.set(self.target, row)
        return KEEP


# componentize-py exports the class named after the WIT interface.
Transformer = export_transform(Plugin)
"#;

const SINK: &str = r#""""{name}: a ctrflow sink plugin.

Encodes each record for its destination: the contact id as the partition key, `ContactId`
and `Channel` as columns (DynamoDB, SQLite), and a one-line JSON summary as the payload
(files, Firehose, Kinesis). A record without a contact id is refused.
"""

import json

from ctrflow_plugin import Encoded, Error, Init, Record, export_sink


class Plugin:
    def __init__(self, init: Init):
        if init.config:
            raise Error.invalid_config(f"config: unknown field `{sorted(init.config)[0]}`")
        self.contact_id = init.path("ContactId")
        self.channel = init.path("Channel")

    def encode(self, record: Record) -> Encoded:
        contact_id = record.get_text(self.contact_id)
        if not contact_id:
            raise Error.bad_record("the record has no ContactId")
        channel = record.get_text(self.channel)
        summary = {"ContactId": contact_id, "Channel": channel}
        return Encoded(
            partition_key=contact_id,
            columns=summary,
            payload=json.dumps(summary, separators=(",", ":")),
        )


# componentize-py exports the class named after the WIT interface.
Encoder = export_sink(Plugin)
"#;
