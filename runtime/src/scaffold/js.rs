//! The JavaScript plugin of a new project (`app.js`) for each world, and the guest library
//! it imports (`ctrflow-plugin.js`, and `ctrflow-lookup.js` for enrich; this repository's
//! `plugin-sdk/js/`).

use std::path::PathBuf;

use super::{File, World};

/// The guest library, as this host's contract needs it.
pub const LIBRARY: &str = include_str!("../../../plugin-sdk/js/ctrflow-plugin.js");
/// Lookups, for enrich plugins only (a transform importing it would not build).
pub const LOOKUP: &str = include_str!("../../../plugin-sdk/js/ctrflow-lookup.js");

/// `app.js` and the guest library.
pub fn files(name: &str, world: World) -> Vec<File> {
    let app = match world {
        World::Transform => TRANSFORM,
        World::Enrich => ENRICH,
        World::Sink => SINK,
    };
    let mut files = vec![
        (PathBuf::from("app.js"), app.replace("{name}", name)),
        (PathBuf::from("ctrflow-plugin.js"), LIBRARY.to_string()),
    ];
    if world == World::Enrich {
        files.push((PathBuf::from("ctrflow-lookup.js"), LOOKUP.to_string()));
    }
    files
}

const TRANSFORM: &str = r#"// {name}: a ctrflow transform plugin.
//
// Writes the lowercased value of `field` (default `Channel`) to `target` (default
// `Attributes.channel_lower`); a record without the field passes unchanged. Counts what it
// changed in the counter `written`.

import { KEEP, PluginError, count, exportTransform } from './ctrflow-plugin.js';

class Plugin {
  constructor(init) {
    const config = init.config;
    for (const key of Object.keys(config)) {
      if (!['field', 'target'].includes(key)) throw PluginError.invalidConfig(`config: unknown field \`${key}\``);
    }
    // Paths are resolved once, here, and reused for every record.
    this.field = init.path(config.field ?? 'Channel');
    this.target = init.path(config.target ?? 'Attributes.channel_lower');
  }

  process(record) {
    const value = record.getText(this.field);
    if (value === null) return KEEP;
    record.set(this.target, value.toLowerCase());
    count('written');
    return KEEP;
  }
}

// The world's export, named after the WIT interface.
export const transformer = exportTransform(Plugin);
"#;

const ENRICH: &str = r#"// {name}: a ctrflow enrich plugin.
//
// Looks the value of `key` (default `Agent.Username`) up in the lookup table `table`
// (default `agents`, which the pipeline must grant in the node's `tables`) and writes the row
// to `target` (default `AgentInfo`). A record whose key has no row passes unchanged and
// counts in `misses`.

import { KEEP, PluginError, count, exportTransform } from './ctrflow-plugin.js';
import { lookup } from './ctrflow-lookup.js';

class Plugin {
  constructor(init) {
    const config = init.config;
    for (const key of Object.keys(config)) {
      if (!['table', 'key', 'target'].includes(key)) {
        throw PluginError.invalidConfig(`config: unknown field \`${key}\``);
      }
    }
    this.table = config.table ?? 'agents';
    this.key = init.path(config.key ?? 'Agent.Username');
    this.target = init.path(config.target ?? 'AgentInfo');
  }

  process(record) {
    const key = record.getText(this.key);
    if (key === null) return KEEP;
    const row = lookup(this.table, key); // an object, or null; throws when the table fails
    if (row === null) {
      count('misses');
      return KEEP;
    }
    record.set(this.target, row);
    return KEEP;
  }
}

// The world's export, named after the WIT interface.
export const transformer = exportTransform(Plugin);
"#;

const SINK: &str = r#"// {name}: a ctrflow sink plugin.
//
// Encodes each record for its destination: the contact id as the partition key, `ContactId`
// and `Channel` as columns (DynamoDB, SQLite), and a one-line JSON summary as the payload
// (files, Firehose, Kinesis). A record without a contact id is refused.

import { PluginError, exportSink } from './ctrflow-plugin.js';

class Plugin {
  constructor(init) {
    const keys = Object.keys(init.config);
    if (keys.length > 0) throw PluginError.invalidConfig(`config: unknown field \`${keys[0]}\``);
    this.contactId = init.path('ContactId');
    this.channel = init.path('Channel');
  }

  encode(record) {
    const contactId = record.getText(this.contactId);
    if (!contactId) throw PluginError.badRecord('the record has no ContactId');
    const summary = { ContactId: contactId, Channel: record.getText(this.channel) };
    return { partitionKey: contactId, columns: summary, payload: JSON.stringify(summary) };
  }
}

// The world's export, named after the WIT interface.
export const encoder = exportSink(Plugin);
"#;
