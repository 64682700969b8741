"""HNSW quality against the exact oracle, crash safety of saves, and the shared index machinery."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import tastegraph.index as index_pkg
from tastegraph.errors import IndexMismatch
from tastegraph.index import (
    IndexMeta,
    VectorIndex,
    base,
    exact,
    hnsw,
    open_index,
    persistence,
    topk,
)
from tastegraph.index.arrays import IdMap
from tastegraph.index.exact import ExactIndex
from tastegraph.index.flatcodes import codes_view, decode
from tastegraph.index.hnsw import HNSWIndex
from tastegraph.index.ivf import IVFIndex
from tastegraph.index.topk import brute_force, topk_rows

REPO = Path(__file__).resolve().parents[3]
DIM = 256
N = 20_000
NQ = 200


def clustered(n: int, dim: int, seed: int = 0, noise: float = 0.6) -> np.ndarray:
    """Unit vectors around ``n / 200`` centres, themselves grouped under a few "topics".

    ``noise`` is the norm of each point's offset from its unit centre; at 0.6 a query's 10th
    neighbour scores within ~0.02 of its first, which makes the ranking hard for HNSW. The topic
    level links clusters the way categories link styles in real features (flat random centres
    are orthogonal islands). Same generator as ``bench/bench_search.py``.
    """
    rng = np.random.default_rng(seed)
    n_centres = max(8, n // 200)
    topics = rng.standard_normal((max(4, int(np.sqrt(n_centres))), dim), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    centres = topics[rng.integers(0, len(topics), n_centres)]
    centres += rng.standard_normal((n_centres, dim), dtype=np.float32) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, n_centres, n)]
    x += noise / np.sqrt(dim) * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist()))
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.sum(hits) / max(1, int((truth >= 0).sum())))


def meta(dim: int = DIM, dtype: str = "f32") -> IndexMeta:
    return IndexMeta("image", "synthetic@1", dim, digest="t", dtype=dtype)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, ExactIndex]:
    allv = clustered(N + NQ, DIM)
    ids = np.arange(N, dtype=np.int64) * 3 + 100  # not the faiss labels, on purpose
    oracle = ExactIndex(meta())
    oracle.add(ids, allv[:N])
    return ids, allv[:N], allv[N:], oracle


@pytest.fixture(scope="module", params=["f32", "f16"])
def built(request: pytest.FixtureRequest, data: Any) -> HNSWIndex:
    ids, x, _, _ = data
    idx = HNSWIndex(meta(dtype=request.param))
    idx.add(ids, x)
    return idx


# -- recall against the oracle ----------------------------------------------------------------


def test_hnsw_recall_clustered(built: HNSWIndex, data: Any) -> None:
    _, _, q, oracle = data
    truth = oracle.search(q, 10)[1]
    found = built.search(q, 10)[1]
    assert recall(found, truth) >= 0.95
    # Batched and one-by-one queries agree (threads differ, results must not).
    one = np.concatenate([built.search(q[i], 10)[1] for i in range(20)])
    assert np.array_equal(one, found[:20])


def test_filtered_recall_one_percent_allow(built: HNSWIndex, data: Any) -> None:
    ids, _, q, oracle = data
    allow = np.random.default_rng(1).choice(ids, N // 100, replace=False)
    truth = oracle.search(q, 10, allow=allow)[1]
    found = built.search(q, 10, allow=allow)[1]
    assert set(found.ravel().tolist()) <= set(allow.tolist())
    assert (found >= 0).all()
    assert recall(found, truth) >= 0.99


def test_filtered_recall_through_the_graph(built: HNSWIndex, data: Any) -> None:
    """With the exact fallback off, a selective filter still works through a wider beam."""
    ids, _, q, oracle = data
    allow = np.random.default_rng(2).choice(ids, N // 20, replace=False)  # 5%
    saved = built.exact_max, built.exact_fraction
    built.exact_max, built.exact_fraction = 0, 0.0
    try:
        found = built.search(q[:100], 10, allow=allow)[1]
    finally:
        built.exact_max, built.exact_fraction = saved
    truth = oracle.search(q[:100], 10, allow=allow)[1]
    assert set(found.ravel().tolist()) <= set(allow.tolist())
    assert recall(found, truth) >= 0.9


def test_exclude_keeps_recall(built: HNSWIndex, data: Any) -> None:
    ids, x, _, oracle = data
    q = x[:50]
    truth = oracle.search(q, 10, exclude=ids[:50])[1]
    found = built.search(q, 10, exclude=ids[:50])[1]
    assert not set(found.ravel().tolist()) & set(ids[:50].tolist())
    assert recall(found, truth) >= 0.95


def real_features() -> np.ndarray:
    """Real image features from ``TASTEGRAPH_TEST_FEATURES`` (an (N, d) .npy), or skip."""
    path = os.environ.get("TASTEGRAPH_TEST_FEATURES")
    candidates = [Path(path)] if path else sorted((REPO / ".cache" / "features").glob("*.npy"))
    for p in candidates:
        if p.is_file():
            x = np.load(p, allow_pickle=False)
            if x.ndim == 2 and len(x) >= 1000:
                return np.asarray(x, np.float32)
    pytest.skip("no real feature file: set TASTEGRAPH_TEST_FEATURES to an (N, d) .npy")


@pytest.mark.data
def test_hnsw_recall_real_features() -> None:
    x = real_features()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(0)
    qi = rng.choice(len(x), min(200, len(x) // 10), replace=False)
    rest = np.setdiff1d(np.arange(len(x)), qi)
    ids = rest.astype(np.int64)
    m = meta(dim=x.shape[1])
    oracle = ExactIndex(m)
    oracle.add(ids, x[rest])
    for dtype in ("f32", "f16"):
        # The IVF backend trained on them (a catalog this small is searched exactly by default).
        for idx in (
            HNSWIndex(meta(dim=x.shape[1], dtype=dtype)),
            IVFIndex(meta(dim=x.shape[1], dtype=dtype), train_min=1000),
        ):
            idx.add(ids, x[rest])
            assert recall(idx.search(x[qi], 10)[1], oracle.search(x[qi], 10)[1]) >= 0.95


# -- tombstones, rebuilds, threads -------------------------------------------------------------


def test_tombstones_then_rebuild() -> None:
    allv = clustered(3100, 64, seed=3)
    x, q = allv[:3000], allv[3000:]
    idx = HNSWIndex(meta(dim=64), rebuild_fraction=0.2)
    ids = np.arange(3000, dtype=np.int64)
    idx.add(ids, x)
    idx.remove(ids[:300])
    idx.add(ids[300:400], x[300:400][::-1])  # replacements are tombstones too
    assert idx.tombstones == 400 and len(idx) == 2700
    found = idx.search(x[:400], 10)[1]
    assert not set(found.ravel().tolist()) & set(range(300))
    assert (found >= 0).all()
    idx.remove(ids[400:700])  # 700 / 3100 > 20%: rebuilt in this call
    assert idx.tombstones == 0 and len(idx) == 2400
    assert idx.faiss_index.ntotal == 2400
    oracle = ExactIndex(meta(dim=64))
    oracle.add(ids[700:], x[700:])
    oracle.add(ids[300:400], x[300:400][::-1])
    assert recall(idx.search(q, 10)[1], oracle.search(q, 10)[1]) >= 0.95
    assert np.allclose(idx.get(ids[300:400]), x[300:400][::-1], atol=1e-6)


def test_compact_keeps_content(tmp_path: Path) -> None:
    x = clustered(500, 32, seed=5)
    idx = HNSWIndex(meta(dim=32), rebuild_fraction=1.0)
    idx.add(np.arange(500), x)
    idx.remove(np.arange(0, 500, 2))
    assert idx.tombstones == 250
    idx.save(tmp_path / "i")
    loaded = open_index("hnsw", tmp_path / "i", meta(dim=32))
    assert isinstance(loaded, HNSWIndex) and loaded.tombstones == 250
    assert not set(loaded.search(x, 5)[1].ravel().tolist()) & set(range(0, 500, 2))
    idx.compact()
    assert idx.tombstones == 0 and sorted(idx.ids().tolist()) == list(range(1, 500, 2))
    # Approximate: a node or two of a small graph can be unreachable, hence not == 1.0.
    assert (idx.search(x[1::2], 1)[1][:, 0] == np.arange(1, 500, 2)).mean() >= 0.99


def test_build_params_are_recorded(tmp_path: Path) -> None:
    idx = open_index("hnsw", tmp_path, meta(dim=8), m=8, ef_construction=20, ef_search=33)
    idx.add(np.arange(10), clustered(10, 8))
    idx.save()
    again = open_index("hnsw", tmp_path, meta(dim=8))
    assert isinstance(again, HNSWIndex)
    assert (again.m, again.ef_construction, again.ef_search) == (8, 20, 33)
    tuned = open_index("hnsw", tmp_path, meta(dim=8), ef_search=90)
    assert isinstance(tuned, HNSWIndex) and tuned.ef_search == 90
    with pytest.raises(IndexMismatch):
        open_index("hnsw", tmp_path, meta(dim=8), m=16)


def test_single_query_uses_one_thread_and_restores() -> None:
    idx = HNSWIndex(meta(dim=16), threads=2)
    idx.add(np.arange(100), clustered(100, 16))
    before = faiss.omp_get_max_threads()
    seen: list[int] = []
    real = idx.faiss_index.search

    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(faiss.omp_get_max_threads())
        return real(*args, **kw)

    idx._index.search = spy
    idx.search(clustered(1, 16), 3)
    idx.search(clustered(64, 16), 3)
    assert seen == [1, 2]
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_concurrent_search_while_adding(kind: str, tmp_path: Path) -> None:
    idx = open_index(kind, tmp_path, meta(dim=32))
    x = clustered(4000, 32, seed=6)
    idx.add(np.arange(1000), x[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                _, found = idx.search(x[:4], 5, exclude=np.array([1]))
                assert (found >= 0).all()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(1000, 4000, 250):
        idx.add(np.arange(start, start + 250), x[start : start + 250])
        idx.remove(np.arange(start - 100, start - 50))
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(idx) == 4000 - 12 * 50


# -- crash safety of save ----------------------------------------------------------------------


def _filled(kind: str, folder: Path, n: int, seed: int) -> VectorIndex:
    idx = open_index(kind, folder, meta(dim=16))
    idx.add(np.arange(n), clustered(n, 16, seed=seed))
    idx.watermark = n
    return idx


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_failed_save_leaves_previous_version(
    kind: str, fail_at: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the 1st data file, the 2nd, or at the manifest: the old version loads."""
    old = _filled(kind, tmp_path, 50, seed=1)
    old.save()
    idx = _filled(kind, tmp_path, 80, seed=2)
    calls = {"n": 0}
    real = persistence.write_file

    def flaky(final: Path, write: Callable[[Path], None]) -> None:
        calls["n"] += 1
        if calls["n"] == fail_at:
            # Write the temporary file, then die before renaming it: what a crash leaves.
            write(final.with_name(f".tmp-crash-{final.name}"))
            raise OSError("disk full")
        real(final, write)

    monkeypatch.setattr(persistence, "write_file", flaky)
    with pytest.raises(OSError):
        idx.save()
    monkeypatch.undo()
    loaded = open_index(kind, tmp_path, meta(dim=16))
    assert len(loaded) == 50 and loaded.watermark == 50
    # The next good save commits and sweeps the debris of the failed one.
    idx.save()
    assert len(open_index(kind, tmp_path, meta(dim=16))) == 80
    assert len(list(tmp_path.iterdir())) == 3


