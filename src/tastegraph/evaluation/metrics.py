"""Ranking metrics (pure)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["average_precision_at_k", "precision_at_k", "recall_at_k"]


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Share of the first ``k`` results that are relevant (missing results count as misses).

    >>> precision_at_k([True, False, True], 2)
    0.5
    """
    return sum(bool(r) for r in relevant[:k]) / k


def average_precision_at_k(relevant: Sequence[bool], n_relevant: int, k: int = 10) -> float:
    """AP@k normalised by ``min(k, n_relevant)``, the usual retrieval definition.

    >>> average_precision_at_k([True, False, True], n_relevant=2, k=10)
    0.8333333333333333
    """
    if n_relevant <= 0:
        return 0.0
    hits = 0
    total = 0.0
    for i, r in enumerate(relevant[:k]):
        if r:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, n_relevant)


def recall_at_k(rank: int | None, k: int) -> float:
    """1 when the single relevant item is at 0-based ``rank`` < ``k``, else 0.

    >>> recall_at_k(3, 5), recall_at_k(None, 5)
    (1.0, 0.0)
    """
    return 1.0 if rank is not None and rank < k else 0.0
