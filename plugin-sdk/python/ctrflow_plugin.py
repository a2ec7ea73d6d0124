"""ctrflow_plugin: write a ctrflow plugin in Python, the way the Rust SDK writes one.

A plugin is a class with ``__init__(self, init)`` and ``process(self, record)`` (or
``encode(self, record)`` for a sink), exported with :func:`export_transform` /
:func:`export_sink`::

    from ctrflow_plugin import Init, Record, KEEP, export_transform, count

    class Tag:
        def __init__(self, init: Init):
            self.channel = init.path("Channel")
            self.tag = init.path("Attributes.tag")

        def process(self, record: Record):
            record.set(self.tag, "seen-" + (record.get_text(self.channel) or ""))
            return KEEP

    Transformer = export_transform(Tag)   # componentize-py looks for this name

What is here: :class:`Init` (config, paths, outputs), :class:`Record` (one host-held record,
fields read and written by :class:`Path`), the outcomes (``KEEP``, ``DROP``, :func:`route`,
:func:`split`, :func:`fail`), :class:`Error`, and the host's services :func:`lookup`,
:func:`log`, :func:`count`. Records stay in the host: a field access is one call across the
boundary, and only :meth:`Record.to_json` moves the whole record.

What is not here: any I/O. The component gets a deny-all WASI: no files, network or
environment. ``print`` goes nowhere; use :func:`log`.

Built with componentize-py against ``wit/ctrflow.wit`` (module ``wit_world`` is generated
by it at build time), so this file only runs inside a component.
"""

import json
import traceback

from componentize_py_types import Err, Ok
from wit_world.imports import batch, host, types

__all__ = [
    "DROP",
    "KEEP",
    "Encoded",
    "Error",
    "Init",
    "Output",
    "Path",
    "Record",
    "count",
    "export_sink",
    "export_transform",
    "fail",
    "log",
    "lookup",
    "route",
    "split",
]


