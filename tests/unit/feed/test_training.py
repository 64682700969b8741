"""The feed engine on event logs without impressions (engagement imported from elsewhere).

Such a log holds saves, clicks and hides but no record of what was shown. Two defects are
covered: engagement rates divided by impressions alone (a log of saves made the "save rate" the
save count, which then decided the whole linear score), and no ranker at all being trained from
such a log although it says what each person chose next.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastegraph.feed import KINDS, EventBatch, FeedEngine, FeedParams, PinTable
from tastegraph.feed.pool import make_pool as _make_pool
from tastegraph.feed.ranker import FEATURES

DAY = 86400.0
NOW = 1_700_000_000.0
RATES = [FEATURES.index("save_rate"), FEATURES.index("hide_rate")]


def _pins(n: int, seed: int = 0) -> PinTable:
    rng = np.random.default_rng(seed)
    return PinTable(
        ids=np.arange(n, dtype=np.int64) + 100,
        vectors=rng.normal(size=(n, 8)).astype(np.float32),
        boards=[f"b{i % 7}" for i in range(n)],
        labels=[f"l{i % 5}" for i in range(n)],
        created_at=np.full(n, NOW - 30 * DAY),
    )


def _log(
    rng: np.random.Generator, n_users: int, n_pins: int, n: int, kinds: list[str]
) -> EventBatch:
    return EventBatch.from_arrays(
        user=rng.integers(0, n_users, n),
        pin=rng.integers(0, n_pins, n) + 100,
        kind=rng.choice(kinds, n),
        ts=np.sort(rng.uniform(NOW - 20 * DAY, NOW - 1.0, n)),
    )


def _rates(engine: FeedEngine, user: int) -> np.ndarray:
    """The rate features of every candidate the engine would consider for ``user`` now."""
    st_ = engine._users.get(user)
    gen = engine._generate(st_, NOW, np.random.default_rng(0))
    pool = _make_pool(gen)
    return engine._features(st_, pool, gen.interests, NOW, 1)[:, RATES]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=len(KINDS), unique=True),
    n=st.integers(1, 400),
)
def test_engagement_rates_stay_rates_whatever_the_log_holds(
    seed: int, kinds: list[str], n: int
) -> None:
    rng = np.random.default_rng(seed)
    engine = FeedEngine(_pins(60, seed), params=FeedParams(index_kind="exact"))
    engine.observe(_log(rng, 6, 60, n, kinds), now=NOW)
    for user in range(6):
        rates = _rates(engine, user)
        assert np.all((rates >= 0) & (rates <= 1)), (kinds, rates.max())
        assert np.all(rates.sum(axis=1) <= 1 + 1e-6)


def test_a_log_of_saves_does_not_rank_by_save_count() -> None:
    """Without impressions, the most saved pins used to top everyone's feed; co-engagement
    (who saved what with what) must count too."""
    rng = np.random.default_rng(1)
    pins = _pins(80)
    events = []
    # Pins 100..109 are saved by 40 background users each; pairs (120+2k, 121+2k) are saved
    # together by a few users; user 0 saved 120 only.
    for u in range(1000, 1040):
        events += [(u, p, "save", NOW - 5 * DAY + rng.uniform(0, DAY)) for p in range(100, 110)]
    for k in range(10):
        for u in range(2000 + 10 * k, 2004 + 10 * k):
            t = NOW - 10 * DAY + rng.uniform(0, DAY)
            events += [(u, 120 + 2 * k, "save", t), (u, 121 + 2 * k, "save", t + 60)]
    events.append((0, 120, "save", NOW - DAY))
    user, pin, kind, ts = zip(*events, strict=True)
    log = EventBatch.from_arrays(user=user, pin=pin, kind=kind, ts=ts)
    engine = FeedEngine(pins, params=FeedParams(index_kind="exact")).fit(log, NOW)
    engine.observe(log.take(np.arange(0)), now=NOW)
    page = [it.pin for it in engine.feed(0, 5, NOW, seed=0)]
    assert 121 in page[:3], page


def test_a_ranker_is_trained_from_engagement_when_no_impression_is_logged() -> None:
    rng = np.random.default_rng(2)
    log = _log(rng, 40, 80, 3000, ["save", "click"])
    engine = FeedEngine(_pins(80), params=FeedParams(index_kind="exact")).fit(log, NOW)
    assert engine.ranker_ is not None
    assert engine.fit_report_["labels"] == "next_engagement"
    assert engine.fit_report_["train_groups"] > 0
    assert len(engine.feed(3, 10, NOW)) == 10


def test_logged_impressions_still_train_the_ranker_as_before() -> None:
    rng = np.random.default_rng(3)
    user, pin, kind, ts, position = [], [], [], [], []
    for r in range(300):
        u, t = int(rng.integers(0, 30)), NOW - 20 * DAY + r * 3000.0
        shown = rng.choice(80, 8, replace=False) + 100
        user += [u] * 9
        pin += [*shown.tolist(), int(shown[rng.integers(0, 8)])]
        kind += ["impression"] * 8 + ["save"]
        ts += [t] * 8 + [t + 10.0]
        position += [*range(8), -1]
    log = EventBatch.from_arrays(user=user, pin=pin, kind=kind, ts=ts, position=position)
    engine = FeedEngine(_pins(80), params=FeedParams(index_kind="exact")).fit(log, NOW)
    assert engine.ranker_ is not None
    assert engine.fit_report_["labels"] == "impressions"
