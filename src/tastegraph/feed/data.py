"""The feed engine's inputs and outputs: events, pins, feed items and parameters (plain data).

The facade (:mod:`tastegraph.feed`) exports them; the parts of the engine share them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput
from tastegraph.feed.ranker import FEATURES

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
I8 = NDArray[np.int8]
F32 = NDArray[np.float32]
BOOL = NDArray[np.bool_]

FORMAT = "tastegraph.feed/2"  # 2: behaviour.npz (feed.sources.behaviour)
KINDS = ("impression", "closeup", "click", "save", "hide", "dwell")
IMPRESSION, CLOSEUP, CLICK, SAVE, HIDE, DWELL = range(6)
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
SURFACES = ("", "home", "related", "search", "board", "profile")
# Where a feed item came from; "visual" only appears in related pins.
# "behaviour" (feed.sources.behaviour) is appended so logged source codes keep their meaning.
SOURCES = ("interest", "walk", "cf", "popular", "fresh", "explore", "visual", "behaviour")
_SOURCE_CODE = {s: i for i, s in enumerate(SOURCES)}


@dataclass(slots=True)
class Event:
    """One engagement event.

    ``kind`` is one of :data:`KINDS`; ``dwell_ms`` matters for ``dwell`` events; ``position`` is
    the 0-based slot the pin was shown in (impressions), ``source`` the :class:`FeedItem` source
    that served it (logging it lets the bandit learn from replayed logs), ``board`` the board a
    ``save`` went to (adds a pin-board edge).
    """

    user: int
    pin: int
    kind: str
    ts: float
    dwell_ms: float = 0.0
    position: int | None = None
    surface: str = ""
    request_id: str = ""
    source: str = ""
    board: str = ""


@dataclass
class EventBatch:
    """Events as columns (the fast path for millions of them).

    ``kind``, ``surface`` and ``source`` are codes into :data:`KINDS`, :data:`SURFACES` (unknown
    surfaces are ``-1``) and :data:`SOURCES` (``-1`` = unknown); ``request`` is any int per
    request (``-1`` = none); ``position`` is ``-1`` when unknown; ``board`` holds the board name
    of saves (``""`` otherwise) or is None.
    """

    user: I64
    pin: I64
    kind: I8
    ts: F64
    dwell_ms: F32
    position: I32
    surface: I8
    request: I64
    source: I8
    board: NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        n = len(self.user)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and len(value) != n:
                raise InvalidInput(f"event column {f.name} has {len(value)} rows, expected {n}")
        if n and (int(self.kind.min()) < 0 or int(self.kind.max()) >= len(KINDS)):
            raise InvalidInput("unknown event kind code", hint=f"kinds: {', '.join(KINDS)}")

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def from_arrays(
        cls,
        user: Any,
        pin: Any,
        kind: Any,
        ts: Any,
        *,
        dwell_ms: Any = None,
        position: Any = None,
        surface: Any = None,
        request: Any = None,
        source: Any = None,
        board: Any = None,
    ) -> EventBatch:
        """Build from array-likes; ``kind`` may be codes or names; omitted columns default."""
        u = np.asarray(user, np.int64)
        n = len(u)
        k = np.asarray(kind)
        if k.dtype.kind in "USO":
            try:
                k = np.array([_KIND_CODE[str(x)] for x in k], np.int8)
            except KeyError as exc:
                raise InvalidInput(
                    f"unknown event kind {exc.args[0]!r}", hint=f"kinds: {', '.join(KINDS)}"
                ) from exc
        return cls(
            user=u,
            pin=np.asarray(pin, np.int64),
            kind=k.astype(np.int8),
            ts=np.asarray(ts, np.float64),
            dwell_ms=_col(dwell_ms, n, np.float32, 0),
            position=_col(position, n, np.int32, -1),
            surface=_col(surface, n, np.int8, 0),
            request=_col(request, n, np.int64, -1),
            source=_col(source, n, np.int8, -1),
            board=None if board is None else np.asarray(board, dtype=object),
        )

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> EventBatch:
        """Columns from :class:`Event` objects (request ids become ints in order of appearance)."""
        evs = list(events)
        requests: dict[str, int] = {}
        kind = np.empty(len(evs), np.int8)
        for i, e in enumerate(evs):
            code = _KIND_CODE.get(e.kind)
            if code is None:
                raise InvalidInput(
                    f"unknown event kind {e.kind!r}", hint=f"kinds: {', '.join(KINDS)}"
                )
            kind[i] = code
        boards = [e.board for e in evs]
        return cls(
            user=np.array([e.user for e in evs], np.int64),
            pin=np.array([e.pin for e in evs], np.int64),
            kind=kind,
            ts=np.array([e.ts for e in evs], np.float64),
            dwell_ms=np.array([e.dwell_ms for e in evs], np.float32),
            position=np.array([-1 if e.position is None else e.position for e in evs], np.int32),
            surface=np.array([_surface_code(e.surface) for e in evs], np.int8),
            request=np.array(
                [
                    requests.setdefault(e.request_id, len(requests)) if e.request_id else -1
                    for e in evs
                ],
                np.int64,
            ),
            source=np.array([_SOURCE_CODE.get(e.source, -1) for e in evs], np.int8),
            board=np.array(boards, dtype=object) if any(boards) else None,
        )

    def take(self, idx: NDArray[Any]) -> EventBatch:
        """The events at ``idx`` (an index array or boolean mask)."""
        return EventBatch(
            user=self.user[idx],
            pin=self.pin[idx],
            kind=self.kind[idx],
            ts=self.ts[idx],
            dwell_ms=self.dwell_ms[idx],
            position=self.position[idx],
            surface=self.surface[idx],
            request=self.request[idx],
            source=self.source[idx],
            board=None if self.board is None else self.board[idx],
        )


def _col(value: Any, n: int, dtype: Any, default: int) -> NDArray[Any]:
    if value is None:
        return np.full(n, default, dtype)
    with np.errstate(over="ignore"):  # a dwell beyond float32 becomes inf, skipped later
        return np.asarray(value).astype(dtype)


def _surface_code(surface: str) -> int:
    try:
        return SURFACES.index(surface)
    except ValueError:
        return -1


def as_batch(events: Sequence[Event] | EventBatch | Iterable[Event]) -> EventBatch:
    """Events as an :class:`EventBatch` (no copy when it already is one)."""
    return events if isinstance(events, EventBatch) else EventBatch.from_events(events)


@dataclass
class PinTable:
    """The catalog the engine ranks: one row per pin.

    ``vectors`` are image vectors (L2-normalised here); ``boards``/``labels``/``titles`` are
    names (``""`` when unknown); ``created_at`` is Unix seconds; ``dup_group`` is the
    near-duplicate group (``-1`` = none); ``blocked`` marks moderated pins, never served.
    """

    ids: I64
    vectors: F32
    boards: Sequence[str]
    labels: Sequence[str]
    titles: Sequence[str] | None = None
    created_at: F64 | None = None
    dup_group: I64 | None = None
    blocked: BOOL | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, np.int64)
        n = len(self.ids)
        vecs = np.asarray(self.vectors, np.float32)
        if vecs.ndim != 2 or len(vecs) != n:
            raise InvalidInput(f"pin vectors must be ({n}, dim), got shape {vecs.shape}")
        if not np.isfinite(vecs).all():
            raise InvalidInput("pin vectors contain NaN or infinite values")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        self.vectors = np.ascontiguousarray(vecs / np.maximum(norms, 1e-12), np.float32)
        if len(np.unique(self.ids)) != n:
            raise InvalidInput("pin ids must be unique")
        if n and int(self.ids.min()) < 0:
            raise InvalidInput("pin ids must be non-negative")
        self.titles = list(self.titles) if self.titles is not None else [""] * n
        self.boards = list(self.boards)
        self.labels = list(self.labels)
        for name in ("boards", "labels", "titles"):
            if len(getattr(self, name)) != n:
                raise InvalidInput(f"pin {name} has {len(getattr(self, name))} rows, expected {n}")
        self.created_at = (
            np.zeros(n) if self.created_at is None else np.asarray(self.created_at, np.float64)
        )
        self.dup_group = (
            np.full(n, -1, np.int64)
            if self.dup_group is None
            else np.asarray(self.dup_group, np.int64)
        )
        self.blocked = np.zeros(n, bool) if self.blocked is None else np.asarray(self.blocked, bool)
        for name in ("created_at", "dup_group", "blocked"):
            if len(getattr(self, name)) != n:
                raise InvalidInput(f"pin {name} has {len(getattr(self, name))} rows, expected {n}")


@dataclass(frozen=True)
class FeedItem:
    """One served pin: its id, ranking score, a human reason and the generator it came from.

    ``because`` is the id of the pin the reason speaks of (the one the person saved, or the pin
    a related list is for), so a client can show its thumbnail next to "because you saved this
    pin"; None when the reason names no pin.
    """

    pin: int
    score: float
    reason: str
    source: str
    because: int | None = None


@dataclass(frozen=True)
class FeedParams:
    """Every setting of the engine; its digest is recorded with saved models.

    Groups: history and interests, generators, blending, bandit, event weights, training.
    """

    # history and interests
    max_history: int = 100  # engaged pins kept per user
    interest_half_life_days: float = 14.0
    recent_half_life_h: float = 6.0  # fading of the "latest engagements" signal
    cluster_threshold: float = 1.0  # Ward cut (see sources.clusters.cluster_history)
    max_clusters: int = 8
    query_clusters: int = 5  # interests queried per feed call
    # generators
    index_kind: str = "auto"
    ann_k: int = 300  # interest neighbours in total, split by importance
    ann_k_min: int = 30
    walk_steps: int = 8000
    walk_walkers: int = 1024  # walkers per numpy step: fewer, longer steps cost more
    walk_restart: float = 0.35
    walk_board_prob: float = 0.35  # share of steps through boards (rest through users)
    walk_seeds: int = 16
    walk_n_p: int = 150
    walk_n_v: int = 4
    n_walk: int = 200
    user_degree_cap: int = 200  # Pixie-style pruning of very active users
    cf_k: int = 50
    cf_max_per_user: int = 60
    n_cf: int = 200
    # behaviour (feed.sources.behaviour): EASE item-item weights over who engaged with what,
    # fitted by fit(); scores the whole catalog (up to behaviour_max_pins) from each history
    n_behaviour: int = 500  # candidates it proposes per request (0 turns the source off)
    behaviour_l2: float = 500.0  # EASE ridge penalty (larger favours popular pins)
    # history weights: False counts each engaged pin once (EASE's own input), True decays them
    behaviour_decay: bool = False
    # pins it covers, the most engaged: bounds its memory (max^2 float32: 3,000 -> 36 MB) and
    # fit (an O(max^3) inverse) whatever the catalog size; the rest reach feeds other ways
    behaviour_max_pins: int = 3000
    n_popular: int = 150
    popular_per_cluster: int = 3
    coarse_clusters: int = 32
    n_fresh: int = 60
    fresh_days: float = 3.0
    pop_half_life_days: float = 7.0
    related_walk_steps: int = 3000
    # blending
    mmr_lambda: float = 0.8
    board_cap: int = 2
    label_cap: int = 3
    cap_window: int = 10
    hide_threshold: float = 0.75
    hide_strength: float = 1.0
    # a hide pushes down the hidden pin's look-alikes: pins at least as close to it as its
    # hide_neighbours-th nearest neighbour (and above hide_threshold), not its whole interest
    hide_neighbours: int = 8
    # budgets: the bandit sets each user's share of explore slots within these bounds, and
    # fresh pins fill at most fresh_share_max of a page (a bulk import must not flood feeds)
    explore_share_min: float = 0.04
    explore_share_max: float = 0.25
    fresh_share_max: float = 0.12
    # bandit: each user's evidence is drawn against the population's engagement rate per arm,
    # worth bandit_prior_strength impressions; before any data the rates are these priors
    exploit_prior: tuple[float, float] = (2.0, 2.0)
    explore_prior: tuple[float, float] = (1.0, 2.0)
    bandit_prior_strength: float = 50.0
    bandit_discount: float = 0.995
    hide_failures: float = 3.0
    seen_cap: int = 5000
    served_cap: int = 500
    # event weights
    w_closeup: float = 0.4
    w_click: float = 0.7
    w_save: float = 1.0
    dwell_min_ms: float = 2000.0
    dwell_full_ms: float = 30000.0
    # training
    train_fraction: float = 0.6  # the first share of the log builds state, the rest labels
    max_train_requests: int = 6000
    label_window_s: float = 3600.0
    session_gap_s: float = 1800.0
    rank_trees: int = 100
    rank_lr: float = 0.08
    rank_leaves: int = 31
    rank_min_child: int = 20
    rank_threads: int = 1  # LightGBM threads: on two busy cores a second thread made it 6x slower
    ipw_clip: float = 10.0
    rank_top: int = 300  # candidates the learned ranker scores per request
    seed: int = 0
    # event hygiene: the engine uses only events dated inside this window (epoch seconds) and,
    # when the caller passes the clock, at most this far ahead of it; others are skipped and
    # counted (see feed.hygiene)
    event_ts_min: float = 0.0
    event_ts_max: float = 4102444800.0  # 2100-01-01
    event_max_future_s: float = 3600.0
    # feed and related requests served at once by one engine, the others waiting first come first
    # served (0: no limit). Python threads mostly trade the GIL: on two cores 4 free threads
    # served fewer requests/s than one, at a 5x feed p99 (bench/bench_feed_threads.py)
    read_slots: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """Settings digest of what shapes the features and the model, plus the format version.

        Serving knobs (blending, caps, bandit, index kind, ...) are left out: tuning them must
        not force a retrain, while a change to anything the ranker learned from must.
        """
        model = {k: v for k, v in self.to_dict().items() if k not in _SERVING_ONLY}
        blob = json.dumps(
            {"params": model, "features": list(FEATURES), "format": FORMAT}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# FeedParams fields that only affect serving, not what a trained ranker means (see digest()).
_SERVING_ONLY = frozenset(
    {
        "index_kind",
        "rank_top",
        "mmr_lambda",
        "board_cap",
        "label_cap",
        "cap_window",
        "hide_threshold",
        "hide_strength",
        "hide_neighbours",
        "explore_share_min",
        "explore_share_max",
        "fresh_share_max",
        "exploit_prior",
        "explore_prior",
        "bandit_prior_strength",
        "bandit_discount",
        "hide_failures",
        "seen_cap",
        "served_cap",
        "related_walk_steps",
        "rank_threads",
        "read_slots",
        "event_ts_min",
        "event_ts_max",
        "event_max_future_s",
    }
)
