"""Composition root: ``build(settings) -> App`` wires the store, encoders, indexes and services.

Wiring only: each service gets the narrow ports it needs through its constructor, and the
services hear about each other's changes on the event bus (``app.bus``), never through ``App``.
Models, indexes and services are made on first use (``app.parts``, each a :class:`Lazy`), so that
commands which need neither (tokens, quarantine) start fast; ``app.parts.feeds.loaded`` says
whether one exists without making it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.eligibility import BlockedPins, Eligibility, HiddenByViewer
from tastegraph.engagement.bus import (
    EventBus,
    EventsDeleted,
    PinsAdded,
    PinsDeleted,
    SpaceChanged,
)
from tastegraph.index.spaces import SpaceIndexes, load_projection
from tastegraph.lazy import Lazy
from tastegraph.models.base import Encoders
from tastegraph.models.inputs import preprocess_for, tag_labels
from tastegraph.settings import Settings
from tastegraph.store import SQLStore, open_store
from tastegraph.store.record_cache import PinRecordCache
from tastegraph.workers.catchup import CatchUp

if TYPE_CHECKING:
    # The services are imported when first made: a command that needs none of them (tokens,
    # quarantine) does not pay for their imports.
    from tastegraph.catalog.service import CatalogService
    from tastegraph.engagement.service import EngagementService
    from tastegraph.feed.service import FeedService
    from tastegraph.people.service import PeopleService
    from tastegraph.search.service import SearchService

__all__ = ["App", "Parts", "build"]


@dataclass
class Parts:
    """What ``App`` makes on first use."""

    encoders: Lazy[Encoders]
    indexes: Lazy[SpaceIndexes]
    catalog: Lazy[CatalogService]
    search: Lazy[SearchService]
    engagement: Lazy[EngagementService]
    feeds: Lazy[FeedService]


@dataclass
class App:
    settings: Settings
    store: SQLStore
    bus: EventBus
    eligibility: Eligibility
    parts: Parts
    catchup: CatchUp
    # Pin records for the feed routes' responses, kept current by ``catchup``.
    records: PinRecordCache

    # The services, made on first use.
    @property
    def encoders(self) -> Encoders:
        return self.parts.encoders.get()

    @property
    def indexes(self) -> SpaceIndexes:
        return self.parts.indexes.get()

    @property
    def catalog(self) -> CatalogService:
        return self.parts.catalog.get()

    @property
    def search(self) -> SearchService:
        return self.parts.search.get()

    @property
    def engagement(self) -> EngagementService:
        return self.parts.engagement.get()

    @property
    def feeds(self) -> FeedService:
        return self.parts.feeds.get()

    @property
    def people(self) -> PeopleService:
        from tastegraph.people.service import PeopleService

        return PeopleService(self.store, self.settings.data_dir, self.bus)

    @property
    def preprocess(self) -> Callable[[Any], NDArray[np.uint8]]:
        """The image model's input from a decoded RGB image (see ``models.inputs``)."""
        return preprocess_for(self.encoders.image)

    def top_labels(self, probs: NDArray[np.float32], k: int = 3) -> list[list[tuple[str, float]]]:
        return tag_labels(self.encoders.image, probs, k=k)

    def close(self) -> None:
        indexes = self.parts.indexes.peek()
        if indexes is not None:
            indexes.save()
        self.store.close()


def _make_indexes(settings: Settings, store: SQLStore, encoders: Lazy[Encoders]) -> SpaceIndexes:
    enc = encoders.get()
    indexes = SpaceIndexes(
        settings.data_dir / "indexes" / settings.index.kind,
        settings.index.kind,
        store,
        {
            "image": (enc.image.model_id, enc.image.dim),
            "text": (enc.text.model_id, enc.text.dim),
            "conse": (enc.bridge.model_id, enc.bridge.dim),
        },
        settings.digest("index.kind"),
    )
    projection, record = load_projection(
        store, settings.data_dir, model_id=enc.image.model_id, dim=settings.models.image_dim
    )
    indexes.set_projection(projection, record)
    return indexes


