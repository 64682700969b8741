"""What search needs from the rest of the system, as narrow structural protocols.

``SQLStore`` satisfies :class:`SearchStore` and ``index.spaces.SpaceIndexes`` satisfies
:class:`SearchIndexes`; a test can pass small fakes instead::

    class Pins:
        def get_pin(self, pin_id): ...
        def filter_ids(self, *, board=None, tag=None, attributes=None): ...
        def fts_search(self, text, limit=100): ...
        def dup_groups(self): ...
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tastegraph.index import VectorIndex

__all__ = ["SearchIndexes", "SearchStore"]


class SearchStore(Protocol):
    """Pins by id, attribute filters, keyword search and near-duplicate groups."""

    def get_pin(self, pin_id: int) -> Any: ...

    def filter_ids(
        self,
        *,
        board: str | None = None,
        tag: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> NDArray[np.int64] | None: ...

    def fts_search(self, text: str, limit: int = 100) -> list[tuple[int, float]]: ...

    def dup_groups(self) -> dict[int, list[int]]: ...


class SearchIndexes(Protocol):
    """The vector index of each space, and the mapping of model vectors into it."""

    def get(self, space: str) -> VectorIndex: ...

    def vector_of(self, space: str, pin_id: int) -> NDArray[np.float32]: ...

    def to_index_space(self, space: str, vecs: NDArray[np.float32]) -> NDArray[np.float32]: ...
