"""Home feed and related pins: real-time updates, filters, caps, reasons, cold start, ranker I/O.

A small synthetic world, generated here: 8 visual clusters of 60 pins; inside each cluster 12
groups of 5 look-alikes (cosine ~0.98 within a group, ~0.75 within a cluster, ~0 across);
4 boards per cluster; one label per pair of look-alike groups; background users who engage
with every cluster so that popularity exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tastegraph.errors import IndexMismatch, NotFound
from tastegraph.feed import (
    Event,
    EventBatch,
    FeedEngine,
    FeedItem,
    FeedParams,
    PinTable,
)
from tastegraph.feed.blend import EXPLOIT, EXPLORE, ThompsonArms, blend
from tastegraph.feed.ranker import LambdaRanker, estimate_propensity
from tastegraph.feed.sources.clusters import cluster_history
from tastegraph.feed.sources.popularity import Popularity
from tastegraph.feed.sources.walks import BipartiteGraph, pixie_walk

World = tuple[PinTable, np.ndarray, np.ndarray]

K, PER, GROUP, D = 8, 60, 5, 24
N = K * PER
DAY = 86400.0
NOW = 1_700_000_000.0


def world(seed: int = 0) -> World:
    """Pins with ids 1000.., their cluster and look-alike group per row."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(D, D)))[0][:K].astype(np.float32)
    vecs = np.empty((N, D), np.float32)
    cluster = np.repeat(np.arange(K), PER)
    group = np.arange(N) // GROUP
    for g in range(N // GROUP):
        c = centres[g * GROUP // PER]
        sub = c + 0.55 * _unit(rng.normal(size=D))
        sub /= np.linalg.norm(sub)
        pts = sub + 0.12 * rng.normal(size=(GROUP, D)) / np.sqrt(D)
        vecs[g * GROUP : (g + 1) * GROUP] = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    boards = [f"board-{c}-{(i % PER) // 15}" for i, c in enumerate(cluster)]
    labels = [f"label-{g // 2}" for g in group]
    pins = PinTable(
        ids=np.arange(N, dtype=np.int64) + 1000,
        vectors=vecs,
        boards=boards,
        labels=labels,
        titles=[f"pin {i}" for i in range(N)],
        created_at=NOW - rng.uniform(10 * DAY, 60 * DAY, N),
    )
    return pins, cluster, group


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def background(cluster: np.ndarray, seed: int = 1, users: int = 40) -> list[Event]:
    """Users 900.. who each like one cluster: popularity and co-engagement for every cluster."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        fav = u % K
        members = np.flatnonzero(cluster == fav)
        for j, row in enumerate(rng.choice(members, 8, replace=False).tolist()):
            ts = NOW - 5 * DAY + u * 60 + j
            events.append(Event(900 + u, 1000 + row, "impression", ts, position=j))
            events.append(Event(900 + u, 1000 + row, "save", ts + 1))
    return events


def engine_for(pins: PinTable, **params: object) -> FeedEngine:
    return FeedEngine(pins, params=FeedParams(index_kind="exact", **params))  # type: ignore[arg-type]


def clusters_of(items: list[FeedItem], cluster: np.ndarray) -> list[int]:
    return [int(cluster[it.pin - 1000]) for it in items]


@pytest.fixture(scope="module")
def small() -> World:
    return world()


def saves(user: int, rows: list[int], ts: float) -> list[Event]:
    return [Event(user, 1000 + r, "save", ts + i) for i, r in enumerate(rows)]


def test_save_moves_next_feed_toward_its_cluster_without_fit(small: World) -> None:
    pins, cluster, _ = small
    eng = engine_for(pins)
    eng.observe(background(cluster))
    c0 = np.flatnonzero(cluster == 0)
    eng.observe(saves(1, c0[[0, 7, 14, 21, 28]].tolist(), NOW - 3 * DAY))
    before = clusters_of(eng.feed(1, 20, NOW), cluster)
    target = int(np.flatnonzero(cluster == 5)[3])
    eng.observe([Event(1, 1000 + target, "save", NOW + 10)])
    after = eng.feed(1, 20, NOW + 20)
    assert clusters_of(after, cluster).count(5) >= before.count(5) + 3
    assert 1000 + target not in [it.pin for it in after]  # engaged pins are not served again
    assert all(it.reason for it in after)
    assert any(
        it.reason == f'because you saved "pin {target}"' and it.because == 1000 + target
        for it in after
    )


def test_hide_removes_pin_and_pushes_down_its_lookalikes(small: World) -> None:
    pins, cluster, group = small
    eng = engine_for(pins)
    eng.observe(background(cluster))
    c2 = np.flatnonzero(cluster == 2)
    eng.observe(saves(2, c2[::6].tolist(), NOW - DAY))
    page = eng.feed(2, 40, NOW)
    rows = [it.pin - 1000 for it in page]
    # The shown pin with the most look-alikes also shown.
    target = max(rows, key=lambda r: sum(group[x] == group[r] for x in rows))
    mates = {int(x) for x in np.flatnonzero(group == group[target])} - {target}
    mates_before = [i for i, r in enumerate(rows) if r in mates]
    assert mates_before, "the world should show look-alikes together"
    eng.observe([Event(2, 1000 + target, "hide", NOW + 5)])
    after = [it.pin - 1000 for it in eng.feed(2, 40, NOW + 10)]
    assert target not in after
    mates_after = [i for i, r in enumerate(after) if r in mates]
    # Fewer look-alikes, and the ones left sit lower than before.
    assert len(mates_after) < len(mates_before) or (
        np.mean(mates_after) > np.mean(mates_before) + 5
    )


def test_hidden_seen_blocked_and_excluded_pins_never_appear(small: World) -> None:
    pins, cluster, _ = small
    eng = engine_for(pins)
    eng.observe(background(cluster))
    c1 = np.flatnonzero(cluster == 1)
    eng.observe(saves(3, c1[:6].tolist(), NOW - DAY))
    first = eng.feed(3, 10, NOW)
    hidden = first[0].pin
    seen = [it.pin for it in first[1:5]]
    blocked = first[5].pin
    eng.observe(
        [Event(3, hidden, "hide", NOW + 1)]
        + [Event(3, p, "impression", NOW + 1, position=i) for i, p in enumerate(seen)]
    )
    eng.set_blocked([blocked])
    excluded: list[int] = []
    never = {hidden, blocked, *seen, *(1000 + r for r in c1[:6].tolist())}
    for page in range(4):
        items = eng.feed(3, 10, NOW + 10, exclude=excluded)
        ids = [it.pin for it in items]
        assert len(ids) == 10 and len(set(ids)) == 10
        assert not never & set(ids)
        assert not set(excluded) & set(ids), f"page {page} repeats an excluded pin"
        excluded += ids


def test_per_board_and_label_caps_hold_in_the_top_10(small: World) -> None:
    pins, cluster, _ = small
    eng = engine_for(pins, board_cap=2, label_cap=3)
    eng.observe(background(cluster))
    boards = np.array(pins.boards)
    labels = np.array(pins.labels)
    for user, c in ((4, 0), (5, 6)):
        eng.observe(saves(user, np.flatnonzero(cluster == c)[:10].tolist(), NOW - DAY))
        items = eng.feed(user, 20, NOW)
        top = [it.pin - 1000 for it in items[:10]]
        assert max(np.unique(boards[top], return_counts=True)[1]) <= 2
        assert max(np.unique(labels[top], return_counts=True)[1]) <= 3
        assert all(it.reason and it.source for it in items)


def test_cold_start_is_diverse_and_adapts_after_three_saves(small: World) -> None:
    pins, cluster, _ = small
    eng = engine_for(pins)
    eng.observe(background(cluster))
    cold = eng.feed(77, 20, NOW)
    assert len(cold) == 20
    assert len(set(clusters_of(cold, cluster))) >= 5
    assert all(it.reason for it in cold)
    assert {it.source for it in cold} <= {"popular", "fresh", "explore"}
    c4 = np.flatnonzero(cluster == 4)
    eng.observe(saves(77, c4[[1, 12, 33]].tolist(), NOW + 1))
    warm = eng.feed(77, 20, NOW + 10)
    assert clusters_of(warm, cluster).count(4) >= clusters_of(cold, cluster).count(4) + 4


def test_never_engaged_new_pin_reaches_the_feed_by_visual_similarity(small: World) -> None:
    pins, cluster, _ = small
    eng = engine_for(pins)
    eng.observe(background(cluster))
    c6 = np.flatnonzero(cluster == 6)
    eng.observe(saves(6, c6[:4].tolist(), NOW - DAY))
    # A new pin (created long ago, so not "fresh") next to the user's interest.
    medoid_id = eng.interests(6, NOW)[0][0]
    vec = pins.vectors[medoid_id - 1000] + 0.01
    eng.add_pins(
        PinTable(
            ids=np.array([5000]),
            vectors=vec[None, :],
            boards=["brand-new-board"],
            labels=["new-label"],
            titles=["the new one"],
            created_at=np.array([NOW - 90 * DAY]),
        )
    )
    # It has no engagement, no co-engagement and a board nobody saved to: only the visual path
    # (the interest ANN) can bring it, and it competes with pins that have all of those.
    items = eng.feed(6, 30, NOW)
    hit = [it for it in items if it.pin == 5000]
    assert hit and hit[0].source == "interest"


def test_related_excludes_itself_and_collapses_near_duplicates(small: World) -> None:
    pins, cluster, _ = small
    dup = np.full(N, -1, np.int64)
    dup[:GROUP] = 7  # the first look-alike group are near-duplicates of each other
    dup[GROUP : 2 * GROUP] = 8
    pins_dup = PinTable(
        ids=pins.ids,
        vectors=pins.vectors,
        boards=pins.boards,
        labels=pins.labels,
        titles=pins.titles,
        created_at=pins.created_at,
        dup_group=dup,
    )
    eng = engine_for(pins_dup)
    eng.observe(background(cluster))
    rel = eng.related(1000, 12, NOW)
    ids = [it.pin for it in rel]
    assert 1000 not in ids
    assert not {1001, 1002, 1003, 1004} & set(ids), "near-duplicates of the pin itself"
    assert sum(1005 <= p < 1010 for p in ids) <= 1, "one per duplicate group"
    assert len(ids) == 12 and all(it.reason for it in rel)
    other = eng.related(1020, 12, NOW)
    assert 1020 not in [it.pin for it in other]
    assert sum(1000 <= it.pin < 1005 for it in other) <= 1
    with pytest.raises(NotFound):
        eng.related(99999, 5, NOW)


def test_thompson_explore_share_moves_with_rewards(small: World) -> None:
    arms = ThompsonArms(discount=0.99)
    prior = (np.array([2.0, 1.0]), np.array([2.0, 2.0]))
    base = arms.explore_probability(*prior)
    for _ in range(40):
        arms.update(EXPLORE, successes=1.0, failures=0.2)
        arms.update(EXPLOIT, successes=0.0, failures=1.0)
    up = arms.explore_probability(*prior)
    for _ in range(80):
        arms.update(EXPLOIT, successes=1.0, failures=0.2)
        arms.update(EXPLORE, successes=0.0, failures=1.0)
    down = arms.explore_probability(*prior)
    assert up > base + 0.3 and down < up - 0.5

    # Through the engine: a user who engages only with explore-sourced pins.
    pins, cluster, _ = small
    eng = engine_for(pins)
    eng.observe(background(cluster))
    eng.observe(saves(8, np.flatnonzero(cluster == 3)[:5].tolist(), NOW - DAY))
    start = eng.explore_probability(8)
    t = NOW
    for _ in range(6):
        items = eng.feed(8, 10, t)
        events = [Event(8, it.pin, "impression", t, position=i) for i, it in enumerate(items)]
        events += [
            Event(8, it.pin, "closeup", t + 1)
            for it in items
            if it.source in ("popular", "fresh", "explore")
        ]
        eng.observe(events)
        t += 60
    assert eng.explore_probability(8) > start + 0.15


def test_blend_respects_slot_arms_and_dup_groups() -> None:
    v = np.eye(6, dtype=np.float32)
    picks = blend(
        np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]),
        v,
        boards=np.arange(6),
        labels=np.arange(6),
        arms=np.array([0, 0, 0, 1, 1, 1], np.int8),
        n=3,
        explore=np.array([True, False, True]),
        dup_groups=np.array([-1, -1, -1, 4, 4, -1]),
    )
    assert picks.tolist() == [3, 0, 5]


def test_graph_delta_is_walkable_and_compacts() -> None:
    g = BipartiteGraph(6, 2, compact_every=100)
    g.add_edges(np.arange(4), np.array([0, 0, 1, 1]))
    g.add_edges(np.array([4]), np.array([0]))  # live edge in the delta
    rng = np.random.default_rng(0)
    walk = pixie_walk([(g, 1.0)], np.array([0]), np.ones(1), 6, rng, steps=2000, walkers=64)
    assert set(walk.rows.tolist()) == {1, 4}
    g.compact()
    assert sorted(g.right_neighbors(0).tolist()) == [0, 1, 4]


def test_popularity_top_list_is_kept_incrementally() -> None:
    pop = Popularity(10, half_life=DAY, keep=3)
    pop.add(np.array([1, 2, 3]), np.ones(3), np.zeros(3))
    assert pop.top(3).tolist() == [1, 2, 3]
    pop.add(np.array([7, 7]), np.ones(2), np.full(2, 10.0))
    assert pop.top(2).tolist()[0] == 7


def test_interest_clusters_separate_tastes(small: World) -> None:
    pins, cluster, _ = small
    rows = np.concatenate([np.flatnonzero(cluster == 1)[:6], np.flatnonzero(cluster == 5)[:4]])
    labels, medoids = cluster_history(pins.vectors[rows])
    assert len(medoids) == 2
    assert len(set(labels[:6].tolist())) == 1 and len(set(labels[6:].tolist())) == 1


def logged_engine(pins: PinTable, cluster: np.ndarray) -> tuple[FeedEngine, EventBatch]:
    """Engine plus a log of served feeds and scripted reactions (users like one cluster)."""
    eng = engine_for(pins, rank_trees=30, rank_min_child=5)
    rng = np.random.default_rng(5)
    events: list[Event] = background(cluster)
    eng.observe(events)
    t = NOW
    for s in range(3):
        for u in range(24):
            fav = u % K
            items = eng.feed(u, 10, t)
            page = []
            for i, it in enumerate(items):
                page.append(
                    Event(
                        u,
                        it.pin,
                        "impression",
                        t,
                        position=i,
                        source=it.source,
                        request_id=f"{u}-{s}",
                    )
                )
                if cluster[it.pin - 1000] == fav and rng.random() < 0.9**i:
                    page.append(Event(u, it.pin, "closeup", t + 1, source=it.source))
                    page.append(Event(u, it.pin, "save", t + 2, source=it.source))
            eng.observe(page)
            events += page
            t += 30
    return eng, EventBatch.from_events(events)


def test_ranker_fit_save_load_round_trip_and_digest_check(small: World, tmp_path: Path) -> None:
    pins, cluster, _ = small
    eng, log = logged_engine(pins, cluster)
    now = float(log.ts.max()) + 60
    eng.fit(log, now)
    assert eng.ranker_ is not None and eng.fit_report_["train_groups"] > 10
    before = eng.feed(3, 10, now)
    eng.save(tmp_path / "model")

    same = engine_for(pins, rank_trees=30, rank_min_child=5)
    same.observe(log)
    same.load(tmp_path / "model")
    assert same.feed(3, 10, now) == before

    other = engine_for(pins, rank_trees=31, rank_min_child=5)
    with pytest.raises(IndexMismatch):
        other.load(tmp_path / "model")
    # Serving knobs are not part of the digest: tuning them needs no retraining.
    engine_for(pins, rank_trees=30, rank_min_child=5, mmr_lambda=0.6).load(tmp_path / "model")

    assert eng.ranker_ is not None
    X = np.random.default_rng(0).normal(size=(50, eng.ranker_.booster_.num_feature()))
    folder = eng.ranker_.save(tmp_path / "r", digest="abc")
    again = LambdaRanker.load(folder, digest="abc")
    assert np.array_equal(again.predict(X), eng.ranker_.predict(X))
    with pytest.raises(IndexMismatch):
        LambdaRanker.load(folder, digest="other")
    (folder / "ranker.txt").write_text((folder / "ranker.txt").read_text() + "\n")
    with pytest.raises(IndexMismatch):
        LambdaRanker.load(folder, digest="abc")


def test_position_bias_curve_is_recovered_when_popular_items_sit_on_top() -> None:
    rng = np.random.default_rng(3)
    n = 30000
    item = rng.integers(0, 60, n)
    rel = np.linspace(0.05, 0.9, 60)[item]
    # The logging policy puts relevant items higher: raw CTR per position overstates the bias.
    pos = np.clip((rng.normal(9 - 10 * rel, 2.0)).round().astype(int), 0, 9)
    click = rng.random(n) < rel * 0.8**pos
    est = estimate_propensity(pos, click, item, n_positions=10)
    raw = np.array([click[pos == k].mean() for k in range(10)])
    raw = raw / raw[0]
    truth = 0.8 ** np.arange(10)
    assert np.abs(est - truth).max() < 0.12
    assert np.abs(est - truth).max() < np.abs(raw - truth).max()


@pytest.mark.parametrize("read_slots", [None, 1])
def test_concurrent_reads_and_real_time_writes(small: World, read_slots: int | None) -> None:
    """Feeds and related pins from several threads while events arrive: no errors, reads
    never see a half-applied write, and a save is reflected by the next call after it (reads
    free-running, and one at a time behind the fair gate)."""
    import threading

    pins, cluster, _ = small
    eng = FeedEngine(pins, params=FeedParams(index_kind="exact"), read_slots=read_slots)
    eng.observe(background(cluster))
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            while not stop.is_set():
                user = int(rng.integers(1, 6))
                items = eng.feed(user, 15, NOW + float(rng.integers(0, 100)))
                assert items and len({it.pin for it in items}) == len(items)
                eng.related(1000 + int(rng.integers(0, N)), 8, NOW)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    try:
        rng = np.random.default_rng(9)
        for i in range(60):
            user = 1 + i % 5
            row = int(rng.integers(0, N))
            kind = "hide" if i % 7 == 0 else "save"
            eng.observe([Event(user, 1000 + row, kind, NOW + i, board=f"b{i % 3}")])
            assert 1000 + row not in [it.pin for it in eng.feed(user, 40, NOW + i + 1)]
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
    assert not errors, errors[0]


def test_knows_the_pins_of_its_catalog(small: World) -> None:
    pins, _, _ = small
    eng = engine_for(pins)
    first = int(pins.ids[0])
    assert eng.knows([first, 5, first + 1, -1]).tolist() == [True, False, True, False]
    assert eng.knows([]).shape == (0,)


def test_pins_without_board_or_label_are_not_linked_by_an_empty_one(small: World) -> None:
    """A missing board is no board: unboarded pins are not walk neighbours of each other, and
    a missing label names nothing (no shared diversity cap, no "something different: ")."""
    pins, _, _ = small
    bare = PinTable(
        ids=pins.ids,
        vectors=pins.vectors,
        boards=[""] * len(pins.ids),
        labels=[""] * len(pins.ids),
        titles=[""] * len(pins.ids),
        created_at=pins.created_at,
    )
    eng = engine_for(bare)
    for pin in pins.ids[:5].tolist():
        items = eng.related(pin, 10, NOW)
        assert len(items) == 10
        # Nobody engaged with anything: every related pin can only be a visual neighbour.
        assert {it.source for it in items} == {"visual"}, [it.reason for it in items]
    feed = eng.feed(7, 20, NOW)
    assert len(feed) == 20 and all(it.reason and not it.reason.endswith(": ") for it in feed)


def test_read_slots_change_no_result(small: World) -> None:
    pins, cluster, _ = small
    free = engine_for(pins)
    gated = FeedEngine(pins, params=FeedParams(index_kind="exact"), read_slots=1)
    for eng in (free, gated):
        eng.observe(background(cluster))
    for user in range(1, 6):
        assert free.feed(user, 20, NOW) == gated.feed(user, 20, NOW)
    assert free.related(1003, 10, NOW) == gated.related(1003, 10, NOW)
