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

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput
from tastegraph.feed import (
    SOURCES,
    EventBatch,
    FeedEngine,
    FeedItem,
    FeedParams,
    PinTable,
    as_batch,
)
from tastegraph.feed.data import CLICK, CLOSEUP, DWELL, HIDE, IMPRESSION, SAVE
from tastegraph.feed.sources.clusters import kmeans
from tastegraph.feed.sources.popularity import Popularity

__all__ = [
    "POLICIES",
    "ChronologicalPolicy",
    "FeedPolicy",
    "PopularPolicy",
    "assign",
    "simulate",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

POLICIES = ("chronological", "popular", "tastegraph")
DAY = 86400.0
T0 = 1_700_000_000.0  # simulated start (any fixed instant: the engine never reads the clock)


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


class _EnginePolicy:
    """The FeedEngine behind the policy interface (it already has it; this only adapts exclude)."""

    def __init__(self, engine: FeedEngine) -> None:
        self.engine = engine

    def add_pins(self, pins: PinTable) -> None:
        self.engine.add_pins(pins)

    def observe(self, events: EventBatch) -> None:
        self.engine.observe(events)

    def feed(self, user: int, n: int, now: float, *, exclude: Sequence[int] = ()) -> list[FeedItem]:
        return self.engine.feed(user, n, now, exclude=exclude)


# --------------------------------------------------------------------------------------------
# People


@dataclass
class _Person:
    centres: F32  # (m, d) taste centres
    weights: F64  # (m,) relative to the strongest (max 1)


@dataclass
class _Stats:
    sessions: int = 0
    saves: int = 0
    dwell_s: float = 0.0
    hides: int = 0
    impressions: int = 0
    shown: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Behaviour:
    """Constants of the browsing model (documented in the module docstring)."""

    examine_decay: float = 0.95  # examination probability at position g: decay ** g
    closeup_base: float = 0.03
    closeup_gain: float = 0.8
    save_gain: float = 0.55
    click_gain: float = 0.15
    hide_below: float = 0.12
    hide_prob: float = 0.12
    dwell_base_ms: float = 1500.0
    dwell_gain_ms: float = 22000.0
    noise: float = 0.05
    more_pages: float = 0.85


def _mix64(a: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # splitmix64 finaliser: a fixed, platform-independent hash for per-(person, pin) noise.
    with np.errstate(over="ignore"):
        a = a ^ (a >> np.uint64(30))
        a = a * np.uint64(0xBF58476D1CE4E5B9)
        a = a ^ (a >> np.uint64(27))
        a = a * np.uint64(0x94D049BB133111EB)
        return a ^ (a >> np.uint64(31))


def _noise(user: int, rows: I64, seed: int, scale: float) -> F64:
    """Zero-mean noise fixed per (user, pin): the same pin always looks the same to a person."""
    with np.errstate(over="ignore"):
        base = np.uint64((user * 1_000_003 + seed * 7919) & ((1 << 64) - 1))
        h1 = _mix64(rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + base)
        h2 = _mix64(h1 + np.uint64(0x632BE59BD9B4E019))
    u1 = (h1 >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.asarray(scale * math.sqrt(6.0) * (u1 + u2 - 1.0))


class _World:
    """Hidden tastes and the relevance function of the simulated people."""

    def __init__(self, vectors: F32, n_users: int, seed: int, clusters: int | None) -> None:
        rng = np.random.default_rng([seed, 1])
        n = len(vectors)
        k = clusters or int(np.clip(n // 150, 4, 40))
        self.centroids = kmeans(vectors, k, seed=seed)
        sims = vectors @ self.centroids.T
        own = np.argmax(sims, axis=1)
        self.cluster = own
        sizes = np.bincount(own, minlength=k).astype(np.float64)
        # Scale of "close": the typical cosine of a pin to its own centroid versus to others, so
        # the same taste model works for tight synthetic clusters and looser real embeddings.
        inside = np.median(sims[np.arange(n), own])
        others = np.ones_like(sims, dtype=bool)
        others[np.arange(n), own] = False
        outside = np.median(sims[others]) if k > 1 else 0.0
        self.inside = float(inside)
        self.outside = float(outside)
        self.people: list[_Person] = []
        prob = sizes / sizes.sum()
        for _ in range(n_users):
            m = 1 + min(int(rng.poisson(0.8)), 3)
            m = min(m, int((sizes > 0).sum()))
            chosen = rng.choice(k, m, replace=False, p=prob)
            jitter = rng.normal(size=(m, vectors.shape[1])).astype(np.float32)
            jitter /= np.linalg.norm(jitter, axis=1, keepdims=True)
            spread = math.sqrt(max(1.0 - self.inside**2, 1e-6)) * 0.5
            centres = self.centroids[chosen] + spread * jitter
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            w = rng.dirichlet(np.ones(m))
            self.people.append(_Person(centres.astype(np.float32), w / w.max()))

    def relevance(self, user: int, vectors: F32, rows: I64, seed: int, noise: float) -> F64:
        """How much ``user`` likes each pin, in ``[0, 1]`` (hidden from every policy)."""
        person = self.people[user]
        cos = vectors @ person.centres.T
        z = np.clip((cos - self.outside) / max(self.inside - self.outside, 1e-6), 0.0, 1.25)
        r = (z**2 / 1.5625) @ person.weights
        return np.asarray(np.clip(r + _noise(user, rows, seed, noise), 0.0, 1.0))


# --------------------------------------------------------------------------------------------
# The simulation


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
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    behaviour = _Behaviour()
    world = _World(vecs, users, seed, clusters)
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
            serving[name] = _EnginePolicy(engine)
    arm = {u: assign(u, policies, f"tastegraph-ab-{seed}") for u in range(users)}
    stats = {u: _Stats() for u in range(users)}
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
            assert isinstance(tg, _EnginePolicy)
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
    return _report(
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
    world: _World,
    vecs: F32,
    policy: FeedPolicy,
    observers: Sequence[FeedPolicy],
    user: int,
    session: int,
    start: float,
    seed: int,
    b: _Behaviour,
    page_size: int,
    max_pages: int,
    st: _Stats,
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


# --------------------------------------------------------------------------------------------
# Report


def _ci(values: F64, rng: np.random.Generator, reps: int) -> dict[str, float]:
    if not len(values):
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    idx = rng.integers(0, len(values), size=(reps, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi)}


def _report(
    stats: dict[int, _Stats],
    arm: dict[int, str],
    policies: Sequence[str],
    n_pins: int,
    reps: int,
    seed: int,
    plot_path: Path | str | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 4])
    out: dict[str, Any] = {"config": config, "policies": {}}
    per_user: dict[str, dict[str, F64]] = {}
    sizes = [sum(1 for u in stats if arm[u] == name and stats[u].sessions) for name in policies]
    m_cov = min(sizes) if sizes else 0
    for name in policies:
        us = [u for u in stats if arm[u] == name and stats[u].sessions]
        s = [stats[u] for u in us]
        sess = np.array([x.sessions for x in s], np.float64)
        metrics = {
            "saves_per_session": np.array([x.saves for x in s], np.float64) / np.maximum(sess, 1),
            "dwell_per_session_s": np.array([x.dwell_s for x in s]) / np.maximum(sess, 1),
            "hide_rate": np.array([x.hides / max(x.impressions, 1) for x in s], np.float64),
        }
        per_user[name] = metrics
        entry: dict[str, Any] = {
            "users": len(us),
            "sessions": int(sess.sum()),
            "impressions": int(sum(x.impressions for x in s)),
        }
        for key, vals in metrics.items():
            entry[key] = _ci(vals, rng, reps)
        entry["coverage"] = _coverage_ci([x.shown for x in s], m_cov, n_pins, rng, reps)
        out["policies"][name] = entry
    if "tastegraph" in per_user and "popular" in per_user:
        a = per_user["tastegraph"]["dwell_per_session_s"]
        b = per_user["popular"]["dwell_per_session_s"]
        lift = {
            "metric": "dwell_per_session_s",
            "over": "popular",
            "mean": float("nan"),
            "lo": float("nan"),
            "hi": float("nan"),
            "target": 0.19,
            "target_met": False,
        }
        if len(a) and len(b) and b.mean() > 0:
            ia = rng.integers(0, len(a), size=(reps, len(a)))
            ib = rng.integers(0, len(b), size=(reps, len(b)))
            ratios = a[ia].mean(axis=1) / np.maximum(b[ib].mean(axis=1), 1e-12) - 1.0
            lo, hi = np.percentile(ratios, [2.5, 97.5])
            mean = float(a.mean() / b.mean() - 1.0)
            lift.update(
                mean=mean, lo=float(lo), hi=float(hi), target_met=bool(mean >= 0.19 and lo > 0)
            )
        out["lift"] = lift
    else:
        out["lift"] = {}
    out["plot"] = str(_plot(out, Path(plot_path))) if plot_path is not None else None
    return out


def _coverage_ci(
    shown: list[set[int]], m: int, n_pins: int, rng: np.random.Generator, reps: int
) -> dict[str, float]:
    """Share of the catalog shown to ``m`` people of the arm, with a half-sampling interval.

    Coverage is a union, not a mean, so it grows with the number of people: arms are compared
    at the same ``m`` (the smallest arm), averaging over random subsets. Bootstrap resamples
    with replacement would repeat people and bias it downward; instead the interval is the
    spread of coverage over random halves (drawn without replacement, which for a mean
    reproduces the full-sample variance), centred on the estimate.
    """
    nan = {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    if not shown or m < 2:
        return nan
    arrays = [np.fromiter(s, np.int64, len(s)) for s in shown]

    def cov(k: int) -> float:
        pick = rng.choice(len(arrays), k, replace=False)
        return len(np.unique(np.concatenate([arrays[j] for j in pick]))) / n_pins

    draws = 1 if m == len(arrays) else 30
    point = float(np.mean([cov(m) for _ in range(draws)]))
    half = np.array([cov(max(1, m // 2)) for _ in range(min(reps, 200))])
    q_lo, q_hi = np.percentile(half, [2.5, 97.5])
    centre = float(half.mean())
    return {
        "mean": point,
        "lo": point - (centre - float(q_lo)),
        "hi": point + (float(q_hi) - centre),
    }


def _plot(report: dict[str, Any], path: Path) -> Path:
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report["policies"])
    keys = [
        ("saves_per_session", "saves / session"),
        ("dwell_per_session_s", "dwell s / session"),
        ("hide_rate", "hide rate"),
        ("coverage", "catalog coverage"),
    ]
    fig = Figure(figsize=(12, 3.4))
    FigureCanvasAgg(fig)
    colours = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868"]
    for i, (key, title) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        means = [report["policies"][n][key]["mean"] for n in names]
        lo = [report["policies"][n][key]["mean"] - report["policies"][n][key]["lo"] for n in names]
        hi = [report["policies"][n][key]["hi"] - report["policies"][n][key]["mean"] for n in names]
        ax.bar(names, means, yerr=[lo, hi], capsize=4, color=colours[: len(names)])
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=20)
    lift = report.get("lift") or {}
    if lift.get("mean") is not None and math.isfinite(lift.get("mean", float("nan"))):
        fig.suptitle(
            f"tastegraph vs popular, dwell/session: {lift['mean']:+.1%} "
            f"[{lift['lo']:+.1%}, {lift['hi']:+.1%}] (95% CI)"
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
