"""The popularity peer: the same most-interacted list for every user."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastegraph.evaluation.recs.models.base import F32, I64, Recommender

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Most-interacted items first, the same list for every user."""

    name = "popularity"

    def __init__(self) -> None:
        pass

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        self.counts_ = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()

    def _score_rows(self, users: I64) -> F32:
        return np.broadcast_to(self.counts_, (len(users), self.n_items_)).copy()
