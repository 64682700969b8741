"""Vector search benchmark: build time, memory per pin, latency of raw faiss vs ours, recall@10.

Synthetic clustered pins (unit vectors around ``n / 200`` centres, the same generator as
``tests/unit/index/test_index.py``) so that it runs anywhere without data. Single-query
latencies are measured one query at a time, interleaving the raw faiss call and our ``search()``
on the same index so that machine noise hits both alike; the ratio of medians is the wrapper's
overhead.

Usage::

    python bench/bench_search.py                          # 100k pins, d=256, hnsw and ivf
    python bench/bench_search.py --sizes 100000,1000000   # 1M uses float16 storage (auto)
    python bench/bench_search.py --sizes 1000000 --configs hnsw,hnsw-m32,ivf \\
        --cache /tmp/tg-bench-cache                       # side by side; builds reused
    python bench/bench_search.py --json > search.json

Reuse from Python (the encoder benchmark adds query-encoding cost on top)::

    from bench.bench_search import run
    report = run([100_000], dim=256)                     # one result per size and config
    report["results"][0]["ours_p50_us"]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tastegraph.index import IndexMeta, hnsw, ivf, open_index
from tastegraph.index.topk import block_rows, brute_force

F16_FROM = 500_000  # with dtype "auto", sizes from here on store float16 (memory target at 1M)


def clustered_centres(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n / 200`` unit cluster centres grouped under ``sqrt`` as many unit "topics".

    Two levels because flat random centres in 256-d are mutually orthogonal islands, which no
    real embedding looks like and which HNSW handles badly (recall@10 fell from 0.999 at 100k to
    0.91 at 1M with efSearch 64); under topics, neighbouring clusters of one topic have cosine
    ~0.5, a continuum closer to item -> style -> category in image features.
    """
    n_centres = max(8, n // 200)
    topics = rng.standard_normal((max(4, int(np.sqrt(n_centres))), dim), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    centres = topics[rng.integers(0, len(topics), n_centres)]
    centres += rng.standard_normal((n_centres, dim), dtype=np.float32) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return centres


def clustered_chunks(
    n: int, dim: int, seed: int = 0, chunk: int = 100_000, noise: float = 0.6
) -> Iterator[np.ndarray]:
    """Yield ``n`` clustered unit vectors in chunks, deterministic for a given ``seed``.

    Parameters
    ----------
    n, dim : int
        How many vectors, of which dimension.
    seed : int
        Centres come from ``seed``; chunk ``c`` draws its points from ``seed + 1 + c``.
    chunk : int
        Vectors per yielded array (bounds peak memory at 1M+).
    noise : float
        Norm of each point's offset from its unit centre: at 0.6 a query's 10th neighbour scores
        within ~0.02 of its first, a hard ranking for an approximate index.

    Examples
    --------
    >>> sum(len(c) for c in clustered_chunks(2500, 8, chunk=1000))
    2500
    """
    centres = clustered_centres(n, dim, np.random.default_rng(seed))
    for c, start in enumerate(range(0, n, chunk)):
        r = np.random.default_rng(seed + 1 + c)
        m = min(chunk, n - start)
        x = centres[r.integers(0, len(centres), m)]
        x += noise / np.sqrt(dim) * r.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def clustered_data(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(pins (n, dim), queries (n_queries, dim))`` from the same clusters."""
    out = np.empty((n + n_queries, dim), np.float32)
    pos = 0
    for x in clustered_chunks(n + n_queries, dim, seed):
        out[pos : pos + len(x)] = x
        pos += len(x)
    # The queries are the last rows: the same centres, points never indexed.
    return out[:n], out[n:]


def rss_bytes() -> int:
    """Resident memory of this process (Linux); 0 where /proc is unavailable.

    Memory freed by the previous config is first handed back to the system (``malloc_trim``),
    or the next config's allocations would reuse it and its delta would read low or negative.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(samples) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(
        len(set(f.tolist()) & set(t.tolist()) - {-1}) for f, t in zip(found, truth, strict=True)
    )
    return hits / max(1, int((truth >= 0).sum()))


@dataclass(frozen=True)
class Config:
    """One index configuration measured side by side: a backend kind and its parameters."""

    name: str
    kind: str
    params: dict[str, Any]

    @property
    def knob(self) -> str:
        """The search-time parameter swept for the recall curve."""
        return "nprobe" if self.kind == "ivf" else "ef_search"


# Named configurations for ``--configs``; parameters not given take the backend defaults.
CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("hnsw", "hnsw", {}),
        Config("hnsw-m32", "hnsw", {"m": 32}),
        Config("hnsw-ef256", "hnsw", {"ef_search": 256}),
        Config("ivf", "ivf", {}),
        Config("ivf-nprobe8", "ivf", {"nprobe": 8}),
        Config("ivf-norerank", "ivf", {"k_factor": 1}),
    )
}
SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "hnsw": {"ef_search": hnsw.DEFAULT_EF_SEARCH},
    "ivf": {"nprobe": ivf.DEFAULT_NPROBE, "k_factor": ivf.DEFAULT_K_FACTOR},
}
BUILD_KEYS = {"hnsw": ("m", "ef_construction"), "ivf": ("nlist", "train_min")}
SWEEPS = {"ef_search": (32, 64, 128, 256), "nprobe": (4, 8, 16, 32)}


