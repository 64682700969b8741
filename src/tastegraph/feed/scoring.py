"""Scores before and after the learned ranker: the linear prior, the two-stage cut, scaling."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed.blend import EXPLORE
from tastegraph.feed.ranker import FEATURES

__all__ = ["fallback_score", "prerank", "scale"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]


def fallback_score(X: F32) -> F64:
    """Linear score of the features, used until a ranker is trained.

    The weights encode the prior the ranker later learns from data: closeness to the user's
    interests and latest engagements first, then co-engagement, popularity and freshness.
    """
    col = {name: j for j, name in enumerate(FEATURES)}
    log_pop = X[:, col["log_pop"]].astype(np.float64)
    pop = log_pop / (float(log_pop.max()) or 1.0)
    imp = np.sqrt(X[:, col["interest_imp"]].astype(np.float64))
    return np.asarray(
        X[:, col["interest_sim"]] * (0.6 + 0.4 * imp)
        + 0.8 * X[:, col["sim_recent"]]
        + 0.3 * X[:, col["walk_score"]]
        + 0.3 * X[:, col["cf_score"]]
        + 0.3 * X[:, col["behaviour_score"]]
        + 0.25 * pop
        + 0.2 * X[:, col["board_aff"]]
        + 0.05 * X[:, col["is_fresh"]]
        + 0.5 * X[:, col["save_rate"]]
        - 1.0 * X[:, col["hide_rate"]],
        np.float64,
    )


def prerank(score: F64, arms: I8, top: int) -> I64:
    """Positions of the best ``top`` candidates, two thirds exploit and one third explore.

    Quotas rather than one cut, so the linear score (which favours closeness to the user's
    interests) cannot starve the explore arm before the bandit gets a say; an arm with fewer
    candidates than its quota leaves its share to the other.
    """
    if len(score) <= top:
        return np.arange(len(score))
    order = np.argsort(-score, kind="stable")
    is_explore = arms[order] == EXPLORE
    explore = order[is_explore]
    exploit = order[~is_explore]
    n_explore = min(len(explore), max(top // 3, top - len(exploit)))
    n_exploit = min(len(exploit), top - n_explore)
    return np.sort(np.concatenate([exploit[:n_exploit], explore[:n_explore]]))


def scale(raw: F64) -> F64:
    """Scores mapped to [0, 1] (all ones when they are all equal; non-finite ones to the ends)."""
    if not np.isfinite(raw).all():
        fin = raw[np.isfinite(raw)]
        top, bottom = (float(fin.max()), float(fin.min())) if len(fin) else (1.0, 0.0)
        raw = np.nan_to_num(raw, nan=bottom, posinf=top, neginf=bottom)
    lo, hi = float(raw.min()), float(raw.max())
    return (raw - lo) / (hi - lo) if hi > lo else np.ones(len(raw))
