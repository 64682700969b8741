"""Approximate vector index: faiss IVF over 8-bit codes, re-ranked exactly, for large catalogs.

Structure
---------
Every vector is stored once in a flat, label-indexed store (float32 ``IndexFlat``, or float16
``IndexScalarQuantizer`` when ``meta.dtype == "f16"``). Once ``train_min`` vectors are in, an
inverted file (``IndexIVFScalarQuantizer``, 8-bit codes, ``nlist`` k-means lists) is trained on
a sample of them and holds a second, compact copy; a search scans the ``nprobe`` lists nearest to
the query and re-scores its best ``k_factor * k`` candidates exactly from the flat store
(``faiss.IndexRefine``). Until then every search is exact, by faiss over the flat store in place
(below 20k float32 vectors of 256-d that costs ~0.5 ms).

Why: on the 256-d clustered benchmark set at 1M pins, HNSW (M 16, efSearch 64) finds 0.82 of the
true top 10 because ~9% of queries' greedy descents end in a sibling cluster; an inverted file
probes the nearest lists directly and found all of them (``bench/bench_search.py --configs``,
``docs/benchmarks.md``), at ~800 bytes per float16 pin (512 flat + 256 codes + ids).

Growth and removal
------------------
``nlist`` defaults to the power of two nearest ``4 * sqrt(n)`` at training time (4096 at 1M);
when the index has grown 8-fold since, or tombstones pass ``rebuild_fraction``, it is rebuilt
and retrained from the flat store. Tombstones, filters, exact fallbacks and saving are shared
with the HNSW backend (``tastegraph.index.labelled``).
"""

from __future__ import annotations

import math
from typing import Any

import faiss as _faiss
import numpy as np

from tastegraph.index.base import F32, I64, IndexMeta
from tastegraph.index.flatcodes import decode, new_flat
from tastegraph.index.labelled import LabelledIndex, Selector, check_int
from tastegraph.index.persistence import Manifest

__all__ = ["IVFIndex", "auto_nlist"]

faiss: Any = _faiss

DEFAULT_NPROBE = 16
DEFAULT_K_FACTOR = 4
DEFAULT_TRAIN_MIN = 20_000
TRAIN_POINTS_PER_LIST = 40  # faiss warns below 39 points per centroid
KMEANS_ITERATIONS = 10
RETRAIN_GROWTH = 8


def auto_nlist(n: int) -> int:
    """The power of two nearest ``4 * sqrt(n)``, at least 16, with 39+ points per list.

    >>> auto_nlist(1_000_000), auto_nlist(100_000), auto_nlist(20_000)
    (4096, 1024, 512)
    """
    target = 4 * math.sqrt(max(n, 1))
    nlist = 1 << max(4, round(math.log2(target)))
    while nlist > 16 and nlist * 39 > n:
        nlist //= 2
    return nlist


