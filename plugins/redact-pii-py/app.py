"""redact-pii-py: the `redact-pii` plugin written in Python, to show a Python plugin.

Same config and behaviour as the Rust `redact-pii`: `fields` (paths, default
`["CustomerEndpoint.Address"]`) are masked but for their last `keep_last` (default 4)
characters, `attributes` (names under `Attributes`) entirely, with `mask` (default `*`).
A value no longer than `keep_last` is masked entirely; a missing or null field is left
alone; a number or boolean is masked in its text form and becomes a string. Each record adds
the number of values it masked to the counter `masked`.

Build: plugin-sdk/tools/build-plugin.sh python transform plugins/redact-pii-py out.wasm
"""

from ctrflow_plugin import KEEP, Error, Init, Record, count, export_transform

KNOWN_KEYS = {"fields", "keep_last", "mask", "attributes"}


def mask(text: str, keep_last: int, mask_char: str) -> str:
    """`text` with every character but the last `keep_last` replaced by `mask_char`; entirely
    masked when it has no more than `keep_last` characters."""
    hidden = len(text) if len(text) <= keep_last else len(text) - keep_last
    return mask_char * hidden + text[hidden:]


class RedactPii:
    def __init__(self, init: Init):
        config = init.config
        unknown = sorted(set(config) - KNOWN_KEYS)
        if unknown:
            raise Error.invalid_config(f"config: unknown field `{unknown[0]}`")
        fields = config.get("fields", ["CustomerEndpoint.Address"])
        attributes = config.get("attributes", [])
        keep_last = config.get("keep_last", 4)
        self.mask = config.get("mask", "*")
        if not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 0:
            raise Error.invalid_config(f"config.keep_last: expected a non-negative integer, got {keep_last!r}")
        if not isinstance(self.mask, str) or len(self.mask) != 1:
            raise Error.invalid_config(f"config.mask: expected one character, got {self.mask!r}")
        if not fields and not attributes:
            # Almost certainly a mistake: a redactor that redacts nothing.
            raise Error.invalid_config("config: `fields` and `attributes` are both empty: nothing to redact")
        self.targets = [(init.path(field), keep_last) for field in fields]
        for name in attributes:
            # A dot would silently turn the attribute name into a nested path.
            if not name or "." in name:
                raise Error.invalid_config(f"config: attributes: {name!r} is not an attribute name")
            self.targets.append((init.path(f"Attributes.{name}"), 0))

    def process(self, record: Record):
        masked = 0
        for path, keep_last in self.targets:
            text = record.get_text(path)
            if not text:
                continue  # missing, null or empty
            record.set(path, mask(text, keep_last, self.mask))
            masked += 1
        if masked:
            count("masked", masked)
        return KEEP


Transformer = export_transform(RedactPii)
