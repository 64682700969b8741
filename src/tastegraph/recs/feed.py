"""The home feed and related pins: events in, personalised ranked pins with reasons out.

Pure: the engine holds its state in memory, takes ``now`` and data as arguments, and never reads
the clock or a database; the lead's services feed it events and map store ids.

Pipeline of one ``feed(user, n, now)`` call
-------------------------------------------
1. **Interests** (PinnerSage): the user's last ~100 engaged pins are clustered on their image
   vectors (Ward); each cluster is queried through its medoid, with an importance equal to the
   recency-decayed engagement of its members. Clusters are recomputed only when the history
   changed; importance is recomputed at every call because it depends on ``now``.
2. **Candidates** from several generators: ANN neighbours of the interest medoids (the vector
   index, ``hnsw`` by default; neighbours allotted in proportion to importance), Pixie random
   walks over the pin-board and pin-user graphs from the most important engaged pins, item-item
   co-engagement (CF), popular pins (overall and per coarse visual cluster) and fresh pins.
3. **Filters**: hidden, already seen (impressed or engaged), blocked (moderated) and ``exclude``.
4. **Ranking**: a fixed linear score of the candidate features
   (:data:`tastegraph.recs.ranker.FEATURES`) keeps the best ``rank_top`` candidates (quotas per
   arm); a LightGBM LambdaRank model orders those once ``fit`` has trained one, the linear score
   before any training.
5. **Blending**: scores scaled to [0, 1], minus a penalty for looking like hidden pins (their
   nearest neighbours, not their whole interest); slots drawn between "exploit" (interest,
   walk, CF) and "explore" (popular, fresh) sources by Thompson sampling on Beta posteriors per
   arm: the user's own engagement with what each arm served, on top of a prior worth
   ``bandit_prior_strength`` impressions at the population's rate, held within the explore
   budget (``explore_share_min``..``explore_share_max``; fresh pins at most
   ``fresh_share_max``); maximal marginal relevance over image vectors; caps per board and per
   label in each window of 10; one pin per near-duplicate group.
6. **Reasons**: every item says why ("because you saved ...", "popular in ...", "new", ...),
   naming pins in words people wrote (:mod:`tastegraph.recs.reasons`).

Real time
---------
``observe(events)`` updates everything the next call reads, without retraining: the user's
history (so their interests), hidden and seen sets, bandit posteriors, the pin-user graph
(edges are walkable at once through the graph's delta), engagement counters and popularity.
Events it cannot use (unknown pins, times that are not finite, outside the accepted window or
far ahead of the clock, bad dwell or position) are skipped and counted in ``skipped_``
(:mod:`tastegraph.recs.hygiene`): no single event can stop the engine.

Concurrency
-----------
Reads (``feed``, ``related``) run concurrently under the shared side of a readers-writer lock;
writers (``observe``, ``add_pins``, ``fit``, ``load``) take it exclusively, so a read sees every
event observed before it started and never half of a write. ``load`` reads the model files before
taking the lock, so a hot swap blocks reads only for the swap itself. The little a read updates
(which arm served each pin, lazily rebuilt caches) goes under a small mutex or is swapped in as
one tuple.

Speed
-----
Per-user state is a few small arrays in a dict; graphs are CSR arrays (plus a small node-sorted
delta of live edges) walked by all walkers at once; popularity keeps an incrementally merged top
list; CF neighbours are precomputed by ``fit``; interest queries go to the ANN index in at most a
few batches; every cosine the features need comes from one matrix product; blending works on the
best ``rank_top`` candidates. ``bench/bench_feed.py`` measures it at 100k pins x 10k users x 1M
events.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> vecs = rng.normal(size=(60, 8)).astype(np.float32)
>>> pins = PinTable(ids=np.arange(100, 160), vectors=vecs, boards=[f"b{i % 12}" for i in range(60)],
...                 labels=[f"l{i % 5}" for i in range(60)])
>>> engine = FeedEngine(pins, params=FeedParams(index_kind="exact"))
>>> engine.observe([Event(user=1, pin=105, kind="save", ts=1000.0)])
>>> items = engine.feed(1, 5, now=2000.0)
>>> len(items), all(item.reason for item in items), 105 in [item.pin for item in items]
(5, True, False)
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import IndexMismatch, NotFound
from tastegraph.index import IndexMeta, VectorIndex, open_index
from tastegraph.index.base import RWLock
from tastegraph.recs import reasons
from tastegraph.recs.blend import (
    EXPLOIT,
    EXPLORE,
    ThompsonArms,
    blend,
    bound_slots,
    lookalike_penalty,
    rrf,
)
from tastegraph.recs.candidates import (
    BipartiteGraph,
    Popularity,
    cluster_history,
    item_item_cf,
    kmeans,
    pixie_walk,
)
from tastegraph.recs.feed_data import (
    _SOURCE_CODE,
    CLICK,
    CLOSEUP,
    DWELL,
    FORMAT,
    HIDE,
    IMPRESSION,
    KINDS,
    SAVE,
    SOURCES,
    Event,
    EventBatch,
    FeedItem,
    FeedParams,
    PinTable,
    _surface_code,
    as_batch,
)
from tastegraph.recs.hygiene import SkipCounter, usable
from tastegraph.recs.ranker import FEATURES, LambdaRanker

__all__ = [
    "KINDS",
    "SOURCES",
    "Event",
    "EventBatch",
    "FeedEngine",
    "FeedItem",
    "FeedParams",
    "PinTable",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
I8 = NDArray[np.int8]
BOOL = NDArray[np.bool_]

DAY = 86400.0


# Bandit arm of each source: personal generators exploit, the others explore.
_SOURCE_ARM = np.array([EXPLOIT, EXPLOIT, EXPLOIT, EXPLORE, EXPLORE, EXPLORE, EXPLOIT], np.int8)
_GENERATORS = ("interest", "walk", "cf", "popular", "fresh", "explore")

_MISSING_RANK = 1000.0
_ANN_BATCH_K = 64  # interests wanting at most this many neighbours share one index search
# Candidates kept as negatives per engagement when the ranker learns without impressions (more
# cost training time and, measured on MovieLens, did not rank better).
_ENGAGED_NEGATIVES = 100
_COL = {name: j for j, name in enumerate(FEATURES)}


# --------------------------------------------------------------------------------------------
# Per-user state


@dataclass
class _User:
    slot: int
    arms: ThompsonArms
    cap: int
    hist_rows: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    hist_w: F64 = field(default_factory=lambda: np.zeros(0))
    hist_last: F64 = field(default_factory=lambda: np.zeros(0))
    hist_saved: BOOL = field(default_factory=lambda: np.zeros(0, bool))
    hist_slot: dict[int, int] = field(default_factory=dict)
    hidden: dict[int, float] = field(default_factory=dict)
    seen: dict[int, None] = field(default_factory=dict)
    served: dict[int, int] = field(default_factory=dict)
    n_events: int = 0
    last_ts: float = -math.inf
    version: int = 0
    # Caches that reads fill in, each swapped in as one tuple so that concurrent readers see
    # either the old or the new one: (version, cluster labels, medoid positions) of the history,
    # and (n_events, sorted rows of seen and hidden pins) for the filters.
    clusters: tuple[int, I64, I64] | None = None
    excluded: tuple[int, I64] | None = None

    def __post_init__(self) -> None:
        self.hist_rows = np.full(self.cap, -1, np.int64)
        self.hist_w = np.zeros(self.cap)
        self.hist_last = np.zeros(self.cap)
        self.hist_saved = np.zeros(self.cap, bool)

    @property
    def n_hist(self) -> int:
        return len(self.hist_slot)

    def add_history(self, row: int, w: float, ts: float, saved: bool, half_life: float) -> None:
        """Exponentially decayed engagement weight per pin, exact for any event order in time."""
        slot = self.hist_slot.get(row)
        if slot is None:
            if len(self.hist_slot) >= self.cap:
                # Full: the pin engaged longest ago makes room.
                slot = int(np.argmin(self.hist_last))
                del self.hist_slot[int(self.hist_rows[slot])]
            else:
                slot = len(self.hist_slot)
            self.hist_slot[row] = slot
            self.hist_rows[slot] = row
            self.hist_w[slot] = w
            self.hist_last[slot] = ts
            self.hist_saved[slot] = saved
            self.version += 1
            return
        last = self.hist_last[slot]
        if ts >= last:
            self.hist_w[slot] = self.hist_w[slot] * 2.0 ** (-(ts - last) / half_life) + w
            self.hist_last[slot] = ts
        else:
            self.hist_w[slot] += w * 2.0 ** (-(last - ts) / half_life)
        self.hist_saved[slot] |= saved

    def history(self) -> tuple[I64, F64, F64, BOOL]:
        n = self.n_hist
        return self.hist_rows[:n], self.hist_w[:n], self.hist_last[:n], self.hist_saved[:n]


@dataclass
class _Interests:
    medoids: I64  # pin rows, most important first
    importance: F64  # share, sums to 1
    saved_row: I64  # a saved member per cluster (-1 none), for reasons
    n_clusters: int


@dataclass
class _Generated:
    """Candidates of one request: per generator, rows best first with scores."""

    rows: dict[str, I64]
    scores: dict[str, F64]
    interest_cluster: I64  # per interest row: index into interests
    walk_seed: I64  # per walk row: seed row
    cf_seed: I64  # per cf row: seed row
    interests: _Interests | None


@dataclass
class _Pool:
    """Candidates of one request as aligned columns (``G = len(_GENERATORS)``)."""

    rows: I64  # sorted pin rows
    member: NDArray[np.bool_]  # (G, c): proposed by generator g
    score: F64  # (G, c): generator score, 0 when absent
    rank: F64  # (G, c): rank in the generator's list, _MISSING_RANK when absent
    cluster: I64  # interest cluster that found it (-1)
    walk_seed: I64  # seed row of the walk that reached it (-1)
    cf_seed: I64  # seed row of its co-engagement (-1)

    def take(self, idx: NDArray[Any]) -> _Pool:
        return _Pool(
            self.rows[idx],
            self.member[:, idx],
            self.score[:, idx],
            self.rank[:, idx],
            self.cluster[idx],
            self.walk_seed[idx],
            self.cf_seed[idx],
        )

    def source(self) -> I8:
        """Primary source code of each candidate: the first generator, in priority order."""
        first = np.argmax(self.member, axis=0)
        code: I8 = np.array([_SOURCE_CODE[g] for g in _GENERATORS], np.int8)[first]
        code[~self.member.any(axis=0)] = _SOURCE_CODE["explore"]
        return code


def _make_pool(gen: _Generated, rows: I64 | None = None) -> _Pool:
    """Align every generator's output on ``rows`` (default: the union of all generators)."""
    if rows is None:
        parts = [r for r in gen.rows.values() if len(r)]
        rows = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    c = len(rows)
    g_n = len(_GENERATORS)
    member = np.zeros((g_n, c), bool)
    score = np.zeros((g_n, c))
    rank = np.full((g_n, c), _MISSING_RANK)
    cluster = np.full(c, -1, np.int64)
    walk_seed = np.full(c, -1, np.int64)
    cf_seed = np.full(c, -1, np.int64)
    if c:
        for g, name in enumerate(_GENERATORS):
            grows = gen.rows.get(name)
            if grows is None or not len(grows):
                continue
            pos = np.minimum(np.searchsorted(rows, grows), c - 1)
            hit = np.flatnonzero(rows[pos] == grows)
            at = pos[hit]
            member[g, at] = True
            score[g, at] = gen.scores[name][hit]
            rank[g, at] = hit
            if name == "interest":
                cluster[at] = gen.interest_cluster[hit]
            elif name == "walk":
                walk_seed[at] = gen.walk_seed[hit]
            elif name == "cf":
                cf_seed[at] = gen.cf_seed[hit]
    return _Pool(rows, member, score, rank, cluster, walk_seed, cf_seed)


