"""The served recommender: home feed and related pins, events in, ranked pins with reasons out.

The facade is :class:`FeedEngine` (pure: arrays and ``now`` in, :class:`FeedItem` out) and
:class:`FeedService` (the engine over the store: build, catch-up, training, hot swap); the plain
data they exchange lives in :mod:`tastegraph.feed.data`. See ``docs/architecture.md`` for which
module holds which step of the pipeline.
"""

from tastegraph.feed.data import (
    KINDS,
    SOURCES,
    SURFACES,
    Event,
    EventBatch,
    FeedItem,
    FeedParams,
    PinTable,
    as_batch,
)
from tastegraph.feed.engine import FeedEngine
from tastegraph.feed.service import FeedService

__all__ = [
    "KINDS",
    "SOURCES",
    "SURFACES",
    "Event",
    "EventBatch",
    "FeedEngine",
    "FeedItem",
    "FeedParams",
    "FeedService",
    "PinTable",
    "as_batch",
]