CRASH_SCRIPT = """
import os, sys
import numpy as np
from pathlib import Path
from tastegraph.index import IndexMeta, open_index, persistence
folder, kind = Path(sys.argv[1]), sys.argv[2]
idx = open_index(kind, folder, IndexMeta("image", "synthetic@1", 16, digest="t"))
idx.add(np.arange(100, 130), np.random.default_rng(0).standard_normal((30, 16)))
idx.watermark = 999
def die(folder, text):
    os._exit(17)   # the process is killed between the data files and the manifest
persistence.write_manifest = die
idx.save()
"""


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_killed_process_mid_save(kind: str, tmp_path: Path) -> None:
    _filled(kind, tmp_path, 50, seed=1).save()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path), kind], env=env, check=False
    )
    assert proc.returncode == 17
    assert len(list(tmp_path.iterdir())) > 3  # the new generation's orphaned files
    loaded = open_index(kind, tmp_path, meta(dim=16))
    assert len(loaded) == 50 and loaded.watermark == 50 and 100 not in loaded


def test_reader_retries_when_a_save_swaps_files(tmp_path: Path) -> None:
    idx = _filled("exact", tmp_path, 20, seed=1)
    idx.save()
    first = persistence.read_manifest(tmp_path)
    idx.add(np.array([99]), clustered(1, 16))
    idx.save()  # deletes the files the first manifest names
    assert first is not None
    reads = iter([first, persistence.read_manifest(tmp_path)])
    real_read = persistence.read_manifest

    def stale_then_fresh(folder: Path) -> Any:
        return next(reads, None) or real_read(folder)

    mp = pytest.MonkeyPatch()
    mp.setattr(persistence, "read_manifest", stale_then_fresh)
    try:
        got = exact.ExactIndex.open(tmp_path, meta(dim=16))
    finally:
        mp.undo()
    assert len(got) == 21


