"""A/B simulator for feed policies: synthetic people with hidden tastes browse feeds.

The world
---------
The catalog's image vectors are clustered with spherical k-means; these clusters are what people
can like. Each simulated person has a hidden taste: a mixture of one to four clusters, each with a
weight and a centre jittered around the cluster centroid. The relevance of a pin to a person is
the weighted closeness of its vector to their taste centres, plus a little noise fixed per
(person, pin). People never see the engine's features, scores or reasons: they only act on this
relevance. Part of the catalog arrives during the run (new pins, no engagement).

A session
---------
A person opens the feed (pages of ``page_size``). Each shown pin is an impression; the person
examines it with a probability that falls with its position (position bias); an examined pin is
opened (closeup, with a dwell that grows with relevance), maybe saved or clicked, or, when
irrelevant, sometimes hidden. Patience rises with good pins and falls with bad ones and hides
(fatigue); the session ends when it runs out or the person does not ask for another page. All
events go to every policy's ``observe`` after each page, as a shared log does in a real A/B
test.

Policies and assignment
-----------------------
People are assigned to policies by a hash of their id (:func:`assign`): stable, independent of
the order or number of people. ``chronological`` serves the newest unseen pins, ``popular`` the
most engaged (recency-decayed) unseen pins, and ``tastegraph`` the :class:`FeedEngine`, which
learns online from ``observe`` (and retrains its ranker from the log once, mid-run). All three
sit behind the same interface: ``add_pins``, ``observe``, ``feed``.

Metrics
-------
Per policy: saves per session, dwell seconds per session, hide rate (hides / impressions),
catalog coverage (share of the catalog shown at least once), each with a 95% bootstrap interval
over people; and the lift of ``tastegraph`` over ``popular`` on dwell per session with its
interval. A PNG with error bars is written when ``plot_path`` is given.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> centres = rng.normal(size=(8, 16))
>>> vecs = (centres[rng.integers(0, 8, 400)] + 0.3 * rng.normal(size=(400, 16))).astype("f4")
>>> out = simulate(vecs, [f"b{i % 40}" for i in range(400)], [""] * 400, users=30, sessions=2,
...                seed=1, bootstrap=50)
>>> sorted(out["policies"]), "mean" in out["lift"]
(['chronological', 'popular', 'tastegraph'], True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput
from tastegraph.evaluation.simulator.policies import (
    DAY,
    POLICIES,
    ChronologicalPolicy,
    EnginePolicy,
    FeedPolicy,
    PopularPolicy,
    assign,
)
from tastegraph.evaluation.simulator.report import Stats, build_report
from tastegraph.evaluation.simulator.world import Behaviour, World
from tastegraph.extras import require
from tastegraph.feed.data import (
    CLICK,
    CLOSEUP,
    DWELL,
    HIDE,
    IMPRESSION,
    SAVE,
    SOURCES,
    EventBatch,
    FeedParams,
    PinTable,
    as_batch,
)
from tastegraph.feed.engine import FeedEngine

__all__ = ["simulate"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

T0 = 1_700_000_000.0  # simulated start (any fixed instant: the engine never reads the clock)


def simulate(
    catalog_vectors: F32,
    boards: Sequence[str],
    labels: Sequence[str],
    *,
    users: int = 300,
    sessions: int = 6,
    policies: Sequence[str] = POLICIES,
    seed: int = 0,
    page_size: int = 10,
    max_pages: int = 3,
    arrivals: float = 0.2,
    clusters: int | None = None,
    fit_at: Sequence[int] | None = None,
    params: FeedParams | None = None,
    bootstrap: int = 1000,
    plot_path: Path | str | None = None,
) -> dict[str, Any]:
    """Run an A/B test of feed policies on simulated people and report metrics with intervals.

    Parameters
    ----------
    catalog_vectors : (n, d) float
        Image vectors of the catalog (pins get ids ``0..n-1``).
    boards, labels : sequence of str
        Board and label of each pin.
    users : int
        Simulated people (assigned to policies by :func:`assign`).
    sessions : int
        Sessions per person, one per simulated day.
    policies : sequence of str
        Any of ``"chronological"``, ``"popular"``, ``"tastegraph"``.
    seed : int
        Everything random (tastes, behaviour, arrival times) derives from it; equal seeds give
        equal results.
    page_size, max_pages : int
        Feed page size and most pages per session.
    arrivals : float
        Share of the catalog that arrives during the run rather than before it.
    clusters : int, optional
        Taste clusters (default: one per 150 pins, 4 to 40).
    fit_at : sequence of int, optional
        Session rounds before which ``tastegraph`` retrains its ranker on the log so far
        (default: the middle round when there are at least 4).
    params : FeedParams, optional
        Engine settings (default: exact index, which is deterministic at any size).
    bootstrap : int
        Bootstrap resamples for the intervals.
    plot_path : path, optional
        Where to write the PNG.

    Returns
    -------
    dict
        ``config``; ``policies[name]`` with ``users``, ``sessions``, ``impressions`` and, for
        ``saves_per_session``, ``dwell_per_session_s``, ``hide_rate`` and ``coverage``, a
        ``{"mean", "lo", "hi"}`` (95% bootstrap over people); ``lift`` of tastegraph over
        popular on dwell per session (``mean``, ``lo``, ``hi`` as fractions, ``target_met`` for
        ``mean >= 0.19`` with ``lo > 0``); ``plot`` (path or None).
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise InvalidInput(
            f"unknown policies {unknown}", hint=f"choose from: {', '.join(POLICIES)}"
        )
    vecs = np.asarray(catalog_vectors, np.float32)
    n = len(vecs)
    if n < 20 or len(boards) != n or len(labels) != n:
        raise InvalidInput("the catalog needs at least 20 pins with a board and label each")
    if plot_path is not None:  # before the run, not after it
        require("matplotlib", extra="eval", purpose="The plot of `tastegraph simulate`")
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    behaviour = Behaviour()
    world = World(vecs, users, seed, clusters)
    rng = np.random.default_rng([seed, 2])
    horizon = sessions * DAY
    created = np.where(
        rng.random(n) < arrivals,
        T0 + rng.uniform(0, horizon, n),
        T0 - rng.uniform(0, 60 * DAY, n),
    )
    titles = [f"{labels[i] or 'pin'} #{i}" for i in range(n)]
    table = PinTable(
        ids=np.arange(n, dtype=np.int64),
        vectors=vecs,
        boards=list(boards),
        labels=list(labels),
        titles=titles,
        created_at=created,
    )

    def subset(rows: I64) -> PinTable:
        assert table.created_at is not None
        return PinTable(
            ids=table.ids[rows],
            vectors=table.vectors[rows],
            boards=[table.boards[i] for i in rows.tolist()],
            labels=[table.labels[i] for i in rows.tolist()],
            titles=[titles[i] for i in rows.tolist()],
            created_at=table.created_at[rows],
        )

    initial = np.flatnonzero(created <= T0)
    pending = np.flatnonzero(created > T0)
    pending = pending[np.argsort(created[pending], kind="stable")]
    engine_params = params or FeedParams(index_kind="exact", seed=seed)
    serving: dict[str, FeedPolicy] = {}
    for name in policies:
        if name == "chronological":
            serving[name] = ChronologicalPolicy(subset(initial))
        elif name == "popular":
            serving[name] = PopularPolicy(subset(initial))
        else:
            engine = FeedEngine(subset(initial), params=engine_params)
            serving[name] = EnginePolicy(engine)
    arm = {u: assign(u, policies, f"tastegraph-ab-{seed}") for u in range(users)}
    stats = {u: Stats() for u in range(users)}
    offsets = rng.uniform(0, DAY * 0.9, users)
    schedule = sorted(
        (T0 + s * DAY + offsets[u], s, u) for s in range(sessions) for u in range(users)
    )
    fit_rounds = set(fit_at if fit_at is not None else ([sessions // 2] if sessions >= 4 else []))
    log: list[EventBatch] = []
    arrived = 0
    fitted_rounds: set[int] = set()
    for t, s, u in schedule:
        while arrived < len(pending) and created[pending[arrived]] <= t:
            stop = arrived
            while stop < len(pending) and created[pending[stop]] <= t:
                stop += 1
            new = subset(pending[arrived:stop])
            for pol in serving.values():
                pol.add_pins(new)
            arrived = stop
        if s in fit_rounds and s not in fitted_rounds and "tastegraph" in serving:
            fitted_rounds.add(s)
            tg = serving["tastegraph"]
            assert isinstance(tg, EnginePolicy)
            tg.engine.fit(_concat(log), now=t)
        batches = _session(
            world,
            vecs,
            serving[arm[u]],
            list(serving.values()),
            u,
            s,
            t,
            seed,
            behaviour,
            page_size,
            max_pages,
            stats[u],
        )
        for batch in batches:
            log.append(batch)
    return build_report(
        stats,
        arm,
        policies,
        n,
        bootstrap,
        seed,
        plot_path,
        {
            "catalog": n,
            "dim": int(vecs.shape[1]),
            "users": users,
            "sessions": sessions,
            "seed": seed,
            "taste_clusters": len(world.centroids),
            "page_size": page_size,
            "max_pages": max_pages,
            "arrivals": arrivals,
            "fit_at": sorted(fitted_rounds),
        },
    )


def _session(
    world: World,
    vecs: F32,
    policy: FeedPolicy,
    observers: Sequence[FeedPolicy],
    user: int,
    session: int,
    start: float,
    seed: int,
    b: Behaviour,
    page_size: int,
    max_pages: int,
    st: Stats,
) -> list[EventBatch]:
    """One browsing session; every page's events are observed before the next page is asked."""
    rng = np.random.default_rng([seed, 3, user, session])
    st.sessions += 1
    patience = 1.0
    served: list[int] = []
    out: list[EventBatch] = []
    t = start
    for page in range(max_pages):
        items = policy.feed(user, page_size, t, exclude=served)
        if not items:
            break
        rows = np.array([it.pin for it in items], np.int64)
        rel = world.relevance(user, vecs[rows], rows, seed, b.noise)
        log = _PageLog()
        emit = log.emit
        stopped = False
        for i, item in enumerate(items):
            g = page * page_size + i
            src = SOURCES.index(item.source) if item.source in SOURCES else -1
            t += 2.0
            emit(item.pin, IMPRESSION, t, g, src)
            st.impressions += 1
            st.shown.add(item.pin)
            served.append(item.pin)
            r = float(rel[i])
            if rng.random() >= b.examine_decay**g:
                continue
            if rng.random() < b.closeup_base + b.closeup_gain * r**1.5:
                dwell = float(
                    np.exp(rng.normal(math.log(b.dwell_base_ms + b.dwell_gain_ms * r), 0.4))
                )
                emit(item.pin, CLOSEUP, t + 0.5, g, src)
                emit(item.pin, DWELL, t + 0.5 + dwell / 1000.0, g, src, dwell)
                st.dwell_s += dwell / 1000.0
                t += dwell / 1000.0
                patience += 0.08
                if rng.random() < b.save_gain * r * r:
                    emit(item.pin, SAVE, t + 1.0, g, src)
                    st.saves += 1
                    patience += 0.05
                if rng.random() < b.click_gain * r:
                    emit(item.pin, CLICK, t + 1.5, g, src)
            elif r < b.hide_below and rng.random() < b.hide_prob:
                emit(item.pin, HIDE, t + 1.0, g, src)
                st.hides += 1
                patience -= 0.25
            else:
                patience -= 0.12 if r < 0.2 else 0.03
            if patience <= 0:
                stopped = True
                break
        batch = log.batch(user, (user * 1000 + session) * 10 + page)
        out.append(batch)
        for pol in observers:
            pol.observe(batch)
        t += 5.0
        if stopped or rng.random() >= b.more_pages * min(1.0, patience):
            break
    return out


class _PageLog:
    """The events of one page, as columns."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {
            k: [] for k in ("pin", "kind", "ts", "dwell", "pos", "src")
        }

    def emit(self, pin: int, kind: int, ts: float, pos: int, src: int, dwell: float = 0.0) -> None:
        for key, value in zip(self.cols, (pin, kind, ts, dwell, pos, src), strict=True):
            self.cols[key].append(value)

    def batch(self, user: int, request: int) -> EventBatch:
        c = self.cols
        m = len(c["pin"])
        return EventBatch.from_arrays(
            np.full(m, user),
            c["pin"],
            np.asarray(c["kind"], np.int8),
            c["ts"],
            dwell_ms=c["dwell"],
            position=c["pos"],
            surface=np.full(m, 1),
            request=np.full(m, request),
            source=c["src"],
        )


def _concat(batches: list[EventBatch]) -> EventBatch:
    if not batches:
        return as_batch([])
    return EventBatch(
        user=np.concatenate([b.user for b in batches]),
        pin=np.concatenate([b.pin for b in batches]),
        kind=np.concatenate([b.kind for b in batches]),
        ts=np.concatenate([b.ts for b in batches]),
        dwell_ms=np.concatenate([b.dwell_ms for b in batches]),
        position=np.concatenate([b.position for b in batches]),
        surface=np.concatenate([b.surface for b in batches]),
        request=np.concatenate([b.request for b in batches]),
        source=np.concatenate([b.source for b in batches]),
    )
