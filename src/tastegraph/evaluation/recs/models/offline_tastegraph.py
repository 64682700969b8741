"""The offline TasteGraph: candidate generators, then a LightGBM LambdaRank ranker.

Reported by ``tastegraph eval recs`` as ``offline-tastegraph``: a model only the evaluation runs
(the server runs the feed engine, measured as ``served-feed``). Its first stage (generators,
time statistics, features) is in :mod:`~tastegraph.evaluation.recs.models.offline_features`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput
from tastegraph.evaluation.recs.data import latest_per_user, split_by_time, to_csr
from tastegraph.evaluation.recs.models.base import BATCH, F32, I64, Recommender
from tastegraph.evaluation.recs.models.factorisation import ALS
from tastegraph.evaluation.recs.models.linear import EASE
from tastegraph.evaluation.recs.models.neighbours import ItemKNN
from tastegraph.evaluation.recs.models.offline_features import (
    FEATURES,
    Stage,
    fit_listwise_linear,
    user_tail,
)

__all__ = ["TasteGraph"]


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
            return user_tail(coo_u, items, times, float(self.val_fraction))
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
                stage = Stage(X_tr, T_tr, self)
            for start in range(0, len(users), BATCH):
                ub = users[start : start + BATCH].astype(np.int64)
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
        self._stage = Stage(X, T, self)
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
            self.base_weights_ = fit_listwise_linear(
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

        stage = Stage.__new__(Stage)
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
