"""Pixie random walks over bipartite pin graphs (the ``walk`` source, and related pins).

Everything here works on *pin rows* (``0..n_pins-1``, the engine's dense numbering) and plain
numpy arrays.

- :class:`BipartiteGraph`: pins on the left, boards or users on the right, as two CSR arrays plus a
  small delta of edges added since the last compaction, so that a save is walkable at once.
- :func:`pixie_walk`: Pixie-style random walks with restarts from several query pins over one or
  more bipartite graphs, vectorised over walkers, with early stopping on visit counts and
  multi-query boosting.

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
from numpy.typing import NDArray

from tastegraph.feed.arrays import n_distinct, unique_sorted

__all__ = ["BipartiteGraph", "WalkResult", "pixie_walk"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]

_EMPTY = np.zeros(0, np.int64)


# --------------------------------------------------------------------------------------------
# Bipartite graph with CSR arrays and a delta


class BipartiteGraph:
    """Pins (left) to boards or users (right): CSR adjacency both ways plus a small live delta.

    Walks need "a random neighbour of each of these 512 nodes" as one numpy step, which CSR
    arrays give (``indices[indptr[v] + floor(u * degree)]``). Edges added in real time go to a
    delta kept sorted by node (two arrays per side, new edges inserted after the node's earlier
    ones, so a save costs a few small inserts) that the step reads, vectorised too, for the
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
        # Delta edges by node: node ids sorted (stable: insertion order within a node), and the
        # neighbour of each.
        self._dl_node: I64 = _EMPTY
        self._dl_nbr: I64 = _EMPTY
        self._dr_node: I64 = _EMPTY
        self._dr_nbr: I64 = _EMPTY
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
        self._dl_node, self._dl_nbr = _delta_insert(self._dl_node, self._dl_nbr, left, right)
        self._dr_node, self._dr_nbr = _delta_insert(self._dr_node, self._dr_nbr, right, left)
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
        self._dl_node = self._dl_nbr = self._dr_node = self._dr_nbr = _EMPTY
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
        return _with_delta(base, self._dl_node, self._dl_nbr, node)

    def right_neighbors(self, node: int) -> I64:
        """Left nodes adjacent to right ``node``."""
        base = self._ridx[self._rptr[node] : self._rptr[node + 1]]
        return _with_delta(base, self._dr_node, self._dr_nbr, node)

    def walk_view(self) -> _WalkView:
        """The current CSR arrays and delta, for :func:`pixie_walk` (valid until a mutation)."""
        return _WalkView(
            self._lptr,
            self._lidx,
            self._dl_deg,
            self._dl_node,
            self._dl_nbr,
            self._rptr,
            self._ridx,
            self._dr_deg,
            self._dr_node,
            self._dr_nbr,
        )

    def step_left(self, nodes: I64, u: F64) -> I64:
        """One uniform random right neighbour of each left node (``-1`` where isolated)."""
        return _step(self._lptr, self._lidx, self._dl_deg, self._dl_node, self._dl_nbr, nodes, u)

    def step_right(self, nodes: I64, u: F64) -> I64:
        """One uniform random left neighbour of each right node (``-1`` where isolated)."""
        return _step(self._rptr, self._ridx, self._dr_deg, self._dr_node, self._dr_nbr, nodes, u)


@dataclass(frozen=True)
class _WalkView:
    """The arrays one walk step reads, taken together (left: pin side, right: board/user side)."""

    lptr: I64
    lidx: I64
    ldeg: I32
    lnode: I64
    lnbr: I64
    rptr: I64
    ridx: I64
    rdeg: I32
    rnode: I64
    rnbr: I64


def _csr(src: I64, dst: I64, n: int) -> tuple[I64, I64]:
    order = np.argsort(src, kind="stable")
    counts = np.bincount(src, minlength=n)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, dst[order].astype(np.int64, copy=False)


def _step(ptr: I64, idx: I64, ddeg: I32, dnode: I64, dnbr: I64, nodes: I64, u: F64) -> I64:
    lo = ptr[nodes]
    base = ptr[nodes + 1] - lo
    return _pick(idx, dnode, dnbr, nodes, lo, base, base + ddeg[nodes], u)


def _delta_insert(node: I64, nbr: I64, new_node: I64, new_nbr: I64) -> tuple[I64, I64]:
    """Insert edges into a node-sorted delta, after the earlier edges of the same node."""
    order = np.argsort(new_node, kind="stable")
    at = np.searchsorted(node, new_node[order], side="right")
    return np.insert(node, at, new_node[order]), np.insert(nbr, at, new_nbr[order])


