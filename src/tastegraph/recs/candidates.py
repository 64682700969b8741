"""Candidate generators for the home feed and related pins: the data structures and algorithms.

Everything here works on *pin rows* (``0..n_pins-1``, the engine's dense numbering) and plain
numpy arrays; ``tastegraph.recs.feed`` maps store ids to rows and composes the generators.

- :func:`kmeans`: spherical k-means, used for coarse catalog clusters (diverse exploration) and by
  the simulator to find the catalog's visual clusters.
- :class:`BipartiteGraph`: pins on the left, boards or users on the right, as two CSR arrays plus a
  small delta of edges added since the last compaction, so that a save is walkable at once.
- :func:`pixie_walk`: Pixie-style random walks with restarts from several query pins over one or
  more bipartite graphs, vectorised over walkers, with early stopping on visit counts and
  multi-query boosting.
- :func:`cluster_history`: PinnerSage-style interest clusters of a user's engaged pins (Ward
  linkage on image vectors, one medoid per cluster).
- :class:`Popularity`: recency-decayed engagement per pin with an incrementally maintained top list.
- :func:`item_item_cf`: item-item cosine co-engagement, top-k per pin, as a CSR matrix.

Example
-------
>>> import numpy as np
>>> g = BipartiteGraph(n_left=4, n_right=2)
>>> g.add_edges(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]))  # pins 0,1 on board 0; 2,3 on 1
>>> walk = pixie_walk([(g, 1.0)], np.array([0]), np.array([1.0]), 4, np.random.default_rng(0),
...                   steps=400, walkers=16)
>>> walk.rows.tolist()  # only pin 1 shares a board with pin 0 (the seed itself is dropped)
[1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = [
    "BipartiteGraph",
    "Popularity",
    "WalkResult",
    "cluster_history",
    "item_item_cf",
    "kmeans",
    "pixie_walk",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]

_EMPTY = np.zeros(0, np.int64)


# --------------------------------------------------------------------------------------------
# Spherical k-means


def kmeans(x: F32, k: int, *, iters: int = 15, seed: int = 0, sample: int = 20_000) -> F32:
    """Spherical k-means (cosine) centroids of L2-normalised vectors.

    Parameters
    ----------
    x : (n, d) float32
        Unit vectors.
    k : int
        Number of clusters (capped at ``n``).
    iters : int
        Lloyd iterations.
    seed : int
        Seeds the k-means++ initialisation and the sample.
    sample : int
        Fit on at most this many rows (a uniform sample): centroids of 100k pins are found as well
        from 20k, in a tenth of the time.

    Returns
    -------
    (k, d) float32
        Unit centroids. Assign with ``np.argmax(x @ centroids.T, axis=1)``.

    Examples
    --------
    >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> c = kmeans(x, 2, seed=0)
    >>> sorted(np.argmax(x @ c.T, axis=1)[[0, 2]].tolist()) == [0, 1]
    True
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    k = max(1, min(k, n))
    if n > sample:
        x = x[np.sort(rng.choice(n, sample, replace=False))]
        n = sample
    x = np.ascontiguousarray(x, np.float32)
    # k-means++ on cosine distance: spreads the seeds so small clusters get one.
    centers = np.empty((k, x.shape[1]), np.float32)
    centers[0] = x[rng.integers(n)]
    dist = np.maximum(1.0 - x @ centers[0], 0.0).astype(np.float64)
    for j in range(1, k):
        total = float(dist.sum())
        pick = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
        centers[j] = x[pick]
        dist = np.minimum(dist, np.maximum(1.0 - x @ centers[j], 0.0))
    for _ in range(iters):
        assign = np.argmax(x @ centers.T, axis=1)
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, x)
        norms = np.linalg.norm(sums, axis=1)
        empty = norms < 1e-12
        if empty.any():
            # Re-seed an empty cluster on the point worst served by its centroid.
            worst = np.argsort(np.einsum("ij,ij->i", x, centers[assign]))[: int(empty.sum())]
            sums[empty] = x[worst]
            norms[empty] = 1.0
        new = (sums / norms[:, None]).astype(np.float32)
        if np.allclose(new, centers, atol=1e-6):
            centers = new
            break
        centers = new
    return centers


