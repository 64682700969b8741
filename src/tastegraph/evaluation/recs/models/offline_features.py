"""The offline TasteGraph's first stage: its generators, time statistics and ranking features."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.evaluation.recs.data import to_csr
from tastegraph.evaluation.recs.models.base import DAY, F32, I64
from tastegraph.evaluation.recs.models.factorisation import ALS
from tastegraph.evaluation.recs.models.linear import EASE
from tastegraph.evaluation.recs.models.neighbours import ItemKNN, cosine_topk

__all__ = ["FEATURES", "Stage", "StageParams", "fit_listwise_linear", "ranks", "user_tail"]


class StageParams(Protocol):
    """The hyperparameters the first stage reads (``TasteGraph`` has them all)."""

    ease_lambda: float
    knn_k: int
    als_factors: int
    als_regularization: float
    als_alpha: float
    als_iterations: int
    n_candidates: int
    session_gap_hours: float
    recent_days: float
    seed: int
    num_threads: int


def _sessions(X: sp.csr_matrix, T: sp.csr_matrix, gap: float) -> sp.csr_matrix:
    """Sessions x items: a user's interactions split wherever they pause longer than ``gap``."""
    rows: list[I64] = []
    cols: list[I64] = []
    n_sessions = 0
    for u in range(X.shape[0]):
        lo, hi = T.indptr[u], T.indptr[u + 1]
        if hi == lo:
            continue
        t = T.data[lo:hi]
        items = T.indices[lo:hi]
        order = np.argsort(t, kind="stable")
        t, items = t[order], items[order]
        sid = np.concatenate([[0], np.cumsum(np.diff(t) > gap)])
        rows.append(sid + n_sessions)
        cols.append(items.astype(np.int64))
        n_sessions += int(sid[-1]) + 1
    if not rows:
        return sp.csr_matrix((0, X.shape[1]), dtype=np.float32)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return to_csr(r, c, n_sessions, X.shape[1])


