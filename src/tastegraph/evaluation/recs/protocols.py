"""The two offline protocols for recommenders, their splits and their metrics.

``loo``
    The NCF protocol (He et al. 2017): each user's latest interaction is held out (ties on the
    timestamp go to the higher item index); 99 negatives are drawn, with a fixed seed, from items
    the user never interacted with; the positive is ranked among those 100. HR@10 and NDCG@10,
    averaged over users. Tied scores count as their expected value under a random order, so a
    constant scorer gets chance level, never a perfect score.
``temporal``
    One global time split: interactions at or after the 80% time quantile are the test. Users
    must have training interactions to be evaluated; every item the user has not interacted with
    in training is ranked. Recall@20 = hits / min(20, |test items|) and NDCG@20.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.evaluation.recs.data import Interactions, latest_per_user, split_by_time

__all__ = [
    "N_NEGATIVES",
    "PRIMARY",
    "PROTOCOLS",
    "SECONDARY",
    "TEST_FRACTION",
    "LooSplit",
    "TemporalSplit",
    "full_ranking_metrics",
    "leave_one_out",
    "make_split",
    "sampled_metrics",
    "temporal",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

PROTOCOLS = ("loo", "temporal")
N_NEGATIVES = 99
TEST_FRACTION = 0.2
PRIMARY = {"loo": "hr_at_10", "temporal": "recall_at_20"}
SECONDARY = {"loo": "ndcg_at_10", "temporal": "ndcg_at_20"}


# -- protocols --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LooSplit:
    """Leave-one-out split: ``candidates[r, 0]`` is user ``users[r]``'s held-out item."""

    train: Interactions
    users: I64
    candidates: I64  # (n_eval_users, 1 + n_negatives)

    @property
    def positives(self) -> I64:
        return self.candidates[:, 0]


@dataclass(frozen=True)
class TemporalSplit:
    """Global time split: ``truth[r]`` are the test items of user ``users[r]``."""

    train: Interactions
    users: I64
    truth: list[I64]
    cutoff: int  # first test timestamp


def leave_one_out(data: Interactions, seed: int = 0, n_negatives: int = N_NEGATIVES) -> LooSplit:
    """Hold out each user's latest interaction and sample negatives for it.

    Parameters
    ----------
    data
        All interactions.
    seed
        Seed of the negative sampler (users are visited in index order, so the draw is fixed).
    n_negatives
        Negatives per user, drawn without replacement from the items the user never
        interacted with (in ``data``). Users with fewer such items, or with a single
        interaction, are not evaluated and keep all their interactions in training.

    Returns
    -------
    LooSplit

    Examples
    --------
    >>> import numpy as np
    >>> d = Interactions(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2]), np.array([1, 2, 1, 1]),
    ...                  np.array(["a", "b"]), np.array(["x", "y", "z", "w"]))
    >>> s = leave_one_out(d, n_negatives=2)
    >>> s.users.tolist(), s.positives.tolist(), s.train.n_interactions
    ([0, 1], [1, 2], 2)
    """
    held = latest_per_user(data.users, data.items, data.timestamps)
    X = data.to_csr()
    rng = np.random.default_rng(seed)
    users: list[int] = []
    rows: list[I64] = []
    keep_held = np.zeros(len(held), dtype=bool)
    idx_held = np.flatnonzero(held)
    for k in idx_held[np.argsort(data.users[idx_held], kind="stable")]:
        u = int(data.users[k])
        unseen = np.ones(data.n_items, dtype=bool)
        unseen[X.indices[X.indptr[u] : X.indptr[u + 1]]] = False
        pool = np.flatnonzero(unseen)
        if len(pool) < n_negatives:
            continue
        negs = rng.choice(pool, size=n_negatives, replace=False)
        users.append(u)
        rows.append(np.concatenate([[data.items[k]], negs]).astype(np.int64))
        keep_held[k] = True
    cands = np.vstack(rows) if rows else np.zeros((0, 1 + n_negatives), dtype=np.int64)
    return LooSplit(data.subset(~keep_held), np.asarray(users, dtype=np.int64), cands)