# -- shared machinery ------------------------------------------------------------------------


def test_id_map_dense_and_sparse() -> None:
    m = IdMap()
    m.set(np.array([5, 2**50, 7]), np.array([0, 1, 2]))
    assert m.lookup(np.array([7, 5, 2**50, 6, 2**40])).tolist() == [2, 0, 1, -1, -1]
    big = np.array([200_000, 2**33], np.int64)
    m.set(big, np.array([3, 4]))  # 200_000 is sparse for now (too far above the entry count)
    m.set(np.arange(10, 60_000), np.arange(10, 60_000) + 10)  # table grows past 200_000
    assert m.lookup(big).tolist() == [3, 4]
    assert len(m) == 5 + 59_990
    m.delete(np.array([5, 2**50, 200_000, 3]))
    assert m.lookup(np.array([5, 2**50, 200_000, 7])).tolist() == [-1, -1, -1, 2]
    assert len(m) == 2 + 59_990


def test_brute_force_matches_full_sort() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    ids = np.arange(3000, dtype=np.int64) + 10
    blocks = [(x[i : i + 700], ids[i : i + 700]) for i in range(0, 3000, 700)]
    scores, found = brute_force(q, 20, blocks)
    want = np.argsort(-(q @ x.T), axis=1)[:, :20] + 10
    assert np.array_equal(found, want)
    assert np.allclose(scores, np.sort(q @ x.T, axis=1)[:, ::-1][:, :20])
    v, c = topk_rows(np.array([[1.0, 3.0]], np.float32), 5)
    assert c.tolist() == [[1, 0]] and v.tolist() == [[3.0, 1.0]]


