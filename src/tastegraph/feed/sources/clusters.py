"""Clusters of pin vectors: coarse catalog clusters and a user's interests.

- :func:`kmeans`: spherical k-means, used for coarse catalog clusters (diverse exploration) and by
  the simulator to find the catalog's visual clusters.
- :func:`cluster_history`: PinnerSage-style interest clusters of a user's engaged pins (Ward
  linkage on image vectors, one medoid per cluster).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["cluster_history", "kmeans"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

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
