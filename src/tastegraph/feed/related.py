"""Related pins: visual neighbours fused with walks and co-engagement (reciprocal-rank fusion)."""

from __future__ import annotations

import numpy as np

from tastegraph.feed import reasons
from tastegraph.feed.blend import rrf
from tastegraph.feed.catalog import PinCatalog
from tastegraph.feed.data import FeedItem, FeedParams
from tastegraph.feed.sources.walks import pixie_walk
from tastegraph.feed.state import EngagementState
from tastegraph.index import VectorIndex

__all__ = ["related_items"]


def related_items(
    p: FeedParams,
    cat: PinCatalog,
    state: EngagementState,
    index: VectorIndex,
    row: int,
    n: int,
    rng: np.random.Generator,
) -> list[FeedItem]:
    """Up to ``n`` pins related to the pin at ``row``, best first.

    Near-duplicates of the pin (same ``dup_group``) and the pin itself never appear; among the
    results only the best of each duplicate group is kept; blocked pins are dropped.
    """
    pin = int(cat.ids[row])
    k = min(cat.n, 3 * n + 20)
    _, ids = index.search(cat.vec[row : row + 1], k)
    vis = cat.rows_of(ids[0][ids[0] >= 0])
    vis = vis[(vis >= 0) & (vis != row)]
    walk = pixie_walk(
        [(state.pin_board, p.walk_board_prob), (state.pin_user, 1.0 - p.walk_board_prob)],
        np.array([row], np.int64),
        np.ones(1),
        cat.n,
        rng,
        steps=p.related_walk_steps,
        walkers=512,
        restart=p.walk_restart,
        n_p=max(2 * n, 50),
        n_v=p.walk_n_v,
        top=3 * n + 20,
    ).rows
    cf_m = state.cf
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
    group = int(cat.dup[row])
    used_groups: set[int] = set()
    words = cat.words(row)
    out: list[FeedItem] = []
    for r in order:
        if r == row or cat.blocked[r]:
            continue
        g = int(cat.dup[r])
        if g >= 0:
            if g == group or g in used_groups:
                continue
            used_groups.add(g)
        is_visual = r in visual
        reason = reasons.related_reason(*words, visual=is_visual, co_saved=r in co)
        src = "visual" if is_visual else "walk" if r in walked else "cf"
        out.append(FeedItem(int(cat.ids[r]), float(fused[r]), reason, src, pin))
        if len(out) >= n:
            break
    return out