def test_exact_f16_stores_half_precision() -> None:
    idx = ExactIndex(meta(dim=8, dtype="f16"))
    x = clustered(10, 8)
    idx.add(np.arange(10), x)
    assert idx._vecs.dtype == np.float16
    assert np.allclose(idx.get(np.arange(10)), x, atol=1e-3)


def test_hnsw_store_decodes_what_faiss_reconstructs() -> None:
    for dtype in ("f32", "f16"):
        idx = HNSWIndex(meta(dim=24, dtype=dtype))
        x = clustered(300, 24)
        idx.add(np.arange(300), x)
        labels = np.array([0, 17, 299])
        recon = np.stack([idx.faiss_index.reconstruct(int(i)) for i in labels])
        assert np.array_equal(decode(idx._store(), labels), recon)
        assert codes_view(idx._store()).shape == (300, 24 * (2 if dtype == "f16" else 4))


@pytest.mark.parametrize("module", [index_pkg, base, topk, exact, hnsw])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_a_projection_file_missing_from_this_data_dir_is_named_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tastegraph.index.spaces import PROJECTION_KEY, load_projection

    class Records:
        def get_kv(self, key: str, default: object = None) -> object:
            assert key == PROJECTION_KEY
            return {"path": "models/whitener-abc.npz", "digest": "abc", "n": 10}

        def get_artefact(self, digest: str) -> bytes:
            raise AssertionError("a record from before artefacts names none")

    with caplog.at_level("WARNING", logger="tastegraph.index.spaces"):
        projection, digest = load_projection(Records(), tmp_path, model_id="m", dim=8)
    assert projection is None and digest == "abc"
    assert "models/whitener-abc.npz" in caplog.text and "DATA_DIR/models/" in caplog.text
