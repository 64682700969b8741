"""Feed engine under concurrency: where one request's time goes, then 4 threads at once.

The same synthetic world as ``bench/bench_feed.py`` (its ``make_world``), trained ranker included.
Then, in one process:

- profile: ``--calls`` feed and related requests one at a time, timing each stage of a feed
  (interests, every source, pool, filters, features, prerank, ranker predict, blend, reasons)
  and the CPU time of whole requests (``time.thread_time``);
- threads: ``--threads`` Python threads (as uvicorn's threadpool runs sync endpoints) calling
  ``feed`` (70%) and ``related`` (30%) back to back for ``--seconds``; latency percentiles per
  endpoint and requests/s together.

BLAS runs one thread, as in the server. ``results_digest`` hashes what a fixed set of requests
returns (pins, order, scores, reasons): two versions of the engine serve the same feeds when
their digests agree (use ``--index exact``: an HNSW graph built on several threads differs a
little from run to run).

Usage::

    python bench/bench_feed_threads.py                      # 100k pins x 10k users x 1M events
    python bench/bench_feed_threads.py --pins 20000 --users 2000 --events 200000
    python bench/bench_feed_threads.py --json > threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feed import NOW, make_world
from tastegraph.feed import FeedEngine, FeedParams

FEED_SHARE = 0.7


def build(
    n_pins: int, n_users: int, n_events: int, dim: int, seed: int, index_kind: str = "hnsw"
) -> tuple[FeedEngine, float]:
    """The fitted engine and the seconds fit took."""
    pins, events = make_world(n_pins, n_users, n_events, dim, seed)
    engine = FeedEngine(pins, params=FeedParams(index_kind=index_kind, seed=seed))
    t = time.perf_counter()
    engine.fit(events, now=NOW)
    fit_s = time.perf_counter() - t
    return engine, fit_s


def _pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms) if ms else np.zeros(1)
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


# -- stage profile --------------------------------------------------------------------------


class Stages:
    """Wraps functions in their modules' namespaces and sums time per stage and request: wall
    time in ms by default; ``bench_feed_cpu.py`` passes the thread's CPU clock and µs."""

    def __init__(
        self, clock: Callable[[], float] = time.perf_counter, scale: float = 1000.0
    ) -> None:
        self.clock, self.scale = clock, scale
        self.current: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        fn = getattr(owner, attr)
        current, clock = self.current, self.clock

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                current[stage] += clock() - t

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def wrap_sources(self, label: Callable[[str], str]) -> None:
        """Time each candidate source (a frozen dataclass per source: the pool's registry is
        swapped for timed copies, put back by :meth:`restore`)."""
        import dataclasses

        from tastegraph.feed import pool as pool_mod
        from tastegraph.feed.sources import registry

        timed = []
        for src in registry.REGISTRY:
            holder = type("H", (), {"f": staticmethod(src.generate)})
            self.wrap(holder, "f", label(src.name))
            timed.append(dataclasses.replace(src, generate=holder.f))
        self._undo.append((pool_mod, "REGISTRY", pool_mod.REGISTRY))
        pool_mod.REGISTRY = tuple(timed)

    def end_request(self) -> None:
        for k, v in self.current.items():
            self.samples[k].append(v * self.scale)
        self.current.clear()

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


@contextmanager
def staged() -> Iterator[Stages]:

    from tastegraph.feed import pool as pool_mod
    from tastegraph.feed import reasons, related, serving
    from tastegraph.feed.ranker import LambdaRanker

    st = Stages()
    st.wrap(pool_mod, "interests", "interests")
    st.wrap(pool_mod, "seed_pins", "seed_pins")
    st.wrap(serving, "make_pool", "pool")
    st.wrap(serving, "eligible", "filters")
    st.wrap(serving, "features", "features")
    st.wrap(serving, "prerank", "prerank")
    st.wrap(LambdaRanker, "predict", "ranker_predict")
    st.wrap(serving, "lookalike_penalty", "hide_penalty")
    st.wrap(serving, "blend", "blend")
    st.wrap(reasons, "reason_for", "reasons")
    st.wrap(related, "pixie_walk", "related_walk")
    st.wrap(related, "rrf", "related_rrf")
    st.wrap(related.reasons, "related_reason", "related_reasons")
    st.wrap_sources(lambda name: f"source_{name}")
    try:
        yield st
    finally:
        st.restore()


