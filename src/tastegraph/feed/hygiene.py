"""Event hygiene for the feed engine: what a stored event must look like to be used.

Events reach the engine from the store, which holds whatever was ever written to it: rows from
older versions that parsed less strictly, rows written by other tools, ids SQLite kept as REAL
or TEXT because they did not fit its integer type. One such row used to stop the engine from
building (and so every user's feed) for good. Here each column is converted on its own and
every row that cannot be used is dropped and counted by reason; the rest goes on.

- :func:`int_column`, :func:`float_column`: store values to numpy columns, with a mask of the
  rows whose value was usable (a fast path for the usual clean column).
- :func:`usable`: the rows of an :class:`~tastegraph.feed.data.EventBatch` the engine can use
  (finite times inside the window, sane dwell and position), with counts of the others.
- :class:`SkipCounter`: counts by reason, merged across batches, for logs and ``/ready``.

Example
-------
>>> col, ok = int_column([3, "abc", 2.0, 10**30, None])
>>> col.tolist(), ok.tolist()
([3, 0, 2, 0, 0], [True, False, True, False, False])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "INT32_MAX",
    "REASONS",
    "SkipCounter",
    "float_column",
    "int_column",
    "usable",
]

BOOL = NDArray[np.bool_]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

INT32_MAX = 2**31 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

# Why a stored event was not used, in the words the report and /ready show.
REASONS = {
    "bad_user": "user id is not a 64-bit integer",
    "bad_pin": "pin id is not a 64-bit integer",
    "bad_kind": "unknown event kind",
    "bad_time": "time is not a finite epoch-seconds value inside the accepted window",
    "future_time": "time is further ahead of the server's clock than allowed",
    "bad_dwell": "dwell is not a finite non-negative number of milliseconds",
    "bad_position": "position is not a small non-negative integer",
    "unknown_pin": "pin is not in the catalog",
}


class SkipCounter(Counter[str]):
    """Skipped events by reason (keys of :data:`REASONS`)."""

    def add_mask(self, reason: str, bad: BOOL) -> None:
        n = int(np.count_nonzero(bad))
        if n:
            self[reason] += n

    def summary(self) -> str:
        """``"3 events skipped: 2 bad_time, 1 bad_pin"`` (empty when nothing was skipped)."""
        total = sum(self.values())
        if not total:
            return ""
        parts = ", ".join(f"{n} {r}" for r, n in self.most_common())
        return f"{total} events skipped: {parts}"


def _as_int(x: Any) -> int | None:
    # bool is an int subclass but never an id; a REAL that holds an integer is accepted since
    # SQLite may hand one back for an INTEGER column.
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x if _I64_MIN <= x <= _I64_MAX else None
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return int(x) if -(2.0**63) <= x < 2.0**63 else None
    return None


def int_column(values: Sequence[Any]) -> tuple[I64, BOOL]:
    """Store values as int64 (0 where unusable) and the mask of usable ones."""
    n = len(values)
    if all(type(x) is int for x in values):
        try:
            return np.array(values, np.int64).reshape(n), np.ones(n, bool)
        except OverflowError:
            pass  # some id beyond 64 bits: convert one by one below
    conv = [_as_int(x) for x in values]
    ok = np.fromiter((c is not None for c in conv), bool, n)
    return np.fromiter((0 if c is None else c for c in conv), np.int64, n), ok


def float_column(values: Sequence[Any], default: float = math.nan) -> F64:
    """Store values as float64; None becomes ``default``; anything not a number becomes NaN."""
    n = len(values)
    if all(type(x) is float or type(x) is int for x in values):
        try:
            return np.array(values, np.float64).reshape(n)
        except OverflowError:
            pass  # an int too large for a float
    out = np.empty(n, np.float64)
    for i, x in enumerate(values):
        if x is None:
            out[i] = default
        elif isinstance(x, int | float) and not isinstance(x, bool):
            try:
                out[i] = float(x)
            except OverflowError:
                out[i] = math.nan
        else:
            out[i] = math.nan
    return out


def usable(
    ts: F64,
    dwell_ms: NDArray[np.floating[Any]],
    position: NDArray[np.integer[Any]],
    *,
    ts_min: float,
    ts_max: float,
    now: float | None,
    max_future_s: float,
    skipped: SkipCounter,
) -> BOOL:
    """Rows whose time, dwell and position the engine can use; the others counted by reason.

    Times must be finite and within ``[ts_min, ts_max]``; when the caller knows the clock
    (``now``), no more than ``max_future_s`` ahead of it: one click dated 2099 would otherwise
    outweigh every real engagement in the decayed popularity for as long as the log is kept.
    """
    ts = np.asarray(ts, np.float64)
    with np.errstate(invalid="ignore"):
        bad_time = ~np.isfinite(ts) | (ts < ts_min) | (ts > ts_max)
        future = (
            ~bad_time & (ts > now + max_future_s) if now is not None else np.zeros_like(bad_time)
        )
        d = np.asarray(dwell_ms, np.float64)
        bad_dwell = ~(np.isfinite(d) & (d >= 0))
    pos = np.asarray(position)
    bad_pos = (pos < -1) | (pos > INT32_MAX)
    skipped.add_mask("bad_time", bad_time)
    skipped.add_mask("future_time", future)
    rest = ~(bad_time | future)
    skipped.add_mask("bad_dwell", rest & bad_dwell)
    rest &= ~bad_dwell
    skipped.add_mask("bad_position", rest & bad_pos)
    return np.asarray(rest & ~bad_pos)