class IVFIndex(LabelledIndex):
    """faiss IVF-SQ8 index with an exact re-rank, ids, deletion, filters and atomic persistence.

    Parameters
    ----------
    meta : IndexMeta
        Provenance; ``meta.dtype == "f16"`` keeps the flat store in float16.
    path : Path, optional
        Default folder for ``save``.
    nlist : int
        Inverted lists; 0 (default) picks ``auto_nlist(n)`` when training.
    nprobe : int
        Lists scanned per query (scaled up under a filter): the recall/latency knob, settable
        at any time through the ``nprobe`` attribute.
    k_factor : int
        Candidates re-scored exactly per result wanted.
    train_min : int
        Vectors needed before the inverted file is trained; below it searches are exact.
    rebuild_fraction, exact_max, exact_fraction, overfetch_max, threads
        As for ``tastegraph.index.hnsw.HNSWIndex`` (see ``tastegraph.index.labelled``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((400, 8)).astype(np.float32)
    >>> idx = IVFIndex(IndexMeta("image", "m@1", 8), train_min=200, nlist=4, nprobe=4)
    >>> idx.add(np.arange(400), x)
    >>> idx.trained, int(idx.search(x[:1], k=2)[1][0, 0])
    (True, 0)
    """

    kind = "ivf"
    PARAMS = ("nlist", "nprobe", "k_factor", "train_min", *LabelledIndex.PARAMS)
    BUILD_PARAMS = ("nlist",)
    SAVED_PARAMS = ("nlist", "nprobe", "k_factor", "train_min")

    def __init__(
        self,
        meta: IndexMeta,
        *,
        nlist: int = 0,
        nprobe: int = DEFAULT_NPROBE,
        k_factor: int = DEFAULT_K_FACTOR,
        train_min: int = DEFAULT_TRAIN_MIN,
        **common: Any,
    ) -> None:
        check_int("nlist", nlist, 0, 1 << 20)
        check_int("nprobe", nprobe, 1, 1 << 20)
        check_int("k_factor", k_factor, 1, 1024)
        check_int("train_min", train_min, 1, 1 << 40)
        super().__init__(meta, **common)
        self.nlist = nlist
        self.nprobe = nprobe
        self.k_factor = k_factor
        self.train_min = max(train_min, 39 * max(nlist, 1))
        self._flat: Any = new_flat(meta.dim, meta.dtype)
        self._ivf: Any = None
        self._trained_on = 0
        self._index = self._flat
        self._defaults = (-1, -1)  # (nprobe, k_factor) last set on the faiss objects

    @property
    def params(self) -> dict[str, Any]:
        """Parameters recorded in the saved manifest."""
        return {
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "k_factor": self.k_factor,
            "train_min": self.train_min,
            "trained_nlist": int(self._ivf.nlist) if self._ivf is not None else 0,
            "trained_on": self._trained_on,
        }

    @property
    def trained(self) -> bool:
        """Whether the inverted file exists (else every search is exact)."""
        return self._ivf is not None

    # -- hooks -------------------------------------------------------------------------------

    def _store(self) -> Any:
        return self._flat

    def _ntotal(self) -> int:
        return int(self._flat.ntotal)

    def _add_vectors(self, x: F32) -> None:
        self._index.add(x)  # the refine index adds to both the inverted file and the store
        if self._ivf is None and self._flat.ntotal >= self.train_min:
            self._train()

    def _maybe_rebuild(self) -> None:
        super()._maybe_rebuild()
        if self._ivf is not None and self._ntotal() >= RETRAIN_GROWTH * self._trained_on:
            self._rebuild()  # the lists were sized for a much smaller index

    def _rebuild_from(self, vecs: F32) -> None:
        self._flat = new_flat(self._meta.dim, self._meta.dtype)
        self._flat.add(vecs)
        self._ivf = None
        self._index = self._flat
        self._trained_on = 0
        if len(vecs) >= self.train_min:
            self._train()

    def _train(self) -> None:
        """Train an inverted file on a sample of the store and fill it with every vector."""
        n = int(self._flat.ntotal)
        nlist = self.nlist or auto_nlist(n)
        d = self._meta.dim
        quantizer = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.niter = KMEANS_ITERATIONS
        rng = np.random.default_rng(n)
        size = min(n, TRAIN_POINTS_PER_LIST * nlist)
        sample = np.sort(rng.choice(n, size, replace=False)).astype(np.int64)
        ivf.train(decode(self._flat, sample))
        step = 100_000
        for start in range(0, n, step):
            ivf.add(decode(self._flat, np.arange(start, min(n, start + step), dtype=np.int64)))
        refine = faiss.IndexRefine(ivf, self._flat)
        self._ivf, self._index, self._trained_on = ivf, refine, n
        self._defaults = (-1, -1)

    def _adopt(self, index: Any, man: Manifest) -> bool:
        flat_type = type(new_flat(self._meta.dim, self._meta.dtype))
        if isinstance(index, faiss.IndexRefine):
            base = faiss.downcast_index(index.base_index)
            flat = faiss.downcast_index(index.refine_index)
            if not isinstance(base, faiss.IndexIVFScalarQuantizer) or type(flat) is not flat_type:
                return False
            self._ivf, self._flat, self._index = base, flat, index
            self._trained_on = int(man.params.get("trained_on") or index.ntotal)
        elif type(index) is flat_type:
            self._ivf, self._flat, self._index = None, index, index
        else:
            return False
        self._defaults = (-1, -1)
        return True

    def _ann_call(
        self, q: F32, fetch: int, selector: Selector | None, n_selected: int
    ) -> tuple[F32, I64]:
        if self._ivf is None:
            # Not trained yet (a small index): the flat store's exact search, in place.
            if selector is None:
                return self._flat.search(q, fetch)  # type: ignore[no-any-return]
            params = faiss.SearchParameters(sel=selector[1])
            return self._flat.search(q, fetch, params=params)  # type: ignore[no-any-return]
        if selector is None:
            # Defaults set on the faiss objects: a call without parameter objects skips the
            # SWIG marshalling of two of them per query (and no SWIG attribute is read here).
            if self._defaults != (self.nprobe, self.k_factor):
                self._ivf.nprobe = min(self.nprobe, int(self._ivf.nlist))
                self._index.k_factor = float(self.k_factor)
                self._defaults = (self.nprobe, self.k_factor)
            return self._index.search(q, fetch)  # type: ignore[no-any-return]
        nlist = int(self._ivf.nlist)
        nprobe = min(self.nprobe, nlist)
        # Under a filter, probe proportionally more lists: each holds fewer admitted vectors.
        ntotal = self._ntotal()
        nprobe = min(nlist, math.ceil(nprobe * ntotal / max(n_selected, 1)))
        base = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector[1])
        params = faiss.IndexRefineSearchParameters(
            k_factor=float(self.k_factor), base_index_params=base
        )
        return self._index.search(q, fetch, params=params)  # type: ignore[no-any-return]
