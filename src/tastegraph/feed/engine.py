"""The home feed and related pins: events in, personalised ranked pins with reasons out.

Pure: the engine holds its state in memory, takes ``now`` and data as arguments, and never reads
the clock or a database; :class:`tastegraph.feed.service.FeedService` feeds it events and maps
store ids. :class:`FeedEngine` is the facade: it holds the locks and composes the parts, each in
its own module (named in brackets below).

Pipeline of one ``feed(user, n, now)`` call
-------------------------------------------
1. **Interests** (PinnerSage, ``state``): the user's last ~100 engaged pins are clustered on their
   image vectors (Ward); each cluster is queried through its medoid, with an importance equal to the
   recency-decayed engagement of its members. Clusters are recomputed only when the history changed;
   importance is recomputed at every call because it depends on ``now``.
2. **Candidates** from the registered sources (``sources.registry``, aligned by ``pool``): ANN
   neighbours of the interest medoids (the vector index, ``auto`` by default; neighbours allotted in
   proportion to importance), Pixie random walks over the pin-board and pin-user graphs from the
   most important engaged pins, item-item co-engagement (CF), a whole-catalog behavioural model
   (EASE over who engaged with what, fitted by ``fit``: ``sources.behaviour``), popular pins
   (overall and per coarse visual cluster) and fresh pins.
3. **Filters** (``serving``): hidden, already seen (impressed or engaged), blocked (moderated) and
   ``exclude``.
4. **Ranking** (``features``, ``scoring``, ``ranker``): a fixed linear score of the candidate
   features (:data:`tastegraph.feed.ranker.FEATURES`) keeps the best ``rank_top`` candidates (quotas
   per arm); a LightGBM LambdaRank model orders those once ``fit`` has trained one, the linear score
   before any training.
5. **Blending** (``blend``): scores scaled to [0, 1], minus a penalty for looking like hidden pins
   (their nearest neighbours, not their whole interest); slots drawn between "exploit" (interest,
   walk, CF) and "explore" (popular, fresh) sources by Thompson sampling on Beta posteriors per arm:
   the user's own engagement with what each arm served, on top of a prior worth
   ``bandit_prior_strength`` impressions at the population's rate, held within the explore budget
   (``explore_share_min``..``explore_share_max``; fresh pins at most ``fresh_share_max``); maximal
   marginal relevance over image vectors; caps per board and per label in each window of 10; one pin
   per near-duplicate group.
6. **Reasons** (``reasons``): every item says why ("because you saved ...", "popular in ...", "new",
   ...), naming pins in words people wrote (:mod:`tastegraph.feed.reasons`).

Real time
---------
``observe(events)`` updates everything the next call reads, without retraining: the user's
history (so their interests), hidden and seen sets, bandit posteriors, the pin-user graph
(edges are walkable at once through the graph's delta), engagement counters and popularity.
Events it cannot use (unknown pins, times that are not finite, outside the accepted window or
far ahead of the clock, bad dwell or position) are skipped and counted in ``skipped_``
(:mod:`tastegraph.feed.hygiene`): no single event can stop the engine.

Concurrency
-----------
Reads (``feed``, ``related``) run concurrently under the shared side of a readers-writer lock;
writers (``observe``, ``add_pins``, ``fit``, ``load``) take it exclusively, so a read sees every
event observed before it started and never half of a write. ``load`` reads the model files before
taking the lock, so a hot swap blocks reads only for the swap itself. The little a read updates
(which arm served each pin, lazily rebuilt caches) goes under a small mutex or is swapped in as
one tuple.
``read_slots`` (off by default) lets at most that many reads in at once, first come first
served: reads hold the GIL for most of their time, so on a few cores free-running threads only
hand it back and forth (:mod:`tastegraph.feed.gate`).

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

import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from tastegraph.errors import IndexMismatch, NotFound
from tastegraph.feed.blend import ThompsonArms
from tastegraph.feed.catalog import PinCatalog
from tastegraph.feed.data import (
    Event,
    EventBatch,
    FeedItem,
    FeedParams,
    PinTable,
    _surface_code,
    as_batch,
)
from tastegraph.feed.features import features
from tastegraph.feed.gate import FairGate
from tastegraph.feed.hygiene import SkipCounter
from tastegraph.feed.persistence import read_model, write_model
from tastegraph.feed.pool import Generated, Pool, generate
from tastegraph.feed.ranker import LambdaRanker
from tastegraph.feed.related import related_items
from tastegraph.feed.serving import LookalikeFloors, request_seed, serve_feed
from tastegraph.feed.sources.clusters import cluster_history
from tastegraph.feed.sources.popularity import Popularity
from tastegraph.feed.state import EngagementState, Interests, UserState, interests
from tastegraph.feed.training import Replay
from tastegraph.index import IndexMeta, VectorIndex, open_index
from tastegraph.index.locking import RWLock

__all__ = ["FeedEngine"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
BOOL = NDArray[np.bool_]


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
    read_slots : int, optional
        At most this many ``feed`` and ``related`` calls run at once; the others wait their
        turn, first come first served (:class:`tastegraph.feed.gate.FairGate`). None (the
        default): no limit. A read holds the GIL for most of its time, so on a few cores one
        slot per process serves more requests per second than free-running threads, with a
        shorter tail (``bench/bench_feed_threads.py --serialize fair``). Results do not change.

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
        read_slots: int | None = None,
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
        self._gate = FairGate(read_slots) if read_slots is not None else None
        self._own_index = index is None
        if index is None:
            # Nothing is written under this folder unless someone calls save() on the index.
            folder = Path(tempfile.gettempdir()) / f"tastegraph-feed-{uuid.uuid4().hex}"
            index = open_index(p.index_kind, folder, IndexMeta("image", "feed", self._dim))
        self.index = index
        self._pins = PinCatalog(self._dim, coarse_clusters=p.coarse_clusters, seed=p.seed)
        self._state = EngagementState(self._pins, p)
        self.ranker_: LambdaRanker | None = None
        self.fit_report_: dict[str, Any] = {}
        # Events observe() could not use, by reason (see feed.hygiene.REASONS).
        self.skipped_ = SkipCounter()
        # Look-alike cut per hidden pin row; cleared when pins arrive.
        self._floors = LookalikeFloors()
        self.add_pins(pins)

    # -- catalog ---------------------------------------------------------------------------

    @property
    def n_pins(self) -> int:
        return self._pins.n

    @property
    def n_users(self) -> int:
        return len(self._state.users)

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
            rows = self._pins.add(pins)
            if not len(rows):
                return
            self._state.grow(self._pins, rows)
            self._floors.clear()
            ids, vecs = self._pins.ids[rows], self._pins.vec[rows]
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
        return self._pins.rows_of(np.fromiter(pin_ids, np.int64)) >= 0

    def set_blocked(self, pin_ids: Iterable[int], blocked: bool = True) -> None:
        """Mark pins as moderated (never served) or lift it; unknown ids are ignored."""
        with self._rw.write():
            rows = self._pins.rows_of(np.fromiter(pin_ids, np.int64))
            self._pins.blocked[rows[rows >= 0]] = blocked

    def set_titles(self, pin_ids: Sequence[int], titles: Sequence[str]) -> None:
        """Replace the titles of known pins (reasons quote them); unknown ids are ignored."""
        with self._rw.write():
            rows = self._pins.rows_of(np.asarray(pin_ids, np.int64))
            for r, title in zip(rows.tolist(), titles, strict=True):
                if r >= 0:
                    self._pins.titles[r] = str(title or "")

    # -- events ---------------------------------------------------------------------------

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
            self._state.observe(batch, self._pins, self.skipped_, now)

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
        with self._turn(), self._rw.read():
            return self._feed(user, n, now, excl_ids, seed, _surface_code(surface))

    def _turn(self) -> FairGate | nullcontext[None]:
        """The read gate (``read_slots``), or nothing to wait for."""
        return self._gate if self._gate is not None else nullcontext()

    def _feed(
        self, user: int, n: int, now: float, exclude: I64, seed: int | None, surface: int
    ) -> list[FeedItem]:
        p = self.params
        st = self._state.users.get(user)
        rng = np.random.default_rng(seed if seed is not None else request_seed(p.seed, user, now))
        items, rows, arms = serve_feed(
            p,
            self._pins,
            self._state,
            self.index,
            self.ranker_,
            self._floors,
            st,
            n,
            now,
            exclude,
            rng,
            surface,
        )
        if st is not None and len(rows):
            # What each served pin's arm was, for the bandit update when engagement comes back.
            with self._mutex:
                served = st.served
                for r, a in zip(rows.tolist(), arms.tolist(), strict=True):
                    served[r] = a
                if len(served) > p.served_cap:
                    for r in list(served)[: len(served) - p.served_cap]:
                        served.pop(r, None)
        return items

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
        with self._turn(), self._rw.read():
            row = int(self._pins.rows_of(np.array([pin], np.int64))[0])
            if row < 0:
                raise NotFound(f"pin {pin} is not in the feed catalog", pin=pin)
            rng = np.random.default_rng(
                seed if seed is not None else request_seed(p.seed, -pin, now)
            )
            return related_items(p, self._pins, self._state, self.index, row, n, rng)

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
        batch = as_batch(events)
        with self._rw.write():
            fitted = Replay(self.params, self._pins, self.index).fit(batch, now)
            self._state = fitted.state
            self.skipped_ = fitted.skipped
            self.ranker_ = fitted.ranker
            self.fit_report_ = fitted.report
        return self

    # -- persistence ----------------------------------------------------------------------------

    def digest(self) -> str:
        """Settings digest of this engine (parameters, features, format)."""
        return self.params.digest()

    def save(self, folder: Path | str) -> Path:
        """Write the learned parts (ranker, CF neighbours, behaviour model, parameters).

        User state and graphs are not saved: they are rebuilt from the event log by ``fit``
        (or ``observe``), which the store keeps anyway.
        """
        with self._rw.read():
            return write_model(
                folder,
                params=self.params,
                ids=self._pins.ids,
                cf=self._state.cf,
                behaviour_model=self._state.behaviour,
                ranker=self.ranker_,
                fit_report=self.fit_report_,
            )

    def load(self, folder: Path | str) -> FeedEngine:
        """Load what :meth:`save` wrote; refuse files from other settings (``IndexMismatch``)."""
        # Read and build outside the write lock: serving goes on until the swap.
        saved = read_model(folder, self.digest())
        with self._rw.read():
            n = self.n_pins
            r = self._pins.rows_of(saved.cf_src)
            c = self._pins.rows_of(saved.cf_dst)
            beh_rows = self._pins.rows_of(saved.behaviour_ids)
        beh = saved.behaviour_model(beh_rows)
        ok = (r >= 0) & (c >= 0)
        cf = sp.csr_matrix((saved.cf_value[ok], (r[ok], c[ok])), shape=(n, n), dtype=np.float32)
        with self._rw.write():
            if self.n_pins > n:  # pins added meanwhile
                cf.resize((self.n_pins, self.n_pins))
            self._state.cf = cf
            self._state.behaviour = beh
            self.ranker_ = saved.ranker
            self.fit_report_ = saved.fit_report
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
            cluster_history(self._pins.vec[:2])
            self._state.popular_pool(self._pins.coarse)
            user = min(self._state.users, default=0) - 1
        self.feed(user, 25, now)
        self.related(int(self._pins.ids[0]), 20, now)

    # -- introspection (tests, debugging) -------------------------------------------------------

    def explore_probability(self, user: int) -> float:
        """P(a feed slot goes to the explore arm) for ``user`` under their current posteriors."""
        with self._rw.read():
            st = self._state.users.get(user)
            arms = st.arms if st is not None else ThompsonArms()
            return arms.explore_probability(*self._state.population_prior())

    def interests(self, user: int, now: float) -> list[tuple[int, float]]:
        """The user's interest clusters as ``(medoid pin id, importance share)``, most first."""
        with self._rw.read():
            st = self._state.users.get(user)
            it = interests(st, self._pins.vec, now, self.params) if st is not None else None
        if it is None:
            return []
        return [
            (int(self._pins.ids[m]), float(w))
            for m, w in zip(it.medoids.tolist(), it.importance.tolist(), strict=True)
        ]

    # The parts, by the names tests and debugging sessions reach for.
    @property
    def _users(self) -> dict[int, UserState]:
        return self._state.users

    @property
    def _pop(self) -> Popularity:
        return self._state.pop

    @property
    def _cf(self) -> sp.csr_matrix:
        return self._state.cf

    @property
    def _vec(self) -> F32:
        return self._pins.vec

    def _rows_of(self, ids: I64) -> I64:
        return self._pins.rows_of(ids)

    def _generate(self, st: UserState | None, now: float, rng: np.random.Generator) -> Generated:
        return generate(self.params, self._pins, self._state, self.index, st, now, rng)

    def _features(
        self,
        st: UserState | None,
        pool: Pool,
        interests: Interests | None,
        now: float,
        surface: int,
    ) -> F32:
        return features(self.params, self._pins, self._state, st, pool, interests, now, surface)

    def _lookalike_floors(self, hidden: I64) -> F32:
        return self._floors(self.index, self._pins, hidden, self.params)