def _with_delta(base: I64, node: I64, nbr: I64, v: int) -> I64:
    lo, hi = np.searchsorted(node, [v, v + 1])
    return np.concatenate([base, nbr[lo:hi]]) if hi > lo else base


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
    views = [g.walk_view() for g, _ in graphs]
    # Visits go to preallocated buffers; counts (int64: np.add.at is 25x slower on int32 with a
    # Python scalar) only serve the early stop, tracked incrementally as pins cross n_v.
    max_rounds = max(1, -(-int(steps) // n_w))
    vis_pin = np.empty(max_rounds * n_w, np.int64)
    vis_seed = np.empty(max_rounds * n_w, np.int64)
    counts = np.zeros(n_pins, np.int64)
    n_v = max(int(n_v), 1)
    need = n_p + len(seeds)
    hot = 0
    m = 0
    done = 0
    rounds = 0
    while done < steps:
        # One draw per walker for each decision of the round: graph, two hops, restart.
        r = rng.random((4, n_w))
        nxt = _walk_step(views, probs, cur, r)
        ok = nxt >= 0
        moved = nxt[ok]
        k = len(moved)
        vis_pin[m : m + k] = moved
        vis_seed[m : m + k] = sidx[ok]
        m += k
        before = counts[moved]
        np.add.at(counts, moved, 1)
        crossed = moved[(before < n_v) & (counts[moved] >= n_v)]
        if len(crossed):
            hot += n_distinct(crossed)
        done += n_w
        rounds += 1
        cur = np.where(~ok | (r[3] < restart), start, nxt)
        if rounds % 3 == 0 and hot >= need:
            break
    pins = vis_pin[:m]
    owner = vis_seed[:m]
    seed_mask = np.zeros(n_pins, bool)
    seed_mask[seeds] = True
    keep = ~seed_mask[pins]
    pins, owner = pins[keep], owner[keep]
    if not len(pins):
        return WalkResult(_EMPTY, np.zeros(0), _EMPTY, done)
    n_seeds = len(seeds)
    if n_seeds == 1:
        # One seed: the boosted score is the visit count itself.
        rows = unique_sorted(pins)
        score = counts[rows].astype(np.float64)
        best_seed = np.zeros(len(rows), np.int64)
    else:
        # Visits per (pin, seed), sorted by pin then seed, so pins come out grouped and sorted.
        ukey, c = np.unique(pins * np.int64(n_seeds) + owner, return_counts=True)
        upin = ukey // n_seeds
        useed = ukey % n_seeds
        first = np.flatnonzero(np.concatenate([[True], upin[1:] != upin[:-1]]))
        rows = upin[first]
        score = np.add.reduceat(np.sqrt(c.astype(np.float64)), first) ** 2
        # The seed that contributed most visits to each pin (the last one on ties), for
        # "because you saved ..." reasons.
        size = np.diff(np.concatenate([first, [len(upin)]]))
        top_c = np.repeat(np.maximum.reduceat(c, first), size)
        at = np.where(c == top_c, np.arange(len(c)), -1)
        best_seed = useed[np.maximum.reduceat(at, first)]
    pick = np.lexsort((rows, -score))[:top]
    return WalkResult(rows[pick], score[pick], best_seed[pick], done)


def _walk_step(views: list[_WalkView], probs: F64, cur: I64, r: F64) -> I64:
    """Move every walker two hops (pin -> board or user -> pin); ``-1`` where it cannot move.

    A walker chooses among the graphs in which its pin has edges (so a pin known only by its
    board, with no engagement yet, still walks instead of restarting), with probability
    ``probs``, using ``r[0]``; the hops use ``r[1]`` and ``r[2]``.
    """
    n_w = len(cur)
    out = np.full(n_w, -1, np.int64)
    lows: list[I64] = []
    bases: list[I64] = []
    degs: list[I64] = []
    for v in views:
        lo = v.lptr[cur]
        base = v.lptr[cur + 1] - lo
        lows.append(lo)
        bases.append(base)
        degs.append(base + v.ldeg[cur])
    if len(views) == 1:
        groups = [np.flatnonzero(degs[0] > 0)]
    elif len(views) == 2:
        has0 = degs[0] > 0
        has1 = degs[1] > 0
        second = has1 & (~has0 | (r[0] >= probs[0]))
        groups = [np.flatnonzero(has0 & ~second), np.flatnonzero(second)]
    else:
        weight = np.stack([d > 0 for d in degs]) * probs[:, None]
        total = weight.sum(axis=0)
        choice = (np.cumsum(weight, axis=0) <= (r[0] * total)[None, :]).sum(axis=0)
        choice = np.minimum(choice, len(views) - 1)
        valid = total > 0
        groups = [np.flatnonzero(valid & (choice == gi)) for gi in range(len(views))]
    for v, sel, lo, base, deg in zip(views, groups, lows, bases, degs, strict=True):
        if not len(sel):
            continue
        nodes = cur[sel]
        mid = _pick(v.lidx, v.lnode, v.lnbr, nodes, lo[sel], base[sel], deg[sel], r[1][sel])
        rlo = v.rptr[mid]
        rbase = v.rptr[mid + 1] - rlo
        rdeg = rbase + v.rdeg[mid]
        out[sel] = _pick(v.ridx, v.rnode, v.rnbr, mid, rlo, rbase, rdeg, r[2][sel])
    return out


def _pick(idx: I64, dnode: I64, dnbr: I64, nodes: I64, lo: I64, base: I64, deg: I64, u: F64) -> I64:
    """A uniform neighbour of each node: CSR edges ``idx[lo:lo + base]``, then its delta edges.

    ``-1`` for nodes of degree 0.
    """
    pick = (u * deg).astype(np.int64)
    in_csr = pick < base
    if in_csr.all():
        out: I64 = idx[lo + pick]
        return out
    out = np.full(len(nodes), -1, np.int64)
    out[in_csr] = idx[lo[in_csr] + pick[in_csr]]
    # Walkers whose draw lands on an edge added since the last compaction.
    d = np.flatnonzero(~in_csr & (deg > 0))
    if len(d):
        out[d] = dnbr[np.searchsorted(dnode, nodes[d]) + (pick[d] - base[d])]
    return out
