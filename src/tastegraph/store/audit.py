"""The audit log: who (token, role) did what to which target, newest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tastegraph.store import schema as t
from tastegraph.store.db import Database, now_iso

__all__ = ["AuditRepository", "audit_row"]


def audit_row(
    conn: sa.Connection, token_id: int | None, role: str, action: str, target: str, at: str
) -> None:
    """Write one audit line inside the caller's transaction."""
    conn.execute(
        t.audit_log.insert().values(
            at=at, token_id=token_id, role=role, action=action, target=target
        )
    )


class AuditRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def audit(self, token_id: int | None, role: str, action: str, target: str) -> None:
        with self._db.write() as conn:
            audit_row(conn, token_id, role, action, target, now_iso())

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
            )
            return [dict(r._mapping) for r in rows]
