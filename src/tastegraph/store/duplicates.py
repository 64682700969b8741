"""Perceptual hashes and the near-duplicate groups found from them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.store import schema as t
from tastegraph.store.changes import record_changes
from tastegraph.store.db import Database

__all__ = ["DuplicateRepository"]


class DuplicateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def phashes(self) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
        with self._db.read() as conn:
            rows = list(
                conn.execute(sa.select(t.pins.c.id, t.pins.c.phash).where(t.pins.c.phash != ""))
            )
        ids = np.array([r.id for r in rows], np.int64)
        hashes = np.array([int(r.phash, 16) for r in rows], np.uint64)
        return ids, hashes

    def set_dup_groups(self, groups: Mapping[int, int | None]) -> None:
        """Set each pin's near-duplicate group; logged as an upsert of each pin, like every
        write to a pin row, so that serving processes' copies of the pin follow."""
        with self._db.write() as conn:
            self._db.dialect.lock_log(conn, "changes")
            changed = []
            for pin_id, group in groups.items():
                n = conn.execute(
                    t.pins.update().where(t.pins.c.id == pin_id).values(dup_group=group)
                ).rowcount
                if n:
                    changed.append(int(pin_id))
            record_changes(conn, changed, "upsert")

    def dup_groups(self) -> dict[int, list[int]]:
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(t.pins.c.id, t.pins.c.dup_group)
                .where(t.pins.c.dup_group.is_not(None))
                .order_by(t.pins.c.dup_group, t.pins.c.id)
            )
            out: dict[int, list[int]] = {}
            for r in rows:
                out.setdefault(r.dup_group, []).append(r.id)
        return out