# --------------------------------------------------------------------------------------------
# Bipartite graph with CSR arrays and a delta


class BipartiteGraph:
    """Pins (left) to boards or users (right): CSR adjacency both ways plus a small live delta.

    Walks need "a random neighbour of each of these 512 nodes" as one numpy step, which CSR
    arrays give (``indices[indptr[v] + floor(u * degree)]``). Edges added in real time go to a
    per-node delta (Python lists, so a save costs two appends) that the step reads for the few
    walkers whose draw falls past the CSR part; ``compact`` merges the delta into new CSR arrays
    once it holds ``compact_every`` edges, so the delta stays small.

    Parameters
    ----------
    n_left, n_right : int
        Initial node counts; ``grow`` adds nodes.
    right_cap : int, optional
        Keep at most this many (most recent) edges per right node at compaction. Pixie prunes
        very active users and huge boards the same way: their neighbours are a random sample of
        the catalog and only add noise to the walk.
    compact_every : int
        Delta size that triggers a compaction.

    Examples
    --------
    >>> g = BipartiteGraph(3, 2)
    >>> g.add_edges(np.array([0, 1]), np.array([0, 0]))
    >>> g.add_edges(np.array([2]), np.array([0]))
    >>> sorted(g.right_neighbors(0).tolist()), g.degree_left(np.array([0, 1, 2])).tolist()
    ([0, 1, 2], [1, 1, 1])
    """

    def __init__(
        self,
        n_left: int = 0,
        n_right: int = 0,
        *,
        right_cap: int | None = None,
        compact_every: int = 50_000,
    ) -> None:
        self.n_left = 0
        self.n_right = 0
        self.right_cap = right_cap
        self.compact_every = compact_every
        self._edge_l: I64 = _EMPTY
        self._edge_r: I64 = _EMPTY
        self._lptr: I64 = np.zeros(1, np.int64)
        self._lidx: I64 = _EMPTY
        self._rptr: I64 = np.zeros(1, np.int64)
        self._ridx: I64 = _EMPTY
        self._dl: dict[int, list[int]] = {}
        self._dr: dict[int, list[int]] = {}
        self._dl_deg: I32 = np.zeros(0, np.int32)
        self._dr_deg: I32 = np.zeros(0, np.int32)
        self._pending_l: list[I64] = []
        self._pending_r: list[I64] = []
        self._n_pending = 0
        self.grow(n_left, n_right)

    @property
    def n_edges(self) -> int:
        """Edges in the compacted part plus the delta (duplicates in the delta counted)."""
        return len(self._edge_l) + self._n_pending

    def grow(self, n_left: int, n_right: int) -> None:
        """Make room for ``n_left`` left and ``n_right`` right nodes (new ones isolated)."""
        if n_left > self.n_left:
            self._lptr = np.concatenate(
                [self._lptr, np.full(n_left - self.n_left, self._lptr[-1], np.int64)]
            )
            self._dl_deg = np.concatenate([self._dl_deg, np.zeros(n_left - self.n_left, np.int32)])
            self.n_left = n_left
        if n_right > self.n_right:
            # Right nodes (users) arrive one at a time: grow the arrays geometrically.
            cap = max(n_right, len(self._dr_deg))
            if cap > len(self._dr_deg):
                cap = max(cap, 2 * len(self._dr_deg))
                self._dr_deg = np.concatenate(
                    [self._dr_deg, np.zeros(cap - len(self._dr_deg), np.int32)]
                )
                self._rptr = np.concatenate(
                    [self._rptr, np.full(cap + 1 - len(self._rptr), self._rptr[-1], np.int64)]
                )
            self.n_right = n_right

    def add_edges(self, left: I64, right: I64) -> None:
        """Add edges ``left[i] -- right[i]``; walkable immediately.

        Large batches (bulk loads) go straight to a compaction rather than through the delta.
        """
        left = np.asarray(left, np.int64)
        right = np.asarray(right, np.int64)
        if len(left) == 0:
            return
        self.grow(int(left.max()) + 1, int(right.max()) + 1)
        self._pending_l.append(left)
        self._pending_r.append(right)
        self._n_pending += len(left)
        if self._n_pending >= self.compact_every or len(left) > 1000:
            self.compact()
            return
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            self._dl.setdefault(a, []).append(b)
            self._dr.setdefault(b, []).append(a)
        np.add.at(self._dl_deg, left, 1)
        np.add.at(self._dr_deg, right, 1)

    def compact(self) -> None:
        """Merge the delta into the CSR arrays: dedupe edges, apply ``right_cap``, rebuild."""
        if not self._n_pending:
            return
        el = np.concatenate([self._edge_l, *self._pending_l])
        er = np.concatenate([self._edge_r, *self._pending_r])
        # Keep the last occurrence of each edge, in insertion order (the order is recency).
        key = el * np.int64(max(self.n_right, 1)) + er
        _, first_rev = np.unique(key[::-1], return_index=True)
        keep = np.sort(len(key) - 1 - first_rev)
        el, er = el[keep], er[keep]
        if self.right_cap is not None and len(er):
            order = np.argsort(er, kind="stable")
            counts = np.bincount(er, minlength=self.n_right)
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            rank = np.arange(len(er)) - np.repeat(start, counts)
            from_end = np.repeat(counts, counts) - rank
            ok = np.zeros(len(er), bool)
            ok[order] = from_end <= self.right_cap
            el, er = el[ok], er[ok]
        self._edge_l, self._edge_r = el, er
        self._lptr, self._lidx = _csr(el, er, self.n_left)
        self._rptr, self._ridx = _csr(er, el, len(self._dr_deg))
        self._dl.clear()
        self._dr.clear()
        self._dl_deg[:] = 0
        self._dr_deg[:] = 0
        self._pending_l.clear()
        self._pending_r.clear()
        self._n_pending = 0

    def degree_left(self, nodes: I64) -> I64:
        """Degree of left nodes (CSR plus delta)."""
        return (self._lptr[nodes + 1] - self._lptr[nodes]) + self._dl_deg[nodes]

    def degree_right(self, nodes: I64) -> I64:
        """Degree of right nodes (CSR plus delta)."""
        return (self._rptr[nodes + 1] - self._rptr[nodes]) + self._dr_deg[nodes]

    def left_neighbors(self, node: int) -> I64:
        """Right nodes adjacent to left ``node``."""
        base = self._lidx[self._lptr[node] : self._lptr[node + 1]]
        extra = self._dl.get(node)
        return np.concatenate([base, np.asarray(extra, np.int64)]) if extra else base

    def right_neighbors(self, node: int) -> I64:
        """Left nodes adjacent to right ``node``."""
        base = self._ridx[self._rptr[node] : self._rptr[node + 1]]
        extra = self._dr.get(node)
        return np.concatenate([base, np.asarray(extra, np.int64)]) if extra else base

    def step_left(self, nodes: I64, u: F64) -> I64:
        """One uniform random right neighbour of each left node (``-1`` where isolated)."""
        return _step(self._lptr, self._lidx, self._dl_deg, self._dl, nodes, u)

    def step_right(self, nodes: I64, u: F64) -> I64:
        """One uniform random left neighbour of each right node (``-1`` where isolated)."""
        return _step(self._rptr, self._ridx, self._dr_deg, self._dr, nodes, u)


