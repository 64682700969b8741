"""Pins: add (idempotent by content hash), read, edit and delete, each one transaction that
also keeps the vectors, the keyword index, the change log and the source references in step."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.domain import Pin
from tastegraph.errors import InvalidInput, NotFound
from tastegraph.store import schema as t
from tastegraph.store.changes import record_changes
from tastegraph.store.db import Database, now_iso
from tastegraph.store.keyword import keyword_doc
from tastegraph.store.ports import (
    PIN_RECORD_FIELDS,
    KeywordDoc,
    KeywordIndex,
    NewPin,
    PinMeta,
    VectorEdits,
)
from tastegraph.store.vectors import VectorRepository, vector_rows

__all__ = ["EDITABLE", "PinRepository"]

EDITABLE = ("title", "description", "link", "board", "tags", "attributes")

_PIN_COLS = [c for c in t.pins.c if c.name != "thumbnail"]
_RECORD_COLS = [t.pins.c[name] for name in PIN_RECORD_FIELDS]
_META_COLS = [t.pins.c[n] for n in ("id", "title", "board", "labels", "created_at", "dup_group")]
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
# Built once: constructing a select per call cost more than running it (routes read 20 to 100
# pins per request); an expanding parameter takes each chunk of ids.
_IDS: sa.BindParameter[list[int]] = sa.bindparam("ids", expanding=True)
_PINS_BY_ID = sa.select(*_PIN_COLS).where(t.pins.c.id.in_(_IDS))
# In id order on every database (PostgreSQL returns an IN list in storage order otherwise).
_RECORDS_BY_ID = sa.select(*_RECORD_COLS).where(t.pins.c.id.in_(_IDS)).order_by(t.pins.c.id)
_META_BY_ID = sa.select(*_META_COLS).where(t.pins.c.id.in_(_IDS)).order_by(t.pins.c.id)


def _row_to_pin(r: Any) -> Pin:
    return Pin(
        id=r.id,
        content_hash=r.content_hash,
        title=r.title,
        description=r.description,
        link=r.link,
        board=r.board,
        tags=list(r.tags or []),
        labels=[(str(a), float(b)) for a, b in (r.labels or [])],
        attributes=dict(r.attributes or {}),
        source=r.source,
        phash=r.phash,
        width=r.width,
        height=r.height,
        format=r.format,
        dup_group=r.dup_group,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _pin_row(it: NewPin, now: str) -> dict[str, Any]:
    return {
        "content_hash": it.content_hash,
        "phash": it.phash,
        "title": it.title,
        "description": it.description,
        "link": it.link,
        "board": it.board,
        "tags": list(it.tags),
        "labels": [[a, round(float(b), 5)] for a, b in it.labels],
        "attributes": dict(it.attributes),
        "source": it.source,
        "width": it.width,
        "height": it.height,
        "format": it.format,
        "thumbnail": it.thumbnail,
        "created_at": now,
        "updated_at": now,
    }


class PinRepository:
    def __init__(self, db: Database, keywords: KeywordIndex, vectors: VectorRepository) -> None:
        self._db = db
        self._keywords = keywords
        self._vectors = vectors

    # ---------------------------------------------------------------- writes
    def add_pins(self, items: Sequence[NewPin]) -> list[tuple[int, bool]]:
        """Insert pins and their vectors in one transaction; existing content hashes are kept.

        Returns ``(pin_id, created)`` per item, in order. Statements are batched (one multi-row
        insert per table): per-row round trips were the largest cost of ingest after the model.
        """
        if not items:
            return []
        now = now_iso()
        with self._db.write() as conn:
            # The change-log lock first: pin writers in other processes wait here, so none
            # sees a hash as new that another is inserting (and ids commit in order).
            self._db.dialect.lock_log(conn, "changes")
            known: dict[str, int] = {}
            hashes = list(dict.fromkeys(it.content_hash for it in items))
            for start in range(0, len(hashes), 900):
                q = sa.select(t.pins.c.id, t.pins.c.content_hash).where(
                    t.pins.c.content_hash.in_(hashes[start : start + 900])
                )
                known.update({r.content_hash: int(r.id) for r in conn.execute(q)})
            fresh: dict[str, NewPin] = {}
            for it in items:
                if it.content_hash not in known:
                    fresh.setdefault(it.content_hash, it)
            if fresh:
                # The unique content hash decides, not the check above: a row another writer
                # committed meanwhile is skipped and its id read back.
                stmt = self._db.dialect.insert_ignore(t.pins).returning(
                    t.pins.c.id, t.pins.c.content_hash
                )
                rows = [_pin_row(it, now) for it in fresh.values()]
                got = {r.content_hash: int(r.id) for r in conn.execute(stmt, rows)}
                for h in [h for h in fresh if h not in got]:
                    del fresh[h]
                    q = sa.select(t.pins.c.id).where(t.pins.c.content_hash == h)
                    known[h] = int(conn.execute(q).scalar_one())
                new_ids = sorted(got.values())
                vecs: list[dict[str, Any]] = []
                docs: list[KeywordDoc] = []
                for it in fresh.values():
                    pin_id = known[it.content_hash] = got[it.content_hash]
                    vecs.extend(vector_rows(pin_id, it.vectors))
                    docs.append(keyword_doc(pin_id, it.title, it.description, it.tags, it.labels))
                self._vectors.put(conn, vecs)
                self._keywords.add(conn, docs)
                record_changes(conn, new_ids, "upsert")
            created = {known[h] for h in fresh}
            sources = [
                {
                    "ref": it.source,
                    "content_hash": it.content_hash,
                    "pin_id": known[it.content_hash],
                }
                for it in items
                if it.source
            ]
            if sources:
                self._db.upsert(
                    conn, t.sources, sources, keys=("ref",), update=("content_hash", "pin_id")
                )
        out: list[tuple[int, bool]] = []
        seen: set[int] = set()
        for it in items:
            pin_id = known[it.content_hash]
            out.append((pin_id, pin_id in created and pin_id not in seen))
            seen.add(pin_id)
        return out

    def update_pin(
        self, pin_id: int, fields: dict[str, Any], vectors: VectorEdits | None = None
    ) -> Pin:
        return self.update_pins([(pin_id, fields, vectors)])[0]

    def update_pins(
        self,
        edits: Sequence[tuple[int, dict[str, Any], VectorEdits | None]],
        *,
        skip_missing: bool = False,
    ) -> list[Pin]:
        """Apply ``(pin_id, fields, vectors)`` edits in one transaction (all or none).

        A pin that does not exist raises NotFound, or with ``skip_missing`` is left out (one
        deleted meanwhile must not undo the others' edits); returns the pins as stored.
        """
        for _, fields, _ in edits:
            bad = set(fields) - set(EDITABLE)
            if bad:
                raise InvalidInput(
                    f"cannot update {sorted(bad)}", hint=f"editable fields: {', '.join(EDITABLE)}"
                )
        out: list[Pin] = []
        with self._db.write() as conn:
            self._db.dialect.lock_log(conn, "changes")
            for pin_id, fields, vectors in edits:
                q = sa.select(*_PIN_COLS).where(t.pins.c.id == pin_id)
                if conn.execute(q).one_or_none() is None:
                    if skip_missing:
                        continue
                    raise NotFound(f"pin {pin_id} does not exist")
                conn.execute(
                    t.pins.update()
                    .where(t.pins.c.id == pin_id)
                    .values(**fields, updated_at=now_iso())
                )
                r = conn.execute(q).one()
                doc = keyword_doc(pin_id, r.title, r.description, r.tags, r.labels)
                self._keywords.update(conn, [doc])
                if vectors:
                    self._vectors.put(conn, vector_rows(pin_id, vectors))
                record_changes(conn, [pin_id], "upsert")
                out.append(_row_to_pin(r))
        return out

    def delete_pin(self, pin_id: int) -> None:
        with self._db.write() as conn:
            self._db.dialect.lock_log(conn, "changes")
            n = conn.execute(t.pins.delete().where(t.pins.c.id == pin_id)).rowcount
            if not n:
                raise NotFound(f"pin {pin_id} does not exist")
            conn.execute(t.vectors.delete().where(t.vectors.c.pin_id == pin_id))
            self._keywords.delete(conn, [pin_id])
            conn.execute(t.sources.delete().where(t.sources.c.pin_id == pin_id))
            record_changes(conn, [pin_id], "delete")

    # ----------------------------------------------------------------- reads
    def get_pin(self, pin_id: int) -> Pin:
        with self._db.read() as conn:
            r = conn.execute(sa.select(*_PIN_COLS).where(t.pins.c.id == pin_id)).one_or_none()
        if r is None:
            raise NotFound(
                f"pin {pin_id} does not exist",
                hint="list pins with GET /pins",
                cli_hint="find pin ids with `tastegraph search WORDS`",
            )
        return _row_to_pin(r)

    def get_pins(self, ids: Iterable[int]) -> dict[int, Pin]:
        return {r.id: _row_to_pin(r) for r in self._rows(_PINS_BY_ID, [int(i) for i in ids])}

    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        """The pins of ``ids`` that exist as plain tuples (``PIN_RECORD_FIELDS``), JSON decoded.

        For routes that serialise many pins per request: no ``Pin`` object per row.
        """
        return [tuple(r) for r in self._rows(_RECORDS_BY_ID, sorted({int(i) for i in ids}))]

    def pin_meta(self, ids: Sequence[int] | None = None) -> list[PinMeta]:
        """``(id, title, board, labels, created_at, dup_group)`` per pin (None: all pins)."""
        if ids is None:
            with self._db.read() as conn:
                return [tuple(r) for r in conn.execute(sa.select(*_META_COLS))]
        return [tuple(r) for r in self._rows(_META_BY_ID, list(ids))]

    def _rows(self, query: sa.Select[Any], ids: Sequence[int]) -> list[Any]:
        rows: list[Any] = []
        with self._db.read() as conn:
            for start in range(0, len(ids), 500):
                rows.extend(conn.execute(query, {"ids": list(ids[start : start + 500])}))
        return rows

    def get_thumbnail(self, pin_id: int) -> bytes:
        with self._db.read() as conn:
            r = conn.execute(
                sa.select(t.pins.c.thumbnail).where(t.pins.c.id == pin_id)
            ).one_or_none()
        if r is None or r.thumbnail is None:
            raise NotFound(f"pin {pin_id} has no thumbnail")
        return bytes(r.thumbnail)

    def list_pins(self, *, offset: int = 0, limit: int = 50, board: str | None = None) -> list[Pin]:
        q = sa.select(*_PIN_COLS).order_by(t.pins.c.id).offset(offset).limit(limit)
        if board:
            q = q.where(t.pins.c.board == board)
        with self._db.read() as conn:
            return [_row_to_pin(r) for r in conn.execute(q)]

    def count_pins(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.pins)).scalar_one())

    def find_by_hash(self, content_hash: str) -> int | None:
        with self._db.read() as conn:
            return conn.execute(
                sa.select(t.pins.c.id).where(t.pins.c.content_hash == content_hash)
            ).scalar_one_or_none()

    def filter_ids(
        self,
        *,
        board: str | None = None,
        tag: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> NDArray[np.int64] | None:
        """Pin ids matching every given filter, or None when no filter is given."""
        if not board and not tag and not attributes:
            return None
        q = sa.select(t.pins.c.id)
        if board:
            q = q.where(t.pins.c.board == board)
        if tag:
            q = q.where(self._db.dialect.json_array_has(t.pins.c.tags, tag))
        for key, value in (attributes or {}).items():
            if not _ATTRIBUTE_NAME.fullmatch(key):
                raise InvalidInput(f"bad attribute name {key!r}")
            # Compared as text, so an attribute stored as 42 matches "42".
            q = q.where(sa.cast(t.pins.c.attributes[key].as_string(), sa.Text) == str(value))
        with self._db.read() as conn:
            return np.array([r[0] for r in conn.execute(q)], dtype=np.int64)
