"""Item-item cosine neighbours: the ``itemknn`` peer and the similarity it is built on."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastegraph.evaluation.recs.models.base import F32, I64, Recommender

__all__ = ["ItemKNN", "cosine_topk"]


def cosine_topk(M: sp.csr_matrix, k: int, shrink: float = 0.0) -> sp.csr_matrix:
    """Item-item cosine similarity over the rows of ``M`` (rows x items), top ``k`` per column.

    Parameters
    ----------
    M
        Binary rows x items matrix (rows are users, or sessions).
    k
        Neighbours kept per item (``0`` keeps all).
    shrink
        Added to the norm product; damps similarities resting on few co-occurrences.

    Returns
    -------
    scipy.sparse.csr_matrix
        items x items, ``S[j, i]`` = similarity of ``i`` to ``j`` among ``i``'s ``k`` nearest
        neighbours, zero diagonal; ``profile @ S`` scores items from a user's items.
    """
    Mc = sp.csc_matrix(M, dtype=np.float32)
    norms = np.sqrt(np.asarray(Mc.multiply(Mc).sum(axis=0)).ravel()).astype(np.float32)
    n_items = M.shape[1]
    blocks = []
    step = 1024  # columns per block keeps the dense intermediate at n_items x 1024
    MT = Mc.T.tocsr()
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        co = (MT @ Mc[:, start:stop]).toarray()  # n_items x block
        denom = np.outer(norms, norms[start:stop]) + shrink + 1e-12
        sim = (co / denom).astype(np.float32)
        sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
        if 0 < k < n_items:
            drop = np.argpartition(-sim, k, axis=0)[k:]
            np.put_along_axis(sim, drop, 0.0, axis=0)
        blocks.append(sp.csc_matrix(sim))
    S = sp.hstack(blocks, format="csr") if blocks else sp.csr_matrix((n_items, n_items))
    S.eliminate_zeros()
    return S.astype(np.float32)


class ItemKNN(Recommender):
    """Item-based nearest neighbours with cosine similarity (Sarwar et al. 2001).

    Parameters
    ----------
    k
        Neighbours kept per item.
    shrink
        Shrinkage added to the cosine denominator.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=np.float32))
    >>> items, _ = ItemKNN(k=2).fit(X).recommend([2], n=1)  # user 2 took items 1 and 2
    >>> int(items[0, 0])
    0
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        self.k = k
        self.shrink = shrink

    def _fit(self, X: sp.csr_matrix, T: sp.csr_matrix | None) -> None:
        self.similarity_ = cosine_topk(X, int(self.k), float(self.shrink))

    def _score_rows(self, users: I64) -> F32:
        return np.asarray((self.seen_[users] @ self.similarity_).toarray(), dtype=np.float32)