def _csr(src: I64, dst: I64, n: int) -> tuple[I64, I64]:
    order = np.argsort(src, kind="stable")
    counts = np.bincount(src, minlength=n)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, dst[order].astype(np.int64, copy=False)


def _step(ptr: I64, idx: I64, ddeg: I32, delta: dict[int, list[int]], nodes: I64, u: F64) -> I64:
    base = ptr[nodes + 1] - ptr[nodes]
    deg = base + ddeg[nodes]
    pick = (u * deg).astype(np.int64)
    out = np.full(len(nodes), -1, np.int64)
    in_csr = pick < base
    out[in_csr] = idx[ptr[nodes[in_csr]] + pick[in_csr]]
    in_delta = np.flatnonzero(~in_csr & (deg > 0))
    # Only walkers whose draw lands on an edge added since the last compaction get here: a few.
    for i in in_delta.tolist():
        out[i] = delta[int(nodes[i])][int(pick[i] - base[i])]
    return out


# --------------------------------------------------------------------------------------------
# Pixie random walks


@dataclass(frozen=True)
class WalkResult:
    """Pins reached by a walk, best first: boosted visit score and the seed that led there most."""

    rows: I64
    scores: F64
    seed: I64
    steps: int


def pixie_walk(
    graphs: Sequence[tuple[BipartiteGraph, float]],
    seeds: I64,
    weights: F64,
    n_pins: int,
    rng: np.random.Generator,
    *,
    steps: int = 10_000,
    walkers: int = 512,
    restart: float = 0.3,
    n_p: int = 200,
    n_v: int = 4,
    top: int = 200,
) -> WalkResult:
    """Random walks with restart from several seed pins over pin-side bipartite graphs (Pixie).

    Each step moves a walker from its pin to a random neighbour (board or user) in one of the
    ``graphs``, chosen with the given probability, and on to a random pin of that neighbour; a
    walker restarts at its seed with probability ``restart`` after each step, so visits
    concentrate near the seeds. Walkers are split among the seeds in proportion to ``weights``
    and all move together as numpy arrays.

    Parameters
    ----------
    graphs : sequence of (BipartiteGraph, float)
        Graphs with pins on the left and the probability of stepping through each one; a walker
        whose pin has no edge in the chosen graph tries the others, then restarts.
    seeds : (s,) int64
        Query pin rows.
    weights : (s,) float64
        Relative importance of the seeds (e.g. recency-decayed engagement).
    n_pins : int
        Number of pin rows.
    rng : numpy Generator
    steps : int
        Budget of two-hop steps over all walkers.
    walkers : int
        Walkers moving in parallel (one numpy step moves all of them).
    restart : float
        Probability of jumping back to the seed after each step.
    n_p, n_v : int
        Early stopping (Pixie): stop once ``n_p`` pins have been visited at least ``n_v`` times;
        the ranking of the top of the list no longer changes much after that.
    top : int
        Keep the ``top`` best pins.

    Returns
    -------
    WalkResult
        ``rows`` (seeds excluded) ordered by the boosted score ``(sum_q sqrt(visits_q))^2``,
        which favours pins reached from several seeds over pins reached often from one, and
        ``seed`` the index into ``seeds`` that contributed most to each row.

    Examples
    --------
    >>> g = BipartiteGraph(5, 2)
    >>> g.add_edges(np.array([0, 1, 2, 2, 3, 4]), np.array([0, 0, 0, 1, 1, 1]))
    >>> r = pixie_walk([(g, 1.0)], np.array([0]), np.array([1.0]), 5, np.random.default_rng(1),
    ...                steps=2000, walkers=64)
    >>> r.rows[:2].tolist() in ([1, 2], [2, 1])  # the seed's board mates come first
    True
    """
    seeds = np.asarray(seeds, np.int64)
    if len(seeds) == 0 or not graphs:
        return WalkResult(_EMPTY, np.zeros(0), _EMPTY, 0)
    w = np.maximum(np.asarray(weights, np.float64), 0.0)
    w = w / w.sum() if w.sum() > 0 else np.full(len(seeds), 1.0 / len(seeds))
    # Largest-remainder allocation: every seed gets its share of walkers, at least one.
    share = w * walkers
    alloc = np.maximum(np.floor(share).astype(np.int64), 1)
    alloc_w = int(alloc.sum())
    if alloc_w < walkers:
        extra = np.argsort(-(share - np.floor(share)), kind="stable")[: walkers - alloc_w]
        alloc[extra] += 1
    sidx = np.repeat(np.arange(len(seeds)), alloc)
    start = seeds[sidx]
    cur = start.copy()
    n_w = len(cur)
    probs = np.array([p for _, p in graphs], np.float64)
    probs = probs / probs.sum()
    counts = np.zeros(n_pins, np.int32)
    vis_pin: list[I64] = []
    vis_seed: list[I64] = []
    done = 0
    rounds = 0
    while done < steps:
        nxt = np.full(n_w, -1, np.int64)
        if len(graphs) == 1:
            nxt = _two_hop(graphs[0][0], cur, rng)
        else:
            # Choose among the graphs in which the walker's pin has edges, so a pin known only
            # by its board (no engagement yet) still walks instead of restarting.
            has = np.stack([g.degree_left(cur) > 0 for g, _ in graphs])
            weight = has * probs[:, None]
            total = weight.sum(axis=0)
            u = rng.random(n_w) * total
            choice = (np.cumsum(weight, axis=0) <= u[None, :]).sum(axis=0)
            for gi, (g, _) in enumerate(graphs):
                sel = np.flatnonzero((choice == gi) & (total > 0))
                if len(sel):
                    nxt[sel] = _two_hop(g, cur[sel], rng)
        ok = nxt >= 0
        moved = nxt[ok]
        vis_pin.append(moved)
        vis_seed.append(sidx[ok])
        np.add.at(counts, moved, 1)
        done += n_w
        rounds += 1
        jump = ~ok | (rng.random(n_w) < restart)
        cur = np.where(jump, start, nxt)
        if rounds % 3 == 0 and int(np.count_nonzero(counts >= n_v)) >= n_p + len(seeds):
            break
    pins = np.concatenate(vis_pin)
    owner = np.concatenate(vis_seed)
    seed_mask = np.zeros(n_pins, bool)
    seed_mask[seeds] = True
    keep = ~seed_mask[pins]
    pins, owner = pins[keep], owner[keep]
    if not len(pins):
        return WalkResult(_EMPTY, np.zeros(0), _EMPTY, done)
    key = owner * np.int64(n_pins) + pins
    ukey, c = np.unique(key, return_counts=True)
    upin = ukey % n_pins
    useed = ukey // n_pins
    rows, inv = np.unique(upin, return_inverse=True)
    root = np.sqrt(c.astype(np.float64))
    score = np.bincount(inv, weights=root, minlength=len(rows)).astype(np.float64) ** 2
    # The seed that contributed most visits to each pin, for "because you saved ..." reasons.
    order = np.lexsort((c, inv))
    last = np.concatenate([np.flatnonzero(np.diff(inv[order])), [len(order) - 1]])
    best_seed = useed[order[last]]
    pick = np.lexsort((rows, -score))[:top]
    return WalkResult(rows[pick], score[pick], best_seed[pick], done)


