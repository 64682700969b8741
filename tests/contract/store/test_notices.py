"""Announcements of writes (PostgreSQL NOTIFY at commit) and a listener on a real server: each
log append and watched key is heard, nothing before commit, and a listener whose backend is
terminated reconnects and catches up. SQLite announces nothing (the poll covers it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tastegraph.store import NewPin, SQLStore, open_store
from tastegraph.store.ports import NoticeConnection
from tastegraph.store.postgresql import LISTENER_NAME
from tastegraph.workers.listener import Listener


def _pin(key: str) -> NewPin:
    return NewPin(
        content_hash=f"{key:0>64}"[-64:],
        source=f"{key}.jpg",
        vectors={"image": ("m@1", np.ones(4, np.float32))},
        title=f"pin {key}",
    )


@pytest.fixture
def store(postgres_url: str) -> Iterator[SQLStore]:
    s = open_store(postgres_url)
    yield s
    s.close()


def _heard(conn: NoticeConnection, within: float = 2.0) -> set[str]:
    got: set[str] = set()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        more = conn.wait(0.1)
        if not more and got:
            break
        got.update(more)
    return got


def test_sqlite_announces_nothing(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert s.notices() is None
    finally:
        s.close()


def test_each_write_catch_up_watches_is_announced(store: SQLStore) -> None:
    connect = store.notices()
    assert connect is not None
    conn = connect()
    try:
        assert conn.wait(0.05) == []
        store.add_pins([_pin("a")])
        assert _heard(conn) == {"changes"}
        store.add_events([{"key": "e1", "user_id": 1, "pin_id": 1, "kind": "click", "ts": 1.0}])
        assert _heard(conn) == {"events"}
        store.set_kv("image_projection", {"digest": "x"})
        assert _heard(conn) == {"kv"}
        store.delete_kv("image_projection")
        assert _heard(conn) == {"kv"}
    finally:
        conn.close()


def test_nothing_is_announced_before_commit_or_for_a_rollback(store: SQLStore) -> None:
    connect = store.notices()
    assert connect is not None
    conn = connect()
    try:
        with pytest.raises(RuntimeError), store.write() as tx:
            store.db.dialect.announce(tx, "changes")
            assert conn.wait(0.2) == []  # not yet committed
            raise RuntimeError("roll back")
        assert conn.wait(0.3) == []
    finally:
        conn.close()


def _terminate_listeners(store: SQLStore) -> int:
    with store.write() as tx:
        return len(
            tx.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :n AND datname = current_database()"
                ),
                {"n": LISTENER_NAME},
            ).all()
        )


def _until(cond: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_terminated_listener_reconnects_and_catches_up(store: SQLStore) -> None:
    connect = store.notices()
    assert connect is not None
    tips: list[tuple[int, int]] = []
    lock = threading.Lock()

    def on_change() -> None:
        with lock:
            tips.append(store.log_tips())

    listener = Listener(connect, on_change, wait_s=0.1, backoff_s=(0.3, 1.0))
    listener.start()
    try:
        assert _until(lambda: listener.connected)
        store.add_pins([_pin("b")])
        assert _until(lambda: listener.notifications >= 1), "NOTIFY not heard"
        assert _until(lambda: tips and tips[-1][0] == store.log_tips()[0])

        assert _terminate_listeners(store) == 1
        assert _until(lambda: not listener.connected)
        store.add_pins([_pin("c")])  # while it is down: announced to no one
        want = store.log_tips()
        assert _until(lambda: listener.reconnects == 1 and listener.connected)
        assert _until(lambda: tips[-1] == want), "no catch-up after reconnecting"
        assert "connection lost" in (listener.last_error or "")
        assert listener.state()["reconnects"] == 1
    finally:
        listener.stop()
