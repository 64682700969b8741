"""Query-time DBA re-ranking: shapes, self/padding handling, and that it fixes a noisy ranking."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tastegraph.errors import InvalidInput
from tastegraph.search.rerank import augment, dba_rerank, l2_rows, same_photo_first


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated clusters of 40 noisy unit vectors in 32-d."""
    rng = np.random.default_rng(seed)
    centres = l2_rows(rng.normal(size=(2, 32)))
    labels = np.repeat([0, 1], 40)
    x = l2_rows(centres[labels] + 0.45 * rng.normal(size=(80, 32)).astype(np.float32))
    return x, labels


def _inputs(x: np.ndarray, q: np.ndarray, depth: int, k: int) -> tuple[np.ndarray, ...]:
    cand = np.argsort(-(x @ q))[:depth]
    sims = x[cand] @ x.T
    nid = np.argsort(-sims, axis=1)[:, : k + 1]
    return cand, x[nid], nid, np.take_along_axis(sims, nid, 1)


def test_l2_rows_and_augment() -> None:
    assert np.allclose(l2_rows([[3.0, 4.0], [0.0, 0.0]]), [[0.6, 0.8], [0.0, 0.0]])
    out = augment([[1.0, 0.0]], [[[0.0, 1.0], [1.0, 0.0]]], [[1.0, -np.inf]], k=2)
    assert np.allclose(out, [[2**-0.5, 2**-0.5]], atol=1e-6)
    assert np.allclose(augment([[1.0, 0.0]], np.zeros((1, 0, 2)), np.zeros((1, 0))), [[1.0, 0.0]])
    with pytest.raises(InvalidInput):
        augment([[1.0, 0.0]], [[1.0, 0.0]], [[1.0]])


def test_dba_rerank_shapes_and_units() -> None:
    x, _ = _world()
    cand, nv, nid, ns = _inputs(x, x[0], 30, 5)
    s = dba_rerank(x[0], x[cand], cand, nv, nid, ns, k=5)
    assert s.shape == (30,) and s.dtype == np.float32
    assert np.all(np.abs(s) <= 1.0 + 1e-5)
    assert dba_rerank(x[0], np.zeros((0, 32)), [], np.zeros((0, 2, 32)), np.zeros((0, 2)),
                      np.zeros((0, 2))).shape == (0,)  # fmt: skip
    with pytest.raises(InvalidInput):
        dba_rerank(x[0], x[cand], cand[:-1], nv, nid, ns)
    with pytest.raises(InvalidInput):
        dba_rerank(x[0], x[cand], cand, nv, nid[:, :2], ns)


def test_self_and_padding_neighbours_are_ignored() -> None:
    x, _ = _world()
    cand, nv, nid, ns = _inputs(x, x[0], 20, 5)
    ref = dba_rerank(x[0], x[cand], cand, nv[:, 1:], nid[:, 1:], ns[:, 1:], k=5)
    # nid[:, 0] is each candidate itself: it must be dropped, giving the same result ...
    assert np.allclose(dba_rerank(x[0], x[cand], cand, nv, nid, ns, k=5), ref, atol=1e-5)
    # ... and so must padding (id -1) appended at the end.
    pad_v = np.concatenate([nv, np.ones_like(nv[:, :1])], axis=1)
    pad_i = np.concatenate([nid, -np.ones_like(nid[:, :1])], axis=1)
    pad_s = np.concatenate([ns, np.ones_like(ns[:, :1])], axis=1)
    assert np.allclose(dba_rerank(x[0], x[cand], cand, pad_v, pad_i, pad_s, k=5), ref, atol=1e-5)


def test_rerank_improves_precision_on_noisy_clusters() -> None:
    before, after = [], []
    for seed in range(3):
        x, y = _world(seed)
        for i in range(0, 80, 4):
            q = l2_rows(x[i] + 0.5 * np.random.default_rng(i).normal(size=(1, 32)))[0]
            cand, nv, nid, ns = _inputs(x, q, 40, 5)
            s = dba_rerank(q, x[cand], cand, nv, nid, ns, k=5, query_k=5)
            before.append(np.mean(y[cand[:10]] == y[i]))
            after.append(np.mean(y[cand[np.argsort(-s)[:10]]] == y[i]))
    assert np.mean(after) > np.mean(before)


def test_rerank_is_fast() -> None:
    rng = np.random.default_rng(0)
    x = l2_rows(rng.normal(size=(2000, 256)))
    cand = np.arange(100)
    nid = rng.integers(0, 2000, size=(100, 11))
    ns = rng.random((100, 11)).astype(np.float32)
    dba_rerank(x[0], x[cand], cand, x[nid], nid, ns)
    t0 = time.perf_counter()
    for _ in range(20):
        dba_rerank(x[0], x[cand], cand, x[nid], nid, ns)
    assert (time.perf_counter() - t0) / 20 < 0.02  # typically < 1 ms


def test_the_query_photo_stays_first_and_scores_stay_descending() -> None:
    # Candidate 2 is the query's own photo; re-ranking scores two others above it.
    raw = np.array([0.80, 0.75, 0.999, 0.60, 0.985])
    new = np.array([0.990, 0.995, 0.97, 0.50, 0.60])
    order, scores = same_photo_first(raw, new)
    assert order.tolist() == [2, 4, 1, 0, 3]  # same photos by cosine, then the re-ranked rest
    assert scores[:2] == pytest.approx([0.999, 0.985])
    assert (np.diff(scores) <= 0).all() and scores[2] <= 0.985
    # Without a same-photo candidate the re-ranked order and scores are untouched.
    order, scores = same_photo_first(raw[[0, 1, 3]], new[[0, 1, 3]])
    assert order.tolist() == [1, 0, 2] and scores == pytest.approx([0.995, 0.99, 0.5])
    with pytest.raises(InvalidInput):
        same_photo_first(raw, new[:2])
