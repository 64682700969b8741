"""The IVF backend and the flat-store scoring shared by the faiss backends."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from tastegraph.errors import IndexMismatch, InvalidInput
from tastegraph.index import IndexMeta, flatcodes, ivf, labelled, open_index
from tastegraph.index.flatcodes import new_flat, score_subset
from tastegraph.index.ivf import IVFIndex, auto_nlist
from tastegraph.index.topk import brute_force
from tests.unit.index.test_index import clustered, recall

DIM = 64


def meta(dtype: str = "f32") -> IndexMeta:
    return IndexMeta("image", "m@1", DIM, digest="d", dtype=dtype)


def split(n: int, nq: int, dim: int = DIM, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pins and ``nq`` queries from the same clusters."""
    x = clustered(n + nq, dim, noise=noise)
    return x[:n], x[n:]


def truth(x: np.ndarray, q: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    ids = np.arange(len(x), dtype=np.int64) if ids is None else ids
    return brute_force(q, k, [(x, ids)])[1]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_score_subset_is_exact_over_the_subset(dtype: str) -> None:
    x = clustered(3000, DIM)
    store = new_flat(DIM, dtype)
    store.add(x)
    labels = np.sort(np.random.default_rng(1).choice(3000, 500, replace=False)).astype(np.int64)
    q = clustered(5, DIM, seed=9)
    scores, found = score_subset(store, q, 10, labels)
    stored = x.astype(np.float16).astype(np.float32) if dtype == "f16" else x
    want_s, want = brute_force(q, 10, [(stored[labels], labels)])
    assert np.array_equal(found, want)
    assert np.allclose(scores, want_s, atol=1e-5)
    # A second, smaller call on the same thread reuses the scratch index without stale rows.
    s2, f2 = score_subset(store, q[:1], 10, labels[:3])
    assert set(f2[0, :3].tolist()) == set(labels[:3].tolist())
    assert (f2[0, 3:] == -1).all() and np.isinf(s2[0, 3:]).all()


def test_score_subset_of_nothing_is_padding() -> None:
    store = new_flat(DIM, "f16")
    store.add(clustered(10, DIM))
    scores, found = score_subset(store, clustered(2, DIM), 4, np.zeros(0, np.int64))
    assert (found == -1).all() and np.isinf(scores).all()


def test_auto_nlist_grows_with_the_square_root_and_keeps_39_points_per_list() -> None:
    assert auto_nlist(1_000_000) == 4096
    assert auto_nlist(4_000_000) == 8192
    assert auto_nlist(1000) == 16
    for n in (2000, 20_000, 300_000):
        assert auto_nlist(n) >= 16 and auto_nlist(n) * 39 <= n


def test_trains_once_train_min_vectors_are_in_and_stays_exact_before() -> None:
    x, q = split(6000, 50)
    idx = IVFIndex(meta(), train_min=4000, nlist=32, nprobe=8)
    idx.add(np.arange(3000), x[:3000])
    assert not idx.trained
    assert np.array_equal(idx.search(q, 10)[1], truth(x[:3000], q, 10))  # exact
    idx.add(np.arange(3000, 6000), x[3000:])
    assert idx.trained and idx.params["trained_nlist"] == 32
    assert recall(idx.search(q, 10)[1], truth(x, q, 10)) >= 0.95


def test_rerank_recovers_what_8_bit_codes_lose() -> None:
    x, q = split(20_000, 100, noise=0.8)
    want = truth(x, q, 10)
    plain = IVFIndex(meta(), train_min=5000, nlist=64, nprobe=16, k_factor=1)
    rerank = IVFIndex(meta(), train_min=5000, nlist=64, nprobe=16, k_factor=4)
    for idx in (plain, rerank):
        idx.add(np.arange(len(x)), x)
    r_plain, r_rerank = recall(plain.search(q, 10)[1], want), recall(rerank.search(q, 10)[1], want)
    assert r_rerank >= 0.97 and r_rerank > r_plain


def test_filters_and_tombstones_on_a_trained_index() -> None:
    x, q = split(5000, 20)
    idx = IVFIndex(meta("f16"), train_min=2000, nlist=32, nprobe=8, exact_max=0, exact_fraction=0)
    ids = np.arange(10_000, 15_000, dtype=np.int64)
    idx.add(ids, x)
    allow = ids[::3]  # a third: through the inverted file with a selector, nprobe scaled up
    got = idx.search(q, 10, allow=allow)[1]
    assert np.isin(got, allow).all()
    assert recall(got, truth(x[::3], q, 10, allow)) >= 0.95
    assert idx.remove(ids[:100]) == 100 and idx.tombstones == 100
    assert not np.isin(idx.search(q, 10)[1], ids[:100]).any()


def test_grown_eightfold_it_retrains_with_more_lists() -> None:
    x = clustered(16_000, 16)
    idx = IVFIndex(IndexMeta("image", "m@1", 16), train_min=1000)
    idx.add(np.arange(1000), x[:1000])
    first = idx.params["trained_nlist"]
    idx.add(np.arange(1000, 16_000), x[1000:])
    assert idx.params["trained_on"] == 16_000 and idx.params["trained_nlist"] > first
    assert len(idx) == 16_000 and idx.tombstones == 0


@pytest.mark.parametrize("trained", [False, True])
def test_save_and_load_keep_the_trained_state(tmp_path: Path, trained: bool) -> None:
    x = clustered(3000, DIM)
    params: dict[str, Any] = {"train_min": 2000 if trained else 10_000, "nlist": 16}
    idx = open_index("ivf", tmp_path / "i", meta("f16"), **params)
    idx.add(np.arange(3000), x)
    idx.save()
    again = open_index("ivf", tmp_path / "i", meta("f16"))
    assert isinstance(again, IVFIndex) and again.trained is trained
    q = clustered(10, DIM, seed=2)
    assert np.array_equal(again.search(q, 5)[1], idx.search(q, 5)[1])
    with pytest.raises(IndexMismatch, match="nlist"):
        open_index("ivf", tmp_path / "i", meta("f16"), nlist=64)


def test_files_of_another_structure_refuse_with_the_reindex_hint(tmp_path: Path) -> None:
    idx = open_index("ivf", tmp_path / "i", meta(), train_min=500, nlist=8)
    idx.add(np.arange(600), clustered(600, DIM))
    folder = idx.save()
    man = json.loads((folder / "index.json").read_text())
    # A float32 flat file where the manifest promises the trained float16 structure.
    faiss.write_index(faiss.IndexFlatIP(DIM), str(folder / man["files"]["graph"]))
    with pytest.raises(IndexMismatch) as err:
        open_index("ivf", folder, meta())
    assert "tastegraph reindex" in err.value.hint


@pytest.mark.parametrize(
    "params",
    [{"nprobe": 0}, {"k_factor": 0}, {"nlist": -1}, {"train_min": 0}, {"nprobe": 1.5}],
)
def test_bad_parameters_are_named(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match=next(iter(params))):
        IVFIndex(meta(), **params)


@pytest.mark.parametrize("module", [ivf, flatcodes, labelled])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
