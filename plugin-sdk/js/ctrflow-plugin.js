// ctrflow-plugin.js: write a ctrflow plugin in JavaScript, the way the Rust SDK writes one.
//
// A plugin is a class whose constructor takes an `Init` and whose `process(record)` (or
// `encode(record)` for a sink) decides about one record; export it with `exportTransform`
// (or `exportSink`) under the name the world expects:
//
//     import { Init, Record, KEEP, exportTransform } from './ctrflow-plugin.js';
//
//     class Tag {
//       constructor(init) {
//         this.channel = init.path('Channel');
//         this.tag = init.path('Attributes.tag');
//       }
//       process(record) {
//         record.set(this.tag, `seen-${record.getText(this.channel) ?? ''}`);
//         return KEEP;
//       }
//     }
//
//     export const transformer = exportTransform(Tag);
//
// What is here: `Init` (config, paths, outputs), `Record` (one host-held record, fields
// read and written by path), the outcomes (KEEP, DROP, route, split, fail), `PluginError`,
// and the host's services `log` and `count`. `lookup` is in ./ctrflow-lookup.js, because only
// the enrich world imports it (a transform importing it would not build).
//
// What is not here: any I/O. The component is built with no WASI features (no stdio,
// clocks, random, HTTP): `console.log` goes nowhere; use `log`. Built with componentize-js
// against wit/ctrflow.wit, so this module only runs inside a component.

import * as batch from 'ctrflow:plugin/batch@0.1.0';
import * as host from 'ctrflow:plugin/host@0.1.0';

/// A plugin's error: a kind the host routes on ('bad-record', 'invalid-config',
/// 'lookup-failed', 'internal'), and a message for the dead letters. Thrown from the
/// constructor it stops the pipeline; from `process` it fails the record.
export class PluginError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
    // What the component bindings send back for a `result` error.
    this.payload = { kind, message };
  }
  static badRecord(message) { return new PluginError('bad-record', message); }
  static invalidConfig(message) { return new PluginError('invalid-config', message); }
  static lookupFailed(message) { return new PluginError('lookup-failed', message); }
  static internal(message) { return new PluginError('internal', message); }
}

/// The payload of an error thrown by a host call (`result<_, E>` imports throw).
export function errorPayload(e) {
  return e && typeof e === 'object' && 'payload' in e ? e.payload : e;
}

/// What a plugin gets at init: its config, and the means to resolve paths and declare
/// outputs.
export class Init {
  constructor(configJson) {
    const config = configJson ? JSON.parse(configJson) : null;
    /// The node's `config` table (an empty object when the pipeline gives none).
    this.config = config !== null && typeof config === 'object' && !Array.isArray(config) ? config : {};
    this.outputs = [];
  }

  /// Resolves a dotted field path (`Agent.Username`, `Recordings.0.Location`).
  path(text) {
    try {
      return { id: host.resolvePath(text), text };
    } catch (e) {
      throw PluginError.invalidConfig(`path ${JSON.stringify(text)}: ${errorPayload(e)}`);
    }
  }

  /// Declares a named output (the same name gives the same output).
  output(name) {
    let index = this.outputs.indexOf(name);
    if (index < 0) index = this.outputs.push(name) - 1;
    return { index, name };
  }
}

// The outcomes. A `process` returns one of these; throwing a PluginError is `fail(error)`.
export const KEEP = { tag: 'keep' };
export const DROP = { tag: 'drop' };
/// Send the record to a named output.
export const route = (output) => ({ tag: 'route', val: output.index });
/// Replace the record by these records (objects), sent to the default output.
export const split = (records) => ({ tag: 'split', val: records.map((r) => JSON.stringify(r)) });
/// Refuse the record: the node's `on_error` decides what happens to it.
export const fail = (error) => ({ tag: 'fail', val: { kind: error.kind, message: error.message } });

/// A WIT value as a JavaScript one: JSON objects and arrays parsed, integers as numbers
/// (BigInt past 2^53).
export function fromWit(value) {
  if (value === undefined || value === null) return null;
  switch (value.tag) {
    case 'null': return null;
    case 'integer': {
      const n = Number(value.val);
      return Number.isSafeInteger(n) ? n : value.val;
    }
    case 'json': return JSON.parse(value.val);
    default: return value.val;
  }
}

/// A JavaScript value as a WIT one.
export function toWit(value) {
  if (value === null || value === undefined) return { tag: 'null' };
  switch (typeof value) {
    case 'boolean': return { tag: 'boolean', val: value };
    case 'bigint': return { tag: 'integer', val: value };
    case 'number': return Number.isInteger(value) ? { tag: 'integer', val: BigInt(value) } : { tag: 'float', val: value };
    case 'string': return { tag: 'text', val: value };
    default: return { tag: 'json', val: JSON.stringify(value) };
  }
}

