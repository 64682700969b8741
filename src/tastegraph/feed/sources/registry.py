"""The candidate sources of the home feed, as a registry: each a function of the request.

A source reads one request's :class:`SourceInput` (the catalog, the shared state, the user's
interests and seed pins, ``now`` and the request's random generator) and returns its candidates
best first, or None when it has nothing to offer. :data:`REGISTRY` lists the sources in
priority order: a candidate several sources propose counts as the first one's (its reason, its
bandit arm); the ranker sees each candidate's rank in the interest, walk, cf, behaviour and
popular lists.

Adding a source
---------------
Write ``def my_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None``
(``found`` holds what the sources before it returned), add ``Source("my_source", arm, my_source)``
to :data:`REGISTRY`, append its name to :data:`tastegraph.feed.data.SOURCES` (logged codes: the
existing ones must not move), and
give it a reason in :func:`tastegraph.feed.reasons.reason_for`. Its candidates count in the
``n_sources`` feature at once; for the ranker to see its own rank or score, add a column to
:data:`tastegraph.feed.ranker.FEATURES` and fill it in :func:`tastegraph.feed.features.features`.
Sources draw from ``inp.rng`` in registry order, so a new source that draws randomness goes after
the existing ones to leave their draws unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed.blend import EXPLOIT, EXPLORE
from tastegraph.feed.data import _SOURCE_CODE, SOURCES, FeedParams
from tastegraph.feed.sources import behaviour
from tastegraph.feed.sources.cooccurrence import cf_candidates
from tastegraph.feed.sources.walks import pixie_walk

if TYPE_CHECKING:
    from tastegraph.feed.catalog import PinCatalog
    from tastegraph.feed.state import EngagementState, Interests, UserState
    from tastegraph.index import VectorIndex

__all__ = [
    "GENERATORS",
    "REGISTRY",
    "SOURCE_ARM",
    "Candidates",
    "Source",
    "SourceInput",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

DAY = 86400.0
_ANN_BATCH_K = 64  # interests wanting at most this many neighbours share one index search


@dataclass(frozen=True)
class SourceInput:
    """What every source may read for one request."""

    params: FeedParams
    catalog: PinCatalog
    state: EngagementState
    index: VectorIndex
    user: UserState | None
    interests: Interests | None
    seeds: tuple[I64, F64] | None  # the user's most important engaged pins and their weights
    now: float
    rng: np.random.Generator


@dataclass(frozen=True)
class Candidates:
    """One source's candidates, best first: pin rows, scores and (optionally) what led to each
    (an interest cluster, a seed pin row; -1 none), which the reasons name."""

    rows: I64
    scores: F64
    origin: I64 | None = None


SourceFn = Callable[[SourceInput, Mapping[str, Candidates]], "Candidates | None"]


@dataclass(frozen=True)
class Source:
    name: str  # as in tastegraph.feed.data.SOURCES
    arm: int  # EXPLOIT (personal) or EXPLORE, for the bandit
    generate: SourceFn


def interest_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """ANN neighbours of the interest medoids, allotted in proportion to importance."""
    it = inp.interests
    if it is None:
        return None
    p = inp.params
    q = inp.catalog.vec[it.medoids]
    alloc = np.maximum(np.round(it.importance * p.ann_k).astype(np.int64), p.ann_k_min)
    # The index's beam grows with k: interests that want few neighbours go in one batch,
    # each big one alone, rather than all at the largest k.
    small = np.flatnonzero(alloc <= _ANN_BATCH_K)
    groups = ([small] if len(small) else []) + [
        np.array([i]) for i in np.flatnonzero(alloc > _ANN_BATCH_K).tolist()
    ]
    found_ids: list[I64] = []
    found_sims: list[F32] = []
    found_q: list[I64] = []
    for g in groups:
        k = int(min(alloc[g].max(), max(inp.catalog.n, 1)))
        sims, ids = inp.index.search(q[g], k)
        ok = (np.arange(k)[None, :] < alloc[g][:, None]) & (ids >= 0)
        found_ids.append(ids[ok])
        found_sims.append(sims[ok])
        found_q.append(np.broadcast_to(g[:, None], ids.shape)[ok])
    r = inp.catalog.rows_of(np.concatenate(found_ids))
    s = np.concatenate(found_sims).astype(np.float64)
    c = np.concatenate(found_q)
    good = r >= 0
    r, s, c = r[good], s[good], c[good]
    # A pin found by several interests keeps its best similarity.
    order = np.lexsort((c, -s))
    r, s, c = r[order], s[order], c[order]
    _, first = np.unique(r, return_index=True)
    first = np.sort(first)
    return Candidates(r[first], s[first], c[first].astype(np.int64))


def walk_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """Pixie walks over the pin-board and pin-user graphs from the user's seed pins."""
    if inp.seeds is None:
        return None
    p = inp.params
    seeds, weights = inp.seeds
    walk = pixie_walk(
        [(inp.state.pin_board, p.walk_board_prob), (inp.state.pin_user, 1.0 - p.walk_board_prob)],
        seeds,
        weights,
        inp.catalog.n,
        inp.rng,
        steps=p.walk_steps,
        walkers=p.walk_walkers,
        restart=p.walk_restart,
        n_p=p.walk_n_p,
        n_v=p.walk_n_v,
        top=p.n_walk,
    )
    return Candidates(walk.rows, walk.scores, seeds[walk.seed])


