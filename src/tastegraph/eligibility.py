"""Who may see which pin now: the one visibility rule search, similar, related and feed use.

An :class:`Eligibility` is a list of rules. Each rule answers, for candidate pin ids and a
:class:`Context` (who is looking, and when), which of them may be shown; a pin is eligible when
every rule allows it. Rules that know their excluded pins as a set also list them
(``excluded``), so a vector search can leave them out inside the index and still fill its page.

Today's rules: pins blocked by the operator (:class:`BlockedPins`) and pins the viewer hid
(:class:`HiddenByViewer`); deleted pins leave the indexes and the feed engine themselves.
Moderation verdicts, private boards and deletions elsewhere are new rules appended to the list:
a class with ``name``, ``allows`` and ``excluded``, taking the viewer and ``now`` from the
context, never the clock or the database.
Near-duplicate suppression (the best of each group is kept, in rank order) is
:func:`first_of_each_group`, applied by :meth:`Eligibility.filter_ranked`.

Example
-------
>>> import numpy as np
>>> blocked = BlockedPins()
>>> blocked.block([2])
>>> rule = Eligibility([blocked, HiddenByViewer()])
>>> ctx = Context(viewer=7, now=0.0, hidden=frozenset({3}))
>>> rule.allowed(np.array([1, 2, 3, 4]), ctx).tolist()
[1, 4]
>>> rule.filter_ranked(np.array([4, 1, 5]), Context(), groups=np.array([9, -1, 9])).tolist()
[4, 1]
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BlockedPins",
    "Context",
    "Eligibility",
    "HiddenByViewer",
    "Rule",
    "first_of_each_group",
]

I64 = NDArray[np.int64]
BOOL = NDArray[np.bool_]


@dataclass(frozen=True)
class Context:
    """Who is looking, and when (``viewer`` None: anonymous, e.g. a search without a user)."""

    viewer: int | None = None
    now: float = 0.0
    # Pins this viewer hid, when the caller knows them (the feed engine does).
    hidden: frozenset[int] = field(default_factory=frozenset)


class Rule(Protocol):
    """One reason a pin may not be shown.

    ``allows(ids, ctx)`` is a boolean mask over ``ids``; ``excluded(ctx)`` the ids it rules out
    when it knows them as a set (None when it cannot list them, e.g. a rule over a score).
    """

    name: str

    def allows(self, ids: I64, ctx: Context) -> BOOL: ...

    def excluded(self, ctx: Context) -> I64 | None: ...


def _ids(values: Iterable[int]) -> I64:
    return np.fromiter((int(v) for v in values), np.int64)


class BlockedPins:
    """Pins nobody may see (operator blocks; the home of moderation's "remove" verdicts)."""

    def __init__(self, name: str = "blocked") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._ids: set[int] = set()
        self._array: I64 = np.zeros(0, np.int64)

    def block(self, pin_ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.update(int(p) for p in pin_ids)
            self._array = np.array(sorted(self._ids), np.int64)

    def unblock(self, pin_ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.difference_update(int(p) for p in pin_ids)
            self._array = np.array(sorted(self._ids), np.int64)

    def allows(self, ids: I64, ctx: Context) -> BOOL:
        blocked = self._array
        if len(blocked) == 0:
            return np.ones(len(ids), bool)
        return ~np.isin(ids, blocked)

    def excluded(self, ctx: Context) -> I64 | None:
        return self._array


class HiddenByViewer:
    """Pins the viewer hid never come back to them."""

    name = "hidden"

    def allows(self, ids: I64, ctx: Context) -> BOOL:
        if not ctx.hidden:
            return np.ones(len(ids), bool)
        return ~np.isin(ids, _ids(ctx.hidden))

    def excluded(self, ctx: Context) -> I64 | None:
        return _ids(ctx.hidden)


def first_of_each_group(groups: NDArray[np.int64]) -> BOOL:
    """Near-duplicate suppression over a ranked list: True for the first pin of each group.

    ``groups[i]`` is the near-duplicate group of the ``i``-th pin; a negative group is a pin of
    its own (never suppressed).
    """
    groups = np.asarray(groups, np.int64)
    keep = np.ones(len(groups), bool)
    grouped = np.flatnonzero(groups >= 0)
    if len(grouped):
        _, first = np.unique(groups[grouped], return_index=True)
        keep[grouped] = False
        keep[grouped[first]] = True
    return keep


class Eligibility:
    """Every visibility rule, applied together: a pin is eligible when all rules allow it."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules: list[Rule] = list(rules)

    def add(self, rule: Rule) -> None:
        self.rules.append(rule)

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def mask(self, ids: Iterable[int] | I64, ctx: Context) -> BOOL:
        """True where the pin may be shown to ``ctx.viewer`` at ``ctx.now``."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else _ids(ids), np.int64)
        ok = np.ones(len(arr), bool)
        for r in self.rules:
            ok &= r.allows(arr, ctx)
        return ok

    def allowed(self, ids: Iterable[int] | I64, ctx: Context) -> I64:
        """The eligible ids, in their order."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else _ids(ids), np.int64)
        return arr[self.mask(arr, ctx)]

    def excluded(self, ctx: Context) -> I64 | None:
        """Ids the rules know to be out (for an index's ``exclude``); None when there are none."""
        parts = [e for r in self.rules if (e := r.excluded(ctx)) is not None and len(e)]
        if not parts:
            return None
        return np.unique(np.concatenate(parts)).astype(np.int64)

    def filter_ranked(
        self, ids: I64, ctx: Context, *, groups: NDArray[np.int64] | None = None
    ) -> I64:
        """The eligible ids of a ranked list, only the first of each near-duplicate group kept
        when ``groups`` (one per id) is given."""
        ids = np.asarray(ids, np.int64)
        ok = self.mask(ids, ctx)
        if groups is not None:
            ok &= first_of_each_group(np.where(ok, groups, -1))
        return ids[ok]
