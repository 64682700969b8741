"""Item-item co-engagement (the ``cf`` source): neighbours fitted from the log, and the
candidates of a user's seed pins."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["cf_candidates", "item_item_cf"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


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


def cf_candidates(cf: sp.csr_matrix, seeds: I64, weights: F64, n: int) -> tuple[I64, F64, I64]:
    """The ``n`` best co-engaged pins of ``seeds``: rows, summed weighted scores, best seed row.

    Each candidate scores the sum over seeds of ``weight * similarity``; it is attributed to the
    seed that contributed most (for its reason).
    """
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
