"""What the catalog's pipelines (ingest, edits, re-encoding) need from their host.

:class:`~tastegraph.catalog.service.CatalogService` is the host: it hands itself to
``ingest``, ``apply_edits`` and ``reencode``, so those functions name what they use rather than
the whole application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from tastegraph.index.spaces import SpaceIndexes
    from tastegraph.models.base import Encoders
    from tastegraph.settings import Settings
    from tastegraph.store import SQLStore

__all__ = ["CatalogContext", "Preprocess"]

# Decoded RGB image -> the image model's input (crop and resize); picklable (decode workers).
Preprocess = Callable[[Any], NDArray[np.uint8]]


class CatalogContext(Protocol):
    """The store, settings, models and indexes a catalog pipeline works with.

    Example: ``ingest(ctx, "photos/")`` reads ``ctx.settings`` for limits, encodes with
    ``ctx.encoders`` after ``ctx.preprocess``, tags with ``ctx.top_labels``, writes to
    ``ctx.store`` and ends with ``ctx.after_ingest(new_ids)``.
    """

    @property
    def store(self) -> SQLStore: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def encoders(self) -> Encoders: ...

    @property
    def indexes(self) -> SpaceIndexes: ...

    @property
    def preprocess(self) -> Preprocess: ...

    def top_labels(self, probs: NDArray[np.float32], k: int = 3) -> list[list[tuple[str, float]]]:
        """The confident model labels of each image (they become tags)."""
        ...

    def after_ingest(self, new_ids: list[int]) -> None:
        """Bring derived state (duplicates, projection, indexes, feeds) up to the new pins."""
        ...
