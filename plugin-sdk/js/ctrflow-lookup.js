// ctrflow-lookup.js: lookup tables for enrich plugins written in JavaScript. A module of its
// own because only the enrich world imports `ctrflow:plugin/lookup`; a transform that
// imported it would not build.

import { get } from 'ctrflow:plugin/lookup@0.1.0';
import { PluginError, errorPayload, fromWit } from './ctrflow-plugin.js';

/// The row of `table` whose key is `key`, as an object, or null. Only the tables the node's
/// `tables` grants.
export function lookup(table, key) {
  try {
    return fromWit(get(table, key));
  } catch (e) {
    const p = errorPayload(e);
    throw new PluginError(p?.kind ?? 'lookup-failed', p?.message ?? String(p));
  }
}
