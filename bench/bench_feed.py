"""Feed engine benchmark: build, training time, feed / related / observe latency at scale.

A synthetic world, generated in code: ``pins`` clustered unit vectors (one cluster per 500 pins),
boards nested in clusters, labels shared by pairs of clusters; ``users`` people who each like one
to three clusters; about ``events`` logged events in requests of 10 impressions, half from the
person's clusters and half from a Zipf-popular head, with closeups, dwell and saves on the
relevant ones. Then:

- build: ``FeedEngine(pins)`` (HNSW index over the image vectors, coarse clusters, board graph);
- fit: ``engine.fit(events, now)`` (replay, CF neighbours, LambdaRank training);
- feed: ``engine.feed(user, 25, now)`` for random users (a few warm-up calls are not timed);
- related: ``engine.related(pin, 20, now)`` for random pins;
- observe + feed: a save followed by the next feed call of the same user (the real-time path).

Single process, one call at a time (the lead's HTTP load test measures concurrency). BLAS runs
one thread by default, as in the server (``--blas-threads 0`` leaves the library's default).

Usage::

    python bench/bench_feed.py                       # 100k pins x 10k users x 1M events, d=64
    python bench/bench_feed.py --pins 20000 --users 2000 --events 200000 --calls 200
    python bench/bench_feed.py --json > feed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from tastegraph.feed import Event, EventBatch, FeedEngine, FeedParams, PinTable
from tastegraph.feed.data import CLOSEUP, DWELL, IMPRESSION, SAVE

DAY = 86400.0
NOW = 1_750_000_000.0
TARGETS = {"feed_p99_ms": 50.0, "related_p99_ms": 20.0, "fit_s": 300.0}


def make_world(
    n_pins: int, n_users: int, n_events: int, dim: int, seed: int = 0
) -> tuple[PinTable, EventBatch]:
    """The synthetic catalog and event log (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    n_clusters = max(8, n_pins // 500)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, n_clusters, n_pins)
    vecs = centres[cluster] + (0.8 / np.sqrt(dim)) * rng.standard_normal((n_pins, dim)).astype(
        np.float32
    )
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    board = cluster * 25 + rng.integers(0, 25, n_pins)
    pins = PinTable(
        ids=np.arange(n_pins, dtype=np.int64) + 1,
        vectors=vecs,
        boards=[f"board-{b}" for b in board.tolist()],
        labels=[f"label-{c // 2}" for c in cluster.tolist()],
        titles=[f"pin {i + 1}" for i in range(n_pins)],
        created_at=NOW - rng.uniform(0, 120 * DAY, n_pins),
    )
    # Members of each cluster, for drawing a person's relevant pins.
    order = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[order], np.arange(n_clusters))
    sizes = np.bincount(cluster, minlength=n_clusters)
    tastes = rng.integers(0, n_clusters, (n_users, 3))
    n_taste = rng.integers(1, 4, n_users)
    per_request = 10
    # ~12 events per request (10 impressions plus engagement): requests to reach n_events.
    n_req = max(1, n_events // 12)
    req_user = rng.integers(0, n_users, n_req)
    req_ts = NOW - rng.uniform(0, 60 * DAY, n_req)
    u = np.repeat(req_user, per_request)
    ts = np.repeat(req_ts, per_request) + np.tile(np.arange(per_request) * 2.0, n_req)
    pos = np.tile(np.arange(per_request), n_req)
    personal = rng.random(len(u)) < 0.5
    which = rng.integers(0, 3, len(u)) % n_taste[u]
    cl = tastes[u, which]
    pick = starts[cl] + (rng.random(len(u)) * sizes[cl]).astype(np.int64)
    pin_personal = order[np.minimum(pick, n_pins - 1)]
    zipf = np.minimum(rng.zipf(1.3, len(u)) - 1, n_pins - 1)
    popular_rows = rng.permutation(n_pins)
    pin_row = np.where(personal, pin_personal, popular_rows[zipf])
    relevant = (cluster[pin_row][:, None] == tastes[u]).any(axis=1) & (
        np.arange(3)[None, :] < n_taste[u][:, None]
    ).any(axis=1)
    p_closeup = np.where(relevant, 0.35, 0.02) * 0.9**pos
    closeup = rng.random(len(u)) < p_closeup
    save = closeup & (rng.random(len(u)) < 0.35)
    c_idx = np.flatnonzero(closeup)
    s_idx = np.flatnonzero(save)
    dwell_ms = np.exp(rng.normal(np.log(8000.0), 0.6, len(c_idx)))
    user = np.concatenate([u, u[c_idx], u[c_idx], u[s_idx]])
    pin = np.concatenate([pin_row, pin_row[c_idx], pin_row[c_idx], pin_row[s_idx]]) + 1
    kind = np.concatenate(
        [
            np.full(len(u), IMPRESSION),
            np.full(len(c_idx), CLOSEUP),
            np.full(len(c_idx), DWELL),
            np.full(len(s_idx), SAVE),
        ]
    ).astype(np.int8)
    t = np.concatenate([ts, ts[c_idx] + 1, ts[c_idx] + 1 + dwell_ms / 1000, ts[s_idx] + 30])
    dwell = np.concatenate([np.zeros(len(u)), np.zeros(len(c_idx)), dwell_ms, np.zeros(len(s_idx))])
    position = np.concatenate([pos, pos[c_idx], pos[c_idx], pos[s_idx]])
    request = np.repeat(np.arange(n_req), per_request)
    request = np.concatenate([request, request[c_idx], request[c_idx], request[s_idx]])
    order_t = np.argsort(t, kind="stable")
    events = EventBatch.from_arrays(
        user[order_t],
        pin[order_t],
        kind[order_t],
        t[order_t],
        dwell_ms=dwell[order_t],
        position=position[order_t],
        surface=np.ones(len(t)),
        request=request[order_t],
    )
    return pins, events


def _pct(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000.0
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def run(
    n_pins: int = 100_000,
    n_users: int = 10_000,
    n_events: int = 1_000_000,
    dim: int = 64,
    calls: int = 300,
    seed: int = 0,
    index_kind: str = "hnsw",
    blas_threads: int = 1,
) -> dict[str, Any]:
    """Build, fit and time the engine; returns the report as a dict."""
    if blas_threads > 0:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(blas_threads, "blas"):
            return run(n_pins, n_users, n_events, dim, calls, seed, index_kind, blas_threads=0)
    t = time.perf_counter()
    pins, events = make_world(n_pins, n_users, n_events, dim, seed)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    engine = FeedEngine(pins, params=FeedParams(index_kind=index_kind, seed=seed))
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    engine.fit(events, now=NOW)
    fit_s = time.perf_counter() - t
    rng = np.random.default_rng(seed + 1)
    now = NOW + 60.0
    users = rng.integers(0, n_users, calls + 10)
    for user in users[:10].tolist():
        engine.feed(int(user), 25, now)
    feed_t: list[float] = []
    for user in users[10:].tolist():
        t = time.perf_counter()
        items = engine.feed(int(user), 25, now)
        feed_t.append(time.perf_counter() - t)
        assert items, "empty feed"
    cold_t: list[float] = []
    for user in range(n_users + 1, n_users + 1 + min(calls, 100)):
        t = time.perf_counter()
        engine.feed(user, 25, now)
        cold_t.append(time.perf_counter() - t)
    pin_ids = rng.integers(1, n_pins + 1, calls + 10)
    for pid in pin_ids[:10].tolist():
        engine.related(int(pid), 20, now)
    related_t: list[float] = []
    for pid in pin_ids[10:].tolist():
        t = time.perf_counter()
        engine.related(int(pid), 20, now)
        related_t.append(time.perf_counter() - t)
    rt_t: list[float] = []
    observe_t: list[float] = []
    for i, user in enumerate(users[: min(calls, 100)].tolist()):
        items = engine.feed(int(user), 10, now + i)
        t = time.perf_counter()
        engine.observe([Event(int(user), items[0].pin, "save", now + i + 1)])
        observe_t.append(time.perf_counter() - t)
        engine.feed(int(user), 10, now + i + 2)
        rt_t.append(time.perf_counter() - t)
    report = engine.fit_report_
    return {
        "config": {
            "pins": n_pins,
            "users": n_users,
            "events": len(events),
            "dim": dim,
            "calls": calls,
            "seed": seed,
            "index": index_kind,
            "blas_threads": _blas_threads(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "generate_s": gen_s,
        "build_s": build_s,
        "fit_s": fit_s,
        "fit": {k: v for k, v in report.items() if k != "propensity"},
        "feed": _pct(feed_t),
        "feed_cold_user": _pct(cold_t),
        "related": _pct(related_t),
        "observe_save": _pct(observe_t),
        "save_then_feed": _pct(rt_t),
        "targets": TARGETS,
        "met": {
            "feed_p99_ms": _pct(feed_t)["p99_ms"] <= TARGETS["feed_p99_ms"],
            "related_p99_ms": _pct(related_t)["p99_ms"] <= TARGETS["related_p99_ms"],
            "fit_s": fit_s <= TARGETS["fit_s"],
        },
    }


def _blas_threads() -> int | None:
    from threadpoolctl import threadpool_info

    blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return min(blas) if blas else None


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = report["config"]
    title = (
        f"feed engine: {cfg['pins']:,} pins x {cfg['users']:,} users x {cfg['events']:,} events, "
        f"d={cfg['dim']}, {cfg['index']}, BLAS threads {cfg['blas_threads']}"
    )
    table = Table(title=title)
    for col in ("measure", "p50 ms", "p90 ms", "p99 ms", "max ms", "target"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    for key, label, target in (
        ("feed", "feed (25 items)", "p99 <= 50 ms"),
        ("feed_cold_user", "feed, new user", ""),
        ("related", "related (20 items)", "p99 <= 20 ms"),
        ("observe_save", "observe(save)", ""),
        ("save_then_feed", "save + next feed", ""),
    ):
        r = report[key]
        table.add_row(
            label,
            f"{r['p50_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            target,
        )
    console = Console()
    console.print(table)
    console.print(
        f"world {report['generate_s']:.1f} s, build {report['build_s']:.1f} s, "
        f"fit {report['fit_s']:.1f} s (target <= 300 s); fit: {report['fit']}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pins", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", default="hnsw", choices=["hnsw", "exact"])
    ap.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads (0: the library's default)"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    report = run(
        args.pins,
        args.users,
        args.events,
        args.dim,
        args.calls,
        args.seed,
        args.index,
        args.blas_threads,
    )
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
