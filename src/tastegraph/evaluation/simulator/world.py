"""The simulated people: hidden tastes over the catalog's clusters, and how they browse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed.sources.clusters import kmeans

__all__ = ["Behaviour", "Person", "World"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass
class Person:
    centres: F32  # (m, d) taste centres
    weights: F64  # (m,) relative to the strongest (max 1)


@dataclass(frozen=True)
class Behaviour:
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


class World:
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
        self.people: list[Person] = []
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
            self.people.append(Person(centres.astype(np.float32), w / w.max()))

    def relevance(self, user: int, vectors: F32, rows: I64, seed: int, noise: float) -> F64:
        """How much ``user`` likes each pin, in ``[0, 1]`` (hidden from every policy)."""
        person = self.people[user]
        cos = vectors @ person.centres.T
        z = np.clip((cos - self.outside) / max(self.inside - self.outside, 1e-6), 0.0, 1.25)
        r = (z**2 / 1.5625) @ person.weights
        return np.asarray(np.clip(r + _noise(user, rows, seed, noise), 0.0, 1.0))
