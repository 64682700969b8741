"""Vector indexes: ``open_index(kind, path, meta)`` gives a ``VectorIndex``.

Kinds: ``"auto"`` (the default: ``"hnsw"`` below 500k vectors, ``"ivf"`` from there on),
``"hnsw"`` (faiss HNSW graph), ``"ivf"`` (faiss inverted file over 8-bit codes with an exact
re-rank: recall at 1M+ pins) and ``"exact"`` (numpy brute force, the oracle).
See ``tastegraph.index.base`` for the protocol and an example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tastegraph.errors import InvalidInput
from tastegraph.index.base import INDEX_KINDS, IndexMeta, VectorIndex

__all__ = ["INDEX_KINDS", "IndexMeta", "VectorIndex", "open_index"]


def open_index(kind: str, path: Path | str, meta: IndexMeta, **params: Any) -> VectorIndex:
    """Load the index saved in ``path``, or create an empty one there if none was saved.

    Parameters
    ----------
    kind : str
        ``"auto"``, ``"hnsw"``, ``"ivf"`` or ``"exact"``.
    path : Path
        The index's own folder; nothing is written until ``save()``.
    meta : IndexMeta
        What the vectors are. A saved index whose provenance differs (model id, dimension,
        metric, settings digest, dtype, space) or that was written by another kind raises
        ``IndexMismatch`` with a hint to rebuild it (``tastegraph reindex``).
    **params
        Backend parameters, e.g. ``m``, ``ef_construction``, ``ef_search`` for ``hnsw``
        (see ``tastegraph.index.hnsw.HNSWIndex``), ``nlist``, ``nprobe`` for ``ivf``
        (``tastegraph.index.ivf.IVFIndex``); unknown ones raise ``InvalidInput``.

    Returns
    -------
    VectorIndex

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> idx = open_index("exact", Path(tempfile.mkdtemp()), IndexMeta("image", "m@1", 8))
    >>> len(idx), idx.kind
    (0, 'exact')
    >>> open_index("annoy", Path("/tmp/x"), IndexMeta("image", "m@1", 8))
    Traceback (most recent call last):
    ...
    tastegraph.errors.InvalidInput: unknown index kind 'annoy'; known kinds: auto, exact, hnsw, ivf
    """
    if kind == "exact":
        from tastegraph.index.exact import ExactIndex

        return ExactIndex.open(Path(path), meta, **params)
    if kind == "hnsw":
        # Imported here so that `import tastegraph.index` does not load faiss.
        from tastegraph.index.hnsw import HNSWIndex

        return HNSWIndex.open(Path(path), meta, **params)  # type: ignore[no-any-return]
    if kind == "auto":
        from tastegraph.index.auto import AutoIndex

        return AutoIndex.open(Path(path), meta, **params)
    if kind == "ivf":
        from tastegraph.index.ivf import IVFIndex

        return IVFIndex.open(Path(path), meta, **params)  # type: ignore[no-any-return]
    raise InvalidInput(
        f"unknown index kind {kind!r}; known kinds: {', '.join(INDEX_KINDS)}",
        hint=f"use one of: {', '.join(INDEX_KINDS)}",
        known=list(INDEX_KINDS),
    )
