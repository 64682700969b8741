"""The default index kind: HNSW for small and mid-sized catalogs, IVF from ``ivf_from`` pins on.

Measured (``bench/bench_search.py``, ``docs/benchmarks.md`` "Vector search"): on the synthetic
clustered set HNSW's recall@10 falls from 0.987 at 100k to 0.82 at 1M, where the IVF backend finds
all of the true top 10; on 3,593 real clothing features, though, a trained IVF (64 lists, 16
probed) found 0.985 against HNSW's 0.996. So each backend serves the sizes where it measured best.

``open_index("auto", path, meta)`` opens whatever kind was saved in ``path`` (an older ``hnsw``
folder keeps working as it is), or starts an HNSW index. The ``add`` that takes an HNSW index to
``ivf_from`` pins rebuilds it as an IVF index from its own stored vectors (a one-off build: about
a minute at 500k on two busy cores; searches meanwhile run on the old index). Saved files are the
inner backend's own, so ``kind`` is ``"hnsw"`` or ``"ivf"``, never ``"auto"``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from numpy.typing import ArrayLike

from tastegraph.errors import InvalidInput
from tastegraph.index.base import F32, I64, IndexMeta
from tastegraph.index.hnsw import HNSWIndex
from tastegraph.index.ivf import IVFIndex
from tastegraph.index.labelled import LabelledIndex, check_int
from tastegraph.index.persistence import read_manifest

__all__ = ["IVF_FROM", "AutoIndex"]

IVF_FROM = 500_000
_STEP = 100_000


class AutoIndex:
    """A ``VectorIndex`` that is an HNSW index below ``ivf_from`` vectors and an IVF one above.

    Parameters are passed to the backend in use (unknown ones raise ``InvalidInput``); only
    ``ivf_from`` is this class's own.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idx = AutoIndex.open(None, IndexMeta("image", "m@1", 8), ivf_from=300)
    >>> idx.add(np.arange(200), rng.standard_normal((200, 8)).astype(np.float32))
    >>> idx.kind
    'hnsw'
    >>> idx.add(np.arange(200, 400), rng.standard_normal((200, 8)).astype(np.float32))
    >>> idx.kind, len(idx)
    ('ivf', 400)
    """

    def __init__(self, inner: LabelledIndex, *, ivf_from: int, params: dict[str, Any]) -> None:
        self._inner = inner
        self.ivf_from = ivf_from
        self._params = params
        self._write = threading.Lock()

    @classmethod
    def open(
        cls, path: Path | None, meta: IndexMeta, *, ivf_from: int = IVF_FROM, **params: Any
    ) -> AutoIndex:
        check_int("ivf_from", ivf_from, 1, 1 << 40)
        unknown = set(params) - set(HNSWIndex.PARAMS) - set(IVFIndex.PARAMS)
        if unknown:
            raise InvalidInput(
                f"unknown parameters for the auto index: {', '.join(sorted(unknown))}",
                hint="known parameters: ivf_from and those of the hnsw and ivf indexes",
            )
        man = read_manifest(Path(path)) if path is not None else None
        backend: type[LabelledIndex] = IVFIndex if man and man.kind == "ivf" else HNSWIndex
        mine = {k: v for k, v in params.items() if k in backend.PARAMS}
        if path is None:
            inner: LabelledIndex = backend(meta, **mine)
        else:
            # An unknown saved kind reaches the backend's own check: IndexMismatch + reindex.
            inner = backend.open(Path(path), meta, **mine)
        return cls(inner, ivf_from=ivf_from, params=params)

    # -- VectorIndex ---------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """The backend in use: ``"hnsw"`` or ``"ivf"`` (what its saved files say)."""
        return self._inner.kind

    @kind.setter
    def kind(self, value: str) -> None:
        raise AttributeError("an auto index's kind is its backend's")

    @property
    def inner(self) -> LabelledIndex:
        """The backend in use (for benchmarks and stats)."""
        return self._inner

    @property
    def meta(self) -> IndexMeta:
        return self._inner.meta

    @property
    def watermark(self) -> int:
        return int(self._inner.watermark)

    @watermark.setter
    def watermark(self, value: int) -> None:
        self._inner.watermark = value

    @property
    def path(self) -> Path | None:
        return self._inner.path

    @path.setter
    def path(self, value: Path | None) -> None:
        self._inner.path = value

    def add(self, ids: ArrayLike, vecs: ArrayLike) -> None:
        with self._write:
            self._inner.add(ids, vecs)
            if isinstance(self._inner, HNSWIndex) and len(self._inner) >= self.ivf_from:
                self._inner = self._as_ivf(self._inner)

    def remove(self, ids: ArrayLike) -> int:
        with self._write:
            return self._inner.remove(ids)

    def search(
        self,
        queries: ArrayLike,
        k: int,
        allow: ArrayLike | None = None,
        exclude: ArrayLike | None = None,
    ) -> tuple[F32, I64]:
        return self._inner.search(queries, k, allow=allow, exclude=exclude)

    def get(self, ids: ArrayLike) -> F32:
        return self._inner.get(ids)

    def ids(self) -> I64:
        return self._inner.ids()

    def save(self, path: Path | None = None) -> Path:
        return self._inner.save(path)

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, id: object) -> bool:
        return id in self._inner

    def __getattr__(self, name: str) -> Any:
        # Backend extras (nbytes, compact, faiss_index, tombstones, ef_search, nprobe...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    # -- internals -------------------------------------------------------------------------

    def _as_ivf(self, old: HNSWIndex) -> IVFIndex:
        """An IVF index holding ``old``'s vectors, ids, watermark and folder."""
        mine = {k: v for k, v in self._params.items() if k in IVFIndex.PARAMS}
        new = IVFIndex(old.meta, path=old.path, **mine)
        ids = old.ids()
        # Train once, on all of them (not on the first chunk and again after growing 8-fold).
        train_min, new.train_min = new.train_min, max(new.train_min, len(ids))
        for start in range(0, len(ids), _STEP):
            part = ids[start : start + _STEP]
            new.add(part, old.get(part))
        new.train_min = train_min
        new.watermark = old.watermark
        return new
