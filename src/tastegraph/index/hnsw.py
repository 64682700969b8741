"""Approximate vector index: a faiss HNSW graph behind the ``VectorIndex`` contract.

Vectors are kept by faiss itself: ``IndexHNSWFlat`` (float32) or ``IndexHNSWSQ`` with
``QT_fp16`` when ``meta.dtype == "f16"`` (half the memory; on 256-d synthetic data recall@10
stayed within 0.002 of float32). The graph's ``storage`` is the flat label-indexed store that
``get``, rebuilds and exact searches read. Labels, tombstones, filters, exact fallbacks, threads
and saving are shared with the IVF backend: see ``tastegraph.index.labelled``.

faiss HNSW graphs cannot delete nodes: a tombstone stays in the graph, where it still routes
searches, until the rebuild. With a selector, ``efSearch`` is scaled by the inverse of the
selected fraction, or the beam fills with filtered-out nodes.
"""

from __future__ import annotations

import math
from typing import Any

import faiss as _faiss

from tastegraph.index.base import F32, I64, IndexMeta
from tastegraph.index.labelled import LabelledIndex, Selector, check_int
from tastegraph.index.persistence import Manifest

__all__ = ["HNSWIndex"]

# faiss's SWIG-generated stubs miss much of its Python API (SearchParametersHNSW, codes, ...).
faiss: Any = _faiss

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 80
DEFAULT_EF_SEARCH = 64


class HNSWIndex(LabelledIndex):
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
        ``m=32`` raised that to 0.905 at twice the build time (see ``bench/bench_search.py``;
        the ``ivf`` backend reaches 0.95+ there).
    ef_construction : int
        Beam width while building: higher builds slower and a better graph. At 80, 1M x 256
        float16 vectors took 6-8 minutes on the shared two-core machine (load 4-5).
    ef_search : int
        Beam width while searching (at least ``k`` is used): the recall/latency knob, settable
        at any time through the ``ef_search`` attribute.
    rebuild_fraction, exact_max, exact_fraction, overfetch_max, threads
        See ``tastegraph.index.labelled``: tombstone rebuilds, the allow-set size scored
        exactly (``max(exact_max, exact_fraction * len(index))``), the exclude-list size
        applied by over-fetching, and OpenMP threads for builds and batches.

    Examples
    --------
    >>> import numpy as np
    >>> idx = HNSWIndex(IndexMeta("image", "m@1", 2, dtype="f16"), m=8)
    >>> idx.add(np.array([5, 6]), np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    >>> idx.search(np.array([[0.8, 0.6]], np.float32), k=3)[1]
    array([[ 5,  6, -1]])
    """

    kind = "hnsw"
    PARAMS = ("m", "ef_construction", "ef_search", *LabelledIndex.PARAMS)
    # Build parameters change the graph, so a saved graph built with others is a mismatch.
    BUILD_PARAMS = ("m", "ef_construction")
    SAVED_PARAMS = ("m", "ef_construction", "ef_search")

    def __init__(
        self,
        meta: IndexMeta,
        *,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        **common: Any,
    ) -> None:
        check_int("m", m, 2, 256)
        check_int("ef_construction", ef_construction, 1, 1 << 16)
        check_int("ef_search", ef_search, 1, 1 << 16)
        super().__init__(meta, **common)
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._index = self._new_faiss_index()
        self._index_ef = -1  # efSearch last set on self._index by the hot path (-1: unknown)
        self._plain_params: dict[int, Any] = {}

    @property
    def params(self) -> dict[str, Any]:
        """Parameters recorded in the saved manifest."""
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    # -- hooks -------------------------------------------------------------------------------

    def _new_faiss_index(self) -> Any:
        d, metric = self._meta.dim, faiss.METRIC_INNER_PRODUCT
        if self._meta.dtype == "f16":
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, self.m, metric)
        else:
            index = faiss.IndexHNSWFlat(d, self.m, metric)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _store(self) -> Any:
        store = self._store_cache
        if store is None or store[0] is not self._index:
            store = (self._index, faiss.downcast_index(self._index.storage))
            self._store_cache = store
        return store[1]

    _store_cache: tuple[Any, Any] | None = None

    def _ntotal(self) -> int:
        return int(self._index.ntotal)

    def _adopt(self, index: Any, man: Manifest) -> bool:
        want = faiss.IndexHNSWSQ if self._meta.dtype == "f16" else faiss.IndexHNSWFlat
        if not isinstance(index, want):
            return False
        index.hnsw.efSearch = self.ef_search
        self._index = index
        self._index_ef = -1
        return True

    def _rebuild_from(self, vecs: F32) -> None:
        index = self._new_faiss_index()
        index.add(vecs)
        self._index = index
        self._index_ef = -1

    def _ann_call(
        self, q: F32, fetch: int, selector: Selector | None, n_selected: int
    ) -> tuple[F32, I64]:
        ntotal = self._index.ntotal
        ef = max(self.ef_search, fetch)
        if selector is not None:
            # The beam must grow as the filter thins, or it fills with filtered-out nodes.
            ef = min(math.ceil(ef * ntotal / max(n_selected, 1)), max(ntotal, ef))
        if selector is None and ef == self.ef_search:
            # The index's own efSearch is kept equal to ``ef_search``, and a call without a
            # parameter object skips ~15 us of SWIG marshalling per query.
            if self._index_ef != ef:
                self._index.hnsw.efSearch = ef
                self._index_ef = ef
            return self._index.search(q, fetch)  # type: ignore[no-any-return]
        if selector is None:
            params = self._plain_params.get(ef)
            if params is None:
                # Reused: building a SWIG parameter object costs about as much as numpy overhead.
                params = faiss.SearchParametersHNSW(efSearch=ef)
                if len(self._plain_params) < 64:
                    self._plain_params[ef] = params
        else:
            # ``selector`` keeps the bitmap and the selector alive until the search returns.
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector[1])
        return self._index.search(q, fetch, params=params)  # type: ignore[no-any-return]
