"""Exact (brute-force) vector index in numpy: the oracle the approximate index is tested against.

Vectors live in one growable ``(capacity, dim)`` matrix (float32, or float16 when
``meta.dtype == "f16"``) with a parallel int64 id array; removal moves the last rows into the holes,
so the matrix stays dense and search scans exactly ``len(index)`` rows. On disk: ``vectors.N.npy``,
``ids.N.npy`` and the ``index.json`` manifest (see ``tastegraph.index.persistence``).

Search costs ``O(len(index) * dim)`` per query: about 1 GB of memory traffic per query at 1M x 256
float32, so use it for tests, small catalogs and as ground truth, and ``hnsw`` beyond that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import IndexMismatch, InvalidInput
from tastegraph.index.arrays import IdMap, as_ids, as_vectors, check_k, dedupe_last, padded
from tastegraph.index.base import F32, I64, REINDEX_HINT, IndexMeta
from tastegraph.index.locking import RWLock
from tastegraph.index.persistence import (
    Manifest,
    check_manifest,
    commit,
    load_npy,
    load_with_retry,
    save_npy,
)
from tastegraph.index.topk import block_rows, brute_force

__all__ = ["ExactIndex"]


class ExactIndex:
    """Brute-force inner-product index; see ``tastegraph.index.base.VectorIndex`` for the contract.

    Parameters
    ----------
    meta : IndexMeta
        Provenance; ``meta.dtype == "f16"`` stores float16 (scores are computed in float32).
    path : Path, optional
        Default folder for ``save``.

    Examples
    --------
    >>> import numpy as np
    >>> idx = ExactIndex(IndexMeta("image", "m@1", 2))
    >>> idx.add(np.array([5, 6]), np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    >>> scores, ids = idx.search(np.array([[0.8, 0.6]], np.float32), k=3)
    >>> ids.tolist(), scores.astype(float).round(2).tolist()
    ([[5, 6, -1]], [[0.8, 0.6, -inf]])
    """

    kind = "exact"

    def __init__(self, meta: IndexMeta, *, path: Path | None = None) -> None:
        self._meta = meta
        self.path = Path(path) if path is not None else None
        self.watermark = 0
        self._dtype = np.float16 if meta.dtype == "f16" else np.float32
        self._vecs: NDArray[Any] = np.zeros((0, meta.dim), self._dtype)
        self._ids: I64 = np.zeros(0, np.int64)
        self._n = 0
        self._map = IdMap()
        self._generation = 0
        self._lock = RWLock()
        self._save_lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, meta: IndexMeta, **params: Any) -> ExactIndex:
        """Load the index saved in ``path``, or create an empty one if none was saved there."""
        if params:
            raise InvalidInput(
                f"unknown parameters for the exact index: {', '.join(sorted(params))}",
                hint="the exact index takes no parameters",
            )
        path = Path(path)

        def load(man: Manifest) -> ExactIndex:
            check_manifest(man, cls.kind, meta, path)
            idx = cls(meta, path=path)
            vecs = load_npy(path / man.files["vectors"])
            ids = load_npy(path / man.files["ids"]).astype(np.int64, copy=False)
            if vecs.shape != (len(ids), meta.dim) or vecs.dtype != idx._dtype:
                raise IndexMismatch(
                    f"index files in {path} are inconsistent with their manifest",
                    hint=REINDEX_HINT,
                )
            idx._vecs, idx._ids, idx._n = vecs, ids, len(ids)
            idx._map = IdMap.from_arrays(ids, np.arange(len(ids), dtype=np.int64))
            idx.watermark = man.watermark
            idx._generation = man.generation
            return idx

        loaded = load_with_retry(path, load)
        return loaded if loaded is not None else cls(meta, path=path)

    # -- protocol ----------------------------------------------------------------------------

    @property
    def meta(self) -> IndexMeta:
        return self._meta

    def __len__(self) -> int:
        return self._n

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, (int, np.integer)) or isinstance(id, bool) or id < 0:
            return False
        return bool(self._map.lookup(np.array([id], np.int64))[0] >= 0)

    def ids(self) -> I64:
        with self._lock.read():
            return self._ids[: self._n].copy()

    def add(self, ids: ArrayLike, vecs: ArrayLike) -> None:
        ids_ = as_ids(ids)
        x = as_vectors(vecs, self._meta.dim)
        if len(ids_) != len(x):
            raise InvalidInput(f"{len(ids_)} ids for {len(x)} vectors")
        keep = dedupe_last(ids_)
        ids_, x = ids_[keep], x[keep]
        with self._lock.write():
            slots = self._map.lookup(ids_)
            old = slots >= 0
            # Replacement overwrites in place; new ids append.
            self._vecs[slots[old]] = x[old]
            new_ids = ids_[~old]
            if len(new_ids):
                self._reserve(self._n + len(new_ids))
                start, stop = self._n, self._n + len(new_ids)
                self._vecs[start:stop] = x[~old]
                self._ids[start:stop] = new_ids
                self._map.set(new_ids, np.arange(start, stop, dtype=np.int64))
                self._n = stop

    def remove(self, ids: ArrayLike) -> int:
        ids_ = np.unique(as_ids(ids))
        with self._lock.write():
            slots = self._map.lookup(ids_)
            slots = slots[slots >= 0]
            if len(slots) == 0:
                return 0
            new_n = self._n - len(slots)
            # Fill holes below new_n with the surviving rows above it, keeping the matrix dense.
            holes = slots[slots < new_n]
            tail = np.arange(new_n, self._n)
            movers = tail[~np.isin(tail, slots)]
            self._map.delete(self._ids[slots])
            if len(holes):
                self._vecs[holes] = self._vecs[movers]
                self._ids[holes] = self._ids[movers]
                self._map.set(self._ids[holes], holes.astype(np.int64))
            self._ids[new_n : self._n] = -1
            self._n = new_n
            return len(slots)

    def get(self, ids: ArrayLike) -> F32:
        ids_ = as_ids(ids)
        with self._lock.read():
            slots = self._map.slots_of(ids_, self._meta.space)
            return self._vecs[slots].astype(np.float32)

    def search(
        self,
        queries: ArrayLike,
        k: int,
        allow: ArrayLike | None = None,
        exclude: ArrayLike | None = None,
    ) -> tuple[F32, I64]:
        q = as_vectors(queries, self._meta.dim, "queries")
        k = check_k(k)
        allow_ = None if allow is None else as_ids(allow, "allow")
        exclude_ = None if exclude is None else as_ids(exclude, "exclude")
        with self._lock.read():
            if self._n == 0 or len(q) == 0:
                return padded(len(q), k)
            excl = np.zeros(0, np.int64)
            if exclude_ is not None and len(exclude_):
                excl = self._map.lookup(exclude_)
                excl = excl[excl >= 0]
            if allow_ is not None:
                slots = np.unique(self._map.lookup(allow_))
                slots = slots[slots >= 0]
                if len(excl):
                    slots = slots[~np.isin(slots, excl)]
                return brute_force(q, k, self._gathered(slots, len(q)))
            return brute_force(q, k, self._blocks(len(q), excl))

    def save(self, path: Path | None = None) -> Path:
        folder = Path(path) if path is not None else self.path
        if folder is None:
            raise InvalidInput("no folder to save the index to", hint="pass save(path)")
        # Searches go on during a save (read side); a second save waits (generation numbers).
        with self._save_lock, self._lock.read():
            vecs = self._vecs[: self._n]
            ids = self._ids[: self._n]
            self._generation = commit(
                folder,
                self._generation,
                lambda gen, files: Manifest(
                    kind=self.kind,
                    meta=self._meta,
                    generation=gen,
                    watermark=int(self.watermark),
                    count=len(ids),
                    files=files,
                    params={},
                ),
                {"vectors": ("npy", save_npy(vecs)), "ids": ("npy", save_npy(ids))},
            )
        self.path = folder
        return folder

    # -- internals ---------------------------------------------------------------------------

    def _reserve(self, n: int) -> None:
        if n <= len(self._ids):
            return
        # Geometric growth keeps repeated small adds amortised O(1) per vector.
        cap = max(n, int(len(self._ids) * 1.5), 1024)
        vecs = np.zeros((cap, self._meta.dim), self._dtype)
        vecs[: self._n] = self._vecs[: self._n]
        ids = np.full(cap, -1, np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._vecs, self._ids = vecs, ids

    def _blocks(self, m: int, excl: I64) -> Iterator[tuple[NDArray[Any], I64]]:
        step = block_rows(m, self._meta.dim)
        for start in range(0, self._n, step):
            stop = min(start + step, self._n)
            ids = self._ids[start:stop]
            inside = excl[(excl >= start) & (excl < stop)]
            if len(inside):
                ids = ids.copy()
                ids[inside - start] = -1
            yield self._vecs[start:stop], ids

    def _gathered(self, slots: I64, m: int) -> Iterator[tuple[NDArray[Any], I64]]:
        step = block_rows(m, self._meta.dim)
        for start in range(0, len(slots), step):
            part = slots[start : start + step]
            yield self._vecs[part], self._ids[part]