def _two_hop(g: BipartiteGraph, nodes: I64, rng: np.random.Generator) -> I64:
    mid = g.step_left(nodes, rng.random(len(nodes)))
    out = np.full(len(nodes), -1, np.int64)
    ok = np.flatnonzero(mid >= 0)
    if len(ok):
        out[ok] = g.step_right(mid[ok], rng.random(len(ok)))
    return out


# --------------------------------------------------------------------------------------------
# Interest clusters (PinnerSage)


def cluster_history(
    vectors: F32, *, threshold: float = 1.0, max_clusters: int = 8
) -> tuple[I64, I64]:
    """Cluster a user's engaged pins into interests and pick a medoid per interest.

    PinnerSage keeps several embeddings per user because one average of "kitchens" and "running
    shoes" is a vector near neither. Ward linkage merges the pins bottom-up while the within-
    cluster variance stays small; the tree is cut at ``threshold`` (then at ``max_clusters`` if
    that leaves more). Each cluster is represented by its medoid, a real pin, rather than its
    centroid, so a cluster of two distant pins does not query the empty space between them.

    Parameters
    ----------
    vectors : (m, d) float32
        Unit image vectors of the engaged pins (m is small: the last ~100 engagements).
    threshold : float
        Ward merge-distance cut. For unit vectors, pins with cosine 0.6 merge at about 0.9,
        pins from unrelated clusters (cosine ~0) at 1.4 and above.
    max_clusters : int
        At most this many clusters.

    Returns
    -------
    labels : (m,) int64
        Cluster of each pin, ``0..c-1``.
    medoids : (c,) int64
        Position (into ``vectors``) of each cluster's medoid: the member with the highest summed
        cosine to the other members.

    Examples
    --------
    >>> v = np.array([[1, 0, 0], [0.95, 0.3, 0], [0, 0, 1], [0, 0.2, 0.98]], np.float32)
    >>> v /= np.linalg.norm(v, axis=1, keepdims=True)
    >>> labels, medoids = cluster_history(v)
    >>> labels.tolist(), len(medoids)
    ([0, 0, 1, 1], 2)
    """
    m = len(vectors)
    if m == 0:
        return _EMPTY, _EMPTY
    if m == 1:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    x = np.asarray(vectors, np.float64)
    z = linkage(x, method="ward")
    raw = fcluster(z, t=threshold, criterion="distance")
    if raw.max() > max_clusters:
        raw = fcluster(z, t=max_clusters, criterion="maxclust")
    # Renumber by first appearance so labels are stable for equal inputs.
    _, first, inv = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    labels = rank[inv].astype(np.int64)
    sims = x @ x.T
    medoids = np.empty(int(labels.max()) + 1, np.int64)
    for c in range(len(medoids)):
        members = np.flatnonzero(labels == c)
        inner = sims[np.ix_(members, members)].sum(axis=1)
        medoids[c] = members[int(np.argmax(inner))]
    return labels, medoids


