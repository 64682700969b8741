"""Input validation and the id map shared by the vector-index backends."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import IndexMismatch, InvalidInput, NotFound
from tastegraph.index.base import F32, I64, REINDEX_HINT

__all__ = ["IdMap", "as_ids", "as_vectors", "check_k", "dedupe_last", "padded"]

# --------------------------------------------------------------------------------------------
# Input validation shared by the backends


def as_ids(ids: ArrayLike, what: str = "ids") -> I64:
    """Validate ids: a 1-D array of non-negative integers (``-1`` is the padding marker)."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidInput(f"{what} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidInput(f"{what} must be integers, got dtype {arr.dtype}")
    if (
        arr.dtype.kind == "u"
        and arr.dtype.itemsize == 8
        and int(arr.max()) > np.iinfo(np.int64).max
    ):
        raise InvalidInput(f"{what} must fit in int64")
    out = arr.astype(np.int64, copy=False)
    if int(out.min()) < 0:
        raise InvalidInput(f"{what} must be non-negative (-1 marks padding in results)")
    return out


def as_vectors(vecs: ArrayLike, dim: int, what: str = "vectors") -> F32:
    """Validate and L2-normalise vectors to a C-contiguous ``(N, dim)`` float32 array (a copy)."""
    if type(vecs) is np.ndarray and vecs.dtype == np.float32 and vecs.shape[-1:] == (dim,):
        # The common case, kept to a few numpy calls: each costs ~1 us, a query ~50-300 us.
        if vecs.ndim > 2:
            raise InvalidInput(f"{what} must be a 2-D array (N, dim), got shape {vecs.shape}")
        if vecs.size == dim:
            # One query: scaling into a new array is the copy, so the row is written once.
            row = vecs.reshape(1, dim)
            sq1 = float(np.dot(row[0], row[0]))
            if math.isfinite(sq1):
                # Zero vectors stay zero rather than becoming NaN.
                # A Python float scales float32 without promotion, and ufunc outputs of a
                # (1, dim) array are C-contiguous whatever the input strides.
                return cast(F32, row * (1.0 / math.sqrt(sq1) if sq1 > 0 else 1.0))
        out = vecs.reshape(-1, dim).copy()
    else:
        arr = np.asarray(vecs)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise InvalidInput(f"{what} must be a 2-D array (N, dim), got shape {arr.shape}")
        if arr.dtype.kind not in "fiu":
            raise InvalidInput(f"{what} must be numeric, got dtype {arr.dtype}")
        if arr.shape[1] != dim:
            raise IndexMismatch(
                f"{what} have dimension {arr.shape[1]}, the index holds dimension {dim}",
                hint="the encoder and the index disagree; " + REINDEX_HINT,
                expected_dim=dim,
                got_dim=int(arr.shape[1]),
            )
        out = np.array(arr, dtype=np.float32, order="C", copy=True)
    if len(out) == 1:
        sq1 = float(out[0] @ out[0])
        if math.isfinite(sq1):
            # Zero vectors stay zero rather than becoming NaN.
            if sq1 > 0:
                out *= np.float32(1.0 / math.sqrt(sq1))
            return out
    sq = np.einsum("ij,ij->i", out, out)
    # A NaN or inf anywhere makes its row's squared norm non-finite: one pass checks both.
    if not np.isfinite(sq).all():
        if not np.isfinite(out).all():
            raise InvalidInput(f"{what} contain NaN or infinite values")
        sq = np.einsum("ij,ij->i", out, out, dtype=np.float64).astype(np.float32)  # overflow
    # Zero vectors stay zero (0 / tiny) rather than becoming NaN.
    out /= np.maximum(np.sqrt(sq), np.float32(1e-30))[:, None]
    return out


def check_k(k: int) -> int:
    if type(k) is int and k >= 1:
        return k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
    return int(k)


