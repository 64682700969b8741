"""The ``VectorIndex`` protocol, its provenance record and the machinery both backends share.

A vector index maps pin ids (non-negative int64) to L2-normalised float32 vectors of one space
(``image``, ``text``, ...) and answers "which ids are nearest to these queries?" by inner product,
which on unit vectors is cosine similarity.

Example
-------
>>> import numpy as np, tempfile
>>> from pathlib import Path
>>> from tastegraph.index import IndexMeta, open_index
>>> folder = Path(tempfile.mkdtemp()) / "image"
>>> meta = IndexMeta(space="image", model_id="lite0@1", dim=4, digest="abc123")
>>> idx = open_index("exact", folder, meta)  # loads, or creates empty
>>> idx.add(np.array([10, 11, 12]), np.eye(3, 4, dtype=np.float32))
>>> scores, ids = idx.search(np.array([[1.0, 0.1, 0.0, 0.0]], np.float32), k=2)
>>> ids.tolist()
[[10, 11]]
>>> idx.add(np.array([10]), np.array([[0.0, 0.0, 0.0, 1.0]], np.float32))  # re-add replaces
>>> idx.search(np.array([[0.0, 0.0, 0.1, 1.0]], np.float32), k=2, exclude=np.array([11]))[1]
array([[10, 12]])
>>> _ = idx.remove(np.array([12]))
>>> sorted(idx.ids().tolist()), 12 in idx, len(idx)
([10, 11], False, 2)
>>> idx.watermark = 42        # how far the index has caught up with the store's change log
>>> _ = idx.save()            # atomic: a crash mid-save leaves the previous version loadable
>>> open_index("exact", folder, meta).watermark
42

Conventions every backend follows (``tests/contract/test_index_contract.py`` checks them):

- ``search`` returns ``(scores, ids)`` of shape ``(M, k)``, best first, scores float32, ids int64;
  when fewer than ``k`` ids qualify, rows are padded with id ``-1`` and score ``-inf``.
- ``allow`` restricts results to those ids, ``exclude`` removes ids; unknown ids are ignored.
- Vectors are L2-normalised on the way in (``add`` and ``search``), zero vectors stay zero.
- A query or vector of the wrong dimension raises ``IndexMismatch`` (the usual cause is an encoder
  that is not the one the index was built with); malformed ids or arrays raise ``InvalidInput``.
- ``remove`` ignores ids that are not present and returns how many it removed; ``get`` raises
  ``NotFound`` for an absent id.
- ``save`` writes new files under a fresh generation number and then switches one small manifest
  (``index.json``) with ``os.replace``; the previous generation's files are deleted only after that.
- One writer at a time per index directory; in one process, searches may run on many threads
  while another thread adds or removes (a readers-writer lock serialises them correctly).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import IndexMismatch, InvalidInput

__all__ = [
    "INDEX_KINDS",
    "IndexMeta",
    "VectorIndex",
]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

INDEX_KINDS = ("exact", "hnsw")
METRICS = ("ip",)
DTYPES = ("f32", "f16")
MANIFEST = "index.json"
FORMAT_VERSION = 1
REINDEX_HINT = "rebuild it from the stored vectors with `tastegraph reindex`"


@dataclass(frozen=True)
class IndexMeta:
    """Provenance of an index: what its vectors are, so that mismatched files refuse to load.

    ``space`` names the vector space (``image``, ``text``, ``conse``); ``model_id`` and ``dim``
    identify the encoder output; ``metric`` is ``"ip"`` (inner product on L2-normalised vectors);
    ``digest`` is the settings digest of everything else that shapes the vectors (for example a
    PCA-whitening fit); ``dtype`` is how the index stores them (``"f16"`` halves the memory and
    makes ``get`` approximate).
    """

    space: str
    model_id: str
    dim: int
    metric: str = "ip"
    digest: str = ""
    dtype: str = "f32"

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim < 1:
            raise InvalidInput(f"index dim must be a positive integer, got {self.dim!r}")
        if self.metric not in METRICS:
            raise InvalidInput(
                f"unknown index metric {self.metric!r}", hint=f"known metrics: {', '.join(METRICS)}"
            )
        if self.dtype not in DTYPES:
            raise InvalidInput(
                f"unknown index dtype {self.dtype!r}", hint=f"known dtypes: {', '.join(DTYPES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexMeta:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: IndexMeta) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ, as ``{field: (self's, other's)}``."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable, persistent nearest-neighbour index over one vector space.

    Open one with ``tastegraph.index.open_index(kind, path, meta)``; ``kind`` is ``"exact"``
    (numpy brute force, the test oracle) or ``"hnsw"`` (faiss HNSW graph, the default).

    Example
    -------
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> from tastegraph.index import IndexMeta, open_index
    >>> folder = Path(tempfile.mkdtemp())
    >>> idx = open_index("hnsw", folder, IndexMeta("text", "minilm@1", 3))
    >>> idx.add(np.arange(3), np.eye(3, dtype=np.float32))
    >>> q = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0]], np.float32)
    >>> scores, ids = idx.search(q, k=2, allow=np.array([0, 2]))  # filtered: only ids 0 and 2
    >>> ids.tolist()
    [[0, 2], [2, 0]]
    >>> idx.get(np.array([2])).round(3).tolist()
    [[0.0, 0.0, 1.0]]
    >>> idx.search(q[:1], k=5)[1].tolist()   # fewer than k ids: padded with -1
    [[0, 1, 2, -1, -1]]
    """

    kind: str
    watermark: int
    path: Path | None

    @property
    def meta(self) -> IndexMeta:
        """Provenance recorded in the saved files and checked on load."""
        ...

    def add(self, ids: ArrayLike, vecs: ArrayLike) -> None:
        """Insert ``(N,)`` int64 ids with ``(N, dim)`` float32 vectors; an existing id is replaced.

        Within one call a repeated id keeps its last vector.
        """
        ...

    def remove(self, ids: ArrayLike) -> int:
        """Delete these ids (absent ones are ignored); returns how many were removed."""
        ...

    def search(
        self,
        queries: ArrayLike,
        k: int,
        allow: ArrayLike | None = None,
        exclude: ArrayLike | None = None,
    ) -> tuple[F32, I64]:
        """Top-``k`` ids by inner product for each of ``(M, dim)`` queries.

        Returns ``(scores, ids)``, both ``(M, k)``, best first, padded with ``(-inf, -1)``.
        ``allow`` keeps only those ids; ``exclude`` drops those ids. A single ``(dim,)`` query
        is treated as ``(1, dim)``.
        """
        ...

    def get(self, ids: ArrayLike) -> F32:
        """The stored ``(N, dim)`` vectors of these ids (float16-rounded if ``dtype == "f16"``)."""
        ...

    def ids(self) -> I64:
        """Every id in the index, in storage order (not sorted)."""
        ...

    def save(self, path: Path | None = None) -> Path:
        """Persist atomically to ``path`` (default: where it was opened); returns the folder."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, id: object) -> bool: ...


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


# --------------------------------------------------------------------------------------------
# Exact top-k


def topk_rows(scores: F32, k: int) -> tuple[F32, NDArray[np.intp]]:
    """Best ``min(k, n)`` columns of each row of ``(M, n)`` scores, highest first.

    Parameters
    ----------
    scores : (M, n) float32
        Higher is better; ``-inf`` marks columns that must not be chosen (callers drop them).
    k : int
        How many columns to keep per row.

    Returns
    -------
    values : (M, min(k, n)) float32
    columns : (M, min(k, n)) intp

    Examples
    --------
    >>> v, c = topk_rows(np.array([[0.25, 0.75, 0.5]], np.float32), 2)
    >>> v.tolist(), c.tolist()
    ([[0.75, 0.5]], [[1, 2]])
    """
    m, n = scores.shape
    kk = min(k, n)
    if kk == 0:
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.intp)
    if kk < n:
        # argpartition is O(n) per row; only the kk survivors are sorted.
        cols = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        cols = np.broadcast_to(np.arange(n), (m, n))
    vals = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def brute_force(
    queries: F32, k: int, blocks: Iterable[tuple[NDArray[Any], I64]]
) -> tuple[F32, I64]:
    """Exact top-``k`` inner-product search over a stream of ``(vectors, ids)`` blocks.

    Streaming keeps memory at one block of scores whatever the index size, and lets the same code
    score a contiguous matrix, a gathered subset (filtered search) or float16 storage.

    Parameters
    ----------
    queries : (M, d) float32
    k : int
    blocks : iterable of ((r, d) float16 or float32, (r,) int64)
        Vectors and their ids; rows whose id is ``-1`` are skipped (excluded or deleted).

    Returns
    -------
    scores : (M, k) float32, best first, ``-inf`` padded
    ids : (M, k) int64, ``-1`` padded

    Examples
    --------
    >>> q = np.array([[1.0, 0.0]], np.float32)
    >>> block = (np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], np.float32), np.array([7, 8, -1]))
    >>> brute_force(q, 3, [block])[1].tolist()
    [[8, 7, -1]]
    """
    m = len(queries)
    best_s, best_i = padded(m, k)
    for vecs, ids in blocks:
        if len(ids) == 0:
            continue
        scores = _dot(queries, vecs.astype(np.float32, copy=False))
        skip = ids < 0
        if skip.any():
            scores[:, skip] = -np.inf
        s, cols = topk_rows(scores, k)
        # Merge this block's winners with the running best: 2k columns per row at most.
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, ids[cols]], axis=1)
        s2, cols2 = topk_rows(all_s, k)
        best_s, best_i = s2, np.take_along_axis(all_i, cols2, axis=1)
    best_i[~np.isfinite(best_s)] = -1
    best_s[best_i < 0] = -np.inf
    return best_s, best_i


def _dot(queries: F32, vecs: F32) -> F32:
    """``queries @ vecs.T``, without BLAS threads for a few queries.

    OpenBLAS parallelises even a single query against a few thousand rows; with other work on the
    cores its threads wait on each other and one filtered query took 12 ms instead of 0.1 ms.
    einsum's own loops are single-threaded and within 1.5x of one BLAS thread at that size.
    """
    if len(queries) < 8:
        return cast(F32, np.einsum("md,nd->mn", queries, vecs))
    return queries @ vecs.T


def block_rows(m: int, dim: int) -> int:
    """Rows per scoring block: keeps the (M, rows) score matrix and a float32 copy near 64 MB."""
    budget = 1 << 24  # float32 elements
    return int(max(1024, min(1 << 16, budget // max(m, dim, 1))))


def compact_rows(scores: F32, ids: I64, k: int) -> tuple[F32, I64]:
    """Move the valid (id >= 0) entries of each row to the front, keep ``k`` columns, pad."""
    if len(ids) == 1:
        # One query (the common case): a boolean selection beats argsort + take_along_axis.
        keep = np.flatnonzero(ids[0] >= 0)[:k]
        out_s, out_i = padded(1, k)
        out_s[0, : len(keep)] = scores[0, keep]
        out_i[0, : len(keep)] = ids[0, keep]
        return out_s, out_i
    order = np.argsort(ids < 0, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    if ids.shape[1] < k:
        pad_s, pad_i = padded(len(ids), k - ids.shape[1])
        ids = np.concatenate([ids, pad_i], axis=1)
        scores = np.concatenate([scores, pad_s], axis=1)
    scores = scores.astype(np.float32, copy=False)
    scores[ids < 0] = -np.inf
    return scores, ids


# --------------------------------------------------------------------------------------------
# Readers-writer lock


class RWLock:
    """Many concurrent readers or one writer; waiting writers block new readers (no starvation).

    ``with lock.read():`` / ``with lock.write():``. The guards are plain objects rather than
    ``contextlib`` generators because a search takes the read side on every call.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read = _ReadGuard(self)
        self._write = _WriteGuard(self)

    def read(self) -> _ReadGuard:
        return self._read

    def write(self) -> _WriteGuard:
        return self._write

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            # Only a writer waits for the readers to drain; waking nobody is the common case.
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _ReadGuard:
    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_read()


