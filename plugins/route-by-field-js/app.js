// route-by-field-js: the `route-by-field` plugin written in JavaScript, to show a JS plugin.
//
// Same config and behaviour as the Rust `route-by-field`: every value in `routes` becomes an
// output of the same name (lowercased with `lowercase`), addressed as `<node>.<name>`;
// `default` ("other") takes everything else, including records without the `field`
// ("Channel"). Matching is exact on the value; a number or boolean matches by its text; null,
// a missing field, an object or an array goes to the default output.
//
// Build: plugin-sdk/tools/build-plugin.sh js transform plugins/route-by-field-js out.wasm

import { PluginError, exportTransform, route } from './ctrflow-plugin.js';

const KNOWN_KEYS = new Set(['field', 'routes', 'default', 'lowercase']);

/// An output is addressed as `<node>.<name>`: the name must be non-empty and dot-free.
function checkName(name, key) {
  if (typeof name !== 'string' || name === '' || name.includes('.')) {
    throw PluginError.invalidConfig(`config: ${key}: ${JSON.stringify(name)} is not an output name`);
  }
}

class RouteByField {
  constructor(init) {
    const config = init.config;
    for (const key of Object.keys(config)) {
      if (!KNOWN_KEYS.has(key)) throw PluginError.invalidConfig(`config: unknown field \`${key}\``);
    }
    const routes = config.routes ?? [];
    if (!Array.isArray(routes) || routes.length === 0) {
      throw PluginError.invalidConfig('config: `routes` is empty: every record would go to the default output');
    }
    const defaultName = config.default ?? 'other';
    this.field = init.path(config.field ?? 'Channel');
    this.routes = new Map();
    for (const value of routes) {
      const name = config.lowercase ? String(value).toLowerCase() : String(value);
      checkName(name, 'routes');
      if (name === defaultName) {
        // The two would share one output, and the pipeline could not tell them apart.
        throw PluginError.invalidConfig(
          `config: routes: ${JSON.stringify(value)} names the same output as \`default\` (${JSON.stringify(name)})`,
        );
      }
      this.routes.set(String(value), init.output(name));
    }
    checkName(defaultName, 'default');
    this.default = init.output(defaultName);
  }

  process(record) {
    const value = record.get(this.field);
    const scalar = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
    const output = scalar ? this.routes.get(String(value)) : undefined;
    return route(output ?? this.default);
  }
}

export const transformer = exportTransform(RouteByField);