# --------------------------------------------------------------------------------------------
# The engine


class FeedEngine:
    """Home feed and related pins over one catalog; see the module docstring for the pipeline.

    Parameters
    ----------
    pins : PinTable
        The catalog (more can be added with :meth:`add_pins`).
    params : FeedParams, optional
    index : VectorIndex, optional
        An index of the pins' image vectors keyed by pin id (e.g. the application's own). By
        default the engine builds one of ``params.index_kind`` in memory.

    Attributes
    ----------
    ranker_ : LambdaRanker or None
        Set by :meth:`fit` (or :meth:`load`); None means the fixed linear score is used.
    fit_report_ : dict
        Sizes of the last training run.
    """

    def __init__(
        self,
        pins: PinTable,
        *,
        params: FeedParams | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        self.params = params or FeedParams()
        p = self.params
        self._dim = int(pins.vectors.shape[1])
        # Reads (feed, related) share the state and run concurrently; writers (observe,
        # add_pins, fit, load) are exclusive. The few things a read updates (per-user bookkeeping
        # of what was served, lazily rebuilt caches) go under the small mutex or are swapped in
        # as one tuple.
        self._rw = RWLock()
        self._mutex = threading.Lock()
        self._own_index = index is None
        if index is None:
            # Nothing is written under this folder unless someone calls save() on the index.
            folder = Path(tempfile.gettempdir()) / f"tastegraph-feed-{uuid.uuid4().hex}"
            index = open_index(p.index_kind, folder, IndexMeta("image", "feed", self._dim))
        self.index = index
        self._ids: I64 = np.zeros(0, np.int64)
        self._vec: F32 = np.zeros((0, self._dim), np.float32)
        self._board: I64 = np.zeros(0, np.int64)
        self._label: I64 = np.zeros(0, np.int64)
        self._titles: list[str] = []
        self._created: F64 = np.zeros(0)
        self._dup: I64 = np.zeros(0, np.int64)
        self._blocked: BOOL = np.zeros(0, bool)
        self._coarse: I64 = np.zeros(0, np.int64)
        self._centroids: F32 | None = None
        self._board_names: list[str] = []
        self._board_code: dict[str, int] = {}
        self._label_names: list[str] = []
        self._label_code: dict[str, int] = {}
        self._sorted_ids: I64 = np.zeros(0, np.int64)
        self._sorted_rows: I64 = np.zeros(0, np.int64)
        self._by_created: I64 = np.zeros(0, np.int64)
        self._created_sorted: F64 = np.zeros(0)
        self.ranker_: LambdaRanker | None = None
        self.fit_report_: dict[str, Any] = {}
        # Events observe() could not use, by reason (see recs.hygiene.REASONS).
        self.skipped_ = SkipCounter()
        # Look-alike cut per hidden pin row (see _lookalike_floors); cleared when pins arrive.
        self._floor_cache: dict[int, float] = {}
        self._cf: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self._reset_state(0)
        self.add_pins(pins)

    # -- catalog ---------------------------------------------------------------------------

    @property
    def n_pins(self) -> int:
        return len(self._ids)

    @property
    def n_users(self) -> int:
        return len(self._users)

    def add_pins(self, pins: PinTable) -> None:
        """Add pins; ids the engine already knows are ignored (their data is not replaced).

        New pins are searchable at once (added to the index) and get their board edge, so a pin
        with no engagement can reach feeds through visual similarity and board walks.
        """
        if pins.vectors.shape[1] != self._dim:
            raise IndexMismatch(
                f"pin vectors have dimension {pins.vectors.shape[1]}, the engine {self._dim}",
                hint="build the engine from vectors of the same encoder",
            )
        with self._rw.write():
            known = self._rows_of(pins.ids) >= 0
            new = np.flatnonzero(~known)
            if not len(new):
                return
            start = self.n_pins
            ids = pins.ids[new]
            vecs = pins.vectors[new]
            new_l = new.tolist()
            self._ids = np.concatenate([self._ids, ids])
            self._vec = np.concatenate([self._vec, vecs])
            boards = _codes(self._board_code, self._board_names, [pins.boards[i] for i in new_l])
            labels = _codes(self._label_code, self._label_names, [pins.labels[i] for i in new_l])
            self._board = np.concatenate([self._board, boards]).astype(np.int64)
            self._label = np.concatenate([self._label, labels]).astype(np.int64)
            assert pins.titles is not None
            assert pins.created_at is not None and pins.dup_group is not None
            assert pins.blocked is not None
            self._titles.extend(str(pins.titles[i]) for i in new_l)
            self._created = np.concatenate([self._created, pins.created_at[new]])
            self._dup = np.concatenate([self._dup, pins.dup_group[new]])
            self._blocked = np.concatenate([self._blocked, pins.blocked[new]])
            order = np.argsort(self._ids, kind="stable")
            self._sorted_ids = self._ids[order]
            self._sorted_rows = order.astype(np.int64)
            self._by_created = np.argsort(self._created, kind="stable").astype(np.int64)
            self._created_sorted = self._created[self._by_created]
            n = self.n_pins
            for name in ("_impr", "_saves", "_hides", "_engaged"):
                arr = getattr(self, name)
                setattr(self, name, np.concatenate([arr, np.zeros(n - len(arr))]))
            self._pop.grow(n)
            rows = np.arange(start, n, dtype=np.int64)
            self._floor_cache = {}
            self._pin_board.grow(n, len(self._board_names))
            self._pin_user.grow(n, self._pin_user.n_right)
            self._add_board_edges(rows)
            self._assign_coarse(rows)
            if self._cf.shape[0] < n:
                self._cf.resize((n, n))
            if self._own_index:
                self.index.add(ids, vecs)
            else:
                if len(ids) > 64:
                    missing = ~np.isin(ids, self.index.ids())
                else:
                    missing = np.array([i not in self.index for i in ids.tolist()], bool)
                if missing.any():
                    self.index.add(ids[missing], vecs[missing])

    def knows(self, pin_ids: Iterable[int]) -> BOOL:
        """Whether each of these pin ids is in the engine's catalog."""
        return self._rows_of(np.fromiter(pin_ids, np.int64)) >= 0

    def set_blocked(self, pin_ids: Iterable[int], blocked: bool = True) -> None:
        """Mark pins as moderated (never served) or lift it; unknown ids are ignored."""
        with self._rw.write():
            rows = self._rows_of(np.fromiter(pin_ids, np.int64))
            self._blocked[rows[rows >= 0]] = blocked

    def set_titles(self, pin_ids: Sequence[int], titles: Sequence[str]) -> None:
        """Replace the titles of known pins (reasons quote them); unknown ids are ignored."""
        with self._rw.write():
            rows = self._rows_of(np.asarray(pin_ids, np.int64))
            for r, title in zip(rows.tolist(), titles, strict=True):
                if r >= 0:
                    self._titles[r] = str(title or "")

    def _add_board_edges(self, rows: I64) -> None:
        """Each pin's edge to its own board (pins without one get none)."""
        has = self._board[rows] >= 0
        self._pin_board.add_edges(rows[has], self._board[rows[has]])

    @staticmethod
    def _code(table: dict[str, int], names: list[str], name: str) -> int:
        code = table.get(name)
        if code is None:
            code = table[name] = len(names)
            names.append(name)
        return code

    def _assign_coarse(self, rows: I64) -> None:
        p = self.params
        if self._centroids is None:
            if self.n_pins < 2 * p.coarse_clusters:
                self._coarse = np.zeros(self.n_pins, np.int64)
                return
            self._centroids = kmeans(self._vec, p.coarse_clusters, seed=p.seed)
            rows = np.arange(self.n_pins, dtype=np.int64)
            self._coarse = np.zeros(self.n_pins, np.int64)
        self._coarse = np.concatenate(
            [self._coarse, np.zeros(self.n_pins - len(self._coarse), np.int64)]
        )
        for lo in range(0, len(rows), 16384):
            part = rows[lo : lo + 16384]
            self._coarse[part] = np.argmax(self._vec[part] @ self._centroids.T, axis=1)

    def _rows_of(self, ids: I64) -> I64:
        """Engine rows of pin ids (``-1`` for unknown ids)."""
        ids = np.asarray(ids, np.int64)
        if not len(self._sorted_ids):
            return np.full(len(ids), -1, np.int64)
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.minimum(pos, len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[pos] == ids, self._sorted_rows[pos], -1)

    def _words(self, row: int) -> tuple[str, str]:
        """The pin's title and board name, the words a reason may use (``""`` when none)."""
        code = int(self._board[row])
        return self._titles[row], self._board_names[code] if code >= 0 else ""

    # -- state ----------------------------------------------------------------------------

    def _reset_state(self, n: int) -> None:
        p = self.params
        self._users: dict[int, _User] = {}
        self._impr = np.zeros(n)
        self._saves = np.zeros(n)
        self._hides = np.zeros(n)
        self._engaged = np.zeros(n)
        self._totals = np.zeros(3)  # impressions, saves, hides over all pins
        self._arm_totals = np.zeros((2, 2))  # (exploit, explore) x (successes, failures)
        self._pop = Popularity(n, half_life=p.pop_half_life_days * DAY)
        self._pop_cache: tuple[int, I64] | None = None
        self._pin_user = BipartiteGraph(n, 0, right_cap=p.user_degree_cap)
        self._pin_board = BipartiteGraph(n, len(self._board_names))
        if n:
            rows = np.arange(n, dtype=np.int64)
            self._add_board_edges(rows)
        self._cf = sp.csr_matrix((n, n), dtype=np.float32)

    def _user(self, user: int) -> _User:
        st = self._users.get(user)
        if st is None:
            p = self.params
            st = _User(
                slot=len(self._users),
                arms=ThompsonArms(discount=p.bandit_discount),
                cap=p.max_history,
            )
            self._users[user] = st
        return st

    def _weights(self, kind: I8, dwell: F32) -> F64:
        """Engagement weight of each event (0 for impressions and hides)."""
        p = self.params
        w = np.zeros(len(kind))
        w[kind == CLOSEUP] = p.w_closeup
        w[kind == CLICK] = p.w_click
        w[kind == SAVE] = p.w_save
        d = (kind == DWELL) & (dwell >= p.dwell_min_ms)
        w[d] = 0.2 + 0.6 * np.minimum(1.0, dwell[d] / p.dwell_full_ms)
        return w

    def observe(self, events: Sequence[Event] | EventBatch, *, now: float | None = None) -> None:
        """Update user state, graphs and counters from new events (no retraining).

        Events the engine cannot use are skipped and counted in ``skipped_`` by reason: unknown
        pins, times outside ``[event_ts_min, event_ts_max]`` or not finite, times more than
        ``event_max_future_s`` after ``now`` (when given), bad dwell or position. Events may
        arrive in any order; within a call they are applied in time order.
        """
        batch = as_batch(events)
        if not len(batch):
            return
        with self._rw.write():
            self._observe(batch, now)

    def _usable(self, batch: EventBatch, now: float | None, skipped: SkipCounter) -> I64:
        """Positions of the events of ``batch`` the engine can use (the others counted)."""
        p = self.params
        ok = usable(
            batch.ts,
            batch.dwell_ms,
            batch.position,
            ts_min=p.event_ts_min,
            ts_max=p.event_ts_max,
            now=now,
            max_future_s=p.event_max_future_s,
            skipped=skipped,
        )
        unknown = ok & (self._rows_of(batch.pin) < 0)
        skipped.add_mask("unknown_pin", unknown)
        return np.flatnonzero(ok & ~unknown)

    def _observe(self, batch: EventBatch, now: float | None = None) -> None:
        p = self.params
        rows_all = self._rows_of(batch.pin)
        keep = self._usable(batch, now, self.skipped_)
        keep = keep[np.argsort(batch.ts[keep], kind="stable")]
        b = batch.take(keep)
        rows = rows_all[keep]
        kind = b.kind
        w = self._weights(kind, b.dwell_ms)
        imp, sav, hid = kind == IMPRESSION, kind == SAVE, kind == HIDE
        _bump(self._impr, rows[imp])
        _bump(self._saves, rows[sav])
        _bump(self._hides, rows[hid])
        pos = w > 0
        _bump(self._engaged, rows[pos], w[pos])
        self._totals += (imp.sum(), sav.sum(), hid.sum())
        self._pop.add(rows[pos], w[pos], b.ts[pos])
        # Per-user updates, users in order of their first event.
        users, first, inv = np.unique(b.user, return_index=True, return_inverse=True)
        by_user = np.argsort(inv, kind="stable")
        counts = np.bincount(inv, minlength=len(users))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        slots = np.empty(len(users), np.int64)
        hl = p.interest_half_life_days * DAY
        for ui in np.argsort(first, kind="stable").tolist():
            st = self._user(int(users[ui]))
            slots[ui] = st.slot
            idx = by_user[bounds[ui] : bounds[ui + 1]]
            self._update_user(st, rows[idx], kind[idx], w[idx], b.ts[idx], b.source[idx], hl)
        # Strong engagement becomes a walkable user-pin edge at once.
        strong = (kind == SAVE) | (kind == CLICK) | (kind == CLOSEUP) | (w >= 0.5)
        if strong.any():
            us = slots[inv[strong]]
            self._pin_user.grow(self.n_pins, len(self._users))
            self._pin_user.add_edges(rows[strong], us)
        if b.board is not None:
            saved_to = np.flatnonzero((kind == SAVE) & (b.board != "") & (b.board != None))  # noqa: E711
            if len(saved_to):
                codes = np.array(
                    [
                        self._code(self._board_code, self._board_names, str(b.board[i]))
                        for i in saved_to.tolist()
                    ],
                    np.int64,
                )
                self._pin_board.grow(self.n_pins, len(self._board_names))
                self._pin_board.add_edges(rows[saved_to], codes)

    def _update_user(
        self, st: _User, rows: I64, kind: I8, w: F64, ts: F64, source: I8, half_life: float
    ) -> None:
        p = self.params
        st.n_events += len(rows)
        st.last_ts = max(st.last_ts, float(ts[-1]))
        row_l = rows.tolist()
        for i in np.flatnonzero(w > 0).tolist():
            st.add_history(row_l[i], float(w[i]), float(ts[i]), bool(kind[i] == SAVE), half_life)
        hides = np.flatnonzero(kind == HIDE).tolist()
        for i in hides:
            st.hidden[row_l[i]] = float(ts[i])
            st.version += 1  # hidden pins are filtered and penalised: invalidate caches
        for r in row_l:
            st.seen[r] = None
        if len(st.seen) > p.seen_cap:
            for r in list(st.seen)[: len(st.seen) - p.seen_cap]:
                del st.seen[r]
        # Bandit: which arm served each pin (logged source, else what this engine served).
        arm = np.full(len(rows), -1, np.int8)
        known = source >= 0
        arm[known] = _SOURCE_ARM[source[known]]
        if st.served:
            for i in np.flatnonzero(~known).tolist():
                a = st.served.get(row_l[i])
                if a is not None:
                    arm[i] = a
        if not (arm >= 0).any():
            return
        for a in (EXPLOIT, EXPLORE):
            mine = arm == a
            if not mine.any():
                continue
            shown = int(np.count_nonzero(mine & (kind == IMPRESSION)))
            liked = len(set(rows[mine & (w > 0)].tolist()))
            hidden = int(np.count_nonzero(mine & (kind == HIDE)))
            if shown or liked or hidden:
                # Each impression is a trial; an engagement turns its impression (in this batch
                # or an earlier one, then already counted as a failure) into a success.
                fails = float(shown - liked + p.hide_failures * hidden)
                st.arms.update(a, successes=float(liked), failures=fails)
                self._arm_totals[a] += (liked, fails)
                np.maximum(self._arm_totals, 0.0, out=self._arm_totals)

    # -- interests and candidates -----------------------------------------------------------

    def _interests(self, st: _User, now: float) -> _Interests | None:
        p = self.params
        rows, w, last, saved = st.history()
        if not len(rows):
            return None
        cached = st.clusters
        if cached is None or cached[0] != st.version:
            labels, medoid_pos = cluster_history(
                self._vec[rows], threshold=p.cluster_threshold, max_clusters=p.max_clusters
            )
            cached = st.clusters = (st.version, labels, medoid_pos)
        _, labels, medoid_pos = cached
        hl = p.interest_half_life_days * DAY
        w_now = w * np.exp2(-np.maximum(now - last, 0.0) / hl)
        imp = np.bincount(labels, weights=w_now, minlength=len(medoid_pos))
        order = np.argsort(-imp, kind="stable")[: p.query_clusters]
        total = float(imp.sum()) or 1.0
        saved_row = np.full(len(order), -1, np.int64)
        for j, c in enumerate(order.tolist()):
            members = np.flatnonzero((labels == c) & saved)
            if len(members):
                if saved[medoid_pos[c]]:
                    saved_row[j] = rows[medoid_pos[c]]
                else:
                    saved_row[j] = rows[members[int(np.argmax(last[members]))]]
        return _Interests(
            medoids=rows[medoid_pos[order]],
            importance=imp[order] / total,
            saved_row=saved_row,
            n_clusters=len(medoid_pos),
        )

    def _seed_pins(self, st: _User, now: float) -> tuple[I64, F64]:
        """The user's most important engaged pins (walk and CF seeds) and their weights."""
        rows, w, last, _ = st.history()
        if not len(rows):
            return rows, w
        w_now = w * np.exp2(
            -np.maximum(now - last, 0.0) / (self.params.interest_half_life_days * DAY)
        )
        top = np.argsort(-w_now, kind="stable")[: self.params.walk_seeds]
        return rows[top], w_now[top]

    def _generate(self, st: _User | None, now: float, rng: np.random.Generator) -> _Generated:
        p = self.params
        gen_rows: dict[str, I64] = {}
        gen_scores: dict[str, F64] = {}
        interests = self._interests(st, now) if st is not None else None
        interest_cluster = np.zeros(0, np.int64)
        walk_seed = np.zeros(0, np.int64)
        cf_seed = np.zeros(0, np.int64)
        if interests is not None:
            q = self._vec[interests.medoids]
            alloc = np.maximum(
                np.round(interests.importance * p.ann_k).astype(np.int64), p.ann_k_min
            )
            # The index's beam grows with k: interests that want few neighbours go in one batch,
            # each big one alone, rather than all at the largest k.
            small = np.flatnonzero(alloc <= _ANN_BATCH_K)
            groups = ([small] if len(small) else []) + [
                np.array([i]) for i in np.flatnonzero(alloc > _ANN_BATCH_K).tolist()
            ]
            found_ids: list[I64] = []
            found_sims: list[F32] = []
            found_q: list[I64] = []
            for g in groups:
                k = int(min(alloc[g].max(), max(self.n_pins, 1)))
                sims, ids = self.index.search(q[g], k)
                ok = (np.arange(k)[None, :] < alloc[g][:, None]) & (ids >= 0)
                found_ids.append(ids[ok])
                found_sims.append(sims[ok])
                found_q.append(np.broadcast_to(g[:, None], ids.shape)[ok])
            r = self._rows_of(np.concatenate(found_ids))
            s = np.concatenate(found_sims).astype(np.float64)
            c = np.concatenate(found_q)
            good = r >= 0
            r, s, c = r[good], s[good], c[good]
            # A pin found by several interests keeps its best similarity.
            order = np.lexsort((c, -s))
            r, s, c = r[order], s[order], c[order]
            _, first = np.unique(r, return_index=True)
            first = np.sort(first)
            gen_rows["interest"], gen_scores["interest"] = r[first], s[first]
            interest_cluster = c[first].astype(np.int64)
        if st is not None and st.n_hist:
            seeds, weights = self._seed_pins(st, now)
            walk = pixie_walk(
                [(self._pin_board, p.walk_board_prob), (self._pin_user, 1.0 - p.walk_board_prob)],
                seeds,
                weights,
                self.n_pins,
                rng,
                steps=p.walk_steps,
                walkers=p.walk_walkers,
                restart=p.walk_restart,
                n_p=p.walk_n_p,
                n_v=p.walk_n_v,
                top=p.n_walk,
            )
            gen_rows["walk"], gen_scores["walk"] = walk.rows, walk.scores
            walk_seed = seeds[walk.seed]
            cf_rows, cf_scores, cf_seed = self._cf_candidates(seeds, weights, p.n_cf)
            gen_rows["cf"], gen_scores["cf"] = cf_rows, cf_scores
        rows = self._popular_pool()
        if len(rows):
            gen_rows["popular"] = rows
            gen_scores["popular"] = self._pop.score(rows, now)
        else:
            # Nothing engaged yet anywhere: a spread sample of the catalog, one per cluster first.
            m = min(self.n_pins, 4 * p.n_popular)
            sample = rng.choice(self.n_pins, m, replace=False) if self.n_pins else np.zeros(0)
            sample = np.asarray(sample, np.int64)
            _, first = np.unique(self._coarse[sample], return_index=True)
            rows = np.concatenate([sample[first], np.delete(sample, first)])[: p.n_popular]
            gen_rows["explore"] = rows
            gen_scores["explore"] = np.linspace(1.0, 0.5, len(rows))
        lo = np.searchsorted(self._created_sorted, now - p.fresh_days * DAY)
        fresh = self._by_created[lo:][::-1][: p.n_fresh]
        if len(fresh):
            gen_rows["fresh"] = fresh
            gen_scores["fresh"] = self._created[fresh]
        return _Generated(gen_rows, gen_scores, interest_cluster, walk_seed, cf_seed, interests)

    def _popular_pool(self) -> I64:
        """Most popular pins overall, then a few of the most popular of every coarse cluster.

        The per-cluster part makes a cold-start feed span the catalog instead of its single most
        popular corner. Cached until popularity changes.
        """
        p = self.params
        cached = self._pop_cache
        if cached is not None and cached[0] == self._pop.version:
            return cached[1]
        # Popularity.top() updates its own list: one reader at a time rebuilds.
        with self._mutex:
            cached = self._pop_cache
            if cached is not None and cached[0] == self._pop.version:
                return cached[1]
            pop = self._pop.top(max(p.n_popular, 2000))
            if len(pop):
                head = pop[: p.n_popular]
                cl = self._coarse[pop]
                o = np.argsort(cl, kind="stable")
                cnt = np.bincount(cl, minlength=int(cl.max()) + 1)
                rank = np.arange(len(o)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                per = pop[o[rank < p.popular_per_cluster]]
                pop = np.concatenate([head, per[~np.isin(per, head)]])
            self._pop_cache = (self._pop.version, pop)
            return pop

    def _cf_candidates(self, seeds: I64, weights: F64, n: int) -> tuple[I64, F64, I64]:
        cf = self._cf
        if cf.nnz == 0 or not len(seeds):
            e = np.zeros(0, np.int64)
            return e, np.zeros(0), e
        # The seeds' rows straight from the CSR arrays (scipy's row indexing costs more).
        lo = cf.indptr[seeds].astype(np.int64)
        lens = cf.indptr[seeds + 1].astype(np.int64) - lo
        at = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        contrib = cf.data[at].astype(np.float64) * np.repeat(weights, lens)
        items = cf.indices[at].astype(np.int64)
        owner = np.repeat(seeds, lens)
        if not len(items):
            e = np.zeros(0, np.int64)
            return e, np.zeros(0), e
        uniq, inv = np.unique(items, return_inverse=True)
        score = np.bincount(inv, weights=contrib)
        o = np.lexsort((contrib, inv))
        last = np.concatenate([np.flatnonzero(np.diff(inv[o])), [len(o) - 1]])
        best_seed = owner[o[last]]
        top = np.lexsort((uniq, -score))[:n]
        return (
            uniq[top].astype(np.int64),
            score[top].astype(np.float64),
            best_seed[top].astype(np.int64),
        )

    # -- features and scores ------------------------------------------------------------------

    def _features(
        self,
        st: _User | None,
        pool: _Pool,
        interests: _Interests | None,
        now: float,
        surface: int,
    ) -> F32:
        """Feature matrix ``(len(pool.rows), len(FEATURES))`` (columns: ranker.FEATURES)."""
        p = self.params
        cand = pool.rows
        c = len(cand)
        X = np.zeros((c, len(FEATURES)), np.float32)
        if not c:
            return X
        col = _COL
        it = interests
        # Every cosine the features need (to interest medoids, latest engagements, hidden pins)
        # in one product with a contiguous right-hand side: small, oddly shaped products are
        # where BLAS spends its time on overhead.
        hist: tuple[I64, F64, F64, BOOL] | None = None
        latest = np.zeros(0, np.int64)
        hidden = np.zeros(0, np.int64)
        if st is not None:
            hist = st.history()
            if len(hist[0]):
                latest = np.argsort(-hist[2], kind="stable")[:5]
            hidden = self._hidden_rows(st)
        medoids = it.medoids if it is not None else np.zeros(0, np.int64)
        q_rows = np.concatenate([medoids, hist[0][latest] if hist is not None else latest, hidden])
        sims_all = (
            self._vec[cand] @ np.ascontiguousarray(self._vec[q_rows].T)
            if len(q_rows)
            else np.zeros((c, 0), np.float32)
        )
        n_med, n_lat = len(medoids), len(latest)
        if it is not None:
            sims = sims_all[:, :n_med]
            best = np.argmax(sims, axis=1)
            X[:, col["interest_sim"]] = sims[np.arange(c), best]
            X[:, col["interest_weighted"]] = sims @ it.importance
            X[:, col["interest_imp"]] = it.importance[best]
            for j in range(min(3, sims.shape[1])):
                X[:, col[f"sim_c{j}"]] = sims[:, j]
            X[:, col["user_n_interests"]] = it.n_clusters
        for name in ("walk", "cf"):
            g = _GENERATORS.index(name)
            score = pool.score[g]
            top = float(score.max())
            X[:, col[f"{name}_score"]] = score / top if top > 0 else 0.0
        for name in ("interest", "walk", "cf"):
            X[:, col[f"{name}_rank"]] = pool.rank[_GENERATORS.index(name)]
        X[:, col["pop_rank"]] = pool.rank[_GENERATORS.index("popular")]
        created = self._created[cand]
        X[:, col["is_fresh"]] = created >= now - p.fresh_days * DAY
        X[:, col["n_sources"]] = pool.member.sum(axis=0)
        X[:, col["log_pop"]] = np.log1p(self._pop.score(cand, now))
        X[:, col["log_age_days"]] = np.log1p(np.maximum(now - created, 0.0) / DAY)
        impr = self._impr[cand]
        saves, hides = self._saves[cand], self._hides[cand]
        # A save or a hide means the pin was seen, impression logged or not (imported logs hold
        # none), so both count as views: the rates stay in [0, 1]. Over impressions alone, a log
        # of saves turned the "rate" into the save count, which swamped the linear score.
        views = np.maximum(impr, saves + hides)
        tot_views = max(self._totals[0], self._totals[1] + self._totals[2], 1.0)
        prior_save = self._totals[1] / tot_views
        prior_hide = self._totals[2] / tot_views
        X[:, col["save_rate"]] = (saves + 10 * prior_save) / (views + 10)
        X[:, col["hide_rate"]] = (hides + 10 * prior_hide) / (views + 10)
        X[:, col["log_impressions"]] = np.log1p(impr)
        if st is not None and hist is not None:
            rows, w, last, _ = hist
            if len(rows):
                # Session intent: the last few engagements, fading within hours, so that one
                # save reorients the next page without outweighing a long history for good.
                fade = np.exp2(-np.maximum(now - last[latest], 0.0) / (p.recent_half_life_h * 3600))
                X[:, col["sim_recent"]] = (
                    sims_all[:, n_med : n_med + n_lat] * fade.astype(np.float32)
                ).max(axis=1)
                w_now = w * np.exp2(
                    -np.maximum(now - last, 0.0) / (p.interest_half_life_days * DAY)
                )
                total = float(w_now.sum()) or 1.0
                X[:, col["board_aff"]] = _affinity(self._board[cand], self._board[rows], w_now)
                X[:, col["board_aff"]] /= total
                X[:, col["label_aff"]] = _affinity(self._label[cand], self._label[rows], w_now)
                X[:, col["label_aff"]] /= total
            if len(hidden):
                X[:, col["sim_hidden"]] = sims_all[:, n_med + n_lat :].max(axis=1)
            X[:, col["user_log_events"]] = math.log1p(st.n_events)
            if math.isfinite(st.last_ts):
                X[:, col["user_log_idle_days"]] = math.log1p(max(now - st.last_ts, 0.0) / DAY)
        X[:, col["hour"]] = (now % DAY) / 3600.0
        X[:, col["surface"]] = surface
        return X

    @staticmethod
    def _hidden_rows(st: _User, limit: int = 100) -> I64:
        if not st.hidden:
            return np.zeros(0, np.int64)
        return np.fromiter(list(st.hidden)[-limit:], np.int64)

    @staticmethod
    def _fallback_score(X: F32) -> F64:
        """Linear score of the features, used until a ranker is trained.

        The weights encode the prior the ranker later learns from data: closeness to the user's
        interests and latest engagements first, then co-engagement, popularity and freshness.
        """
        col = {name: j for j, name in enumerate(FEATURES)}
        log_pop = X[:, col["log_pop"]].astype(np.float64)
        pop = log_pop / (float(log_pop.max()) or 1.0)
        imp = np.sqrt(X[:, col["interest_imp"]].astype(np.float64))
        return np.asarray(
            X[:, col["interest_sim"]] * (0.6 + 0.4 * imp)
            + 0.8 * X[:, col["sim_recent"]]
            + 0.3 * X[:, col["walk_score"]]
            + 0.3 * X[:, col["cf_score"]]
            + 0.25 * pop
            + 0.2 * X[:, col["board_aff"]]
            + 0.05 * X[:, col["is_fresh"]]
            + 0.5 * X[:, col["save_rate"]]
            - 1.0 * X[:, col["hide_rate"]],
            np.float64,
        )

    # -- serving ------------------------------------------------------------------------------

    def feed(
        self,
        user: int,
        n: int,
        now: float,
        *,
        exclude: Iterable[int] = (),
        seed: int | None = None,
        surface: str = "home",
    ) -> list[FeedItem]:
        """The next ``n`` pins of ``user``'s home feed at time ``now``.

        Parameters
        ----------
        user : int
        n : int
            Page size.
        now : float
            Unix seconds; every time-dependent quantity is computed relative to it.
        exclude : iterable of int
            Pin ids never to return (pagination: the ids already served for this cursor).
        seed : int, optional
            Randomness (walks, bandit draws); by default derived from ``user`` and ``now`` so a
            call is reproducible.
        surface : str
            Context feature for the ranker.

        Returns
        -------
        list of FeedItem
            At most ``n`` (fewer only when fewer eligible pins exist), best first.
        """
        if n <= 0:
            return []
        # Ids beyond 64 bits name no pin: leave them out rather than overflow.
        excl_ids = np.fromiter((i for i in exclude if -(2**63) <= i < 2**63), np.int64)
        with self._rw.read():
            return self._feed(user, n, now, excl_ids, seed, surface)

    def _feed(
        self, user: int, n: int, now: float, exclude: I64, seed: int | None, surface: str
    ) -> list[FeedItem]:
        p = self.params
        st = self._users.get(user)
        rng = np.random.default_rng(seed if seed is not None else _seed(p.seed, user, now))
        gen = self._generate(st, now, rng)
        pool = _make_pool(gen)
        cand = pool.rows
        if not len(cand):
            return []
        ok = ~self._blocked[cand]
        excl = self._rows_of(exclude) if len(exclude) else exclude
        if len(excl):
            ok &= ~np.isin(cand, excl)
        if st is not None and (st.seen or st.hidden):
            ok &= ~_member(cand, self._excluded(st))
        pool = pool.take(np.flatnonzero(ok))
        if not len(pool.rows):
            return []
        X = self._features(st, pool, gen.interests, now, _surface_code(surface))
        source = pool.source()
        arms = _SOURCE_ARM[source]
        raw = self._fallback_score(X)
        ranker = self.ranker_
        # Two stages: the linear score keeps the best few hundred of each arm; the learned
        # ranker, when there is one, orders those (its cost grows with rows x trees), and
        # blending picks among them (its cost grows with candidates x slots).
        keep = _prerank(raw, arms, p.rank_top)
        if ranker is None:
            scaled = _scale(raw)[keep]  # scaled over all candidates, as the score is theirs
        pool, X, source, arms = pool.take(keep), X[keep], source[keep], arms[keep]
        if ranker is not None:
            scaled = _scale(ranker.predict(X).astype(np.float64))
        cand = pool.rows
        if st is not None and st.hidden:
            hidden = self._hidden_rows(st)
            sims = self._vec[cand] @ np.ascontiguousarray(self._vec[hidden].T)
            scaled = scaled - lookalike_penalty(
                sims, self._lookalike_floors(hidden), strength=p.hide_strength
            )
        arms_state = st.arms if st is not None else ThompsonArms()
        explore = arms_state.explore_slots(n, rng, *self._population_prior())
        explore = bound_slots(explore, p.explore_share_min, p.explore_share_max, rng)
        picks = blend(
            scaled,
            self._vec[cand],
            boards=self._board[cand],
            labels=self._label[cand],
            arms=arms,
            n=n,
            explore=explore,
            dup_groups=self._dup[cand],
            mmr_lambda=p.mmr_lambda,
            board_cap=p.board_cap,
            label_cap=p.label_cap,
            window=p.cap_window,
            budget=source == _SOURCE_CODE["fresh"],
            budget_n=int(p.fresh_share_max * n + 1e-9),
        )
        pick_l = picks.tolist()
        items = []
        for j in pick_l:
            reason, because = self._reason(pool, j, int(source[j]), gen.interests, st)
            items.append(
                FeedItem(
                    int(self._ids[cand[j]]), float(scaled[j]), reason, SOURCES[source[j]], because
                )
            )
        if st is not None:
            # What each served pin's arm was, for the bandit update when engagement comes back.
            with self._mutex:
                served = st.served
                for r, a in zip(cand[picks].tolist(), arms[picks].tolist(), strict=True):
                    served[r] = a
                if len(served) > p.served_cap:
                    for r in list(served)[: len(served) - p.served_cap]:
                        served.pop(r, None)
        return items

    def _lookalike_floors(self, hidden: I64) -> F32:
        """Per hidden pin, the cosine from which a pin is its look-alike (cached per pin).

        The cosine of its ``hide_neighbours``-th nearest neighbour, and at least
        ``hide_threshold``: in a dense interest that is a handful of pins, in a sparse one the
        catalog-wide "closer than chance" cut.
        """
        p = self.params
        cache = self._floor_cache
        todo = [r for r in hidden.tolist() if r not in cache]
        if todo:
            k = int(min(p.hide_neighbours + 1, max(self.n_pins, 1)))
            sims, _ = self.index.search(self._vec[np.array(todo, np.int64)], k)
            kth = np.where(np.isfinite(sims[:, -1]), sims[:, -1], 1.0) if k else np.ones(len(todo))
            for r, f in zip(todo, kth.tolist(), strict=True):
                cache[r] = max(float(f), p.hide_threshold)
        return np.array([cache[r] for r in hidden.tolist()], np.float32)

    def _excluded(self, st: _User) -> I64:
        """Sorted rows of the pins ``st`` has seen or hidden (cached until their next event)."""
        cached = st.excluded
        if cached is None or cached[0] != st.n_events:
            rows = np.fromiter(st.seen, np.int64, len(st.seen))
            if st.hidden:
                rows = np.concatenate([rows, np.fromiter(st.hidden, np.int64, len(st.hidden))])
            cached = st.excluded = (st.n_events, np.unique(rows))
        return cached[1]

    def _population_prior(self) -> tuple[F64, F64]:
        """Beta prior per arm: the population's engagement rate, worth a few impressions."""
        p = self.params
        a0 = np.array([p.exploit_prior[0], p.explore_prior[0]])
        b0 = np.array([p.exploit_prior[1], p.explore_prior[1]])
        wins, losses = self._arm_totals[:, 0], self._arm_totals[:, 1]
        rate = (a0 + wins) / (a0 + b0 + wins + losses)
        k = p.bandit_prior_strength
        return k * rate, k * (1.0 - rate)

    def _reason(
        self, pool: _Pool, j: int, source: int, interests: _Interests | None, st: _User | None
    ) -> tuple[str, int | None]:
        """The reason of candidate ``j`` and the id of the pin it names (None when none)."""
        name = SOURCES[source]
        row = int(pool.rows[j])
        if name == "interest" and interests is not None:
            cluster = max(int(pool.cluster[j]), 0)
            saved = int(interests.saved_row[cluster])
            if saved >= 0:
                return reasons.saved_reason(*self._words(saved)), int(self._ids[saved])
            return "similar to pins you liked", None
        if name in ("walk", "cf"):
            seed = int(pool.walk_seed[j] if name == "walk" else pool.cf_seed[j])
            if seed >= 0 and st is not None:
                slot = st.hist_slot.get(seed)
                if slot is not None and st.hist_saved[slot]:
                    return reasons.saved_reason(*self._words(seed)), int(self._ids[seed])
                return reasons.also_liked_reason(*self._words(seed)), int(self._ids[seed])
            return "similar to pins you liked", None
        if name == "popular":
            return reasons.popular_reason(self._words(row)[1]), None
        if name == "fresh":
            return "new", None
        return reasons.different_reason(self._words(row)[1]), None

    def related(self, pin: int, n: int, now: float, *, seed: int | None = None) -> list[FeedItem]:
        """Pins related to ``pin``: visual neighbours fused with co-engagement (RRF).

        Near-duplicates of ``pin`` (same ``dup_group``) and the pin itself never appear; among
        the results only the best of each duplicate group is kept; blocked pins are dropped.

        Raises
        ------
        NotFound
            ``pin`` is not in the catalog.
        """
        if n <= 0:
            return []
        p = self.params
        if not -(2**63) <= pin < 2**63:
            raise NotFound(f"pin {pin} is not in the feed catalog", pin=pin)
        with self._rw.read():
            row = int(self._rows_of(np.array([pin], np.int64))[0])
            if row < 0:
                raise NotFound(f"pin {pin} is not in the feed catalog", pin=pin)
            rng = np.random.default_rng(seed if seed is not None else _seed(p.seed, -pin, now))
            k = min(self.n_pins, 3 * n + 20)
            _, ids = self.index.search(self._vec[row : row + 1], k)
            vis = self._rows_of(ids[0][ids[0] >= 0])
            vis = vis[(vis >= 0) & (vis != row)]
            walk = pixie_walk(
                [(self._pin_board, p.walk_board_prob), (self._pin_user, 1.0 - p.walk_board_prob)],
                np.array([row], np.int64),
                np.ones(1),
                self.n_pins,
                rng,
                steps=p.related_walk_steps,
                walkers=512,
                restart=p.walk_restart,
                n_p=max(2 * n, 50),
                n_v=p.walk_n_v,
                top=3 * n + 20,
            ).rows
            cf_m = self._cf
            if cf_m.nnz and row < cf_m.shape[0]:
                lo, hi = int(cf_m.indptr[row]), int(cf_m.indptr[row + 1])
                cf = cf_m.indices[lo:hi][np.argsort(-cf_m.data[lo:hi], kind="stable")]
                cf = cf.astype(np.int64)
            else:
                cf = np.zeros(0, np.int64)
            fused = rrf([vis, walk, cf])
            order = sorted(fused, key=lambda r: (-fused[r], r))
            walked = set(walk.tolist())
            co = walked | set(cf.tolist())
            visual = set(vis.tolist())
            group = int(self._dup[row])
            used_groups: set[int] = set()
            words = self._words(row)
            out: list[FeedItem] = []
            for r in order:
                if r == row or self._blocked[r]:
                    continue
                g = int(self._dup[r])
                if g >= 0:
                    if g == group or g in used_groups:
                        continue
                    used_groups.add(g)
                is_visual = r in visual
                reason = reasons.related_reason(*words, visual=is_visual, co_saved=r in co)
                src = "visual" if is_visual else "walk" if r in walked else "cf"
                out.append(FeedItem(int(self._ids[r]), float(fused[r]), reason, src, pin))
                if len(out) >= n:
                    break
            return out

    # -- training -----------------------------------------------------------------------------

    def fit(self, events: Sequence[Event] | EventBatch, now: float) -> FeedEngine:
        """Rebuild all state from the event log and train the ranker (and the CF neighbours).

        The log up to ``now`` is replayed in time order. The first ``train_fraction`` of it
        builds the state. In the rest, logged requests (impressions grouped by request id, else
        by user session) that led to some engagement are sampled; replay stops just before each
        sampled request, and its impressions become training rows whose features are computed
        from the state at that instant, exactly as serving would have computed them (no leakage
        from the future, no skew in the real-time features), whose labels come from the
        engagement that followed (save 3, click or long dwell 2, closeup or dwell 1, hide 0),
        and whose weights correct for position bias. A log with no such request (no impressions
        logged: engagement imported from elsewhere) is learnt from its engagements instead:
        replay stops before each sampled one, and the candidates serving would have ranked at
        that instant become rows labelled by whether they are the engaged pin. After the replay
        every event has been observed, so serving continues from the full state.

        Returns
        -------
        FeedEngine
            ``self``; ``ranker_`` stays None when the log holds no engagement to learn from.
            ``fit_report_["labels"]`` says what it learnt from (``"impressions"``,
            ``"next_engagement"`` or None).
        """
        p = self.params
        batch = as_batch(events)
        with self._rw.write():
            skipped = SkipCounter()
            b = batch.take(self._usable(batch, now, skipped))
            b = b.take(np.argsort(b.ts, kind="stable"))
            b = b.take(np.flatnonzero(b.ts <= now))
            self._reset_state(self.n_pins)
            self.skipped_ = skipped
            self.ranker_ = None
            n = len(b)
            labels = self._impression_labels(b)
            cut = int(n * p.train_fraction)
            self._observe(b.take(np.arange(cut)))
            self._cf = self._fit_cf(b.take(np.arange(cut)))
            rng = np.random.default_rng(p.seed)
            Xs: list[F32] = []
            ys: list[NDArray[np.int32]] = []
            positions: list[I32] = []
            items: list[I64] = []
            done = cut
            requests = self._training_requests(b, cut, labels, rng)
            for members in requests:
                start = int(np.searchsorted(b.ts, b.ts[members[0]], side="left"))
                if start > done:
                    self._observe(b.take(np.arange(done, start)))
                    done = start
                X, rows = self._request_features(b, members, rng)
                Xs.append(X)
                ys.append(labels[members])
                positions.append(b.position[members])
                items.append(rows)
            # A log whose impressions teach nothing (none logged: engagement imported from
            # elsewhere) still says what each person chose next among what serving would have
            # offered; the ranker learns from that instead of not being trained at all.
            for event in [] if requests else self._engaged_requests(b, cut, rng):
                start = int(np.searchsorted(b.ts, b.ts[event], side="left"))
                if start > done:
                    self._observe(b.take(np.arange(done, start)))
                    done = start
                got = self._engaged_features(b, int(event), rng)
                if got is not None:
                    Xs.append(got[0])
                    ys.append(got[1])
                    positions.append(np.full(len(got[1]), -1, np.int32))  # no position bias
                    items.append(got[2])
            if done < n:
                self._observe(b.take(np.arange(done, n)))
            self._cf = self._fit_cf(b)
            groups = [len(y) for y in ys]
            report: dict[str, Any] = {
                "events": n,
                "state_events": cut,
                "train_groups": len(groups),
                "train_rows": int(sum(groups)),
                "users": len(self._users),
                "skipped_events": dict(skipped),
                # what the ranker learned from: logged impressions, or each next engagement
                "labels": "impressions" if requests else "next_engagement" if groups else None,
            }
            if groups:
                self.ranker_ = LambdaRanker(
                    n_estimators=p.rank_trees,
                    learning_rate=p.rank_lr,
                    num_leaves=p.rank_leaves,
                    min_child_samples=p.rank_min_child,
                    ipw_clip=p.ipw_clip,
                    seed=p.seed,
                    num_threads=p.rank_threads,
                ).fit(
                    np.vstack(Xs),
                    np.concatenate(ys),
                    groups,
                    positions=np.concatenate(positions),
                    items=np.concatenate(items),
                    feature_names=FEATURES,
                )
                report["propensity"] = [round(float(x), 4) for x in self.ranker_.propensity_[:10]]
            report["ranker"] = self.ranker_ is not None
            self.fit_report_ = report
            return self

    def _training_requests(
        self, b: EventBatch, cut: int, labels: NDArray[np.int32], rng: np.random.Generator
    ) -> list[I64]:
        """Sampled logged requests after ``cut``: event indices of their impressions.

        Only requests with at least two impressions and some engagement are kept: LambdaRank
        learns nothing from a request whose items all have the same label. Returned in time
        order of their first impression, each sorted by position.
        """
        p = self.params
        imp = cut + np.flatnonzero(b.kind[cut:] == IMPRESSION)
        if not len(imp):
            return []
        sess = np.floor(b.ts[imp] / p.session_gap_s).astype(np.int64)
        req = b.request[imp]
        key = np.stack([b.user[imp], np.where(req >= 0, req, -1), np.where(req >= 0, 0, sess)])
        _, gid = np.unique(key, axis=1, return_inverse=True)
        gid = gid.ravel()
        order = np.lexsort((b.position[imp], b.ts[imp], gid))
        g_sorted = gid[order]
        bounds = np.flatnonzero(np.diff(g_sorted)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(order)]])
        size = ends - starts
        best = np.maximum.reduceat(labels[imp[order]], starts)
        useful = np.flatnonzero((size >= 2) & (best > 0))
        if len(useful) > p.max_train_requests:
            useful = np.sort(rng.choice(useful, p.max_train_requests, replace=False))
        out = [imp[order[starts[g] : ends[g]]] for g in useful.tolist()]
        out.sort(key=lambda m: float(b.ts[m].min()))
        return out

    def _request_features(
        self, b: EventBatch, members: I64, rng: np.random.Generator
    ) -> tuple[F32, I64]:
        """Features of one logged request's impressions from the current state."""
        user = int(b.user[members[0]])
        ts = float(b.ts[members].min())
        st = self._users.get(user)
        gen = self._generate(st, ts, rng)
        rows = self._rows_of(b.pin[members])
        uniq, inv = np.unique(rows, return_inverse=True)
        pool = _make_pool(gen, uniq)
        X = self._features(st, pool, gen.interests, ts, int(b.surface[members[0]]))
        return X[inv], rows

    def _engaged_requests(self, b: EventBatch, cut: int, rng: np.random.Generator) -> I64:
        """Sampled engagements after ``cut`` (event indices in time order), for a log without
        useful impressions: each is one request, at its own time, answered by its pin."""
        p = self.params
        engaged = cut + np.flatnonzero(self._weights(b.kind[cut:], b.dwell_ms[cut:]) > 0)
        if len(engaged) > p.max_train_requests:
            engaged = np.sort(rng.choice(engaged, p.max_train_requests, replace=False))
        return engaged

    def _engaged_features(
        self, b: EventBatch, event: int, rng: np.random.Generator
    ) -> tuple[F32, NDArray[np.int32], I64] | None:
        """Training rows of one engagement from the current state: the candidates serving would
        have ranked at that instant (generated, not filtered out, the best ``rank_top`` by the
        linear score), labelled 1 for the engaged pin; ``_ENGAGED_NEGATIVES`` of the others are
        kept. None when serving would not have offered the pin at all."""
        p = self.params
        user, ts = int(b.user[event]), float(b.ts[event])
        st = self._users.get(user)
        gen = self._generate(st, ts, rng)
        pool = _make_pool(gen)
        ok = ~self._blocked[pool.rows]
        if st is not None and (st.seen or st.hidden):
            ok &= ~_member(pool.rows, self._excluded(st))
        pool = pool.take(np.flatnonzero(ok))
        X = self._features(st, pool, gen.interests, ts, int(b.surface[event]))
        keep = _prerank(self._fallback_score(X), _SOURCE_ARM[pool.source()], p.rank_top)
        rows, X = pool.rows[keep], X[keep]
        y = (rows == self._rows_of(b.pin[event : event + 1])[0]).astype(np.int32)
        if not y.any():
            return None
        others = np.flatnonzero(y == 0)
        if len(others) > _ENGAGED_NEGATIVES:
            others = rng.choice(others, _ENGAGED_NEGATIVES, replace=False)
        sel = np.sort(np.concatenate([np.flatnonzero(y), others]))
        return X[sel], y[sel], rows[sel]

    def _fit_cf(self, b: EventBatch) -> sp.csr_matrix:
        p = self.params
        w = self._weights(b.kind, b.dwell_ms)
        pos = np.flatnonzero(w >= 0.4)
        return item_item_cf(
            b.user[pos],
            self._rows_of(b.pin[pos]),
            self.n_pins,
            k=p.cf_k,
            max_per_user=p.cf_max_per_user,
        )

    def _impression_labels(self, b: EventBatch) -> NDArray[np.int32]:
        """Graded label of every impression in ``b`` (others get 0) from what followed it.

        An engagement is credited to the latest impression of the same user and pin at or before
        it, within ``label_window_s``. Vectorised: sort by (user, pin, time), carry the index of
        the last impression forward with a running maximum.
        """
        p = self.params
        n = len(b)
        out = np.zeros(n, np.int32)
        if not n:
            return out
        rows = self._rows_of(b.pin)
        _, ucode = np.unique(b.user, return_inverse=True)
        key = ucode.astype(np.int64) * np.int64(max(self.n_pins, 1)) + rows
        is_imp = b.kind == IMPRESSION
        order = np.lexsort((~is_imp, b.ts, key))
        k_s, t_s, imp_s = key[order], b.ts[order], is_imp[order]
        last = np.maximum.accumulate(np.where(imp_s, np.arange(n), -1))
        grade = np.zeros(n, np.int32)
        kind = b.kind[order]
        dwell = b.dwell_ms[order]
        grade[kind == CLOSEUP] = 1
        grade[kind == CLICK] = 2
        grade[kind == SAVE] = 3
        grade[(kind == DWELL) & (dwell >= p.dwell_min_ms)] = 1
        grade[(kind == DWELL) & (dwell >= 10_000)] = 2
        eng = np.flatnonzero((grade > 0) | (kind == HIDE))
        src = last[eng]
        valid = src >= 0
        eng, src = eng[valid], src[valid]
        valid = (k_s[src] == k_s[eng]) & (t_s[eng] - t_s[src] <= p.label_window_s)
        eng, src = eng[valid], src[valid]
        lab = np.zeros(n, np.int32)
        np.maximum.at(lab, src, grade[eng])
        hid = np.zeros(n, bool)
        hid[src[kind[eng] == HIDE]] = True
        lab[hid] = 0
        out[order] = lab
        return out

    # -- persistence ----------------------------------------------------------------------------

    def digest(self) -> str:
        """Settings digest of this engine (parameters, features, format)."""
        return self.params.digest()

    def save(self, folder: Path | str) -> Path:
        """Write the learned parts (ranker, CF neighbours, parameters) into ``folder``.

        User state and graphs are not saved: they are rebuilt from the event log by ``fit``
        (or ``observe``), which the store keeps anyway.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        with self._rw.read():
            if self.ranker_ is not None:
                self.ranker_.save(out / "ranker", digest=self.digest())
            coo = self._cf.tocoo()
            with open(out / "cf.npz", "wb") as fh:
                np.savez(
                    fh,
                    src=self._ids[coo.row],
                    dst=self._ids[coo.col],
                    value=coo.data.astype(np.float32),
                )
            manifest = {
                "format": FORMAT,
                "digest": self.digest(),
                "params": self.params.to_dict(),
                "features": list(FEATURES),
                "ranker": self.ranker_ is not None,
                "fit_report": self.fit_report_,
            }
            (out / "feed.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return out

    def load(self, folder: Path | str) -> FeedEngine:
        """Load what :meth:`save` wrote; refuse files from other settings (``IndexMismatch``)."""
        src = Path(folder)
        hint = "retrain with FeedEngine.fit under the current settings"
        try:
            manifest = json.loads((src / "feed.json").read_text())
        except FileNotFoundError as exc:
            raise NotFound(f"no feed model in {src}", hint=hint) from exc
        except (OSError, ValueError) as exc:
            raise IndexMismatch(f"feed model in {src} is unreadable: {exc}", hint=hint) from exc
        if manifest.get("format") != FORMAT or manifest.get("digest") != self.digest():
            raise IndexMismatch(
                f"feed model in {src} was saved with other settings "
                f"(digest {manifest.get('digest')!r}, these settings {self.digest()!r})",
                hint=hint,
                saved=manifest.get("digest"),
                wanted=self.digest(),
            )
        # Read and build outside the write lock: serving goes on until the swap.
        ranker = (
            LambdaRanker.load(src / "ranker", digest=self.digest())
            if manifest.get("ranker")
            else None
        )
        with np.load(src / "cf.npz", allow_pickle=False) as data:
            src_ids, dst_ids, v = data["src"], data["dst"], data["value"]
        with self._rw.read():
            n = self.n_pins
            r = self._rows_of(src_ids)
            c = self._rows_of(dst_ids)
        ok = (r >= 0) & (c >= 0)
        cf = sp.csr_matrix((v[ok], (r[ok], c[ok])), shape=(n, n), dtype=np.float32)
        with self._rw.write():
            if self.n_pins > n:  # pins added meanwhile
                cf.resize((self.n_pins, self.n_pins))
            self._cf = cf
            self.ranker_ = ranker
            self.fit_report_ = dict(manifest.get("fit_report", {}))
        return self

    def warm_up(self, now: float) -> None:
        """Run the serving path once so that the first request does not pay for it.

        Loads the clustering code, builds the popular-pins cache and serves one cold-start feed
        and one related call (the first feed call of a process took 250 ms more than the rest).
        Changes no state: the cold-start user has none to record.
        """
        if not self.n_pins:
            return
        with self._rw.read():
            cluster_history(self._vec[:2])
            self._popular_pool()
            user = min(self._users, default=0) - 1
        self.feed(user, 25, now)
        self.related(int(self._ids[0]), 20, now)

    # -- introspection (tests, debugging) -------------------------------------------------------

    def explore_probability(self, user: int) -> float:
        """P(a feed slot goes to the explore arm) for ``user`` under their current posteriors."""
        with self._rw.read():
            st = self._users.get(user)
            arms = st.arms if st is not None else ThompsonArms()
            return arms.explore_probability(*self._population_prior())

    def interests(self, user: int, now: float) -> list[tuple[int, float]]:
        """The user's interest clusters as ``(medoid pin id, importance share)``, most first."""
        with self._rw.read():
            st = self._users.get(user)
            it = self._interests(st, now) if st is not None else None
        if it is None:
            return []
        return [
            (int(self._ids[m]), float(w))
            for m, w in zip(it.medoids.tolist(), it.importance.tolist(), strict=True)
        ]


