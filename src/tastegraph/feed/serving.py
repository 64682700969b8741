"""One home-feed request, from candidates to items: filter, features, rank, blend, reasons.

Pure: every function takes the engine's parts, ``now`` and the request's random generator as
arguments; the engine (:mod:`tastegraph.feed.engine`) holds the locks and the per-user bookkeeping
of what was served.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed import reasons
from tastegraph.feed.blend import ThompsonArms, blend, bound_slots, lookalike_penalty
from tastegraph.feed.catalog import PinCatalog
from tastegraph.feed.data import _SOURCE_CODE, SOURCES, FeedItem, FeedParams
from tastegraph.feed.features import features
from tastegraph.feed.pool import Pool, generate, make_pool
from tastegraph.feed.ranker import LambdaRanker
from tastegraph.feed.scoring import fallback_score, prerank, scale
from tastegraph.feed.sources.registry import SOURCE_ARM
from tastegraph.feed.state import EngagementState, UserState
from tastegraph.index import VectorIndex

__all__ = ["LookalikeFloors", "Served", "eligible", "request_seed", "serve_feed"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]
BOOL = NDArray[np.bool_]

Served = tuple[list[FeedItem], I64, I8]  # items, their pin rows, the arm that served each


class LookalikeFloors:
    """Per hidden pin, the cosine from which a pin is its look-alike (cached per pin).

    The cosine of its ``hide_neighbours``-th nearest neighbour, and at least ``hide_threshold``:
    in a dense interest that is a handful of pins, in a sparse one the catalog-wide "closer than
    chance" cut. The cache holds until pins are added (:meth:`clear`).
    """

    def __init__(self) -> None:
        self._cache: dict[int, float] = {}

    def clear(self) -> None:
        self._cache = {}

    def __call__(self, index: VectorIndex, cat: PinCatalog, hidden: I64, p: FeedParams) -> F32:
        cache = self._cache
        todo = [r for r in hidden.tolist() if r not in cache]
        if todo:
            k = int(min(p.hide_neighbours + 1, max(cat.n, 1)))
            sims, _ = index.search(cat.vec[np.array(todo, np.int64)], k)
            kth = np.where(np.isfinite(sims[:, -1]), sims[:, -1], 1.0) if k else np.ones(len(todo))
            for r, f in zip(todo, kth.tolist(), strict=True):
                cache[r] = max(float(f), p.hide_threshold)
        return np.array([cache[r] for r in hidden.tolist()], np.float32)


def request_seed(base: int, user: int, now: float) -> list[int]:
    """Seed of a request's random generator when the caller gives none: reproducible calls."""
    mask = (1 << 63) - 1
    return [base & mask, user & mask, int(now * 1000) & mask]


def eligible(cat: PinCatalog, pool: Pool, st: UserState | None, exclude: I64 | None) -> BOOL:
    """Which candidates may be shown: not blocked, not in ``exclude`` (rows), not seen or hidden."""
    cand = pool.rows
    ok = ~cat.blocked[cand]
    if exclude is not None and len(exclude):
        ok &= ~np.isin(cand, exclude)
    if st is not None and (st.seen or st.hidden):
        ok &= ~_member(cand, st.excluded_rows())
    return ok


def serve_feed(
    p: FeedParams,
    cat: PinCatalog,
    state: EngagementState,
    index: VectorIndex,
    ranker: LambdaRanker | None,
    floors: LookalikeFloors,
    st: UserState | None,
    n: int,
    now: float,
    exclude: I64,
    rng: np.random.Generator,
    surface: int,
) -> Served:
    """The next ``n`` items of the feed of the user whose state is ``st`` (None: no state).

    ``exclude`` holds pin ids never to return. Returns the items best first, with the pin row
    and bandit arm of each (the engine records them for the bandit update).
    """
    gen = generate(p, cat, state, index, st, now, rng)
    pool = make_pool(gen)
    cand = pool.rows
    empty: Served = ([], np.zeros(0, np.int64), np.zeros(0, np.int8))
    if not len(cand):
        return empty
    excl = cat.rows_of(exclude) if len(exclude) else exclude
    pool = pool.take(np.flatnonzero(eligible(cat, pool, st, excl)))
    if not len(pool.rows):
        return empty
    X = features(p, cat, state, st, pool, gen.interests, now, surface)
    source = pool.source()
    arms = SOURCE_ARM[source]
    raw = fallback_score(X)
    # Two stages: the linear score keeps the best few hundred of each arm; the learned
    # ranker, when there is one, orders those (its cost grows with rows x trees), and
    # blending picks among them (its cost grows with candidates x slots).
    keep = prerank(raw, arms, p.rank_top)
    if ranker is None:
        scaled = scale(raw)[keep]  # scaled over all candidates, as the score is theirs
    pool, X, source, arms = pool.take(keep), X[keep], source[keep], arms[keep]
    if ranker is not None:
        scaled = scale(ranker.predict(X).astype(np.float64))
    cand = pool.rows
    if st is not None and st.hidden:
        hidden = st.hidden_rows()
        sims = cat.vec[cand] @ np.ascontiguousarray(cat.vec[hidden].T)
        scaled = scaled - lookalike_penalty(
            sims, floors(index, cat, hidden, p), strength=p.hide_strength
        )
    arms_state = st.arms if st is not None else ThompsonArms()
    explore = arms_state.explore_slots(n, rng, *state.population_prior())
    explore = bound_slots(explore, p.explore_share_min, p.explore_share_max, rng)
    picks = blend(
        scaled,
        cat.vec[cand],
        boards=cat.board[cand],
        labels=cat.label[cand],
        arms=arms,
        n=n,
        explore=explore,
        dup_groups=cat.dup[cand],
        mmr_lambda=p.mmr_lambda,
        board_cap=p.board_cap,
        label_cap=p.label_cap,
        window=p.cap_window,
        budget=source == _SOURCE_CODE["fresh"],
        budget_n=int(p.fresh_share_max * n + 1e-9),
    )
    items = []
    for j in picks.tolist():
        reason, because = reasons.reason_for(cat, pool, j, int(source[j]), gen.interests, st)
        items.append(
            FeedItem(int(cat.ids[cand[j]]), float(scaled[j]), reason, SOURCES[source[j]], because)
        )
    return items, cand[picks], arms[picks]


def _member(values: I64, sorted_set: I64) -> BOOL:
    """``np.isin(values, sorted_set)`` for a sorted, duplicate-free ``sorted_set``."""
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[pos] == values)
