"""Rank fusion (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tastegraph.domain import Hit

__all__ = ["reciprocal_rank_fusion"]


def reciprocal_rank_fusion(
    lists: Mapping[str, Sequence[tuple[int, float]]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[Hit]:
    """Fuse ranked lists by reciprocal rank (Cormack et al. 2009).

    Parameters
    ----------
    lists
        ``signal name -> [(pin_id, raw score), ...]`` each sorted best first.
    k
        Damping constant; 60 is the value from the paper and works without tuning.
    weights
        Optional per-signal weight (default 1).

    Returns
    -------
    list of Hit
        Sorted by fused score; each hit keeps the raw score of every signal that found it.

    Examples
    --------
    >>> hits = reciprocal_rank_fusion({"a": [(1, 9.0), (2, 5.0)], "b": [(2, 0.8)]})
    >>> [h.pin_id for h in hits]
    [2, 1]
    """
    fused: dict[int, Hit] = {}
    for name, ranked in lists.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, (pin_id, raw) in enumerate(ranked):
            hit = fused.setdefault(pin_id, Hit(pin_id, 0.0, {}))
            hit.score += w / (k + rank + 1)
            hit.signals[name] = round(float(raw), 4)
    return sorted(fused.values(), key=lambda h: (-h.score, h.pin_id))
