"""One contract for every ``VectorIndex`` backend: each test runs over all of them.

``hnsw-graph`` is the HNSW backend with its exact fallbacks switched off, so that the filtered
graph paths (bitmap selectors, over-fetching) face the same checks on small data; ``ivf-graph``
does the same for the inverted file (trained from 200 vectors on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tastegraph.errors import IndexMismatch, InvalidInput, NotFound
from tastegraph.index import IndexMeta, VectorIndex, open_index

DIM = 32

BACKENDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "exact": ("exact", "f32", {}),
    "exact-f16": ("exact", "f16", {}),
    "hnsw": ("hnsw", "f32", {}),
    "hnsw-f16": ("hnsw", "f16", {}),
    "hnsw-graph": ("hnsw", "f32", {"exact_max": 0, "exact_fraction": 0.0, "overfetch_max": 0}),
    # Untrained (fewer than train_min vectors): every search exact over the flat store.
    "ivf": ("ivf", "f32", {}),
    # Trained on the test's data, every list probed: the inverted file and its re-rank.
    "ivf-f16": ("ivf", "f16", {"train_min": 200, "nlist": 4, "nprobe": 4}),
    "ivf-graph": (
        "ivf",
        "f32",
        {
            "train_min": 200,
            "nlist": 4,
            "nprobe": 4,
            "exact_max": 0,
            "exact_fraction": 0.0,
            "overfetch_max": 0,
        },
    ),
    # The default: an HNSW index here (400 vectors, far below 500k) ...
    "auto": ("auto", "f16", {}),
    # ... and one rebuilt as a trained IVF index by the add that reaches ivf_from.
    "auto-ivf": ("auto", "f32", {"ivf_from": 300, "train_min": 200, "nlist": 4, "nprobe": 4}),
}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_vecs(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))


class Backend:
    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.kind, self.dtype, self.params = BACKENDS[name]
        self.root = root

    def meta(self, **over: Any) -> IndexMeta:
        base: dict[str, Any] = {
            "space": "image",
            "model_id": "test-model@1",
            "dim": DIM,
            "digest": "d1",
            "dtype": self.dtype,
        }
        base.update(over)
        return IndexMeta(**base)

    def open(self, sub: str = "idx", **over: Any) -> VectorIndex:
        return open_index(self.kind, self.root / sub, self.meta(**over), **self.params)

    @property
    def atol(self) -> float:
        return 2e-3 if self.dtype == "f16" else 1e-5


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture
def filled(backend: Backend) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    idx = backend.open()
    ids = np.arange(1000, 1400, dtype=np.int64)
    vecs = random_vecs(len(ids))
    idx.add(ids, vecs)
    return idx, ids, vecs


def oracle(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = unit(q) @ vecs.T
    return ids[np.argsort(-s, axis=1)[:, :k]]


def test_implements_protocol(backend: Backend) -> None:
    idx = backend.open()
    assert isinstance(idx, VectorIndex)
    # "auto" reports the backend it runs on, which is also what its saved files say.
    assert idx.kind == backend.kind or (backend.kind == "auto" and idx.kind == "hnsw")
    assert idx.meta == backend.meta()


def test_empty_index(backend: Backend) -> None:
    idx = backend.open()
    assert len(idx) == 0
    assert idx.ids().dtype == np.int64 and len(idx.ids()) == 0
    assert 1 not in idx
    scores, ids = idx.search(random_vecs(2), k=3)
    assert ids.shape == (2, 3) and (ids == -1).all()
    assert scores.dtype == np.float32 and np.isneginf(scores).all()
    with pytest.raises(NotFound):
        idx.get(np.array([1]))
    assert idx.remove(np.array([1, 2])) == 0


def test_add_and_search(backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]) -> None:
    idx, ids, vecs = filled
    assert len(idx) == len(ids)
    assert set(idx.ids().tolist()) == set(ids.tolist())
    assert int(ids[7]) in idx and np.int64(ids[7]) in idx and 5 not in idx and "x" not in idx
    scores, found = idx.search(vecs[:50], k=5)
    assert found.shape == (50, 5) and found.dtype == np.int64 and scores.dtype == np.float32
    # Each stored vector finds itself first, with cosine ~1.
    assert (found[:, 0] == ids[:50]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=backend.atol)
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "scores must be sorted best first"
    q = random_vecs(20, seed=9)
    top = idx.search(q, k=10)[1]
    want = oracle(vecs, ids, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, want, strict=True)])
    assert recall >= 0.95


def test_single_query_vector_and_normalisation(
    backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]
) -> None:
    idx, ids, vecs = filled
    scores, found = idx.search(vecs[3] * 7.0, k=1)  # 1-D, not unit length
    assert found.shape == (1, 1) and found[0, 0] == ids[3]
    assert scores[0, 0] == pytest.approx(1.0, abs=backend.atol)
    idx.add(np.array([5]), vecs[:1] * 3.0)
    assert np.linalg.norm(idx.get(np.array([5]))[0]) == pytest.approx(1.0, abs=backend.atol)


def test_get(backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]) -> None:
    idx, ids, vecs = filled
    got = idx.get(ids[[3, 1, 3]])
    assert got.dtype == np.float32 and got.shape == (3, DIM)
    assert np.allclose(got, vecs[[3, 1, 3]], atol=backend.atol)
    with pytest.raises(NotFound):
        idx.get(np.array([ids[0], 999_999]))


def test_replace(backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]) -> None:
    idx, ids, vecs = filled
    new = random_vecs(1, seed=77)
    idx.add(ids[:1], new)
    assert len(idx) == len(ids)
    assert np.allclose(idx.get(ids[:1]), new, atol=backend.atol)
    assert idx.search(new, k=1)[1][0, 0] == ids[0]
    # The old vector no longer matches it: its best hit is not ids[0] with score ~1.
    scores, found = idx.search(vecs[:1], k=3)
    assert not (found[0, 0] == ids[0] and scores[0, 0] > 0.99)
    assert (idx.ids() == ids[0]).sum() == 1


def test_repeated_id_in_one_batch_keeps_last(backend: Backend) -> None:
    idx = backend.open()
    v = random_vecs(3, seed=4)
    idx.add(np.array([7, 8, 7]), v)
    assert len(idx) == 2
    assert np.allclose(idx.get(np.array([7])), v[2:], atol=backend.atol)


def test_remove(backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]) -> None:
    idx, ids, vecs = filled
    gone = ids[::3]
    assert idx.remove(np.concatenate([gone, [5, 6]])) == len(gone)
    assert len(idx) == len(ids) - len(gone)
    assert all(int(i) not in idx for i in gone)
    assert not set(gone.tolist()) & set(idx.ids().tolist())
    _, found = idx.search(vecs, k=10)
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    assert (found >= 0).all(), "k results are still returned"
    # Surviving vectors still find themselves.
    keep = np.setdiff1d(np.arange(len(ids)), np.arange(0, len(ids), 3))
    assert (idx.search(vecs[keep], k=1)[1][:, 0] == ids[keep]).mean() >= 0.99
    with pytest.raises(NotFound):
        idx.get(gone[:1])
    assert idx.remove(gone) == 0
    # Removing then re-adding works.
    idx.add(gone[:2], vecs[[0, 3]])
    assert int(gone[0]) in idx and len(idx) == len(ids) - len(gone) + 2


def test_remove_everything(backend: Backend) -> None:
    idx = backend.open()
    idx.add(np.arange(10), random_vecs(10))
    assert idx.remove(np.arange(10)) == 10
    assert len(idx) == 0
    assert (idx.search(random_vecs(1), k=3)[1] == -1).all()
    idx.add(np.array([3]), random_vecs(1, seed=2))
    assert idx.search(random_vecs(1), k=3)[1].tolist() == [[3, -1, -1]]


def test_k_larger_than_size(backend: Backend) -> None:
    idx = backend.open()
    idx.add(np.array([4, 9, 2]), random_vecs(3))
    scores, found = idx.search(random_vecs(2, seed=1), k=8)
    assert found.shape == (2, 8)
    for row, srow in zip(found, scores, strict=True):
        assert sorted(row[:3].tolist()) == [2, 4, 9]
        assert (row[3:] == -1).all() and np.isneginf(srow[3:]).all()
        assert np.isfinite(srow[:3]).all()


def test_allow(backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]) -> None:
    idx, ids, vecs = filled
    allow = ids[::10]
    q = random_vecs(8, seed=3)
    _, found = idx.search(q, k=5, allow=allow)
    assert (found >= 0).all()
    assert set(found.ravel().tolist()) <= set(allow.tolist())
    want = oracle(vecs[::10], allow, q, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(found, want, strict=True)])
    assert recall >= 0.9
    # Fewer allowed than k: all of them, then padding; unknown allowed ids are ignored.
    _, few = idx.search(q[:1], k=5, allow=np.array([ids[1], ids[2], 123_456]))
    assert sorted(few[0, :2].tolist()) == sorted(ids[1:3].tolist())
    assert (few[0, 2:] == -1).all()
    assert (idx.search(q, k=3, allow=np.array([], np.int64))[1] == -1).all()


def test_exclude(backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]) -> None:
    idx, ids, vecs = filled
    # One query excluding its own pin (the "more like this" case).
    for i in (5, 17):
        scores, found = idx.search(vecs[i], k=5, exclude=ids[i : i + 1])
        assert ids[i] not in found and (found >= 0).all() and found.shape == (1, 5)
        assert (np.diff(scores[0]) <= 1e-6).all()
        want = oracle(np.delete(vecs, i, 0), np.delete(ids, i), vecs[i : i + 1], 5)
        assert len(set(found[0].tolist()) & set(want[0].tolist())) >= 4
    _, found = idx.search(vecs[:5], k=4, exclude=ids[:5])
    assert (found >= 0).all()
    assert not set(found.ravel().tolist()) & set(ids[:5].tolist())
    # A long exclude list (over any over-fetch limit) still yields k results.
    many = ids[: len(ids) // 2]
    _, found = idx.search(vecs[:3], k=10, exclude=np.concatenate([many, [999_999]]))
    assert (found >= 0).all() and not set(found.ravel().tolist()) & set(many.tolist())
    _, found = idx.search(vecs[:1], k=3, exclude=ids[:-2])
    assert sorted(found[0, :2].tolist()) == sorted(ids[-2:].tolist()) and found[0, 2] == -1


def test_allow_and_exclude(
    backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]
) -> None:
    idx, ids, vecs = filled
    allow, exclude = ids[:100], ids[:50]
    _, found = idx.search(vecs[:4], k=10, allow=allow, exclude=exclude)
    got = set(found.ravel().tolist())
    assert -1 not in got and got <= set(ids[50:100].tolist())


def test_save_load_roundtrip(
    backend: Backend, filled: tuple[VectorIndex, np.ndarray, np.ndarray]
) -> None:
    idx, ids, _ = filled
    idx.remove(ids[:10])
    idx.add(ids[10:12], random_vecs(2, seed=5))
    idx.watermark = 1234
    folder = idx.save()
    assert folder == backend.root / "idx"
    q = random_vecs(10, seed=6)
    before = idx.search(q, k=7)
    again = backend.open()
    assert again.watermark == 1234
    assert len(again) == len(idx)
    assert sorted(again.ids().tolist()) == sorted(idx.ids().tolist())
    assert np.allclose(again.get(ids[10:20]), idx.get(ids[10:20]))
    after = again.search(q, k=7)
    assert np.array_equal(after[1], before[1])
    assert np.allclose(after[0], before[0], atol=1e-6)
    # Saving again replaces the previous generation's files rather than piling them up.
    again.add(np.array([1]), random_vecs(1, seed=8))
    again.save()
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 3 and "index.json" in files
    assert len(backend.open()) == len(idx) + 1


def test_save_elsewhere(backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]) -> None:
    idx, ids, _ = filled
    other = backend.root / "copy" / "nested"
    assert idx.save(other) == other
    assert len(backend.open("copy/nested")) == len(ids)


def test_meta_mismatch_refuses_to_load(
    backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]
) -> None:
    idx, _, _ = filled
    idx.save()
    for change in (
        {"model_id": "other@2"},
        {"dim": DIM + 1},
        {"digest": "d2"},
        {"dtype": "f32" if backend.dtype == "f16" else "f16"},
        {"space": "text"},
    ):
        with pytest.raises(IndexMismatch) as err:
            backend.open(**change)
        assert "reindex" in err.value.hint
    manifest = backend.root / "idx" / "index.json"
    data = json.loads(manifest.read_text())
    data["meta"]["metric"] = "l2"
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexMismatch):
        backend.open()


def test_other_kind_refuses_to_load(
    backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]
) -> None:
    idx, _, _ = filled
    idx.save()
    other = "hnsw" if idx.kind == "exact" else "exact"
    with pytest.raises(IndexMismatch):
        open_index(other, backend.root / "idx", backend.meta())


def test_damaged_files_raise_index_mismatch(
    backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]
) -> None:
    idx, _, _ = filled
    folder = idx.save()
    files = json.loads((folder / "index.json").read_text())["files"]
    first, second = (folder / name for name in sorted(files.values()))
    first.write_bytes(b"not an index")
    with pytest.raises(IndexMismatch):
        backend.open()
    second.unlink()
    with pytest.raises(IndexMismatch):
        backend.open()
    (folder / "index.json").write_text("{")
    with pytest.raises(IndexMismatch):
        backend.open()


def test_dimension_mismatch(backend: Backend, filled: tuple[VectorIndex, np.ndarray, Any]) -> None:
    idx, _, _ = filled
    with pytest.raises(IndexMismatch):
        idx.add(np.array([1]), random_vecs(1, dim=DIM + 1))
    with pytest.raises(IndexMismatch):
        idx.search(random_vecs(1, dim=DIM - 1), k=3)


@pytest.mark.parametrize(
    "call",
    [
        lambda idx: idx.add(np.array([-1]), random_vecs(1)),
        lambda idx: idx.add(np.array([1, 2]), random_vecs(1)),
        lambda idx: idx.add(np.array([1.5]), random_vecs(1)),
        lambda idx: idx.add(np.array([1]), np.full((1, DIM), np.nan, np.float32)),
        lambda idx: idx.add(np.array([[1]]), random_vecs(1)),
        lambda idx: idx.search(random_vecs(1), k=0),
        lambda idx: idx.search(random_vecs(1), k=2, allow=np.array([-3])),
        lambda idx: idx.search(random_vecs(1)[None], k=2),
        lambda idx: idx.remove(np.array(["a"])),
    ],
)
def test_invalid_input(backend: Backend, call: Any) -> None:
    idx = backend.open()
    idx.add(np.array([1]), random_vecs(1))
    with pytest.raises(InvalidInput):
        call(idx)
    assert len(idx) == 1


def test_unknown_kind_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        open_index("annoy", tmp_path, IndexMeta("image", "m", 4))
    assert "exact" in err.value.message and "hnsw" in err.value.message


def test_unknown_params_rejected(backend: Backend) -> None:
    with pytest.raises(InvalidInput):
        open_index(backend.kind, backend.root / "p", backend.meta(), bogus=1)


def test_invalid_meta() -> None:
    with pytest.raises(InvalidInput):
        IndexMeta("image", "m", 0)
    with pytest.raises(InvalidInput):
        IndexMeta("image", "m", 4, metric="l2")
    with pytest.raises(InvalidInput):
        IndexMeta("image", "m", 4, dtype="i8")


def test_large_sparse_ids(backend: Backend) -> None:
    idx = backend.open()
    big = np.array([2**62, 2**40 + 3, 5, 2**40], np.int64)
    v = random_vecs(4, seed=11)
    idx.add(big, v)
    assert all(int(i) in idx for i in big)
    assert (idx.search(v, k=1)[1][:, 0] == big).all()
    idx.remove(big[:1])
    assert int(big[0]) not in idx and len(idx) == 3
    idx.save()
    assert sorted(backend.open().ids().tolist()) == sorted(big[1:].tolist())
