"""What the engine learns from events without retraining: per-user state and shared counters.

:class:`UserState` is one person's engagement history (decayed weights per pin), hidden and seen
sets, bandit posteriors and what was served to them. :class:`EngagementState` holds every user's
state plus what all of them share: engagement counters per pin, popularity, the pin-user and
pin-board graphs and the co-engagement neighbours. :meth:`EngagementState.observe` applies a batch
of events to all of it; :func:`interests` and :func:`seed_pins` read a user's history at ``now``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.feed.arrays import unique_sorted
from tastegraph.feed.blend import EXPLOIT, EXPLORE, ThompsonArms
from tastegraph.feed.catalog import PinCatalog
from tastegraph.feed.data import (
    CLICK,
    CLOSEUP,
    DWELL,
    HIDE,
    IMPRESSION,
    SAVE,
    EventBatch,
    FeedParams,
)
from tastegraph.feed.hygiene import SkipCounter, usable
from tastegraph.feed.sources.behaviour import BehaviourModel
from tastegraph.feed.sources.behaviour import empty as behaviour_empty
from tastegraph.feed.sources.clusters import cluster_history
from tastegraph.feed.sources.popularity import Popularity
from tastegraph.feed.sources.registry import SOURCE_ARM
from tastegraph.feed.sources.walks import BipartiteGraph

__all__ = [
    "DAY",
    "EngagementState",
    "Interests",
    "UserState",
    "engagement_weights",
    "interests",
    "seed_pins",
    "usable_events",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]
BOOL = NDArray[np.bool_]

DAY = 86400.0


@dataclass
class UserState:
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

    def hidden_rows(self, limit: int = 100) -> I64:
        """Rows of the pins hidden last (at most ``limit``)."""
        if not self.hidden:
            return np.zeros(0, np.int64)
        return np.fromiter(list(self.hidden)[-limit:], np.int64)

    def excluded_rows(self) -> I64:
        """Sorted rows of the pins seen or hidden (cached until the user's next event)."""
        cached = self.excluded
        if cached is None or cached[0] != self.n_events:
            rows = np.fromiter(self.seen, np.int64, len(self.seen))
            if self.hidden:
                rows = np.concatenate([rows, np.fromiter(self.hidden, np.int64, len(self.hidden))])
            cached = self.excluded = (self.n_events, unique_sorted(rows))
        return cached[1]


@dataclass
class Interests:
    medoids: I64  # pin rows, most important first
    importance: F64  # share, sums to 1
    saved_row: I64  # a saved member per cluster (-1 none), for reasons
    n_clusters: int


def interests(st: UserState, vec: F32, now: float, p: FeedParams) -> Interests | None:
    """The user's interest clusters at ``now`` (PinnerSage), most important first.

    Clusters are recomputed only when the history changed; importance at every call, because it
    depends on ``now``.
    """
    rows, w, last, saved = st.history()
    if not len(rows):
        return None
    cached = st.clusters
    if cached is None or cached[0] != st.version:
        labels, medoid_pos = cluster_history(
            vec[rows], threshold=p.cluster_threshold, max_clusters=p.max_clusters
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
    return Interests(
        medoids=rows[medoid_pos[order]],
        importance=imp[order] / total,
        saved_row=saved_row,
        n_clusters=len(medoid_pos),
    )


def seed_pins(st: UserState, now: float, p: FeedParams) -> tuple[I64, F64]:
    """The user's most important engaged pins (walk and CF seeds) and their weights at ``now``."""
    rows, w, last, _ = st.history()
    if not len(rows):
        return rows, w
    w_now = w * np.exp2(-np.maximum(now - last, 0.0) / (p.interest_half_life_days * DAY))
    top = np.argsort(-w_now, kind="stable")[: p.walk_seeds]
    return rows[top], w_now[top]


def engagement_weights(kind: I8, dwell: F32, p: FeedParams) -> F64:
    """Engagement weight of each event (0 for impressions and hides)."""
    w = np.zeros(len(kind))
    w[kind == CLOSEUP] = p.w_closeup
    w[kind == CLICK] = p.w_click
    w[kind == SAVE] = p.w_save
    d = (kind == DWELL) & (dwell >= p.dwell_min_ms)
    w[d] = 0.2 + 0.6 * np.minimum(1.0, dwell[d] / p.dwell_full_ms)
    return w


def usable_events(
    batch: EventBatch,
    now: float | None,
    catalog: PinCatalog,
    p: FeedParams,
    skipped: SkipCounter,
) -> I64:
    """Positions of the events of ``batch`` the engine can use (the others counted)."""
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
    unknown = ok & (catalog.rows_of(batch.pin) < 0)
    skipped.add_mask("unknown_pin", unknown)
    return np.flatnonzero(ok & ~unknown)


class EngagementState:
    """Every user's state and the counters, graphs and neighbours all users share.

    Parameters
    ----------
    catalog : PinCatalog
        Read for its size and boards (each pin's edge to its own board); the state is sized to
        it and grown with :meth:`grow` when pins arrive.
    params : FeedParams
    """

    def __init__(self, catalog: PinCatalog, params: FeedParams) -> None:
        p = self.params = params
        n = catalog.n
        self.users: dict[int, UserState] = {}
        self.impr = np.zeros(n)
        self.saves = np.zeros(n)
        self.hides = np.zeros(n)
        self.engaged = np.zeros(n)
        self.totals = np.zeros(3)  # impressions, saves, hides over all pins
        self.arm_totals = np.zeros((2, 2))  # (exploit, explore) x (successes, failures)
        self.pop = Popularity(n, half_life=p.pop_half_life_days * DAY)
        self._pop_cache: tuple[int, I64] | None = None
        # Popularity.top() updates its own list: one reader at a time rebuilds the pool.
        self._pop_lock = threading.Lock()
        self.pin_user = BipartiteGraph(n, 0, right_cap=p.user_degree_cap)
        self.pin_board = BipartiteGraph(n, len(catalog.board_names))
        if n:
            self.add_board_edges(catalog, np.arange(n, dtype=np.int64))
        self.cf: sp.csr_matrix = sp.csr_matrix((n, n), dtype=np.float32)
        # whole-catalog behavioural model, fitted by fit() (feed.sources.behaviour)
        self.behaviour: BehaviourModel = behaviour_empty()

    def grow(self, catalog: PinCatalog, rows: I64) -> None:
        """Make room for the catalog's new ``rows`` (and give them their board edges)."""
        n = catalog.n
        for name in ("impr", "saves", "hides", "engaged"):
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, np.zeros(n - len(arr))]))
        self.pop.grow(n)
        self.pin_board.grow(n, len(catalog.board_names))
        self.pin_user.grow(n, self.pin_user.n_right)
        self.add_board_edges(catalog, rows)
        if self.cf.shape[0] < n:
            self.cf.resize((n, n))

    def add_board_edges(self, catalog: PinCatalog, rows: I64) -> None:
        """Each pin's edge to its own board (pins without one get none)."""
        has = catalog.board[rows] >= 0
        self.pin_board.add_edges(rows[has], catalog.board[rows[has]])

    def user(self, user: int) -> UserState:
        """The state of ``user``, created empty on first use."""
        st = self.users.get(user)
        if st is None:
            p = self.params
            st = UserState(
                slot=len(self.users),
                arms=ThompsonArms(discount=p.bandit_discount),
                cap=p.max_history,
            )
            self.users[user] = st
        return st

    def observe(
        self, batch: EventBatch, catalog: PinCatalog, skipped: SkipCounter, now: float | None
    ) -> None:
        """Apply the usable events of ``batch`` in time order (others counted in ``skipped``)."""
        p = self.params
        rows_all = catalog.rows_of(batch.pin)
        keep = usable_events(batch, now, catalog, p, skipped)
        keep = keep[np.argsort(batch.ts[keep], kind="stable")]
        b = batch.take(keep)
        rows = rows_all[keep]
        kind = b.kind
        w = engagement_weights(kind, b.dwell_ms, p)
        imp, sav, hid = kind == IMPRESSION, kind == SAVE, kind == HIDE
        _bump(self.impr, rows[imp])
        _bump(self.saves, rows[sav])
        _bump(self.hides, rows[hid])
        pos = w > 0
        _bump(self.engaged, rows[pos], w[pos])
        self.totals += (imp.sum(), sav.sum(), hid.sum())
        self.pop.add(rows[pos], w[pos], b.ts[pos])
        # Per-user updates, users in order of their first event.
        users, first, inv = np.unique(b.user, return_index=True, return_inverse=True)
        by_user = np.argsort(inv, kind="stable")
        counts = np.bincount(inv, minlength=len(users))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        slots = np.empty(len(users), np.int64)
        hl = p.interest_half_life_days * DAY
        for ui in np.argsort(first, kind="stable").tolist():
            st = self.user(int(users[ui]))
            slots[ui] = st.slot
            idx = by_user[bounds[ui] : bounds[ui + 1]]
            self._update_user(st, rows[idx], kind[idx], w[idx], b.ts[idx], b.source[idx], hl)
        # Strong engagement becomes a walkable user-pin edge at once.
        strong = (kind == SAVE) | (kind == CLICK) | (kind == CLOSEUP) | (w >= 0.5)
        if strong.any():
            us = slots[inv[strong]]
            self.pin_user.grow(catalog.n, len(self.users))
            self.pin_user.add_edges(rows[strong], us)
        if b.board is not None:
            saved_to = np.flatnonzero((kind == SAVE) & (b.board != "") & (b.board != None))  # noqa: E711
            if len(saved_to):
                codes = np.array(
                    [catalog.board_code_of(str(b.board[i])) for i in saved_to.tolist()], np.int64
                )
                self.pin_board.grow(catalog.n, len(catalog.board_names))
                self.pin_board.add_edges(rows[saved_to], codes)

    def _update_user(
        self, st: UserState, rows: I64, kind: I8, w: F64, ts: F64, source: I8, half_life: float
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
        arm[known] = SOURCE_ARM[source[known]]
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
                self.arm_totals[a] += (liked, fails)
                np.maximum(self.arm_totals, 0.0, out=self.arm_totals)

    def popular_pool(self, coarse: I64) -> I64:
        """Most popular pins overall, then a few of the most popular of every coarse cluster.

        The per-cluster part makes a cold-start feed span the catalog instead of its single most
        popular corner. Cached until popularity changes.
        """
        p = self.params
        cached = self._pop_cache
        if cached is not None and cached[0] == self.pop.version:
            return cached[1]
        with self._pop_lock:
            cached = self._pop_cache
            if cached is not None and cached[0] == self.pop.version:
                return cached[1]
            pop = self.pop.top(max(p.n_popular, 2000))
            if len(pop):
                head = pop[: p.n_popular]
                cl = coarse[pop]
                o = np.argsort(cl, kind="stable")
                cnt = np.bincount(cl, minlength=int(cl.max()) + 1)
                rank = np.arange(len(o)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                per = pop[o[rank < p.popular_per_cluster]]
                pop = np.concatenate([head, per[~np.isin(per, head)]])
            self._pop_cache = (self.pop.version, pop)
            return pop

    def population_prior(self) -> tuple[F64, F64]:
        """Beta prior per arm: the population's engagement rate, worth a few impressions."""
        p = self.params
        a0 = np.array([p.exploit_prior[0], p.explore_prior[0]])
        b0 = np.array([p.exploit_prior[1], p.explore_prior[1]])
        wins, losses = self.arm_totals[:, 0], self.arm_totals[:, 1]
        rate = (a0 + wins) / (a0 + b0 + wins + losses)
        k = p.bandit_prior_strength
        return k * rate, k * (1.0 - rate)


def _bump(counts: F64, rows: I64, weights: F64 | None = None) -> None:
    """``counts[rows] += weights`` (or 1): add.at for a few rows, bincount for many."""
    if len(rows) < 2000:
        np.add.at(counts, rows, 1.0 if weights is None else weights)
    else:
        counts += np.bincount(rows, weights=weights, minlength=len(counts))
