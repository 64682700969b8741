"""The one visibility rule: who may see which pin now."""

from __future__ import annotations

import numpy as np

from tastegraph.eligibility import (
    BlockedPins,
    Context,
    Eligibility,
    HiddenByViewer,
    first_of_each_group,
)


def ids(*xs: int) -> np.ndarray:
    return np.array(xs, np.int64)


def test_with_no_rules_every_pin_is_eligible() -> None:
    rule = Eligibility()
    assert rule.mask(ids(1, 2, 3), Context()).all()
    assert rule.excluded(Context()) is None
    assert rule.allowed([], Context()).tolist() == []


def test_blocked_pins_are_out_for_everyone_until_unblocked() -> None:
    blocked = BlockedPins()
    rule = Eligibility([blocked])
    assert rule.excluded(Context()) is None  # nothing blocked: no exclusion list to pass on
    blocked.block([2, 4])
    for ctx in (Context(), Context(viewer=7, now=1e9)):
        assert rule.allowed(ids(1, 2, 3, 4), ctx).tolist() == [1, 3]
    excluded = rule.excluded(Context())
    assert excluded is not None and excluded.tolist() == [2, 4]
    blocked.unblock([2])
    assert rule.allowed(ids(1, 2, 3, 4), Context()).tolist() == [1, 2, 3]


def test_hidden_pins_are_out_for_the_viewer_who_hid_them_only() -> None:
    rule = Eligibility([HiddenByViewer()])
    mine = Context(viewer=1, hidden=frozenset({5}))
    assert rule.allowed(ids(4, 5, 6), mine).tolist() == [4, 6]
    assert rule.allowed(ids(4, 5, 6), Context(viewer=2)).tolist() == [4, 5, 6]
    excluded = rule.excluded(mine)
    assert excluded is not None and excluded.tolist() == [5]


def test_a_pin_is_eligible_only_when_every_rule_allows_it() -> None:
    blocked = BlockedPins()
    blocked.block([1])
    rule = Eligibility([blocked, HiddenByViewer()])
    ctx = Context(viewer=3, hidden=frozenset({2}))
    assert rule.mask(ids(1, 2, 3), ctx).tolist() == [False, False, True]
    excluded = rule.excluded(ctx)
    assert excluded is not None and excluded.tolist() == [1, 2]


class PrivateBoards:
    """An extension: pins on a private board are visible to their owner only."""

    name = "private"

    def __init__(self, owner_of: dict[int, int]) -> None:
        self.owner_of = owner_of

    def allows(self, pin_ids: np.ndarray, ctx: Context) -> np.ndarray:
        return np.array([self.owner_of.get(int(p), ctx.viewer) == ctx.viewer for p in pin_ids])

    def excluded(self, ctx: Context) -> np.ndarray | None:
        return None  # depends on the viewer: answered per candidate


def test_new_rules_extend_the_list_and_read_the_viewer_from_the_context() -> None:
    rule = Eligibility([BlockedPins()])
    rule.add(PrivateBoards({10: 1}))
    assert rule.allowed(ids(10, 11), Context(viewer=1)).tolist() == [10, 11]
    assert rule.allowed(ids(10, 11), Context(viewer=2)).tolist() == [11]
    assert rule.allowed(ids(10, 11), Context()).tolist() == [11]
    assert rule.rule("private").name == "private"


def test_near_duplicates_keep_the_best_ranked_of_each_group() -> None:
    groups = np.array([7, -1, 7, 8, -1, 8], np.int64)
    assert first_of_each_group(groups).tolist() == [True, True, False, True, True, False]
    assert first_of_each_group(np.zeros(0, np.int64)).tolist() == []


def test_an_ineligible_pin_does_not_suppress_its_duplicates() -> None:
    blocked = BlockedPins()
    blocked.block([1])
    rule = Eligibility([blocked])
    ranked = ids(1, 2, 3, 4)
    groups = np.array([5, 5, 5, -1], np.int64)
    assert rule.filter_ranked(ranked, Context(), groups=groups).tolist() == [2, 4]
    assert rule.filter_ranked(ranked, Context()).tolist() == [2, 3, 4]
