"""Query-time re-ranking of image search candidates by database-side augmentation (DBA).

Database-side augmentation replaces every catalog vector by the alpha-weighted mean of itself and
its nearest catalog neighbours, so a vector describes its neighbourhood rather than one photo; the
query is then alpha-expanded (alpha-QE) with the augmented vectors of its best candidates and the
candidates are re-scored against it. Done for the whole catalog it is an index-time step; here it
is done lazily for the few candidates of one query only (their neighbours come from one batched
search), which gives the same ranking without rewriting stored vectors and keeps query vectors
(uploads, crops) and catalog vectors in one space.

On the clothing set (each labelled image queries the others, ``bench/eval_quality_push.py``) it
lifts mAP@10 over plain alpha-QE on both halves split by contributor. Alternatives tried there and
rejected: k-reciprocal / neighbour-set Jaccard re-ranking and diffusion over the candidate graph
(both below plain search), and augmentation using only neighbours inside the candidate pool.

Example
-------
>>> rng = np.random.default_rng(0)
>>> cand = l2_rows(rng.normal(size=(5, 8)).astype(np.float32))
>>> q = l2_rows(cand[:1] + 0.1)
>>> neigh = np.repeat(cand[None], 5, axis=0)          # each candidate's catalog neighbours
>>> nsc = np.einsum("kd,knd->kn", cand, neigh)
>>> nids = np.tile(np.arange(5), (5, 1))
>>> scores = dba_rerank(q[0], cand, np.arange(5), neigh, nids, nsc, k=2)
>>> int(np.argmax(scores))
0
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import InvalidInput
from tastegraph.models.whiten import expand_queries, l2_normalize

__all__ = ["SAME_PHOTO_COSINE", "augment", "dba_rerank", "l2_rows", "same_photo_first"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

# Cosine (index space) at and above which a candidate is the query's own photo, re-encoded or
# lightly edited: a bf16 re-encode of the same file scores >= 0.998, while among 3,809 clothing
# photos only 2 distinct ones have a neighbour this close (PCA 256, EfficientNet-Lite2).
SAME_PHOTO_COSINE = 0.97


def l2_rows(x: ArrayLike) -> F32:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32.

    Parameters
    ----------
    x : array_like, shape (N, D)

    Returns
    -------
    numpy.ndarray, float32, shape (N, D)

    Examples
    --------
    >>> l2_rows([[3.0, 4.0]])
    array([[0.6, 0.8]], dtype=float32)
    """
    return l2_normalize(x)


def augment(
    vecs: ArrayLike,
    neighbour_vecs: ArrayLike,
    neighbour_scores: ArrayLike,
    *,
    alpha: float = 3.0,
    k: int = 10,
) -> F32:
    """Database-side augmentation: ``normalize(v + sum_{j<k} max(s_j, 0) ** alpha * n_j)``.

    Parameters
    ----------
    vecs : array_like, shape (K, D)
        Unit vectors to augment.
    neighbour_vecs : array_like, shape (K, M, D)
        Each vector's nearest neighbours, best first, itself NOT among them (M >= k is fine).
    neighbour_scores : array_like, shape (K, M)
        Their cosine similarities to the vector; ``-inf``/negative entries get weight 0.
    alpha : float
        Weight exponent: close neighbours count fully, marginal ones hardly at all.
    k : int
        Neighbours used per vector.

    Returns
    -------
    numpy.ndarray, float32, shape (K, D)
        Unit vectors.

    Examples
    --------
    >>> augment([[1.0, 0.0]], [[[0.0, 1.0]]], [[1.0]], k=1).round(3)
    array([[0.707, 0.707]], dtype=float32)
    """
    # The same weighted average as alpha query expansion, applied to catalog vectors.
    return expand_queries(vecs, neighbour_vecs, neighbour_scores, alpha=alpha, k=k)


