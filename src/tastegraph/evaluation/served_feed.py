"""The served feed engine behind the offline recommendation protocols.

``tastegraph eval recs`` must measure what users get: the :class:`~tastegraph.feed.FeedEngine`
the server runs (candidate generators, ranking, blending), not a model only the evaluation uses.
:class:`ServedFeed` builds that engine from the training interactions the way the product does
and answers the protocols only through the engine's public calls:

Building (as ``tastegraph train`` then a server start do)
    Items become pins (one row each; the id is the item index), interactions become engagement
    events, ``catalog_params`` (the server's own) adapts the parameters to the catalog's vectors,
    ``FeedEngine.fit`` replays the log (co-engagement neighbours, and a LambdaRank ranker when the
    log holds impressions it can learn from), the model is saved and loaded into a fresh engine,
    and that engine observes the whole log, exactly as ``FeedService`` replays the store's
    events. Whatever ``train`` would train, this trains; whatever it would not (no impressions:
    no ranker, the engine's fixed linear score ranks), this does not either.
Scoring (sampled protocol)
    ``feed(user, n=len(candidates), now, exclude=every other pin)``: the engine's own page over
    the candidates, requested right after the user's last training interaction (the held-out one
    came next; nothing of it is used). A candidate on the page scores by its position; one the
    engine does not put on the page (no generator proposes it) ties with the others left off,
    below every shown pin, which the protocol's tie rule counts at its expected rank.
Recommending (full-ranking protocol)
    ``feed(user, n, now)``: the first page of the user's home feed, as served, at the time cut.

Interaction logs carry no images. Pins then get an all-zero image vector, the product's "no
vector" (zero vectors stay zero in the indexes): every cosine is 0, so visual interests,
look-alike penalties and diversity by image neither help nor add noise, and the feed runs on
what the log supports (walks over the pin-user graph, co-engagement, popularity, freshness).
No image feature is made up. Boards and labels are empty for the same reason. A pin's creation
time is its first interaction in the training log (when it entered the catalog, as far as the
log knows), so "fresh" means new to the log.

Example
-------
>>> import numpy as np
>>> from tastegraph.evaluation.recs.data import Interactions
>>> data = Interactions(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 1]),
...                     np.array([1, 2, 3, 4, 5]), np.array(["a", "b", "c"]),
...                     np.array(["x", "y", "z"]))
>>> model = ServedFeed().fit(data)
>>> model.score(np.array([2]), np.array([[0, 2]])).shape
(1, 2)
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.evaluation.recs.data import Interactions
from tastegraph.feed import KINDS, EventBatch, FeedEngine, FeedParams, PinTable
from tastegraph.feed.service import catalog_params

__all__ = ["SERVED", "ServedFeed", "interaction_events", "last_seen", "pin_table"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

SERVED = "served-feed"
# The engine's events for one rating: a save, the strongest engagement a log can hold. Every
# rating is one implicit interaction whatever its value (see evaluation.recs.data), for every model.
EVENT_KIND = "save"
# Dimension of the all-zero "no image" vectors: any works (every cosine is 0). One keeps the
# index and the feature products cheap, and a history of zero vectors never looks square to
# scipy's Ward linkage (which warns about "a distance matrix" for an m x m input).
NO_IMAGE_DIM = 1


def pin_table(data: Interactions) -> PinTable:
    """One pin per item (id = item index), without image vectors, boards or labels."""
    n = data.n_items
    created = np.zeros(n, np.float64)
    if data.n_interactions:
        first = np.full(n, np.inf)
        np.minimum.at(first, data.items, data.timestamps.astype(np.float64))
        created = np.where(np.isfinite(first), first, 0.0)
    return PinTable(
        ids=np.arange(n, dtype=np.int64),
        vectors=np.zeros((n, NO_IMAGE_DIM), np.float32),
        boards=[""] * n,
        labels=[""] * n,
        created_at=created,
    )


def last_seen(data: Interactions, users: I64) -> F64:
    """One second after each user's last interaction in ``data`` (0 for a user with none)."""
    last = np.full(data.n_users, -1.0)
    np.maximum.at(last, data.users, data.timestamps.astype(np.float64))
    return np.asarray(last[np.asarray(users, np.int64)] + 1.0, np.float64)


