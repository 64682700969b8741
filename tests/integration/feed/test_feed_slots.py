"""``api.feed_slots``: how many feed and related-pins requests one process computes at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tastegraph.api import create_api
from tastegraph.app import App
from tests.integration.feed.test_feed_api import world  # noqa: F401


def _most_at_once(app: App, slots: int) -> int:
    app.settings.api.feed_slots = slots
    inside = most = 0
    lock = threading.Lock()
    feed, related = app.feeds.feed, app.feeds.related

    def counted(fn: Any) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            nonlocal inside, most
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.02)
            try:
                return fn(*a, **kw)
            finally:
                with lock:
                    inside -= 1

        return call

    app.feeds.feed = counted(feed)  # type: ignore[method-assign]
    app.feeds.related = counted(related)  # type: ignore[method-assign]
    uid = app.store.create_user(f"u{slots}", "")["id"]
    pin = app.store.list_pins(limit=1)[0].id
    urls = [f"/users/{uid}/feed?n=5", f"/pins/{pin}/related?n=5"] * 6
    with TestClient(create_api(app)) as c, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda u: c.get(u).status_code, urls))
    assert statuses == [200] * len(urls)
    return most


@pytest.mark.parametrize("slots", [1, 2])
def test_at_most_feed_slots_requests_at_once(world: App, slots: int) -> None:  # noqa: F811
    assert _most_at_once(world, slots) <= slots


def test_zero_lets_them_all_in(world: App) -> None:  # noqa: F811
    assert _most_at_once(world, 0) > 2
