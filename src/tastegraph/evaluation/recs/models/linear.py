"""EASE, the closed-form linear item-item peer (Steck 2019)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastegraph.evaluation.recs.models.base import F32, I64, Recommender

__all__ = ["EASE"]


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
