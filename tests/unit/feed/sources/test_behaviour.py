"""The feed's whole-catalog behavioural source (feed.sources.behaviour) and the engine's use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tastegraph.feed import EventBatch, FeedEngine, FeedParams, PinTable
from tastegraph.feed.ranker import FEATURES
from tastegraph.feed.sources import behaviour


def _blocks(n_users: int = 60, block: int = 6, n_blocks: int = 3, seed: int = 0):
    """Each person engages with most of one block of pins (blocks are disjoint)."""
    rng = np.random.default_rng(seed)
    users, rows = [], []
    for u in range(n_users):
        own = np.arange(block) + block * (u % n_blocks)
        pick = rng.choice(own, block - 1, replace=False)
        users += [u] * len(pick)
        rows += pick.tolist()
    return np.array(users), np.array(rows), block * n_blocks


def test_a_history_in_one_block_ranks_the_rest_of_that_block_first() -> None:
    users, rows, n = _blocks()
    model = behaviour.fit(users, rows, n, l2=1.0)
    assert model.n_pins == n and model.weights.shape == (n, n)
    assert not np.diag(model.weights).any()
    history = np.array([6, 7])  # block 1 is pins 6..11
    got, scores, seeds = behaviour.candidates(model, history, np.ones(2), 10)
    assert set(got[:4].tolist()) == {8, 9, 10, 11}
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)
    assert not np.isin(got, history).any()
    assert set(seeds.tolist()) <= {6, 7}
    # Any pin's score (the ranker feature) is the one the source ranks by; others' are 0.
    every = behaviour.scores(model, history, np.ones(2), np.concatenate([got, [0, 1, 99]]))
    assert np.allclose(every[: len(got)], scores) and not every[len(got) :].any()
    # Excluded pins are skipped, not counted in n.
    got2, _, _ = behaviour.candidates(model, history, np.ones(2), 3, np.array([8, 9]))
    assert sorted(got2.tolist()) == [10, 11]  # other blocks score 0: never proposed


def test_the_model_covers_at_most_max_pins_the_most_engaged() -> None:
    users, rows, n = _blocks()
    extra_u = np.arange(100, 140)
    users = np.concatenate([users, extra_u])
    rows = np.concatenate([rows, np.full(len(extra_u), 3)])  # pin 3 engaged by many more people
    model = behaviour.fit(users, rows, n, l2=1.0, max_pins=5)
    assert model.n_pins == 5 and 3 in model.rows.tolist()
    assert np.all(np.diff(model.rows) > 0)
    # History outside the model proposes nothing; an empty log makes an empty model.
    outside = np.setdiff1d(np.arange(n), model.rows)[:1]
    assert len(behaviour.candidates(model, outside, np.ones(1), 5)[0]) == 0
    assert behaviour.fit(np.zeros(0, np.int64), np.zeros(0, np.int64), n).n_pins == 0


def test_save_and_load_map_pins_by_id(tmp_path: Path) -> None:
    users, rows, n = _blocks()
    model = behaviour.fit(users, rows, n, l2=1.0)
    ids = np.arange(n, dtype=np.int64) * 10 + 5
    behaviour.save(model, tmp_path / "b.npz", ids)
    saved = behaviour.saved_ids(tmp_path / "b.npz")
    # The loading engine knows the pins at other rows (reversed), and not pin row 0.
    rows_of = np.where(saved == 5, -1, n - 1 - (saved - 5) // 10)
    back = behaviour.load(tmp_path / "b.npz", rows_of)
    assert back.n_pins == n - 1 and np.all(np.diff(back.rows) > 0)
    a, b = 7, 9  # rows in the fitted model
    ia = int(np.searchsorted(back.rows, n - 1 - a))
    ib = int(np.searchsorted(back.rows, n - 1 - b))
    assert back.weights[ia, ib] == model.weights[a, b]


def test_the_engine_serves_and_persists_behaviour_candidates(tmp_path: Path) -> None:
    users, rows, n = _blocks(n_users=90, block=10)
    pins = PinTable(
        ids=np.arange(n) + 1000, vectors=np.ones((n, 4)), boards=[""] * n, labels=[""] * n
    )
    events = EventBatch.from_arrays(
        user=users,
        pin=rows + 1000,
        kind=np.full(len(users), "save"),
        ts=1000.0 + np.arange(len(users), dtype=np.float64),
    )
    params = FeedParams(
        index_kind="exact", walk_steps=0, n_cf=0, n_popular=0, n_fresh=0, ann_k=1, ann_k_min=1
    )
    now = 1000.0 + len(users)
    engine = FeedEngine(pins, params=params).fit(events, now)
    assert engine.fit_report_["behaviour_pins"] == n
    assert "behaviour_score" in FEATURES and "behaviour_rank" in FEATURES
    # A new person saves two pins of block 2: its other pins come first, from this source.
    engine.observe(
        EventBatch.from_arrays(
            user=[999, 999], pin=[1020, 1021], kind=["save", "save"], ts=[now, now]
        )
    )
    page = engine.feed(999, 8, now + 1)
    got = [it.pin for it in page if it.source == "behaviour"]
    assert len(got) >= 6 and set(got[:6]) <= set(range(1022, 1030)), page
    saved = engine.save(tmp_path / "model")
    assert (saved / "behaviour.npz").is_file()
    # A server start: load the model, replay the log (observe refits nothing).
    fresh = FeedEngine(pins, params=params).load(saved)
    fresh.observe(events)
    fresh.observe(
        EventBatch.from_arrays(
            user=[999, 999], pin=[1020, 1021], kind=["save", "save"], ts=[now, now]
        )
    )
    assert [it.pin for it in fresh.feed(999, 8, now + 1)] == [it.pin for it in page]
