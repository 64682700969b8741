"""Ingest runs, the source references they finished, and what they quarantined."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from tastegraph.domain import QuarantineEntry
from tastegraph.store import schema as t
from tastegraph.store.db import Database, now_iso

__all__ = ["IngestRunRepository"]


class IngestRunRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def known_source(self, ref: str) -> str | None:
        with self._db.read() as conn:
            return conn.execute(
                sa.select(t.sources.c.content_hash).where(t.sources.c.ref == ref)
            ).scalar_one_or_none()

    def known_sources(self) -> set[str]:
        with self._db.read() as conn:
            return {r[0] for r in conn.execute(sa.select(t.sources.c.ref))}

    def source_pins(self) -> dict[str, int | None]:
        """Every source reference an ingest finished, and the pin it gave."""
        with self._db.read() as conn:
            q = sa.select(t.sources.c.ref, t.sources.c.pin_id)
            return {r.ref: r.pin_id for r in conn.execute(q)}

    def start_run(self, run_id: str, source: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                t.ingest_runs.insert().values(
                    id=run_id, source=source, started_at=now_iso(), status="running", counts={}
                )
            )

    def finish_run(self, run_id: str, status: str, counts: dict[str, int]) -> None:
        with self._db.write() as conn:
            conn.execute(
                t.ingest_runs.update()
                .where(t.ingest_runs.c.id == run_id)
                .values(status=status, counts=counts, finished_at=now_iso())
            )

    def running_runs(self) -> list[tuple[str, str, str]]:
        """``(run_id, source, started_at)`` of the runs marked running, oldest first."""
        r = t.ingest_runs
        q = sa.select(r.c.id, r.c.source, r.c.started_at).where(r.c.status == "running")
        with self._db.read() as conn:
            return [
                (x.id, x.source, x.started_at) for x in conn.execute(q.order_by(r.c.started_at))
            ]

    def interrupt_runs(self, run_ids: Sequence[str], *, forget: Sequence[str] = ()) -> None:
        """Mark these runs ``interrupted`` (those still running), and delete the ``forget``
        records (their owners) in the same transaction."""
        r = t.ingest_runs
        with self._db.write() as conn:
            for run_id in run_ids:
                conn.execute(
                    r.update()
                    .where(r.c.id == run_id, r.c.status == "running")
                    .values(status="interrupted", finished_at=now_iso())
                )
            if forget:
                conn.execute(t.kv.delete().where(t.kv.c.key.in_(list(forget))))

    def add_quarantine(self, run_id: str, entries: Sequence[QuarantineEntry]) -> None:
        if not entries:
            return
        now = now_iso()
        with self._db.write() as conn:
            conn.execute(
                t.quarantine.insert(),
                [
                    {
                        "run_id": run_id,
                        "source": e.source,
                        "reason": e.reason,
                        "message": e.message,
                        "created_at": now,
                    }
                    for e in entries
                ],
            )

    def quarantine_report(self, run_id: str | None = None) -> list[QuarantineEntry]:
        q = sa.select(t.quarantine).order_by(t.quarantine.c.id)
        if run_id:
            q = q.where(t.quarantine.c.run_id == run_id)
        with self._db.read() as conn:
            return [
                QuarantineEntry(
                    source=r.source, reason=r.reason, message=r.message, run_id=r.run_id
                )
                for r in conn.execute(q)
            ]
