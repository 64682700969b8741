"""Everything only SQLite understands: connection PRAGMAs (WAL), ``BEGIN IMMEDIATE``, the
foreign-key switch around migrations, ``ON CONFLICT`` inserts, JSON functions, and the FTS5
keyword index. Nothing else in ``store/`` may be SQLite-only.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_sql

from tastegraph.errors import InvalidInput
from tastegraph.store.db import json_dumps
from tastegraph.store.ports import KeywordDoc

if TYPE_CHECKING:
    from tastegraph.store.db import Database

__all__ = ["DataVersion", "Fts5KeywordIndex", "SQLiteDialect", "fts_query"]


_FTS_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """User words -> a safe FTS5 query (each word quoted, OR-ed; prefix match on the last)."""
    words = _FTS_TOKEN.findall(text.lower())
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] = quoted[-1] + "*"
    return " OR ".join(quoted)


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


def _writer_pragma(db: Database, pragma: str) -> None:
    with db.writer.connect() as conn:
        # The DBAPI connection directly: SQLAlchemy's autobegin would put the pragma inside
        # a transaction, where SQLite ignores foreign_keys changes.
        conn.connection.driver_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]


class SQLiteDialect:
    """SQLite: WAL, one writer connection that begins ``IMMEDIATE``, pooled readers."""

    name = "sqlite"
    upgrades_on_open = True  # one file, one owner: opening it brings it to the newest schema

    def engines(self, url: str) -> tuple[sa.Engine, sa.Engine]:
        if not url.startswith("sqlite:///"):
            raise InvalidInput(
                f"unsupported store URL {url!r}",
                hint="known schemes: sqlite:///PATH, postgresql+psycopg://USER@HOST/DB",
            )
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        args = {"check_same_thread": False}
        reader = sa.create_engine(url, json_serializer=json_dumps, connect_args=args)
        # Exactly one writer connection (StaticPool), so a PRAGMA set on it holds for the next
        # transaction (see ``migrating``).
        writer = sa.create_engine(
            url, json_serializer=json_dumps, connect_args=args, poolclass=sa.pool.StaticPool
        )
        _configure(reader, "BEGIN")
        _configure(writer, "BEGIN IMMEDIATE")
        return reader, writer

    @contextmanager
    def migrating(self, db: Database) -> Iterator[None]:
        # A migration that rebuilds a table (0003) drops it, and a DROP with foreign keys on
        # cascades into the child tables. SQLite's documented procedure: keys off outside the
        # transaction, the migration checks them (PRAGMA foreign_key_check) before it commits.
        _writer_pragma(db, "foreign_keys=OFF")
        try:
            yield
        finally:
            _writer_pragma(db, "foreign_keys=ON")

    def upsert(self, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> sa.Executable:
        stmt = sqlite_sql.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
        )

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        return sqlite_sql.insert(table).on_conflict_do_nothing()

    def lock_log(self, conn: sa.Connection, log: str) -> None:
        pass  # every write transaction began IMMEDIATE: it already is the only writer

    def announce(self, conn: sa.Connection, what: str) -> None:
        pass  # nothing to announce with: other processes poll the log tips

    def notices(self, url: str) -> None:
        return None

    def json_array_has(self, column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
        each = sa.func.json_each(column).table_valued("value")
        return sa.exists(sa.select(1).select_from(each).where(each.c.value == value))

    def keyword_index(self, db: Database) -> Fts5KeywordIndex:
        return Fts5KeywordIndex(db)

    def commit_counter(self, db: Database) -> DataVersion | None:
        path = sa.make_url(db.url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None  # a private in-memory database: no other connection sees it
        return DataVersion(path)

    def id_high_water(self, conn: sa.Connection, table: str, column: str) -> int:
        # AUTOINCREMENT tables keep theirs in sqlite_sequence (absent until the first insert).
        seq = conn.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
        ).scalar_one_or_none()
        return int(seq or 0)

    def set_id_high_water(self, conn: sa.Connection, table: str, column: str, value: int) -> None:
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        if value > 0:
            conn.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"),
                {"t": table, "v": value},
            )


class DataVersion:
    """``PRAGMA data_version`` on a connection of its own, never in a transaction: the value
    changes whenever any other connection commits to the file (this process's writer, another
    process), and reading it touches no page (a few microseconds against ~0.5 ms for a pooled
    read transaction)."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Fts5KeywordIndex:
    """The keyword index as an FTS5 table (``pins_fts``), BM25 weighted title 3, tags 2, text 1."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, conn: sa.Connection, docs: Sequence[KeywordDoc]) -> None:
        if docs:
            conn.execute(
                sa.text(
                    "INSERT INTO pins_fts(rowid, title, description, tags) VALUES (:id, :t, :d, :g)"
                ),
                [{"id": d.id, "t": d.title, "d": d.description, "g": d.tags} for d in docs],
            )

    def update(self, conn: sa.Connection, docs: Sequence[KeywordDoc]) -> None:
        self.delete(conn, [d.id for d in docs])
        self.add(conn, docs)

    def delete(self, conn: sa.Connection, ids: Sequence[int]) -> None:
        if ids:
            conn.execute(
                sa.text("DELETE FROM pins_fts WHERE rowid = :id"), [{"id": i} for i in ids]
            )

    def search(self, text: str, limit: int = 100) -> list[tuple[int, float]]:
        q = fts_query(text)
        if not q:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT rowid, bm25(pins_fts, 3.0, 1.0, 2.0) AS s FROM pins_fts "
                    "WHERE pins_fts MATCH :q ORDER BY s LIMIT :n"
                ),
                {"q": q, "n": limit},
            )
            return [(int(r.rowid), -float(r.s)) for r in rows]
