"""Issue 15, defect 1 (engine side): no stored event can break the feed engine.

Events with times such as 1e300, epoch microseconds of 2099, -5, NaN or infinity, and ids out
of range are skipped and counted by reason; every decayed quantity stays finite whatever the
gap between an event's time and ``now``; a healthy log with any such rows mixed in still builds
an engine whose every feed answers with finite scores.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastegraph.feed import KINDS, Event, EventBatch, FeedEngine, FeedParams
from tastegraph.feed.hygiene import SkipCounter, float_column, int_column
from tastegraph.feed.sources.popularity import Popularity
from tests.unit.feed.test_engine import DAY, NOW, background, engine_for, saves, world

HOSTILE_TIMES = [1e300, 4.1e18, -5.0, math.nan, math.inf, -math.inf, 2**63 * 1.0]
PINS, CLUSTER, _ = world()
HEALTHY = background(CLUSTER, users=16)


def _healthy_engine(**params: object) -> FeedEngine:
    eng = engine_for(PINS, **params)
    eng.observe(HEALTHY, now=NOW)
    return eng


def _assert_feeds_answer(eng: FeedEngine, users: list[int], now: float) -> None:
    for u in users:
        items = eng.feed(u, 10, now)
        assert items, f"user {u} got an empty feed"
        assert all(math.isfinite(it.score) for it in items), items
    related = eng.related(int(PINS.ids[0]), 5, now)
    assert related and all(math.isfinite(it.score) for it in related)


def test_popularity_score_is_finite_whatever_the_gap_to_now() -> None:
    # Old code: OverflowError from 2.0 ** (-(now - t0) / half_life) once t0 sat far from now.
    for t in (1e300, 4.1e18, 4.07e9):
        p = Popularity(3, half_life=7 * DAY)
        p.add(np.array([0, 1]), np.array([1.0, 1.0]), np.array([NOW, t]))
        s = p.score(np.array([0, 1, 2]), NOW)
        assert np.isfinite(s).all() and s[2] == 0.0


@given(
    ts=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=6),
    now=st.floats(min_value=-1e12, max_value=1e12),
)
def test_popularity_never_overflows_or_goes_nan(ts: list[float], now: float) -> None:
    p = Popularity(4, half_life=3600.0)
    p.add(np.arange(len(ts)) % 4, np.ones(len(ts)), np.array(ts))
    assert np.isfinite(p.score(np.arange(4), now)).all()
    assert np.isfinite(p.ref).all()


def test_hostile_times_and_unknown_pins_are_skipped_and_counted() -> None:
    eng = _healthy_engine()
    pin = int(PINS.ids[3])
    bad = [Event(77, pin, "click", t) for t in HOSTILE_TIMES]
    bad.append(Event(77, 10**12, "save", NOW))  # a pin the catalog never had
    bad.append(Event(77, pin, "save", NOW + 30 * DAY))  # far ahead of the clock
    eng.observe(bad, now=NOW)
    assert eng.skipped_ == {"bad_time": len(HOSTILE_TIMES), "unknown_pin": 1, "future_time": 1}
    assert 77 not in eng._users  # nothing of these rows reached any state
    _assert_feeds_answer(eng, [900, 901, 77, 5], NOW)


def test_a_future_click_does_not_take_over_popularity() -> None:
    eng = _healthy_engine()
    pin = int(PINS.ids[5])
    eng.observe([Event(78, pin, "click", 4.07e9)], now=NOW)  # 2099, in seconds
    top = eng._pop.top(10)
    assert eng._rows_of(np.array([pin]))[0] not in top[:1]


def test_fit_skips_what_it_cannot_use_and_reports_it() -> None:
    eng = engine_for(PINS)
    bad = [Event(79, int(PINS.ids[1]), "save", t) for t in HOSTILE_TIMES]
    eng.fit(EventBatch.from_events(HEALTHY + bad), NOW)
    assert eng.fit_report_["skipped_events"] == {"bad_time": len(HOSTILE_TIMES)}
    _assert_feeds_answer(eng, [900, 79], NOW)


def test_store_columns_convert_value_by_value() -> None:
    col, ok = int_column([1, 2**63, -(2**63), "7", 3.0, 3.5, True, None, b"x"])
    assert ok.tolist() == [True, False, True, False, True, False, False, False, False]
    assert col[ok].tolist() == [1, -(2**63), 3]
    f = float_column([1, "nan", None, 10**400, 2.5], default=0.0)
    assert f[0] == 1.0 and math.isnan(f[1]) and f[2] == 0.0 and math.isnan(f[3]) and f[4] == 2.5


any_float = st.floats(allow_nan=True, allow_infinity=True)
any_int = st.integers(min_value=-(2**63), max_value=2**63 - 1)
hostile_event = st.tuples(
    st.one_of(any_int, st.integers(900, 920)),  # user
    st.one_of(any_int, st.sampled_from(PINS.ids[:40].tolist())),  # pin
    st.integers(0, len(KINDS) - 1),  # kind code
    st.one_of(any_float, st.floats(NOW - 90 * DAY, NOW + 2 * DAY)),  # time
    any_float,  # dwell
    st.integers(-(2**31), 2**31 - 1),  # position
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(hostile_event, min_size=1, max_size=25), seed=st.integers(0, 3))
def test_any_event_tuples_mixed_into_a_healthy_log_never_break_the_engine(
    rows: list[tuple[int, int, int, float, float, int]], seed: int
) -> None:
    base = EventBatch.from_events(HEALTHY)
    user, pin, kind, ts, dwell, pos = (list(c) for c in zip(*rows, strict=True))
    junk = EventBatch.from_arrays(
        user, pin, np.array(kind, np.int8), ts, dwell_ms=dwell, position=pos
    )
    mixed = _concat(base, junk, seed)
    eng = engine_for(PINS)
    eng.observe(mixed, now=NOW)
    users = [*sorted({int(u) for u in mixed.user.tolist()})[:12], -1]
    _assert_feeds_answer(eng, users, NOW + 60)
    # A restart replays the same log: it builds again, with the same skips.
    again = engine_for(PINS)
    again.observe(mixed, now=NOW)
    assert again.skipped_ == eng.skipped_
    # Training replays it too.
    trained = FeedEngine(PINS, params=FeedParams(index_kind="exact", rank_trees=5))
    trained.fit(mixed, NOW)
    _assert_feeds_answer(trained, users[:4], NOW + 60)


def _concat(a: EventBatch, b: EventBatch, seed: int) -> EventBatch:
    parts = [a, b]
    cols = {
        f: np.concatenate([getattr(x, f) for x in parts])
        for f in ("user", "pin", "kind", "ts", "dwell_ms", "position", "surface", "request")
    }
    n = len(cols["user"])
    order = np.random.default_rng(seed).permutation(n)
    return EventBatch.from_arrays(
        cols["user"][order],
        cols["pin"][order],
        cols["kind"][order],
        cols["ts"][order],
        dwell_ms=cols["dwell_ms"][order],
        position=cols["position"][order],
        surface=cols["surface"][order],
        request=cols["request"][order],
    )


def test_skip_counter_summary() -> None:
    c = SkipCounter()
    c.add_mask("bad_time", np.array([True, True, False]))
    c.add_mask("bad_pin", np.array([True]))
    assert c.summary() == "3 events skipped: 2 bad_time, 1 bad_pin"
    assert SkipCounter().summary() == ""


def test_saves_stay_useful_next_to_skipped_rows() -> None:
    eng = _healthy_engine()
    c0 = np.flatnonzero(CLUSTER == 0)
    eng.observe([*saves(5, c0[:4].tolist(), NOW - DAY), Event(5, 1000, "save", math.nan)])
    assert eng.skipped_ == {"bad_time": 1}
    items = eng.feed(5, 10, NOW)
    assert sum(CLUSTER[it.pin - 1000] == 0 for it in items) >= 5
