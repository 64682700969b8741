"""The estimator API every offline recommender shares: parameters, batching, top-n, saving."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput

__all__ = ["BATCH", "DAY", "F32", "FORMAT", "I64", "Recommender", "as_csr", "top_n"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

_R = TypeVar("_R", bound="Recommender")

FORMAT = "tastegraph.recs/1"  # bump when the saved layout changes; old files are refused
BATCH = 512  # users scored at once: bounds memory at 512 x n_items floats per generator
DAY = 86400.0


def as_csr(interactions: Any) -> sp.csr_matrix:
    """Binary float32 CSR copy of a users x items matrix."""
    if not sp.issparse(interactions):
        interactions = sp.csr_matrix(np.asarray(interactions))
    X = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
    X.eliminate_zeros()
    X.sum_duplicates()
    X.data[:] = 1.0
    X.sort_indices()
    return X


def as_time_csr(timestamps: Any, X: sp.csr_matrix) -> sp.csr_matrix:
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


def top_n(scores: F32, n: int) -> tuple[I64, F32]:
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
        X = as_csr(interactions)
        T = as_time_csr(timestamps, X) if timestamps is not None else None
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
        for start in range(0, len(users), BATCH):
            sl = slice(start, start + BATCH)
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
        for start in range(0, len(users), BATCH):
            ub = users[start : start + BATCH]
            rows = np.array(self.score(ub), dtype=np.float32)
            if exclude_seen:
                seen = self.seen_[ub]
                rows[np.repeat(np.arange(len(ub)), np.diff(seen.indptr)), seen.indices] = -np.inf
            idx, val = top_n(rows, n)
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
            "__format__": np.array(FORMAT),
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