def dedupe_last(ids: I64) -> NDArray[np.intp]:
    """Positions of the last occurrence of each distinct id, in first-appearance order of those."""
    if len(ids) < 2:
        return np.arange(len(ids))
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_in_reversed)


def padded(m: int, k: int) -> tuple[F32, I64]:
    return np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)


# --------------------------------------------------------------------------------------------
# Id map


class IdMap:
    """External id -> internal slot, vectorised for numpy arrays of ids.

    Store ids are usually dense autoincrement integers, so ids below a bound proportional to the
    number of entries live in a flat int32 table (4 bytes a slot, O(1) vectorised lookups); sparse
    ids (hashes, huge values) fall back to a dict. A Python dict alone costs ~100 bytes an entry
    and a Python-level loop per lookup, which is what a 1M-id ``allow`` filter cannot afford.
    """

    _DENSE_MIN = 1 << 16  # the table may always grow to this many slots
    _DENSE_FACTOR = 4  # ... or to this many times the number of entries

    def __init__(self) -> None:
        self._table = np.full(0, -1, np.int32)
        self._sparse: dict[int, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def nbytes(self) -> int:
        """Approximate memory held: the table plus ~100 bytes per dict entry."""
        return int(self._table.nbytes + 100 * len(self._sparse))

    def lookup(self, ids: I64) -> I64:
        """Slots of ``ids`` (``-1`` where absent)."""
        if len(ids) <= 4:
            # "Exclude the query's own pin" is one id per search: plain Python is cheaper.
            size, table, get = len(self._table), self._table, self._sparse.get
            return np.array(
                [int(table[i]) if i < size else get(i, -1) for i in ids.tolist()], np.int64
            )
        out = np.full(len(ids), -1, np.int64)
        dense = ids < len(self._table)
        out[dense] = self._table[ids[dense]]
        if self._sparse and not dense.all():
            get = self._sparse.get
            where = np.flatnonzero(~dense)
            out[where] = [get(i, -1) for i in ids[where].tolist()]
        return out

    def slots_of(self, ids: I64, space: str) -> I64:
        """Slots of ``ids``, every one of which must be there (``NotFound`` names the first
        20 that are not, in the ``space`` index)."""
        slots = self.lookup(ids)
        missing = ids[slots < 0]
        if len(missing):
            raise NotFound(
                f"{len(missing)} ids are not in the {space} index", missing=missing[:20].tolist()
            )
        return slots

    def set(self, ids: I64, slots: I64) -> None:
        """Map each distinct id to its slot (ids must be distinct within one call)."""
        if len(ids) == 0:
            return
        self._count += int((self.lookup(ids) < 0).sum())
        limit = max(self._DENSE_MIN, self._DENSE_FACTOR * self._count)
        fits = ids < limit
        if fits.any():
            top = int(ids[fits].max())
            if top >= len(self._table):
                self._grow(min(limit, max(top + 1, 2 * len(self._table))))
        dense = ids < len(self._table)
        self._table[ids[dense]] = slots[dense]
        if not dense.all():
            self._sparse.update(zip(ids[~dense].tolist(), slots[~dense].tolist(), strict=True))

    def delete(self, ids: I64) -> None:
        """Forget these ids (absent ones are ignored)."""
        if len(ids) == 0:
            return
        present = self.lookup(ids) >= 0
        ids = np.unique(ids[present])
        self._count -= len(ids)
        dense = ids < len(self._table)
        self._table[ids[dense]] = -1
        for i in ids[~dense].tolist():
            del self._sparse[i]

    def _grow(self, size: int) -> None:
        table = np.full(size, -1, np.int32)
        table[: len(self._table)] = self._table
        self._table = table
        # Sparse ids that now fall inside the table must move there, or lookups would miss them.
        moved = [i for i in self._sparse if i < size]
        for i in moved:
            table[i] = self._sparse.pop(i)

    @classmethod
    def from_arrays(cls, ids: I64, slots: I64) -> IdMap:
        out = cls()
        out.set(ids, slots)
        return out
