"""The learned feed ranker: LightGBM LambdaRank with position-bias correction.

Logged feeds are biased: a pin shown first is looked at far more often than a pin shown tenth, so
its clicks say less about relevance. :func:`estimate_propensity` fits a position-based click
model to the logged impressions (``P(click) = theta[position] * gamma[pin]``, by alternating
maximum-likelihood updates), which separates "shown high" from "good" better than raw CTR per
position, where popular pins shown at the top inflate the head of the curve. Training then
weighs each engaged impression by ``1 / theta[position]`` (inverse propensity, clipped), the
standard unbiased learning-to-rank correction.

:class:`LambdaRanker` follows the estimator conventions: parameters in ``__init__``, ``fit``
returns ``self``, learned attributes end in ``_``. It is saved as LightGBM's own text model plus a
JSON sidecar (format version, settings digest, feature names, propensities, the model file's
SHA-256), never pickled; ``load`` refuses a sidecar whose digest or version differs from what
the caller expects (``IndexMismatch``).

Example
-------
>>> import numpy as np, tempfile
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 3)).astype(np.float32)
>>> y = (X[:, 0] > 0.5).astype(np.int32)
>>> r = LambdaRanker(n_estimators=20, min_child_samples=5).fit(X, y, [20] * 20,
...                                                           feature_names=["a", "b", "c"])
>>> d = r.save(tempfile.mkdtemp(), digest="abc")
>>> bool(np.allclose(LambdaRanker.load(d, digest="abc").predict(X), r.predict(X)))
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import IndexMismatch, InvalidInput

__all__ = ["FEATURES", "FORMAT", "LambdaRanker", "estimate_propensity", "ipw_weights"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

FORMAT = "tastegraph.feed-ranker/2"  # bump when the saved layout or the features change

# Candidate features, in column order (computed by tastegraph.feed.features.features).
FEATURES: tuple[str, ...] = (
    "interest_sim",  # best cosine to one of the user's interest medoids
    "interest_weighted",  # importance-weighted mean cosine over the interests
    "interest_imp",  # importance share of the best-matching interest
    "interest_rank",  # rank in the interest (ANN) generator, 1000 when absent
    "sim_c0",  # cosine to the most important interest
    "sim_c1",
    "sim_c2",
    "sim_recent",  # best cosine to the last five engaged pins, faded by their age (hours)
    "sim_hidden",  # best cosine to a pin the user hid
    "walk_score",  # boosted visits / best visits in this request
    "walk_rank",
    "cf_score",  # co-engagement score / best in this request
    "cf_rank",
    "pop_rank",  # rank in the global popularity list, 1000 when absent
    "is_fresh",
    "n_sources",  # generators that proposed the pin
    "log_pop",  # log1p(decayed popularity)
    "log_age_days",
    "save_rate",  # smoothed saves / impressions
    "hide_rate",  # smoothed hides / impressions
    "log_impressions",
    "board_aff",  # share of the user's decayed engagement on this pin's board
    "label_aff",  # same for its label
    "user_log_events",
    "user_log_idle_days",
    "user_n_interests",
    "hour",  # context: hour of day of the request
    "surface",  # context: surface code
    "behaviour_score",  # behavioural (EASE, feed.sources.behaviour) score / best in request
    "behaviour_rank",  # rank in the behavioural source, 1000 when absent
    "behaviour_recent",  # behavioural score from the last five engaged pins / best in request
)


def estimate_propensity(
    positions: ArrayLike,
    clicks: ArrayLike,
    items: ArrayLike | None = None,
    *,
    n_positions: int = 50,
    n_iter: int = 30,
    prior: float = 5.0,
) -> F64:
    """Examination probability per position, relative to position 0, from logged impressions.

    Fits the position-based model ``P(click | position k, item i) = theta_k * gamma_i`` by
    alternating closed-form updates (each is the maximum of the Poisson likelihood with the
    other factor fixed): ``theta_k = clicks_k / sum_{impressions at k} gamma_i`` and
    ``gamma_i = clicks_i / sum_{impressions of i} theta_k``. ``gamma`` is shrunk toward the mean
    with ``prior`` pseudo-impressions so rare items do not explain everything away. Without
    ``items`` it reduces to the click-through rate per position.

    Parameters
    ----------
    positions : (n,) int
        Position of each impression (0 = top); positions beyond ``n_positions - 1`` are pooled.
    clicks : (n,) bool or int
        Whether the impression led to engagement.
    items : (n,) int, optional
        Item of each impression.
    n_positions : int
        Length of the returned curve.
    n_iter : int
        Alternating updates.
    prior : float
        Pseudo-impressions for each item's relevance.

    Returns
    -------
    (n_positions,) float64
        ``theta / theta[0]``, made non-increasing, in ``(0, 1]``; positions never logged inherit
        the previous value.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pos = rng.integers(0, 5, 20000)
    >>> item = rng.integers(0, 50, 20000)
    >>> rel = np.linspace(0.1, 0.9, 50)[item]
    >>> click = rng.random(20000) < rel * (1.0 / (1 + pos))
    >>> np.round(estimate_propensity(pos, click, item, n_positions=5), 1).tolist()
    [1.0, 0.5, 0.3, 0.3, 0.2]
    """
    pos = np.minimum(np.asarray(positions, np.int64), n_positions - 1)
    clk = np.asarray(clicks).astype(np.float64)
    if len(pos) == 0:
        return np.ones(n_positions)
    if items is None:
        it = np.zeros(len(pos), np.int64)
    else:
        _, it = np.unique(np.asarray(items), return_inverse=True)
    n_items = int(it.max()) + 1
    clicks_k = np.bincount(pos, weights=clk, minlength=n_positions)
    shown_k = np.bincount(pos, minlength=n_positions).astype(np.float64)
    clicks_i = np.bincount(it, weights=clk, minlength=n_items)
    mean_rate = max(float(clk.mean()), 1e-9)
    gamma = np.full(n_items, mean_rate)
    theta = np.ones(n_positions)
    for _ in range(n_iter):
        denom_k = np.bincount(pos, weights=gamma[it], minlength=n_positions)
        theta = np.where(denom_k > 0, clicks_k / np.maximum(denom_k, 1e-12), np.nan)
        exposure_i = np.bincount(it, weights=np.nan_to_num(theta[pos], nan=0.0), minlength=n_items)
        gamma = (clicks_i + prior * mean_rate) / (exposure_i + prior)
    # Positions with no impressions take the previous position's value.
    for k in range(n_positions):
        if shown_k[k] == 0 or not np.isfinite(theta[k]):
            theta[k] = theta[k - 1] if k else 1.0
    theta = np.maximum(theta, 1e-6)
    theta = theta / theta[0]
    # Examination cannot rise further down the feed; noise in the tail can make it look so.
    return np.clip(np.minimum.accumulate(theta), 1e-3, 1.0)


def ipw_weights(labels: ArrayLike, positions: ArrayLike, propensity: F64, *, clip: float) -> F64:
    """Per-impression training weights: ``1 / propensity[position]`` for engaged ones, else 1.

    Only engaged impressions are reweighted (the usual IPS estimator for clicks: a click seen at a
    rarely examined position stands for several that were missed); weights are clipped at
    ``clip`` to bound the variance.

    Examples
    --------
    >>> ipw_weights([1, 0, 2], [0, 3, 9], np.array([1.0, 0.5, 0.25]), clip=3.0).tolist()
    [1.0, 1.0, 3.0]
    """
    lab = np.asarray(labels)
    pos = np.asarray(positions, np.int64)
    pos = np.where(pos < 0, 0, np.minimum(pos, len(propensity) - 1))
    w = np.minimum(1.0 / propensity[pos], clip)
    return np.where(lab > 0, w, 1.0).astype(np.float64)


class LambdaRanker:
    """LightGBM LambdaRank over candidate features, with inverse-propensity weights.

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    learning_rate : float
    num_leaves : int
    min_child_samples : int
        Minimum rows per leaf.
    ipw_clip : float
        Largest inverse-propensity weight.
    n_positions : int
        Length of the position curve.
    seed : int
    num_threads : int
        LightGBM threads for training; prediction always uses one (a request scores a few hundred
        rows, where a thread team only adds overhead).

    Attributes
    ----------
    booster_ : lightgbm.Booster
    feature_names_ : list of str
    propensity_ : (n_positions,) float64
        Examination curve used for the weights (ones when no positions were given).
    n_groups_, n_rows_ : int
    """

    def __init__(
        self,
        n_estimators: int = 150,
        learning_rate: float = 0.08,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        ipw_clip: float = 10.0,
        n_positions: int = 50,
        seed: int = 0,
        num_threads: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.ipw_clip = ipw_clip
        self.n_positions = n_positions
        self.seed = seed
        self.num_threads = num_threads

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, as passed."""
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "ipw_clip": self.ipw_clip,
            "n_positions": self.n_positions,
            "seed": self.seed,
            "num_threads": self.num_threads,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"LambdaRanker({args})"

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        group: Sequence[int] | ArrayLike,
        *,
        positions: ArrayLike | None = None,
        items: ArrayLike | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> LambdaRanker:
        """Train on rows grouped by request.

        Parameters
        ----------
        X : (n, f) float
            Features, rows of one request contiguous.
        y : (n,) int
            Graded relevance labels (0 = no engagement).
        group : (g,) int
            Rows per request, in order; ``sum(group) == n``.
        positions : (n,) int, optional
            Logged position of each row; enables the inverse-propensity weights.
        items : (n,) int, optional
            Item of each row, for the position-bias model (see :func:`estimate_propensity`).
        feature_names : sequence of str, optional

        Returns
        -------
        LambdaRanker
            ``self``.
        """
        import lightgbm as lgb

        Xa = np.asarray(X, np.float32)
        ya = np.asarray(y, np.int32)
        g = np.asarray(group, np.int64)
        if Xa.ndim != 2 or len(Xa) != len(ya) or int(g.sum()) != len(ya):
            raise InvalidInput(
                "ranker training data is inconsistent",
                hint="X is (n, f), y is (n,), and group sums to n",
                shape=list(Xa.shape),
                labels=len(ya),
                group_total=int(g.sum()),
            )
        if len(ya) == 0 or not (ya > 0).any():
            raise InvalidInput(
                "no engaged impressions to learn from",
                hint="log impressions and engagement events before fitting",
            )
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"f{i}" for i in range(Xa.shape[1])]
        )
        if positions is not None:
            pos = np.asarray(positions, np.int64)
            logged = pos >= 0
            self.propensity_ = estimate_propensity(
                pos[logged],
                ya[logged] > 0,
                None if items is None else np.asarray(items)[logged],
                n_positions=self.n_positions,
            )
            weight = ipw_weights(ya, pos, self.propensity_, clip=self.ipw_clip)
        else:
            self.propensity_ = np.ones(self.n_positions)
            weight = np.ones(len(ya))
        params = self._lgb_params()
        data = lgb.Dataset(Xa, ya, group=g, weight=weight, feature_name=names, free_raw_data=True)
        self.booster_ = lgb.train(params, data, num_boost_round=int(self.n_estimators))
        self.feature_names_ = names
        self.n_groups_ = len(g)
        self.n_rows_ = len(ya)
        return self

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "feature_fraction": 0.9,
            "lambda_l2": 1.0,
            "seed": int(self.seed),
            "num_threads": int(self.num_threads),
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def predict(self, X: ArrayLike) -> F32:
        """Ranking scores, higher is better (comparable within one request only)."""
        booster = self._booster()
        Xa = np.asarray(X, np.float32)
        if len(Xa) == 0:
            return np.zeros(0, np.float32)
        return np.asarray(booster.predict(Xa, num_threads=1), np.float32)

    def _booster(self) -> Any:
        booster = getattr(self, "booster_", None)
        if booster is None:
            raise InvalidInput("the ranker is not fitted", hint="call fit() or load() first")
        return booster

    # -- persistence ---------------------------------------------------------------------------

    def digest(self, extra: str = "") -> str:
        """Settings digest: format, parameters, feature names and the caller's ``extra``."""
        blob = json.dumps(
            {
                "format": FORMAT,
                "params": self.get_params(),
                "features": list(getattr(self, "feature_names_", [])),
                "extra": extra,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def save(self, folder: Path | str, *, digest: str) -> Path:
        """Write ``ranker.txt`` (LightGBM text) and ``ranker.json`` (sidecar) into ``folder``.

        ``digest`` is the caller's settings digest (e.g. the feed parameters); ``load`` must be
        given the same one.
        """
        booster = self._booster()
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        text = booster.model_to_string()
        sidecar = {
            "format": FORMAT,
            "digest": digest,
            "params": self.get_params(),
            "feature_names": self.feature_names_,
            "propensity": [float(x) for x in self.propensity_],
            "n_groups": self.n_groups_,
            "n_rows": self.n_rows_,
            "model_sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
        _atomic_write(out / "ranker.txt", text)
        _atomic_write(out / "ranker.json", json.dumps(sidecar, indent=2, sort_keys=True))
        return out

    @classmethod
    def load(cls, folder: Path | str, *, digest: str) -> LambdaRanker:
        """Read a ranker saved by :meth:`save`; refuse another format, digest or a changed model.

        Raises
        ------
        IndexMismatch
            The files were written for other settings or features, or were modified.
        NotFound-like FileNotFoundError
            No ranker was saved there.
        """
        import lightgbm as lgb

        src = Path(folder)
        hint = "retrain the ranker with `fit` under the current settings"
        try:
            sidecar = json.loads((src / "ranker.json").read_text())
            text = (src / "ranker.txt").read_text()
        except (OSError, ValueError) as exc:
            raise IndexMismatch(f"ranker files in {src} are unreadable: {exc}", hint=hint) from exc
        if sidecar.get("format") != FORMAT:
            raise IndexMismatch(
                f"ranker in {src} has format {sidecar.get('format')!r}, expected {FORMAT!r}",
                hint=hint,
            )
        if sidecar.get("digest") != digest:
            raise IndexMismatch(
                f"ranker in {src} was trained with settings digest {sidecar.get('digest')!r}, "
                f"these settings have {digest!r}",
                hint=hint,
                saved=sidecar.get("digest"),
                wanted=digest,
            )
        if hashlib.sha256(text.encode()).hexdigest() != sidecar.get("model_sha256"):
            raise IndexMismatch(f"ranker model in {src} does not match its sidecar", hint=hint)
        out = cls(**sidecar["params"])
        out.booster_ = lgb.Booster(model_str=text)
        out.feature_names_ = list(sidecar["feature_names"])
        out.propensity_ = np.asarray(sidecar["propensity"], np.float64)
        out.n_groups_ = int(sidecar["n_groups"])
        out.n_rows_ = int(sidecar["n_rows"])
        return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)