def dba_rerank(
    query: ArrayLike,
    cand_vecs: ArrayLike,
    cand_ids: ArrayLike,
    neighbour_vecs: ArrayLike,
    neighbour_ids: ArrayLike,
    neighbour_scores: ArrayLike,
    *,
    alpha: float = 3.0,
    k: int = 10,
    query_k: int = 10,
) -> F32:
    """New scores for a query's candidates: augmented candidates vs the alpha-expanded query.

    1. Each candidate ``c`` is augmented with its ``k`` nearest catalog neighbours (itself
       dropped by id), see :func:`augment`; the query likewise with its ``k`` best candidates.
    2. The augmented query is alpha-expanded with the ``query_k`` augmented candidates most
       similar to it:
       ``q' = normalize(q + sum max(q . c', 0) ** alpha * c')``.
    3. Score of ``c`` = ``q' . c'``. Sort candidates by it, best first.

    Parameters
    ----------
    query : array_like, shape (D,) or (1, D)
        The query, a unit vector in index space.
    cand_vecs : array_like, shape (K, D)
        The query's candidates (e.g. its top 100 from the index), unit vectors.
    cand_ids : array_like, shape (K,)
        Their ids (used only to drop each candidate from its own neighbour list).
    neighbour_vecs : array_like, shape (K, M, D)
        Each candidate's nearest catalog vectors, best first, e.g. ``index.search(cand_vecs,
        k + 1)`` then ``index.get``; may contain the candidate itself. Padding rows (id < 0)
        are ignored.
    neighbour_ids : array_like, shape (K, M)
        Their ids (``-1`` for padding).
    neighbour_scores : array_like, shape (K, M)
        Their cosine similarities to the candidate.
    alpha : float
        Weight exponent for augmentation and expansion.
    k : int
        Neighbours per candidate for augmentation.
    query_k : int
        Augmented candidates averaged into the query.

    Returns
    -------
    numpy.ndarray, float32, shape (K,)
        New similarity scores in [-1, 1], aligned with ``cand_vecs``.

    Examples
    --------
    >>> c = np.eye(3, dtype=np.float32)
    >>> nv = np.stack([c[[1, 2]], c[[0, 2]], c[[0, 1]]])
    >>> nid = np.array([[1, 2], [0, 2], [0, 1]])
    >>> dba_rerank(c[0], c, [0, 1, 2], nv, nid, np.zeros((3, 2)), k=1).round(2)
    array([1., 0., 0.], dtype=float32)
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    cv = np.asarray(cand_vecs, dtype=np.float32)
    cid = np.asarray(cand_ids, dtype=np.int64).reshape(-1)
    nid = np.asarray(neighbour_ids, dtype=np.int64)
    ns = np.array(neighbour_scores, dtype=np.float32)  # a copy: masked below
    if cv.ndim != 2 or cv.shape[1] != q.shape[0] or cid.shape[0] != cv.shape[0]:
        raise InvalidInput(
            f"shape mismatch: query {q.shape}, candidates {cv.shape}, ids {cid.shape}"
        )
    if nid.shape != ns.shape or nid.ndim != 2 or nid.shape[0] != cv.shape[0]:
        raise InvalidInput(f"shape mismatch: neighbour ids {nid.shape}, scores {ns.shape}")
    if cv.shape[0] == 0:
        return np.zeros(0, np.float32)
    # Drop self-matches and padding by giving them weight 0, then move the kept ones first.
    bad = (nid == cid[:, None]) | (nid < 0)
    ns[bad] = -np.inf
    order = np.argsort(-ns, axis=1, kind="stable")
    nv = np.take_along_axis(np.asarray(neighbour_vecs, dtype=np.float32), order[:, :, None], 1)
    aug = augment(cv, nv, np.take_along_axis(ns, order, 1), alpha=alpha, k=k)
    # The query gets the same augmentation from its own nearest candidates (alpha-QE).
    raw = cv @ q
    near = np.argsort(-raw, kind="stable")[:k]
    q = augment(q[None], cv[near][None], raw[near][None], alpha=alpha, k=k)[0]
    s = aug @ q
    top = np.argsort(-s, kind="stable")[: max(query_k, 0)]
    w = np.power(np.clip(s[top], 0.0, None), alpha)
    q2 = l2_rows((q + w @ aug[top])[None])[0]
    out: F32 = (aug @ q2).astype(np.float32)
    return out


def same_photo_first(
    raw: ArrayLike, reranked: ArrayLike, threshold: float = SAME_PHOTO_COSINE
) -> tuple[I64, F32]:
    """Order candidates: the query's own photo first, then by re-ranked score.

    Re-ranking scores a candidate by its neighbourhood, which is what finds more of the same
    kind; but a catalog photo uploaded as the query should come back first, and the
    neighbourhood of a typical photo can outscore it (on a 56-photo catalog, 18-36% of the
    photos did not find themselves first). Candidates whose plain cosine to the query is at
    least ``threshold`` keep the top places, by that cosine, and report it as their score; the
    others follow by ``reranked``, their scores capped so that the list stays descending.

    Parameters
    ----------
    raw : array_like, shape (K,)
        Each candidate's cosine to the query.
    reranked : array_like, shape (K,)
        Each candidate's re-ranked score (e.g. :func:`dba_rerank`).
    threshold : float
        Plain cosine at which a candidate counts as the query's own photo.

    Returns
    -------
    (order, scores) : candidate positions best first, and their scores in that order.

    Examples
    --------
    >>> order, scores = same_photo_first([0.5, 0.99, 0.7], [0.9, 0.8, 0.95])
    >>> order.tolist(), [round(float(v), 2) for v in scores]
    ([1, 2, 0], [0.99, 0.95, 0.9])
    """
    r = np.asarray(raw, dtype=np.float32).reshape(-1)
    new = np.asarray(reranked, dtype=np.float32).reshape(-1)
    if r.shape != new.shape:
        raise InvalidInput(f"shape mismatch: raw {r.shape}, reranked {new.shape}")
    same = r >= threshold
    key = np.where(same, r, new)
    order = np.lexsort((-key, ~same)).astype(np.int64)  # same photo first, then by key
    scores = key[order]
    if same.any():
        scores[~same[order]] = np.minimum(scores[~same[order]], r[same].min())
    return order, scores.astype(np.float32)