/// A WIT value as display text, as the Rust SDK's `Value::to_text`: strings as they are,
/// numbers and booleans written out, JSON as its text; null for null or missing.
function text(value) {
  if (value === undefined || value === null || value.tag === 'null') return null;
  return String(value.val);
}

/// One record of the current batch, held by the host and reached by paths.
export class Record {
  constructor(index) { this.index = index; }
  /// The value at `path` (null when missing or null); objects and arrays parsed.
  get(path) { return fromWit(batch.get(this.index, path.id)); }
  /// The value at `path` as text (numbers and booleans written out), or null.
  getText(path) { return text(batch.get(this.index, path.id)); }
  /// Sets the value at `path`, creating missing objects on the way; throws a bad-record
  /// PluginError when a segment crosses a scalar.
  set(path, value) {
    try {
      batch.set(this.index, path.id, toWit(value));
    } catch (e) {
      throw PluginError.badRecord(`set ${path.text}: ${errorPayload(e)}`);
    }
  }
  /// Removes the value at `path`, returning it (null when it was missing).
  remove(path) { return fromWit(batch.remove(this.index, path.id)); }
  /// The whole record, parsed (it crosses the boundary as text: use paths when you can).
  toJson() { return JSON.parse(batch.toJson(this.index)); }
  /// Replaces the whole record.
  replaceJson(record) {
    try {
      batch.setJson(this.index, JSON.stringify(record));
    } catch (e) {
      throw PluginError.badRecord(`replace: ${errorPayload(e)}`);
    }
  }
}

/// Writes a line to the runtime's log ('trace', 'debug', 'info', 'warn', 'error'), tagged
/// with the node. Keep it off the per-record path above 'debug'.
export function log(level, message) { host.log(level, message); }

/// Adds `delta` to the plugin-defined counter `name`, reported per node.
export function count(name, delta = 1) { host.count(name, BigInt(delta)); }

/// An exception the plugin did not mean to throw, kept readable for the dead letters.
function unexpected(e) {
  if (e instanceof PluginError) return e;
  return PluginError.internal(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
}

/// The `transformer` export (transform and enrich worlds): `new Plugin(init)` builds the
/// plugin once per instance; `plugin.process(record)` returns an outcome.
export function exportTransform(Plugin) {
  let plugin = null;
  return {
    init(config) {
      const init = new Init(config);
      try {
        plugin = new Plugin(init);
      } catch (e) {
        throw e instanceof PluginError ? e : PluginError.invalidConfig(unexpected(e).message);
      }
      return { outputs: init.outputs };
    },
    process() {
      const n = batch.len();
      const outcomes = new Array(n);
      for (let i = 0; i < n; i++) {
        try {
          outcomes[i] = plugin.process(new Record(i));
        } catch (e) {
          outcomes[i] = fail(unexpected(e));
        }
      }
      return outcomes;
    },
  };
}

/// The `encoder` export (sink world): `plugin.encode(record)` returns
/// `{ partitionKey, sortKey, columns: {name: value}, payload: string | Uint8Array }`
/// (each optional) or throws a PluginError.
export function exportSink(Plugin) {
  let plugin = null;
  const utf8 = (s) => {
    // No TextEncoder without WASI features: encode by hand.
    const bytes = [];
    for (const c of unescape(encodeURIComponent(s))) bytes.push(c.charCodeAt(0));
    return new Uint8Array(bytes);
  };
  return {
    init(config) {
      try {
        plugin = new Plugin(new Init(config));
      } catch (e) {
        throw e instanceof PluginError ? e : PluginError.invalidConfig(unexpected(e).message);
      }
    },
    encode() {
      const n = batch.len();
      const results = new Array(n);
      for (let i = 0; i < n; i++) {
        try {
          const enc = plugin.encode(new Record(i));
          const payload = enc.payload === undefined || enc.payload === null
            ? undefined
            : typeof enc.payload === 'string' ? utf8(enc.payload) : enc.payload;
          results[i] = {
            tag: 'ok',
            val: {
              partitionKey: enc.partitionKey ?? undefined,
              sortKey: enc.sortKey ?? undefined,
              columns: Object.entries(enc.columns ?? {}).map(([k, v]) => [k, toWit(v)]),
              payload,
            },
          };
        } catch (e) {
          const err = unexpected(e);
          results[i] = { tag: 'err', val: { kind: err.kind, message: err.message } };
        }
      }
      return results;
    },
  };
}
