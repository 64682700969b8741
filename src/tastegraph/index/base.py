"""The ``VectorIndex`` protocol and its provenance record (``IndexMeta``).

What both backends share lives beside it: ``arrays`` (input checks, the id map), ``topk``
(exact scoring), ``locking`` (the readers-writer lock) and ``persistence`` (atomic saves and the
watermark).

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

Conventions every backend follows (``tests/contract/index/test_index.py`` checks them):

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

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tastegraph.errors import InvalidInput

__all__ = [
    "F32",
    "I64",
    "INDEX_KINDS",
    "REINDEX_HINT",
    "IndexMeta",
    "VectorIndex",
]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

INDEX_KINDS = ("auto", "exact", "hnsw", "ivf")
METRICS = ("ip",)
DTYPES = ("f32", "f16")
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
    (numpy brute force, the test oracle), ``"hnsw"`` (faiss HNSW graph), ``"ivf"`` (faiss
    inverted file with an exact re-rank, for large catalogs) or ``"auto"`` (the default: HNSW,
    rebuilt as IVF once it holds 500k vectors).

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
