"""Matrix-factorisation peers through ``implicit``: ALS (weighted least squares) and BPR."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from tastegraph.evaluation.recs.models.base import F32, I64, Recommender
from tastegraph.extras import require

__all__ = ["ALS", "BPR"]


def _blas_single_thread() -> Any:
    """Limit BLAS threads while implicit runs: it parallelises itself and warns otherwise."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class _Factorisation(Recommender):
    """What ALS and BPR share: fit one ``implicit`` model, score users by factor products."""

    def _model(self) -> Any:
        raise NotImplementedError

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        require("implicit", extra="eval", purpose=f"The {self.name.upper()} recommender")
        with _blas_single_thread():
            model = self._model()
            model.fit(X, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score_rows(self, users: I64) -> F32:
        return self.user_factors_[users] @ self.item_factors_.T


class ALS(_Factorisation):
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

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            random_state=int(self.seed),
            num_threads=int(self.num_threads),
        )


class BPR(_Factorisation):
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

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            random_state=int(self.seed),
            num_threads=int(self.num_threads),
        )
