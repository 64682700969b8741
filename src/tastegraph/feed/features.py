"""The ranker's features of one request's candidates, computed from the state at ``now``.

One row per candidate, one column per name in :data:`tastegraph.feed.ranker.FEATURES`: closeness
to the user's interests and latest engagements, source scores and ranks, popularity, freshness,
engagement rates, board and label affinity, look-alikes of hidden pins, user and context. Serving
and training compute them with this same function, so the ranker never sees skewed features.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed.catalog import PinCatalog
from tastegraph.feed.data import FeedParams
from tastegraph.feed.pool import Pool
from tastegraph.feed.ranker import FEATURES
from tastegraph.feed.sources import behaviour
from tastegraph.feed.sources.registry import GENERATORS, behaviour_profile
from tastegraph.feed.state import DAY, EngagementState, Interests, UserState

__all__ = ["COL", "features"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
BOOL = NDArray[np.bool_]

COL = {name: j for j, name in enumerate(FEATURES)}


def features(
    p: FeedParams,
    cat: PinCatalog,
    state: EngagementState,
    st: UserState | None,
    pool: Pool,
    interests: Interests | None,
    now: float,
    surface: int,
) -> F32:
    """Feature matrix ``(len(pool.rows), len(FEATURES))`` (columns: ranker.FEATURES)."""
    cand = pool.rows
    c = len(cand)
    X = np.zeros((c, len(FEATURES)), np.float32)
    if not c:
        return X
    col = COL
    it = interests
    # Every cosine the features need (to interest medoids, latest engagements, hidden pins)
    # in one product with a contiguous right-hand side: small, oddly shaped products are
    # where BLAS spends its time on overhead.
    hist: tuple[I64, F64, F64, BOOL] | None = None
    latest = np.zeros(0, np.int64)
    hidden = np.zeros(0, np.int64)
    if st is not None:
        hist = st.history()
        if len(hist[0]):
            latest = np.argsort(-hist[2], kind="stable")[:5]
        hidden = st.hidden_rows()
    medoids = it.medoids if it is not None else np.zeros(0, np.int64)
    q_rows = np.concatenate([medoids, hist[0][latest] if hist is not None else latest, hidden])
    sims_all = (
        cat.vec[cand] @ np.ascontiguousarray(cat.vec[q_rows].T)
        if len(q_rows)
        else np.zeros((c, 0), np.float32)
    )
    n_med, n_lat = len(medoids), len(latest)
    if it is not None:
        sims = sims_all[:, :n_med]
        best = np.argmax(sims, axis=1)
        X[:, col["interest_sim"]] = sims[np.arange(c), best]
        X[:, col["interest_weighted"]] = sims @ it.importance
        X[:, col["interest_imp"]] = it.importance[best]
        for j in range(min(3, sims.shape[1])):
            X[:, col[f"sim_c{j}"]] = sims[:, j]
        X[:, col["user_n_interests"]] = it.n_clusters
    for name in ("walk", "cf"):
        g = GENERATORS.index(name)
        score = pool.score[g]
        top = float(score.max())
        X[:, col[f"{name}_score"]] = score / top if top > 0 else 0.0
    for name in ("interest", "walk", "cf", "behaviour"):
        X[:, col[f"{name}_rank"]] = pool.rank[GENERATORS.index(name)]
    # The behavioural score of every candidate, proposed by that source or not, and the score
    # from the latest five engagements alone (session intent, as sim_recent for images).
    if st is not None and hist is not None and len(hist[0]) and state.behaviour.n_pins:
        h_rows, h_w = behaviour_profile(p, st, now)
        beh = behaviour.scores(state.behaviour, h_rows, h_w, cand)
        top = float(beh.max())
        X[:, col["behaviour_score"]] = beh / top if top > 0 else 0.0
        beh = behaviour.scores(state.behaviour, h_rows[latest], h_w[latest], cand)
        top = float(beh.max())
        X[:, col["behaviour_recent"]] = beh / top if top > 0 else 0.0
    X[:, col["pop_rank"]] = pool.rank[GENERATORS.index("popular")]
    created = cat.created[cand]
    X[:, col["is_fresh"]] = created >= now - p.fresh_days * DAY
    X[:, col["n_sources"]] = pool.member.sum(axis=0)
    X[:, col["log_pop"]] = np.log1p(state.pop.score(cand, now))
    X[:, col["log_age_days"]] = np.log1p(np.maximum(now - created, 0.0) / DAY)
    impr = state.impr[cand]
    saves, hides = state.saves[cand], state.hides[cand]
    # A save or a hide means the pin was seen, impression logged or not (imported logs hold
    # none), so both count as views: the rates stay in [0, 1]. Over impressions alone, a log
    # of saves turned the "rate" into the save count, which swamped the linear score.
    views = np.maximum(impr, saves + hides)
    tot_views = max(state.totals[0], state.totals[1] + state.totals[2], 1.0)
    prior_save = state.totals[1] / tot_views
    prior_hide = state.totals[2] / tot_views
    X[:, col["save_rate"]] = (saves + 10 * prior_save) / (views + 10)
    X[:, col["hide_rate"]] = (hides + 10 * prior_hide) / (views + 10)
    X[:, col["log_impressions"]] = np.log1p(impr)
    if st is not None and hist is not None:
        rows, w, last, _ = hist
        if len(rows):
            # Session intent: the last few engagements, fading within hours, so that one
            # save reorients the next page without outweighing a long history for good.
            fade = np.exp2(-np.maximum(now - last[latest], 0.0) / (p.recent_half_life_h * 3600))
            X[:, col["sim_recent"]] = (
                sims_all[:, n_med : n_med + n_lat] * fade.astype(np.float32)
            ).max(axis=1)
            w_now = w * np.exp2(-np.maximum(now - last, 0.0) / (p.interest_half_life_days * DAY))
            total = float(w_now.sum()) or 1.0
            X[:, col["board_aff"]] = _affinity(cat.board[cand], cat.board[rows], w_now)
            X[:, col["board_aff"]] /= total
            X[:, col["label_aff"]] = _affinity(cat.label[cand], cat.label[rows], w_now)
            X[:, col["label_aff"]] /= total
        if len(hidden):
            X[:, col["sim_hidden"]] = sims_all[:, n_med + n_lat :].max(axis=1)
        X[:, col["user_log_events"]] = math.log1p(st.n_events)
        if math.isfinite(st.last_ts):
            X[:, col["user_log_idle_days"]] = math.log1p(max(now - st.last_ts, 0.0) / DAY)
    X[:, col["hour"]] = (now % DAY) / 3600.0
    X[:, col["surface"]] = surface
    return X


def _affinity(cand_codes: I64, hist_codes: I64, weights: F64) -> F64:
    """Summed history weight on each candidate's code (board or label); none (-1) matches none."""
    uniq, inv = np.unique(hist_codes, return_inverse=True)
    per = np.bincount(inv, weights=weights, minlength=len(uniq))
    pos = np.minimum(np.searchsorted(uniq, cand_codes), len(uniq) - 1)
    return np.where((uniq[pos] == cand_codes) & (cand_codes >= 0), per[pos], 0.0)
