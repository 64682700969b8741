"""Raw vectors per (pin, space): any index can be rebuilt from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.store import schema as t
from tastegraph.store.db import Database
from tastegraph.store.ports import VectorEdits

__all__ = ["VectorRepository", "vector_rows"]


def vector_rows(pin_id: int, vecs: VectorEdits) -> list[dict[str, Any]]:
    """Rows of ``vectors`` for one pin's ``{space: (model_id, vector)}``."""
    rows = []
    for space, (model_id, vec) in vecs.items():
        v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
        rows.append(
            {"pin_id": pin_id, "space": space, "model_id": model_id, "dim": v.shape[0],
             "data": v.tobytes()}
        )  # fmt: skip
    return rows


class VectorRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def put(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Store ``rows`` (from :func:`vector_rows`), replacing a pin's vector of that space."""
        if rows:
            self._db.upsert(
                conn, t.vectors, rows, keys=("pin_id", "space"), update=("model_id", "dim", "data")
            )

    def get_vectors(
        self, space: str, ids: Sequence[int] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """Vectors of one space: ``(ids, matrix, model_ids)``; all pins when ``ids`` is None."""
        q = sa.select(t.vectors.c.pin_id, t.vectors.c.model_id, t.vectors.c.data).where(
            t.vectors.c.space == space
        )
        rows: list[Any] = []
        with self._db.read() as conn:
            if ids is None:
                rows = list(conn.execute(q.order_by(t.vectors.c.pin_id)))
            else:
                idl = [int(i) for i in ids]
                for start in range(0, len(idl), 500):
                    rows.extend(
                        conn.execute(q.where(t.vectors.c.pin_id.in_(idl[start : start + 500])))
                    )
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), []
        mat = np.stack([np.frombuffer(r.data, dtype=np.float32) for r in rows])
        return np.array([r.pin_id for r in rows], np.int64), mat, [r.model_id for r in rows]

    def stale_vector_ids(self, space: str, model_id: str) -> list[int]:
        """Pins whose stored vector of ``space`` came from another model than ``model_id``."""
        q = sa.select(t.vectors.c.pin_id).where(
            t.vectors.c.space == space, t.vectors.c.model_id != model_id
        )
        with self._db.read() as conn:
            return [int(r[0]) for r in conn.execute(q)]
