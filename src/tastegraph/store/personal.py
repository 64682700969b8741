"""A person's data across the tables that hold it (the user row, their boards and saves, their
engagement events): exported whole, or erased in one transaction."""

from __future__ import annotations

import json
import secrets
from typing import Any

import sqlalchemy as sa

from tastegraph.store import schema as t
from tastegraph.store.artefacts import put_kv
from tastegraph.store.audit import audit_row
from tastegraph.store.db import Database, now_iso
from tastegraph.store.engagement import no_such_user
from tastegraph.store.events import EVENTS_GENERATION_KEY

__all__ = ["PersonalDataRepository"]


class PersonalDataRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def user_export(self, user_id: int) -> dict[str, Any]:
        """Everything stored about the user, read in one transaction."""
        with self._db.read() as conn:
            user = conn.execute(sa.select(t.users).where(t.users.c.id == user_id)).one_or_none()
            if user is None:
                raise no_such_user(user_id)
            boards = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(t.boards).where(t.boards.c.user_id == user_id).order_by(t.boards.c.id)
                )
            ]
            saves = conn.execute(
                sa.select(t.board_pins)
                .join(t.boards, t.boards.c.id == t.board_pins.c.board_id)
                .where(t.boards.c.user_id == user_id)
                .order_by(t.board_pins.c.board_id, t.board_pins.c.saved_at)
            )
            by_board: dict[int, list[dict[str, Any]]] = {}
            for s in saves:
                by_board.setdefault(int(s.board_id), []).append(
                    {"pin_id": int(s.pin_id), "saved_at": s.saved_at}
                )
            for b in boards:
                b["saves"] = by_board.get(int(b["id"]), [])
            events = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(t.events).where(t.events.c.user_id == user_id).order_by(t.events.c.id)
                )
            ]
        return {"user": dict(user._mapping), "boards": boards, "events": events}

    def erase_user(self, user_id: int, *, actor: tuple[int | None, str]) -> dict[str, Any]:
        """Delete the user, their boards, saves and events in one transaction (killed midway,
        nothing is gone; run again, it finishes). Serving processes rebuild their feeds from
        the log without the events (a new events generation). The audit log keeps that an
        erasure happened, with counts and a random reference, never whose."""
        at = now_iso()
        with self._db.write() as conn:
            found = conn.execute(
                sa.select(t.users.c.id).where(t.users.c.id == user_id).with_for_update()
            ).scalar_one_or_none()
            if found is None:
                raise no_such_user(user_id)
            mine = sa.select(t.boards.c.id).where(t.boards.c.user_id == user_id)
            saves = conn.execute(t.board_pins.delete().where(t.board_pins.c.board_id.in_(mine)))
            boards = conn.execute(t.boards.delete().where(t.boards.c.user_id == user_id))
            events = conn.execute(t.events.delete().where(t.events.c.user_id == user_id))
            conn.execute(t.users.delete().where(t.users.c.id == user_id))
            counts = {
                "boards": int(boards.rowcount),
                "saves": int(saves.rowcount),
                "events": int(events.rowcount),
            }
            if any(counts.values()):  # feed engines learned from these: they rebuild
                generation = {"id": secrets.token_hex(8), "deleted": counts["events"], "at": at}
                put_kv(self._db, conn, EVENTS_GENERATION_KEY, generation)
            record = {"erasure": secrets.token_hex(8), **counts}
            audit_row(conn, actor[0], actor[1], "erase_user", json.dumps(record), at)
        return record
