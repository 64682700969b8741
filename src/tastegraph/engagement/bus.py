"""An explicit, synchronous, in-process event bus.

Services publish what happened (events recorded, a pin saved or hidden, pins added or deleted,
logged events deleted, the image space re-projected) and others subscribe to the kinds they
care about, so that the engagement service never has to know that a feed engine exists and the
catalog never has to reach into the feed.

Delivery is synchronous, in subscription order, on the publisher's thread: when ``publish``
returns every subscriber has run (the next feed call reflects a save). A subscriber that raises
is logged and skipped; the others still run and the publisher never sees the exception (what
was published has already happened, e.g. the events are stored).

Example
-------
>>> bus = EventBus()
>>> seen = []
>>> _ = bus.subscribe(PinsAdded, lambda e: seen.append(e.pin_ids))
>>> bus.publish(PinsAdded((1, 2)))
>>> seen
[(1, 2)]
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "BusEvent",
    "EventBus",
    "EventsDeleted",
    "EventsRecorded",
    "PinHidden",
    "PinSaved",
    "PinsAdded",
    "PinsDeleted",
    "SpaceChanged",
]

log = logging.getLogger("tastegraph.bus")


class BusEvent:
    """Base of everything published on the bus (plain, frozen dataclasses)."""


@dataclass(frozen=True)
class EventsRecorded(BusEvent):
    """Engagement events were stored (``rows``: the rows inserted, duplicates left out)."""

    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PinSaved(BusEvent):
    user_id: int
    board_id: int
    pin_id: int


@dataclass(frozen=True)
class PinHidden(BusEvent):
    user_id: int
    pin_id: int


@dataclass(frozen=True)
class PinsAdded(BusEvent):
    """Pins joined the catalog in this process (ingest, upload)."""

    pin_ids: tuple[int, ...]


@dataclass(frozen=True)
class PinsDeleted(BusEvent):
    """Pins left the catalog in this process; ``pin_ids`` may be empty when unknown."""

    pin_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class EventsDeleted(BusEvent):
    """Logged events were deleted (``count`` of them): engines that learned them must rebuild."""

    count: int


@dataclass(frozen=True)
class SpaceChanged(BusEvent):
    """The image vectors changed space (a new whitening projection): derived state rebuilds."""

    digest: str | None


E = TypeVar("E", bound=BusEvent)
Handler = Callable[[Any], None]


class EventBus:
    """Subscribe handlers to event types; ``publish`` calls them synchronously, isolated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[type[BusEvent], list[Callable[[], Handler | None]]] = {}

    def subscribe(
        self, kind: type[E], handler: Callable[[E], None], *, weak: bool = False
    ) -> Callable[[], None]:
        """Call ``handler(event)`` for every published ``kind`` (or subclass); returns a
        function that unsubscribes. ``weak``: hold a bound method weakly, so a service that
        was replaced is not kept alive, and fed, by its subscription."""
        ref: Callable[[], Handler | None]
        if weak:
            ref = weakref.WeakMethod(handler)
        else:

            def ref() -> Handler:
                return handler

        with self._lock:
            self._subs.setdefault(kind, []).append(ref)

        def unsubscribe() -> None:
            with self._lock:
                refs = self._subs.get(kind, [])
                if ref in refs:
                    refs.remove(ref)

        return unsubscribe

    def publish(self, event: BusEvent) -> None:
        """Deliver ``event`` to its subscribers, in order; one that raises is logged and skipped."""
        with self._lock:
            refs = [r for kind, rs in self._subs.items() if isinstance(event, kind) for r in rs]
            dead = [r for r in refs if r() is None]
            for kind_refs in self._subs.values():
                for r in dead:
                    if r in kind_refs:
                        kind_refs.remove(r)
        for ref in refs:
            handler = ref()
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:
                log.exception("subscriber %r failed on %s", handler, type(event).__name__)

    def subscribers(self, kind: type[BusEvent]) -> int:
        """How many live handlers ``kind`` has (for tests and /ready)."""
        with self._lock:
            return sum(r() is not None for r in self._subs.get(kind, []))