def profile(engine: FeedEngine, n_users: int, n_pins: int, calls: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 7)
    now = NOW + 60.0
    users = rng.integers(0, n_users, calls).tolist()
    pins = rng.integers(1, n_pins + 1, calls).tolist()
    for u in users[:10]:
        engine.feed(int(u), 25, now)
    out: dict[str, Any] = {}
    with staged() as st:
        wall, cpu = [], []
        for u in users:
            t, c = time.perf_counter(), time.thread_time()
            engine.feed(int(u), 25, now)
            cpu.append((time.thread_time() - c) * 1000.0)
            wall.append((time.perf_counter() - t) * 1000.0)
            st.end_request()
        out["feed"] = {"wall": _pct(wall), "cpu": _pct(cpu), "stages": _stage_summary(st)}
        st.samples.clear()
        wall, cpu = [], []
        for pid in pins:
            t, c = time.perf_counter(), time.thread_time()
            engine.related(int(pid), 20, now)
            cpu.append((time.thread_time() - c) * 1000.0)
            wall.append((time.perf_counter() - t) * 1000.0)
            st.end_request()
        out["related"] = {"wall": _pct(wall), "cpu": _pct(cpu), "stages": _stage_summary(st)}
    return out


def _stage_summary(st: Stages) -> dict[str, dict[str, float]]:
    return {
        k: {"mean_ms": float(np.mean(v)), "p50_ms": float(np.median(v)), "p99_ms": _p99(v)}
        for k, v in sorted(st.samples.items(), key=lambda kv: -float(np.mean(kv[1])))
    }


def _p99(v: list[float]) -> float:
    return float(np.percentile(v, 99))


# -- threads --------------------------------------------------------------------------------


def threads(
    engine: FeedEngine,
    n_users: int,
    n_pins: int,
    n_threads: int,
    seconds: float,
    seed: int,
    serialize: str = "",
) -> dict[str, Any]:
    """``n_threads`` threads calling feed and related for ``seconds``; ``serialize``: one at a
    time, behind a plain lock (``"lock"``) or a first-come first-served gate (``"fair"``)."""
    lat: dict[str, list[float]] = {"feed": [], "related": []}
    gate: Any = None
    if serialize == "fair":
        from tastegraph.feed.gate import FairGate

        gate = FairGate(1)
    elif serialize:
        gate = threading.Lock()
    cpu: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    now = NOW + 60.0

    def worker(i: int) -> None:
        rng = np.random.default_rng(seed + 100 + i)
        mine: dict[str, list[float]] = {"feed": [], "related": []}
        c0 = time.thread_time()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            is_feed = rng.random() < FEED_SHARE
            if gate is not None:
                gate.acquire()
            try:
                if is_feed:
                    engine.feed(int(rng.integers(0, n_users)), 25, now)
                else:
                    engine.related(int(rng.integers(1, n_pins + 1)), 20, now)
            finally:
                if gate is not None:
                    gate.release()
            mine["feed" if is_feed else "related"].append((time.perf_counter() - t) * 1000.0)
        with lock:
            for k, v in mine.items():
                lat[k].extend(v)
            cpu.append(time.thread_time() - c0)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    p0 = time.process_time()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t0
    proc_cpu = time.process_time() - p0
    total = len(lat["feed"]) + len(lat["related"])
    return {
        "threads": n_threads,
        "serialized": serialize,
        "seconds": elapsed,
        "requests_per_s": total / elapsed,
        "process_cpu_per_request_ms": 1000.0 * proc_cpu / max(total, 1),
        "python_thread_cpu_s": float(sum(cpu)),
        "process_cpu_s": proc_cpu,
        "feed": _pct(lat["feed"]),
        "related": _pct(lat["related"]),
    }


