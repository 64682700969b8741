"""Everything only PostgreSQL understands (psycopg 3): ``ON CONFLICT`` inserts, JSONB tests,
advisory locks ordering the log appends, ``NOTIFY``/``LISTEN`` announcing them to the other
processes, and the ``tsvector`` keyword index. Nothing else in
``store/`` may be PostgreSQL-only.

URLs: ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB`` (``postgresql://`` means the same).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_sql

from tastegraph.errors import InvalidInput, MissingExtra
from tastegraph.store.db import json_dumps
from tastegraph.store.ports import KeywordDoc

if TYPE_CHECKING:
    from tastegraph.store.db import Database

__all__ = [
    "CHANNEL",
    "LISTENER_NAME",
    "PostgreSQLDialect",
    "PsycopgNotices",
    "TsvectorKeywordIndex",
    "ts_query",
]

# Every announcement goes to one channel; the payload names what changed.
CHANNEL = "tastegraph_changes"
# The listening connection's application_name: how operators (and tests) find it in
# pg_stat_activity.
LISTENER_NAME = "tastegraph-listener"

_WORD = re.compile(r"\w+", re.UNICODE)
# ts_rank_cd's weights for D, C, B, A: title (A) 3 : tags (B) 2 : description (C) 1, as FTS5's.
_RANK_WEIGHTS = "{0.1, 0.33, 0.67, 1.0}"
_DOC = (
    "setweight(to_tsvector('english', :t), 'A') || setweight(to_tsvector('english', :g), 'B')"
    " || setweight(to_tsvector('english', :d), 'C')"
)


def ts_query(text: str) -> str:
    """User words -> a safe ``to_tsquery`` text (each word quoted, OR-ed; prefix on the last).

    >>> ts_query('red "dress" AND')
    "'red' | 'dress' | 'and':*"
    """
    words = _WORD.findall(text.lower())
    if not words:
        return ""
    quoted = [f"'{w}'" for w in words]
    quoted[-1] += ":*"
    return " | ".join(quoted)


def _log_key(log: str) -> int:
    # One advisory-lock key per log table, stable across processes and releases.
    return zlib.crc32(f"tastegraph:{log}".encode())


class PostgreSQLDialect:
    """PostgreSQL: pooled connections (checked before use), READ COMMITTED transactions."""

    name = "postgresql"
    # Several processes share one server: a schema change is an explicit `tastegraph db upgrade`.
    upgrades_on_open = False

    def engines(self, url: str) -> tuple[sa.Engine, sa.Engine]:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if not url.startswith("postgresql+psycopg://"):
            raise InvalidInput(
                f"unsupported PostgreSQL driver in {sa.make_url(url).render_as_string()!r}",
                hint="use postgresql+psycopg://USER@HOST/DB (psycopg 3)",
            )
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:  # as extras.require says it (the store sits below it)
            raise MissingExtra(
                "A PostgreSQL store needs psycopg, which is not installed.",
                hint="pip install 'tastegraph[postgres]'",
                extra="postgres",
                package="psycopg",
            ) from exc
        # A host that never answers is an error within seconds, not a hang.
        args = {"connect_timeout": 10}
        reader = sa.create_engine(
            url, json_serializer=json_dumps, pool_pre_ping=True, connect_args=args
        )
        writer = sa.create_engine(
            url, json_serializer=json_dumps, pool_pre_ping=True, pool_size=2, connect_args=args
        )
        return reader, writer

    @contextmanager
    def migrating(self, db: Database) -> Iterator[None]:
        # DDL is transactional here; the lock makes processes that open a new database at once
        # migrate it one after the other (the later ones then find it at the newest schema).
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _log_key("schema")})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _log_key("schema")})
                conn.commit()

    def upsert(self, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> sa.Executable:
        stmt = pg_sql.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
        )

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        return pg_sql.insert(table).on_conflict_do_nothing()

    def lock_log(self, conn: sa.Connection, log: str) -> None:
        # Without it two writers' rows can commit out of id order, and a reader tailing by
        # ``id > last`` that sees the later one first skips the other for good.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _log_key(log)})
        # Only an append takes the lock: announce it (delivered when the append commits).
        self.announce(conn, log)

    def announce(self, conn: sa.Connection, what: str) -> None:
        # Sent at commit, never for a rolled-back transaction; repeats within one transaction
        # are folded into one by the server.
        conn.execute(sa.text("SELECT pg_notify(:c, :w)"), {"c": CHANNEL, "w": what})

    def commit_counter(self, db: Database) -> None:
        return None  # the log tips are one indexed read; the listener hears other writers

    def notices(self, url: str) -> Callable[[], PsycopgNotices]:
        conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        return lambda: PsycopgNotices(conninfo)

    def json_array_has(self, column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
        return column.op("@>", return_type=sa.Boolean)(sa.func.jsonb_build_array(value))

    def keyword_index(self, db: Database) -> TsvectorKeywordIndex:
        return TsvectorKeywordIndex(db)

    def id_high_water(self, conn: sa.Connection, table: str, column: str) -> int:
        value = conn.execute(
            sa.text(
                "SELECT pg_sequence_last_value(CAST(pg_get_serial_sequence(:t, :c) AS regclass))"
            ),
            {"t": table, "c": column},
        ).scalar_one_or_none()
        return int(value or 0)

    def set_id_high_water(self, conn: sa.Connection, table: str, column: str, value: int) -> None:
        # setval(..., false): the next nextval() returns ``value + 1`` exactly; 1 when 0.
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, false)"),
            {"t": table, "c": column, "v": value + 1},
        )


class PsycopgNotices:
    """A dedicated autocommit connection doing ``LISTEN`` on :data:`CHANNEL` (a
    ``store.ports.NoticeConnection``)."""

    def __init__(self, conninfo: str) -> None:
        import psycopg

        self._conn = psycopg.connect(
            conninfo, autocommit=True, connect_timeout=10, application_name=LISTENER_NAME
        )
        self._conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> list[str]:
        # Returns at the first announcement (the caller folds a burst) or after ``timeout``;
        # raises psycopg.OperationalError when the connection is lost.
        return [n.payload for n in self._conn.notifies(timeout=timeout, stop_after=1)]

    def close(self) -> None:
        self._conn.close()


class TsvectorKeywordIndex:
    """The keyword index as weighted ``tsvector`` documents (``pins_fts``, GIN indexed), ranked
    by ``ts_rank_cd`` with title above tags above description."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, conn: sa.Connection, docs: Sequence[KeywordDoc]) -> None:
        if docs:
            conn.execute(
                sa.text(
                    f"INSERT INTO pins_fts (pin_id, doc) VALUES (:id, {_DOC}) "
                    "ON CONFLICT (pin_id) DO UPDATE SET doc = EXCLUDED.doc"
                ),
                [{"id": d.id, "t": d.title, "d": d.description, "g": d.tags} for d in docs],
            )

    def update(self, conn: sa.Connection, docs: Sequence[KeywordDoc]) -> None:
        self.add(conn, docs)

    def delete(self, conn: sa.Connection, ids: Sequence[int]) -> None:
        if ids:
            conn.execute(
                sa.text("DELETE FROM pins_fts WHERE pin_id = ANY(:ids)"), {"ids": list(ids)}
            )

    def search(self, text: str, limit: int = 100) -> list[tuple[int, float]]:
        q = ts_query(text)
        if not q:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT pin_id, ts_rank_cd(CAST(:w AS float4[]), doc, query) AS s "
                    "FROM pins_fts, to_tsquery('english', :q) AS query WHERE doc @@ query "
                    "ORDER BY s DESC, pin_id LIMIT :n"
                ),
                {"w": _RANK_WEIGHTS, "q": q, "n": limit},
            )
            return [(int(r.pin_id), float(r.s)) for r in rows]