def _make_encoders(settings: Settings) -> Encoders:
    from tastegraph.models import make_encoders

    return make_encoders(settings)


def _make_catalog(
    store: SQLStore,
    settings: Settings,
    enc: Lazy[Encoders],
    indexes: Lazy[SpaceIndexes],
    bus: EventBus,
) -> CatalogService:
    from tastegraph.catalog.service import CatalogHooks, CatalogService

    hooks = CatalogHooks(
        pins_added=lambda ids: bus.publish(PinsAdded(tuple(ids))),
        pins_deleted=lambda ids: bus.publish(PinsDeleted(tuple(ids))),
        # The vectors changed space: the feed engine is rebuilt on next use.
        projection_fitted=lambda digest: bus.publish(SpaceChanged(digest)),
        indexes_reset=indexes.reset,  # the index files are gone: reopened from the store
    )

    def top_labels(probs: NDArray[np.float32], k: int = 3) -> list[list[tuple[str, float]]]:
        return tag_labels(enc.get().image, probs, k=k)

    return CatalogService(
        store,
        settings,
        encoders=enc.get,
        indexes=indexes.get,
        preprocess=lambda: preprocess_for(enc.get().image),
        top_labels=top_labels,
        hooks=hooks,
    )


def _make_search(
    store: SQLStore,
    indexes: Lazy[SpaceIndexes],
    enc: Lazy[Encoders],
    settings: Settings,
    el: Eligibility,
) -> SearchService:
    from tastegraph.search.service import SearchService

    return SearchService(store, indexes, enc, settings, el)


def _make_engagement(store: SQLStore, settings: Settings, bus: EventBus) -> EngagementService:
    from tastegraph.engagement.service import EngagementService

    return EngagementService(store, settings, bus)


def _make_feeds(
    store: SQLStore,
    indexes: Lazy[SpaceIndexes],
    enc: Lazy[Encoders],
    settings: Settings,
    bus: EventBus,
    el: Eligibility,
) -> FeedService:
    from tastegraph.feed.service import FeedService

    return FeedService(store, indexes, enc, settings, bus, el)


def build(
    settings: Settings, *, store: SQLStore | None = None, encoders: Encoders | None = None
) -> App:
    """Open the data dir described by ``settings`` (creating it on first use).

    ``store``: an open store to use instead of the one ``settings`` names; ``encoders``: models to
    use instead of loading the ones ``settings`` names (tests pass fakes).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = store if store is not None else open_store(settings.resolved_store_url)
    lock = threading.RLock()  # one for all parts: indexes are made from the encoders
    bus = EventBus()
    eligibility = Eligibility([BlockedPins(), HiddenByViewer()])

    enc: Lazy[Encoders] = Lazy(lambda: _make_encoders(settings), lock)
    if encoders is not None:
        enc.set(encoders)
    indexes: Lazy[SpaceIndexes] = Lazy(lambda: _make_indexes(settings, db, enc), lock)
    parts = Parts(
        encoders=enc,
        indexes=indexes,
        catalog=Lazy(lambda: _make_catalog(db, settings, enc, indexes, bus), lock),
        search=Lazy(lambda: _make_search(db, indexes, enc, settings, eligibility), lock),
        engagement=Lazy(lambda: _make_engagement(db, settings, bus), lock),
        feeds=Lazy(lambda: _make_feeds(db, indexes, enc, settings, bus, eligibility), lock),
    )
    records = PinRecordCache(db, settings.api.pin_cache_size)
    catchup = CatchUp(db, indexes, parts.feeds, lock, records)

    def events_deleted(_: EventsDeleted) -> None:
        catchup.events()  # the feed engine cannot un-learn them: rebuilt on next use

    bus.subscribe(SpaceChanged, lambda _: parts.feeds.reset())
    bus.subscribe(EventsDeleted, events_deleted)
    return App(settings, db, bus, eligibility, parts, catchup, records)
