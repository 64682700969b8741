"""Ids are never reused (issue 15, defect 2), on new databases and on ones upgraded from 0002."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastegraph.store import NewPin, open_store
from tastegraph.store.schema import NEVER_REUSED
from tastegraph.store.sql import SQLStore

OLD_SCHEMA = Path(__file__).with_name("schema_0002.sql")


def pin(key: str) -> NewPin:
    return NewPin(
        content_hash=f"{key:0>64}"[-64:],
        source=f"{key}.jpg",
        vectors={"image": ("m@1", np.ones(4, np.float32))},
        title=f"pin {key}",
    )


def old_database(path: Path) -> None:
    """A database as revision 0002 left it, holding rows whose newest ids were then deleted."""
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA.read_text())
    now = "2026-01-01T00:00:00.000+00:00"
    for i in (1, 2, 3):
        db.execute(
            "INSERT INTO pins(id, content_hash, tags, labels, attributes, created_at, updated_at) "
            "VALUES (?, ?, '[]', '[]', '{}', ?, ?)",
            (i, f"{i:064d}", now, now),
        )
        db.execute("INSERT INTO changes(pin_id, op) VALUES (?, 'upsert')", (i,))
        db.execute("INSERT INTO pins_fts(rowid, title) VALUES (?, ?)", (i, f"old {i}"))
        db.execute("INSERT INTO vectors VALUES (?, 'image', 'm@1', 4, ?)", (i, bytes(16)))
    db.execute("INSERT INTO users(id, handle, created_at) VALUES (1, 'ann', ?), (2, 'bob', ?)",
               (now, now))  # fmt: skip
    db.execute("INSERT INTO boards(id, user_id, name, created_at) VALUES (1, 1, 'b', ?)", (now,))
    db.execute("INSERT INTO board_pins VALUES (1, 3, ?)", (now,))
    db.execute(
        "INSERT INTO events(id, key, user_id, pin_id, kind, ts) VALUES (1, 'k1', 2, 3, 'click', 1)"
    )
    db.execute(
        "INSERT INTO tokens(id, name, role, token_hash, created_at) "
        "VALUES (1, 'a', 'admin', 'h', ?)",
        (now,),
    )
    # The newest pin and user go; the old code would give 3 and 2 to the next inserts.
    db.commit()
    db.execute("PRAGMA foreign_keys=ON")  # outside a transaction, or SQLite ignores it
    db.execute("DELETE FROM pins WHERE id = 3")
    db.execute("INSERT INTO changes(pin_id, op) VALUES (3, 'delete')")
    db.execute("DELETE FROM pins_fts WHERE rowid = 3")
    db.execute("DELETE FROM users WHERE id = 2")
    db.commit()
    db.close()


def test_upgrade_from_0002_keeps_data_and_never_reuses_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    store = open_store(f"sqlite:///{path}")
    # Data intact: pins, vectors, text index, boards and the saves of pins that still exist.
    assert [p.id for p in store.list_pins()] == [1, 2]
    assert store.get_vectors("image")[0].tolist() == [1, 2]
    assert [i for i, _ in store.fts_search("old")] in ([1, 2], [2, 1])
    assert store.get_board(1)["user_id"] == 1
    with store.read() as conn:
        tables = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master").fetchall())
    for name in NEVER_REUSED:
        assert "AUTOINCREMENT" in tables[name], name
    assert {"ix_pins_board", "ix_pins_phash", "ix_events_user_ts", "ix_events_pin",
            "ix_quarantine_run_id"} <= set(tables)  # fmt: skip
    # New rows get ids above every id ever handed out, not the deleted ones.
    [(new_pin, created)] = store.add_pins([pin("new")])
    assert created and new_pin == 4
    assert store.create_user("cat")["id"] == 3  # user 2 is still named by event 1
    assert store.create_token("b", "viewer")[0].id == 2
    # Foreign keys are back on after the migration: deleting a pin still cascades.
    store.delete_pin(1)
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    store.close()
    # Reopening does not migrate again or lower the sequences.
    store = open_store(f"sqlite:///{path}")
    assert store.add_pins([pin("newer")])[0][0] == 5
    store.close()


def test_fresh_database_never_reuses_the_newest_id(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    [(a, _)] = store.add_pins([pin("a")])
    store.delete_pin(a)
    [(b, _)] = store.add_pins([pin("b")])
    assert b > a
    assert store.fts_search("pin") == [(b, store.fts_search("pin")[0][1])]
    t1, _ = store.create_token("t", "viewer")
    with store.write() as conn:  # no API deletes tokens; the table still must not reuse ids
        conn.exec_driver_sql("DELETE FROM tokens WHERE id = ?", (t1.id,))
    assert store.create_token("u", "viewer")[0].id > t1.id


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(st.just("add"), st.integers(0, 5)), min_size=1, max_size=25))
def test_ids_are_never_handed_out_twice(tmp_path_factory: object, ops: list[object]) -> None:
    """Any interleaving of inserts and deletes (newest or not) never repeats an id."""
    path = tmp_path_factory.mktemp("ids") / "p.db"  # type: ignore[attr-defined]
    store: SQLStore = open_store(f"sqlite:///{path}")
    live: list[int] = []
    handed: list[int] = []
    for n, op in enumerate(ops):
        if op == "add":
            [(pid, created)] = store.add_pins([pin(f"p{n}")])
            assert created
            handed.append(pid)
            live.append(pid)
        elif live:
            # Delete counting from the newest: the case SQLite reuses.
            victim = live.pop(-1 - (int(op) % len(live)))  # type: ignore[call-overload]
            store.delete_pin(victim)
    store.close()
    assert len(handed) == len(set(handed))
    assert handed == sorted(handed)
