// Benchmark plugin: `plugins/testing/bench-edit` in JavaScript — two reads and a write
// through the guest library, paths resolved once at init.

import { KEEP, exportTransform } from './ctrflow-plugin.js';

class Edit {
  constructor(init) {
    this.channel = init.path('Channel');
    this.user = init.path('Agent.Username');
    this.out = init.path('Attributes.route_key');
  }

  process(record) {
    const channel = record.getText(this.channel) ?? '';
    const user = record.getText(this.user) ?? '';
    record.set(this.out, `${channel}:${user}`);
    return KEEP;
  }
}

export const transformer = exportTransform(Edit);
