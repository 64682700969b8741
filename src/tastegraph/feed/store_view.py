"""What the feed reads from the store: pin metadata, user ids and the event log as columns.

The store returns plain tuples, only the columns the engine uses: building full
``Pin`` objects (every JSON column decoded) for the whole catalog, or one ``Event`` object per
logged event, was most of a server's start-up.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from tastegraph.feed.data import Event, EventBatch, PinTable
from tastegraph.feed.hygiene import INT32_MAX, SkipCounter, float_column, int_column

__all__ = ["load_event_batch", "pin_meta", "pin_table", "to_engine_event", "user_ids"]

PinMeta = tuple[str, str, str | None, str, Any]  # title, board, first label, created_at, dup


def _epoch(iso: Any) -> float:
    """Unix seconds of a stored ISO time; 0 (long ago: never "new") when it is not one."""
    try:
        t = datetime.fromisoformat(iso).timestamp()
    except (ValueError, TypeError, OverflowError, OSError):
        return 0.0
    return t if math.isfinite(t) else 0.0


def _first_label(labels: Any) -> str | None:
    """The top label of a stored ``[[label, score], ...]`` list (None when there is none)."""
    try:
        return str(labels[0][0]) if labels else None
    except (TypeError, IndexError, KeyError):
        return None


def _group(value: Any) -> int:
    return value if isinstance(value, int) and -(2**63) <= value < 2**63 else -1


def pin_meta(store: Any, ids: list[int] | None) -> dict[int, PinMeta]:
    """``(title, board, first label or None, created_at, dup_group)`` per pin (None: all pins).

    Only the columns the engine uses, read as tuples: building full ``Pin`` objects (every JSON
    column decoded) for the whole catalog took most of the engine's start-up.
    """
    rows = store.pin_meta(ids)
    return {int(r[0]): (r[1], r[2], _first_label(r[3]), r[4], r[5]) for r in rows}


def pin_table(ids: np.ndarray, vectors: np.ndarray, meta: dict[int, PinMeta]) -> PinTable:
    """The engine's pin table of ``ids`` (rows of ``vectors``) with their stored metadata."""
    rows = [meta[int(i)] for i in ids]
    return PinTable(
        ids=ids,
        vectors=vectors,
        boards=[r[1] if isinstance(r[1], str) else "" for r in rows],
        labels=[r[2] or "" for r in rows],
        # Only words a person wrote: reasons must not name a pin by its id or by a label
        # the image model guessed (labels still serve the diversity caps).
        titles=[r[0] if isinstance(r[0], str) else "" for r in rows],
        created_at=np.array([_epoch(r[3]) for r in rows], np.float64),
        dup_group=np.array([_group(r[4]) for r in rows], np.int64),
        blocked=np.zeros(len(rows), bool),
    )


def user_ids(store: Any, limit: int) -> list[int]:
    """Ids of up to ``limit`` users of the store."""
    return list(store.user_ids(limit))


def to_engine_event(row: dict[str, Any]) -> Event:
    """The engine's event of one stored event row (``store.events_since``)."""
    surface = str(row.get("surface") or "")
    board = surface.split(":", 1)[1] if surface.startswith("board:") else ""
    return Event(
        user=int(row["user_id"]),
        pin=int(row["pin_id"]),
        kind=str(row["kind"]),
        ts=float(row["ts"]),
        dwell_ms=float(row.get("dwell_ms") or 0.0),
        position=row.get("position"),
        surface=surface,
        request_id=str(row.get("request_id") or ""),
        board=board,
    )


def load_event_batch(
    store: Any, after_id: int = 0, limit: int | None = None, *, skipped: SkipCounter | None = None
) -> tuple[EventBatch, int]:
    """Logged events with ``id > after_id`` (at most ``limit``), in id order, as columns.

    Returns the batch and the id of the last event read (``after_id`` when none). Equivalent to
    ``EventBatch.from_events`` over :func:`to_engine_event` of ``store.events_since`` rows, at a
    fraction of the cost: rows come back as plain tuples and each column is converted once.

    Rows whose ids, kind or position cannot be represented (an id SQLite kept as REAL or TEXT,
    a position beyond 32 bits) are left out and counted in ``skipped``; times and dwell that
    are not numbers become NaN, which the engine skips and counts itself.
    """
    from tastegraph.feed.data import KINDS, SURFACES

    rows = store.event_columns(after_id, limit)
    if not rows:
        return EventBatch.from_arrays([], [], np.zeros(0, np.int8), []), after_id
    ids, users, pins, kinds, ts, dwell, surfaces, positions, requests = zip(*rows, strict=True)
    del rows
    code_of = {k: i for i, k in enumerate(KINDS)}
    kind_code = np.array(
        [code_of.get(k.strip().lower(), -1) if isinstance(k, str) else -1 for k in kinds], np.int8
    )
    user, ok_user = int_column(users)
    pin, ok_pin = int_column(pins)
    position, ok_pos = int_column([-1 if x is None else x for x in positions])
    ok_pos &= (position >= -1) & (position <= INT32_MAX)
    # Surfaces repeat: decode each distinct one once ("board:<name>" saves add a board edge).
    surface_of: dict[Any, tuple[int, str]] = {}
    for sf in set(surfaces):
        name = str(sf or "")
        board = name.split(":", 1)[1] if name.startswith("board:") else ""
        surface_of[sf] = (SURFACES.index(name) if name in SURFACES else -1, board)
    boards = [surface_of[sf][1] for sf in surfaces]
    request_code: dict[Any, int] = {}
    counts = skipped if skipped is not None else SkipCounter()
    counts.add_mask("bad_user", ~ok_user)
    counts.add_mask("bad_pin", ok_user & ~ok_pin)
    counts.add_mask("bad_kind", ok_user & ok_pin & (kind_code < 0))
    good = ok_user & ok_pin & (kind_code >= 0)
    counts.add_mask("bad_position", good & ~ok_pos)
    good &= ok_pos
    batch = EventBatch(
        user=user,
        pin=pin,
        kind=np.maximum(kind_code, 0),
        ts=float_column(ts),
        dwell_ms=_finite32(float_column(dwell, default=0.0)),
        position=np.where(ok_pos, position, -1).astype(np.int32),
        surface=np.array([surface_of[sf][0] for sf in surfaces], np.int8),
        request=np.array(
            [request_code.setdefault(r, len(request_code)) if r else -1 for r in requests],
            np.int64,
        ),
        source=np.full(len(ids), -1, np.int8),
        board=np.array(boards, dtype=object) if any(boards) else None,
    )
    if not good.all():
        batch = batch.take(np.flatnonzero(good))
    return batch, int(ids[-1])


def _finite32(x: np.ndarray) -> np.ndarray:
    """float32 of ``x``; values float32 cannot hold become NaN (skipped later), not inf."""
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(x) < 1e30, x, np.nan).astype(np.float32)
