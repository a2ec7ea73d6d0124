#!/usr/bin/env python3
"""The Python baseline of the throughput benchmark (`cargo xtask bench throughput`).

The demo's work done the way a Lambda handler written in an afternoon would do it: plain,
single-threaded Python with only the standard library (json, csv, sqlite3), records handed
to `handler` in batches of 100 as Kinesis would. For every record:

1. redact: the customer's phone number (`CustomerEndpoint.Address`) keeps its last 4
   characters, the rest become `*` (redact-pii's default), and the attributes
   `customerName` and `accountNumber` are masked entirely (the demo's config);
2. enrich: the agents CSV row of `Agent.Username` goes to `AgentInfo` (kept unchanged
   when there is no row, like enrich-lookup's `on_miss = "keep"`);
3. route by `Channel` into one SQLite table per channel (`voice`, `chat`, `task`, anything
   else `other_channels`), newer-wins: one row per `ContactId`, the one with the newest
   `LastUpdateTimestamp` (a tie keeps the first written), every top-level field a column
   (objects and arrays as JSON text), the same schema ctrflow's SQLite sink writes;
4. flatten the enriched record (ctr-flatten's rules: `Parent_Child` columns, arrays as
   JSON text, empty objects as null, sorted) and append it to a JSON-lines lake
   partitioned by the hour of `LastUpdateTimestamp`.

Each batch is one SQLite transaction and ends with the lake files flushed, as ctrflow
acknowledges a batch. The SQLite pragmas are the ones ctrflow's sink sets with
`fsync = false` (16 KiB pages, WAL, synchronous=NORMAL), as bench/throughput.toml runs it, and the lake is
flushed, not synced (`fsync = false` there too), so both pay for the same durability.

It does not retry, dead-letter, checkpoint or time anything: it is the baseline, not a
second implementation of the runtime.

    python3 bench/baseline.py run --input ctrs.jsonl --agents pipelines/data/agents.csv --out DIR
    python3 bench/baseline.py count DIR     # rows per table and lake lines, as JSON
"""

import argparse
import csv
import datetime
import json
import os
import sqlite3
import sys

BATCH = 100
TABLES = {"VOICE": "voice", "CHAT": "chat", "TASK": "task"}
DEFAULT_TABLE = "other_channels"
PHONE = ("CustomerEndpoint", "Address")
MASKED_ATTRIBUTES = ("customerName", "accountNumber")
KEEP_LAST = 4
OLDEST = -(2**63)


