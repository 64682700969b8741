"""Recommenders from implicit feedback behind one estimator API.

Every model follows the same shape (scikit-learn conventions, implicit's ``recommend``):

- ``Model(**params)`` stores hyperparameters only;
- ``fit(interactions, timestamps=None)`` takes a users x items ``scipy.sparse.csr_matrix`` (any
  non-zero counts as one interaction) and optionally a matrix of the same shape holding each
  interaction's Unix timestamp, and returns ``self``; learned attributes end in ``_``;
- ``score(user_ids, item_ids=None)`` gives a ``(len(user_ids), n)`` float32 array: every item when
  ``item_ids`` is None, the listed items for every user when it is 1-D, or one row of items per
  user when it is 2-D;
- ``recommend(user_ids, n, exclude_seen=True)`` gives ``(items, scores)``, each
  ``(len(user_ids), n)``, best first.

Models are pure: no clock (time features are relative to the latest training timestamp), no I/O;
``save``/``load`` write ``.npz`` files (never pickle).

Peers: :class:`Popularity`, :class:`ItemKNN`, :class:`EASE`, :class:`ALS`, :class:`BPR`.
tastegraph's own: :class:`TasteGraph`, candidate generation from several generators followed by a
LightGBM LambdaRank ranker trained on a validation split carved from the training data.

Example
-------
>>> import numpy as np, scipy.sparse as sp
>>> X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]], dtype=np.float32))
>>> model = EASE(lambda_=1.0).fit(X)
>>> items, scores = model.recommend([0], n=1)
>>> int(items[0, 0])
2
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput
from tastegraph.recs.data import latest_per_user, split_by_time, to_csr

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "MODELS",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "TasteGraph",
    "load",
    "make_model",
]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

_R = TypeVar("_R", bound="Recommender")

_FORMAT = "tastegraph.recs/1"  # bump when the saved layout changes; old files are refused
_BATCH = 512  # users scored at once: bounds memory at 512 x n_items floats per generator
_DAY = 86400.0


def _as_csr(interactions: Any) -> sp.csr_matrix:
    """Binary float32 CSR copy of a users x items matrix."""
    if not sp.issparse(interactions):
        interactions = sp.csr_matrix(np.asarray(interactions))
    X = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
    X.eliminate_zeros()
    X.sum_duplicates()
    X.data[:] = 1.0
    X.sort_indices()
    return X


def _as_time_csr(timestamps: Any, X: sp.csr_matrix) -> sp.csr_matrix:
    """Timestamps aligned with the pattern of ``X`` (float64 seconds)."""
    T = sp.csr_matrix(timestamps, dtype=np.float64, copy=True)
    if T.shape != X.shape:
        raise InvalidInput(
            f"timestamps have shape {T.shape}, interactions {X.shape}",
            hint="pass a matrix with the same users x items shape",
        )
    T.sort_indices()
    # Align to X's pattern: a timestamp of 0 would otherwise vanish from the sparse structure.
    aligned = X.copy().astype(np.float64)
    aligned.data[:] = np.asarray(T[X.nonzero()]).ravel() if X.nnz else aligned.data
    return aligned


def _top_n(scores: F32, n: int) -> tuple[I64, F32]:
    """Indices and values of the ``n`` best per row; ties go to the lower item index."""
    n = min(n, scores.shape[1])
    if n < scores.shape[1]:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        # argpartition is not stable on ties: re-select on (score, -index) among a safe superset.
        kth = np.take_along_axis(scores, part, 1).min(axis=1, keepdims=True)
        cand_mask = scores >= kth
        idx = np.empty((scores.shape[0], n), dtype=np.int64)
        for r in range(scores.shape[0]):
            c = np.flatnonzero(cand_mask[r])
            order = np.lexsort((c, -scores[r, c]))[:n]
            idx[r] = c[order]
    else:
        idx = np.lexsort(
            (np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1
        ).astype(np.int64)
    return idx, np.take_along_axis(scores, idx, 1)


class Recommender:
    """Base class: parameter handling, batching, ``score``/``recommend`` and ``.npz`` saving.

    Subclasses implement ``_fit(X, T)`` and ``_score_rows(users)`` (dense scores over all items).
    """

    name: ClassVar[str] = "recommender"

    seen_: sp.csr_matrix
    n_users_: int
    n_items_: int

    # -- parameters -------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as passed to ``__init__``."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self: _R, **params: Any) -> _R:
        for key, value in params.items():
            if key not in self._param_names():
                raise InvalidInput(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- estimator API ----------------------------------------------------------------------
    def fit(self: _R, interactions: sp.csr_matrix, timestamps: sp.csr_matrix | None = None) -> _R:
        """Learn from a users x items matrix (and optionally per-interaction timestamps)."""
        X = _as_csr(interactions)
        T = _as_time_csr(timestamps, X) if timestamps is not None else None
        self.seen_ = X
        self.n_users_, self.n_items_ = X.shape
        self._fit(X, T)
        return self

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        raise NotImplementedError

    def _score_rows(self, users: I64) -> F32:
        raise NotImplementedError

    def _check_users(self, user_ids: Any) -> I64:
        if not hasattr(self, "seen_"):
            raise InvalidInput(f"{type(self).__name__} is not fitted", hint="call fit() first")
        users = np.asarray(user_ids, dtype=np.int64).ravel()
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise InvalidInput(
                f"user index out of range 0..{self.n_users_ - 1}",
                hint="users must appear in the training matrix",
            )
        return users

    def score(self, user_ids: Any, item_ids: Any = None) -> F32:
        """Scores of items for users (higher is better); see the module docstring for shapes."""
        users = self._check_users(user_ids)
        items = None if item_ids is None else np.asarray(item_ids, dtype=np.int64)
        if items is not None and items.ndim == 2 and len(items) != len(users):
            raise InvalidInput("2-D item_ids needs one row per user")
        out = []
        for start in range(0, len(users), _BATCH):
            sl = slice(start, start + _BATCH)
            out.append(self._score_batch(users[sl], None if items is None else items, sl))
        if not out:
            width = self.n_items_ if items is None else items.shape[-1]
            return np.zeros((0, width), dtype=np.float32)
        return np.vstack(out).astype(np.float32, copy=False)

    def _score_batch(self, users: I64, items: I64 | None, sl: slice) -> F32:
        rows = self._score_rows(users)
        if items is None:
            return rows
        if items.ndim == 1:
            return rows[:, items]
        return np.take_along_axis(rows, items[sl], 1)

    def recommend(self, user_ids: Any, n: int = 10, exclude_seen: bool = True) -> tuple[I64, F32]:
        """Top ``n`` items per user, best first (seen items get ``-inf`` when excluded)."""
        users = self._check_users(user_ids)
        all_items: list[I64] = []
        all_scores: list[F32] = []
        for start in range(0, len(users), _BATCH):
            ub = users[start : start + _BATCH]
            rows = np.array(self.score(ub), dtype=np.float32)
            if exclude_seen:
                seen = self.seen_[ub]
                rows[np.repeat(np.arange(len(ub)), np.diff(seen.indptr)), seen.indices] = -np.inf
            idx, val = _top_n(rows, n)
            all_items.append(idx)
            all_scores.append(val)
        if not all_items:
            return np.zeros((0, n), dtype=np.int64), np.zeros((0, n), dtype=np.float32)
        return np.vstack(all_items), np.vstack(all_scores)

    # -- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Learned arrays to save (names ending in ``_``)."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def save(self, path: Path | str) -> None:
        """Write params and learned arrays to a ``.npz`` file (sparse matrices as CSR parts)."""
        arrays: dict[str, Any] = {
            "__format__": np.array(_FORMAT),
            "__model__": np.array(self.name),
            "__params__": np.array(json.dumps(self.get_params(), sort_keys=True)),
        }
        for key, value in self._state().items():
            if sp.issparse(value):
                m = sp.csr_matrix(value)
                arrays[f"{key}:data"] = m.data
                arrays[f"{key}:indices"] = m.indices
                arrays[f"{key}:indptr"] = m.indptr
                arrays[f"{key}:shape"] = np.array(m.shape)
            else:
                arrays[key] = np.asarray(value)
        np.savez_compressed(Path(path), **arrays)

    def _restore(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def load(path: Path | str) -> Recommender:
    """Read a model written by :meth:`Recommender.save`."""
    with np.load(Path(path), allow_pickle=False) as npz:
        if "__format__" not in npz.files or str(npz["__format__"]) != _FORMAT:
            raise InvalidInput(
                f"{path}: not a {_FORMAT} model file", hint="save it again with this version"
            )
        name = str(npz["__model__"])
        params = json.loads(str(npz["__params__"]))
        model = make_model(name, **params)
        state: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {}
        for key in npz.files:
            if key.startswith("__"):
                continue
            if ":" in key:
                base, part = key.split(":", 1)
                parts.setdefault(base, {})[part] = npz[key]
            else:
                arr = npz[key]
                state[key] = arr.item() if arr.ndim == 0 and arr.dtype.kind in "iufbU" else arr
        for base, p in parts.items():
            state[base] = sp.csr_matrix(
                (p["data"], p["indices"], p["indptr"]), shape=tuple(p["shape"])
            )
    model._restore(state)
    return model


class Popularity(Recommender):
    """Most-interacted items first, the same list for every user."""

    name = "popularity"

    def __init__(self) -> None:
        pass

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        self.counts_ = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()

    def _score_rows(self, users: I64) -> F32:
        return np.broadcast_to(self.counts_, (len(users), self.n_items_)).copy()


def _cosine_topk(M: sp.csr_matrix, k: int, shrink: float = 0.0) -> sp.csr_matrix:
    """Item-item cosine similarity over the rows of ``M`` (rows x items), top ``k`` per column.

    Parameters
    ----------
    M
        Binary rows x items matrix (rows are users, or sessions).
    k
        Neighbours kept per item (``0`` keeps all).
    shrink
        Added to the norm product; damps similarities resting on few co-occurrences.

    Returns
    -------
    scipy.sparse.csr_matrix
        items x items, ``S[j, i]`` = similarity of ``i`` to ``j`` among ``i``'s ``k`` nearest
        neighbours, zero diagonal; ``profile @ S`` scores items from a user's items.
    """
    Mc = sp.csc_matrix(M, dtype=np.float32)
    norms = np.sqrt(np.asarray(Mc.multiply(Mc).sum(axis=0)).ravel()).astype(np.float32)
    n_items = M.shape[1]
    blocks = []
    step = 1024  # columns per block keeps the dense intermediate at n_items x 1024
    MT = Mc.T.tocsr()
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        co = (MT @ Mc[:, start:stop]).toarray()  # n_items x block
        denom = np.outer(norms, norms[start:stop]) + shrink + 1e-12
        sim = (co / denom).astype(np.float32)
        sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
        if 0 < k < n_items:
            drop = np.argpartition(-sim, k, axis=0)[k:]
            np.put_along_axis(sim, drop, 0.0, axis=0)
        blocks.append(sp.csc_matrix(sim))
    S = sp.hstack(blocks, format="csr") if blocks else sp.csr_matrix((n_items, n_items))
    S.eliminate_zeros()
    return S.astype(np.float32)


class ItemKNN(Recommender):
    """Item-based nearest neighbours with cosine similarity (Sarwar et al. 2001).

    Parameters
    ----------
    k
        Neighbours kept per item.
    shrink
        Shrinkage added to the cosine denominator.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=np.float32))
    >>> items, _ = ItemKNN(k=2).fit(X).recommend([2], n=1)  # user 2 took items 1 and 2
    >>> int(items[0, 0])
    0
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        self.k = k
        self.shrink = shrink

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        self.similarity_ = _cosine_topk(X, int(self.k), float(self.shrink))

    def _score_rows(self, users: I64) -> F32:
        return np.asarray((self.seen_[users] @ self.similarity_).toarray(), dtype=np.float32)


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck 2019), closed form.

    Solves ``min_B ||X - XB||^2 + lambda ||B||^2`` subject to ``diag(B) = 0``:
    ``P = (X^T X + lambda I)^-1``, ``B = -P / diag(P)`` column-wise, ``diag(B) = 0``.

    Parameters
    ----------
    lambda_
        L2 regularisation (larger = smoother, favours popular items).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32))
    >>> EASE(lambda_=0.5).fit(X).weights_.shape
    (3, 3)
    """

    name = "ease"

    def __init__(self, lambda_: float = 500.0) -> None:
        self.lambda_ = lambda_

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += float(self.lambda_)
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        self.weights_ = B.astype(np.float32)

    def _score_rows(self, users: I64) -> F32:
        return np.asarray(self.seen_[users] @ self.weights_, dtype=np.float32)


def _blas_single_thread() -> Any:
    """Limit BLAS threads while implicit runs: it parallelises itself and warns otherwise."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class ALS(Recommender):
    """Weighted matrix factorisation by alternating least squares (Hu, Koren, Volinsky 2008).

    Wraps ``implicit.cpu.als.AlternatingLeastSquares``; confidence is ``1 + alpha``.

    Parameters
    ----------
    factors, regularization, alpha, iterations
        As in implicit.
    seed
        Random state for the initial factors.
    num_threads
        OpenMP threads (0 = all cores).
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        with _blas_single_thread():
            model = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                random_state=int(self.seed),
                num_threads=int(self.num_threads),
            )
            model.fit(X, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score_rows(self, users: I64) -> F32:
        return self.user_factors_[users] @ self.item_factors_.T


class BPR(Recommender):
    """Bayesian Personalised Ranking matrix factorisation (Rendle et al. 2009).

    Wraps ``implicit.cpu.bpr.BayesianPersonalizedRanking``. One thread by default: its SGD is
    lock-free across threads, so only a single thread gives the same factors for the same seed.

    Parameters
    ----------
    factors, learning_rate, regularization, iterations
        As in implicit.
    seed
        Random state.
    num_threads
        OpenMP threads.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with _blas_single_thread():
            model = BayesianPersonalizedRanking(
                factors=int(self.factors),
                learning_rate=float(self.learning_rate),
                regularization=float(self.regularization),
                iterations=int(self.iterations),
                random_state=int(self.seed),
                num_threads=int(self.num_threads),
            )
            model.fit(X, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score_rows(self, users: I64) -> F32:
        return self.user_factors_[users] @ self.item_factors_.T


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


def _ranks(scores: F32) -> F32:
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


def _fit_listwise_linear(
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
    >>> bool(_fit_listwise_linear(Z, y, np.array([2, 3]), 0.01)[0] > 0)
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


def _user_tail(users: I64, items: I64, times: I64, fraction: float) -> NDArray[np.bool_]:
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


class _Stage:
    """Generators and time statistics fitted on one training matrix; features are read from it.

    Time features are relative to each user's latest training interaction ("the user's now"),
    so the same code serves leave-one-out (users at different times) and a global time split.
    Items sharing a timestamp are never ordered among themselves, so no feature can learn how
    a protocol breaks ties.
    """

    def __init__(self, X: sp.csr_matrix, T: sp.csr_matrix | None, p: TasteGraph) -> None:
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
        self.pop_rank = _ranks(counts[None, :].astype(np.float32))[0]
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
        self.bin_width = max(_DAY, (self.t_end - t_min) / 2048.0)
        self.t_min = t_min
        n_bins = int((self.t_end - t_min) // self.bin_width) + 1
        bins = ((Tc.data - t_min) // self.bin_width).astype(np.int64)
        item_of = np.repeat(np.arange(n_items), np.diff(Tc.indptr))
        hist = np.zeros((n_items, n_bins + 1), dtype=np.int32)
        np.add.at(hist, (item_of, bins + 1), 1)
        self.cum = np.cumsum(hist, axis=1, dtype=np.int32)
        span = max(1, round(30 * _DAY / self.bin_width))
        self.log_pop_30d_end = np.log1p(self.cum[:, -1] - self.cum[:, max(0, n_bins - span)])
        n_u = np.diff(X.indptr).astype(np.float64)
        self.user_n = np.log1p(n_u).astype(np.float32)
        sums = np.asarray(X @ self.log_pop.astype(np.float64)).ravel()
        self.user_pop_mean = (sums / np.maximum(n_u, 1.0)).astype(np.float32)
        gap = float(p.session_gap_hours) * 3600.0
        self.session_sim = _cosine_topk(_sessions(X, T, gap), int(p.knn_k))
        self.followers = _followers(T, gap)
        self.recent_tau = float(p.recent_days) * _DAY

    def _window(self, users: I64, days: float) -> F32:
        """Interactions per item in the ``days`` before each user's now (users x items)."""
        b_now = ((self.t_user[users] - self.t_min) // self.bin_width).astype(np.int64) + 1
        b_start = np.maximum(b_now - max(1, round(days * _DAY / self.bin_width)), 0)
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
            out[name + "_rank"] = _ranks(masked)
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
            hits += _ranks(sc) < k
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
        cols["item_age_days"] = ((now - self.item_first[it]) / _DAY).astype(np.float32)
        cols["item_idle_days"] = ((now - self.item_last[it]) / _DAY).astype(np.float32)
        cols["pop_30d_end"] = self.log_pop_30d_end[it]
        cols["item_age_end_days"] = ((self.t_end - self.item_first[it]) / _DAY).astype(np.float32)
        cols["user_n"] = self.user_n[u]
        cols["user_idle_days"] = ((self.t_end - now) / _DAY).astype(np.float32)
        cols["user_pop_mean"] = self.user_pop_mean[u]
        cols["pop_gap"] = self.log_pop[it] - self.user_pop_mean[u]
        cols["n_sources"] = hits[r, it]
        return np.column_stack([cols[name] for name in FEATURES]).astype(np.float32)


class TasteGraph(Recommender):
    """tastegraph's recommender: candidate generators, then a learned LambdaRank ranker.

    Stage one runs several generators on the training matrix -- EASE, cosine ItemKNN, ALS,
    all-time popularity, popularity in the 30 days before the user's latest activity, EASE
    from the user's 20 latest items, similarity to the user's recent sessions, and "what others
    took next" after the user's 5 latest items -- and keeps the union of each one's top
    ``n_candidates`` unseen items. Stage two scores user-item pairs with a LightGBM LambdaRank
    model over ``FEATURES``: each generator's score and rank, EASE and ItemKNN scores from the
    user's latest 5 and 20 items and from a recency-decayed profile, session co-occurrence,
    directed "taken next" co-occurrence, item popularity (all-time, in the 7 and 30 days before
    the user's latest activity, and in the last 30 days of the data), item age and idle time,
    user activity and staleness, the user's taste for popular items, and how many generators
    proposed the item. Items that share a timestamp are never ordered among themselves, so no
    feature can learn how an evaluation protocol breaks ties.

    The ranker never sees test data: its examples come from a validation split carved from the
    training matrix, with the same rule as the task it will serve, repeated ``n_val_rounds``
    times on what is left (``val_split="last"``: each user's latest interaction, as in
    leave-one-out; ``"time"``: the latest ``val_fraction`` of the training period, as in a
    global time split; ``"tail"``: each user's latest ``val_fraction`` of interactions). For
    each round the generators are fitted on the rest; early stopping watches NDCG@``cutoff`` on
    a fifth of the users. The generators are then refitted on the whole matrix for inference.

    Parameters
    ----------
    ease_lambda, knn_k, als_factors, als_regularization, als_alpha, als_iterations
        Generator hyperparameters (tune them as for the standalone peers).
    n_candidates
        Items each generator proposes per user.
    train_groups
        ``"candidates"`` (rank what the generators propose: for full-catalog recommendation)
        or ``"sampled"`` (rank each positive among ``n_random`` random unseen items: for
        re-ranking given lists, as in sampled-negative evaluation).
    n_random
        Random unseen items added to each training group.
    val_split, val_fraction, n_val_rounds
        How the ranker's training examples are carved from the training data.
    session_gap_hours
        A pause longer than this starts a new session (and bounds "taken next").
    recent_days
        Time constant of the recency weighting of a user's items.
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM ranker settings (``n_estimators`` is a ceiling; early stopping picks the rounds).
    cutoff
        The ``k`` of the NDCG@k that early stopping watches.
    seed, num_threads
        Randomness and parallelism.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> rng = np.random.default_rng(0)
    >>> X = sp.csr_matrix((rng.random((60, 30)) < 0.2).astype(np.float32))
    >>> model = TasteGraph(n_estimators=20, als_iterations=2).fit(X)
    >>> model.recommend([0, 1], n=5)[0].shape
    (2, 5)
    """

    name = "tastegraph"

    def __init__(
        self,
        ease_lambda: float = 500.0,
        knn_k: int = 100,
        als_factors: int = 64,
        als_regularization: float = 0.05,
        als_alpha: float = 2.0,
        als_iterations: int = 15,
        n_candidates: int = 50,
        train_groups: str = "candidates",
        n_random: int = 0,
        val_split: str = "last",
        val_fraction: float = 0.2,
        n_val_rounds: int = 2,
        session_gap_hours: float = 1.0,
        recent_days: float = 7.0,
        objective: str = "lambdarank",
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        cutoff: int = 10,
        boost_from_base: bool = True,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.ease_lambda = ease_lambda
        self.knn_k = knn_k
        self.als_factors = als_factors
        self.als_regularization = als_regularization
        self.als_alpha = als_alpha
        self.als_iterations = als_iterations
        self.n_candidates = n_candidates
        self.train_groups = train_groups
        self.n_random = n_random
        self.val_split = val_split
        self.val_fraction = val_fraction
        self.n_val_rounds = n_val_rounds
        self.session_gap_hours = session_gap_hours
        self.recent_days = recent_days
        self.objective = objective
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.cutoff = cutoff
        self.boost_from_base = boost_from_base
        self.seed = seed
        self.num_threads = num_threads

    # -- training ---------------------------------------------------------------------------
    def _holdout(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> NDArray[np.bool_]:
        """Mask over X's stored entries (CSR order) of the ranker's validation interactions."""
        coo_u = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)).astype(np.int64)
        # Ties on the timestamp are broken at random (seeded), not by item index as the
        # leave-one-out protocol does: a ranker trained on index-broken ties could learn that
        # the positive is the newest-listed item of its second, an artefact of the protocol.
        tie_key = np.random.default_rng(self.seed).permutation(X.shape[1])
        items = tie_key[X.indices].astype(np.int64)
        times = (T.data if T is not None else np.zeros(X.nnz)).astype(np.int64)
        if self.val_split == "last":
            return latest_per_user(coo_u, items, times)
        if self.val_split == "time":
            if T is None:
                raise InvalidInput('val_split="time" needs timestamps')
            return split_by_time(times, float(self.val_fraction))
        if self.val_split == "tail":
            return _user_tail(coo_u, items, times, float(self.val_fraction))
        raise InvalidInput(
            f"unknown val_split {self.val_split!r}", hint='use "last", "tail" or "time"'
        )

    def _groups(
        self, X: sp.csr_matrix, T: sp.csr_matrix | None, rng: np.random.Generator
    ) -> tuple[list[F32], list[NDArray[np.float32]], list[int], list[int]]:
        """Ranker training groups from ``n_val_rounds`` successive holdouts.

        Round one holds out the validation interactions of the whole matrix; each later round
        repeats the rule on what is left (the user's previous interaction, or the previous
        period), so the ranker sees more examples of the same task without any test data.
        """
        feats: list[F32] = []
        labels: list[NDArray[np.float32]] = []
        sizes: list[int] = []
        owners: list[int] = []
        for _ in range(max(1, int(self.n_val_rounds))):
            held = self._holdout(X, T)
            if not held.any():
                break
            keep = ~held
            coo_u = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
            X_tr = to_csr(coo_u[keep], X.indices[keep], *X.shape)
            T_tr = None
            if T is not None:
                T_tr = sp.csr_matrix((T.data[keep], (coo_u[keep], X.indices[keep])), shape=X.shape)
                T_tr.sort_indices()
            val = to_csr(coo_u[held], X.indices[held], *X.shape)
            users = np.flatnonzero((np.diff(val.indptr) > 0) & (np.diff(X_tr.indptr) > 0))
            if len(users):
                stage = _Stage(X_tr, T_tr, self)
            for start in range(0, len(users), _BATCH):
                ub = users[start : start + _BATCH].astype(np.int64)
                rows = stage.rows(ub)
                cands, hits = stage.candidates(ub, rows)
                items: list[I64] = []
                for r, u in enumerate(ub):
                    pos = val.indices[val.indptr[u] : val.indptr[u + 1]]
                    seen = X_tr.indices[X_tr.indptr[u] : X_tr.indptr[u + 1]]
                    group = self._group(cands[r], pos, seen, X.shape[1], rng)
                    label = np.isin(group, pos).astype(np.float32)
                    if not label.any():  # nothing to learn: no positive was proposed
                        group = group[:0]
                    items.append(group)
                    if len(group):
                        labels.append(label)
                        sizes.append(len(group))
                        owners.append(int(u))
                feats.append(stage.features(ub, items, rows, hits))
            X, T = X_tr, T_tr
        return feats, labels, sizes, owners

    def _group(
        self, cands: I64, pos: I64, seen: I64, n_items: int, rng: np.random.Generator
    ) -> I64:
        """Items of one training group.

        ``"sampled"``: the positives among random unseen items, as in sampled-negative
        evaluation. ``"candidates"``: what the generators propose (plus any random items) and
        nothing else; positives the generators missed are left out, because forcing them in
        would let the ranker learn "not proposed by anyone" as a sign of a positive.
        """
        unseen = np.ones(n_items, dtype=bool)
        unseen[seen] = False
        unseen[pos] = False
        pool = np.flatnonzero(unseen)
        n_random = min(int(self.n_random), len(pool))
        extra = rng.choice(pool, size=n_random, replace=False) if n_random else pool[:0]
        if self.train_groups == "sampled":
            return np.union1d(pos, extra).astype(np.int64)
        if self.train_groups == "candidates":
            return np.union1d(cands, extra).astype(np.int64)
        raise InvalidInput(
            f"unknown train_groups {self.train_groups!r}", hint='use "candidates" or "sampled"'
        )

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        import lightgbm as lgb

        rng = np.random.default_rng(self.seed)
        feats, labels, sizes, owners = self._groups(X, T, rng)
        self._stage = _Stage(X, T, self)
        self.n_groups_ = len(sizes)
        if not sizes or not np.concatenate(labels).any():
            # Too little data to carve a validation split: fall back to the EASE generator.
            self.ranker_ = None
            self.n_rounds_ = 0
            self.feature_importance_ = np.zeros(len(FEATURES))
            return
        F = np.vstack(feats)
        y = np.concatenate(labels)
        g = np.asarray(sizes)
        # Early stopping on a held-out share of users (all of a user's groups on one side, so
        # the stopping signal is measured on people the trees never saw).
        owner = np.asarray(owners)
        uniq = np.unique(owner)
        es_users = rng.permutation(uniq)[: len(uniq) // 5] if len(uniq) >= 10 else uniq[:0]
        is_es = np.isin(owner, es_users)
        row_es = np.repeat(is_es, g)
        params = {
            "objective": str(self.objective),
            "metric": "ndcg",
            "eval_at": [int(self.cutoff)],
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
            "lambda_l2": 1.0,
            "seed": int(self.seed),
            "num_threads": int(self.num_threads),
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        # Boost from a listwise linear ranker rather than from zero: a few dozen weights are
        # well determined even by a hundred users, and the trees then add only the
        # non-linear corrections that early stopping confirms on users they never saw.
        if self.boost_from_base:
            self.base_mean_ = F[~row_es].mean(axis=0).astype(np.float64)
            self.base_scale_ = F[~row_es].std(axis=0).astype(np.float64) + 1e-6
            self.base_weights_ = _fit_listwise_linear(
                self._standardise(F[~row_es]), y[~row_es], g[~is_es], l2=1e-2
            )
        else:
            self.base_weights_ = np.zeros(F.shape[1])
            self.base_mean_ = np.zeros(F.shape[1])
            self.base_scale_ = np.ones(F.shape[1])
        base = self._base(F)
        train_set = lgb.Dataset(
            F[~row_es], y[~row_es], group=g[~is_es], init_score=base[~row_es], free_raw_data=True
        )
        valid_sets = []
        callbacks: list[Any] = []
        if is_es.any():
            valid_sets = [
                lgb.Dataset(
                    F[row_es],
                    y[row_es],
                    group=g[is_es],
                    init_score=base[row_es],
                    reference=train_set,
                )
            ]
            callbacks = [lgb.early_stopping(50, verbose=False)]
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=int(self.n_estimators),
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.n_rounds_ = int(booster.best_iteration or booster.current_iteration())
        self.ranker_ = booster
        self.feature_importance_ = np.asarray(booster.feature_importance("gain"), dtype=np.float64)

    # -- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state = {k: v for k, v in super()._state().items() if k != "ranker_"}
        state["ranker_"] = "" if self.ranker_ is None else self.ranker_.model_to_string()
        for key, value in vars(self._stage).items():
            if isinstance(value, Recommender):
                for sub, arr in value._state().items():
                    state[f"stage.{key}.{sub}"] = arr
            else:
                state[f"stage.{key}"] = value
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        stage = _Stage.__new__(_Stage)
        models: dict[str, Recommender] = {
            "ease": EASE(lambda_=self.ease_lambda),
            "knn": ItemKNN(k=self.knn_k),
            "als": ALS(factors=self.als_factors),
        }
        for key, value in state.items():
            if not key.startswith("stage."):
                continue
            parts = key.split(".")
            if len(parts) == 3:
                setattr(models[parts[1]], parts[2], value)
            else:
                setattr(stage, parts[1], value)
        for key, model in models.items():
            setattr(stage, key, model)
        self._stage = stage
        super()._restore({k: v for k, v in state.items() if not k.startswith("stage.")})
        text = state.get("ranker_", "")
        self.ranker_ = lgb.Booster(model_str=text) if text else None

    # -- scoring ----------------------------------------------------------------------------
    def _standardise(self, F: F32) -> NDArray[np.float64]:
        # Clipped so that one extreme value cannot dominate a linear score.
        out: NDArray[np.float64] = np.clip((F - self.base_mean_) / self.base_scale_, -5.0, 5.0)
        return out

    def _base(self, F: F32) -> F32:
        return np.asarray(self._standardise(F) @ self.base_weights_, dtype=np.float32)

    def _predict(self, F: F32) -> F32:
        if self.ranker_ is None:
            return -F[:, FEATURES.index("ease_rank")]
        raw = self.ranker_.predict(F, num_iteration=self.n_rounds_)
        return np.asarray(raw + self._base(F), dtype=np.float32)

    def _score_batch(self, users: I64, items: I64 | None, sl: slice) -> F32:
        stage = self._stage
        rows = stage.rows(users)
        n_items = self.n_items_
        if items is None:
            cands, hits = stage.candidates(users, rows)
            pred = self._predict(stage.features(users, cands, rows, hits))
            # Items outside the candidate set rank below every candidate, in EASE order.
            floor = float(pred.min()) - 1.0 if len(pred) else 0.0
            out = floor - np.log1p(rows["ease_rank"]) / np.log1p(float(n_items))
            r = np.repeat(np.arange(len(users)), [len(c) for c in cands])
            out[r, np.concatenate(cands)] = pred
            scores: F32 = out.astype(np.float32)
            return scores
        block = np.broadcast_to(items, (len(users), len(items))) if items.ndim == 1 else items[sl]
        lists = [np.asarray(row, dtype=np.int64) for row in block]
        pred = self._predict(stage.features(users, lists, rows))
        return pred.reshape(len(users), block.shape[1])


MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS, BPR, TasteGraph)
}


def make_model(name: str, **params: Any) -> Recommender:
    """Build a model by name (``popularity``, ``itemknn``, ``ease``, ``als``, ``bpr``,
    ``tastegraph``); an unknown name is an error listing the known ones."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown model {name!r}", hint="known models: " + ", ".join(sorted(MODELS))
        ) from None
    return cls(**params)
