"""The feed policies the simulator compares, behind one interface, and A/B assignment."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tastegraph.feed.data import (
    CLICK,
    CLOSEUP,
    SAVE,
    EventBatch,
    FeedItem,
    PinTable,
)
from tastegraph.feed.engine import FeedEngine
from tastegraph.feed.sources.popularity import Popularity

__all__ = [
    "DAY",
    "POLICIES",
    "ChronologicalPolicy",
    "EnginePolicy",
    "FeedPolicy",
    "PopularPolicy",
    "assign",
]

POLICIES = ("chronological", "popular", "tastegraph")
DAY = 86400.0


class FeedPolicy(Protocol):
    """What every simulated policy offers (the engine's own interface)."""

    def add_pins(self, pins: PinTable) -> None: ...

    def observe(self, events: EventBatch) -> None: ...

    def feed(
        self, user: int, n: int, now: float, *, exclude: Sequence[int] = ...
    ) -> list[FeedItem]: ...


def assign(user: int, policies: Sequence[str], salt: str = "tastegraph-ab") -> str:
    """Deterministic A/B arm of ``user``: a hash of ``salt`` and the id, modulo the arms.

    Examples
    --------
    >>> assign(42, POLICIES) == assign(42, POLICIES)
    True
    """
    h = hashlib.blake2b(f"{salt}:{user}".encode(), digest_size=8).digest()
    return policies[int.from_bytes(h, "big") % len(policies)]


# --------------------------------------------------------------------------------------------
# Baseline policies


class _Baseline:
    """Shared bookkeeping: the catalog seen so far, per-user seen and hidden pins."""

    source = "popular"

    def __init__(self, pins: PinTable) -> None:
        self._ids: list[int] = []
        self._created: list[float] = []
        self._blocked: set[int] = set()
        self._seen: dict[int, set[int]] = {}
        self._row: dict[int, int] = {}
        self.add_pins(pins)

    def add_pins(self, pins: PinTable) -> None:
        assert pins.created_at is not None and pins.blocked is not None
        for i, pid in enumerate(pins.ids.tolist()):
            if pid in self._row:
                continue
            self._row[pid] = len(self._ids)
            self._ids.append(pid)
            self._created.append(float(pins.created_at[i]))
            if pins.blocked[i]:
                self._blocked.add(pid)

    def observe(self, events: EventBatch) -> None:
        for u, pin in zip(events.user.tolist(), events.pin.tolist(), strict=True):
            self._seen.setdefault(u, set()).add(pin)

    def _take(self, order: Sequence[int], user: int, n: int, exclude: Sequence[int]) -> list[int]:
        seen = self._seen.get(user, set())
        skip = set(exclude)
        out: list[int] = []
        for pid in order:
            if pid in seen or pid in skip or pid in self._blocked:
                continue
            out.append(pid)
            if len(out) == n:
                break
        return out


class ChronologicalPolicy(_Baseline):
    """Newest unseen pins first (pins created after ``now`` are not out yet)."""

    source = "fresh"

    def feed(self, user: int, n: int, now: float, *, exclude: Sequence[int] = ()) -> list[FeedItem]:
        created = np.asarray(self._created)
        ids = np.asarray(self._ids)
        live = created <= now
        order = ids[live][np.argsort(-created[live], kind="stable")]
        picks = self._take(order.tolist(), user, n, exclude)
        return [FeedItem(p, 0.0, "new", self.source) for p in picks]


class PopularPolicy(_Baseline):
    """Most engaged (7-day half-life) unseen pins first; newest pins fill in when few are."""

    source = "popular"

    def __init__(self, pins: PinTable, *, half_life_days: float = 7.0) -> None:
        self._pop = Popularity(0, half_life=half_life_days * DAY, keep=4000)
        super().__init__(pins)

    def add_pins(self, pins: PinTable) -> None:
        super().add_pins(pins)
        self._pop.grow(len(self._ids))

    def observe(self, events: EventBatch) -> None:
        super().observe(events)
        k = events.kind
        w = np.zeros(len(k))
        w[k == CLOSEUP] = 0.4
        w[k == CLICK] = 0.7
        w[k == SAVE] = 1.0
        pos = np.flatnonzero(w > 0)
        rows = np.array([self._row.get(p, -1) for p in events.pin[pos].tolist()], np.int64)
        ok = rows >= 0
        self._pop.add(rows[ok], w[pos][ok], events.ts[pos][ok])

    def feed(self, user: int, n: int, now: float, *, exclude: Sequence[int] = ()) -> list[FeedItem]:
        ids = np.asarray(self._ids)
        created = np.asarray(self._created)
        top = self._pop.top(4000)
        top = top[created[top] <= now]
        picks = self._take(ids[top].tolist(), user, n, exclude)
        if len(picks) < n:
            live = created <= now
            newest = ids[live][np.argsort(-created[live], kind="stable")]
            picks += self._take(newest.tolist(), user, n - len(picks), [*exclude, *picks])
        return [FeedItem(p, 0.0, "popular right now", self.source) for p in picks]


class EnginePolicy:
    """The FeedEngine behind the policy interface (it already has it; this only adapts exclude)."""

    def __init__(self, engine: FeedEngine) -> None:
        self.engine = engine

    def add_pins(self, pins: PinTable) -> None:
        self.engine.add_pins(pins)

    def observe(self, events: EventBatch) -> None:
        self.engine.observe(events)

    def feed(self, user: int, n: int, now: float, *, exclude: Sequence[int] = ()) -> list[FeedItem]:
        return self.engine.feed(user, n, now, exclude=exclude)
