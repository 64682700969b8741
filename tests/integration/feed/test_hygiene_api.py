"""Issue 15, defect 1 (engine side) through the store and the API.

Rows written to the event log by anything (older versions, other tools, raw SQL) are read back
as the database stored them: on SQLite REAL ids beyond 64 bits and TEXT where a number belongs;
on either, infinite, NaN or absurd times, unknown kinds, huge positions. None of them may stop
the engine from building, fail any user's feed or related pins, or leave ``/ready`` saying
``ok`` while the engine is down or no longer taking in events. The SQL is the same on both
stores (``TASTEGRAPH_TEST_STORE=postgresql``); a row PostgreSQL's types refuse never gets in.
"""

from __future__ import annotations

import io
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tastegraph.api import create_api
from tastegraph.app import App
from tastegraph.errors import InvalidInput
from tastegraph.feed import service as feed_service
from tastegraph.feed.service import FeedService

NAMES = ("key", "user_id", "pin_id", "kind", "ts", "dwell_ms", "surface", "position", "request_id")
INSERT = sa.text(
    f"INSERT INTO events ({', '.join(NAMES)}) VALUES ({', '.join(':' + n for n in NAMES)})"
)


@pytest.fixture
def world(fake_app: App, tmp_path: Path) -> App:
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(16):
        rgb = np.array([(210, 30, 30), (30, 190, 40)][i % 2])
        arr = np.clip(rgb + rng.normal(0, 18, (40, 48, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        (folder / f"p{i:02d}.png").write_bytes(buf.getvalue())
    assert fake_app.catalog.ingest(str(folder), progress=False).added == 16
    for handle in ("ann", "bob"):
        fake_app.store.create_user(handle)
    pins = _pins(fake_app)
    now = time.time()
    fake_app.engagement.record(
        [
            (i, {"user_id": 1 + i % 2, "pin_id": pins[i], "type": "save", "ts": now - 60 + i})
            for i in range(6)
        ]
    )
    return fake_app


@pytest.fixture
def client(world: App) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, secret = world.store.create_token("ed", "editor")
    with TestClient(create_api(world), raise_server_exceptions=False) as c:
        yield c, {"Authorization": f"Bearer {secret}"}


def _pins(app: App) -> list[int]:
    return [p.id for p in app.store.list_pins(limit=100)]


def _insert_raw(app: App, rows: list[tuple[Any, ...]]) -> list[bool]:
    """Rows straight into the log, each value bound as it is (no parsing, no checks); which
    of them the database kept (SQLite keeps all; PostgreSQL's types refuse text in a number,
    a float past 64 bits in an id; no store keeps a NUL)."""
    kept = []
    with app.store.write() as conn:
        for r in rows:
            try:
                with conn.begin_nested():
                    conn.execute(INSERT, dict(zip(NAMES, r, strict=True)))
                kept.append(True)
            except (sa.exc.DBAPIError, InvalidInput):
                kept.append(False)
    if app.store.db.dialect.name == "sqlite":  # type: ignore[attr-defined]
        assert all(kept) or any("\x00" in str(v) for r in rows for v in r)
    return kept


def _hostile_rows(app: App) -> list[tuple[str, tuple[Any, ...]]]:
    """(the reason the engine must skip it, row)"""
    pin = _pins(app)[3]
    now = time.time()
    rows: list[tuple[str, tuple[Any, ...]]] = [
        ("bad_time", (f"t{i}", 1, pin, "click", ts, 0.0, "home", None, ""))
        for i, ts in enumerate([1e300, 4.1e18, -5.0, math.inf, -math.inf, "NaN", "2099-01-01"])
    ]
    rows += [
        ("bad_user", ("u-huge", 1e23, pin, "save", now, 0.0, "", None, "")),
        ("bad_user", ("u-text", "abc", pin, "save", now, 0.0, "", None, "")),
        ("bad_pin", ("p-huge", 1, 2.0**70, "save", now, 0.0, "", None, "")),
        ("bad_position", ("pos", 1, pin, "impression", now, 0.0, "home", 2**40, "")),
        ("bad_dwell", ("dwell", 1, pin, "dwell", now, "x", "home", None, "")),
        ("bad_kind", ("kind", 1, pin, "teleport", now, 0.0, "home", None, "")),
    ]
    return rows


def _all_feeds_answer(c: TestClient, app: App) -> None:
    for uid in (1, 2):
        r = c.get(f"/users/{uid}/feed", params={"n": 8})
        assert r.status_code == 200, r.text
        assert r.json()["results"]
        assert all(math.isfinite(x["score"]) for x in r.json()["results"])
    r = c.get(f"/pins/{_pins(app)[0]}/related", params={"n": 5})
    assert r.status_code == 200, r.text


def test_stored_hostile_events_are_skipped_reported_and_survive_a_restart(
    client: tuple[TestClient, dict[str, str]], world: App
) -> None:
    c, h = client
    hostile = _hostile_rows(world)
    kept = _insert_raw(world, [row for _, row in hostile])
    # SQLite keeps all 13; PostgreSQL 8 (its types refuse the rest before they are stored).
    assert sum(kept) >= 8
    _all_feeds_answer(c, world)  # old code: 500 for everyone (ValueError / OverflowError)
    ready = c.get("/ready")
    assert ready.status_code == 200, ready.text
    feeds = ready.json()["checks"]
    assert feeds["feeds"] == "ok"
    skipped = feeds["feeds_details"]["skipped_events"]
    assert skipped == dict(Counter(why for (why, _), k in zip(hostile, kept, strict=True) if k))
    assert set(feeds["feeds_details"]["reasons"]) == set(skipped)
    # New events still flow in after the bad ones.
    ev = {"user_id": 2, "pin_id": _pins(world)[9], "type": "save", "ts": time.time()}
    assert c.post("/events", json={"events": [ev]}, headers=h).json()["accepted"] == 1
    # A restart replays the whole log: the engine builds again.
    world.parts.feeds.reset()
    _all_feeds_answer(c, world)
    assert world.feeds.status()["skipped_events"] == skipped
    assert world.feeds.train()["skipped_events"] == skipped


def test_ready_says_failed_when_the_engine_cannot_build(
    client: tuple[TestClient, dict[str, str]], world: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, _ = client

    def broken(self: FeedService) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(FeedService, "_new_engine", broken)
    world.parts.feeds.reset()
    assert c.get("/users/1/feed").status_code == 500
    ready = c.get("/ready")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["feeds"] == "failed"
    assert "disk on fire" in checks["feeds_details"]["error"]


def test_ready_says_stale_when_the_engine_stops_taking_in_events(
    client: tuple[TestClient, dict[str, str]], world: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, h = client
    _all_feeds_answer(c, world)
    assert c.get("/ready").json()["checks"]["feeds"] == "ok"

    def broken(*a: Any, **k: Any) -> Any:
        raise OSError("database is locked")

    monkeypatch.setattr(feed_service, "load_event_batch", broken)
    ev = {"user_id": 1, "pin_id": _pins(world)[8], "type": "click", "ts": time.time()}
    # The event is stored; the engine's failure to take it in must not fail the request.
    assert c.post("/events", json={"events": [ev]}, headers=h).status_code == 200
    ready = c.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["feeds"] == "stale"
    _all_feeds_answer(c, world)  # still served, from the state the engine has
    monkeypatch.undo()
    world.feeds.catch_up()
    assert c.get("/ready").json()["checks"]["feeds"] == "ok"


def _nn(v: Any) -> Any:
    """NULL is refused by the NOT NULL columns; text stands in for it (stored as is)."""
    return "NaN" if v is None else v


sql_value = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),  # NaN binds as NULL, refused by NOT NULL; as text below
    st.just("NaN"),
    st.text(max_size=8),
    st.none(),
    st.integers(1, 2),
)
raw_row = st.tuples(
    st.one_of(st.integers(1, 2), sql_value),  # user_id
    st.one_of(st.sampled_from(range(1, 17)), sql_value),  # pin_id
    st.sampled_from(["impression", "closeup", "click", "save", "hide", "dwell", "x", ""]),
    st.one_of(sql_value, st.floats(1.6e9, 1.9e9)),  # ts
    sql_value,  # dwell_ms
    st.one_of(st.none(), sql_value),  # position
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(raw_row, min_size=1, max_size=12))
def test_any_stored_rows_leave_every_feed_answering(
    client: tuple[TestClient, dict[str, str]], world: App, rows: list[tuple[Any, ...]]
) -> None:
    c, _ = client
    with world.store.write() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE key LIKE 'fz-%'"))
    _insert_raw(
        world,
        [
            (f"fz-{i}", _nn(u), _nn(p), k, _nn(ts), _nn(d), "", pos, "")
            for i, (u, p, k, ts, d, pos) in enumerate(rows)
        ],
    )
    world.parts.feeds.reset()  # a fresh start over the whole log
    _all_feeds_answer(c, world)
    assert c.get("/ready").json()["checks"]["feeds"] == "ok"


def test_a_pin_whose_stored_vector_is_nan_is_left_out_not_fatal(
    client: tuple[TestClient, dict[str, str]], world: App
) -> None:
    bad = _pins(world)[2]
    nan = np.full(world.encoders.image.dim, np.nan, np.float32).tobytes()
    with world.store.write() as conn:
        conn.execute(
            sa.text("UPDATE vectors SET data = :d WHERE pin_id = :p AND space = 'image'"),
            {"d": nan, "p": bad},
        )
    world.parts.feeds.reset()
    c, _ = client
    _all_feeds_answer(c, world)  # old code: InvalidInput "pin vectors contain NaN" for everyone
    details = c.get("/ready").json()["checks"]["feeds_details"]
    assert details["skipped_pins"] == {"bad_vector": 1}
    assert all(x["pin"]["id"] != bad for x in c.get("/users/1/feed").json()["results"])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(big=st.integers(min_value=2**63, max_value=2**200) | st.integers(max_value=-1))
def test_feed_ids_beyond_64_bits_are_not_found_not_a_server_error(
    client: tuple[TestClient, dict[str, str]], world: App, big: int
) -> None:
    c, _ = client
    assert c.get(f"/users/{big}/feed").status_code in (404, 422)
    assert c.get(f"/pins/{big}/related").status_code in (404, 422)
    cursor = feed_service.encode_cursor([big])
    r = c.get("/users/1/feed", params={"cursor": cursor})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    assert world.feeds.engine.feed(1, 3, time.time(), exclude=[big])