def interaction_events(data: Interactions) -> EventBatch:
    """The training log as the engine's events: one ``save`` per interaction, in time order."""
    order = np.lexsort((data.items, data.users, data.timestamps))
    n = len(order)
    return EventBatch.from_arrays(
        user=data.users[order],
        pin=data.items[order],
        kind=np.full(n, KINDS.index(EVENT_KIND), np.int8),
        ts=data.timestamps[order].astype(np.float64),
    )


class ServedFeed:
    """The served feed engine fitted on training interactions, scored like the peers.

    Parameters
    ----------
    overrides
        ``FeedParams`` fields set on top of the server's (``catalog_params``); empty by default,
        so what is measured is what is served. Tests use it to show the engine is really used.
    now
        The serving clock (Unix seconds); by default one second after the last training
        interaction, when the whole log has happened.
    """

    name = SERVED

    def __init__(self, overrides: Mapping[str, Any] | None = None, now: float | None = None):
        self.overrides = dict(overrides or {})
        self.now = now
        self.engine_: FeedEngine | None = None
        self.now_: float = 0.0
        self.fit_report_: dict[str, Any] = {}

    def get_params(self) -> dict[str, Any]:
        """What the row reports: the overrides (none: the served settings) and the ranker."""
        out: dict[str, Any] = dict(self.overrides)
        if self.engine_ is not None:
            out["ranker"] = "lambdarank" if self.engine_.ranker_ is not None else "linear"
        return out

    def params(self, pins: PinTable) -> FeedParams:
        return dataclasses.replace(catalog_params(pins.vectors), **self.overrides)

    def fit(self, data: Interactions) -> ServedFeed:
        """Train as ``tastegraph train`` does, then load the model and replay the log as a
        server start does."""
        from threadpoolctl import threadpool_limits

        pins = pin_table(data)
        params = self.params(pins)
        events = interaction_events(data)
        last = float(data.timestamps.max()) if data.n_interactions else 0.0
        self.now_ = float(self.now) if self.now is not None else last + 1.0
        trainer = FeedEngine(pins, params=params)
        with threadpool_limits(1, "blas"), tempfile.TemporaryDirectory() as tmp:
            trainer.fit(events, self.now_)
            trainer.save(Path(tmp) / "model")
            engine = FeedEngine(pins, params=params)
            engine.load(Path(tmp) / "model")
        engine.observe(events, now=self.now_)
        self.fit_report_ = dict(trainer.fit_report_)
        self.engine_ = engine
        return self

    def _engine(self) -> FeedEngine:
        if self.engine_ is None:
            raise RuntimeError("ServedFeed.fit() first")
        return self.engine_

    def _clock(self, users: I64, now: F64 | None) -> list[float]:
        if now is None:
            return [self.now_] * len(users)
        return [float(t) for t in np.broadcast_to(np.asarray(now, np.float64), (len(users),))]

    def score(self, users: I64, candidates: I64, now: F64 | None = None) -> F32:
        """``(len(users), k)`` scores of each user's ``k`` candidates from the engine's page.

        Position ``p`` on the page scores ``k - p``; candidates left off the page score 0.
        ``now`` is each user's request time (default: the serving clock ``now_``).
        """
        engine = self._engine()
        cands = np.asarray(candidates, np.int64)
        out = np.zeros(cands.shape, np.float32)
        all_pins = np.arange(engine.n_pins, dtype=np.int64)
        k = cands.shape[1]
        users = np.asarray(users, np.int64)
        for r, (user, t) in enumerate(zip(users.tolist(), self._clock(users, now), strict=True)):
            others = np.setdiff1d(all_pins, cands[r], assume_unique=False)
            page = [it.pin for it in engine.feed(user, k, t, exclude=others.tolist())]
            where = {pin: pos for pos, pin in enumerate(page)}
            for j, pin in enumerate(cands[r].tolist()):
                pos = where.get(pin)
                if pos is not None:
                    out[r, j] = k - pos
        return out

    def recommend(self, users: I64, n: int, now: F64 | None = None) -> I64:
        """``(len(users), n)`` pin ids of each user's first home-feed page at ``now`` (as in
        :meth:`score`; ``-1`` pads a page shorter than ``n``)."""
        engine = self._engine()
        users = np.asarray(users, np.int64)
        out = np.full((len(users), n), -1, np.int64)
        for r, (user, t) in enumerate(zip(users.tolist(), self._clock(users, now), strict=True)):
            page = [it.pin for it in engine.feed(user, n, t)]
            out[r, : len(page)] = page
        return out
