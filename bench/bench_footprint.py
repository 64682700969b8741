"""Bytes per pin and per event in each tier: the store on disk, the index files, a serving replica.

The capacity plan in ``docs/architecture.md`` ("The plan past this machine") is built on these
figures. For each shape ``PINSxUSERSxEVENTS`` the bench builds the same synthetic installation as
``bench/bench_feed_http.py`` (clustered 1280-d pins whitened to 256-d, users, logged home-feed
events), trains the ranker with ``tastegraph train`` (what production serves), then:

- **store**: bytes per table from SQLite's ``dbstat`` (tables with their indexes), so pins, their
  vectors, keyword documents, the change log and the event log are told apart;
- **index**: the bytes of the saved vector index files;
- **replica**: a fresh process opens the installation as ``tastegraph serve`` does and reports its
  resident memory (``VmRSS``) after each step: the store opened, the models loaded, the indexes
  loaded, the feed engine built (trained model loaded, the event log replayed), and after 300
  feed and related requests.

With ``--store URL`` (an empty PostgreSQL database) the same catalog is also moved there with
``tastegraph db copy`` and the store tier is measured on PostgreSQL too: each table's
``pg_total_relation_size`` (heap, TOAST and indexes; the keyword index is ``pins_fts``), so
bytes per pin and per event on both stores come from one catalog. A copied table has no dead
rows yet: a store written over months by ingest and edits is larger until vacuumed.

With three or more shapes the replica's memory is fitted as ``fixed + a * pins + b * events``
(least squares), which is what "pins and events per GiB" comes from; pick shapes that vary pins
and events independently (the default does).

Usage::

    python bench/bench_footprint.py                       # three shapes up to 100k x 1M
    python bench/bench_footprint.py --shapes 5000x500x50000,10000x1000x50000,10000x1000x100000
    python bench/bench_footprint.py --json > footprint.json
    python bench/bench_footprint.py --shapes 10000x1000x100000 --no-train \
        --store postgresql+psycopg://USER:PASSWORD@HOST/EMPTY_DB
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_feed_http import build_installation, run_train

DEFAULT_SHAPES = "50000x5000x250000,50000x5000x1000000,100000x10000x1000000"
MIB = 1 << 20


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for part in text.split(","):
        pins, users, events = (int(x) for x in part.lower().split("x"))
        if min(pins, users, events) <= 0:
            raise SystemExit(f"shape {part!r}: every size must be positive")
        shapes.append((pins, users, events))
    return shapes


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found (this bench reads Linux's /proc)")


def store_tables(db: Path) -> dict[str, int]:
    """Bytes on disk per table, each table's own indexes (and FTS shadow tables) folded in."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_schema").fetchall())
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            if table.startswith("pins_fts"):
                table = "pins_fts"
            sizes[table] = sizes.get(table, 0) + int(size)
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))
    finally:
        conn.close()


