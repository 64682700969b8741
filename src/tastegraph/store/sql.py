"""The SQL store: SQLite by default (WAL, one writer, ``BEGIN IMMEDIATE``), schema by Alembic."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from numpy.typing import NDArray

from tastegraph.domain import ROLES, Pin, QuarantineEntry
from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import schema as t
from tastegraph.store.engagement import EngagementMixin

__all__ = ["NewPin", "SQLStore", "TokenInfo", "now_iso"]

_EDITABLE = ("title", "description", "link", "board", "tags", "attributes")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class NewPin:
    """Everything ingest knows about one new image."""

    content_hash: str
    source: str
    vectors: dict[str, tuple[str, NDArray[np.float32]]]  # space -> (model_id, vector)
    title: str = ""
    description: str = ""
    link: str = ""
    board: str = ""
    tags: list[str] = field(default_factory=list)
    labels: list[tuple[str, float]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    phash: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    thumbnail: bytes | None = None


@dataclass
class TokenInfo:
    id: int
    name: str
    role: str
    created_at: str
    revoked_at: str | None = None


def _tags_text(tags: Sequence[str], labels: Sequence[Sequence[Any]]) -> str:
    # BM25 covers words people wrote. Model labels stay in ``tags`` for display and filters, but
    # not here: semantic search already covers them, calibrated (ConSE), and exact-word matches
    # on a classifier's guesses crowd out better results in the fusion.
    model = {str(lab[0]) for lab in labels}
    return " ".join(t for t in tags if t not in model)


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


_PIN_COLS = [c for c in t.pins.c if c.name != "thumbnail"]
_FTS_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """User words -> a safe FTS5 query (each word quoted, OR-ed; prefix match on the last)."""
    words = _FTS_TOKEN.findall(text.lower())
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] = quoted[-1] + "*"
    return " OR ".join(quoted)


class SQLStore(EngagementMixin):
    """The default store. One instance per process; safe to share across threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        if not url.startswith("sqlite:///"):
            raise InvalidInput(
                f"unsupported store URL {url!r}",
                hint="known schemes: sqlite:///PATH (PostgreSQL support is planned)",
            )
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write_lock = threading.Lock()
        self.engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        self._writer = sa.create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=sa.pool.StaticPool
        )
        for eng, begin in ((self.engine, "BEGIN"), (self._writer, "BEGIN IMMEDIATE")):
            self._configure(eng, begin)
        self._migrate()

    @staticmethod
    def _configure(engine: sa.Engine, begin_sql: str) -> None:
        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is deferred).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(begin_sql)

    def _migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        # A migration that rebuilds a table (0003) drops it, and a DROP with foreign keys on
        # cascades into the child tables. SQLite's documented procedure: keys off outside the
        # transaction, the migration checks them (PRAGMA foreign_key_check) before it commits.
        # The writer has exactly one connection (StaticPool), so the pragma holds for the upgrade.
        with self._write_lock:
            self._writer_pragma("foreign_keys=OFF")
            try:
                with self._writer.begin() as conn:
                    cfg.attributes["connection"] = conn
                    # "heads": revisions added on parallel branches all apply, in any order.
                    command.upgrade(cfg, "heads")
            finally:
                self._writer_pragma("foreign_keys=ON")

    def _writer_pragma(self, pragma: str) -> None:
        with self._writer.connect() as conn:
            # The DBAPI connection directly: SQLAlchemy's autobegin would put the pragma inside
            # a transaction, where SQLite ignores foreign_keys changes.
            conn.connection.driver_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]

    def close(self) -> None:
        self.engine.dispose()
        self._writer.dispose()

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction at a time (SQLite has one writer; this makes waits explicit)."""
        with self._write_lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    # ------------------------------------------------------------------ pins
    def add_pins(self, items: Sequence[NewPin]) -> list[tuple[int, bool]]:
        """Insert pins and their vectors in one transaction; existing content hashes are kept.

        Returns ``(pin_id, created)`` per item, in order. Statements are batched (one multi-row
        insert per table): per-row round trips were the largest cost of ingest after the model.
        """
        if not items:
            return []
        now = now_iso()
        with self.write() as conn:
            known: dict[str, int] = {}
            hashes = list(dict.fromkeys(it.content_hash for it in items))
            for start in range(0, len(hashes), 900):
                q = sa.select(t.pins.c.id, t.pins.c.content_hash).where(
                    t.pins.c.content_hash.in_(hashes[start : start + 900])
                )
                known.update({r.content_hash: int(r.id) for r in conn.execute(q)})
            fresh: list[NewPin] = []
            for it in items:
                if it.content_hash not in known and all(
                    f.content_hash != it.content_hash for f in fresh
                ):
                    fresh.append(it)
            if fresh:
                rows = [
                    {
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
                    for it in fresh
                ]
                stmt = t.pins.insert().returning(t.pins.c.id, sort_by_parameter_order=True)
                new_ids = [int(r.id) for r in conn.execute(stmt, rows)]
                vec_rows = []
                fts_rows = []
                for pin_id, it in zip(new_ids, fresh, strict=True):
                    known[it.content_hash] = pin_id
                    for space, (model_id, vec) in it.vectors.items():
                        v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
                        vec_rows.append(
                            {
                                "p": pin_id,
                                "s": space,
                                "m": model_id,
                                "d": v.shape[0],
                                "b": v.tobytes(),
                            }
                        )
                    fts_rows.append(
                        {
                            "id": pin_id,
                            "t": it.title,
                            "d": it.description,
                            "g": _tags_text(it.tags, it.labels),
                        }
                    )
                if vec_rows:
                    conn.execute(
                        sa.text(
                            "INSERT OR REPLACE INTO vectors(pin_id, space, model_id, dim, data) "
                            "VALUES (:p, :s, :m, :d, :b)"
                        ),
                        vec_rows,
                    )
                conn.execute(
                    sa.text(
                        "INSERT INTO pins_fts(rowid, title, description, tags) "
                        "VALUES (:id, :t, :d, :g)"
                    ),
                    fts_rows,
                )
                conn.execute(t.changes.insert(), [{"pin_id": i, "op": "upsert"} for i in new_ids])
            created = {known[it.content_hash] for it in fresh}
            source_rows = [
                {"r": it.source, "h": it.content_hash, "p": known[it.content_hash]}
                for it in items
                if it.source
            ]
            if source_rows:
                conn.execute(
                    sa.text(
                        "INSERT INTO sources(ref, content_hash, pin_id) VALUES (:r, :h, :p) "
                        "ON CONFLICT(ref) DO UPDATE SET "
                        "content_hash=excluded.content_hash, pin_id=excluded.pin_id"
                    ),
                    source_rows,
                )
        out: list[tuple[int, bool]] = []
        seen: set[int] = set()
        for it in items:
            pin_id = known[it.content_hash]
            out.append((pin_id, pin_id in created and pin_id not in seen))
            seen.add(pin_id)
        return out

    @staticmethod
    def _put_vectors(
        conn: sa.Connection, pin_id: int, vecs: dict[str, tuple[str, NDArray[np.float32]]]
    ) -> None:
        for space, (model_id, vec) in vecs.items():
            v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
            conn.execute(
                sa.text(
                    "INSERT OR REPLACE INTO vectors(pin_id, space, model_id, dim, data) "
                    "VALUES (:p, :s, :m, :d, :b)"
                ),
                {"p": pin_id, "s": space, "m": model_id, "d": v.shape[0], "b": v.tobytes()},
            )

    @staticmethod
    def _fts_put(
        conn: sa.Connection,
        pin_id: int,
        title: str,
        description: str,
        tags: Sequence[str],
        labels: Sequence[Sequence[Any]],
    ) -> None:
        conn.execute(sa.text("DELETE FROM pins_fts WHERE rowid = :id"), {"id": pin_id})
        conn.execute(
            sa.text(
                "INSERT INTO pins_fts(rowid, title, description, tags) VALUES (:id, :t, :d, :g)"
            ),
            {"id": pin_id, "t": title, "d": description, "g": _tags_text(tags, labels)},
        )

    def get_pin(self, pin_id: int) -> Pin:
        with self.read() as conn:
            r = conn.execute(sa.select(*_PIN_COLS).where(t.pins.c.id == pin_id)).one_or_none()
        if r is None:
            raise NotFound(
                f"pin {pin_id} does not exist",
                hint="list pins with GET /pins",
                cli_hint="find pin ids with `tastegraph search WORDS`",
            )
        return _row_to_pin(r)

    def get_pins(self, ids: Iterable[int]) -> dict[int, Pin]:
        ids = [int(i) for i in ids]
        out: dict[int, Pin] = {}
        with self.read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(sa.select(*_PIN_COLS).where(t.pins.c.id.in_(chunk)))
                out.update({r.id: _row_to_pin(r) for r in rows})
        return out

    def get_thumbnail(self, pin_id: int) -> bytes:
        with self.read() as conn:
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
        with self.read() as conn:
            return [_row_to_pin(r) for r in conn.execute(q)]

    def count_pins(self) -> int:
        with self.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.pins)).scalar_one())

    def find_by_hash(self, content_hash: str) -> int | None:
        with self.read() as conn:
            return conn.execute(
                sa.select(t.pins.c.id).where(t.pins.c.content_hash == content_hash)
            ).scalar_one_or_none()

    def update_pin(
        self,
        pin_id: int,
        fields: dict[str, Any],
        vectors: dict[str, tuple[str, NDArray[np.float32]]] | None = None,
    ) -> Pin:
        return self.update_pins([(pin_id, fields, vectors)])[0]

    def update_pins(
        self,
        edits: Sequence[
            tuple[int, dict[str, Any], dict[str, tuple[str, NDArray[np.float32]]] | None]
        ],
        *,
        skip_missing: bool = False,
    ) -> list[Pin]:
        """Apply ``(pin_id, fields, vectors)`` edits in one transaction (all or none).

        A pin that does not exist raises NotFound, or with ``skip_missing`` is left out (one
        deleted meanwhile must not undo the others' edits); returns the pins as stored.
        """
        for _, fields, _ in edits:
            bad = set(fields) - set(_EDITABLE)
            if bad:
                raise InvalidInput(
                    f"cannot update {sorted(bad)}", hint=f"editable fields: {', '.join(_EDITABLE)}"
                )
        out: list[Pin] = []
        with self.write() as conn:
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
                self._fts_put(conn, pin_id, r.title, r.description, r.tags, r.labels)
                if vectors:
                    self._put_vectors(conn, pin_id, vectors)
                conn.execute(t.changes.insert().values(pin_id=pin_id, op="upsert"))
                out.append(_row_to_pin(r))
        return out

    def delete_pin(self, pin_id: int) -> None:
        with self.write() as conn:
            n = conn.execute(t.pins.delete().where(t.pins.c.id == pin_id)).rowcount
            if not n:
                raise NotFound(f"pin {pin_id} does not exist")
            conn.execute(t.vectors.delete().where(t.vectors.c.pin_id == pin_id))
            conn.execute(sa.text("DELETE FROM pins_fts WHERE rowid = :id"), {"id": pin_id})
            conn.execute(t.sources.delete().where(t.sources.c.pin_id == pin_id))
            conn.execute(t.changes.insert().values(pin_id=pin_id, op="delete"))

    # --------------------------------------------------------------- vectors
    def get_vectors(
        self, space: str, ids: Sequence[int] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """Vectors of one space: ``(ids, matrix, model_ids)``; all pins when ``ids`` is None."""
        q = sa.select(t.vectors.c.pin_id, t.vectors.c.model_id, t.vectors.c.data).where(
            t.vectors.c.space == space
        )
        rows: list[Any] = []
        with self.read() as conn:
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

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]:
        """Pins upserted and deleted after ``seq``: ``(last_seq, upserted, deleted)``."""
        with self.read() as conn:
            rows = list(
                conn.execute(
                    sa.select(t.changes.c.seq, t.changes.c.pin_id, t.changes.c.op)
                    .where(t.changes.c.seq > seq)
                    .order_by(t.changes.c.seq)
                )
            )
        state: dict[int, str] = {}
        for r in rows:
            state[r.pin_id] = r.op
        last = rows[-1].seq if rows else seq
        ups = [p for p, op in state.items() if op == "upsert"]
        dels = [p for p, op in state.items() if op == "delete"]
        return last, ups, dels

    def last_change(self) -> int:
        with self.read() as conn:
            v = conn.execute(sa.select(sa.func.max(t.changes.c.seq))).scalar_one()
        return int(v or 0)

    # ------------------------------------------------------------ text search
    def fts_search(self, text: str, limit: int = 100) -> list[tuple[int, float]]:
        """BM25 over title, description and tags: ``(pin_id, score)`` best first, score > 0."""
        q = fts_query(text)
        if not q:
            return []
        with self.read() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT rowid, bm25(pins_fts, 3.0, 1.0, 2.0) AS s FROM pins_fts "
                    "WHERE pins_fts MATCH :q ORDER BY s LIMIT :n"
                ),
                {"q": q, "n": limit},
            )
            return [(int(r.rowid), -float(r.s)) for r in rows]

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
            each = sa.func.json_each(t.pins.c.tags).table_valued("value")
            q = q.where(sa.exists(sa.select(1).select_from(each).where(each.c.value == tag)))
        for key, value in (attributes or {}).items():
            if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", key):
                raise InvalidInput(f"bad attribute name {key!r}")
            q = q.where(
                sa.cast(sa.func.json_extract(t.pins.c.attributes, f'$."{key}"'), sa.Text)
                == str(value)
            )
        with self.read() as conn:
            return np.array([r[0] for r in conn.execute(q)], dtype=np.int64)

    # --------------------------------------------------------- near-duplicates
    def phashes(self) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
        with self.read() as conn:
            rows = list(
                conn.execute(sa.select(t.pins.c.id, t.pins.c.phash).where(t.pins.c.phash != ""))
            )
        ids = np.array([r.id for r in rows], np.int64)
        hashes = np.array([int(r.phash, 16) for r in rows], np.uint64)
        return ids, hashes

    def set_dup_groups(self, groups: Mapping[int, int | None]) -> None:
        with self.write() as conn:
            for pin_id, group in groups.items():
                conn.execute(t.pins.update().where(t.pins.c.id == pin_id).values(dup_group=group))

    def dup_groups(self) -> dict[int, list[int]]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(t.pins.c.id, t.pins.c.dup_group)
                .where(t.pins.c.dup_group.is_not(None))
                .order_by(t.pins.c.dup_group, t.pins.c.id)
            )
            out: dict[int, list[int]] = {}
            for r in rows:
                out.setdefault(r.dup_group, []).append(r.id)
        return out

    # ----------------------------------------------------------------- ingest
    def known_source(self, ref: str) -> str | None:
        with self.read() as conn:
            return conn.execute(
                sa.select(t.sources.c.content_hash).where(t.sources.c.ref == ref)
            ).scalar_one_or_none()

    def known_sources(self) -> set[str]:
        with self.read() as conn:
            return {r[0] for r in conn.execute(sa.select(t.sources.c.ref))}

    def source_pins(self) -> dict[str, int | None]:
        """Every source reference an ingest finished, and the pin it gave."""
        with self.read() as conn:
            q = sa.select(t.sources.c.ref, t.sources.c.pin_id)
            return {r.ref: r.pin_id for r in conn.execute(q)}

    def start_run(self, run_id: str, source: str) -> None:
        with self.write() as conn:
            conn.execute(
                t.ingest_runs.insert().values(
                    id=run_id, source=source, started_at=now_iso(), status="running", counts={}
                )
            )

    def finish_run(self, run_id: str, status: str, counts: dict[str, int]) -> None:
        with self.write() as conn:
            conn.execute(
                t.ingest_runs.update()
                .where(t.ingest_runs.c.id == run_id)
                .values(status=status, counts=counts, finished_at=now_iso())
            )

    def add_quarantine(self, run_id: str, entries: Sequence[QuarantineEntry]) -> None:
        if not entries:
            return
        now = now_iso()
        with self.write() as conn:
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
        with self.read() as conn:
            return [
                QuarantineEntry(
                    source=r.source, reason=r.reason, message=r.message, run_id=r.run_id
                )
                for r in conn.execute(q)
            ]

    # --------------------------------------------------------------- settings
    def get_kv(self, key: str, default: Any = None) -> Any:
        with self.read() as conn:
            v = conn.execute(sa.select(t.kv.c.value).where(t.kv.c.key == key)).scalar_one_or_none()
        return default if v is None else v

    def set_kv(self, key: str, value: Any) -> None:
        with self.write() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO kv(key, value) VALUES (:k, :v) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value"
                ),
                {"k": key, "v": json.dumps(value)},
            )

    # ----------------------------------------------------------------- tokens
    @staticmethod
    def _hash_token(secret: str) -> str:
        # Tokens are 256-bit random strings, so a fast hash is enough (no password stretching).
        return hashlib.sha256(secret.encode()).hexdigest()

    def create_token(self, name: str, role: str) -> tuple[TokenInfo, str]:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")
        secret = "tg_" + secrets.token_urlsafe(32)
        now = now_iso()
        with self.write() as conn:
            tid = conn.execute(
                t.tokens.insert().values(
                    name=name, role=role, token_hash=self._hash_token(secret), created_at=now
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return TokenInfo(int(tid), name, role, now), secret

    def verify_token(self, secret: str) -> TokenInfo | None:
        with self.read() as conn:
            r = conn.execute(
                sa.select(t.tokens).where(t.tokens.c.token_hash == self._hash_token(secret))
            ).one_or_none()
        if r is None or r.revoked_at is not None:
            return None
        return TokenInfo(r.id, r.name, r.role, r.created_at, r.revoked_at)

    def list_tokens(self) -> list[TokenInfo]:
        with self.read() as conn:
            return [
                TokenInfo(r.id, r.name, r.role, r.created_at, r.revoked_at)
                for r in conn.execute(sa.select(t.tokens).order_by(t.tokens.c.id))
            ]

    def revoke_token(self, token_id: int, *, allow_last_admin: bool = False) -> None:
        """Revoke a token. The last active admin token is kept (``Conflict``) unless
        ``allow_last_admin``: without one, nobody can administer the API any more (only the
        CLI on this machine can make a new one)."""
        tok = t.tokens
        active = tok.c.revoked_at.is_(None)
        with self.write() as conn:
            row = conn.execute(
                sa.select(tok.c.role, tok.c.revoked_at).where(tok.c.id == token_id)
            ).one_or_none()
            if row is None:
                raise NotFound(
                    f"token {token_id} does not exist",
                    hint="list them: GET /tokens",
                    cli_hint="list them: tastegraph token list",
                )
            if row.revoked_at is not None:
                raise Conflict(f"token {token_id} was already revoked at {row.revoked_at}")
            if row.role == "admin" and not allow_last_admin:
                others = conn.execute(
                    sa.select(sa.func.count()).where(
                        tok.c.role == "admin", active, tok.c.id != token_id
                    )
                ).scalar_one()
                if not others:
                    raise Conflict(
                        f"token {token_id} is the last active admin token; revoking it would "
                        "lock everyone out of API administration",
                        hint="create another admin token first (`tastegraph token create "
                        f"--role admin`), or run `tastegraph token revoke {token_id} --force` "
                        "on the server's machine",
                        token_id=token_id,
                    )
            conn.execute(tok.update().where(tok.c.id == token_id).values(revoked_at=now_iso()))

    def audit(self, token_id: int | None, role: str, action: str, target: str) -> None:
        with self.write() as conn:
            conn.execute(
                t.audit_log.insert().values(
                    at=now_iso(), token_id=token_id, role=role, action=action, target=target
                )
            )

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
            )
            return [dict(r._mapping) for r in rows]
