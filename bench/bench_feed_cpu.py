"""CPU per served feed / related request, by stage, in the served configuration.

Opens a data dir that ``bench/bench_feed_http.py --data DIR`` built (and ``tastegraph train``
trained) as ``tastegraph serve`` does (``served_api``: its App, the feed engine built and warmed,
BLAS on one thread, ``gc.freeze()``), then sends ``--calls`` home-feed (``n=25``) and
related-pins (``n=20``) requests through the API in process (Starlette's ``TestClient``: the
routing, auth, the route code and the serialisation that uvicorn would run, without the socket
and HTTP parsing). Every stage is wrapped and timed in CPU seconds of the calling thread
(``time.thread_time``); the whole request is the process's CPU (``time.process_time``) over the
requests. Stages nest: the engine's stages are inside ``engine``; "rest" is what no stage covers
(TestClient, Starlette/FastAPI, auth, cursor).

``--digest`` hashes what a fixed set of feed and related requests at a fixed time answer (pins,
order, full-precision scores, reasons): two builds of the code serve the same feeds when their
digests agree on the same data dir.

Usage::

    python bench/bench_feed_cpu.py --data /tmp/tg-feed-100k               # 300 calls each
    python bench/bench_feed_cpu.py --data /tmp/tg-feed-100k --calls 0 --digest
    python bench/bench_feed_cpu.py --data /tmp/tg-feed-100k --json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feed_threads import Stages


@contextmanager
def staged(tg: Any) -> Iterator[Stages]:

    from tastegraph.api import serialize
    from tastegraph.api.routes import common, feed
    from tastegraph.feed import pool as pool_mod
    from tastegraph.feed import reasons, related, serving
    from tastegraph.feed.ranker import LambdaRanker

    st = Stages(clock=time.thread_time, scale=1e6)  # CPU of the calling thread, in µs
    st.wrap(tg.catchup, "if_behind", "catch-up check")
    engine = tg.feeds.engine
    st.wrap(tg.feeds, "feed", "feed service (cursor, eligibility, engine)")
    st.wrap(tg.feeds, "related", "related service (eligibility, engine)")
    st.wrap(engine, "feed", "engine")
    st.wrap(engine, "related", "engine")
    st.wrap(pool_mod, "interests", "engine: interests")
    st.wrap(serving, "make_pool", "engine: pool")
    st.wrap(serving, "eligible", "engine: filters")
    st.wrap(serving, "features", "engine: features")
    st.wrap(serving, "prerank", "engine: prerank")
    st.wrap(LambdaRanker, "predict", "engine: ranker predict")
    st.wrap(serving, "lookalike_penalty", "engine: hide penalty")
    st.wrap(serving, "blend", "engine: blend")
    st.wrap(reasons, "reason_for", "engine: reasons")
    st.wrap(related, "pixie_walk", "engine: related walk")
    st.wrap(related, "rrf", "engine: related rrf")
    st.wrap(tg.store, "pin_records", "pin records (store)")
    st.wrap(serialize, "pins_json", "pins to JSON")  # includes pin records
    st.wrap(feed, "pins_json", "pins to JSON")
    st.wrap(common, "json_response", "json encode")
    st.wrap(feed, "json_response", "json encode")
    st.wrap_sources(lambda name: f"engine: source {name}")
    try:
        yield st
    finally:
        st.restore()


def open_served(data: Path) -> tuple[Any, Any]:
    """The API and App of one serving process over ``data``, warmed as the server warms it."""
    from threadpoolctl import threadpool_limits

    from tastegraph.server import served_api
    from tastegraph.settings import Settings

    api = served_api(Settings(data_dir=data))
    tg = api.state.tg
    tg.indexes.sync(save=False)
    _ = tg.feeds.engine
    threadpool_limits(1, "blas")
    gc.collect()
    gc.freeze()
    return api, tg


def ids_of(data: Path) -> tuple[list[int], list[int]]:
    blob = json.loads((data / "bench_feed_http.json").read_text())
    return blob["user_ids"], blob["pin_ids"]


def profile(client: Any, tg: Any, users: list[int], pins: list[int], calls: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    us = rng.choice(users, calls).tolist()
    ps = rng.choice(pins, calls).tolist()
    for u, p in zip(us[:20], ps[:20], strict=True):  # warm every path once
        client.get(f"/users/{u}/feed?n=25")
        client.get(f"/pins/{p}/related?n=20")
    out: dict[str, Any] = {}
    with staged(tg) as st:
        for ep, urls in (
            ("feed", [f"/users/{u}/feed?n=25" for u in us]),
            ("related", [f"/pins/{p}/related?n=20" for p in ps]),
        ):
            st.samples.clear()
            whole = []
            c0 = time.process_time()
            for url in urls:
                c = time.process_time()
                r = client.get(url)
                whole.append((time.process_time() - c) * 1e6)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
                st.end_request()
            total_us = (time.process_time() - c0) * 1e6 / len(urls)
            stages = {
                k: round(float(np.sum(v)) / len(urls), 1)
                for k, v in sorted(st.samples.items(), key=lambda kv: -sum(kv[1]))
            }
            top = sum(
                v
                for k, v in stages.items()
                if not k.startswith("engine") and k != "pin records (store)"
            )
            stages["rest (TestClient, routing, auth)"] = round(total_us - top, 1)
            out[ep] = {
                "process_cpu_us_mean": round(total_us, 1),
                "process_cpu_us_p50": round(float(np.median(whole)), 1),
                "stages_us_mean": stages,
            }
    return out


def digest(tg: Any, data: Path, users: list[int], pins: list[int], calls: int = 100) -> str:
    """Hash of the items (pin, full-precision score, reason, source, because) that fixed feed
    and related requests get at a fixed time (an hour after the installation was built)."""
    h = hashlib.sha256()
    now = (data / "bench_feed_http.json").stat().st_mtime + 3600.0
    rng = np.random.default_rng(12345)
    for u in rng.choice(users, calls).tolist():
        items, _ = tg.feeds.feed(int(u), 25, now=now)
        for it in items:
            h.update(f"{it.pin}|{it.score!r}|{it.reason}|{it.source}|{it.because};".encode())
    for p in rng.choice(pins, calls).tolist():
        for it in tg.feeds.related(int(p), 20, now=now):
            h.update(f"{it.pin}|{it.score!r}|{it.reason}|{it.source}|{it.because};".encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="a data dir bench_feed_http.py --data built")
    ap.add_argument("--calls", type=int, default=300, help="profiled requests per endpoint")
    ap.add_argument("--digest", action="store_true", help="also hash fixed requests' answers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "bench_feed_http.json").is_file():
        ap.error(f"{data} holds no bench_feed_http.py installation (build one with --data)")
    from fastapi.testclient import TestClient

    t0 = time.perf_counter()
    api, tg = open_served(data)
    users, pins = ids_of(data)
    report: dict[str, Any] = {"data": str(data), "ready_s": round(time.perf_counter() - t0, 1)}
    report["model"] = tg.feeds.version
    with TestClient(api) as client:
        if args.digest:
            report["digest"] = digest(tg, data, users, pins)
        if args.calls:
            report["profile"] = profile(client, tg, users, pins, args.calls)
            if hasattr(tg, "records"):  # a build of the code that has the cache
                report["pin_cache"] = tg.records.stats()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"{data}: model {report['model']}, ready {report['ready_s']} s")
    if "digest" in report:
        print(f"digest {report['digest']}")
    if "pin_cache" in report:
        print(f"pin cache: {report['pin_cache']}")
    for ep, prof in report.get("profile", {}).items():
        print(
            f"\n{ep}: process CPU {prof['process_cpu_us_mean']:.0f} us/request "
            f"(p50 {prof['process_cpu_us_p50']:.0f})"
        )
        for k, v in prof["stages_us_mean"].items():
            print(f"  {k:<36} {v:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
