"""Near-duplicate grouping by perceptual hash (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["group_near_duplicates", "groups_touching"]


def group_near_duplicates(
    ids: NDArray[np.int64],
    hashes: NDArray[np.uint64],
    new_ids: NDArray[np.int64] | None = None,
    max_distance: int = 6,
    chunk: int = 2048,
    existing: dict[int, int] | None = None,
) -> dict[int, int]:
    """Group pins whose 64-bit perceptual hashes differ in at most ``max_distance`` bits.

    Parameters
    ----------
    ids, hashes
        Every pin id and its pHash.
    new_ids
        Only pairs involving one of these are compared (incremental ingest); all when None.
        Compares ``len(new_ids) x len(ids)`` pairs with a vectorised popcount.
    max_distance
        Largest Hamming distance that still counts as the same picture (resized, recompressed,
        lightly edited copies are typically within 6 of 64 bits; distinct photos rarely are).

    Returns
    -------
    dict
        ``pin_id -> group id`` for every pin in a group of two or more; the group id is the
        smallest pin id of its group (stable across runs).
    existing
        Groups found by earlier runs (``pin_id -> group id``), kept and merged with new links.

    Examples
    --------
    >>> ids = np.array([1, 2, 3]); h = np.array([0, 1, 2**63 - 1], np.uint64)
    >>> group_near_duplicates(ids, h)
    {1: 1, 2: 1}
    """
    n = len(ids)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    if existing:
        pos = {int(p): i for i, p in enumerate(ids.tolist())}
        first: dict[int, int] = {}
        for pin, g in existing.items():
            if pin in pos:
                i = pos[pin]
                j = first.setdefault(g, i)
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    rows = np.arange(n) if new_ids is None else np.nonzero(np.isin(ids, new_ids))[0]
    for start in range(0, len(rows), chunk):
        r = rows[start : start + chunk]
        dist = np.bitwise_count(hashes[r, None] ^ hashes[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        for a, b in zip(r[ii].tolist(), jj.tolist(), strict=False):
            if a != b:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)]) if n else np.zeros(0, int)
    counts = np.bincount(roots, minlength=n) if n else np.zeros(0, int)
    out: dict[int, int] = {}
    for i in range(n):
        if counts[roots[i]] > 1:
            out[int(ids[i])] = int(ids[roots[i]])
    # Group id = smallest pin id in the group, whatever order pins arrived in.
    smallest: dict[int, int] = {}
    for pin, g in out.items():
        smallest[g] = min(smallest.get(g, pin), pin)
    return {pin: smallest[g] for pin, g in out.items()}


def groups_touching(groups: Mapping[int, Sequence[int]], ids: Iterable[int]) -> int:
    """How many of ``groups`` (group id -> members) hold at least one of ``ids``.

    >>> groups_touching({1: [1, 2], 5: [5, 9]}, [2, 3])
    1
    """
    wanted = set(ids)
    return sum(1 for members in groups.values() if wanted.intersection(members))
