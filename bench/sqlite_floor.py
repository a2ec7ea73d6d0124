#!/usr/bin/env python3
"""SQLite's own cost per row on the throughput graph: the floor under ctrflow's SQLite sinks.

Re-inserts the rows ctrflow wrote into one table of the throughput benchmark's database into a
fresh database with what the SQLite sink does: 16 KiB pages, WAL, an 8 MiB page cache,
`synchronous` NORMAL (a sink with `fsync = false`; FULL with `fsync = true`), the table as
the sink created it and its newer-wins upsert, 512 rows a transaction (the sink's
`max_records`). The rows are shuffled (seeded), as a stream's random ContactIds arrive.
Nothing of ctrflow runs: what this measures is SQLite's work, through Python's thin
`executemany`, so no record-side change can take a sink below it.

    cargo xtask bench throughput               # once: writes the database this reads
    python3 bench/sqlite_floor.py "$CARGO_TARGET_DIR/bench-throughput/out-ctrflow/contacts.db"

Options: `--table` (default voice), `--sync` (NORMAL, FULL or OFF), `--rounds` (default 3).
Python's `sqlite3` uses the system's SQLite, ctrflow a bundled one (`rusqlite`'s `bundled`
feature): the versions are printed, and the costs compared are of the same order, not equal.
"""

import argparse
import os
import random
import sqlite3
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("database", help="the throughput benchmark's contacts.db (ctrflow's row)")
    ap.add_argument("--table", default="voice")
    ap.add_argument("--sync", default="NORMAL", choices=["NORMAL", "FULL", "OFF"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows-per-transaction", type=int, default=512)
    args = ap.parse_args()

    src = sqlite3.connect(f"file:{args.database}?mode=ro", uri=True)
    found = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (args.table,)).fetchone()
    if found is None:
        raise SystemExit(f"{args.database} has no table {args.table!r}: run `cargo xtask bench throughput` first")
    schema = found[0]
    columns = [row[1] for row in src.execute(f'PRAGMA table_info("{args.table}")')]
    rows = src.execute(f'SELECT * FROM "{args.table}"').fetchall()
    random.Random(1).shuffle(rows)

    quoted = ",".join(f'"{c}"' for c in columns)
    update = ",".join(f'"{c}" = excluded."{c}"' for c in columns if c != "_ctrflow_key")
    upsert = (
        f'INSERT INTO "{args.table}" ({quoted}) VALUES ({",".join("?" * len(columns))})'
        f" ON CONFLICT(_ctrflow_key) DO UPDATE SET {update}"
        f' WHERE excluded._ctrflow_version > "{args.table}"._ctrflow_version'
    )
    size = sum(len(v) if isinstance(v, (str, bytes)) else 8 for row in rows for v in row) / max(len(rows), 1)
    print(f"SQLite {sqlite3.sqlite_version}; {len(rows)} rows of {len(columns)} columns, about {size / 1000:.1f} KB each")
    print(f"synchronous={args.sync}, {args.rows_per_transaction} rows a transaction")

    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            db = sqlite3.connect(os.path.join(tmp, "floor.db"), isolation_level=None)
            db.execute("PRAGMA page_size = 16384")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {args.sync}")
            db.execute("PRAGMA cache_size = -8192")
            db.execute(schema)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(0, len(rows), args.rows_per_transaction):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(upsert, rows[i : i + args.rows_per_transaction])
                db.execute("COMMIT")
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            db.close()
        n = max(len(rows), 1)
        print(
            f"round {round_}: wall {wall:.2f} s, CPU {cpu:.2f} s: "
            f"{1e6 * cpu / n:.1f} µs of CPU and {1e6 * wall / n:.1f} µs of wall time a row, {n / wall:,.0f} rows/s"
        )


if __name__ == "__main__":
    main()