class Error(Exception):
    """A plugin's error: a kind the host routes on, and a message for the dead letters.

    Raise it from ``__init__`` (any kind means the pipeline does not start) or from
    ``process`` (the record goes to the node's ``on_error`` handling).
    """

    def __init__(self, kind: types.ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @staticmethod
    def bad_record(message: str) -> "Error":
        return Error(types.ErrorKind.BAD_RECORD, message)

    @staticmethod
    def invalid_config(message: str) -> "Error":
        return Error(types.ErrorKind.INVALID_CONFIG, message)

    @staticmethod
    def lookup_failed(message: str) -> "Error":
        return Error(types.ErrorKind.LOOKUP_FAILED, message)

    @staticmethod
    def internal(message: str) -> "Error":
        return Error(types.ErrorKind.INTERNAL, message)

    def to_wit(self) -> types.PluginError:
        return types.PluginError(kind=self.kind, message=self.message)


class Path:
    """A field path, resolved once at init and reused for every record."""

    __slots__ = ("id", "text")

    def __init__(self, id: int, text: str):
        self.id = id
        self.text = text

    def __repr__(self) -> str:
        return f"Path({self.text!r})"


class Output:
    """A named output declared at init; return it through :func:`route`."""

    __slots__ = ("index", "name")

    def __init__(self, index: int, name: str):
        self.index = index
        self.name = name


class Init:
    """What a plugin gets at init: its config, and the means to resolve paths and declare
    outputs."""

    def __init__(self, config_json: str):
        config = json.loads(config_json) if config_json else None
        #: The node's ``config`` table as a dict (empty when the pipeline gives none).
        self.config: dict = config if isinstance(config, dict) else {}
        self.outputs: list = []

    def path(self, text: str) -> Path:
        """Resolves a dotted field path (``Agent.Username``, ``Recordings.0.Location``)."""
        try:
            return Path(host.resolve_path(text), text)
        except Err as e:
            raise Error.invalid_config(f"path {text!r}: {e.value}") from None

    def output(self, name: str) -> Output:
        """Declares a named output (the same name gives the same output)."""
        if name not in self.outputs:
            self.outputs.append(name)
        return Output(self.outputs.index(name), name)


# The outcomes. A `process` returns one of these; raising `Error` is `fail(error)`.
KEEP = types.Outcome_Keep()
DROP = types.Outcome_Drop()


def route(output: Output) -> types.Outcome:
    """Send the record to a named output."""
    return types.Outcome_Route(output.index)


def split(records: list) -> types.Outcome:
    """Replace the record by these records (dicts), sent to the default output."""
    return types.Outcome_Split([json.dumps(r, separators=(",", ":")) for r in records])


def fail(error: Error) -> types.Outcome:
    """Refuse the record: the node's ``on_error`` decides what happens to it."""
    return types.Outcome_Fail(error.to_wit())


def _from_wit(value):
    """A WIT value as a Python one: JSON objects and arrays parsed."""
    if value is None or isinstance(value, types.Value_Null):
        return None
    if isinstance(value, types.Value_Json):
        return json.loads(value.value)
    return value.value


def _to_wit(value) -> types.Value:
    """A Python value as a WIT one. (`bool` before `int`: `True` is an `int` in Python.)"""
    if value is None:
        return types.Value_Null()
    if isinstance(value, bool):
        return types.Value_Boolean(value)
    if isinstance(value, int):
        return types.Value_Integer(value)
    if isinstance(value, float):
        return types.Value_Float(value)
    if isinstance(value, str):
        return types.Value_Text(value)
    return types.Value_Json(json.dumps(value, separators=(",", ":")))


def _text(value):
    """A WIT value as display text, as the Rust SDK's `Value::to_text`: strings as they are,
    numbers and booleans written out, JSON as its text; None for null or missing."""
    if value is None or isinstance(value, types.Value_Null):
        return None
    if isinstance(value, types.Value_Boolean):
        return "true" if value.value else "false"
    return str(value.value)


class Record:
    """One record of the current batch, held by the host and reached by :class:`Path`."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def get(self, path: Path):
        """The value at ``path`` (``None`` when missing or null); objects and arrays as
        dicts and lists."""
        return _from_wit(batch.get(self.index, path.id))

    def get_text(self, path: Path):
        """The value at ``path`` as text (numbers and booleans written out), or ``None``."""
        return _text(batch.get(self.index, path.id))

    def set(self, path: Path, value) -> None:
        """Sets the value at ``path``, creating missing objects on the way. Raises
        :class:`Error` (bad record) when a segment crosses a scalar."""
        try:
            batch.set(self.index, path.id, _to_wit(value))
        except Err as e:
            raise Error.bad_record(f"set {path.text}: {e.value}") from None

    def remove(self, path: Path):
        """Removes the value at ``path``, returning it (``None`` when it was missing)."""
        return _from_wit(batch.remove(self.index, path.id))

    def to_json(self) -> dict:
        """The whole record, parsed (it crosses the boundary as text: use paths when you can)."""
        return json.loads(batch.to_json(self.index))

    def replace_json(self, record: dict) -> None:
        """Replaces the whole record."""
        try:
            batch.set_json(self.index, json.dumps(record, separators=(",", ":")))
        except Err as e:
            raise Error.bad_record(f"replace: {e.value}") from None


def lookup(table: str, key: str):
    """The row of ``table`` whose key is ``key``, as a dict, or ``None``. Only in the enrich
    world, for the tables the node's ``tables`` grants."""
    try:
        from wit_world.imports import lookup as wit_lookup
    except ImportError:
        raise Error.lookup_failed("lookup needs the enrich world (build with --world enrich)") from None
    try:
        return _from_wit(wit_lookup.get(table, key))
    except Err as e:
        raise Error(e.value.kind, e.value.message) from None


_LEVELS = {
    "trace": types.LogLevel.TRACE,
    "debug": types.LogLevel.DEBUG,
    "info": types.LogLevel.INFO,
    "warn": types.LogLevel.WARN,
    "error": types.LogLevel.ERROR,
}


def log(level: str, message: str) -> None:
    """Writes a line to the runtime's log (``level``: trace, debug, info, warn, error),
    tagged with the node. Keep it off the per-record path above debug."""
    host.log(_LEVELS[level], message)


def count(name: str, delta: int = 1) -> None:
    """Adds ``delta`` to the plugin-defined counter ``name``, reported per node."""
    host.count(name, delta)


def _unexpected(e: BaseException) -> Error:
    """An exception the plugin did not mean to raise, kept readable for the dead letters."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" at line {frames[-1].lineno} of {frames[-1].filename}" if frames else ""
    return Error.internal(f"{type(e).__name__}: {e}{where}")


# componentize-py makes a fresh instance of the exported class for every call, so the
# plugin object lives here, one per component instance.
_plugin = None


def export_transform(cls):
    """The class componentize-py exports for the transform and enrich worlds: assign it to
    ``Transformer`` in the app module. ``cls(init)`` builds the plugin;
    ``plugin.process(record)`` returns an outcome."""

    class Transformer:
        def init(self, config: str) -> types.Info:
            global _plugin
            init = Init(config)
            try:
                _plugin = cls(init)
            except Error as e:
                raise Err(e.to_wit()) from None
            except Exception as e:
                raise Err(Error.invalid_config(f"{_unexpected(e).message}").to_wit()) from None
            return types.Info(outputs=list(init.outputs))

        def process(self) -> list:
            plugin = _plugin
            outcomes = []
            for index in range(batch.len()):
                try:
                    outcomes.append(plugin.process(Record(index)))
                except Error as e:
                    outcomes.append(fail(e))
                except Exception as e:
                    outcomes.append(fail(_unexpected(e)))
            return outcomes

    return Transformer


class Encoded:
    """One record encoded for a destination (see the WIT ``encoded`` record): DynamoDB and
    SQLite take ``columns`` (with the keys); Firehose, Kinesis and files take ``payload``
    (bytes or str)."""

    def __init__(self, partition_key=None, sort_key=None, columns=None, payload=None):
        self.partition_key = partition_key
        self.sort_key = sort_key
        self.columns = columns or {}
        self.payload = payload

    def to_wit(self):
        from wit_world.exports import encoder

        payload = self.payload.encode() if isinstance(self.payload, str) else self.payload
        columns = [(name, _to_wit(value)) for name, value in dict(self.columns).items()]
        return encoder.Encoded(
            partition_key=self.partition_key, sort_key=self.sort_key, columns=columns, payload=payload
        )


def export_sink(cls):
    """The class componentize-py exports for the sink world: assign it to ``Encoder`` in the
    app module. ``cls(init)`` builds the plugin; ``plugin.encode(record)`` returns an
    :class:`Encoded` (or raises :class:`Error`)."""

    class Encoder:
        def init(self, config: str) -> None:
            global _plugin
            try:
                _plugin = cls(Init(config))
            except Error as e:
                raise Err(e.to_wit()) from None
            except Exception as e:
                raise Err(Error.invalid_config(_unexpected(e).message).to_wit()) from None

        def encode(self) -> list:
            plugin = _plugin
            results = []
            for index in range(batch.len()):
                try:
                    results.append(Ok(plugin.encode(Record(index)).to_wit()))
                except Error as e:
                    results.append(Err(e.to_wit()))
                except Exception as e:
                    results.append(Err(_unexpected(e).to_wit()))
            return results

    return Encoder
