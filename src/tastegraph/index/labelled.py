"""What the faiss backends share: labels, tombstones, filters, exact fallbacks and saving.

Layout
------
faiss numbers vectors 0, 1, 2, ... in insertion order ("labels"); ``_labels[label]`` is the pin id
stored there, or ``-1`` for a tombstone, and an ``IdMap`` goes the other way. Every vector is kept
once in a flat, label-indexed store (``tastegraph.index.flatcodes``): the HNSW graph's own
``storage``, or the IVF backend's refine store. ``get``, rebuilds and every exact search read it.

Removal and replacement
-----------------------
Neither faiss structure deletes cheaply by label, so ``remove`` (and re-adding an id, a remove plus
an add) turns the old label into a tombstone that an ``IDSelectorBitmap`` of live labels keeps out
of results. Once tombstones exceed ``rebuild_fraction`` of the labels (20% by default) the index
is rebuilt from the live vectors in the call that crossed the threshold; set
``rebuild_fraction=1.0`` and call ``compact()`` from a background job to control when it happens.

Filtered search
---------------
An approximate search explores a fixed budget of candidates whatever the filter, so with a
restrictive ``allow`` set most of them are filtered out and recall collapses. Small allow sets (up
to ``max(exact_max, exact_fraction * len(index))`` ids) are therefore scored exactly from the flat
store, which is also cheaper at that size (10k float16 vectors: ~1 ms); larger ones run the ANN
search with a bitmap selector and its budget scaled by the inverse of the allowed fraction.
``exclude`` lists of up to ``overfetch_max`` ids are handled by fetching that many extra results
and dropping them. Rows that still come back short are completed by exact search, so ``k``
results are returned whenever ``k`` ids qualify.

Threads
-------
A single query, or a handful, runs with one OpenMP thread: a team only adds fork/join and, on a
busy machine, threads spinning against each other. Larger batches and bulk adds use ``threads``
(default: faiss's default, all cores). ``omp_set_num_threads`` applies to the calling thread
only, so concurrent searches from several Python threads do not disturb each other.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import IndexMismatch, InvalidInput
from tastegraph.index.arrays import IdMap, as_ids, as_vectors, check_k, dedupe_last, padded
from tastegraph.index.base import F32, I64, REINDEX_HINT, IndexMeta
from tastegraph.index.flatcodes import decode, score_subset
from tastegraph.index.locking import RWLock
from tastegraph.index.persistence import (
    Manifest,
    check_manifest,
    commit,
    load_npy,
    load_with_retry,
    save_npy,
)
from tastegraph.index.topk import block_rows, brute_force, compact_rows

__all__ = ["LabelledIndex", "check_int"]

faiss: Any = _faiss

NONE = np.zeros(0, np.int64)
NONE.flags.writeable = False

# Below these sizes an OpenMP team costs more than it saves (fork/join, and spinning threads
# fight for the cores when the machine is busy): on the busy 2-core dev machine 400 vectors were
# added in 45-70 ms on one thread and 140-290 ms on two.
PARALLEL_ADD_MIN = 2048
PARALLEL_SEARCH_MIN = 8
# Exact scoring through the flat store's own kernels for up to this many queries at once.
SUBSET_QUERIES_MAX = 8
# ... over up to this many rows: each thread keeps a scratch copy that large (32 MB of float16
# at d = 256); bigger sets (rare: completing short rows of a huge filter) decode in blocks.
SUBSET_ROWS_MAX = 1 << 16

Selector = tuple[NDArray[np.uint8], Any]


class LabelledIndex:
    """Base of the faiss backends; subclasses supply the ANN structure (see ``hnsw``, ``ivf``).

    Subclass hooks: ``_store()`` (the flat label-indexed store),
    ``_ann_call(q, fetch, selector, n_selected)``, ``_add_vectors(x)``, ``_rebuild_from(vecs)``,
    ``_adopt(index, man)`` (validate a loaded faiss index), ``params`` and ``PARAMS`` (the
    constructor parameters ``open`` accepts), ``BUILD_PARAMS`` (those a saved index must have
    been built with) and ``SAVED_PARAMS`` (those a load takes from the manifest).
    """

    kind = ""
    PARAMS: tuple[str, ...] = (
        "rebuild_fraction",
        "exact_max",
        "exact_fraction",
        "overfetch_max",
        "threads",
    )
    BUILD_PARAMS: tuple[str, ...] = ()
    SAVED_PARAMS: tuple[str, ...] = ()

    def __init__(
        self,
        meta: IndexMeta,
        *,
        path: Path | None = None,
        rebuild_fraction: float = 0.2,
        exact_max: int = 4096,
        exact_fraction: float = 0.02,
        overfetch_max: int = 256,
        threads: int | None = None,
    ) -> None:
        check_int("exact_max", exact_max, 0, 1 << 40)
        check_int("overfetch_max", overfetch_max, 0, 1 << 40)
        if threads is not None:
            check_int("threads", threads, 1, 4096)
        if not 0.0 < rebuild_fraction <= 1.0:
            raise InvalidInput(f"rebuild_fraction must be in (0, 1], got {rebuild_fraction!r}")
        if not 0.0 <= exact_fraction <= 1.0:
            raise InvalidInput(f"exact_fraction must be in [0, 1], got {exact_fraction!r}")
        self._meta = meta
        self.path = Path(path) if path is not None else None
        self.watermark = 0
        self.rebuild_fraction = rebuild_fraction
        self.exact_max = exact_max
        self.exact_fraction = exact_fraction
        self.overfetch_max = overfetch_max
        self.threads = threads or faiss.omp_get_max_threads()
        self._labels: I64 = np.zeros(0, np.int64)  # capacity-grown; valid up to ntotal
        self._map = IdMap()
        self._n_dead = 0
        self._alive_sel: Selector | None = None
        self._generation = 0
        self._lock = RWLock()
        self._save_lock = threading.Lock()
        self._index: Any = None  # set by the subclass

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, meta: IndexMeta, **params: Any) -> Any:
        """Load the index saved in ``path`` or create an empty one; ``params`` as the constructor.

        Build parameters given explicitly must match a saved index's (else ``IndexMismatch``);
        omitted ones are taken from the saved index, or the defaults for a new one.
        """
        path = Path(path)
        known = set(cls.PARAMS)
        unknown = set(params) - known
        if unknown:
            raise InvalidInput(
                f"unknown parameters for the {cls.kind} index: {', '.join(sorted(unknown))}",
                hint=f"known parameters: {', '.join(sorted(known))}",
            )
        given = {k: v for k, v in params.items() if v is not None}

        def load(man: Manifest) -> LabelledIndex:
            check_manifest(man, cls.kind, meta, path)
            for name in cls.BUILD_PARAMS:
                saved = man.params.get(name)
                if name in given and saved is not None and given[name] != saved:
                    raise IndexMismatch(
                        f"index at {path} was built with {name}={saved}, not {given[name]}",
                        hint=f"open it without {name} or {REINDEX_HINT}",
                    )
            merged = {k: man.params[k] for k in cls.SAVED_PARAMS if man.params.get(k) is not None}
            merged.update(given)
            idx = cls(meta, path=path, **merged)
            graph_file = path / man.files["graph"]
            if not graph_file.exists():
                raise FileNotFoundError(graph_file)  # a concurrent save swapped it: retried
            try:
                index = faiss.read_index(str(graph_file))
            except RuntimeError as exc:  # faiss reports unreadable files this way
                raise IndexMismatch(
                    f"index file {graph_file} is unreadable: {exc}", hint=REINDEX_HINT
                ) from exc
            labels = load_npy(path / man.files["labels"]).astype(np.int64, copy=False)
            if not idx._adopt(index, man) or index.d != meta.dim or index.ntotal != len(labels):
                raise IndexMismatch(
                    f"index files in {path} are inconsistent with their manifest",
                    hint=REINDEX_HINT,
                )
            idx._labels = labels
            live = np.flatnonzero(labels >= 0)
            idx._map = IdMap.from_arrays(labels[live], live.astype(np.int64))
            idx._n_dead = len(labels) - len(live)
            idx.watermark = man.watermark
            idx._generation = man.generation
            return idx

        loaded = load_with_retry(path, load)
        return loaded if loaded is not None else cls(meta, path=path, **given)

    # -- protocol ----------------------------------------------------------------------------

    @property
    def meta(self) -> IndexMeta:
        return self._meta

    @property
    def params(self) -> dict[str, Any]:
        """Parameters recorded in the saved manifest."""
        return {}

    @property
    def tombstones(self) -> int:
        """Removed or replaced vectors still in the index (until the next rebuild)."""
        return self._n_dead

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, (int, np.integer)) or isinstance(id, bool) or id < 0:
            return False
        return bool(self._map.lookup(np.array([id], np.int64))[0] >= 0)

    def ids(self) -> I64:
        with self._lock.read():
            labels = self._labels[: self._ntotal()]
            return labels[labels >= 0].copy()

    def add(self, ids: ArrayLike, vecs: ArrayLike) -> None:
        ids_ = as_ids(ids)
        x = as_vectors(vecs, self._meta.dim)
        if len(ids_) != len(x):
            raise InvalidInput(f"{len(ids_)} ids for {len(x)} vectors")
        if len(ids_) == 0:
            return
        keep = dedupe_last(ids_)
        ids_, x = ids_[keep], np.ascontiguousarray(x[keep])
        with self._lock.write():
            old = self._map.lookup(ids_)
            self._kill(old[old >= 0])
            start = self._ntotal()
            with self._omp(len(x) >= PARALLEL_ADD_MIN):
                self._add_vectors(x)
            self._reserve(start + len(x))
            self._labels[start : start + len(x)] = ids_
            self._map.set(ids_, np.arange(start, start + len(x), dtype=np.int64))
            self._maybe_rebuild()

    def remove(self, ids: ArrayLike) -> int:
        ids_ = np.unique(as_ids(ids))
        with self._lock.write():
            labels = self._map.lookup(ids_)
            labels = labels[labels >= 0]
            self._map.delete(self._labels[labels])
            self._kill(labels)
            self._maybe_rebuild()
            return len(labels)

    def get(self, ids: ArrayLike) -> F32:
        ids_ = as_ids(ids)
        with self._lock.read():
            labels = self._map.slots_of(ids_, self._meta.space)
            return self._vectors(labels)

    def search(
        self,
        queries: ArrayLike,
        k: int,
        allow: ArrayLike | None = None,
        exclude: ArrayLike | None = None,
    ) -> tuple[F32, I64]:
        q = as_vectors(queries, self._meta.dim, "queries")
        k = check_k(k)
        if allow is None and exclude is None:
            # The hot path (plain similarity search), kept short: it is most of the traffic.
            with self._lock.read():
                n_alive = len(self._map)
                if n_alive > k and len(q):
                    return self._ann_search(
                        q, k, self._alive_selector(), n_alive, NONE, self._alive_all
                    )
        allow_ = None if allow is None else as_ids(allow, "allow")
        exclude_ = None if exclude is None else as_ids(exclude, "exclude")
        with self._lock.read():
            n_alive = len(self._map)
            if n_alive == 0 or len(q) == 0:
                return padded(len(q), k)
            excl = NONE
            if exclude_ is not None and len(exclude_):
                excl = self._map.lookup(exclude_)
                excl = excl[excl >= 0]
                if len(excl) > 1:
                    excl = np.unique(excl)
            if allow_ is not None:
                labels = self._map.lookup(allow_)
                ntotal = self._ntotal()
                if len(labels) * 16 < ntotal:
                    cand = labels[labels >= 0]
                    if len(cand) > 1 and not (cand[1:] > cand[:-1]).all():
                        cand = np.unique(cand)  # a sorted allow list usually maps in order
                    if len(excl):
                        cand = cand[~np.isin(cand, excl, assume_unique=True)]
                    mask = None
                else:
                    # Large allow sets: a mask dedupes in O(ntotal) where sorting would not.
                    mask = np.zeros(ntotal, bool)
                    mask[labels[labels >= 0]] = True
                    mask[excl] = False
                    cand = np.flatnonzero(mask)
                limit = max(self.exact_max, int(self.exact_fraction * n_alive), k)
                if len(cand) <= limit:
                    return self._exact(q, k, cand)
                if mask is None:
                    mask = np.zeros(ntotal, bool)
                    mask[cand] = True
                return self._ann_search(q, k, _bitmap(mask), len(cand), excl[:0], lambda: cand)
            if n_alive - len(excl) <= k:
                return self._exact(q, k, self._alive(excl))
            if len(excl) <= self.overfetch_max:
                return self._ann_search(
                    q, k, self._alive_selector(), n_alive, excl, lambda: self._alive(excl)
                )
            mask = self._labels[: self._ntotal()] >= 0
            mask[excl] = False
            return self._ann_search(
                q, k, _bitmap(mask), n_alive - len(excl), excl[:0], lambda: self._alive(excl)
            )

    def save(self, path: Path | None = None) -> Path:
        folder = Path(path) if path is not None else self.path
        if folder is None:
            raise InvalidInput("no folder to save the index to", hint="pass save(path)")
        # Searches go on during a save (read side); a second save waits (generation numbers).
        with self._save_lock, self._lock.read():
            labels = self._labels[: self._ntotal()]
            index = self._index

            def write_graph(p: Path) -> None:
                faiss.write_index(index, str(p))

            self._generation = commit(
                folder,
                self._generation,
                lambda gen, files: Manifest(
                    kind=self.kind,
                    meta=self._meta,
                    generation=gen,
                    watermark=int(self.watermark),
                    count=len(self._map),
                    files=files,
                    params=self.params,
                ),
                {"graph": ("faiss", write_graph), "labels": ("npy", save_npy(labels))},
            )
        self.path = folder
        return folder

    # -- maintenance ---------------------------------------------------------------------------

    def compact(self) -> None:
        """Rebuild from the live vectors, dropping every tombstone (a full build)."""
        with self._lock.write():
            self._rebuild()

    def nbytes(self) -> int:
        """Bytes of the serialised faiss index plus the id arrays (what memory holds, roughly)."""
        with self._lock.read():
            graph = faiss.serialize_index(self._index).nbytes
        return int(graph + self._labels.nbytes + self._map.nbytes())

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index, for benchmarks; labels are not pin ids."""
        return self._index

    # -- subclass hooks ------------------------------------------------------------------------

    def _store(self) -> Any:
        """The flat, label-indexed store of every vector (``IndexFlat`` or float16 SQ)."""
        raise NotImplementedError

    def _ann_call(
        self, q: F32, fetch: int, selector: Selector | None, n_selected: int
    ) -> tuple[F32, I64]:
        """Raw faiss search of ``fetch`` labels per query, restricted by ``selector``."""
        raise NotImplementedError

    def _add_vectors(self, x: F32) -> None:
        self._index.add(x)

    def _rebuild_from(self, vecs: F32) -> None:
        """Replace the faiss index by a new one holding ``vecs`` as labels 0, 1, ..."""
        raise NotImplementedError

    def _adopt(self, index: Any, man: Manifest) -> bool:
        """Take a loaded faiss index; False if it is not what the manifest describes."""
        raise NotImplementedError

    # -- internals ---------------------------------------------------------------------------

    def _ntotal(self) -> int:
        return int(self._store().ntotal)

    def _reserve(self, n: int) -> None:
        if n <= len(self._labels):
            return
        labels = np.full(max(n, int(len(self._labels) * 1.5), 1024), -1, np.int64)
        labels[: len(self._labels)] = self._labels
        self._labels = labels

    def _kill(self, labels: I64) -> None:
        if len(labels) == 0:
            return
        self._labels[labels] = -1
        self._n_dead += len(labels)
        self._alive_sel = None

    def _maybe_rebuild(self) -> None:
        self._alive_sel = None
        if self._n_dead and self._n_dead > self.rebuild_fraction * self._ntotal():
            self._rebuild()

    def _rebuild(self) -> None:
        live = self._alive(NONE)
        vecs = self._vectors(live)
        ids = self._labels[live]
        with self._omp(len(vecs) >= PARALLEL_ADD_MIN):
            self._rebuild_from(vecs)
        self._labels = np.full(max(len(ids), 1024), -1, np.int64)
        self._labels[: len(ids)] = ids
        self._map = IdMap.from_arrays(ids, np.arange(len(ids), dtype=np.int64))
        self._n_dead = 0
        self._alive_sel = None

    def _alive_all(self) -> I64:
        return self._alive(NONE)

    def _alive(self, excl: I64) -> I64:
        alive = self._labels[: self._ntotal()] >= 0
        if len(excl):
            alive[excl] = False
        return np.flatnonzero(alive).astype(np.int64)

    def _alive_selector(self) -> Selector | None:
        if self._n_dead == 0:
            return None
        cached = self._alive_sel
        if cached is None:
            # Built once per mutation, not per query; concurrent readers may both build it,
            # which is harmless (the same bits), and the tuple assignment is atomic.
            cached = _bitmap(self._labels[: self._ntotal()] >= 0)
            self._alive_sel = cached
        return cached

    def _exact(self, q: F32, k: int, labels: I64) -> tuple[F32, I64]:
        """Exact top-``k`` pin ids among ``labels``, scored from the flat store."""
        # float16 only: float32 rows need no decoding, and numpy's scores keep exact ties in
        # label order, which the feed's evaluation measurably relies on (faiss's heap does not:
        # MovieLens loo HR@10 0.6225 -> 0.6076 when float32 went through faiss here).
        f16 = self._meta.dtype == "f16"
        if f16 and len(q) <= SUBSET_QUERIES_MAX and len(labels) <= SUBSET_ROWS_MAX:
            # One thread: faiss splits even one query's scan over a team, and on a busy machine
            # two spinning threads made a 10k-row scan 46 ms instead of 0.15 ms.
            with self._omp(False):
                scores, found = score_subset(self._store(), q, k, labels)
            return scores, np.where(found >= 0, self._labels[np.maximum(found, 0)], -1)
        return brute_force(q, k, self._blocks(labels, len(q)))

    def _ann_search(
        self,
        q: F32,
        k: int,
        selector: Selector | None,
        n_selected: int,
        drop: I64,
        pool: Callable[[], I64],
    ) -> tuple[F32, I64]:
        """ANN search restricted by ``selector``, then drop ``drop`` labels and complete rows.

        ``n_selected`` is how many labels the selector admits; ``pool()`` lists the labels that
        qualify, for the exact search that completes rows the ANN left short (rare, so lazy).
        """
        # The caller saw more than k selected labels; only a drop list can ask for more than all.
        fetch = min(k + len(drop), self._ntotal()) if len(drop) else k
        # Inline rather than through ``_omp``: this runs on every query.
        want = self.threads if len(q) >= PARALLEL_SEARCH_MIN else 1
        prev = faiss.omp_get_max_threads()
        if want != prev:
            faiss.omp_set_num_threads(want)
        try:
            scores, labels = self._ann_call(q, fetch, selector, n_selected)
        finally:
            if want != prev:
                faiss.omp_set_num_threads(prev)
        full = labels[0, -1] >= 0 if len(labels) == 1 else bool((labels[:, -1] >= 0).all())
        if full and fetch == k and not len(drop):
            # Every row full and nothing to drop: the usual case, two numpy calls.
            return scores, self._labels[labels]
        if len(labels) == 1 and 0 < len(drop) <= 8:
            # One query excluding a pin or two ("more like this"): on 11 values plain Python
            # beats the half-dozen numpy calls of the general path below.
            dropped = set(drop.tolist())
            keep = [j for j, label in enumerate(labels[0].tolist()) if label not in dropped]
            keep = keep[:k]
            if len(keep) == k and labels[0, keep[-1]] >= 0:
                return scores[:, keep], self._labels[labels[:, keep]]
        found = labels >= 0
        # Label -1 (padding) indexes the last slot here; np.where discards it.
        ids = np.where(found, self._labels[labels], -1)
        if len(drop):
            if len(drop) <= 8:
                for label in drop.tolist():  # cheaper than np.isin for the usual one or two
                    ids[labels == label] = -1
            else:
                ids[np.isin(labels, drop)] = -1
            scores, ids = compact_rows(scores, ids, k)
        else:
            # faiss already returns hits first and pads with (-FLT_MAX, -1).
            scores[~found] = -np.inf
        expected = min(k, n_selected - len(drop))
        # Rows are compacted (hits first), so a row is short iff its expected-th slot is empty.
        short = np.flatnonzero(ids[:, expected - 1] < 0) if expected > 0 else ids[:0, 0]
        if len(short):
            s2, i2 = self._exact(q[short], k, pool())
            scores[short], ids[short] = s2, i2
        return scores, ids

    def _blocks(self, labels: I64, m: int) -> Iterator[tuple[NDArray[Any], I64]]:
        step = block_rows(m, self._meta.dim)
        for start in range(0, len(labels), step):
            part = labels[start : start + step]
            yield self._vectors(part), self._labels[part]

    def _vectors(self, labels: I64) -> F32:
        """Stored vectors of these labels as float32."""
        with self._omp(len(labels) >= 100_000):
            return decode(self._store(), labels)

    @contextlib.contextmanager
    def _omp(self, parallel: bool) -> Iterator[None]:
        want = self.threads if parallel else 1
        prev = faiss.omp_get_max_threads()
        if want == prev:
            yield
            return
        faiss.omp_set_num_threads(want)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(prev)


def _bitmap(mask: NDArray[np.bool_]) -> Selector:
    """An ``IDSelectorBitmap`` admitting the labels where ``mask`` is true, with its bits.

    faiss reads bit ``i & 7`` of byte ``i >> 3``, i.e. little-endian bit order; the array is
    returned alongside because the selector only borrows its memory.
    """
    bits = np.packbits(mask, bitorder="little")
    return bits, faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))


def check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
