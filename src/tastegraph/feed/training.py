"""Training the feed from its event log: replay, training rows, labels and the ranker.

:class:`Replay` rebuilds the engine's state from the log in time order and, at sampled
instants, computes training rows exactly as serving would have computed them then (same
sources, same features, no leakage from the future); :meth:`Replay.fit` trains the LambdaRank
ranker and the co-engagement neighbours from them. The engine swaps the result in under its
write lock (:meth:`tastegraph.feed.engine.FeedEngine.fit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

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
from tastegraph.feed.features import features
from tastegraph.feed.hygiene import SkipCounter
from tastegraph.feed.pool import generate, make_pool
from tastegraph.feed.ranker import FEATURES, LambdaRanker
from tastegraph.feed.scoring import fallback_score, prerank
from tastegraph.feed.serving import eligible
from tastegraph.feed.sources import behaviour
from tastegraph.feed.sources.cooccurrence import item_item_cf
from tastegraph.feed.sources.registry import SOURCE_ARM
from tastegraph.feed.state import EngagementState, engagement_weights, usable_events
from tastegraph.index import VectorIndex

__all__ = ["Fitted", "Replay"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]

# Candidates kept as negatives per engagement when the ranker learns without impressions (more
# cost training time and, measured on MovieLens, did not rank better).
_ENGAGED_NEGATIVES = 100


@dataclass
class Fitted:
    """What a training run produced: the rebuilt state, the ranker (None: nothing to learn
    from), the events skipped by reason and the report (``FeedEngine.fit_report_``)."""

    state: EngagementState
    ranker: LambdaRanker | None
    skipped: SkipCounter
    report: dict[str, Any]


class Replay:
    """Replays an event log over a fresh state and trains the ranker from it.

    Parameters
    ----------
    params : FeedParams
    cat : PinCatalog
        The catalog (read only).
    index : VectorIndex
        The catalog's vector index (read only: the interest source searches it).
    """

    def __init__(self, params: FeedParams, cat: PinCatalog, index: VectorIndex) -> None:
        self.params = params
        self.cat = cat
        self.index = index
        self.skipped = SkipCounter()
        self.state = EngagementState(cat, params)

    def observe(self, b: EventBatch) -> None:
        self.state.observe(b, self.cat, self.skipped, None)

    def fit(self, batch: EventBatch, now: float) -> Fitted:
        """Replay ``batch`` up to ``now`` and train (see ``FeedEngine.fit`` for the protocol)."""
        p = self.params
        skipped = self.skipped
        b = batch.take(usable_events(batch, now, self.cat, p, skipped))
        b = b.take(np.argsort(b.ts, kind="stable"))
        b = b.take(np.flatnonzero(b.ts <= now))
        n = len(b)
        labels = self.impression_labels(b)
        cut = int(n * p.train_fraction)
        self.observe(b.take(np.arange(cut)))
        self.state.cf = self.fit_cf(b.take(np.arange(cut)))
        self.state.behaviour = self.fit_behaviour(b.take(np.arange(cut)))
        rng = np.random.default_rng(p.seed)
        Xs: list[F32] = []
        ys: list[NDArray[np.int32]] = []
        positions: list[I32] = []
        items: list[I64] = []
        done = cut
        requests = self.training_requests(b, cut, labels, rng)
        for members in requests:
            start = int(np.searchsorted(b.ts, b.ts[members[0]], side="left"))
            if start > done:
                self.observe(b.take(np.arange(done, start)))
                done = start
            X, rows = self.request_features(b, members, rng)
            Xs.append(X)
            ys.append(labels[members])
            positions.append(b.position[members])
            items.append(rows)
        # A log whose impressions teach nothing (none logged: engagement imported from
        # elsewhere) still says what each person chose next among what serving would have
        # offered; the ranker learns from that instead of not being trained at all.
        for event in [] if requests else self.engaged_requests(b, cut, rng):
            start = int(np.searchsorted(b.ts, b.ts[event], side="left"))
            if start > done:
                self.observe(b.take(np.arange(done, start)))
                done = start
            got = self.engaged_features(b, int(event), rng)
            if got is not None:
                Xs.append(got[0])
                ys.append(got[1])
                positions.append(np.full(len(got[1]), -1, np.int32))  # no position bias
                items.append(got[2])
        if done < n:
            self.observe(b.take(np.arange(done, n)))
        self.state.cf = self.fit_cf(b)
        self.state.behaviour = self.fit_behaviour(b)
        groups = [len(y) for y in ys]
        report: dict[str, Any] = {
            "events": n,
            "state_events": cut,
            "train_groups": len(groups),
            "train_rows": int(sum(groups)),
            "users": len(self.state.users),
            "skipped_events": dict(skipped),
            "behaviour_pins": self.state.behaviour.n_pins,
            # what the ranker learned from: logged impressions, or each next engagement
            "labels": "impressions" if requests else "next_engagement" if groups else None,
        }
        ranker = None
        if groups:
            ranker = LambdaRanker(
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
            report["propensity"] = [round(float(x), 4) for x in ranker.propensity_[:10]]
        report["ranker"] = ranker is not None
        return Fitted(self.state, ranker, skipped, report)

    def training_requests(
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

    def request_features(
        self, b: EventBatch, members: I64, rng: np.random.Generator
    ) -> tuple[F32, I64]:
        """Features of one logged request's impressions from the current state."""
        user = int(b.user[members[0]])
        ts = float(b.ts[members].min())
        st = self.state.users.get(user)
        gen = generate(self.params, self.cat, self.state, self.index, st, ts, rng)
        rows = self.cat.rows_of(b.pin[members])
        uniq, inv = np.unique(rows, return_inverse=True)
        pool = make_pool(gen, uniq)
        X = features(
            self.params,
            self.cat,
            self.state,
            st,
            pool,
            gen.interests,
            ts,
            int(b.surface[members[0]]),
        )
        return X[inv], rows

    def engaged_requests(self, b: EventBatch, cut: int, rng: np.random.Generator) -> I64:
        """Sampled engagements after ``cut`` (event indices in time order), for a log without
        useful impressions: each is one request, at its own time, answered by its pin."""
        p = self.params
        engaged = cut + np.flatnonzero(engagement_weights(b.kind[cut:], b.dwell_ms[cut:], p) > 0)
        if len(engaged) > p.max_train_requests:
            engaged = np.sort(rng.choice(engaged, p.max_train_requests, replace=False))
        return engaged

    def engaged_features(
        self, b: EventBatch, event: int, rng: np.random.Generator
    ) -> tuple[F32, NDArray[np.int32], I64] | None:
        """Training rows of one engagement from the current state: the candidates serving would
        have ranked at that instant (generated, not filtered out, the best ``rank_top`` by the
        linear score), labelled 1 for the engaged pin; ``_ENGAGED_NEGATIVES`` of the others are
        kept. None when serving would not have offered the pin at all."""
        p = self.params
        user, ts = int(b.user[event]), float(b.ts[event])
        st = self.state.users.get(user)
        gen = generate(self.params, self.cat, self.state, self.index, st, ts, rng)
        pool = make_pool(gen)
        pool = pool.take(np.flatnonzero(eligible(self.cat, pool, st, None)))
        X = features(
            self.params, self.cat, self.state, st, pool, gen.interests, ts, int(b.surface[event])
        )
        keep = prerank(fallback_score(X), SOURCE_ARM[pool.source()], p.rank_top)
        rows, X = pool.rows[keep], X[keep]
        y = (rows == self.cat.rows_of(b.pin[event : event + 1])[0]).astype(np.int32)
        if not y.any():
            return None
        others = np.flatnonzero(y == 0)
        if len(others) > _ENGAGED_NEGATIVES:
            others = rng.choice(others, _ENGAGED_NEGATIVES, replace=False)
        sel = np.sort(np.concatenate([np.flatnonzero(y), others]))
        return X[sel], y[sel], rows[sel]

    def fit_cf(self, b: EventBatch) -> sp.csr_matrix:
        """Co-engagement neighbours of the pins from the log ``b``."""
        p = self.params
        w = engagement_weights(b.kind, b.dwell_ms, p)
        pos = np.flatnonzero(w >= 0.4)
        return item_item_cf(
            b.user[pos],
            self.cat.rows_of(b.pin[pos]),
            self.cat.n,
            k=p.cf_k,
            max_per_user=p.cf_max_per_user,
        )

    def fit_behaviour(self, b: EventBatch) -> behaviour.BehaviourModel:
        """The behavioural model (EASE) over the same positive engagements as ``fit_cf``."""
        p = self.params
        if p.n_behaviour <= 0:
            return behaviour.empty()
        w = engagement_weights(b.kind, b.dwell_ms, p)
        pos = np.flatnonzero(w >= 0.4)
        return behaviour.fit(
            b.user[pos],
            self.cat.rows_of(b.pin[pos]),
            self.cat.n,
            l2=p.behaviour_l2,
            max_pins=p.behaviour_max_pins,
        )

    def impression_labels(self, b: EventBatch) -> NDArray[np.int32]:
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
        rows = self.cat.rows_of(b.pin)
        _, ucode = np.unique(b.user, return_inverse=True)
        key = ucode.astype(np.int64) * np.int64(max(self.cat.n, 1)) + rows
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
