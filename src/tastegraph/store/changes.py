"""The change log: every pin upsert and delete, in order, for indexes to replay."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from tastegraph.store import schema as t
from tastegraph.store.db import Database

__all__ = ["ChangeLogRepository", "record_changes"]

# Both logs' tips in one statement: a replica compares them before every read it serves.
_TIPS = sa.select(
    sa.select(sa.func.max(t.changes.c.seq)).scalar_subquery(),
    sa.select(sa.func.max(t.events.c.id)).scalar_subquery(),
)


def record_changes(conn: sa.Connection, pin_ids: Sequence[int], op: str) -> None:
    """Append ``op`` ("upsert" | "delete") for each pin, inside the caller's transaction.

    The caller has taken ``dialect.lock_log(conn, "changes")`` first, so seqs commit in order.
    """
    if pin_ids:
        conn.execute(t.changes.insert(), [{"pin_id": i, "op": op} for i in pin_ids])


class ChangeLogRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        # (commit counter, tips) of the last tips read, where the database has a counter.
        self._tips: tuple[int, tuple[int, int]] | None = None

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]:
        """Pins upserted and deleted after ``seq``: ``(last_seq, upserted, deleted)``."""
        with self._db.read() as conn:
            rows = list(
                conn.execute(
                    sa.select(t.changes.c.seq, t.changes.c.pin_id, t.changes.c.op)
                    .where(t.changes.c.seq > seq)
                    .order_by(t.changes.c.seq)
                )
            )
        state: dict[int, str] = {}
        for r in rows:
            state[r.pin_id] = r.op
        last = rows[-1].seq if rows else seq
        ups = [p for p, op in state.items() if op == "upsert"]
        dels = [p for p, op in state.items() if op == "delete"]
        return last, ups, dels

    def last_change(self) -> int:
        with self._db.read() as conn:
            v = conn.execute(sa.select(sa.func.max(t.changes.c.seq))).scalar_one()
        return int(v or 0)

    def log_tips(self) -> tuple[int, int]:
        """``(last_change(), last_event_id())`` in one read: a third of the cost of two.

        Where the database has a commit counter (SQLite's ``data_version``), the tips are read
        again only when it moved since the last read: the usual case of a serving process
        checking before each request, with no write anywhere since, is one cheap call. The
        counter is read before the tips, so a commit that lands between the two moves it and
        the next call reads again.
        """
        counter = self._db.commit_counter()
        version = counter() if counter is not None else None
        last = self._tips
        if version is not None and last is not None and last[0] == version:
            return last[1]
        with self._db.read() as conn:
            change, event = conn.execute(_TIPS).one()
        tips = int(change or 0), int(event or 0)
        if version is not None:
            self._tips = (version, tips)
        return tips
