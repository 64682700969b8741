"""The candidates of one request: every registered source run, then aligned as columns.

:func:`generate` runs the sources of :data:`~tastegraph.feed.sources.registry.REGISTRY` in order;
:func:`make_pool` aligns their outputs on the union of their rows (or on given rows, to compute a
logged request's features), one row of membership, score and rank per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed.arrays import unique_sorted
from tastegraph.feed.catalog import PinCatalog
from tastegraph.feed.data import _SOURCE_CODE, FeedParams
from tastegraph.feed.sources.registry import GENERATORS, REGISTRY, Candidates, SourceInput
from tastegraph.feed.state import EngagementState, Interests, UserState, interests, seed_pins
from tastegraph.index import VectorIndex

__all__ = ["MISSING_RANK", "Generated", "Pool", "generate", "make_pool"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]

MISSING_RANK = 1000.0


@dataclass
class Generated:
    """Candidates of one request: per source name, what it returned."""

    found: dict[str, Candidates]
    interests: Interests | None


def generate(
    params: FeedParams,
    catalog: PinCatalog,
    state: EngagementState,
    index: VectorIndex,
    user: UserState | None,
    now: float,
    rng: np.random.Generator,
) -> Generated:
    """Run every registered source for ``user`` (None: a user without state) at ``now``."""
    it = interests(user, catalog.vec, now, params) if user is not None else None
    seeds = seed_pins(user, now, params) if user is not None and user.n_hist else None
    inp = SourceInput(params, catalog, state, index, user, it, seeds, now, rng)
    found: dict[str, Candidates] = {}
    for source in REGISTRY:
        got = source.generate(inp, found)
        if got is not None:
            found[source.name] = got
    return Generated(found, it)


@dataclass
class Pool:
    """Candidates of one request as aligned columns (``G = len(GENERATORS)``)."""

    rows: I64  # sorted pin rows
    member: NDArray[np.bool_]  # (G, c): proposed by source g
    score: F64  # (G, c): source score, 0 when absent
    rank: F64  # (G, c): rank in the source's list, MISSING_RANK when absent
    origin: I64  # (G, c): what led the source to it (cluster, seed row), -1 none

    def take(self, idx: NDArray[Any]) -> Pool:
        return Pool(
            self.rows[idx],
            self.member[:, idx],
            self.score[:, idx],
            self.rank[:, idx],
            self.origin[:, idx],
        )

    @property
    def cluster(self) -> I64:
        """Interest cluster that found each candidate (-1)."""
        return self.origin[GENERATORS.index("interest"), :]

    @property
    def walk_seed(self) -> I64:
        """Seed row of the walk that reached each candidate (-1)."""
        return self.origin[GENERATORS.index("walk"), :]

    @property
    def cf_seed(self) -> I64:
        """Seed row of each candidate's co-engagement (-1)."""
        return self.origin[GENERATORS.index("cf"), :]

    @property
    def behaviour_seed(self) -> I64:
        """History row behind each candidate's behavioural score (-1)."""
        seed: I64 = self.origin[GENERATORS.index("behaviour")]
        return seed

    def source(self) -> I8:
        """Primary source code of each candidate: the first source, in priority order."""
        first = np.argmax(self.member, axis=0)
        code: I8 = np.array([_SOURCE_CODE[g] for g in GENERATORS], np.int8)[first]
        code[~self.member.any(axis=0)] = _SOURCE_CODE["explore"]
        return code


def make_pool(gen: Generated, rows: I64 | None = None) -> Pool:
    """Align every source's output on ``rows`` (default: the union of all sources)."""
    if rows is None:
        parts = [c.rows for c in gen.found.values() if len(c.rows)]
        rows = unique_sorted(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    c = len(rows)
    g_n = len(GENERATORS)
    member = np.zeros((g_n, c), bool)
    score = np.zeros((g_n, c))
    rank = np.full((g_n, c), MISSING_RANK)
    origin = np.full((g_n, c), -1, np.int64)
    if c:
        for g, name in enumerate(GENERATORS):
            got = gen.found.get(name)
            if got is None or not len(got.rows):
                continue
            pos = np.minimum(np.searchsorted(rows, got.rows), c - 1)
            hit = np.flatnonzero(rows[pos] == got.rows)
            at = pos[hit]
            member[g, at] = True
            score[g, at] = got.scores[hit]
            rank[g, at] = hit
            if got.origin is not None:
                origin[g, at] = got.origin[hit]
    return Pool(rows, member, score, rank, origin)
