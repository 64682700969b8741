"""The ``behaviour`` source: a whole-catalog behavioural model, EASE over who engaged with what.

The feed's other generators only reach pins near something: an interest's image neighbours, a
walk's visits, a co-engaged pin's top ``cf_k`` neighbours. A pin that none of them reaches is
never ranked at all. This source scores *every* pin it covers from the person's whole history,
the way the best offline peers do: EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"),
the closed-form item-item regression

    ``min_B ||X - X B||^2 + l2 ||B||^2``  subject to ``diag(B) = 0``,
    ``P = (X^T X + l2 I)^-1``,  ``B = -P / diag(P)`` (column-wise),  ``diag(B) = 0``,

on the binary user x pin matrix ``X`` of positive engagements. A person's score for pin ``j`` is
``sum_h w_h B[h, j]`` over the pins ``h`` they engaged with, weighted as the engine weighs its
walk and CF seeds (recency-decayed engagement).

Bounded memory: ``B`` is dense, ``m x m`` float32 for the ``m`` pins it covers, and its fit
inverts an ``m x m`` matrix (``O(m^3)``). So the model covers at most ``max_pins`` pins, the
most engaged ones (distinct people); at the default 3,000 that is 36 MB and a few seconds of
fit whatever the catalog's size (100k pins or more). Pins outside it are neither proposed by
this source nor count as history for it; the other generators still reach them.

Fitted by ``FeedEngine.fit`` from the log (so by ``tastegraph train``: ``feed.training``), saved
and loaded with the engine (``feed.persistence``: ``behaviour.npz``); ``observe`` does not refit
it (new engagement changes a person's history, so their candidates, at once, but the item-item
weights only change at the next ``fit``).

Example
-------
>>> import numpy as np
>>> users = np.array([0, 0, 1, 1, 2, 2, 3])
>>> pins = np.array([0, 1, 0, 1, 2, 3, 2])
>>> model = fit(users, pins, 4, l2=0.5)
>>> rows, scores, seeds = candidates(model, np.array([0]), np.ones(1), 2)
>>> int(rows[0]), int(seeds[0])
(1, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = [
    "BehaviourModel",
    "candidates",
    "empty",
    "fit",
    "load",
    "profile",
    "save",
    "saved_ids",
    "scores",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class BehaviourModel:
    """EASE weights over a subset of the catalog.

    ``rows`` are the engine rows of the covered pins, sorted; ``weights[a, b]`` is how much
    engaging with ``rows[a]`` predicts engaging with ``rows[b]`` (zero diagonal).
    """

    rows: I64
    weights: F32

    @property
    def n_pins(self) -> int:
        return len(self.rows)


def empty() -> BehaviourModel:
    """The model of a log with no engagement: covers nothing, proposes nothing."""
    return BehaviourModel(np.zeros(0, np.int64), np.zeros((0, 0), np.float32))


def fit(
    users: I64,
    rows: I64,
    n_rows: int,
    *,
    l2: float = 500.0,
    max_pins: int = 3000,
    min_users: int = 2,
) -> BehaviourModel:
    """EASE on the binary user x pin matrix of these positive engagements.

    Parameters
    ----------
    users, rows : (e,) int64
        One positive engagement per entry (duplicates count once): any non-negative user ids,
        engine rows ``< n_rows``.
    l2 : float
        Ridge penalty: larger favours popular pins and smooths the weights.
    max_pins : int
        Pins covered at most, the most engaged (distinct people, ties to the lower row); bounds
        memory (``max_pins^2`` float32) and fit time (``O(max_pins^3)``).
    min_users : int
        Pins engaged by fewer people are left out (a pin nobody shares says nothing).
    """
    users = np.asarray(users, np.int64)
    rows = np.asarray(rows, np.int64)
    ok = (rows >= 0) & (rows < n_rows)
    users, rows = users[ok], rows[ok]
    if not len(users):
        return empty()
    _, u = np.unique(users, return_inverse=True)
    u = u.ravel().astype(np.int64)
    pairs = np.unique(u * np.int64(n_rows) + rows)
    u, rows = pairs // n_rows, pairs % n_rows
    count = np.bincount(rows, minlength=n_rows)
    order = np.lexsort((np.arange(n_rows), -count))
    keep = order[: max(int(max_pins), 0)]
    keep = np.sort(keep[count[keep] >= max(min_users, 1)]).astype(np.int64)
    if not len(keep):
        return empty()
    col = np.full(n_rows, -1, np.int64)
    col[keep] = np.arange(len(keep))
    sel = col[rows] >= 0
    x = sp.csr_matrix(
        (np.ones(int(sel.sum()), np.float64), (u[sel], col[rows[sel]])),
        shape=(int(u.max()) + 1, len(keep)),
    )
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += float(l2)
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return BehaviourModel(keep, b.astype(np.float32))


def candidates(
    model: BehaviourModel,
    history: I64,
    weights: F64,
    n: int,
    exclude: I64 | None = None,
) -> tuple[I64, F64, I64]:
    """The ``n`` best pins for a person with this history, best first.

    Parameters
    ----------
    history, weights : (h,)
        Engine rows the person engaged with and the weight of each; rows outside the model
        are ignored.
    exclude : sorted int64, optional
        Rows never to propose (already seen or hidden): they are skipped, not counted in ``n``.

    Returns
    -------
    rows, scores, seeds : (k,) with ``k <= n``
        Engine rows, their scores (``> 0``), and for each the history row that contributed the
        most (for "because you liked ..." reasons).
    """
    e = np.zeros(0, np.int64)
    m = model.n_pins
    if not m or n <= 0 or not len(history):
        return e, np.zeros(0), e
    history = np.asarray(history, np.int64)
    pos = np.minimum(np.searchsorted(model.rows, history), m - 1)
    inside = model.rows[pos] == history
    if not inside.any():
        return e, np.zeros(0), e
    h_pos = pos[inside]
    w = np.asarray(weights, np.float64)[inside]
    contrib = model.weights[h_pos].astype(np.float64) * w[:, None]  # (h, m)
    score = contrib.sum(axis=0)
    score[h_pos] = -np.inf  # never the history itself
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, np.int64)
        at = np.minimum(np.searchsorted(model.rows, ex), m - 1)
        score[at[model.rows[at] == ex]] = -np.inf
    good = np.flatnonzero(score > 0)
    if not len(good):
        return e, np.zeros(0), e
    if len(good) > n:
        good = good[np.argpartition(-score[good], n - 1)[:n]]
    good = good[np.lexsort((good, -score[good]))]
    seeds = history[inside][np.argmax(contrib[:, good], axis=0)]
    return model.rows[good].astype(np.int64), score[good], seeds.astype(np.int64)


def scores(model: BehaviourModel, history: I64, weights: F64, rows: I64) -> F64:
    """The score of each of ``rows`` for this history (0 for rows the model does not cover).

    What :func:`candidates` ranks by, for any pins (the feed's other candidates get it as a
    ranker feature); a history pin scores as any other here (its own weight is 0).
    """
    rows = np.asarray(rows, np.int64)
    out = np.zeros(len(rows))
    m = model.n_pins
    if not m or not len(rows) or not len(history):
        return out
    h_pos, w = _inside(model, np.asarray(history, np.int64), np.asarray(weights, np.float64))
    at = np.minimum(np.searchsorted(model.rows, rows), m - 1)
    hit = np.flatnonzero(model.rows[at] == rows)
    if len(h_pos) and len(hit):
        sub = model.weights[np.ix_(h_pos, at[hit])].astype(np.float64)
        out[hit] = w @ sub
    return out


def _inside(model: BehaviourModel, history: I64, weights: F64) -> tuple[I64, F64]:
    """Model positions of the history rows it covers, and their weights."""
    m = model.n_pins
    pos = np.minimum(np.searchsorted(model.rows, history), m - 1)
    inside = model.rows[pos] == history
    return pos[inside], weights[inside]


def profile(rows: I64, w: F64, last: F64, now: float, half_life_s: float | None) -> F64:
    """The weight of each history pin the model reads: 1 each (EASE's own input) when
    ``half_life_s`` is None, else the engagement weight decayed to ``now``."""
    if half_life_s is None:
        return np.ones(len(rows))
    return np.asarray(w * np.exp2(-np.maximum(now - last, 0.0) / half_life_s), np.float64)


def save(model: BehaviourModel, path: Path, ids: I64) -> None:
    """Write the model to ``path`` (``.npz``), naming pins by their ids (``ids[row]``)."""
    with open(path, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, np.int64)[model.rows], weights=model.weights)


def load(path: Path, rows_of_ids: I64) -> BehaviourModel:
    """Read what :func:`save` wrote, given the engine rows of its pin ids (``-1``: unknown).

    Pins the engine no longer knows are dropped (their rows and columns), the rest re-sorted.
    """
    with np.load(path, allow_pickle=False) as data:
        weights = np.asarray(data["weights"], np.float32)
    rows = np.asarray(rows_of_ids, np.int64)
    known = np.flatnonzero(rows >= 0)
    order = known[np.argsort(rows[known], kind="stable")]
    return BehaviourModel(rows[order], np.ascontiguousarray(weights[np.ix_(order, order)]))


def saved_ids(path: Path) -> I64:
    """The pin ids a saved model covers, in its saved order (for :func:`load`)."""
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["ids"], np.int64)