def postgresql_tables(url: str) -> dict[str, int]:
    """Bytes per table on PostgreSQL (``pg_total_relation_size``: heap, TOAST, indexes)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
                    "AND c.relname <> 'alembic_version'"
                )
            ).all()
        return dict(sorted(((str(n), int(b)) for n, b in rows), key=lambda kv: -kv[1]))
    finally:
        engine.dispose()


# Published files (the projection, trained models): their size follows the model, not the pin
# count, so they are reported on their own rather than spread over the pins.
ARTEFACT_TABLES = ("artefacts", "artefact_chunks")


def per_pin_and_event(tables: dict[str, int], n_pins: int, n_events: int) -> dict[str, float]:
    pin_tables = {k: v for k, v in tables.items() if k != "events" and k not in ARTEFACT_TABLES}
    return {
        "bytes_per_pin": round(sum(pin_tables.values()) / n_pins, 1),
        "bytes_per_event": round(tables.get("events", 0) / max(1, n_events), 1),
        "artefact_bytes": sum(tables.get(k, 0) for k in ARTEFACT_TABLES),
    }


def _replica(data: str, users: list[int], pins: list[int], out: Any) -> None:
    """Open the installation as a server process does; report RSS after each step."""
    steps: dict[str, int] = {"python": rss_bytes()}
    from tastegraph.app import build
    from tastegraph.settings import Settings

    steps["imports"] = rss_bytes()
    app = build(Settings(data_dir=Path(data)))
    steps["store"] = rss_bytes()
    _ = app.encoders
    steps["models"] = rss_bytes()
    _ = app.indexes
    steps["indexes"] = rss_bytes()
    t0 = time.perf_counter()
    _ = app.feeds.engine
    engine_s = time.perf_counter() - t0
    steps["engine"] = rss_bytes()
    rng = np.random.default_rng(0)
    for u in rng.choice(users, 200).tolist():
        app.feeds.feed(int(u), 25)
    for p in rng.choice(pins, 100).tolist():
        app.feeds.related(int(p), 20)
    steps["served"] = rss_bytes()
    out.put({"rss": steps, "engine_build_s": round(engine_s, 2), "model": app.feeds.version})


def replica_memory(data: Path, users: list[int], pins: list[int]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    proc = ctx.Process(target=_replica, args=(str(data), users, pins, q))
    proc.start()
    res: dict[str, Any] = q.get(timeout=1800)
    proc.join(60)
    rss = res["rss"]
    names = list(rss)
    res["step_mib"] = {b: round((rss[b] - rss[a]) / MIB, 1) for a, b in itertools.pairwise(names)}
    res["rss_mib"] = {k: round(v / MIB, 1) for k, v in rss.items()}
    return res


def measure(
    shape: tuple[int, int, int], train: bool, quiet: bool, store: str | None = None
) -> dict[str, Any]:
    n_pins, n_users, n_events = shape
    with tempfile.TemporaryDirectory(prefix="tg-footprint-") as tmp:
        data = Path(tmp) / "data"
        built = build_installation(data, n_pins, n_users, n_events, seed=0, quiet=quiet)
        trained = run_train(data, timeout=1800) if train else None
        if trained is not None and trained["rc"] != 0:
            raise SystemExit(f"tastegraph train failed: {trained}")
        tables = store_tables(data / "tastegraph.db")
        index_bytes = sum(f.stat().st_size for f in (data / "indexes").rglob("*") if f.is_file())
        recs = data / "models" / "recs"  # the trained feed models (`tastegraph train`)
        model_bytes = sum(f.stat().st_size for f in recs.rglob("*") if f.is_file())
        replica = replica_memory(data, built["user_ids"], built["pin_ids"])
        pg: dict[str, Any] | None = None
        if store:
            from tastegraph.store.copy import copy_store

            copied = copy_store(f"sqlite:///{data / 'tastegraph.db'}", store)
            pg_tables = postgresql_tables(store)
            pg = {
                "store_bytes": pg_tables,
                **per_pin_and_event(pg_tables, n_pins, built["events"]),
                "copy_s": round(copied.seconds, 1),
            }
    lite = per_pin_and_event(tables, n_pins, built["events"])
    return {
        "shape": {"pins": n_pins, "users": n_users, "events": built["events"]},
        "store_bytes": tables,
        "store_bytes_per_pin": lite["bytes_per_pin"],
        "store_bytes_per_event": lite["bytes_per_event"],
        "store_artefact_bytes": lite["artefact_bytes"],
        "postgresql": pg,
        "index_bytes_per_pin": round(index_bytes / n_pins, 1),
        "feed_model_bytes": model_bytes,
        "train_wall_s": None if trained is None else trained["wall_s"],
        "replica": replica,
    }


def fit_replica(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """fixed + a * pins + b * events, by least squares over the shapes' served RSS."""
    if len(rows) < 3:
        return None
    x = np.array([[1.0, r["shape"]["pins"], r["shape"]["events"]] for r in rows])
    y = np.array([float(r["replica"]["rss"]["served"]) for r in rows])
    (fixed, per_pin, per_event), *_ = np.linalg.lstsq(x, y, rcond=None)
    gib = float(1 << 30)
    out = {
        "fixed_mib": round(fixed / MIB, 1),
        "bytes_per_pin": round(float(per_pin), 1),
        "bytes_per_event": round(float(per_event), 1),
    }
    if per_pin > 0 and per_event > 0:
        # A GiB above the fixed part, at the shapes' ratio of 10 events per pin.
        out["pins_per_gib_at_10_events_each"] = int(gib / (per_pin + 10 * per_event))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help="PINSxUSERSxEVENTS,...")
    ap.add_argument("--no-train", action="store_true", help="measure the untrained engine")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--store", help="an EMPTY PostgreSQL database: the catalog is copied there and measured"
    )
    args = ap.parse_args(argv)
    shapes = parse_shapes(args.shapes)
    if args.store and len(shapes) > 1:
        ap.error("--store takes one shape (the database must be empty for each copy)")
    rows = []
    for shape in shapes:
        rows.append(measure(shape, train=not args.no_train, quiet=args.json, store=args.store))
        if not args.json:
            print(json.dumps(rows[-1], indent=1), flush=True)
    report = {
        "shapes": rows,
        "replica_fit": fit_replica(rows),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }
    print(json.dumps(report, indent=1 if not args.json else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