def results_digest(engine: FeedEngine, n_users: int, n_pins: int, calls: int = 50) -> str:
    """A hash of what a fixed set of requests returns (items, order, reasons): same code, same."""
    import hashlib

    h = hashlib.sha256()
    now = NOW + 60.0
    rng = np.random.default_rng(12345)
    for u in rng.integers(0, n_users, calls).tolist():
        for it in engine.feed(int(u), 25, now, seed=int(u)):
            h.update(f"{it.pin}|{it.score:.6f}|{it.reason}|{it.source}|{it.because};".encode())
    for pid in rng.integers(1, n_pins + 1, calls).tolist():
        for it in engine.related(int(pid), 20, now, seed=int(pid)):
            h.update(f"{it.pin}|{it.score:.6f}|{it.reason}|{it.source};".encode())
    return h.hexdigest()[:16]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        t = time.perf_counter()
        engine, fit_s = build(args.pins, args.users, args.events, args.dim, args.seed, args.index)
        ready_s = time.perf_counter() - t
        engine.warm_up(NOW + 60.0)
        report: dict[str, Any] = {
            "config": {
                "pins": args.pins,
                "users": args.users,
                "events": args.events,
                "dim": args.dim,
                "calls": args.calls,
                "threads": args.threads,
                "seconds": args.seconds,
                "cpus": os.cpu_count(),
                "index": args.index,
                "ranker": engine.ranker_ is not None,
            },
            "ready_s": ready_s,
            "fit_s": fit_s,
            "results_digest": results_digest(engine, args.users, args.pins),
        }
        if args.calls:
            report["profile"] = profile(engine, args.users, args.pins, args.calls, args.seed)
        runs: list[Callable[[], dict[str, Any]]] = []
        if args.seconds > 0:
            plan = [(n, "") for n in sorted({1, args.threads})]
            if args.threads > 1:
                plan += [(args.threads, how) for how in args.serialize]
            for n, ser in plan:
                runs.append(
                    lambda n=n, ser=ser: threads(  # type: ignore[misc]
                        engine, args.users, args.pins, n, args.seconds, args.seed, ser
                    )
                )
        report["concurrency"] = [r() for r in runs]
    return report


def print_report(report: dict[str, Any]) -> None:
    cfg = report["config"]
    print(
        f"feed engine {cfg['pins']:,} pins x {cfg['users']:,} users x {cfg['events']:,} events, "
        f"ranker {cfg['ranker']}, {cfg['cpus']} CPUs; ready {report['ready_s']:.1f} s; "
        f"results digest {report['results_digest']}"
    )
    for ep, prof in report.get("profile", {}).items():
        w, c = prof["wall"], prof["cpu"]
        print(
            f"\n{ep}: wall p50 {w['p50_ms']:.2f} p99 {w['p99_ms']:.2f} ms; "
            f"CPU p50 {c['p50_ms']:.2f} p99 {c['p99_ms']:.2f} ms"
        )
        for stage, s in prof["stages"].items():
            print(
                f"  {stage:<20} mean {s['mean_ms']:6.2f}  p50 {s['p50_ms']:6.2f}  "
                f"p99 {s['p99_ms']:6.2f} ms"
            )
    for r in report["concurrency"]:
        f, rel = r["feed"], r["related"]
        how = f", one at a time ({r['serialized']})" if r.get("serialized") else ""
        print(
            f"\n{r['threads']} thread(s){how}: {r['requests_per_s']:.1f} req/s, "
            f"{r['process_cpu_per_request_ms']:.2f} ms CPU/request\n"
            f"  feed    n {f['n']:5d}  p50 {f['p50_ms']:6.2f}  p95 {f['p95_ms']:6.2f}  "
            f"p99 {f['p99_ms']:6.2f}  max {f['max_ms']:6.2f} ms\n"
            f"  related n {rel['n']:5d}  p50 {rel['p50_ms']:6.2f}  p95 {rel['p95_ms']:6.2f}  "
            f"p99 {rel['p99_ms']:6.2f}  max {rel['max_ms']:6.2f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pins", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--index",
        default="hnsw",
        choices=["hnsw", "exact"],
        help="exact: a digest that does not depend on the HNSW graph's build order",
    )
    ap.add_argument("--calls", type=int, default=200, help="profiled requests per endpoint")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="per concurrency run (0: none)")
    ap.add_argument(
        "--serialize",
        nargs="*",
        default=[],
        choices=["lock", "fair"],
        help="also run the threads one request at a time: behind a plain lock, a fair gate",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = ap.parse_args(argv)
    report = run(args)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
