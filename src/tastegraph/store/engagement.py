"""Users, their boards, and the pin-board graph of saves."""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import schema as t
from tastegraph.store.db import Database, now_iso

__all__ = ["EngagementRepository", "no_such_user"]


def no_such_user(user_id: int) -> NotFound:
    """The one answer for a user id that names no one: never existed or erased alike."""
    return NotFound(
        f"user {user_id} does not exist",
        hint="create it with POST /users",
        cli_hint="`tastegraph users list` shows the users; "
        "create one with `tastegraph users create HANDLE`",
    )


class EngagementRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ users
    def create_user(self, handle: str, name: str = "") -> dict[str, Any]:
        handle = handle.strip()
        if not handle or len(handle) > 64:
            raise InvalidInput("a user handle must have 1 to 64 characters")
        with self._db.write() as conn:
            exists = conn.execute(
                sa.select(t.users.c.id).where(t.users.c.handle == handle)
            ).scalar_one_or_none()
            if exists is not None:
                raise Conflict(f"user {handle!r} already exists", user_id=exists)
            uid = conn.execute(
                t.users.insert().values(handle=handle, name=name, created_at=now_iso())
            ).inserted_primary_key[0]  # type: ignore[index]
        return self.get_user(int(uid))

    def get_user(self, user_id: int) -> dict[str, Any]:
        with self._db.read() as conn:
            r = conn.execute(sa.select(t.users).where(t.users.c.id == user_id)).one_or_none()
        if r is None:
            raise no_such_user(user_id)
        return dict(r._mapping)

    def list_users(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        with self._db.read() as conn:
            q = sa.select(t.users).order_by(t.users.c.id).offset(offset).limit(limit)
            return [dict(r._mapping) for r in conn.execute(q)]

    def user_ids(self, limit: int) -> list[int]:
        """Ids of up to ``limit`` users (no order promised)."""
        with self._db.read() as conn:
            return [int(r[0]) for r in conn.execute(sa.select(t.users.c.id).limit(limit))]

    # ----------------------------------------------------------------- boards
    def create_board(self, user_id: int, name: str, description: str = "") -> dict[str, Any]:
        self.get_user(user_id)
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a board name must have 1 to 200 characters")
        with self._db.write() as conn:
            exists = conn.execute(
                sa.select(t.boards.c.id).where(
                    t.boards.c.user_id == user_id, t.boards.c.name == name
                )
            ).scalar_one_or_none()
            if exists is not None:
                raise Conflict(f"user {user_id} already has a board {name!r}", board_id=exists)
            bid = conn.execute(
                t.boards.insert().values(
                    user_id=user_id, name=name, description=description, created_at=now_iso()
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return self.get_board(int(bid))

    def get_board(self, board_id: int) -> dict[str, Any]:
        with self._db.read() as conn:
            r = conn.execute(sa.select(t.boards).where(t.boards.c.id == board_id)).one_or_none()
            if r is None:
                raise NotFound(
                    f"board {board_id} does not exist",
                    hint="GET /users/{user_id} lists a user's boards",
                    cli_hint="`tastegraph boards list --user USER_ID` lists a user's boards",
                )
            pins = [
                x[0]
                for x in conn.execute(
                    sa.select(t.board_pins.c.pin_id)
                    .where(t.board_pins.c.board_id == board_id)
                    .order_by(t.board_pins.c.saved_at)
                )
            ]
        return {**dict(r._mapping), "pins": pins}

    def user_boards(self, user_id: int) -> list[dict[str, Any]]:
        with self._db.read() as conn:
            q = sa.select(t.boards).where(t.boards.c.user_id == user_id).order_by(t.boards.c.id)
            return [dict(r._mapping) for r in conn.execute(q)]

    def save_pin(self, board_id: int, pin_id: int) -> bool:
        """Put a pin on a board; False when it was already there."""
        board = self.get_board(board_id)
        with self._db.write() as conn:
            if conn.execute(sa.select(t.pins.c.id).where(t.pins.c.id == pin_id)).first() is None:
                raise NotFound(f"pin {pin_id} does not exist")
            # RETURNING, not rowcount: psycopg reports -1 for an insert that did nothing.
            added = conn.execute(
                self._db.dialect.insert_ignore(t.board_pins).returning(t.board_pins.c.pin_id),
                {"board_id": board["id"], "pin_id": pin_id, "saved_at": now_iso()},
            ).first()
        return added is not None

    def board_edges(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The pin-board graph as two aligned arrays (board ids, pin ids)."""
        with self._db.read() as conn:
            rows = list(conn.execute(sa.select(t.board_pins.c.board_id, t.board_pins.c.pin_id)))
        return (
            np.array([r[0] for r in rows], np.int64),
            np.array([r[1] for r in rows], np.int64),
        )