# --------------------------------------------------------------------------------------------
# Popularity


class Popularity:
    """Recency-decayed engagement per pin, and its top list kept up to date incrementally.

    Scores are stored relative to a reference time ``t0`` as ``sum_e w_e * 2**((t_e - t0) / h)``.
    Every pin decays by the same factor between two instants, so the order of these stored
    values is the order of decayed popularity at *any* ``now``: the top list never needs
    re-sorting because time passed, only when a pin gains engagement, and then only that pin is
    merged in. ``score(rows, now)`` applies the decay to report actual values.

    Parameters
    ----------
    n : int
        Pins.
    half_life : float
        Seconds for an engagement to lose half its weight.
    keep : int
        Length of the maintained top list.

    Examples
    --------
    >>> p = Popularity(4, half_life=86400.0)
    >>> p.add(np.array([2, 2, 1]), np.array([1.0, 1.0, 1.0]), np.array([0.0, 86400.0, 86400.0]))
    >>> p.top(2).tolist(), [round(float(s), 3) for s in p.score(np.array([2, 1]), 86400.0)]
    ([2, 1], [1.5, 1.0])
    """

    _REBASE = 500.0  # log2 of the largest multiplier allowed before shifting t0

    def __init__(self, n: int, *, half_life: float, keep: int = 5000) -> None:
        self.half_life = float(half_life)
        self.keep = int(keep)
        self.t0: float | None = None
        self.ref: F64 = np.zeros(n, np.float64)
        self._top: I64 = _EMPTY
        self._pending: set[int] = set()
        self._stale = True
        self.version = 0  # bumped by every add: lets callers cache what they derive from top()

    def grow(self, n: int) -> None:
        if n > len(self.ref):
            self.ref = np.concatenate([self.ref, np.zeros(n - len(self.ref))])
            self.version += 1

    def add(self, rows: I64, weights: F64, ts: F64) -> None:
        """Add engagement ``weights[i]`` to ``rows[i]`` at times ``ts[i]`` (seconds)."""
        if len(rows) == 0:
            return
        ts = np.asarray(ts, np.float64)
        if self.t0 is None:
            self.t0 = float(ts.min())
        expo = (ts - self.t0) / self.half_life
        if float(expo.max()) > self._REBASE:
            shift = float(expo.max()) - 1.0
            self.ref *= 2.0 ** (-shift)
            self.t0 += shift * self.half_life
            expo = expo - shift
        np.add.at(self.ref, rows, np.asarray(weights, np.float64) * np.exp2(expo))
        self.version += 1
        if self._stale or len(rows) > self.keep:
            self._stale = True
        else:
            self._pending.update(np.unique(rows).tolist())

    def score(self, rows: I64, now: float) -> F64:
        """Decayed popularity of ``rows`` at ``now``."""
        if self.t0 is None:
            return np.zeros(len(rows))
        return np.asarray(self.ref[rows] * 2.0 ** (-(now - self.t0) / self.half_life))

    def top(self, k: int) -> I64:
        """The ``k`` most popular rows (only rows with engagement), best first."""
        if self._stale or k > self.keep:
            n = min(max(k, self.keep), len(self.ref))
            part = np.argpartition(-self.ref, n - 1)[:n] if n < len(self.ref) else np.arange(n)
            self._top = part[np.lexsort((part, -self.ref[part]))]
            self._stale = False
            self._pending.clear()
        elif self._pending:
            merged = np.union1d(self._top, np.fromiter(self._pending, np.int64))
            self._top = merged[np.lexsort((merged, -self.ref[merged]))][: self.keep]
            self._pending.clear()
        top = self._top[:k]
        return top[self.ref[top] > 0]