def cf_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """Item-item co-engagement neighbours of the user's seed pins."""
    if inp.seeds is None:
        return None
    rows, scores, seed = cf_candidates(inp.state.cf, *inp.seeds, inp.params.n_cf)
    return Candidates(rows, scores, seed)


def behaviour_profile(p: FeedParams, st: UserState, now: float) -> tuple[I64, F64]:
    """The history rows and weights the behavioural model reads (the source and its features)."""
    rows, w, last, _ = st.history()
    half_life = p.interest_half_life_days * DAY if p.behaviour_decay else None
    return rows, behaviour.profile(rows, w, last, now, half_life)


def behaviour_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """The whole-catalog behavioural model's best unseen pins for the user's whole history."""
    st, model = inp.user, inp.state.behaviour
    if st is None or not st.n_hist or inp.params.n_behaviour <= 0 or not model.n_pins:
        return None
    rows, scores, seed = behaviour.candidates(
        model,
        *behaviour_profile(inp.params, st, inp.now),
        inp.params.n_behaviour,
        st.excluded_rows(),
    )
    return Candidates(rows, scores, seed)


def popular_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """Popular pins, overall and per coarse visual cluster (None while nothing is engaged)."""
    rows = inp.state.popular_pool(inp.catalog.coarse)
    if not len(rows):
        return None
    return Candidates(rows, inp.state.pop.score(rows, inp.now))


def fresh_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """The newest pins of the last ``fresh_days``, newest first."""
    cat = inp.catalog
    lo = np.searchsorted(cat.created_sorted, inp.now - inp.params.fresh_days * DAY)
    fresh = cat.by_created[lo:][::-1][: inp.params.n_fresh]
    if not len(fresh):
        return None
    return Candidates(fresh, cat.created[fresh])


def explore_source(inp: SourceInput, found: Mapping[str, Candidates]) -> Candidates | None:
    """Nothing engaged yet anywhere: a spread sample of the catalog, one per cluster first."""
    if "popular" in found:
        return None
    p, n_pins = inp.params, inp.catalog.n
    m = min(n_pins, 4 * p.n_popular)
    sample = inp.rng.choice(n_pins, m, replace=False) if n_pins else np.zeros(0)
    sample = np.asarray(sample, np.int64)
    _, first = np.unique(inp.catalog.coarse[sample], return_index=True)
    rows = np.concatenate([sample[first], np.delete(sample, first)])[: p.n_popular]
    return Candidates(rows, np.linspace(1.0, 0.5, len(rows)))


# Priority order; personal sources exploit, the others explore.
REGISTRY: tuple[Source, ...] = (
    Source("interest", EXPLOIT, interest_source),
    Source("walk", EXPLOIT, walk_source),
    Source("cf", EXPLOIT, cf_source),
    Source("behaviour", EXPLOIT, behaviour_source),  # draws no randomness
    Source("popular", EXPLORE, popular_source),
    Source("fresh", EXPLORE, fresh_source),
    Source("explore", EXPLORE, explore_source),
)
GENERATORS: tuple[str, ...] = tuple(s.name for s in REGISTRY)

# Bandit arm of each logged source code (``visual`` is related pins' own, never in a feed).
_ARM = {s.name: s.arm for s in REGISTRY} | {"visual": EXPLOIT}
SOURCE_ARM = np.array([_ARM[name] for name in SOURCES], np.int8)
assert all(name in _SOURCE_CODE for name in GENERATORS)
