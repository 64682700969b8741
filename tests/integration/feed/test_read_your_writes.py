"""Read-your-writes across processes, in one process: events another process logged (a hide)
reach this one's next feed through the API, because feed, related and search requests catch up
first when the store's logs moved; and that check does nothing more when nothing is new."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tastegraph.app import App
from tests.integration.feed.test_feed_api import _store_event, world  # noqa: F401


def test_a_hide_logged_elsewhere_is_honoured_by_the_next_feed(
    client: tuple[TestClient, dict[str, str]],
    world: App,  # noqa: F811
) -> None:
    c, _ = client
    store = world.store
    uid = store.create_user("ann", "")["id"]
    first = c.get(f"/users/{uid}/feed", params={"n": 10}).json()["results"][0]["pin"]["id"]
    # Another process (a second server, `tastegraph events import`) logs a hide: no bus event
    # reaches this process, and the periodic poll is seconds away.
    store.add_events([_store_event(uid, first, "hide", time.time(), "elsewhere-1")])
    after = c.get(f"/users/{uid}/feed", params={"n": 50}).json()["results"]
    assert first not in [x["pin"]["id"] for x in after]


def test_catch_up_before_a_read_does_nothing_when_nothing_is_new(world: App) -> None:  # noqa: F811
    calls: list[str] = []
    run = world.catchup.run
    world.catchup.run = lambda: calls.append("run") or run()  # type: ignore[method-assign]
    _ = world.feeds.engine
    world.catchup.if_behind()
    calls.clear()
    assert [world.catchup.if_behind() for _ in range(5)] == [False] * 5 and not calls
    uid = world.store.create_user("bob", "")["id"]
    pin = world.store.list_pins(limit=1)[0].id
    world.store.add_events([_store_event(uid, pin, "hide", time.time(), "elsewhere-2")])
    assert world.catchup.if_behind() and calls == ["run"]
    assert not world.catchup.if_behind()


def test_a_pin_edited_elsewhere_is_served_edited_by_the_next_read(
    client: tuple[TestClient, dict[str, str]],
    world: App,  # noqa: F811
) -> None:
    # The feed routes serve pins from the process's record cache: an edit another process
    # writes reaches it through the change log before the next read is answered.
    from tastegraph.store import open_store

    c, _ = client
    anchor = world.store.list_pins(limit=1)[0].id
    first = c.get(f"/pins/{anchor}/related", params={"n": 5}).json()["results"]
    assert first and world.records.stats()["pins"] >= len(first)
    target = first[0]["pin"]["id"]
    other = open_store(world.settings.resolved_store_url)
    try:
        other.update_pin(target, {"title": "edited in another process"})
        again = c.get(f"/pins/{anchor}/related", params={"n": 5}).json()["results"]
        titles = {x["pin"]["id"]: x["pin"]["title"] for x in again}
        assert titles[target] == "edited in another process"
        uid = world.store.create_user("cy", "")["id"]
        feed = c.get(f"/users/{uid}/feed", params={"n": 50}).json()["results"]
        shown = {x["pin"]["id"]: x["pin"]["title"] for x in feed}
        assert shown.get(target, "edited in another process") == "edited in another process"
    finally:
        other.close()