def compact(value):
    # Sorted keys: serde_json writes objects sorted, so both outputs are the same text.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def as_text(value):
    """A value's text as redact-pii and route-by-field see it (None: null or missing)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return compact(value)


def mask(text, keep_last):
    hidden = len(text) if len(text) <= keep_last else len(text) - keep_last
    return "*" * hidden + text[hidden:]


def redact(record):
    targets = [(PHONE, KEEP_LAST)] + [(("Attributes", name), 0) for name in MASKED_ATTRIBUTES]
    for (parent, leaf), keep_last in targets:
        holder = record.get(parent)
        if not isinstance(holder, dict):
            continue
        text = as_text(holder.get(leaf))
        if text:
            holder[leaf] = mask(text, keep_last)


def enrich(record, agents):
    agent = record.get("Agent")
    key = as_text(agent.get("Username")) if isinstance(agent, dict) else None
    row = agents.get(key) if key is not None else None
    if row is not None:
        record["AgentInfo"] = row


def flatten(record):
    flat = {}

    def walk(key, value):
        if isinstance(value, dict) and value:
            for child, v in value.items():
                walk(f"{key}_{child}", v)
            return
        if isinstance(value, dict):
            value = None
        elif isinstance(value, list):
            value = compact(value)
        flat[key] = value

    for key, value in record.items():
        walk(key, value)
    return dict(sorted(flat.items()))


def epoch_ms(timestamp):
    try:
        return int(datetime.datetime.fromisoformat(timestamp).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


class Tables:
    """One newer-wins SQLite table per channel, columns added as fields appear."""

    def __init__(self, path):
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA page_size=16384")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.columns = {}
        self.statements = {}

    def _table(self, name):
        if name not in self.columns:
            self.db.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" (_ctrflow_key TEXT PRIMARY KEY, _ctrflow_version INTEGER)'
            )
            self.columns[name] = {row[1] for row in self.db.execute(f'PRAGMA table_info("{name}")')}
        return self.columns[name]

    def upsert(self, name, record):
        key = record.get("ContactId")
        if not isinstance(key, str):
            return False
        version = epoch_ms(record.get("LastUpdateTimestamp"))
        columns = self._table(name)
        fields = tuple(record)
        for field in fields:
            if field not in columns:
                self.db.execute(f'ALTER TABLE "{name}" ADD COLUMN "{field}"')
                columns.add(field)
        sql = self.statements.get((name, fields))
        if sql is None:
            names = ["_ctrflow_key", "_ctrflow_version"] + [f'"{f}"' for f in fields]
            updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
            sql = (
                f'INSERT INTO "{name}" ({", ".join(names)}) VALUES ({", ".join("?" * len(names))}) '
                f"ON CONFLICT(_ctrflow_key) DO UPDATE SET {updates} "
                f'WHERE excluded._ctrflow_version > "{name}"._ctrflow_version'
            )
            self.statements[(name, fields)] = sql
        values = [key, OLDEST if version is None else version]
        for field in fields:
            v = record[field]
            if isinstance(v, (dict, list)):
                v = compact(v)
            elif isinstance(v, bool):
                v = int(v)
            values.append(v)
        self.db.execute(sql, values)
        return True


class Lake:
    """JSON lines under <dir>/%Y/%m/%d/%H/contacts.jsonl, by LastUpdateTimestamp."""

    def __init__(self, directory):
        self.directory = directory
        self.files = {}

    def write(self, flat):
        ms = epoch_ms(flat.get("LastUpdateTimestamp"))
        when = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc) if ms is not None else None
        when = when or datetime.datetime.now(datetime.timezone.utc)
        path = os.path.join(self.directory, when.strftime("%Y/%m/%d/%H"), "contacts.jsonl")
        f = self.files.get(path)
        if f is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            f = self.files[path] = open(path, "a", encoding="utf-8")
        f.write(compact(flat))
        f.write("\n")

    def flush(self):
        for f in self.files.values():
            f.flush()


def handler(lines, agents, tables, lake):
    """One invocation: a batch of JSON texts, as a Kinesis trigger hands them over."""
    with tables.db:  # one transaction per batch
        for line in lines:
            record = json.loads(line)
            redact(record)
            enrich(record, agents)
            channel = as_text(record.get("Channel"))
            tables.upsert(TABLES.get(channel, DEFAULT_TABLE), record)
            lake.write(flatten(record))
    lake.flush()


def run(args):
    with open(args.agents, newline="", encoding="utf-8") as f:
        agents = {row["username"]: row for row in csv.DictReader(f)}
    os.makedirs(args.out, exist_ok=True)
    tables = Tables(os.path.join(args.out, "contacts.db"))
    lake = Lake(os.path.join(args.out, "lake"))
    count = 0
    batch = []
    with open(args.input, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            batch.append(line)
            if len(batch) == BATCH:
                handler(batch, agents, tables, lake)
                count += len(batch)
                batch = []
    if batch:
        handler(batch, agents, tables, lake)
        count += len(batch)
    lake.flush()
    tables.db.close()
    print(count)


def count(args):
    """Rows per table and lake lines of an output directory (ctrflow's or this script's)."""
    result = {}
    db = sqlite3.connect(os.path.join(args.out, "contacts.db"))
    for table in list(TABLES.values()) + [DEFAULT_TABLE]:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        result[table] = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] if exists else 0
    db.close()
    lines = 0
    for directory, _, files in os.walk(os.path.join(args.out, "lake")):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                lines += sum(1 for _ in f)
    result["lake_lines"] = lines
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="process a JSON-lines file")
    r.add_argument("--input", required=True)
    r.add_argument("--agents", required=True)
    r.add_argument("--out", required=True)
    c = sub.add_parser("count", help="count an output directory's rows and lake lines")
    c.add_argument("out")
    args = parser.parse_args()
    {"run": run, "count": count}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
