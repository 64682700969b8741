"""One visibility rule for search, similar, related and feed; services wired over the bus."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tastegraph.app import App, build
from tastegraph.catalog.ingest import ingest
from tastegraph.eligibility import BlockedPins
from tastegraph.engagement.bus import PinSaved
from tastegraph.settings import Settings
from tests.fakes import fake_encoders


@pytest.fixture
def world(fake_app: App, tmp_path: Path) -> App:
    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, rgb in {"red": (210, 30, 30), "blue": (30, 40, 210)}.items():
        for i in range(10):
            arr = np.clip(np.array(rgb) + rng.normal(0, 18, (48, 64, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG")
            (folder / f"{name}-{i:02d}.png").write_bytes(buf.getvalue())
    assert ingest(fake_app, str(folder), progress=False).added == 20
    return fake_app


def _blocked(app: App) -> BlockedPins:
    rule = app.eligibility.rule("blocked")
    assert isinstance(rule, BlockedPins)
    return rule


def test_a_blocked_pin_is_shown_nowhere(world: App) -> None:
    pins = [p.id for p in world.store.list_pins(limit=100)]
    probe, banned = pins[0], pins[1]
    before = [h.pin_id for h in world.search.similar(probe, limit=19).hits]
    assert banned in before
    uid = world.store.create_user("ann", "")["id"]
    assert banned in [it.pin for it in world.feeds.feed(uid, 100)[0]]

    _blocked(world).block([banned])
    similar = [h.pin_id for h in world.search.similar(probe, limit=19).hits]
    assert banned not in similar and len(similar) == 18  # left out inside the index: page full
    words = world.search.text(world.store.get_pin(banned).title or "red", limit=50)
    assert banned not in [h.pin_id for h in words.hits]
    image = world.store.get_thumbnail(banned)
    assert banned not in [h.pin_id for h in world.search.by_image(image, limit=20).hits]
    related = [it.pin for it in world.feeds.related(probe, 10)]
    assert banned not in related and len(related) == 10
    assert banned not in [it.pin for it in world.feeds.feed(uid, 100)[0]]

    _blocked(world).unblock([banned])
    assert banned in [h.pin_id for h in world.search.similar(probe, limit=19).hits]


def test_services_hear_each_other_on_the_bus_not_through_the_app(world: App) -> None:
    uid = world.store.create_user("bo", "")["id"]
    board = world.store.create_board(uid, "reds")["id"]
    pin = world.store.list_pins(limit=1)[0].id
    heard: list[PinSaved] = []
    world.bus.subscribe(PinSaved, heard.append)
    feeds = world.feeds
    _ = feeds.engine
    assert world.engagement.save(uid, board, pin)
    assert heard == [PinSaved(uid, board, pin)]
    assert feeds.status()["events_applied_to"] == 1  # the feed applied the save at once


def test_build_wires_given_parts_and_loads_nothing_else(tmp_path: Path) -> None:
    enc = fake_encoders()
    app = build(Settings(data_dir=tmp_path / "d", index_kind="exact"), encoders=enc)
    try:
        assert app.parts.encoders.peek() is enc
        assert not any(
            p.loaded
            for p in (app.parts.indexes, app.parts.search, app.parts.engagement, app.parts.feeds)
        )
        assert app.catchup.run() == {}  # nothing loaded: nothing to catch up
        other = build(app.settings, store=app.store, encoders=enc)
        assert other.store is app.store
    finally:
        app.close()
