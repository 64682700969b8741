"""Approximate vector index: a faiss HNSW graph behind the ``VectorIndex`` contract.

Layout
------
faiss numbers vectors 0, 1, 2, ... in insertion order ("labels"); ``_labels[label]`` is the pin id
stored there, or ``-1`` for a tombstone, and an ``IdMap`` goes the other way. Vectors are kept by
faiss itself: ``IndexHNSWFlat`` (float32) or ``IndexHNSWSQ`` with ``QT_fp16`` when
``meta.dtype == "f16"`` (half the memory; on 256-d synthetic data recall@10 stayed within
0.002 of float32).

Removal and replacement
-----------------------
faiss HNSW graphs cannot delete nodes. ``remove`` (and re-adding an id, which is a remove plus an
add) turns the old label into a tombstone: it stays in the graph, where it still routes searches,
but an ``IDSelectorBitmap`` of live labels keeps it out of results. Once tombstones exceed
``rebuild_fraction`` of the graph (20% by default) the graph is rebuilt from the live vectors, in
the call that crossed the threshold. That call then costs a full build (minutes at 1M vectors); set
``rebuild_fraction=1.0`` and call ``compact()`` from a background job to control when it happens.

Filtered search
---------------
HNSW explores about ``efSearch`` nodes whatever the filter, so with a restrictive ``allow`` set most
visited nodes are filtered out and recall collapses. Small allow sets (up to
``max(exact_max, exact_fraction * len(index))`` ids) are therefore scored exactly, which is also
cheaper at that size; larger ones run the graph search with a bitmap selector and ``efSearch``
scaled by the inverse of the allowed fraction. ``exclude`` lists of up to ``overfetch_max`` ids are
handled by fetching that many extra results and dropping them, which keeps the common "exclude the
query pin itself" case close to the cost of an unfiltered search. Rows that still come back short
are completed by exact search, so ``k`` results are returned whenever ``k`` ids qualify.

Threads
-------
A single query, or a handful, runs with one OpenMP thread: a team of threads only adds fork/join
and, on a busy machine, threads spinning against each other (recent faiss already skips the
parallel region for exactly one query; the setting also covers small batches). Larger batches
of queries and bulk adds use ``threads`` (default: faiss's default, all cores).
``omp_set_num_threads`` applies to the calling thread only, so concurrent searches from several
Python threads do not disturb each other. Exact scoring of a few queries avoids BLAS threads for
the same reason (see ``tastegraph.index.topk._dot``).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import IndexMismatch, InvalidInput, NotFound
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
from tastegraph.index.topk import block_rows, brute_force, compact_rows

__all__ = ["HNSWIndex"]

# faiss's SWIG-generated stubs miss much of its Python API (SearchParametersHNSW, codes, ...).
faiss: Any = _faiss

_NONE = np.zeros(0, np.int64)
_NONE.flags.writeable = False

# Build parameters change the graph, so a saved graph built with others is a mismatch.
BUILD_PARAMS = ("m", "ef_construction")
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 80
DEFAULT_EF_SEARCH = 64
# Below these sizes an OpenMP team costs more than it saves (fork/join, and spinning threads
# fight for the cores when the machine is busy): on the busy 2-core dev machine 400 vectors were
# added in 45-70 ms on one thread and 140-290 ms on two.
PARALLEL_ADD_MIN = 2048
PARALLEL_SEARCH_MIN = 8


class HNSWIndex:
    """faiss HNSW index with ids, deletion, filters and atomic persistence.

    Parameters
    ----------
    meta : IndexMeta
        Provenance; ``meta.dtype == "f16"`` stores vectors as float16 (``IndexHNSWSQ``).
    path : Path, optional
        Default folder for ``save``.
    m : int
        Graph degree (neighbours per node; level 0 keeps ``2 * m``), ~150 bytes per vector at
        16. With ``ef_search=64`` on the 256-d clustered benchmark data: recall@10 0.987 at 100k,
        0.97 at 300k, but only 0.82-0.88 at 1M, where ~9% of queries end in a sibling cluster;
        ``m=32`` raised that to 0.905 at twice the build time (see ``bench/bench_search.py``).
    ef_construction : int
        Beam width while building: higher builds slower and a better graph. At 80, 1M x 256
        float16 vectors took 6-8 minutes on the shared two-core machine (load 4-5).
    ef_search : int
        Beam width while searching (at least ``k`` is used): the recall/latency knob, settable
        at any time through the ``ef_search`` attribute.
    rebuild_fraction : float
        Rebuild the graph once tombstones exceed this fraction of its nodes.
    exact_max, exact_fraction : int, float
        ``allow`` sets up to ``max(exact_max, exact_fraction * len(index))`` ids are scored
        exactly instead of through the graph.
    overfetch_max : int
        ``exclude`` lists up to this long are applied by over-fetching rather than a selector.
    threads : int, optional
        OpenMP threads for builds and batches of queries (one query always uses one thread).

    Examples
    --------
    >>> import numpy as np
    >>> idx = HNSWIndex(IndexMeta("image", "m@1", 2, dtype="f16"), m=8)
    >>> idx.add(np.array([5, 6]), np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    >>> idx.search(np.array([[0.8, 0.6]], np.float32), k=3)[1]
    array([[ 5,  6, -1]])
    """

    kind = "hnsw"

    def __init__(
        self,
        meta: IndexMeta,
        *,
        path: Path | None = None,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        rebuild_fraction: float = 0.2,
        exact_max: int = 4096,
        exact_fraction: float = 0.02,
        overfetch_max: int = 256,
        threads: int | None = None,
    ) -> None:
        _check_int("m", m, 2, 256)
        _check_int("ef_construction", ef_construction, 1, 1 << 16)
        _check_int("ef_search", ef_search, 1, 1 << 16)
        _check_int("exact_max", exact_max, 0, 1 << 40)
        _check_int("overfetch_max", overfetch_max, 0, 1 << 40)
        if threads is not None:
            _check_int("threads", threads, 1, 4096)
        if not 0.0 < rebuild_fraction <= 1.0:
            raise InvalidInput(f"rebuild_fraction must be in (0, 1], got {rebuild_fraction!r}")
        if not 0.0 <= exact_fraction <= 1.0:
            raise InvalidInput(f"exact_fraction must be in [0, 1], got {exact_fraction!r}")
        self._meta = meta
        self.path = Path(path) if path is not None else None
        self.watermark = 0
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.rebuild_fraction = rebuild_fraction
        self.exact_max = exact_max
        self.exact_fraction = exact_fraction
        self.overfetch_max = overfetch_max
        self.threads = threads or faiss.omp_get_max_threads()
        self._dtype = np.float16 if meta.dtype == "f16" else np.float32
        self._index = self._new_faiss_index()
        self._index_ef = -1  # efSearch last set on self._index by the hot path (-1: unknown)
        self._labels: I64 = np.zeros(0, np.int64)  # capacity-grown; valid up to ntotal
        self._map = IdMap()
        self._n_dead = 0
        self._alive_sel: tuple[NDArray[np.uint8], Any] | None = None
        self._view_ok: bool | None = None
        self._plain_params: dict[int, Any] = {}
        self._generation = 0
        self._lock = RWLock()
        self._save_lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, meta: IndexMeta, **params: Any) -> HNSWIndex:
        """Load the index saved in ``path`` or create an empty one; ``params`` as the constructor.

        Build parameters given explicitly must match a saved graph's (else ``IndexMismatch``);
        omitted ones are taken from the saved graph, or the defaults for a new one.
        """
        path = Path(path)
        known = {
            "m",
            "ef_construction",
            "ef_search",
            "rebuild_fraction",
            "exact_max",
            "exact_fraction",
            "overfetch_max",
            "threads",
        }
        unknown = set(params) - known
        if unknown:
            raise InvalidInput(
                f"unknown parameters for the hnsw index: {', '.join(sorted(unknown))}",
                hint=f"known parameters: {', '.join(sorted(known))}",
            )
        given = {k: v for k, v in params.items() if v is not None}

        def load(man: Manifest) -> HNSWIndex:
            check_manifest(man, cls.kind, meta, path)
            for name in BUILD_PARAMS:
                saved = man.params.get(name)
                if name in given and saved is not None and given[name] != saved:
                    raise IndexMismatch(
                        f"index at {path} was built with {name}={saved}, not {given[name]}",
                        hint=f"open it without {name} or {REINDEX_HINT}",
                    )
            merged = {k: man.params[k] for k in (*BUILD_PARAMS, "ef_search") if k in man.params}
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
            want = faiss.IndexHNSWSQ if meta.dtype == "f16" else faiss.IndexHNSWFlat
            if not isinstance(index, want) or index.d != meta.dim or index.ntotal != len(labels):
                raise IndexMismatch(
                    f"index files in {path} are inconsistent with their manifest",
                    hint=REINDEX_HINT,
                )
            index.hnsw.efSearch = idx.ef_search
            idx._index = index
            idx._index_ef = -1
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
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    @property
    def tombstones(self) -> int:
        """Removed or replaced vectors still in the graph (until the next rebuild)."""
        return self._n_dead

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, (int, np.integer)) or isinstance(id, bool) or id < 0:
            return False
        return bool(self._map.lookup(np.array([id], np.int64))[0] >= 0)

    def ids(self) -> I64:
        with self._lock.read():
            labels = self._labels[: self._index.ntotal]
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
            start = self._index.ntotal
            with self._omp(len(x) >= PARALLEL_ADD_MIN):
                self._index.add(x)
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
            labels = self._map.lookup(ids_)
            missing = ids_[labels < 0]
            if len(missing):
                raise NotFound(
                    f"{len(missing)} ids are not in the {self._meta.space} index",
                    missing=missing[:20].tolist(),
                )
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
                    return self._graph_search(
                        q, k, self._alive_selector(), n_alive, _NONE, self._alive_all
                    )
        allow_ = None if allow is None else as_ids(allow, "allow")
        exclude_ = None if exclude is None else as_ids(exclude, "exclude")
        with self._lock.read():
            n_alive = len(self._map)
            if n_alive == 0 or len(q) == 0:
                return padded(len(q), k)
            excl = _NONE
            if exclude_ is not None and len(exclude_):
                excl = self._map.lookup(exclude_)
                excl = excl[excl >= 0]
                if len(excl) > 1:
                    excl = np.unique(excl)
            if allow_ is not None:
                labels = self._map.lookup(allow_)
                ntotal = self._index.ntotal
                if len(labels) * 16 < ntotal:
                    cand = np.unique(labels[labels >= 0])
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
                    return brute_force(q, k, self._blocks(cand, len(q)))
                if mask is None:
                    mask = np.zeros(ntotal, bool)
                    mask[cand] = True
                return self._graph_search(q, k, _bitmap(mask), len(cand), excl[:0], lambda: cand)
            if n_alive - len(excl) <= k:
                return brute_force(q, k, self._blocks(self._alive(excl), len(q)))
            if len(excl) <= self.overfetch_max:
                return self._graph_search(
                    q, k, self._alive_selector(), n_alive, excl, lambda: self._alive(excl)
                )
            mask = self._labels[: self._index.ntotal] >= 0
            mask[excl] = False
            return self._graph_search(
                q, k, _bitmap(mask), n_alive - len(excl), excl[:0], lambda: self._alive(excl)
            )

    def save(self, path: Path | None = None) -> Path:
        folder = Path(path) if path is not None else self.path
        if folder is None:
            raise InvalidInput("no folder to save the index to", hint="pass save(path)")
        # Searches go on during a save (read side); a second save waits (generation numbers).
        with self._save_lock, self._lock.read():
            labels = self._labels[: self._index.ntotal]
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
        """Rebuild the graph from the live vectors, dropping every tombstone (a full build)."""
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

    # -- internals ---------------------------------------------------------------------------

    def _new_faiss_index(self) -> Any:
        d, metric = self._meta.dim, faiss.METRIC_INNER_PRODUCT
        if self._meta.dtype == "f16":
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, self.m, metric)
        else:
            index = faiss.IndexHNSWFlat(d, self.m, metric)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

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
        if self._n_dead and self._n_dead > self.rebuild_fraction * self._index.ntotal:
            self._rebuild()

    def _rebuild(self) -> None:
        live = self._alive(_NONE)
        vecs = self._vectors(live)
        ids = self._labels[live]
        index = self._new_faiss_index()
        with self._omp(len(vecs) >= PARALLEL_ADD_MIN):
            index.add(vecs)
        self._index = index
        self._index_ef = -1
        self._labels = np.full(max(len(ids), 1024), -1, np.int64)
        self._labels[: len(ids)] = ids
        self._map = IdMap.from_arrays(ids, np.arange(len(ids), dtype=np.int64))
        self._n_dead = 0
        self._alive_sel = None

    def _alive_all(self) -> I64:
        return self._alive(_NONE)

    def _alive(self, excl: I64) -> I64:
        alive = self._labels[: self._index.ntotal] >= 0
        if len(excl):
            alive[excl] = False
        return np.flatnonzero(alive).astype(np.int64)

    def _alive_selector(self) -> tuple[NDArray[np.uint8], Any] | None:
        if self._n_dead == 0:
            return None
        cached = self._alive_sel
        if cached is None:
            # Built once per mutation, not per query; concurrent readers may both build it,
            # which is harmless (the same bits), and the tuple assignment is atomic.
            cached = _bitmap(self._labels[: self._index.ntotal] >= 0)
            self._alive_sel = cached
        return cached

    def _graph_search(
        self,
        q: F32,
        k: int,
        selector: tuple[NDArray[np.uint8], Any] | None,
        n_selected: int,
        drop: I64,
        pool: Callable[[], I64],
    ) -> tuple[F32, I64]:
        """HNSW search restricted by ``selector``, then drop ``drop`` labels and complete rows.

        ``n_selected`` is how many labels the selector admits; ``pool()`` lists the labels that
        qualify, for the exact search that completes rows the graph left short (rare, so lazy).
        """
        ntotal = self._index.ntotal
        fetch = min(k + len(drop), ntotal)
        ef = max(self.ef_search, fetch)
        if selector is not None:
            # The beam must grow as the filter thins, or it fills with filtered-out nodes.
            ef = min(math.ceil(ef * ntotal / max(n_selected, 1)), max(ntotal, ef))
        if selector is None and ef == self.ef_search:
            # The index's own efSearch is kept equal to ``ef_search`` (see the property), and a
            # call without a parameter object skips ~15 us of SWIG marshalling per query.
            params = None
            if self._index_ef != ef:
                self._index.hnsw.efSearch = ef
                self._index_ef = ef
        elif selector is None:
            params = self._plain_params.get(ef)
            if params is None:
                # Reused: building a SWIG parameter object costs about as much as numpy overhead.
                params = faiss.SearchParametersHNSW(efSearch=ef)
                if len(self._plain_params) < 64:
                    self._plain_params[ef] = params
        else:
            # ``selector`` keeps the bitmap and the selector alive until the search returns.
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector[1])
        # Inline rather than through ``_omp``: this runs on every query.
        want = self.threads if len(q) >= PARALLEL_SEARCH_MIN else 1
        prev = faiss.omp_get_max_threads()
        if want != prev:
            faiss.omp_set_num_threads(want)
        try:
            if params is None:
                scores, labels = self._index.search(q, fetch)
            else:
                scores, labels = self._index.search(q, fetch, params=params)
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
            s2, i2 = brute_force(q[short], k, self._blocks(pool(), len(short)))
            scores[short], ids[short] = s2, i2
        return scores, ids

    def _blocks(self, labels: I64, m: int) -> Iterator[tuple[NDArray[Any], I64]]:
        step = block_rows(m, self._meta.dim)
        for start in range(0, len(labels), step):
            part = labels[start : start + step]
            yield self._vectors(part), self._labels[part]

    def _vectors(self, labels: I64) -> F32:
        """Stored vectors of these labels as float32."""
        if len(labels) == 0:
            return np.zeros((0, self._meta.dim), np.float32)
        view = self._storage_view()
        if view is None:
            return np.asarray(self._index.reconstruct_batch(labels), np.float32)
        rows = view[labels]
        if rows.dtype == np.float32:
            return rows
        # numpy converts float16 one value at a time (7 ms for 10k x 256); faiss's SIMD decoder
        # of the same codes is ~2x faster and gives identical floats.
        storage = faiss.downcast_index(self._index.storage)
        with self._omp(len(labels) >= 100_000):
            return np.asarray(storage.sa_decode(rows.view(np.uint8)), np.float32)

    def _storage_view(self) -> NDArray[Any] | None:
        """A zero-copy ``(ntotal, dim)`` view of faiss's vector storage, or None if unsupported.

        Both ``IndexFlat`` and ``ScalarQuantizer`` with ``QT_fp16`` store each vector as ``dim``
        plain floats of their type, so the codes can be read in place instead of copied through
        ``reconstruct_batch``. The view dangles once faiss reallocates on ``add``: only use it
        under the lock and never keep it. Verified once against ``reconstruct``.
        """
        n = self._index.ntotal
        if n == 0 or self._view_ok is False:
            return None
        d = self._meta.dim
        itemsize = np.dtype(self._dtype).itemsize
        try:
            storage = faiss.downcast_index(self._index.storage)
            if storage.code_size != d * itemsize:
                self._view_ok = False
                return None
            raw = faiss.rev_swig_ptr(storage.codes.data(), n * d * itemsize)
        except (AttributeError, TypeError, RuntimeError):
            self._view_ok = False
            return None
        view = np.asarray(raw).view(self._dtype).reshape(n, d)
        if self._view_ok is None:
            probe = np.asarray(self._index.reconstruct(n - 1), np.float32)
            self._view_ok = bool(np.array_equal(view[n - 1].astype(np.float32), probe))
            if not self._view_ok:
                return None
        return view

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


def _bitmap(mask: NDArray[np.bool_]) -> tuple[NDArray[np.uint8], Any]:
    """An ``IDSelectorBitmap`` admitting the labels where ``mask`` is true, with its bits.

    faiss reads bit ``i & 7`` of byte ``i >> 3``, i.e. little-endian bit order; the array is
    returned alongside because the selector only borrows its memory.
    """
    bits = np.packbits(mask, bitorder="little")
    return bits, faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
