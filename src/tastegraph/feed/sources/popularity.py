"""Recency-decayed popularity per pin with an incrementally maintained top list (the
``popular`` source and the ``log_pop`` feature)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["Popularity"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_EMPTY = np.zeros(0, np.int64)
_MAX_LOG2 = 1000.0  # largest power of two a decayed score may reach (finite in float64)


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
        w = np.asarray(weights, np.float64)
        ok = np.isfinite(ts) & np.isfinite(w)
        if not ok.all():  # callers filter times; a non-finite one must still not poison ref
            rows, ts, w = np.asarray(rows)[ok], ts[ok], w[ok]
            if not len(rows):
                return
        if self.t0 is None:
            self.t0 = float(ts.min())
        expo = (ts - self.t0) / self.half_life
        if float(expo.max()) > self._REBASE:
            shift = float(expo.max()) - 1.0
            self.ref *= 2.0 ** (-shift)
            self.t0 += shift * self.half_life
            expo = expo - shift
        np.add.at(self.ref, rows, w * np.exp2(np.minimum(expo, _MAX_LOG2)))
        self.version += 1
        if self._stale or len(rows) > self.keep:
            self._stale = True
        else:
            self._pending.update(np.unique(rows).tolist())

    def score(self, rows: I64, now: float) -> F64:
        """Decayed popularity of ``rows`` at ``now``."""
        if self.t0 is None:
            return np.zeros(len(rows))
        # In log space: ``now`` may lie any distance from t0 (a stored time far from the
        # clock, a replay of an old log), and 2 ** gap overflowed a Python float.
        gap = -(float(now) - self.t0) / self.half_life
        with np.errstate(divide="ignore"):
            log2 = np.log2(self.ref[rows]) + gap
        return np.asarray(np.exp2(np.minimum(log2, _MAX_LOG2)), np.float64)

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