# --------------------------------------------------------------------------------------------
# Helpers


def _seed(base: int, user: int, now: float) -> list[int]:
    mask = (1 << 63) - 1
    return [base & mask, user & mask, int(now * 1000) & mask]


def _prerank(score: F64, arms: I8, top: int) -> I64:
    """Positions of the best ``top`` candidates, two thirds exploit and one third explore.

    Quotas rather than one cut, so the linear score (which favours closeness to the user's
    interests) cannot starve the explore arm before the bandit gets a say; an arm with fewer
    candidates than its quota leaves its share to the other.
    """
    if len(score) <= top:
        return np.arange(len(score))
    order = np.argsort(-score, kind="stable")
    is_explore = arms[order] == EXPLORE
    explore = order[is_explore]
    exploit = order[~is_explore]
    n_explore = min(len(explore), max(top // 3, top - len(exploit)))
    n_exploit = min(len(exploit), top - n_explore)
    return np.sort(np.concatenate([exploit[:n_exploit], explore[:n_explore]]))


def _codes(table: dict[str, int], names: list[str], values: Sequence[str]) -> list[int]:
    """Codes of ``values`` in ``table`` (new names get the next codes, appended to ``names``).

    An empty name is "none" (code -1), not a board or label that every such pin shares: pins
    without a board must not be linked to each other for the walks, nor share a diversity cap.
    """
    out: list[int] = []
    get = table.get
    for name in values:
        if not name:
            out.append(-1)
            continue
        code = get(name)
        if code is None:
            code = table[name] = len(names)
            names.append(name)
        out.append(code)
    return out


def _scale(raw: F64) -> F64:
    """Scores mapped to [0, 1] (all ones when they are all equal; non-finite ones to the ends)."""
    if not np.isfinite(raw).all():
        fin = raw[np.isfinite(raw)]
        top, bottom = (float(fin.max()), float(fin.min())) if len(fin) else (1.0, 0.0)
        raw = np.nan_to_num(raw, nan=bottom, posinf=top, neginf=bottom)
    lo, hi = float(raw.min()), float(raw.max())
    return (raw - lo) / (hi - lo) if hi > lo else np.ones(len(raw))


def _bump(counts: F64, rows: I64, weights: F64 | None = None) -> None:
    """``counts[rows] += weights`` (or 1): add.at for a few rows, bincount for many."""
    if len(rows) < 2000:
        np.add.at(counts, rows, 1.0 if weights is None else weights)
    else:
        counts += np.bincount(rows, weights=weights, minlength=len(counts))


def _affinity(cand_codes: I64, hist_codes: I64, weights: F64) -> F64:
    """Summed history weight on each candidate's code (board or label); none (-1) matches none."""
    uniq, inv = np.unique(hist_codes, return_inverse=True)
    per = np.bincount(inv, weights=weights, minlength=len(uniq))
    pos = np.minimum(np.searchsorted(uniq, cand_codes), len(uniq) - 1)
    return np.where((uniq[pos] == cand_codes) & (cand_codes >= 0), per[pos], 0.0)


def _member(values: I64, sorted_set: I64) -> BOOL:
    """``np.isin(values, sorted_set)`` for a sorted, duplicate-free ``sorted_set``."""
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[pos] == values)