class _WriteGuard:
    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_write()


# --------------------------------------------------------------------------------------------
# Persistence: generation-numbered files + one manifest switched atomically


@dataclass
class Manifest:
    """The content of ``index.json``: the only file whose replacement commits a save."""

    kind: str
    meta: IndexMeta
    generation: int
    watermark: int
    count: int
    files: dict[str, str]
    params: dict[str, Any]
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["meta"] = self.meta.to_dict()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["meta"] = IndexMeta.from_dict(data["meta"])
        return cls(**data)


_GEN_FILE = re.compile(r"^[a-z]+\.(\d{6,})\.[a-z]+$")
_TMP_FILE = re.compile(r"^\.tmp-.*")


def read_manifest(folder: Path) -> Manifest | None:
    """The committed manifest of ``folder``, or None when no index was ever saved there."""
    try:
        text = (folder / MANIFEST).read_text()
    except FileNotFoundError:
        return None
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError, InvalidInput) as exc:
        raise IndexMismatch(
            f"index manifest {folder / MANIFEST} is unreadable: {exc}", hint=REINDEX_HINT
        ) from exc


def check_manifest(man: Manifest, kind: str, meta: IndexMeta, folder: Path) -> None:
    """Refuse files written by another backend, format, model, dimension or settings digest."""
    if man.format != FORMAT_VERSION:
        raise IndexMismatch(
            f"index at {folder} has format {man.format}, this version reads {FORMAT_VERSION}",
            hint=REINDEX_HINT,
        )
    if man.kind != kind:
        raise IndexMismatch(
            f"index at {folder} is a {man.kind!r} index, not {kind!r}",
            hint=f"open it with kind={man.kind!r} or {REINDEX_HINT}",
            saved_kind=man.kind,
            kind=kind,
        )
    diff = man.meta.differences(meta)
    if diff:
        what = ", ".join(f"{f} {a!r} (saved) != {b!r} (wanted)" for f, (a, b) in diff.items())
        raise IndexMismatch(
            f"index at {folder} was built for other vectors: {what}",
            hint=REINDEX_HINT,
            saved=man.meta.to_dict(),
            wanted=meta.to_dict(),
        )


