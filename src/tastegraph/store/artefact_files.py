"""Files in the database (port: ``ports.ArtefactFiles``): the trained feed model and the
whitening projection, published by the process that made them and fetched by any other.

A version is ``(name, SHA-256 of the bytes)``; the bytes are kept once per digest, in chunks of
:data:`CHUNK` bytes (a trained model is tens of MB). Putting bytes already stored under that
name is a no-op; only the newest :data:`KEEP` versions of a name are kept, the bytes of the
others are dropped once no name refers to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tastegraph.errors import InvalidInput, NotFound
from tastegraph.store import schema as t
from tastegraph.store.db import Database, now_iso
from tastegraph.store.ports import ArtefactInfo

__all__ = ["CHUNK", "KEEP", "ArtefactFileRepository"]

CHUNK = 4 << 20
KEEP = 3

_COLS = (t.artefacts.c.name, t.artefacts.c.digest, t.artefacts.c.size, t.artefacts.c.created_at,
         t.artefacts.c.provenance)  # fmt: skip


def _info(r: Any) -> ArtefactInfo:
    return ArtefactInfo(r.name, r.digest, int(r.size), r.created_at, dict(r.provenance))


class ArtefactFileRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def put_artefact(
        self, name: str, data: bytes, provenance: Mapping[str, Any] | None = None
    ) -> ArtefactInfo:
        if not name or len(name) > 128:
            raise InvalidInput(f"an artefact name is 1 to 128 characters, not {name!r}")
        digest = hashlib.sha256(data).hexdigest()
        a, c = t.artefacts, t.artefact_chunks
        with self._db.write() as conn:
            have = conn.execute(
                sa.select(*_COLS).where(a.c.name == name, a.c.digest == digest)
            ).one_or_none()
            if have is not None:
                return _info(have)
            # Two processes may publish the same bytes at once: whichever comes second inserts
            # nothing (the bytes are the same, by digest).
            ignore = self._db.dialect.insert_ignore
            n = max(1, -(-len(data) // CHUNK))
            for seq in range(n):
                part = data[seq * CHUNK : (seq + 1) * CHUNK]
                conn.execute(ignore(c), {"digest": digest, "seq": seq, "data": part})
            created, prov = now_iso(), dict(provenance or {})
            conn.execute(
                ignore(a),
                {"name": name, "digest": digest, "size": len(data), "chunks": n,
                 "created_at": created, "provenance": prov},
            )  # fmt: skip
            self._prune(conn, name)
            # Serving processes learn of a new version through the kv record naming it.
            return ArtefactInfo(name, digest, len(data), created, prov)

    def _prune(self, conn: sa.Connection, name: str) -> None:
        a, c = t.artefacts, t.artefact_chunks
        old = conn.execute(
            sa.select(a.c.id, a.c.digest).where(a.c.name == name).order_by(a.c.id.desc())
        ).all()[KEEP:]
        if not old:
            return
        conn.execute(a.delete().where(a.c.id.in_([r.id for r in old])))
        for digest in {r.digest for r in old}:
            used = conn.execute(sa.select(a.c.id).where(a.c.digest == digest).limit(1)).first()
            if used is None:
                conn.execute(c.delete().where(c.c.digest == digest))

    def get_artefact(self, digest: str) -> bytes:
        a, c = t.artefacts, t.artefact_chunks
        with self._db.read() as conn:
            meta = conn.execute(
                sa.select(a.c.size, a.c.chunks).where(a.c.digest == digest).limit(1)
            ).first()
            if meta is None:
                raise NotFound(f"no artefact with digest {digest!r} in the store")
            parts = conn.execute(
                sa.select(c.c.data).where(c.c.digest == digest).order_by(c.c.seq)
            ).scalars()
            data = b"".join(bytes(p) for p in parts)
        if len(data) != meta.size or hashlib.sha256(data).hexdigest() != digest:
            raise NotFound(
                f"artefact {digest[:12]} in the store is incomplete or damaged "
                f"({len(data)} of {meta.size} bytes)",
                hint="publish it again (`tastegraph train`, or re-ingest for the projection)",
            )
        return data

    def latest_artefact(self, name: str) -> ArtefactInfo | None:
        a = t.artefacts
        with self._db.read() as conn:
            r = conn.execute(
                sa.select(*_COLS).where(a.c.name == name).order_by(a.c.id.desc()).limit(1)
            ).one_or_none()
        return None if r is None else _info(r)

    def list_artefacts(self, name: str | None = None) -> list[ArtefactInfo]:
        a = t.artefacts
        q = sa.select(*_COLS).order_by(a.c.id)
        if name is not None:
            q = q.where(a.c.name == name)
        with self._db.read() as conn:
            return [_info(r) for r in conn.execute(q)]
