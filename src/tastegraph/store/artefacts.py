"""Small JSON records by key: the projection, model choices, run owners, the log generation."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tastegraph.store import schema as t
from tastegraph.store.db import Database

__all__ = ["ArtefactRepository", "put_kv"]


def put_kv(db: Database, conn: sa.Connection, key: str, value: Any) -> None:
    """Set ``key`` inside the caller's transaction."""
    db.upsert(conn, t.kv, {"key": key, "value": value}, keys=("key",), update=("value",))
    # Catch-up watches keys (the projection, the model version, the events generation).
    db.dialect.announce(conn, "kv")


class ArtefactRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get_kv(self, key: str, default: Any = None) -> Any:
        with self._db.read() as conn:
            v = conn.execute(sa.select(t.kv.c.value).where(t.kv.c.key == key)).scalar_one_or_none()
        return default if v is None else v

    def set_kv(self, key: str, value: Any) -> None:
        with self._db.write() as conn:
            put_kv(self._db, conn, key, value)

    def delete_kv(self, key: str) -> None:
        with self._db.write() as conn:
            conn.execute(t.kv.delete().where(t.kv.c.key == key))
            self._db.dialect.announce(conn, "kv")
