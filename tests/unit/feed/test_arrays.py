"""The serving path's array helpers give numpy's results exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tastegraph.feed.arrays import n_distinct, unique_sorted


@pytest.mark.parametrize("n", [0, 1, 2, 7, 300, 5000])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64])
def test_unique_sorted_and_n_distinct_match_numpy(n: int, dtype: type) -> None:
    rng = np.random.default_rng(n)
    a = rng.integers(-50, max(n, 1) * 3, n).astype(dtype)
    want = np.unique(a)
    got = unique_sorted(a)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)
    assert n_distinct(a) == len(want)


def test_helpers_do_not_modify_their_input() -> None:
    a = np.array([5, 3, 5, 1], np.int64)
    unique_sorted(a)
    n_distinct(a)
    assert a.tolist() == [5, 3, 5, 1]
