"""Store methods for users, boards, saves and engagement events (mixed into ``SQLStore``)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.engagement.events import EVENT_KINDS, MAX_DWELL_MS, MAX_POSITION
from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import schema as t

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tastegraph.engagement.events import EventFilter, TimeWindow

__all__ = ["EVENTS_GENERATION_KEY", "EngagementMixin"]

EVENTS_GENERATION_KEY = "events_generation"


class EngagementMixin:
    """Users, boards, the pin-board graph and the engagement log."""

    if TYPE_CHECKING:

        def write(self) -> AbstractContextManager[sa.Connection]: ...
        def read(self) -> AbstractContextManager[sa.Connection]: ...
        def get_kv(self, key: str, default: Any = None) -> Any: ...

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
            raise NotFound(
                f"user {user_id} does not exist",
                hint="create it with POST /users",
                cli_hint="`tastegraph users list` shows the users; "
                "create one with `tastegraph users create HANDLE`",
            )
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

    def count_events(
        self, where: EventFilter | None = None, window: TimeWindow | None = None
    ) -> int:
        """All logged events, or those ``where`` selects (``window`` gives its "future")."""
        q = sa.select(sa.func.count()).select_from(t.events)
        if where is not None:
            q = q.where(*_event_clauses(where, window))
        with self.read() as conn:
            return int(conn.execute(q).scalar_one())

    def find_events(
        self, where: EventFilter, window: TimeWindow, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The first ``limit`` events ``where`` selects, in id order."""
        q = sa.select(t.events).where(*_event_clauses(where, window))
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(t.events.c.id).limit(limit))]

    def delete_events(
        self,
        where: EventFilter,
        window: TimeWindow,
        *,
        actor: tuple[int | None, str],
        note: dict[str, Any] | None = None,
        keep: Callable[[Iterator[dict[str, Any]]], None] | None = None,
    ) -> int:
        """Delete the events ``where`` selects, audited as ``actor`` (token id, role); returns
        how many.

        ``keep`` is handed every doomed row first, inside the same write transaction, so a copy
        is written before anything is gone and nothing is deleted that was not copied. The audit
        row and the new log generation (see :meth:`events_generation`) commit with the deletion.
        """
        from tastegraph.store.sql import now_iso

        clauses = _event_clauses(where, window)
        at = now_iso()
        with self.write() as conn:
            if keep is not None:
                rows = conn.execute(sa.select(t.events).where(*clauses).order_by(t.events.c.id))
                keep(dict(r._mapping) for r in rows)
            n = int(conn.execute(t.events.delete().where(*clauses)).rowcount)
            if n:
                conn.execute(
                    sa.text(
                        "INSERT INTO kv(key, value) VALUES (:k, :v) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value"
                    ),
                    {
                        "k": EVENTS_GENERATION_KEY,
                        "v": json.dumps({"id": secrets.token_hex(8), "deleted": n, "at": at}),
                    },
                )
            target = {"filter": where.to_dict(), "deleted": n, **(note or {})}
            conn.execute(
                t.audit_log.insert().values(
                    at=at,
                    token_id=actor[0],
                    role=actor[1],
                    action="delete_events",
                    target=json.dumps(target, sort_keys=True),
                )
            )
        return n

    def events_generation(self) -> str | None:
        """Changes whenever logged events are deleted.

        Readers that follow the log by id (the feed engine) cannot see a row disappear; when
        this differs from what they last saw, they rebuild from the log as it is now.
        """
        rec = self.get_kv(EVENTS_GENERATION_KEY)
        return str(rec["id"]) if rec else None

    def event_stats(self, window: TimeWindow) -> dict[str, Any]:
        """Counts per kind, the time range, and how many rows lie past or outside ``window``."""
        from tastegraph.engagement.events import EventFilter

        ev = t.events
        with self.read() as conn:
            q = sa.select(ev.c.kind, sa.func.count()).group_by(ev.c.kind)
            kinds = {str(k): int(n) for k, n in conn.execute(q)}
            lo, hi = conn.execute(sa.select(sa.func.min(ev.c.ts), sa.func.max(ev.c.ts))).one()
        return {
            "events": sum(kinds.values()),
            "by_kind": kinds,
            "min_ts": lo,
            "max_ts": hi,
            "future": self.count_events(EventFilter(future=True), window),
            "invalid": self.count_events(EventFilter(invalid=True), window),
        }


def _event_clauses(f: EventFilter, window: TimeWindow | None) -> list[Any]:
    """SQL conditions for ``f``; an empty filter is refused unless it says ``all``."""
    if f.is_empty() and not f.all:
        raise InvalidInput(
            "no event filter given",
            hint="name users, pins, kinds, times, keys or ids, or say 'all' to mean every event",
        )
    ev = t.events
    c: list[Any] = []
    for col, value in ((ev.c.user_id, f.user_id), (ev.c.pin_id, f.pin_id)):
        if value is not None:
            c.append(col == value)
    if f.kind is not None:
        c.append(ev.c.kind == f.kind)
    if f.key is not None:
        c.append(ev.c.key == f.key)
    if f.after is not None:
        c.append(ev.c.ts >= f.after)
    if f.before is not None:
        c.append(ev.c.ts < f.before)
    if f.min_id is not None:
        c.append(ev.c.id >= f.min_id)
    if f.max_id is not None:
        c.append(ev.c.id <= f.max_id)
    if f.future or f.invalid:
        if window is None:
            raise InvalidInput("'future' and 'invalid' need the accepted time window")
        if f.future:
            c.append(ev.c.ts > window.max_ts)
        if f.invalid:
            # What parse_event rejects today, for rows logged before it did (or by other tools).
            c.append(
                sa.or_(
                    ev.c.ts.is_(None),
                    ev.c.ts < window.min_ts,
                    ev.c.ts > window.max_ts,
                    ev.c.kind.not_in(EVENT_KINDS),
                    ev.c.position < 0,
                    ev.c.position > MAX_POSITION,
                    ev.c.dwell_ms < 0,
                    ev.c.dwell_ms > MAX_DWELL_MS,
                    sa.and_(ev.c.kind == "dwell", ev.c.dwell_ms <= 0),
                    ev.c.user_id < 1,
                    ev.c.pin_id < 1,
                )
            )
    return c