def ranks(scores: F32) -> F32:
    """0-based descending rank of every entry within its row."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return ranks.astype(np.float32)


FEATURES = (
    "ease",
    "ease_rank",
    "knn",
    "knn_rank",
    "als",
    "als_rank",
    "ease_recent",
    "ease_last5",
    "ease_last20",
    "knn_last5",
    "knn_last20",
    "session_recent",
    "sequence_last5",
    "pop",
    "pop_rank",
    "pop_7d",
    "pop_30d",
    "item_age_days",
    "item_idle_days",
    "pop_30d_end",
    "item_age_end_days",
    "user_n",
    "user_idle_days",
    "user_pop_mean",
    "pop_gap",
    "n_sources",
)
_RANKED = ("ease", "knn", "als")  # generators whose rank among unseen items is a feature
_PROPOSERS = ("ease_last20", "pop_30d", "session_recent", "sequence_last5")  # extra candidates


def _followers(T: sp.csr_matrix, window: float, reach: int = 20) -> sp.csr_matrix:
    """Directed co-occurrence: ``F[j, i]`` counts users who took ``i`` within ``window`` seconds
    after ``j`` (strictly later, so items sharing a timestamp have no order), cosine-normalised.

    Only the next ``reach`` interactions of each one are paired, which bounds the cost at
    ``reach`` pairs per interaction however long a session is.
    """
    n_users, n_items = T.shape
    u = np.repeat(np.arange(n_users), np.diff(T.indptr))
    order = np.lexsort((T.indices, T.data, u))
    u, t, it = u[order], T.data[order], T.indices[order].astype(np.int64)
    rows: list[I64] = []
    cols: list[I64] = []
    for d in range(1, reach + 1):
        ok = (u[d:] == u[:-d]) & (t[d:] > t[:-d]) & (t[d:] - t[:-d] <= window)
        rows.append(it[:-d][ok])
        cols.append(it[d:][ok])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    M = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_items, n_items))
    counts = np.bincount(T.indices, minlength=n_items).astype(np.float64)
    inv = sp.diags((1.0 / np.sqrt(np.maximum(counts, 1.0))).astype(np.float32))
    return sp.csr_matrix(inv @ M @ inv, dtype=np.float32)


def fit_listwise_linear(
    Z: NDArray[np.float64], y: NDArray[np.float32], sizes: I64, l2: float
) -> NDArray[np.float64]:
    """Weights of a linear scorer trained with the listwise softmax loss (ListNet-style).

    Parameters
    ----------
    Z
        Standardised features, groups in consecutive rows.
    y
        1 for positives, 0 otherwise; every group holds at least one positive.
    sizes
        Rows per group.
    l2
        Ridge penalty on the weights.

    Returns
    -------
    numpy.ndarray
        ``w`` minimising ``mean_g[-mean_{pos in g} log softmax_g(Z w)_pos] + l2 |w|^2``.

    Examples
    --------
    >>> Z = np.array([[1.0], [0.0], [0.0], [1.0], [0.0]]); y = np.array([1, 0, 0, 1, 0.0])
    >>> bool(fit_listwise_linear(Z, y, np.array([2, 3]), 0.01)[0] > 0)
    True
    """
    from scipy.optimize import minimize

    n_groups = len(sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gid = np.repeat(np.arange(n_groups), sizes)
    yy = y.astype(np.float64)
    target = yy / np.add.reduceat(yy, starts)[gid]

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        s = Z @ w
        m = np.maximum.reduceat(s, starts)
        e = np.exp(s - m[gid])
        total = np.add.reduceat(e, starts)
        p = e / total[gid]
        value = float(np.sum(np.log(total) + m) - np.sum(target * s)) / n_groups
        grad = Z.T @ (p - target) / n_groups
        return value + l2 * float(w @ w), grad + 2.0 * l2 * w

    w0 = np.zeros(Z.shape[1])
    result = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 300})
    return np.asarray(result.x, dtype=np.float64)


def user_tail(users: I64, items: I64, times: I64, fraction: float) -> NDArray[np.bool_]:
    """Mask of each user's latest ``fraction`` of interactions (at least one; users with two or
    more), ordered by time then item index."""
    order = np.lexsort((items, times, users))
    u = users[order]
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos_from_end = counts[u] - (np.arange(len(u)) - starts[u])  # 1 = latest
    n_held = np.maximum(1, np.floor(fraction * counts[u]))
    held = (pos_from_end <= n_held) & (counts[u] >= 2)
    mask = np.zeros(len(users), dtype=bool)
    mask[order[held]] = True
    return mask


class Stage:
    """Generators and time statistics fitted on one training matrix; features are read from it.

    Time features are relative to each user's latest training interaction ("the user's now"),
    so the same code serves leave-one-out (users at different times) and a global time split.
    Items sharing a timestamp are never ordered among themselves, so no feature can learn how
    a protocol breaks ties.
    """

    def __init__(self, X: sp.csr_matrix, T: sp.csr_matrix | None, p: StageParams) -> None:
        self.X = X
        n_users, n_items = X.shape
        self.n_candidates = int(p.n_candidates)
        self.ease = EASE(lambda_=p.ease_lambda).fit(X)
        self.knn = ItemKNN(k=p.knn_k).fit(X)
        self.als = ALS(
            factors=p.als_factors,
            regularization=p.als_regularization,
            alpha=p.als_alpha,
            iterations=p.als_iterations,
            seed=p.seed,
            num_threads=p.num_threads,
        ).fit(X)
        counts = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
        self.log_pop = np.log1p(counts).astype(np.float32)
        self.pop_rank = ranks(counts[None, :].astype(np.float32))[0]
        if T is None:
            T = X.copy().astype(np.float64)
            T.data[:] = 0.0
        self.T = T
        self.t_end = float(T.data.max()) if T.nnz else 0.0
        t_min = float(T.data.min()) if T.nnz else 0.0
        # per-user "now": the latest training interaction (the global end for users without any)
        self.t_user = np.full(n_users, self.t_end)
        has = np.diff(T.indptr) > 0
        self.t_user[has] = np.maximum.reduceat(T.data, T.indptr[:-1][has])
        Tc = T.tocsc()
        self.item_first = np.full(n_items, self.t_end)
        self.item_last = np.full(n_items, t_min)
        hasi = np.diff(Tc.indptr) > 0
        self.item_first[hasi] = np.minimum.reduceat(Tc.data, Tc.indptr[:-1][hasi])
        self.item_last[hasi] = np.maximum.reduceat(Tc.data, Tc.indptr[:-1][hasi])
        # Cumulative daily counts per item, so "interactions in the window before t" is a lookup;
        # the bins widen on long histories to keep the table at most 2048 columns.
        self.bin_width = max(DAY, (self.t_end - t_min) / 2048.0)
        self.t_min = t_min
        n_bins = int((self.t_end - t_min) // self.bin_width) + 1
        bins = ((Tc.data - t_min) // self.bin_width).astype(np.int64)
        item_of = np.repeat(np.arange(n_items), np.diff(Tc.indptr))
        hist = np.zeros((n_items, n_bins + 1), dtype=np.int32)
        np.add.at(hist, (item_of, bins + 1), 1)
        self.cum = np.cumsum(hist, axis=1, dtype=np.int32)
        span = max(1, round(30 * DAY / self.bin_width))
        self.log_pop_30d_end = np.log1p(self.cum[:, -1] - self.cum[:, max(0, n_bins - span)])
        n_u = np.diff(X.indptr).astype(np.float64)
        self.user_n = np.log1p(n_u).astype(np.float32)
        sums = np.asarray(X @ self.log_pop.astype(np.float64)).ravel()
        self.user_pop_mean = (sums / np.maximum(n_u, 1.0)).astype(np.float32)
        gap = float(p.session_gap_hours) * 3600.0
        self.session_sim = cosine_topk(_sessions(X, T, gap), int(p.knn_k))
        self.followers = _followers(T, gap)
        self.recent_tau = float(p.recent_days) * DAY

    def _window(self, users: I64, days: float) -> F32:
        """Interactions per item in the ``days`` before each user's now (users x items)."""
        b_now = ((self.t_user[users] - self.t_min) // self.bin_width).astype(np.int64) + 1
        b_start = np.maximum(b_now - max(1, round(days * DAY / self.bin_width)), 0)
        return (self.cum[:, b_now] - self.cum[:, b_start]).T.astype(np.float32)

    def _profiles(self, users: I64) -> dict[str, sp.csr_matrix]:
        """Row-normalised weights over each user's items: recency-decayed, and last-n."""
        Tu = self.T[users]
        counts = np.diff(Tu.indptr)
        age = np.repeat(self.t_user[users], counts) - Tu.data
        out = {"recent": sp.csr_matrix((np.exp(-age / self.recent_tau), Tu.indices, Tu.indptr))}
        for n in (5, 20):
            # The n latest, widened to everything tied with the n-th, so ties stay unordered.
            keep = np.zeros(len(Tu.data), dtype=np.float64)
            for r in range(len(users)):
                lo, hi = Tu.indptr[r], Tu.indptr[r + 1]
                if hi > lo:
                    t = Tu.data[lo:hi]
                    kth = np.partition(t, max(0, hi - lo - n))[max(0, hi - lo - n)]
                    keep[lo:hi] = t >= kth
            out[f"last{n}"] = sp.csr_matrix((keep, Tu.indices, Tu.indptr))
        for key, W in out.items():
            W = sp.csr_matrix(W, shape=Tu.shape)
            norm = np.asarray(W.sum(axis=1)).ravel()
            out[key] = sp.csr_matrix(sp.diags(1.0 / np.maximum(norm, 1e-12)) @ W)
        return out

    def rows(self, users: I64) -> dict[str, F32]:
        """Dense users x items matrices: generator scores and ranks (among unseen items)."""
        seen = self.X[users]
        r_seen = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
        out: dict[str, F32] = {}
        for name, model in (("ease", self.ease), ("knn", self.knn), ("als", self.als)):
            sc = model.score(users)
            masked = sc.copy()
            masked[r_seen, seen.indices] = -np.inf
            out[name] = sc
            out[name + "_rank"] = ranks(masked)
        prof = self._profiles(users)
        B = self.ease.weights_
        S = self.knn.similarity_

        def dense(m: Any) -> F32:
            return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float32)

        out["ease_recent"] = dense(prof["recent"] @ B)
        out["ease_last5"] = dense(prof["last5"] @ B)
        out["ease_last20"] = dense(prof["last20"] @ B)
        out["knn_last5"] = dense(prof["last5"] @ S)
        out["knn_last20"] = dense(prof["last20"] @ S)
        out["session_recent"] = dense(prof["recent"] @ self.session_sim)
        out["sequence_last5"] = dense(prof["last5"] @ self.followers)
        out["pop_7d"] = self._window(users, 7.0)
        out["pop_30d"] = self._window(users, 30.0)
        return out

    def candidates(self, users: I64, rows: dict[str, F32]) -> tuple[list[I64], F32]:
        """Union of each generator's top ``n_candidates`` unseen items, and per-item hit counts."""
        n_items = self.X.shape[1]
        k = min(self.n_candidates, n_items)
        seen = self.X[users]
        r_seen = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
        hits = np.zeros((len(users), n_items), dtype=np.float32)
        for name in _RANKED:
            hits += rows[name + "_rank"] < k
        for name in _PROPOSERS:
            sc = rows[name].copy()
            sc[r_seen, seen.indices] = -np.inf
            hits += ranks(sc) < k
        popular = np.zeros(n_items, dtype=np.float32)
        popular[self.pop_rank < k] = 1.0
        trending = np.zeros(n_items, dtype=np.float32)
        trending[np.argsort(-self.log_pop_30d_end, kind="stable")[:k]] = 1.0
        hits += popular[None, :] + trending[None, :]
        hits[r_seen, seen.indices] = 0.0
        return [np.flatnonzero(h) for h in hits], hits

    def features(
        self, users: I64, items: list[I64], rows: dict[str, F32], hits: F32 | None = None
    ) -> F32:
        """Feature matrix (one row per user-item pair, users in order) named by ``FEATURES``."""
        r = np.repeat(np.arange(len(users)), [len(i) for i in items])
        it = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
        u = users[r]
        now = self.t_user[u]
        if hits is None:
            _, hits = self.candidates(users, rows)
        cols = {name: rows[name][r, it] for name in rows}
        for name in ("ease_rank", "knn_rank", "als_rank", "pop_7d", "pop_30d"):
            cols[name] = np.log1p(cols[name])
        cols["pop"] = self.log_pop[it]
        cols["pop_rank"] = np.log1p(self.pop_rank[it])
        cols["item_age_days"] = ((now - self.item_first[it]) / DAY).astype(np.float32)
        cols["item_idle_days"] = ((now - self.item_last[it]) / DAY).astype(np.float32)
        cols["pop_30d_end"] = self.log_pop_30d_end[it]
        cols["item_age_end_days"] = ((self.t_end - self.item_first[it]) / DAY).astype(np.float32)
        cols["user_n"] = self.user_n[u]
        cols["user_idle_days"] = ((self.t_end - now) / DAY).astype(np.float32)
        cols["user_pop_mean"] = self.user_pop_mean[u]
        cols["pop_gap"] = self.log_pop[it] - self.user_pop_mean[u]
        cols["n_sources"] = hits[r, it]
        return np.column_stack([cols[name] for name in FEATURES]).astype(np.float32)