def temporal(data: Interactions, test_fraction: float = TEST_FRACTION) -> TemporalSplit:
    """Global time split; only users with training interactions are evaluated.

    Examples
    --------
    >>> import numpy as np
    >>> d = Interactions(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 0]),
    ...                  np.array([1, 5, 2, 3, 6]), np.array(["a", "b", "c"]),
    ...                  np.array(["x", "y", "z"]))
    >>> s = temporal(d, 0.4)
    >>> s.users.tolist(), [t.tolist() for t in s.truth], s.cutoff
    ([0], [[1]], 5)
    """
    test = split_by_time(data.timestamps, test_fraction)
    train = data.subset(~test)
    if not test.any():
        return TemporalSplit(train, np.zeros(0, dtype=np.int64), [], int(data.timestamps.max()))
    cutoff = int(data.timestamps[test].min())
    in_train = np.zeros(data.n_users, dtype=bool)
    in_train[train.users] = True
    X = train.to_csr()
    tu, ti = data.users[test], data.items[test]
    keep = in_train[tu]
    tu, ti = tu[keep], ti[keep]
    if len(tu) == 0:
        return TemporalSplit(train, np.zeros(0, dtype=np.int64), [], cutoff)
    order = np.lexsort((ti, tu))
    tu, ti = tu[order], ti[order]
    users, starts = np.unique(tu, return_index=True)
    truth: list[I64] = []
    for u, items in zip(users, np.split(ti, starts[1:]), strict=True):
        seen = X.indices[X.indptr[u] : X.indptr[u + 1]]
        truth.append(np.setdiff1d(items, seen).astype(np.int64))
    ok = np.array([len(t) > 0 for t in truth], dtype=bool)
    return TemporalSplit(
        train, users[ok].astype(np.int64), [t for t, k in zip(truth, ok, strict=True) if k], cutoff
    )


# -- metrics ----------------------------------------------------------------------------------
def _discount(positions: F64) -> F64:
    return np.asarray(1.0 / np.log2(positions + 2.0), dtype=np.float64)


def sampled_metrics(scores: NDArray[Any], k: int = 10) -> tuple[F64, F64]:
    """Per-user HR@k and NDCG@k when column 0 holds the positive's score.

    Ties are resolved in expectation: with ``g`` negatives scoring above the positive and ``t``
    equal to it, the positive's 0-based position is uniform on ``g .. g + t``.

    Examples
    --------
    >>> import numpy as np
    >>> hr, ndcg = sampled_metrics(np.array([[0.9, 0.1, 0.2], [0.1, 0.5, 0.9], [1, 1, 0]]), k=2)
    >>> hr.tolist()
    [1.0, 0.0, 1.0]
    >>> [round(x, 4) for x in ndcg.tolist()]
    [1.0, 0.0, 0.8155]
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = s[:, :1]
    greater = (s[:, 1:] > pos).sum(axis=1)
    ties = (s[:, 1:] == pos).sum(axis=1)
    hr = np.zeros(len(s))
    ndcg = np.zeros(len(s))
    disc = _discount(np.arange(k, dtype=np.float64))
    cum = np.concatenate([[0.0], np.cumsum(disc)])
    lo = np.minimum(greater, k)
    hi = np.minimum(greater + ties + 1, k)  # exclusive end of positions inside the top k
    inside = np.maximum(hi - lo, 0)
    hr = inside / (ties + 1.0)
    ndcg = (cum[hi] - cum[lo]) / (ties + 1.0)
    return hr, ndcg


def full_ranking_metrics(
    recommended: NDArray[np.int64], truth: Sequence[NDArray[np.int64]], k: int = 20
) -> tuple[F64, F64]:
    """Per-user Recall@k (hits / min(k, |truth|)) and NDCG@k of top-k lists.

    Examples
    --------
    >>> import numpy as np
    >>> rec = np.array([[3, 1, 2], [0, 4, 5]])
    >>> r, n = full_ranking_metrics(rec, [np.array([1, 9]), np.array([7])], k=3)
    >>> r.tolist()
    [0.5, 0.0]
    >>> round(float(n[0]), 4)  # hit at position 1: (1/log2 3) / (1 + 1/log2 3)
    0.3869
    """
    disc = _discount(np.arange(k, dtype=np.float64))
    recall = np.zeros(len(truth))
    ndcg = np.zeros(len(truth))
    for r, items in enumerate(truth):
        if len(items) == 0:
            continue
        hits = np.isin(recommended[r, :k], items)
        ideal = min(k, len(items))
        recall[r] = hits.sum() / ideal
        ndcg[r] = (disc[: len(hits)] * hits).sum() / disc[:ideal].sum()
    return recall, ndcg


def make_split(data: Interactions, protocol: str, seed: int) -> LooSplit | TemporalSplit:
    return leave_one_out(data, seed=seed) if protocol == "loo" else temporal(data)
