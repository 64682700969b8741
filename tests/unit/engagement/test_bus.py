"""The event bus (engagement/bus.py) and the lazy parts of the composition root (lazy.py)."""

from __future__ import annotations

import gc
import logging
import threading

import pytest

from tastegraph.engagement.bus import (
    EventBus,
    EventsDeleted,
    EventsRecorded,
    PinsAdded,
    PinSaved,
)
from tastegraph.lazy import Lazy


def test_subscribers_get_the_kinds_they_asked_for_in_order() -> None:
    bus = EventBus()
    got: list[object] = []
    bus.subscribe(PinsAdded, lambda e: got.append(("a", e.pin_ids)))
    bus.subscribe(PinsAdded, lambda e: got.append(("b", e.pin_ids)))
    bus.subscribe(PinSaved, lambda e: got.append(("saved", e.pin_id)))
    bus.publish(PinsAdded((1,)))
    bus.publish(EventsDeleted(3))  # nobody listens: nothing happens
    bus.publish(PinSaved(1, 2, 3))
    assert got == [("a", (1,)), ("b", (1,)), ("saved", 3)]


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    got: list[int] = []

    def broken(_: EventsRecorded) -> None:
        raise RuntimeError("boom")

    bus.subscribe(EventsRecorded, broken)
    bus.subscribe(EventsRecorded, lambda e: got.append(len(e.rows)))
    with caplog.at_level(logging.ERROR, "tastegraph.bus"):
        bus.publish(EventsRecorded(({"id": 1},)))  # never raises to the publisher
    assert got == [1]
    assert "boom" in caplog.text and "EventsRecorded" in caplog.text


def test_unsubscribe_and_weak_subscriptions() -> None:
    bus = EventBus()
    got: list[int] = []
    stop = bus.subscribe(PinsAdded, lambda e: got.append(1))
    stop()
    bus.publish(PinsAdded((1,)))
    assert got == []

    class Service:
        def on(self, e: PinsAdded) -> None:
            got.append(2)

    s = Service()
    bus.subscribe(PinsAdded, s.on, weak=True)
    bus.publish(PinsAdded((1,)))
    assert got == [2] and bus.subscribers(PinsAdded) == 1
    del s
    gc.collect()
    bus.publish(PinsAdded((1,)))  # a replaced service is neither kept alive nor fed
    assert got == [2] and bus.subscribers(PinsAdded) == 0


def test_lazy_makes_once_on_first_use_and_can_be_reset() -> None:
    made: list[int] = []

    def make() -> str:
        made.append(1)
        return f"v{len(made)}"

    lazy = Lazy(make)
    assert not lazy.loaded and lazy.peek() is None and made == []
    threads = [threading.Thread(target=lazy.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lazy.get() == "v1" and made == [1]
    lazy.reset()
    assert not lazy.loaded
    assert lazy() == "v2"
    lazy.set("given")
    assert lazy.get() == "given" and made == [1, 1]