def load_with_retry(folder: Path, load: Callable[[Manifest], Any], attempts: int = 3) -> Any:
    """Read the manifest and call ``load`` on it, retrying if a concurrent save swapped files.

    A writer deletes the previous generation's files right after switching the manifest, so a
    reader that read the old manifest can find its files gone; the new manifest then names files
    that exist.
    """
    for attempt in range(attempts):
        man = read_manifest(folder)
        if man is None:
            return None
        try:
            return load(man)
        except FileNotFoundError as exc:
            if attempt == attempts - 1:
                raise IndexMismatch(
                    f"index in {folder} names a file that is missing: {exc}", hint=REINDEX_HINT
                ) from exc
    return None  # pragma: no cover - the loop either returns or raises


def fsync_dir(folder: Path) -> None:
    # Makes the renames themselves durable; not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(final: Path, write: Callable[[Path], None]) -> None:
    """Write ``final`` through a temporary file in the same folder, fsync it, then rename it."""
    tmp = final.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{final.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def save_npy(array: NDArray[Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return write


def load_npy(path: Path) -> NDArray[Any]:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"index file {path} is unreadable: {exc}", hint=REINDEX_HINT) from exc


def commit(
    folder: Path,
    previous: int,
    make_manifest: Callable[[int, dict[str, str]], Manifest],
    writers: dict[str, tuple[str, Callable[[Path], None]]],
) -> int:
    """Save a new generation of an index into ``folder`` and return its number.

    Parameters
    ----------
    folder : Path
        The index directory (created if needed).
    previous : int
        The generation this process last read or wrote; the new one is greater than both it and
        whatever the folder's manifest says, so it never overwrites live files.
    make_manifest : callable
        ``(generation, files) -> Manifest`` for the files written.
    writers : dict
        ``role -> (extension, write(path))``: each writes one data file.

    Returns
    -------
    int
        The committed generation.

    Notes
    -----
    Order matters for crash safety: data files first (each through a temporary name, fsynced),
    then the manifest through ``os.replace``, then deletion of older generations. A crash before
    the manifest is replaced leaves the old manifest pointing at old files that still exist; the
    orphaned new files are removed by the next successful save.
    """
    folder.mkdir(parents=True, exist_ok=True)
    current = read_manifest_quietly(folder)
    gen = max(previous, current) + 1
    files: dict[str, str] = {}
    for role, (ext, write) in writers.items():
        name = f"{role}.{gen:06d}.{ext}"
        write_file(folder / name, write)
        files[role] = name
    man = make_manifest(gen, files)
    text = man.to_json()
    write_manifest(folder, text)
    fsync_dir(folder)
    _remove_stale(folder, keep=set(files.values()))
    return gen


def write_manifest(folder: Path, text: str) -> None:
    """The commit point of a save (a module-level function so tests can simulate a crash here)."""

    def write(path: Path) -> None:
        path.write_text(text)

    write_file(folder / MANIFEST, write)


def read_manifest_quietly(folder: Path) -> int:
    try:
        man = read_manifest(folder)
    except IndexMismatch:
        return 0
    return man.generation if man else 0


def _remove_stale(folder: Path, keep: set[str]) -> None:
    for entry in folder.iterdir():
        name = entry.name
        if name in keep or name == MANIFEST:
            continue
        if _GEN_FILE.match(name) or _TMP_FILE.match(name):
            with contextlib.suppress(OSError):
                entry.unlink()
