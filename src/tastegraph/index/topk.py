"""Exact top-k: brute-force scoring in blocks, shared by ``exact`` and ``hnsw``'s fallbacks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.index.arrays import padded
from tastegraph.index.base import F32, I64

__all__ = ["block_rows", "brute_force", "compact_rows", "topk_rows"]

# --------------------------------------------------------------------------------------------
# Exact top-k


def topk_rows(scores: F32, k: int) -> tuple[F32, NDArray[np.intp]]:
    """Best ``min(k, n)`` columns of each row of ``(M, n)`` scores, highest first.

    Parameters
    ----------
    scores : (M, n) float32
        Higher is better; ``-inf`` marks columns that must not be chosen (callers drop them).
    k : int
        How many columns to keep per row.

    Returns
    -------
    values : (M, min(k, n)) float32
    columns : (M, min(k, n)) intp

    Examples
    --------
    >>> v, c = topk_rows(np.array([[0.25, 0.75, 0.5]], np.float32), 2)
    >>> v.tolist(), c.tolist()
    ([[0.75, 0.5]], [[1, 2]])
    """
    m, n = scores.shape
    kk = min(k, n)
    if kk == 0:
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.intp)
    if kk < n:
        # argpartition is O(n) per row; only the kk survivors are sorted.
        cols = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        cols = np.broadcast_to(np.arange(n), (m, n))
    vals = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def brute_force(
    queries: F32, k: int, blocks: Iterable[tuple[NDArray[Any], I64]]
) -> tuple[F32, I64]:
    """Exact top-``k`` inner-product search over a stream of ``(vectors, ids)`` blocks.

    Streaming keeps memory at one block of scores whatever the index size, and lets the same code
    score a contiguous matrix, a gathered subset (filtered search) or float16 storage.

    Parameters
    ----------
    queries : (M, d) float32
    k : int
    blocks : iterable of ((r, d) float16 or float32, (r,) int64)
        Vectors and their ids; rows whose id is ``-1`` are skipped (excluded or deleted).

    Returns
    -------
    scores : (M, k) float32, best first, ``-inf`` padded
    ids : (M, k) int64, ``-1`` padded

    Examples
    --------
    >>> q = np.array([[1.0, 0.0]], np.float32)
    >>> block = (np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], np.float32), np.array([7, 8, -1]))
    >>> brute_force(q, 3, [block])[1].tolist()
    [[8, 7, -1]]
    """
    m = len(queries)
    best_s, best_i = padded(m, k)
    for vecs, ids in blocks:
        if len(ids) == 0:
            continue
        scores = _dot(queries, vecs.astype(np.float32, copy=False))
        skip = ids < 0
        if skip.any():
            scores[:, skip] = -np.inf
        s, cols = topk_rows(scores, k)
        # Merge this block's winners with the running best: 2k columns per row at most.
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, ids[cols]], axis=1)
        s2, cols2 = topk_rows(all_s, k)
        best_s, best_i = s2, np.take_along_axis(all_i, cols2, axis=1)
    best_i[~np.isfinite(best_s)] = -1
    best_s[best_i < 0] = -np.inf
    return best_s, best_i


def _dot(queries: F32, vecs: F32) -> F32:
    """``queries @ vecs.T``, without BLAS threads for a few queries.

    OpenBLAS parallelises even a single query against a few thousand rows; with other work on the
    cores its threads wait on each other and one filtered query took 12 ms instead of 0.1 ms.
    einsum's own loops are single-threaded and within 1.5x of one BLAS thread at that size.
    """
    if len(queries) < 8:
        scores: F32 = np.einsum("md,nd->mn", queries, vecs)
        return scores
    return queries @ vecs.T


def block_rows(m: int, dim: int) -> int:
    """Rows per scoring block: keeps the (M, rows) score matrix and a float32 copy near 64 MB."""
    budget = 1 << 24  # float32 elements
    return int(max(1024, min(1 << 16, budget // max(m, dim, 1))))


def compact_rows(scores: F32, ids: I64, k: int) -> tuple[F32, I64]:
    """Move the valid (id >= 0) entries of each row to the front, keep ``k`` columns, pad."""
    if len(ids) == 1:
        # One query (the common case): a boolean selection beats argsort + take_along_axis.
        keep = np.flatnonzero(ids[0] >= 0)[:k]
        out_s, out_i = padded(1, k)
        out_s[0, : len(keep)] = scores[0, keep]
        out_i[0, : len(keep)] = ids[0, keep]
        return out_s, out_i
    order = np.argsort(ids < 0, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    if ids.shape[1] < k:
        pad_s, pad_i = padded(len(ids), k - ids.shape[1])
        ids = np.concatenate([ids, pad_i], axis=1)
        scores = np.concatenate([scores, pad_s], axis=1)
    scores = scores.astype(np.float32, copy=False)
    scores[ids < 0] = -np.inf
    return scores, ids
