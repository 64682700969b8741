"""Store methods for users, boards, saves and engagement events (mixed into ``SQLStore``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import schema as t

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["EngagementMixin"]


class EngagementMixin:
    """Users, boards, the pin-board graph and the engagement log."""

    if TYPE_CHECKING:

        def write(self) -> AbstractContextManager[sa.Connection]: ...
        def read(self) -> AbstractContextManager[sa.Connection]: ...

    # ------------------------------------------------------------------ users
    def create_user(self, handle: str, name: str = "") -> dict[str, Any]:
        from tastegraph.store.sql import now_iso

        handle = handle.strip()
        if not handle or len(handle) > 64:
            raise InvalidInput("a user handle must have 1 to 64 characters")
        with self.write() as conn:
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
        with self.read() as conn:
            r = conn.execute(sa.select(t.users).where(t.users.c.id == user_id)).one_or_none()
        if r is None:
            raise NotFound(f"user {user_id} does not exist", hint="create it with POST /users")
        return dict(r._mapping)

    def list_users(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        with self.read() as conn:
            q = sa.select(t.users).order_by(t.users.c.id).offset(offset).limit(limit)
            return [dict(r._mapping) for r in conn.execute(q)]

    # ----------------------------------------------------------------- boards
    def create_board(self, user_id: int, name: str, description: str = "") -> dict[str, Any]:
        from tastegraph.store.sql import now_iso

        self.get_user(user_id)
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a board name must have 1 to 200 characters")
        with self.write() as conn:
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
        with self.read() as conn:
            r = conn.execute(sa.select(t.boards).where(t.boards.c.id == board_id)).one_or_none()
            if r is None:
                raise NotFound(f"board {board_id} does not exist")
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
        with self.read() as conn:
            q = sa.select(t.boards).where(t.boards.c.user_id == user_id).order_by(t.boards.c.id)
            return [dict(r._mapping) for r in conn.execute(q)]

    def save_pin(self, board_id: int, pin_id: int) -> bool:
        """Put a pin on a board; False when it was already there."""
        from tastegraph.store.sql import now_iso

        board = self.get_board(board_id)
        with self.write() as conn:
            if conn.execute(sa.select(t.pins.c.id).where(t.pins.c.id == pin_id)).first() is None:
                raise NotFound(f"pin {pin_id} does not exist")
            n = conn.execute(
                sa.text(
                    "INSERT OR IGNORE INTO board_pins(board_id, pin_id, saved_at) "
                    "VALUES (:b, :p, :at)"
                ),
                {"b": board["id"], "p": pin_id, "at": now_iso()},
            ).rowcount
        return bool(n)

    def board_edges(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The pin-board graph as two aligned arrays (board ids, pin ids)."""
        with self.read() as conn:
            rows = list(conn.execute(sa.select(t.board_pins.c.board_id, t.board_pins.c.pin_id)))
        return (
            np.array([r[0] for r in rows], np.int64),
            np.array([r[1] for r in rows], np.int64),
        )

    # ----------------------------------------------------------------- events
    def existing_ids(self, table: str, ids: Iterable[int]) -> set[int]:
        tab = {"users": t.users, "pins": t.pins}[table]
        # A number SQLite cannot bind names no row; binding it would fail the whole batch.
        idl = sorted({int(i) for i in ids if 0 < int(i) < 2**63})
        found: set[int] = set()
        with self.read() as conn:
            for start in range(0, len(idl), 900):
                chunk = idl[start : start + 900]
                found.update(
                    r[0] for r in conn.execute(sa.select(tab.c.id).where(tab.c.id.in_(chunk)))
                )
        return found

    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert validated events; rows whose ``key`` is already known (or repeated within the
        batch) are ignored. Returns exactly the rows that were inserted."""
        if not rows:
            return []
        fresh: dict[str, dict[str, Any]] = {}
        for r in rows:
            fresh.setdefault(r["key"], r)
        with self.write() as conn:
            keys = list(fresh)
            for start in range(0, len(keys), 900):
                chunk = keys[start : start + 900]
                known = sa.select(t.events.c.key).where(t.events.c.key.in_(chunk))
                for (k,) in conn.execute(known):
                    fresh.pop(k, None)
            new = list(fresh.values())
            if new:
                # The write lock makes the check above authoritative for this process; OR IGNORE
                # covers another process writing the same key in between.
                conn.execute(t.events.insert().prefix_with("OR IGNORE"), new)
        return new

    def events_since(self, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(t.events).where(t.events.c.id > after_id).order_by(t.events.c.id)
        if limit:
            q = q.limit(limit)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def last_event_id(self) -> int:
        with self.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(t.events.c.id))).scalar_one() or 0)

    def count_events(self) -> int:
        with self.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one())