def parse_configs(text: str) -> list[Config]:
    """``"hnsw,ivf,hnsw:m=24:ef_search=128"``: named configs, or ``kind:param=value:...``."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item in CONFIGS:
            out.append(CONFIGS[item])
            continue
        kind, *pairs = item.split(":")
        if kind not in ("hnsw", "ivf") or not all("=" in p for p in pairs):
            known = ", ".join(CONFIGS)
            raise SystemExit(f"unknown config {item!r}: use one of {known} or kind:param=value")
        params = {k: int(v) for k, v in (p.split("=", 1) for p in pairs)}
        out.append(Config(item, kind, params))
    return out


def build_or_load(
    config: Config,
    meta: IndexMeta,
    pins: np.ndarray,
    cache: Path | None,
    log: Callable[[str], None],
) -> tuple[Any, dict[str, float]]:
    """The index of ``config`` over ``pins``, built (and saved) or loaded from ``cache``.

    Returns the index and ``{"build_s", "save_s", "load_s", "disk", "rss_delta"}``; a cached
    index reports the build and save times recorded when it was built.
    """
    n = len(pins)
    ids = np.arange(n, dtype=np.int64)
    # Keyed by what shapes the built structure only: configs that differ in search-time
    # parameters (efSearch, nprobe, k_factor) share one build.
    build = "".join(
        f"-{p}{config.params[p]}" for p in BUILD_KEYS[config.kind] if p in config.params
    )
    key = f"{n}-{meta.dim}-{meta.dtype}-{config.kind}{build}"
    folder = (cache / key) if cache else None
    record = folder / "bench.json" if folder else None
    rss0 = rss_bytes()
    if record is not None and folder is not None and record.exists():
        t0 = time.perf_counter()
        # A shared build was saved with its own config's search parameters: reset them.
        params = SEARCH_DEFAULTS[config.kind] | config.params
        idx = open_index(config.kind, folder, meta, **params)
        times = json.loads(record.read_text())
        times["load_s"] = time.perf_counter() - t0
        times["rss_delta"] = rss_bytes() - rss0
        log(f"[{n:,} {config.name}] loaded from {folder} in {times['load_s']:.1f}s")
        return idx, times
    with tempfile.TemporaryDirectory(prefix="tg-bench-") as tmp:
        where = folder or Path(tmp) / "index"
        t0 = time.perf_counter()
        idx = open_index(config.kind, where, meta, **config.params)
        step = 100_000
        for start in range(0, n, step):
            idx.add(ids[start : start + step], pins[start : start + step])
        build_s = time.perf_counter() - t0
        rss_delta = rss_bytes() - rss0
        log(f"[{n:,} {config.name}] built in {build_s:.1f}s; saving")
        t0 = time.perf_counter()
        idx.save(where)
        save_s = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in where.iterdir() if p.name != "bench.json")
        t0 = time.perf_counter()
        reopened = open_index(config.kind, where, meta, **config.params)
        load_s = time.perf_counter() - t0
        assert len(reopened) == n
        del reopened
        times = {"build_s": build_s, "save_s": save_s, "disk": disk}
        if record is not None:
            record.write_text(json.dumps(times))
        times.update(load_s=load_s, rss_delta=rss_delta)
    return idx, times


def set_knob(config: Config, idx: Any, value: int) -> None:
    """Set the swept parameter on our index and on the raw faiss objects alike."""
    setattr(idx, config.knob, value)
    raw = idx.faiss_index
    if config.kind == "hnsw":
        raw.hnsw.efSearch = value
    elif getattr(idx, "trained", False):
        faiss.downcast_index(raw.base_index).nprobe = value
        raw.k_factor = float(idx.k_factor)


def bench_one(
    n: int,
    dim: int,
    *,
    dtype: str,
    k: int,
    n_queries: int,
    n_recall: int,
    configs: Sequence[Config],
    sweep: bool,
    seed: int,
    cache: Path | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Build (or load) one index per config over the same ``n`` pins; one result per config."""
    t0 = time.perf_counter()
    pins, queries = clustered_data(n, dim, max(n_queries, n_recall), seed)
    ids = np.arange(n, dtype=np.int64)
    log(f"[{n:,}] data generated in {time.perf_counter() - t0:.1f}s")
    rq = queries[:n_recall]
    step = block_rows(len(rq), dim)
    blocks = ((pins[s : s + step], ids[s : s + step]) for s in range(0, n, step))
    t0 = time.perf_counter()
    truth = brute_force(rq, k, blocks)[1]
    exact_ms = (time.perf_counter() - t0) * 1e3 / len(rq)
    rng = np.random.default_rng(seed + 7)
    allow_small = np.sort(rng.choice(ids, max(1, n // 100), replace=False))  # 1%: exact path
    allow_large = np.sort(rng.choice(ids, max(1, n // 10), replace=False))  # 10%: ANN path
    truth_small = brute_force(rq, k, [(pins[allow_small], allow_small)])[1]
    truth_large = brute_force(rq, k, [(pins[allow_large], allow_large)])[1]
    meta = IndexMeta("image", "synthetic@1", dim, digest="bench", dtype=dtype)
    out = []
    for config in configs:
        log(f"[{n:,} {config.name}] {config.kind} index, {dtype}")
        idx, times = build_or_load(config, meta, pins, cache, log)
        out.append(
            measure(
                idx,
                config,
                queries[:n_queries],
                rq,
                k,
                truth,
                allow=((allow_small, truth_small), (allow_large, truth_large)),
                sweep=sweep,
                log=log,
            )
            | {
                "n": n,
                "dim": dim,
                "dtype": dtype,
                "k": k,
                "config": config.name,
                "kind": config.kind,
                **idx.params,
                "build_s": round(times["build_s"], 2),
                "build_vps": round(n / times["build_s"]),
                "save_s": round(times["save_s"], 2),
                "load_s": round(times["load_s"], 2),
                "disk_bytes_per_pin": round(times["disk"] / n, 1),
                "rss_bytes_per_pin": round(times["rss_delta"] / n, 1),
                "exact_ms_per_query": round(exact_ms, 2),
            }
        )
        del idx
    return out


def measure(
    idx: Any,
    config: Config,
    q: np.ndarray,
    rq: np.ndarray,
    k: int,
    truth: np.ndarray,
    *,
    allow: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    sweep: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Latency (raw faiss vs ours, interleaved), filtered latency and recall of one index."""
    raw_index = idx.faiss_index
    # Single queries on one OpenMP thread, raw and ours alike: that is what search() uses for
    # one query, and a raw IVF call left on the default team spread one query over both busy
    # cores and took 10 ms instead of 0.1-0.3 ms.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return measure_single(idx, raw_index, config, q, rq, k, truth, allow, sweep, log, threads)
    finally:
        faiss.omp_set_num_threads(threads)


def measure_single(
    idx: Any,
    raw_index: Any,
    config: Config,
    q: np.ndarray,
    rq: np.ndarray,
    k: int,
    truth: np.ndarray,
    allow: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    sweep: bool,
    log: Callable[[str], None],
    threads: int,
) -> dict[str, Any]:
    default = getattr(idx, config.knob)
    set_knob(config, idx, default)
    one_id = np.array([0], np.int64)
    (allow_small, truth_small), (allow_large, truth_large) = allow
    for i in range(min(50, len(q))):  # warm caches and the allocator before timing
        raw_index.search(q[i : i + 1], k)
        idx.search(q[i : i + 1], k)
    # Interleaved, and the order rotates per query: whichever call runs first on a query pays
    # the cache misses of walking its part of the index, the others find it warm.
    calls: list[Callable[[np.ndarray], object]] = [
        lambda qi: raw_index.search(qi, k),
        lambda qi: idx.search(qi, k),
        lambda qi: idx.search(qi, k, exclude=one_id),
    ]
    times: list[list[float]] = [[], [], []]
    log(f"  [{config.name}] timing {len(q)} single queries")
    for i in range(len(q)):
        qi = q[i : i + 1]
        for j in range(3):
            c = (i + j) % 3
            t0 = time.perf_counter()
            calls[c](qi)
            times[c].append(time.perf_counter() - t0)
    raw_t, ours_t, excl_t = times
    filt_small_t: list[float] = []
    filt_large_t: list[float] = []
    # Also this thread's CPU time: on a loaded host a millisecond-long call is often preempted
    # mid-way, and its wall time then measures the scheduler rather than the search.
    filt_small_cpu: list[float] = []
    filt_large_cpu: list[float] = []
    for i in range(min(200, len(q))):
        qi = q[i : i + 1]
        c0, t0 = time.thread_time(), time.perf_counter()
        idx.search(qi, k, allow=allow_small)
        c1, t1 = time.thread_time(), time.perf_counter()
        idx.search(qi, k, allow=allow_large)
        c2, t2 = time.thread_time(), time.perf_counter()
        filt_small_t.append(t1 - t0)
        filt_large_t.append(t2 - t1)
        filt_small_cpu.append(c1 - c0)
        filt_large_cpu.append(c2 - c1)

    faiss.omp_set_num_threads(threads)  # a batch uses the team
    t0 = time.perf_counter()
    idx.search(q, k)
    batch_qps = len(q) / (time.perf_counter() - t0)
    faiss.omp_set_num_threads(1)

    log(f"  [{config.name}] recall on {len(rq)} queries against brute force")
    found = idx.search(rq, k)[1]
    # The bench's pin ids equal faiss's labels, so raw results need no mapping: the wrapper must
    # match raw faiss exactly (a lower figure would be a bug of ours, not of the index).
    raw_found = raw_index.search(rq, k)[1]
    found_small = idx.search(rq, k, allow=allow_small)[1]
    found_large = idx.search(rq, k, allow=allow_large)[1]

    curve = []
    for value in SWEEPS[config.knob] if sweep else ():
        set_knob(config, idx, value)
        pair: list[list[float]] = [[], []]
        for i in range(min(300, len(q))):
            qi = q[i : i + 1]
            for j in range(2):
                c = (i + j) % 2
                t0 = time.perf_counter()
                if c == 0:
                    raw_index.search(qi, k)
                else:
                    idx.search(qi, k)
                pair[c].append(time.perf_counter() - t0)
        curve.append(
            {
                config.knob: value,
                "recall_at_k": round(recall_at(idx.search(rq, k)[1], truth), 4),
                "raw_p50_us": round(percentiles(pair[0])[0], 1),
                "ours_p50_us": round(percentiles(pair[1])[0], 1),
            }
        )
    set_knob(config, idx, default)

    raw50, raw99 = percentiles(raw_t)
    ours50, ours99 = percentiles(ours_t)
    return {
        "raw_p50_us": round(raw50, 1),
        "raw_p99_us": round(raw99, 1),
        "ours_p50_us": round(ours50, 1),
        "ours_p99_us": round(ours99, 1),
        "ratio_p50": round(ours50 / raw50, 3),
        "exclude1_p50_us": round(percentiles(excl_t)[0], 1),
        "allow1pct_p50_us": round(percentiles(filt_small_t)[0], 1),
        "allow10pct_p50_us": round(percentiles(filt_large_t)[0], 1),
        "allow1pct_cpu_p50_us": round(percentiles(filt_small_cpu)[0], 1),
        "allow10pct_cpu_p50_us": round(percentiles(filt_large_cpu)[0], 1),
        "batch_qps": round(batch_qps),
        "recall_at_k": round(recall_at(found, truth), 4),
        "raw_recall_at_k": round(recall_at(raw_found, truth), 4),
        "recall_allow1pct": round(recall_at(found_small, truth_small), 4),
        "recall_allow10pct": round(recall_at(found_large, truth_large), 4),
        "sweep": curve,
    }


def run(
    sizes: Sequence[int],
    dim: int = 256,
    *,
    dtype: str = "auto",
    k: int = 10,
    n_queries: int = 1000,
    n_recall: int = 200,
    configs: Sequence[Config] | None = None,
    sweep: bool = True,
    seed: int = 0,
    cache: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmark each index configuration at each size; returns a JSON-ready dict.

    Parameters
    ----------
    sizes : sequence of int
        Numbers of pins; one data set per size, one index per size and config.
    dim : int
        Vector dimension.
    dtype : str
        ``"f32"``, ``"f16"`` or ``"auto"`` (float16 from 500k pins on).
    k, n_queries, n_recall : int
        Results per query; single queries timed; queries checked against brute force.
    configs : sequence of Config
        What to measure side by side (default: the default HNSW and IVF backends).
    sweep : bool
        Measure recall and p50 latency over ``SWEEPS`` of the config's search knob.
    seed : int
        Data seed.
    cache : Path, optional
        Folder of built indexes, reused across runs (keyed by size, dim, dtype and config).
    log : callable, optional
        Progress messages (default: stderr).

    Returns
    -------
    dict
        ``{"env": {...}, "results": [{...}, ...]}``; each result has ``config``, ``build_s``,
        ``disk_bytes_per_pin``, ``rss_bytes_per_pin``, ``raw_p50_us``/``raw_p99_us`` (faiss
        alone), ``ours_p50_us``/``ours_p99_us`` (``search()``), ``ratio_p50``,
        ``exclude1_p50_us``, ``allow1pct_p50_us``, ``allow10pct_p50_us``, ``batch_qps``,
        ``recall_at_k``, filtered recalls and ``sweep`` (one entry per swept knob value).
    """

    def stderr(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    say = log or stderr
    chosen = list(configs) if configs else [CONFIGS["hnsw"], CONFIGS["ivf"]]
    env = {
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "omp_threads": faiss.omp_get_max_threads(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
    }
    results = []
    for n in sizes:
        dt = dtype if dtype != "auto" else ("f16" if n >= F16_FROM else "f32")
        results.extend(
            bench_one(
                n,
                dim,
                dtype=dt,
                k=k,
                n_queries=n_queries,
                n_recall=n_recall,
                configs=chosen,
                sweep=sweep,
                seed=seed,
                cache=cache,
                log=say,
            )
        )
    env["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"env": env, "results": results}


def print_table(report: dict[str, Any]) -> None:
    """One column per size and config, one row per measure."""
    from rich.console import Console
    from rich.table import Table

    results = report["results"]

    def params(r: dict[str, Any]) -> str:
        if r["kind"] == "ivf":
            return f"nlist {r['trained_nlist']} / nprobe {r['nprobe']} / x{r['k_factor']}"
        return f"M {r['m']} / efC {r['ef_construction']} / efS {r['ef_search']}"

    def curve(r: dict[str, Any]) -> str:
        knob = "nprobe" if r["kind"] == "ivf" else "ef_search"
        return ", ".join(
            f"{e[knob]}: {e['recall_at_k']:.3f} @ {e['ours_p50_us']:.0f}" for e in r["sweep"]
        )

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("dtype / parameters", lambda r: f"{r['dtype']} / {params(r)}"),
        ("build", lambda r: f"{r['build_s']:.1f} s ({r['build_vps']:,}/s)"),
        ("save / load", lambda r: f"{r['save_s']:.2f} s / {r['load_s']:.2f} s"),
        ("bytes per pin: disk", lambda r: f"{r['disk_bytes_per_pin']:.0f}"),
        ("bytes per pin: RSS delta", lambda r: f"{r['rss_bytes_per_pin']:.0f}"),
        ("raw faiss p50 / p99", lambda r: f"{r['raw_p50_us']:.0f} / {r['raw_p99_us']:.0f} µs"),
        ("search() p50 / p99", lambda r: f"{r['ours_p50_us']:.0f} / {r['ours_p99_us']:.0f} µs"),
        ("search() / raw, p50", lambda r: f"{r['ratio_p50']:.2f}x"),
        ("exclude 1 id, p50", lambda r: f"{r['exclude1_p50_us']:.0f} µs"),
        (
            "allow 1%, p50 wall / CPU",
            lambda r: f"{r['allow1pct_p50_us']:.0f} / {r['allow1pct_cpu_p50_us']:.0f} µs",
        ),
        (
            "allow 10%, p50 wall / CPU",
            lambda r: f"{r['allow10pct_p50_us']:.0f} / {r['allow10pct_cpu_p50_us']:.0f} µs",
        ),
        ("batch of queries", lambda r: f"{r['batch_qps']:,} QPS"),
        ("brute force", lambda r: f"{r['exact_ms_per_query']:.2f} ms/query"),
        ("recall@k: ours / raw", lambda r: f"{r['recall_at_k']:.3f} / {r['raw_recall_at_k']:.3f}"),
        (
            "recall@k allow 1% / 10%",
            lambda r: f"{r['recall_allow1pct']:.3f} / {r['recall_allow10pct']:.3f}",
        ),
        ("sweep: recall @ p50 µs", curve),
    ]
    table = Table(title=f"tastegraph vector search, d={results[0]['dim']}, k={results[0]['k']}")
    table.add_column("")
    for r in results:
        table.add_column(f"{r['n']:,} {r['config']}", justify="right")
    for name, cell in rows:
        table.add_row(name, *(cell(r) for r in results))
    console = Console()
    console.print(table)
    env = report["env"]
    console.print(
        f"faiss {env['faiss']}, {env['cpus']} CPUs, OpenMP threads {env['omp_threads']}, "
        f"load average {env['load_avg_start'][0]} -> {env['load_avg_end'][0]} "
        "(timings on a shared machine are noisy: compare ratios from the same run); allow sets "
        "up to max(4096, 2% of pins) are scored exactly, larger ones through the index"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100000", help="comma-separated pin counts")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--dtype", choices=["auto", "f32", "f16"], default="auto")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000, help="single queries timed")
    ap.add_argument("--recall-queries", type=int, default=200)
    ap.add_argument(
        "--configs",
        default="hnsw,ivf",
        help=f"comma-separated configs measured side by side: {', '.join(CONFIGS)}, "
        "or kind:param=value[:param=value] (e.g. hnsw:m=24:ef_search=128)",
    )
    ap.add_argument("--no-sweep", action="store_true", help="skip the recall/latency curves")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder of built indexes to reuse across runs (e.g. /tmp/tg-bench-cache)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    report = run(
        sizes,
        args.dim,
        dtype=args.dtype,
        k=args.k,
        n_queries=args.queries,
        n_recall=args.recall_queries,
        configs=parse_configs(args.configs),
        sweep=not args.no_sweep,
        seed=args.seed,
        cache=args.cache,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
