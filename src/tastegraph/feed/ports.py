"""What the feed service needs from the rest of the system, as narrow structural protocols.

``SQLStore`` satisfies :class:`FeedStore` and ``index.spaces.SpaceIndexes`` satisfies
:class:`FeedIndexes`. The service gets them through its constructor (indexes and encoders as
providers, made on first need), never the whole application::

    FeedService(store, indexes=lambda: spaces, encoders=lambda: encoders,
                settings=settings, bus=EventBus())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tastegraph.index import VectorIndex
from tastegraph.store.ports import ArtefactInfo, PinMeta

__all__ = ["FeedIndexes", "FeedStore"]


class FeedStore(Protocol):
    """Pins and their vectors, the catalog change log, the event log, model records and the
    artefact files a trained model is published as."""

    def pin_meta(self, ids: Sequence[int] | None = None) -> list[PinMeta]: ...

    def user_ids(self, limit: int) -> list[int]: ...

    def event_columns(
        self, after_id: int = 0, limit: int | None = None
    ) -> list[tuple[Any, ...]]: ...

    def get_pin(self, pin_id: int) -> Any: ...

    def get_user(self, user_id: int) -> dict[str, Any]: ...

    def get_vectors(
        self, space: str, ids: Any = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]: ...

    def last_change(self) -> int: ...

    def events_generation(self) -> str | None: ...

    def get_kv(self, key: str, default: Any = None) -> Any: ...

    def set_kv(self, key: str, value: Any) -> None: ...

    def put_artefact(
        self, name: str, data: bytes, provenance: Mapping[str, Any] | None = None
    ) -> ArtefactInfo: ...

    def get_artefact(self, digest: str) -> bytes: ...


class FeedIndexes(Protocol):
    """The image index the engine may share, and the mapping of stored vectors into it."""

    def get(self, space: str) -> VectorIndex: ...

    def to_index_space(self, space: str, vecs: NDArray[np.float32]) -> NDArray[np.float32]: ...
