"""Benchmark plugin: `plugins/testing/bench-edit` in Python — two reads and a write through
the guest library, paths resolved once at init."""

from ctrflow_plugin import KEEP, Init, Record, export_transform


class Edit:
    def __init__(self, init: Init):
        self.channel = init.path("Channel")
        self.user = init.path("Agent.Username")
        self.out = init.path("Attributes.route_key")

    def process(self, record: Record):
        channel = record.get_text(self.channel) or ""
        user = record.get_text(self.user) or ""
        record.set(self.out, f"{channel}:{user}")
        return KEEP


Transformer = export_transform(Edit)