# --------------------------------------------------------------------------------------------
# Item-item collaborative filtering


def item_item_cf(
    users: I64,
    items: I64,
    n_items: int,
    *,
    k: int = 50,
    shrink: float = 5.0,
    max_per_user: int = 60,
    block: int = 8192,
) -> sp.csr_matrix:
    """Item-item cosine similarity of co-engagement, top ``k`` per item.

    Parameters
    ----------
    users, items : (e,) int64
        Positive engagements in time order (duplicates allowed); users are any non-negative ints.
    n_items : int
        Number of item rows.
    k : int
        Neighbours kept per item.
    shrink : float
        Added to the cosine denominator so pairs seen together once or twice by few users do not
        score as high as pairs with strong evidence.
    max_per_user : int
        Only each user's last ``max_per_user`` distinct items count. The work grows with the
        square of a user's history, and very long histories say little about any one pair.
    block : int
        Items per block of the sparse product (bounds memory).

    Returns
    -------
    scipy.sparse.csr_matrix, (n_items, n_items) float32
        Row ``i`` holds up to ``k`` neighbours of ``i`` (never ``i`` itself).

    Examples
    --------
    >>> s = item_item_cf(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 2]), 3)
    >>> s[0].indices.tolist(), round(float(s[0, 1]), 3)
    ([1], 0.286)
    """
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    if len(users) == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    _, u = np.unique(users, return_inverse=True)
    # Distinct (user, item) pairs, each at its last position; then the last max_per_user per user.
    key = u * np.int64(n_items) + items
    _, first_rev = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(key) - 1 - first_rev)
    u, it = u[keep], items[keep]
    order = np.lexsort((np.arange(len(u)), u))
    u_s = u[order]
    counts = np.bincount(u_s)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    from_end = np.repeat(counts, counts) - (np.arange(len(u_s)) - np.repeat(start, counts))
    sel = order[from_end <= max_per_user]
    u, it = u[sel], it[sel]
    x = sp.csr_matrix((np.ones(len(u), np.float32), (u, it)), shape=(int(u.max()) + 1, n_items))
    xt = x.T.tocsr()
    norm = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
    rows_out: list[I64] = []
    cols_out: list[I64] = []
    vals_out: list[F32] = []
    for lo in range(0, n_items, block):
        hi = min(n_items, lo + block)
        co = (xt[lo:hi] @ x).tocoo()
        r = co.row.astype(np.int64) + lo
        c = co.col.astype(np.int64)
        v = co.data.astype(np.float32)
        ok = r != c
        r, c, v = r[ok], c[ok], v[ok]
        v = v / (norm[r] * norm[c] + np.float32(shrink))
        # Top k per row without a Python loop: sort by (row, -value), keep the first k of each.
        o = np.lexsort((c, -v, r))
        r, c, v = r[o], c[o], v[o]
        rc = np.bincount(r - lo, minlength=hi - lo)
        st = np.concatenate([[0], np.cumsum(rc)[:-1]])
        rank = np.arange(len(r)) - np.repeat(st, rc)
        top = rank < k
        rows_out.append(r[top])
        cols_out.append(c[top])
        vals_out.append(v[top])
    r = np.concatenate(rows_out)
    c = np.concatenate(cols_out)
    v = np.concatenate(vals_out)
    return sp.csr_matrix((v, (r, c)), shape=(n_items, n_items), dtype=np.float32)
