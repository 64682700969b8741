"""Engagement events into SQLite: events/s through the service, against raw sqlite3, in one run.

    python bench/bench_events.py --events 200000

The raw baseline is plain ``executemany`` of the same rows into the same table (no validation, no
id checks): the ceiling for this disk. Target: >= 5,000 events/s through ``tastegraph``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
KINDS = ("impression", "closeup", "click", "save", "hide", "dwell")


def make_file(path: Path, n: int, users: int, pins: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "pin_id", "type", "ts", "dwell_ms", "position", "request_id"])
        u = rng.integers(1, users + 1, n)
        p = rng.integers(1, pins + 1, n)
        k = rng.choice(len(KINDS), n, p=[0.6, 0.1, 0.15, 0.05, 0.02, 0.08])
        for i in range(n):
            kind = KINDS[k[i]]
            dwell = int(rng.integers(100, 20000)) if kind == "dwell" else ""
            w.writerow([u[i], p[i], kind, 1_700_000_000 + i, dwell, i % 25, f"r{i // 25}"])


def run(n: int, users: int, pins: int) -> dict[str, float]:
    import numpy as np_

    from tastegraph.app import build
    from tastegraph.settings import Settings
    from tastegraph.store import NewPin

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = build(Settings(data_dir=root / "data"))
        app.store.add_pins(
            [
                NewPin(content_hash=f"{i:064d}", source=f"p{i}", vectors={})
                for i in range(1, pins + 1)
            ]
        )
        for i in range(users):
            app.store.create_user(f"u{i}")
        f = root / "events.csv"
        make_file(f, n, users, pins)
        t0 = time.perf_counter()
        res = app.engagement.import_file(f, progress=False)
        ours = time.perf_counter() - t0
        assert res["accepted"] == n, res
        t0 = time.perf_counter()
        again = app.engagement.import_file(f, progress=False)
        dup_s = time.perf_counter() - t0
        assert again["duplicates"] == n
        app.close()

        con = sqlite3.connect(root / "raw.db")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, key TEXT UNIQUE, user_id INT, pin_id INT,"
            " kind TEXT, ts REAL, dwell_ms REAL, position INT, request_id TEXT)"
        )
        with f.open() as fh:
            rows = [
                (
                    f"k{i}",
                    int(r["user_id"]),
                    int(r["pin_id"]),
                    r["type"],
                    float(r["ts"]),
                    float(r["dwell_ms"] or 0),
                    int(r["position"]),
                    r["request_id"],
                )
                for i, r in enumerate(csv.DictReader(fh))
            ]
        t0 = time.perf_counter()
        for s in range(0, len(rows), 5000):
            with con:
                con.executemany(
                    "INSERT OR IGNORE INTO events(key,user_id,pin_id,kind,ts,dwell_ms,position,"
                    "request_id) VALUES (?,?,?,?,?,?,?,?)",
                    rows[s : s + 5000],
                )
        raw = time.perf_counter() - t0
        con.close()
        del np_
    return {
        "events": n,
        "tastegraph_events_per_s": round(n / ours, 1),
        "tastegraph_duplicates_per_s": round(n / dup_s, 1),
        "raw_sqlite_insert_per_s": round(n / raw, 1),
        "ratio_to_raw_insert": round(raw / ours, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--pins", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.events, a.users, a.pins)
    t = Table("measure", "value")
    for k, v in res.items():
        t.add_row(k, str(v))
    console.print(t)
    if a.json:
        sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
