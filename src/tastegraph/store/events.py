"""The engagement event log: idempotent inserts by ``key``, reads in id order, audited deletes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from tastegraph.domain import EVENT_KINDS, MAX_DWELL_MS, MAX_POSITION
from tastegraph.errors import InvalidInput
from tastegraph.store import schema as t
from tastegraph.store.artefacts import put_kv
from tastegraph.store.audit import audit_row
from tastegraph.store.db import Database, now_iso
from tastegraph.store.ports import EventSelection, EventTimes

__all__ = ["EVENTS_GENERATION_KEY", "EventRepository"]

EVENTS_GENERATION_KEY = "events_generation"

# What ``event_columns`` returns per event, in order.
_COLUMNS = (
    "id", "user_id", "pin_id", "kind", "ts", "dwell_ms", "surface", "position", "request_id",
)  # fmt: skip


class EventRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def existing_ids(self, table: str, ids: Iterable[int]) -> set[int]:
        tab = {"users": t.users, "pins": t.pins}[table]
        # A number a 64-bit integer column cannot hold names no row; binding it would fail the
        # whole batch.
        idl = sorted({int(i) for i in ids if 0 < int(i) < 2**63})
        found: set[int] = set()
        with self._db.read() as conn:
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
        with self._db.write() as conn:
            # Other processes' appends wait here: ids commit in order, and the check below is
            # authoritative (the ignoring insert still guards against a writer without it).
            self._db.dialect.lock_log(conn, "events")
            keys = list(fresh)
            for start in range(0, len(keys), 900):
                chunk = keys[start : start + 900]
                known = sa.select(t.events.c.key).where(t.events.c.key.in_(chunk))
                for (k,) in conn.execute(known):
                    fresh.pop(k, None)
            new = list(fresh.values())
            if new:
                conn.execute(self._db.dialect.insert_ignore(t.events), new)
        return new

    def events_since(self, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(t.events).where(t.events.c.id > after_id).order_by(t.events.c.id)
        if limit:
            q = q.limit(limit)
        with self._db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def event_columns(self, after_id: int = 0, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Like :meth:`events_since`, as plain tuples ``(id, user_id, pin_id, kind, ts,
        dwell_ms, surface, position, request_id)``: the feed engine reads the whole log."""
        ev = t.events
        q = sa.select(*(ev.c[c] for c in _COLUMNS)).where(ev.c.id > after_id).order_by(ev.c.id)
        if limit:
            q = q.limit(limit)
        with self._db.read() as conn:
            return [tuple(r) for r in conn.execute(q).fetchall()]

    def last_event_id(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(t.events.c.id))).scalar_one() or 0)

    def count_events(
        self, where: EventSelection | None = None, window: EventTimes | None = None
    ) -> int:
        """All logged events, or those ``where`` selects (``window`` gives its "future")."""
        q = sa.select(sa.func.count()).select_from(t.events)
        if where is not None:
            q = q.where(*_event_clauses(where, window))
        with self._db.read() as conn:
            return int(conn.execute(q).scalar_one())

    def find_events(
        self, where: EventSelection, window: EventTimes, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The first ``limit`` events ``where`` selects, in id order."""
        q = sa.select(t.events).where(*_event_clauses(where, window))
        with self._db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(t.events.c.id).limit(limit))]

    def delete_events(
        self,
        where: EventSelection,
        window: EventTimes,
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
        clauses = _event_clauses(where, window)
        at = now_iso()
        with self._db.write() as conn:
            if keep is not None:
                rows = conn.execute(sa.select(t.events).where(*clauses).order_by(t.events.c.id))
                keep(dict(r._mapping) for r in rows)
            n = int(conn.execute(t.events.delete().where(*clauses)).rowcount)
            if n:
                generation = {"id": secrets.token_hex(8), "deleted": n, "at": at}
                put_kv(self._db, conn, EVENTS_GENERATION_KEY, generation)
            target = {"filter": where.to_dict(), "deleted": n, **(note or {})}
            audit_row(
                conn, actor[0], actor[1], "delete_events", json.dumps(target, sort_keys=True), at
            )
        return n

    def events_generation(self) -> str | None:
        """Changes whenever logged events are deleted.

        Readers that follow the log by id (the feed engine) cannot see a row disappear; when
        this differs from what they last saw, they rebuild from the log as it is now.
        """
        with self._db.read() as conn:
            rec = conn.execute(
                sa.select(t.kv.c.value).where(t.kv.c.key == EVENTS_GENERATION_KEY)
            ).scalar_one_or_none()
        return str(rec["id"]) if rec else None

    def event_stats(self, window: EventTimes) -> dict[str, Any]:
        """Counts per kind, the time range, and how many rows lie past or outside ``window``."""
        ev = t.events
        with self._db.read() as conn:
            q = sa.select(ev.c.kind, sa.func.count()).group_by(ev.c.kind)
            kinds = {str(k): int(n) for k, n in conn.execute(q)}
            lo, hi = conn.execute(sa.select(sa.func.min(ev.c.ts), sa.func.max(ev.c.ts))).one()
        return {
            "events": sum(kinds.values()),
            "by_kind": kinds,
            "min_ts": lo,
            "max_ts": hi,
            "future": self._count(_future(window)),
            "invalid": self._count(_invalid(window)),
        }

    def _count(self, clause: sa.ColumnElement[bool]) -> int:
        with self._db.read() as conn:
            q = sa.select(sa.func.count()).select_from(t.events).where(clause)
            return int(conn.execute(q).scalar_one())


def _event_clauses(f: EventSelection, window: EventTimes | None) -> list[Any]:
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
            c.append(_future(window))
        if f.invalid:
            c.append(_invalid(window))
    return c


def _future(window: EventTimes) -> sa.ColumnElement[bool]:
    return t.events.c.ts > window.max_ts


def _invalid(window: EventTimes) -> sa.ColumnElement[bool]:
    # What parse_event rejects today, for rows logged before it did (or by other tools).
    ev = t.events
    return sa.or_(
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
